//! `cubicle demo`: the expense-report task end to end in a real cubicle, with
//! no API key. The receipts and the hand-written reference transcript ship
//! inside the binary; the model's side is that recording, every command and
//! file it makes really runs, and the report lands in a folder you can open.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use cubicle_eval::grader::{Check, GraderSpec};
use cubicle_eval::runner::{EvalRunner, Observer, ReplaySource, RunMode};
use cubicle_eval::task::{Budget, GrantSpec, TaskSpec};
use cubicle_protocol::conversation::ContentBlock;
use cubicle_protocol::events::{Event, EventMsg};
use cubicle_protocol::transcript::Record;

/// The receipts, by file name.
const RECEIPTS: &[(&str, &str)] = &[
    (
        "2026-09.csv",
        include_str!("../../../examples/expenses/receipts/2026-09.csv"),
    ),
    (
        "2026-10.csv",
        include_str!("../../../examples/expenses/receipts/2026-10.csv"),
    ),
    (
        "2026-11.csv",
        include_str!("../../../examples/expenses/receipts/2026-11.csv"),
    ),
];

/// The hand-written solution that plays the model's side.
const REFERENCE: &str = include_str!("../../../examples/expenses/reference.jsonl");

const PROMPT: &str = "Turn the receipts in my Receipts folder into an expense report: one CSV with every receipt and its month, totals per category, and a short summary I can send to finance.";

/// `cubicle demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder for the receipts, the report and the session's transcript.
    #[arg(long, default_value = "cubicle-demo-output")]
    pub out: PathBuf,
    /// Backend: auto (jail if usable, else host with a warning), jail or host.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Show the demo in the web UI instead of the terminal.
    #[arg(long)]
    pub ui: bool,
    /// With --ui: print the address but do not open a browser.
    #[arg(long)]
    pub no_open: bool,
}

struct Terminal;

impl Observer for Terminal {
    fn computer_started(&self, _task: &TaskSpec, info: &cubicle_sandbox::ComputerInfo) {
        eprintln!(
            "▸ cubicle started: backend {}{}; the receipts are at {} (read-only), scratch space at {}",
            info.backend,
            if info.isolated {
                ""
            } else {
                " — NOT isolated"
            },
            info.grants.first().map_or("?", |g| g.path.as_str()),
            info.workspace
        );
    }

    fn event(&self, _task: &TaskSpec, msg: &EventMsg) {
        match &msg.event {
            Event::AssistantMessage { message, .. } => {
                for block in &message.content {
                    if let ContentBlock::Text { text } = block
                        && !text.trim().is_empty()
                    {
                        eprintln!(
                            "  model (recorded): {}",
                            text.lines().next().unwrap_or_default()
                        );
                    }
                }
            }
            Event::ToolCallStarted { summary, .. } => eprintln!("  ▸ {summary}"),
            Event::ToolCallFinished {
                is_error: true,
                output,
                ..
            } => eprintln!("    ✗ {}", output.lines().next().unwrap_or_default()),
            _ => {}
        }
    }
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let out = std::fs::canonicalize(&args.out)?;
    let receipts = out.join("receipts");
    std::fs::create_dir_all(&receipts)?;
    for (name, text) in RECEIPTS {
        std::fs::write(receipts.join(name), text)?;
    }
    let reference = out.join(".reference.jsonl");
    std::fs::write(&reference, REFERENCE)?;
    if args.ui {
        return run_in_ui(&args, &receipts, &reference).await;
    }
    let path = |p: &str| p.to_owned();
    let task = TaskSpec {
        id: "expense-report".into(),
        category: "finance".into(),
        prompt: PROMPT.into(),
        ambiguous: false,
        grants: vec![GrantSpec {
            name: "receipts".into(),
            fixtures: Some("receipts".into()),
            writable: false,
        }],
        budget: Budget::default(),
        tools: None,
        answers: Default::default(),
        graders: vec![
            GraderSpec {
                id: Some("totals".into()),
                check: Check::TextContains {
                    path: path("/workspace/report/totals.csv"),
                    all: vec!["TOTAL,796.25".into(), "lodging,410.40".into()],
                    none: vec![],
                    ignore_case: false,
                },
            },
            GraderSpec {
                id: Some("summary".into()),
                check: Check::TextContains {
                    path: path("/workspace/report/summary.md"),
                    all: vec!["796.25 EUR".into()],
                    none: vec![],
                    ignore_case: false,
                },
            },
            GraderSpec {
                id: Some("stayed in its folders".into()),
                check: Check::StayedInGrants,
            },
        ],
        wrong: vec![],
        dir: out.clone(),
    };
    eprintln!("cubicle demo: an expense report from three months of receipts.");
    eprintln!(
        "  The model's side is a RECORDING (a hand-written reference transcript, not a live model);"
    );
    eprintln!("  every command and file write below really runs, inside a cubicle.\n");
    let factory = crate::eval_cmd::factory(&args.backend)?;
    let store = cubicle_agent::Store::from_env(|k| std::env::var(k).ok())?;
    let audit = crate::safety::open_audit(store.root())?;
    let audit_dir = audit.dir().to_owned();
    let first_seq = audit.next_seq();
    let runner = EvalRunner::new(Arc::new(factory), out.join(".run"))
        .observer(Arc::new(Terminal))
        .audit(audit.clone());
    let run = runner
        .run_task(&task, &RunMode::Replay(ReplaySource::File(reference)))
        .await?;
    let report_dir = out.join("report");
    copy_dir(&run.paths.workspace.join("report"), &report_dir)?;
    std::fs::copy(&run.report.transcript, out.join("transcript.jsonl"))?;

    eprintln!("\nWhat the session recorded (transcript.jsonl):");
    summarise(Path::new(&run.report.transcript))?;
    let written = audit.next_seq().saturating_sub(first_seq);
    drop(runner);
    drop(audit);
    let records = cubicle_audit::tail(&audit_dir, usize::try_from(written).unwrap_or(usize::MAX))?;
    eprintln!("\nWhat the audit log recorded ({}):", audit_dir.display());
    eprint!("{}", audit_summary(&records));
    eprintln!(
        "  (files made by commands, such as totals.csv, show in the report folder below; the log records the write tool's.)"
    );
    eprintln!(
        "  `cubicle audit verify` checks that these records and every one before them are unchanged."
    );
    eprintln!("\nChecks on the output:");
    for g in &run.report.grades {
        eprintln!(
            "  {} {} — {}",
            if g.passed { "✓" } else { "✗" },
            g.id,
            g.detail
        );
    }
    eprintln!("\nThe report is in {}:", report_dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&report_dir)?
        .filter_map(|e| e.ok())
        .collect();
    files.sort_by_key(|e| e.file_name());
    for f in files {
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        eprintln!("  {} ({size} bytes)", f.file_name().to_string_lossy());
    }
    eprintln!(
        "\nTo run it live with a real model:\n  ANTHROPIC_API_KEY=… cubicle run \"{PROMPT}\" --grant {}",
        receipts.display()
    );
    Ok(if run.report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("no output in {}", from.display()))?
    {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Prints the model turns, tool calls with the gate's decisions, and files written.
fn summarise(transcript: &Path) -> Result<()> {
    let t = cubicle_agent::Transcript::load(transcript)?;
    let (mut turns, mut allowed, mut denied, mut errors) = (0, 0, 0, 0);
    for e in &t.entries {
        match &e.record {
            Record::ModelResponse { .. } => turns += 1,
            Record::Decision { allowed: true, .. } => allowed += 1,
            Record::Decision { allowed: false, .. } => denied += 1,
            Record::ToolResult { is_error: true, .. } => errors += 1,
            _ => {}
        }
    }
    eprintln!(
        "  {turns} model turns (recorded), {allowed} tool calls allowed, {denied} denied, {errors} failed"
    );
    for e in &t.entries {
        if let Record::ModelResponse { message, .. } = &e.record {
            for b in &message.content {
                if let ContentBlock::ToolUse { name, input, .. } = b {
                    let what = input
                        .get("command")
                        .or_else(|| input.get("path"))
                        .and_then(|v| v.as_str())
                        .unwrap_or("");
                    if !what.is_empty() {
                        eprintln!("  {name}: {}", what.lines().next().unwrap_or_default());
                    }
                }
            }
        }
    }
    Ok(())
}

/// A short account of audit records: how many of each kind, the files
/// written (size, SHA-256 prefix) and the network requests.
fn audit_summary(records: &[cubicle_audit::Record]) -> String {
    use cubicle_audit::RecordKind;
    use std::fmt::Write as _;
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in records {
        *counts.entry(r.kind.name()).or_default() += 1;
    }
    let mut s = String::new();
    let (first, last) = (
        records.first().map_or(0, |r| r.seq),
        records.last().map_or(0, |r| r.seq),
    );
    let kinds: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(
        s,
        "  {} records (#{first}–#{last}): {}",
        records.len(),
        if kinds.is_empty() {
            "none".to_owned()
        } else {
            kinds.join(", ")
        }
    );
    let mut network = 0;
    for r in records {
        match &r.kind {
            RecordKind::FileWritten { path, size, sha256 } => {
                let _ = writeln!(
                    s,
                    "  file written: {path} ({size} bytes, sha256 {}…)",
                    sha256.get(..12).unwrap_or(sha256)
                );
            }
            RecordKind::NetworkRequest {
                host,
                port,
                allowed,
                bytes_up,
                bytes_down,
                ..
            } => {
                network += 1;
                let _ = writeln!(
                    s,
                    "  network: {host}:{port} {} ({bytes_up} bytes up, {bytes_down} down)",
                    if *allowed { "allowed" } else { "refused" }
                );
            }
            _ => {}
        }
    }
    if network == 0 {
        s.push_str(
            "  network: no requests (the model's side is a recording; the cubicle made none)\n",
        );
    }
    s
}

/// `cubicle demo --ui`: the same recording, started as a session of a local
/// server so it can be watched in the browser; the person opens the printed
/// link (which carries the server's token) and sees it run.
async fn run_in_ui(args: &DemoArgs, receipts: &Path, reference: &Path) -> Result<ExitCode> {
    let starter = Arc::new(DemoStarter {
        receipts: receipts.to_owned(),
        reference: reference.to_owned(),
        backend: args.backend.clone(),
    });
    let store = cubicle_agent::Store::from_env(|k| std::env::var(k).ok())?;
    let server = cubicle_server::Server::bind(
        std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
        starter,
        store,
    )
    .await?;
    // Start the session through the server's own API, as the page would.
    let url = format!("http://{}/api/sessions", server.addr());
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(server.token())
        .json(&serde_json::json!({ "task": PROMPT, "grants": [] }))
        .send()
        .await
        .context("starting the demo session")?;
    if !response.status().is_success() {
        anyhow::bail!(
            "the server refused the demo session: {}",
            response.text().await.unwrap_or_default()
        );
    }
    let body: serde_json::Value = response.json().await?;
    let id = body
        .get("id")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let link = format!("{}&session={id}", server.url());
    eprintln!("cubicle demo: the expense report is running as session {id}.");
    eprintln!("  The model's side is a RECORDING; every command really runs in a cubicle.");
    eprintln!("  Watch it here (the link is your key — do not share it):\n  {link}");
    eprintln!("  Press Ctrl-C to stop the server.");
    if !args.no_open {
        let _ = std::process::Command::new("xdg-open")
            .arg(&link)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Starts the recorded expense report whatever the page asks for: the demo
/// has one task.
struct DemoStarter {
    receipts: PathBuf,
    reference: PathBuf,
    backend: String,
}

#[async_trait::async_trait]
impl cubicle_server::SessionStarter for DemoStarter {
    async fn start(
        &self,
        _req: cubicle_server::StartRequest,
    ) -> std::result::Result<cubicle_server::StartedSession, String> {
        let mut opts = crate::cli::SessionOpts::for_front_end(
            vec![format!("{}:ro", self.receipts.display())],
            self.backend.clone(),
        );
        opts.provider = Some("replay".into());
        opts.replay = Some(self.reference.clone());
        crate::drive::start_for_server(&opts, PROMPT).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use cubicle_audit::{AuditLog, AuditOptions, RecordKind};

    #[test]
    fn the_audit_summary_counts_kinds_and_lists_files_and_requests() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
        log.append(
            Some("s"),
            RecordKind::FileWritten {
                path: "/workspace/report/totals.csv".into(),
                size: 120,
                sha256: "ab".repeat(32),
            },
        )
        .unwrap();
        log.append(
            Some("s"),
            RecordKind::FileWritten {
                path: "/workspace/report/summary.md".into(),
                size: 80,
                sha256: "cd".repeat(32),
            },
        )
        .unwrap();
        let records = cubicle_audit::tail(dir.path(), 10).unwrap();
        let text = audit_summary(&records);
        assert!(text.contains("2 records (#1–#2): 2 file_written"), "{text}");
        assert!(
            text.contains("/workspace/report/totals.csv (120 bytes, sha256 abababababab…)"),
            "{text}"
        );
        assert!(text.contains("network: no requests"), "{text}");
        log.append(
            None,
            RecordKind::NetworkRequest {
                host: "pypi.org".into(),
                port: 443,
                allowed: false,
                rule: None,
                reason: "not allowed".into(),
                bytes_up: 0,
                bytes_down: 0,
            },
        )
        .unwrap();
        let text = audit_summary(&cubicle_audit::tail(dir.path(), 10).unwrap());
        assert!(text.contains("network: pypi.org:443 refused"), "{text}");
        assert!(!text.contains("no requests"), "{text}");
    }
}
