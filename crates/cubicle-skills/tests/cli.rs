//! Drives `cubicle-cli`'s `skill_cmd.rs` (compiled here from its source, since
//! it depends only on this crate, clap and anyhow) against temporary folders.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../cubicle-cli/src/skill_cmd.rs"]
#[allow(dead_code)]
mod skill_cmd;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use cubicle_skills::SkillRoots;
use skill_cmd::{SkillCommand, SkillEnv, run_in};

#[derive(clap::Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: SkillCommand,
}

fn env(root: &Path) -> SkillEnv {
    SkillEnv {
        roots: SkillRoots {
            managed: vec![root.join("etc/skills")],
            user: vec![root.join("config/skills")],
            projects: Vec::new(),
            plugins: Vec::new(),
        },
        prefs_dir: root.join("config/preferences"),
    }
}

fn run(env: &SkillEnv, args: &[&str]) -> (ExitCode, String) {
    let cli = Cli::try_parse_from(std::iter::once("skill").chain(args.iter().copied())).unwrap();
    let mut out = Vec::new();
    let code = run_in(cli.cmd, env, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

fn run_err(env: &SkillEnv, args: &[&str]) -> String {
    let cli = Cli::try_parse_from(std::iter::once("skill").chain(args.iter().copied())).unwrap();
    run_in(cli.cmd, env, &mut Vec::new())
        .unwrap_err()
        .to_string()
}

#[test]
fn new_list_show_validate_prefs_export_import() {
    let tmp = tempfile::tempdir().unwrap();
    let env = env(tmp.path());
    let (code, out) = run(
        &env,
        &[
            "new",
            "expense-report",
            "--description",
            "Builds expense reports from receipts.",
        ],
    );
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.starts_with("Created "), "{out}");
    let dir = tmp.path().join("config/skills/expense-report");
    let (code, out) = run(&env, &["validate", dir.to_str().unwrap()]);
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.ends_with("skill `expense-report` is valid\n"), "{out}");

    let (_, out) = run(&env, &["list"]);
    assert!(
        out.starts_with("expense-report           user     Builds expense reports"),
        "{out}"
    );

    let (_, out) = run(&env, &["prefs", "expense-report", "set", "currency", "EUR"]);
    assert!(out.contains("currency = \"EUR\""), "{out}");
    let (_, out) = run(&env, &["prefs", "expense-report"]);
    assert!(out.contains("currency = \"EUR\""), "{out}");
    let (_, out) = run(&env, &["show", "expense-report"]);
    assert!(
        out.contains("in cubicle:  /mnt/.skills/expense-report (read-only)"),
        "{out}"
    );
    assert!(out.contains("(1 set)"), "{out}");
    let (_, out) = run(&env, &["prefs", "expense-report", "unset", "currency"]);
    assert_eq!(out, "expense-report: removed currency\n");

    let file = tmp.path().join("er.skill");
    let (_, out) = run(
        &env,
        &["export", "expense-report", "-o", file.to_str().unwrap()],
    );
    assert!(out.contains("were not included"), "{out}");
    let err = run_err(&env, &["import", file.to_str().unwrap()]);
    assert!(err.contains("already installed"), "{err}");
    let (_, out) = run(
        &env,
        &["import", file.to_str().unwrap(), "--as", "expenses-copy"],
    );
    assert!(out.starts_with("Installed `expenses-copy`"), "{out}");

    let err = run_err(&env, &["new", "Bad Name"]);
    assert!(err.contains("invalid skill name"), "{err}");
    let err = run_err(&env, &["show", "nope"]);
    assert!(
        err.contains("installed: expense-report, expenses-copy"),
        "{err}"
    );
}

#[test]
fn export_refusal_names_the_finding() {
    let tmp = tempfile::tempdir().unwrap();
    let env = env(tmp.path());
    run(&env, &["new", "mailer"]);
    std::fs::write(
        tmp.path().join("config/skills/mailer/sig.txt"),
        "bob@acme-corp.de\n",
    )
    .unwrap();
    let file = tmp.path().join("m.skill");
    let err = run_err(&env, &["export", "mailer", "-o", file.to_str().unwrap()]);
    assert!(err.contains("sig.txt:1: e-mail address"), "{err}");
    assert!(!err.contains("bob@"), "{err}");
    let (_, out) = run(
        &env,
        &["export", "mailer", "-o", file.to_str().unwrap(), "--force"],
    );
    assert!(
        out.contains("warning (exported anyway, --force): sig.txt:1: e-mail address"),
        "{out}"
    );
}

#[test]
fn validate_reports_a_broken_skill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("SKILL.md"),
        "---\nname: broken\ndescription: [\n---\n",
    )
    .unwrap();
    let (code, out) = run(
        &env(tmp.path()),
        &["validate", dir.join("SKILL.md").to_str().unwrap()],
    );
    assert_eq!(code, ExitCode::FAILURE);
    assert!(out.starts_with("error: "), "{out}");
}
