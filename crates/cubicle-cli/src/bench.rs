//! `cubicle bench`: measurements against a peer in the same run, reported as
//! ratios. Not tests: nothing here asserts a time.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cubicle_agent::{AllowAll, SessionConfig, SessionParams, TranscriptWriter};
use cubicle_models::scripted::ScriptedModel;
use cubicle_protocol::events::{Event, Op};
use cubicle_protocol::transcript::{Header, TRANSCRIPT_FORMAT, TRANSCRIPT_VERSION};
use cubicle_tools::{Tool, ToolContext};
use serde_json::json;

use crate::backend;
use crate::cli::BenchCommand;

/// Runs a `bench` subcommand.
pub async fn run(cmd: BenchCommand) -> Result<ExitCode> {
    match cmd {
        BenchCommand::Agent { calls, backend } => agent(calls, &backend).await,
        BenchCommand::Exec { runs, backend } => exec(runs, &backend).await,
        BenchCommand::Warm { runs, backend } => warm(runs, &backend).await,
    }
}

/// Agent overhead per tool call: the same `read` calls made by a scripted
/// model through the whole loop (gate, transcript fsyncs, events) and made
/// directly on the computer.
async fn agent(calls: u32, backend_name: &str) -> Result<ExitCode> {
    let dir = scratch("bench-agent")?;
    let workspace = dir.join("workspace");
    std::fs::create_dir_all(&workspace)?;
    let file = workspace.join("note.txt");
    std::fs::write(&file, "a small file\n".repeat(20))?;
    let computer = backend::start(
        backend_name,
        Vec::new(),
        workspace.clone(),
        &backend::BackendOptions::default(),
    )
    .await?;

    // The file as the cubicle sees it.
    let path = format!("{}/note.txt", computer.info().workspace);

    // Peer: the tool called directly, no agent loop.
    let tool = cubicle_tools::read::Read;
    let ctx = ToolContext {
        computer: computer.clone(),
        call_id: "direct".into(),
        live: None,
    };
    let input = json!({ "path": path });
    for _ in 0..20 {
        tool.call(input.clone(), &ctx).await;
    }
    let t = Instant::now();
    for _ in 0..calls {
        let out = tool.call(input.clone(), &ctx).await;
        if out.is_error {
            bail!("the direct read failed: {}", out.text_summary());
        }
    }
    let direct = t.elapsed();

    // Cubicle: a scripted model asking for the same call `calls` times.
    let n = calls as usize;
    let p = path.clone();
    let model = ScriptedModel::from_fn(move |_req, i| {
        Ok(if i < n {
            ScriptedModel::tool_use_response(format!("call-{i}"), "read", json!({ "path": p }))
        } else {
            ScriptedModel::text_response("done")
        })
    })
    .without_recording();
    let header = Header {
        format: TRANSCRIPT_FORMAT.into(),
        version: TRANSCRIPT_VERSION,
        session_id: "bench".into(),
        created_at: cubicle_agent::transcript::now_rfc3339(),
        cubicle_version: env!("CARGO_PKG_VERSION").into(),
        task: Some("bench".into()),
        model: "scripted:bench".into(),
        backend: computer.info().backend.clone(),
        grants: Vec::new(),
        workspace: workspace.display().to_string(),
        label: None,
    };
    let writer = Arc::new(TranscriptWriter::create(&dir.join("bench.jsonl"), &header)?);
    let mut handle = cubicle_agent::spawn(SessionParams {
        id: "bench".into(),
        model: Arc::new(model),
        computer: computer.clone(),
        transcript: writer,
        tools: cubicle_tools::computer_tools(),
        gate: Arc::new(AllowAll),
        config: SessionConfig {
            interactive: false,
            max_turns: calls + 10,
            ..SessionConfig::default()
        },
        history: Vec::new(),
        audit: None,
    });
    let t = Instant::now();
    let _ = handle.ops.send(Op::UserMessage {
        text: "bench".into(),
    });
    let mut errors = 0u32;
    while let Some(ev) = handle.events.recv().await {
        match ev.event {
            Event::ToolCallFinished { is_error: true, .. } => errors += 1,
            Event::TurnEnded { .. } => break,
            _ => {}
        }
    }
    let looped = t.elapsed();
    let _ = handle.ops.send(Op::Shutdown);
    let _ = handle.done.await;
    computer.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    if errors > 0 {
        bail!("{errors} tool calls failed during the benchmark");
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(calls.max(1));
    let overhead = per(looped.saturating_sub(direct));
    println!(
        "agent overhead per tool call ({calls} calls, scripted model, {backend_name} backend)"
    );
    println!("  direct tool call:        {:>9.1} µs/call", per(direct));
    println!("  through the agent loop:  {:>9.1} µs/call", per(looped));
    println!("  overhead:                {overhead:>9.1} µs/call (goal ≤ 1000)");
    println!(
        "  ratio loop/direct:       {:>9.2}×",
        looped.as_secs_f64() / direct.as_secs_f64().max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// `cubicle sandbox exec -- true` against bubblewrap and `sh -c true`, as
/// whole processes in the same run.
async fn exec(runs: u32, backend_name: &str) -> Result<ExitCode> {
    let me = std::env::current_exe().context("finding this binary")?;
    let cubicle = time_runs(
        runs,
        &me,
        &["sandbox", "exec", "--backend", backend_name, "--", "true"],
        COLD_PAUSE,
    )?;
    let sh = time_runs(
        runs,
        std::path::Path::new("/bin/sh"),
        &["-c", "true"],
        COLD_PAUSE,
    )?;
    let bwrap_args = [
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--unshare-all",
        "true",
    ];
    let bwrap = which("bwrap").map(|b| time_runs(runs, &b, &bwrap_args, COLD_PAUSE));
    let (c50, c99) = percentiles(cubicle);
    let (s50, s99) = percentiles(sh);
    println!("cold command, {runs} runs each (p50 / p99 ms)");
    println!("  cubicle sandbox exec --backend {backend_name} -- true  {c50:>8.2} / {c99:>8.2}");
    match bwrap {
        Some(Ok(b)) => {
            let (b50, b99) = percentiles(b);
            println!("  bwrap --unshare-all … true                    {b50:>8.2} / {b99:>8.2}");
            println!(
                "  ratio cubicle/bwrap (p50)                      {:>8.2}×",
                c50 / b50.max(1e-9)
            );
        }
        Some(Err(e)) => println!("  bwrap failed: {e}"),
        None => println!("  bwrap: not installed (apt-get install bubblewrap) — no peer"),
    }
    println!("  sh -c true                                    {s50:>8.2} / {s99:>8.2}");
    println!(
        "  ratio cubicle/sh (p50)                         {:>8.1}×",
        c50 / s50.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// Warm round trips in one live cubicle, and its idle memory.
async fn warm(runs: u32, backend_name: &str) -> Result<ExitCode> {
    let dir = scratch("bench-warm")?;
    let computer = backend::start(
        backend_name,
        Vec::new(),
        dir.join("workspace"),
        &backend::BackendOptions::default(),
    )
    .await?;
    for _ in 0..20 {
        computer
            .exec(cubicle_protocol::guest::ExecRequest::argv(["true"]), None)
            .await?;
    }
    let mut times = Vec::with_capacity(runs as usize);
    for _ in 0..runs {
        let t = Instant::now();
        let out = computer
            .exec(cubicle_protocol::guest::ExecRequest::argv(["true"]), None)
            .await?;
        times.push(t.elapsed());
        if !out.result.success() {
            bail!("`true` failed in the cubicle");
        }
    }
    let mut pings = Vec::with_capacity(runs as usize);
    for _ in 0..runs {
        pings.push(computer.guest().ping().await?);
    }
    // Local peer: the same program started directly.
    let direct = time_runs(runs, std::path::Path::new("/bin/true"), &[], Duration::ZERO)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss, pss) = computer.host_pid().map(tree_rss_kib).unwrap_or_default();
    computer.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    let (e50, e99) = percentiles(times);
    let (p50, p99) = percentiles(pings);
    let (d50, d99) = percentiles(direct);
    println!("warm round trips in one live `{backend_name}` cubicle, {runs} each (p50 / p99 ms)");
    println!("  exec `true` through the guest   {e50:>8.3} / {e99:>8.3}");
    println!("  protocol ping                   {p50:>8.3} / {p99:>8.3}");
    println!("  /bin/true spawned directly      {d50:>8.3} / {d99:>8.3}");
    println!(
        "  ratio exec/direct (p50)         {:>8.2}×",
        e50 / d50.max(1e-9)
    );
    if rss > 0 {
        println!(
            "  idle cubicle RSS (all its processes): {:.1} MiB",
            rss as f64 / 1024.0
        );
    }
    if pss > 0 {
        // RSS counts every shared page (libc, the binaries' text) once per
        // process; PSS divides each among the processes that map it.
        println!(
            "  idle cubicle PSS (all its processes): {:.1} MiB (goal ≤ 5)",
            pss as f64 / 1024.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Pause before each cold run: back to back, a run finds kernel state the
/// previous one left warm (a cgroup migration then skips its RCU grace
/// period), which a single `cubicle sandbox exec` never does.
const COLD_PAUSE: Duration = Duration::from_millis(50);

fn time_runs(
    runs: u32,
    prog: &std::path::Path,
    args: &[&str],
    pause: Duration,
) -> Result<Vec<Duration>> {
    let mut out = Vec::new();
    for _ in 0..runs {
        std::thread::sleep(pause);
        let t = Instant::now();
        let status = std::process::Command::new(prog)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()?;
        out.push(t.elapsed());
        if !status.success() {
            bail!("{} {} failed: {status}", prog.display(), args.join(" "));
        }
    }
    Ok(out)
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Resident (RSS) and proportional (PSS, from `smaps_rollup`; 0 where
/// unreadable) memory of a process and all its descendants, KiB.
fn tree_rss_kib(root: u32) -> (u64, u64) {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    let field = |file: &str, pid: u32, name: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    tree.iter().fold((0, 0), |(rss, pss), &pid| {
        (
            rss + field("status", pid, "VmRSS:"),
            pss + field("smaps_rollup", pid, "Pss:"),
        )
    })
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let p = |q: f64| ms(v[((v.len() - 1) as f64 * q).round() as usize]);
    (p(0.5), p(0.99))
}

fn scratch(name: &str) -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("cubicle-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
