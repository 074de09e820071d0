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
    let path = file.display().to_string();
    let computer = backend::start(backend_name, Vec::new(), workspace.clone()).await?;

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
    });
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

/// `cubicle sandbox exec -- true` against `sh -c true`, whole processes.
async fn exec(runs: u32, backend_name: &str) -> Result<ExitCode> {
    let me = std::env::current_exe().context("finding this binary")?;
    let time = |prog: &std::path::Path, args: &[&str]| -> Result<Vec<Duration>> {
        let mut out = Vec::new();
        for _ in 0..runs {
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
    };
    let cubicle = time(
        &me,
        &["sandbox", "exec", "--backend", backend_name, "--", "true"],
    )?;
    let sh = time(std::path::Path::new("/bin/sh"), &["-c", "true"])?;
    let (c50, c99) = percentiles(cubicle);
    let (s50, s99) = percentiles(sh);
    println!("cold command, {runs} runs each (p50 / p99)");
    println!("  cubicle sandbox exec --backend {backend_name} -- true: {c50:>8.2} / {c99:>8.2} ms");
    println!("  sh -c true:                                  {s50:>8.2} / {s99:>8.2} ms");
    println!(
        "  ratio (p50):                                 {:>8.1}×",
        c50 / s50.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
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
