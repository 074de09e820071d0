//! The web UI in a real browser: headless Chromium, driven by playwright-core
//! (`tests/browser/ui.mjs`), against a real server with the scripted model —
//! start a task, answer the question, approve the command, see the plan
//! complete, download and preview the output file, show a pairing QR code, the policy, the audit log, a skill imported, its preferences edited, a
//! plugin installed from a marketplace, and the model settings saved. Screenshots of each step go to
//! `target/browser-shots/`. Skips, saying why, when node, Chromium or
//! playwright-core is missing (CI installs them: see `.ci/run`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn chromium() -> Option<PathBuf> {
    std::env::var_os("CUBICLE_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| find_on_path(&["chromium", "chromium-browser", "google-chrome"]))
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Node, Chromium and playwright-core, or why the test cannot run.
fn prerequisites() -> Result<(PathBuf, PathBuf), String> {
    let node = find_on_path(&["node"]).ok_or("node is not installed (apt-get install nodejs)")?;
    let chromium = chromium().ok_or("Chromium is not installed (apt-get install chromium)")?;
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        return Err(format!(
            "playwright-core is not installed (cd {} && npm install)",
            browser_dir().display()
        ));
    }
    Ok((node, chromium))
}

fn shots_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp: keep the screenshots beside it.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("browser-shots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_end_to_end_in_chromium() {
    let (node, chromium) = match prerequisites() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    // With an audit log and a policy, so that every screen has its data.
    let f = serve_remote().await;
    let shots = shots_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let url = f.server.url();
    let src = f._dir.path().join("src/expense-report");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("SKILL.md"),
        cubicle_skills::scaffold("expense-report", Some("Builds expense reports.")),
    )
    .unwrap();
    let skill = cubicle_skills::Skill::load(&src, cubicle_skills::SkillSource::User).unwrap();
    let skill_file = f._dir.path().join("expense-report.skill");
    cubicle_skills::export(&skill, &skill_file, false).unwrap();
    let market = marketplace(f._dir.path(), "finance");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(node)
            .arg("ui.mjs")
            .current_dir(browser_dir())
            .env("CUBICLE_URL", url)
            .env("CHROMIUM", chromium)
            .env("SHOTS", &shots)
            .env("SKILL_FILE", &skill_file)
            .env("MARKET_DIR", &market)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no result from the browser script\n{stdout}\n{stderr}"));
    assert!(out.status.success(), "{seen:#}\n{stderr}");
    assert_eq!(
        seen["steps"],
        serde_json::json!([
            "new-task",
            "question",
            "approval",
            "plan-done",
            "output",
            "pair",
            "policy",
            "audit",
            "skills",
            "prefs",
            "plugin",
            "settings"
        ])
    );
    let question = seen["question"].as_str().unwrap();
    assert!(
        question.contains("Which currency?") && question.contains("EUR"),
        "{question}"
    );
    let approval = seen["approval"].as_str().unwrap();
    assert!(
        approval.contains("commands need approval (test rule)"),
        "{approval}"
    );
    let plan = seen["plan"].as_str().unwrap();
    assert!(
        plan.contains("☑ Ask the currency") && plan.contains("☑ Write the report"),
        "{plan}"
    );
    assert_eq!(seen["download_name"], "report.md");
    assert_eq!(seen["download"], "# Report\nTotal: 12 EUR\n");
    let preview = seen["preview"].as_str().unwrap();
    assert!(
        preview.contains("<h1>Report</h1>") && preview.contains("Total: 12 EUR"),
        "{preview}"
    );
    let code = seen["pair_code"].as_str().unwrap();
    assert!(
        code.len() == 9 && code.as_bytes()[4] == b'-',
        "pairing code {code:?}"
    );
    assert!(seen["qr_width"].as_u64().unwrap() >= 100, "{seen}");
    let policy = seen["policy"].as_str().unwrap();
    assert!(
        policy.contains("sandbox.allowed_backends")
            && policy.contains("managed (/etc/cubicle/managed.toml:2)"),
        "{policy}"
    );
    let skills = seen["skills"].as_str().unwrap();
    assert!(
        skills.contains("expense-report") && skills.contains("Builds expense reports."),
        "{skills}"
    );
    // The preference went to the file the skill reads; the settings to the
    // store, and the key never came back to the page.
    let prefs =
        cubicle_skills::Preferences::load(&f._dir.path().join("preferences"), "expense-report")
            .unwrap();
    assert_eq!(prefs.get("currency").as_deref(), Some("EUR"), "{seen}");
    let settings: Value = f
        .get("/api/settings")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["provider"], "openai");
    assert_eq!(settings["model"], "qwen2.5-coder:7b");
    assert_eq!(settings["api_key_stored"], true);
    assert_eq!(seen["settings_key_field"], "");
    assert!(
        seen["settings_key_status"]
            .as_str()
            .unwrap()
            .contains("A key is stored"),
        "{seen}"
    );
    let plugins = seen["plugins"].as_str().unwrap();
    assert!(
        plugins.contains("invoices 1.2.0") && plugins.contains("Installed"),
        "{plugins}"
    );
    assert!(
        f._dir
            .path()
            .join("plugins/installed/finance/invoices/.claude-plugin/plugin.json")
            .is_file()
    );
    let audit = seen["audit"].as_str().unwrap();
    assert!(audit.contains("The log is intact"), "{audit}");
    assert_eq!(seen["page_errors"], serde_json::json!([]));
    for n in [
        "01-new-task",
        "02-question",
        "03-approval",
        "04-plan-done",
        "05-output",
        "06-pair",
        "07-policy",
        "08-audit",
        "09-skills",
        "10-prefs",
        "11-plugin",
        "12-settings",
    ] {
        assert!(
            shots_dir().join(format!("{n}.png")).is_file(),
            "no screenshot {n}"
        );
    }
    eprintln!(
        "first render {} ms (cold); warm median: app {} ms, static pairing page {} ms; screenshots in {}",
        seen["first_render_ms"],
        seen["render_ms"]["app"],
        seen["render_ms"]["pair_page"],
        shots_dir().display()
    );
    f.server.shutdown().await;
}
