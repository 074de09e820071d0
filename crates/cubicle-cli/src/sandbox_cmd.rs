//! `cubicle sandbox exec`: one command in a fresh cubicle, for people
//! debugging and for tests. The exit status is the command's (124 on timeout,
//! 128+N when killed by signal N, as shells do).
//!
//! On the jail backend it runs as a one-shot jail
//! ([`cubicle_sandbox::jail::oneshot`]) straight from `main`, before any
//! runtime starts: the same jail, without a guest or its protocol. Other
//! backends start a computer and run the command through its guest.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use cubicle_protocol::guest::{ExecRequest, OutputStream};
use tokio::sync::mpsc;

use crate::backend;
use crate::cli::{ExecArgs, SandboxCommand};
use crate::config::parse_duration;

/// Runs a `sandbox` subcommand.
pub async fn run(cmd: SandboxCommand) -> Result<ExitCode> {
    match cmd {
        SandboxCommand::Exec(args) => exec(args).await,
    }
}

/// `cubicle sandbox exec` on the jail backend, when the arguments say so:
/// runs it as a one-shot jail and returns its exit status. `None` leaves
/// the command line to the full parser (another command, another backend,
/// `--help`, or arguments it must explain).
///
/// Must be called before any thread or runtime starts.
pub fn exec_one_shot() -> Option<ExitCode> {
    use clap::{Args as _, FromArgMatches as _};
    let mut argv = std::env::args_os().skip(1);
    if argv.next()? != "sandbox" || argv.next()? != "exec" {
        return None;
    }
    let parser = ExecArgs::augment_args(clap::Command::new("exec"));
    let matches = parser
        .try_get_matches_from(std::iter::once("exec".into()).chain(argv))
        .ok()?;
    let args = ExecArgs::from_arg_matches(&matches).ok()?;
    if backend::resolve(&args.backend).ok()? != "jail" {
        return None;
    }
    Some(match exec_in_one_shot_jail(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cubicle: {e:#}");
            ExitCode::FAILURE
        }
    })
}

fn exec_in_one_shot_jail(args: ExecArgs) -> Result<ExitCode> {
    use cubicle_sandbox::jail::oneshot::{self, OneShotConfig, Outcome};
    let timeout = args.timeout.as_deref().map(parse_duration).transpose()?;
    let grants = backend::parse_grants(&args.grants)?;
    let scratch = tempfile_dir()?;
    let outcome = oneshot::run(OneShotConfig {
        grants,
        workspace: scratch.clone(),
        rootfs: backend::jail_rootfs(),
        limits: cubicle_sandbox::jail::Limits::default(),
        env: Default::default(),
        dangerously_allow_no_landlock: args.dangerously_allow_no_landlock,
        argv: args.command,
        cwd: args.cwd,
        timeout,
    });
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(match outcome? {
        Outcome::Exited(code) => status(code),
        Outcome::TimedOut => timed_out(),
        Outcome::Interrupted(sig) => status(128 + sig),
        Outcome::OverCap { cap_mib, used_mib } => {
            eprintln!(
                "cubicle: the workspace is over its {cap_mib} MiB cap ({used_mib} MiB used); \
                 the command was stopped"
            );
            ExitCode::from(128 + 9)
        }
    })
}

async fn exec(args: ExecArgs) -> Result<ExitCode> {
    let grants = backend::parse_grants(&args.grants)?;
    let scratch = tempfile_dir()?;
    let options = backend::BackendOptions {
        dangerously_allow_no_landlock: args.dangerously_allow_no_landlock,
        ..Default::default()
    };
    let computer = match backend::start(&args.backend, grants, scratch.clone(), &options).await {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e);
        }
    };
    let mut req = ExecRequest::argv(args.command.clone());
    req.cwd = args.cwd.clone();
    req.timeout_ms = args
        .timeout
        .as_deref()
        .map(parse_duration)
        .transpose()?
        .map(|d| d.as_millis() as u64);
    // All of the output is streamed, and none of it kept.
    req.max_output_bytes = None;
    let (tx, mut rx) =
        mpsc::channel::<cubicle_sandbox::OutputChunk>(cubicle_sandbox::LIVE_OUTPUT_CHUNKS);
    let printer = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            let _ = match chunk.stream {
                OutputStream::Stdout => std::io::stdout().write_all(&chunk.data),
                OutputStream::Stderr => std::io::stderr().write_all(&chunk.data),
            };
        }
        let _ = std::io::stdout().flush();
    });
    let result = match computer.guest().start_exec(req) {
        Ok(handle) => handle.stream(tx).await,
        Err(e) => Err(e),
    };
    let _ = printer.await;
    let _ = computer.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
    let r = result?;
    Ok(if r.timed_out {
        timed_out()
    } else if let Some(code) = r.code {
        status(code)
    } else if let Some(sig) = r.signal {
        status(128 + sig)
    } else {
        ExitCode::FAILURE
    })
}

/// A command's status as this process's exit status (a shell's 0–255).
fn status(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Says the command timed out; the status `timeout(1)` uses.
fn timed_out() -> ExitCode {
    eprintln!("cubicle: the command timed out and was killed");
    ExitCode::from(124)
}

/// A fresh scratch folder for a one-off cubicle.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let base = std::env::temp_dir().join(format!(
        "cubicle-exec-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&base)?;
    Ok(base)
}
