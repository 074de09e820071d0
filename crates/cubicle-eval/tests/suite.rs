//! The knowledge-work suite, replayed: every reference passes every grader,
//! every wrong variant fails the graders it names, every grader is proven
//! able to fail, and reports round-trip and compare.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cubicle_eval::backends::LocalFactory;
use cubicle_eval::compare::{Thresholds, compare};
use cubicle_eval::runner::{EvalRunner, ReplaySource, RunMode};
use cubicle_eval::task::Suite;
use cubicle_eval::{SuiteReport, render};

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../evals/knowledge-work")
}

fn factory() -> Arc<LocalFactory> {
    let (factory, warning) = LocalFactory::best().expect(
        "cubicle-guest not found — build it first: cargo build -p cubicle-guest -p cubicle-sandbox --bins",
    );
    if let Some(w) = warning {
        eprintln!("note: {w}");
    }
    Arc::new(factory)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reference_passes_and_every_wrong_variant_fails_its_graders() {
    let suite = Suite::load(&suite_dir()).unwrap();
    assert!(suite.tasks.len() >= 12, "{} tasks", suite.tasks.len());
    // The DOCX and PDF graders are in use (and proven able to fail below).
    for kind in ["docx_contains", "pdf_contains"] {
        assert!(
            suite
                .tasks
                .iter()
                .any(|t| t.graders.iter().any(|g| g.check.kind() == kind)),
            "no task uses {kind}"
        );
    }
    assert!(suite.tasks.iter().filter(|t| t.ambiguous).count() >= 2);
    let scratch = tempfile::tempdir().unwrap();
    let runner = EvalRunner::new(factory(), scratch.path()).jobs(2);

    let report = runner
        .run_suite(&suite, &RunMode::Replay(ReplaySource::References))
        .await;
    eprintln!(
        "replayed {} tasks on {} in {:.1} s",
        report.aggregate.tasks,
        report.backend,
        report.aggregate.metrics.wall_ms as f64 / 1000.0
    );
    let failures: Vec<String> = report
        .tasks
        .iter()
        .filter(|t| !t.passed)
        .map(|t| {
            format!(
                "{}: {:?} {:?}",
                t.id,
                t.error,
                t.grades.iter().filter(|g| !g.passed).collect::<Vec<_>>()
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "references failed:\n{}",
        failures.join("\n")
    );
    assert_eq!(report.aggregate.passed, suite.tasks.len() as u64);
    for t in report.tasks.iter().filter(|t| t.ambiguous) {
        assert!(t.metrics.questions >= 1, "{} never asked", t.id);
    }

    let mut problems = Vec::new();
    for task in &suite.tasks {
        let mut proven = std::collections::BTreeSet::new();
        for wrong in &task.wrong {
            let mode = RunMode::Replay(ReplaySource::File(task.dir.join(&wrong.transcript)));
            let run = runner.run_task(task, &mode).await.unwrap();
            for id in &wrong.fails {
                let grade = run.report.grades.iter().find(|g| &g.id == id).unwrap();
                if grade.passed {
                    problems.push(format!(
                        "{}/{}: grader {id} passed but must fail",
                        task.id, wrong.transcript
                    ));
                } else {
                    proven.insert(id.clone());
                }
            }
            assert!(
                !run.report.passed,
                "{}/{} passed",
                task.id, wrong.transcript
            );
        }
        for id in task.grader_ids() {
            if !proven.contains(&id) {
                problems.push(format!(
                    "{}: no wrong variant shows that grader {id} can fail",
                    task.id
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The rendered reports carry every task.
    let md = render::markdown(&report);
    let html = render::html(&report);
    for t in &suite.tasks {
        assert!(md.contains(&t.id) && html.contains(&t.id), "{}", t.id);
    }
    assert!(html.contains("<svg") && !html.contains("<script"));
}

fn sample_report() -> SuiteReport {
    let text = include_str!("data/report.json");
    serde_json::from_str(text).unwrap()
}

#[test]
fn report_json_round_trips() {
    let report = sample_report();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    report.save(&path).unwrap();
    assert_eq!(SuiteReport::load(&path).unwrap(), report);
}

#[test]
fn compare_finds_a_task_that_now_fails_and_a_costlier_one() {
    let old = sample_report();
    assert!(compare(&old, &old, &Thresholds::default()).is_empty());
    let mut new = old.clone();
    new.tasks[0].passed = false;
    new.tasks[0].grades[0].passed = false;
    new.tasks[1].metrics.output_tokens *= 2;
    new.aggregate = cubicle_eval::report::Aggregate::of(&new.tasks);
    let found = compare(&old, &new, &Thresholds::default());
    let text = format!("{found:?}");
    assert!(text.contains("passed before, fails now"), "{text}");
    assert!(text.contains("tokens"), "{text}");
    assert!(text.contains("success rate fell"), "{text}");
    // Getting better is not a regression.
    assert!(
        compare(&new, &old, &Thresholds::default())
            .iter()
            .all(|r| !r.what.contains("fails now"))
    );
}

/// Replay speed of a synthetic 1,000-step transcript whose every step is a
/// session tool (`todo_write`), so no tool time is spent in the cubicle.
/// Prints the figure; the goal is ≤ 5 s per 1,000 steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: cargo test -p cubicle-eval -- --ignored --nocapture"]
async fn replay_of_1000_steps() {
    use cubicle_eval::task::TaskSpec;
    let dir = tempfile::tempdir().unwrap();
    let task_dir = dir.path().join("steps");
    std::fs::create_dir_all(&task_dir).unwrap();
    std::fs::write(
        task_dir.join("task.toml"),
        "prompt = \"plan\"\n[budget]\nmax_turns = 2000\ntime_secs = 600\n[[graders]]\nid = \"plan\"\nkind = \"used_tool\"\ntool = \"todo_write\"\n",
    )
    .unwrap();
    let mut lines = vec![serde_json::json!({"format": "cubicle-transcript", "version": 1, "session_id": "s", "created_at": "t", "cubicle_version": "0", "model": "reference:synthetic", "backend": "jail", "grants": [], "workspace": "/workspace", "label": "reference"}).to_string()];
    let usage = serde_json::json!({"input_tokens": 0, "output_tokens": 0});
    for i in 0..1000 {
        let todo = serde_json::json!([{"content": format!("step {i}"), "status": "in_progress", "activeForm": "stepping"}]);
        lines.push(serde_json::json!({"seq": i + 1, "ts": "t", "type": "model_response", "message": {"role": "assistant", "content": [{"type": "tool_use", "id": format!("t{i}"), "name": "todo_write", "input": {"todos": todo}}]}, "usage": usage, "stop_reason": "tool_use", "model": "m", "duration_ms": 0}).to_string());
    }
    lines.push(serde_json::json!({"seq": 1001, "ts": "t", "type": "model_response", "message": {"role": "assistant", "content": [{"type": "text", "text": "done"}]}, "usage": usage, "stop_reason": "end_turn", "model": "m", "duration_ms": 0}).to_string());
    std::fs::write(task_dir.join("reference.jsonl"), lines.join("\n") + "\n").unwrap();
    let task = TaskSpec::load(&task_dir).unwrap();
    let runner = EvalRunner::new(factory(), dir.path().join("scratch"));
    let start = std::time::Instant::now();
    let run = runner
        .run_task(&task, &RunMode::Replay(ReplaySource::References))
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert!(run.report.passed, "{:?}", run.report);
    assert_eq!(run.report.metrics.tool_calls, 1000);
    println!(
        "replay of 1,000 steps (session tools only, cubicle start included): {:.2} s (goal ≤ 5 s)",
        elapsed.as_secs_f64()
    );
}

/// The host backend's paths are the host's; replay rewrites the recorded
/// `/workspace` and `/mnt/<name>` so a reference still produces its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_replays_on_the_host_backend_too() {
    let guest = cubicle_sandbox::locate::GuestProgram::locate().unwrap();
    let suite = Suite::load(&suite_dir()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let runner = EvalRunner::new(Arc::new(LocalFactory::Host { guest }), scratch.path());
    // `expense-policy` runs its skill's script from /mnt/.skills/<name>,
    // which on the host is the skill's folder in the run's scratch folder.
    for id in ["bank-reconcile", "expense-policy"] {
        let task = suite.tasks.iter().find(|t| t.id == id).unwrap();
        let run = runner
            .run_task(task, &RunMode::Replay(ReplaySource::References))
            .await
            .unwrap();
        assert!(run.report.passed, "{id}: {:#?}", run.report.grades);
    }
}

/// Skills on or off as a matrix cell, in replay: with skills on the task's
/// skill is offered, activated and followed; with skills off the `skill`
/// tool is not offered, so the recorded activation fails as an unknown
/// tool, the skill's folder is not there, and `used_skill` and the policy
/// grader fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_cell_with_skills_off_fails_the_skill_graders() {
    use cubicle_eval::matrix::{Matrix, MatrixReport};
    let mut suite = Suite::load(&suite_dir()).unwrap();
    suite.tasks.retain(|t| t.id == "expense-policy");
    assert_eq!(suite.tasks.len(), 1);
    let matrix = Matrix::parse(
        "[[cell]]\nname = \"skills\"\n\n[[cell]]\nname = \"no-skills\"\nskills = false\n",
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut cells = Vec::new();
    for cell in &matrix.cells {
        let runner = EvalRunner::new(factory(), scratch.path().join(&cell.name)).cell(cell.clone());
        cells.push(
            runner
                .run_suite(&suite, &RunMode::Replay(ReplaySource::References))
                .await,
        );
    }
    let report = MatrixReport::new(&suite.name, cells);
    let on = report
        .cell("skills")
        .unwrap()
        .task("expense-policy")
        .unwrap();
    assert!(on.passed, "{on:#?}");
    assert_eq!(on.metrics.tool_errors, 0, "{on:#?}");

    let off_report = report.cell("no-skills").unwrap();
    assert_eq!(off_report.cell.as_ref().unwrap().skills, Some(false));
    let off = off_report.task("expense-policy").unwrap();
    assert!(!off.passed);
    let failed: Vec<&str> = off
        .grades
        .iter()
        .filter(|g| !g.passed)
        .map(|g| g.id.as_str())
        .collect();
    assert!(failed.contains(&"used-skill"), "{off:#?}");
    assert!(failed.contains(&"policy"), "{off:#?}");
    let used = off.grades.iter().find(|g| g.id == "used-skill").unwrap();
    assert!(used.detail.contains("no tool named `skill`"), "{used:#?}");
    // The activation and the script it would have run both failed.
    assert!(off.metrics.tool_errors >= 2, "{off:#?}");
    let found = compare(
        report.cell("skills").unwrap(),
        off_report,
        &Thresholds::default(),
    );
    assert!(
        found.iter().any(|r| r.task == "expense-policy"),
        "{found:?}"
    );
    assert!(cubicle_eval::matrix::markdown(&report).contains("skills off"));
}

/// A 2-cell matrix over 2 tasks in replay: the cell without `ask_user`
/// makes the ambiguous task's question go unanswered, so its `asked`
/// grader fails there and only there, and comparing cell by cell shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_cell_without_ask_user_shows_up_as_a_regression() {
    use cubicle_eval::matrix::{Matrix, MatrixReport, compare_matrix};
    let mut suite = Suite::load(&suite_dir()).unwrap();
    suite
        .tasks
        .retain(|t| t.id == "ambiguous-currency" || t.id == "research-memo");
    assert_eq!(suite.tasks.len(), 2);
    let matrix = Matrix::parse(
        "[[cell]]\nname = \"baseline\"\n\n[[cell]]\nname = \"no-ask\"\nwithout_tools = [\"ask_user\"]\nsystem_prompt_append = \"Do not ask the person anything.\"\nskills = false\n",
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut cells = Vec::new();
    for cell in &matrix.cells {
        let runner = EvalRunner::new(factory(), scratch.path().join(&cell.name))
            .jobs(2)
            .cell(cell.clone());
        cells.push(
            runner
                .run_suite(&suite, &RunMode::Replay(ReplaySource::References))
                .await,
        );
    }
    let report = MatrixReport::new(&suite.name, cells);
    let base = report.cell("baseline").unwrap();
    let no_ask = report.cell("no-ask").unwrap();
    assert_eq!(base.aggregate.passed, 2, "{base:#?}");
    assert_eq!(no_ask.cell.as_ref().unwrap().skills, Some(false));
    let amb = no_ask.task("ambiguous-currency").unwrap();
    assert!(!amb.passed);
    let failed: Vec<&str> = amb
        .grades
        .iter()
        .filter(|g| !g.passed)
        .map(|g| g.id.as_str())
        .collect();
    assert_eq!(failed, ["asked"], "{amb:#?}");
    assert!(no_ask.task("research-memo").unwrap().passed);

    // Per cell: each cell against itself is clean; the no-ask cell against
    // the baseline is a regression of the ambiguous task.
    let path = scratch.path().join("matrix.json");
    report.save(&path).unwrap();
    let loaded = match cubicle_eval::matrix::AnyReport::load(&path).unwrap() {
        cubicle_eval::matrix::AnyReport::Matrix(m) => m,
        cubicle_eval::matrix::AnyReport::Suite(_) => panic!("read as a single report"),
    };
    assert_eq!(loaded, report);
    assert!(compare_matrix(&loaded, &report, &Thresholds::default()).is_empty());
    let found = compare(base, no_ask, &Thresholds::default());
    assert!(
        found
            .iter()
            .any(|r| r.task == "ambiguous-currency" && r.what.contains("asked")),
        "{found:?}"
    );
    let mut worse = report.clone();
    worse.cells[0] = no_ask.clone();
    worse.cells[0].cell.as_mut().unwrap().name = "baseline".into();
    let found = compare_matrix(&report, &worse, &Thresholds::default());
    assert!(
        found
            .iter()
            .any(|r| r.task == "baseline/ambiguous-currency"),
        "{found:?}"
    );
    let md = cubicle_eval::matrix::markdown(&report);
    let html = cubicle_eval::matrix::html(&report);
    for name in ["baseline", "no-ask"] {
        assert!(md.contains(&format!("## Cell `{name}`")), "{md}");
        assert!(html.contains(&format!("id=\"cell-{name}\"")));
    }
    assert!(md.contains("without ask_user"));
}
