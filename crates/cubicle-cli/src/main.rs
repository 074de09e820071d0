//! `cubicle`: the command-line front end. Library crates return typed errors;
//! this binary turns each into one clear line for the person, with a hint.

mod audit_cmd;
mod backend;
mod bench;
mod browser_cmd;
mod cli;
mod config;
mod demo_cmd;
mod doctor;
mod drive;
mod eval_cmd;
mod image_cmd;
mod interact;
mod model_settings;
mod pair_cmd;
mod plugin_cmd;
mod policy_cmd;
mod render;
mod safety;
mod sandbox_cmd;
mod secret_cmd;
mod serve_cmd;
mod sessions_cmd;
mod skill_cmd;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // The guest entry must run before any runtime or thread of ours exists.
    // Entries that must run before any runtime or thread of ours exists:
    // the guest, and the jail launcher (a user namespace can only be made by
    // a single-threaded process).
    match std::env::args_os().nth(1) {
        Some(a) if a == "__guest" => return cubicle_guest::run_stdio(),
        Some(a) if a == "__jail-init" => jail_init(),
        _ => {}
    }
    // `sandbox exec` on the jail forks its jail from here, still
    // single-threaded, instead of starting a runtime, a launcher and a guest.
    if let Some(code) = sandbox_cmd::exec_one_shot() {
        return code;
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cubicle: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    // Do not wait for stdin reader threads blocked on a terminal.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cubicle: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => drive::run(args).await,
        Command::Chat(args) => drive::chat(args).await,
        Command::Resume(args) => drive::resume(args).await,
        Command::Sessions(cmd) => sessions_cmd::run(cmd),
        Command::Sandbox(cmd) => sandbox_cmd::run(cmd).await,
        Command::Bench(cmd) => bench::run(cmd).await,
        Command::Browser(cmd) => browser_cmd::run(cmd).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Audit(cmd) => audit_cmd::run(cmd).await,
        Command::Secret(cmd) => secret_cmd::run(cmd),
        Command::Serve(args) => {
            let policy = safety::load_policy(&safety::PolicyArgs::default(), &[])?;
            let starter = std::sync::Arc::new(drive::CliStarter);
            serve_cmd::run(
                args,
                starter,
                &policy,
                safety::open_audit,
                safety::audit_key(),
                model_settings::ConfigSettings::from_env()
                    .ok()
                    .map(|s| std::sync::Arc::new(s) as _),
            )
            .await
        }
        Command::Pair(args) => pair_cmd::run(args, safety::open_audit).await,
        Command::Skill(cmd) => skill_cmd::run(cmd).await,
        Command::Plugin(cmd) => plugin_cmd::run(cmd).await,
        Command::Demo(args) => demo_cmd::run(args).await,
        Command::Image(cmd) => image_cmd::run(cmd).await,
        Command::Eval(cmd) => eval_cmd::run(cmd).await,
        // Handled in `main` before the runtime starts.
        Command::Guest | Command::JailInit => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(target_os = "linux")]
fn jail_init() -> ! {
    match cubicle_sandbox::jail::config::LaunchSpec::from_args(std::env::args_os().skip(1)) {
        Ok(spec) => cubicle_sandbox::jail::init::main(spec),
        Err(e) => {
            eprintln!("cubicle-jail: {e}");
            std::process::exit(2)
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn jail_init() -> ! {
    eprintln!("cubicle-jail: the jail backend exists only on Linux");
    std::process::exit(2)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,cubicle=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUBICLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
