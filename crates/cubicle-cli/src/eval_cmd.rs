//! `cubicle eval`: run a task suite live or from transcripts and write its
//! reports; compare two reports and fail on a regression.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cubicle_eval::backends::LocalFactory;
use cubicle_eval::compare::Thresholds;
use cubicle_eval::runner::{EvalRunner, Observer, ReplaySource, RunMode};
use cubicle_eval::task::{Suite, TaskSpec};
use cubicle_eval::{SuiteReport, TaskReport, render};
use cubicle_models::provider::ProviderSpec;

/// `cubicle eval …`.
#[derive(Debug, clap::Subcommand)]
pub enum EvalCommand {
    /// Run a suite (a folder of tasks, e.g. evals/knowledge-work) and write
    /// report.json, report.md and report.html.
    Run(EvalRunArgs),
    /// Compare two reports; exits non-zero when B regresses from A.
    Compare(EvalCompareArgs),
}

/// `cubicle eval run`.
#[derive(Debug, clap::Args)]
pub struct EvalRunArgs {
    /// The suite's folder.
    pub suite: PathBuf,
    /// Run live against PROVIDER:MODEL (e.g. anthropic:claude-sonnet-4-5).
    #[arg(long, conflicts_with = "replay")]
    pub model: Option<String>,
    /// Replay recorded transcripts: alone, each task's reference; with DIR,
    /// DIR/<task>.jsonl.
    #[arg(long, num_args = 0..=1, value_name = "DIR")]
    pub replay: Option<Option<PathBuf>>,
    /// Backend: auto (jail if usable, else host with a warning), jail or host.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Tasks run at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Where reports and each task's run folder go.
    #[arg(long, default_value = "cubicle-eval-out")]
    pub out: PathBuf,
    /// Only the tasks with these ids.
    #[arg(long = "task")]
    pub tasks: Vec<String>,
}

/// `cubicle eval compare`.
#[derive(Debug, clap::Args)]
pub struct EvalCompareArgs {
    /// The earlier report (the baseline).
    pub a: PathBuf,
    /// The later report.
    pub b: PathBuf,
    /// Largest allowed relative increase of tokens and cost (0.1 = 10 %).
    #[arg(long, default_value_t = 0.1)]
    pub tolerance: f64,
}

/// Runs `cubicle eval`.
pub async fn run(cmd: EvalCommand) -> Result<ExitCode> {
    match cmd {
        EvalCommand::Run(args) => run_suite(args).await,
        EvalCommand::Compare(args) => compare(&args),
    }
}

/// The computers for an eval: the named backend, or the best one.
pub fn factory(backend: &str) -> Result<LocalFactory> {
    let guest = crate::backend::guest_program()?;
    let launcher = match cubicle_sandbox::jail::locate_jail_init() {
        Ok(p) => (p, Vec::new()),
        Err(_) => (std::env::current_exe()?, vec!["__jail-init".to_owned()]),
    };
    match backend {
        "auto" => {
            let (factory, warning) = LocalFactory::best_with(guest, Some(launcher));
            if let Some(w) = warning {
                eprintln!("cubicle: warning: {w}");
            }
            Ok(factory)
        }
        "jail" => {
            crate::backend::resolve("auto")?;
            Ok(LocalFactory::Jail {
                launcher: launcher.0,
                launcher_args: launcher.1,
                guest,
            })
        }
        "host" => {
            eprintln!("cubicle: warning: the host backend does not isolate commands");
            Ok(LocalFactory::Host { guest })
        }
        other => bail!("unknown backend `{other}` — use auto, jail or host"),
    }
}

struct Progress;

impl Observer for Progress {
    fn task_started(&self, task: &TaskSpec) {
        eprintln!("  … {}", task.id);
    }
    fn task_finished(&self, r: &TaskReport) {
        let failed: Vec<&str> = r
            .grades
            .iter()
            .filter(|g| !g.passed)
            .map(|g| g.id.as_str())
            .collect();
        eprintln!(
            "  {} {} ({:.1} s){}",
            if r.passed { "✓" } else { "✗" },
            r.id,
            r.metrics.wall_ms as f64 / 1000.0,
            match (&r.error, failed.is_empty()) {
                (Some(e), _) => format!(" — {e}"),
                (None, false) => format!(" — failed: {}", failed.join(", ")),
                (None, true) => String::new(),
            }
        );
    }
}

async fn run_suite(args: EvalRunArgs) -> Result<ExitCode> {
    let mut suite = Suite::load(&args.suite)?;
    if !args.tasks.is_empty() {
        suite.tasks.retain(|t| args.tasks.contains(&t.id));
        if suite.tasks.is_empty() {
            bail!(
                "no task of {} has the ids {:?}",
                args.suite.display(),
                args.tasks
            );
        }
    }
    let mode = match (&args.model, &args.replay) {
        (Some(model), _) => RunMode::Live(ProviderSpec {
            model: Some(model.clone()),
            ..ProviderSpec::default()
        }),
        (None, Some(None)) => RunMode::Replay(ReplaySource::References),
        (None, Some(Some(dir))) => RunMode::Replay(ReplaySource::Dir(dir.clone())),
        (None, None) => bail!(
            "say how to play the model: --model PROVIDER:MODEL for a live run, or --replay for the reference transcripts"
        ),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let out = std::fs::canonicalize(&args.out)?;
    let runner = EvalRunner::new(Arc::new(factory(&args.backend)?), out.join("runs"))
        .jobs(args.jobs)
        .observer(Arc::new(Progress));
    eprintln!(
        "cubicle: running {} tasks of {}",
        suite.tasks.len(),
        suite.name
    );
    let report = runner.run_suite(&suite, &mode).await;
    report.save(&out.join("report.json"))?;
    std::fs::write(out.join("report.md"), render::markdown(&report))?;
    std::fs::write(out.join("report.html"), render::html(&report))?;
    let a = &report.aggregate;
    eprintln!(
        "cubicle: {}/{} tasks passed; reports in {} (report.json, report.md, report.html)",
        a.passed,
        a.tasks,
        out.display()
    );
    Ok(if a.passed == a.tasks {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn compare(args: &EvalCompareArgs) -> Result<ExitCode> {
    let a = SuiteReport::load(&args.a)?;
    let b = SuiteReport::load(&args.b)?;
    let thresholds = Thresholds {
        tokens: args.tolerance,
        cost: args.tolerance,
        ..Thresholds::default()
    };
    let regressions = cubicle_eval::compare(&a, &b, &thresholds);
    if regressions.is_empty() {
        eprintln!(
            "cubicle: no regression ({}/{} → {}/{} passed)",
            a.aggregate.passed, a.aggregate.tasks, b.aggregate.passed, b.aggregate.tasks
        );
        return Ok(ExitCode::SUCCESS);
    }
    for r in &regressions {
        eprintln!("regression: {}: {}", r.task, r.what);
    }
    eprintln!("cubicle: {} regressions", regressions.len());
    Ok(ExitCode::FAILURE)
}
