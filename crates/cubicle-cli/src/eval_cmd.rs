//! `cubicle eval`: run a task suite live or from transcripts and write its
//! reports; compare two reports and fail on a regression.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cubicle_eval::backends::LocalFactory;
use cubicle_eval::compare::Thresholds;
use cubicle_eval::matrix::{AnyReport, Matrix, MatrixReport, compare_matrix};
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
    /// A tweak matrix (TOML, `[[cell]]`s: name, system_prompt or
    /// system_prompt_append, without_tools, skills (on or off: the skills
    /// tasks ship in their skills/ folders), backend): each cell is a full
    /// run, reported in OUT/cells/<name>/ and together in OUT/report.*.
    #[arg(long, value_name = "FILE")]
    pub matrix: Option<PathBuf>,
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
    if let Some(file) = &args.matrix {
        return run_matrix(&args, file, &suite, &mode, &out).await;
    }
    let runner = EvalRunner::new(Arc::new(factory(&args.backend)?), out.join("runs"))
        .jobs(args.jobs)
        .observer(Arc::new(Progress));
    eprintln!(
        "cubicle: running {} tasks of {}",
        suite.tasks.len(),
        suite.name
    );
    let report = runner.run_suite(&suite, &mode).await;
    write_reports(&report, &out)?;
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

fn write_reports(report: &SuiteReport, dir: &std::path::Path) -> Result<()> {
    report.save(&dir.join("report.json"))?;
    std::fs::write(dir.join("report.md"), render::markdown(report))?;
    std::fs::write(dir.join("report.html"), render::html(report))?;
    Ok(())
}

/// Runs the suite once per cell of the matrix in `file`.
async fn run_matrix(
    args: &EvalRunArgs,
    file: &std::path::Path,
    suite: &Suite,
    mode: &RunMode,
    out: &std::path::Path,
) -> Result<ExitCode> {
    let matrix = Matrix::load(file)?;
    let mut reports = Vec::new();
    for cell in &matrix.cells {
        let backend = cell.backend.as_deref().unwrap_or(&args.backend);
        let dir = out.join("cells").join(&cell.name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        eprintln!(
            "cubicle: cell {} ({}): running {} tasks of {}",
            cell.name,
            cell.describe(),
            suite.tasks.len(),
            suite.name
        );
        let runner = EvalRunner::new(Arc::new(factory(backend)?), dir.join("runs"))
            .jobs(args.jobs)
            .observer(Arc::new(Progress))
            .cell(cell.clone());
        let report = runner.run_suite(suite, mode).await;
        write_reports(&report, &dir)?;
        reports.push(report);
    }
    let report = MatrixReport::new(&suite.name, reports);
    report.save(&out.join("report.json"))?;
    std::fs::write(
        out.join("report.md"),
        cubicle_eval::matrix::markdown(&report),
    )?;
    std::fs::write(out.join("report.html"), cubicle_eval::matrix::html(&report))?;
    let mut all_passed = true;
    for r in &report.cells {
        let a = &r.aggregate;
        all_passed &= a.passed == a.tasks;
        eprintln!(
            "cubicle: cell {}: {}/{} tasks passed",
            cubicle_eval::matrix::cell_name(r),
            a.passed,
            a.tasks
        );
    }
    eprintln!(
        "cubicle: reports in {} (report.json, report.md, report.html; each cell's in cells/<name>/)",
        out.display()
    );
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn compare(args: &EvalCompareArgs) -> Result<ExitCode> {
    let thresholds = Thresholds {
        tokens: args.tolerance,
        cost: args.tolerance,
        ..Thresholds::default()
    };
    let (a, b, regressions) = match (AnyReport::load(&args.a)?, AnyReport::load(&args.b)?) {
        (AnyReport::Suite(a), AnyReport::Suite(b)) => {
            let found = cubicle_eval::compare(&a, &b, &thresholds);
            (a.aggregate, b.aggregate, found)
        }
        (AnyReport::Matrix(a), AnyReport::Matrix(b)) => {
            let found = compare_matrix(&a, &b, &thresholds);
            let sum = |m: &MatrixReport| {
                let tasks: Vec<TaskReport> = m.cells.iter().flat_map(|c| c.tasks.clone()).collect();
                cubicle_eval::report::Aggregate::of(&tasks)
            };
            (sum(&a), sum(&b), found)
        }
        _ => bail!(
            "one report is a matrix and the other is not; compare a cell's own report (cells/<name>/report.json) instead"
        ),
    };
    if regressions.is_empty() {
        eprintln!(
            "cubicle: no regression ({}/{} → {}/{} passed)",
            a.passed, a.tasks, b.passed, b.tasks
        );
        return Ok(ExitCode::SUCCESS);
    }
    for r in &regressions {
        eprintln!("regression: {}: {}", r.task, r.what);
    }
    eprintln!("cubicle: {} regressions", regressions.len());
    Ok(ExitCode::FAILURE)
}
