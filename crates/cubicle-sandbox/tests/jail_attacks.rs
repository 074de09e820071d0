//! The escape suite against a real jail: every probe of
//! `cubicle_sandbox::jail::escape_suite::PROBES` must be contained, the host
//! must be untouched afterwards, and after every resource attack the same
//! session must still run `echo ok`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jail_common;

use std::time::{Duration, Instant};

use cubicle_sandbox::Computer;
use cubicle_sandbox::jail::escape_suite::{self, Category, Fixtures, PROBES};

#[test]
fn every_escape_probe_is_contained() {
    require_jail!();
    // Host secrets the jail must not see. Set before any thread exists.
    for (k, v) in [
        ("ANTHROPIC_API_KEY", "sk-ant-test-SECRETKEY"),
        ("AWS_SECRET_ACCESS_KEY", "aws-SECRETKEY"),
        ("SSH_AUTH_SOCK", "/tmp/ssh-XXXX/agent.1"),
    ] {
        // SAFETY: this test binary has this one test and no runtime has
        // started yet, so no other thread reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run_suite());
}

async fn run_suite() {
    let dir = tempfile::tempdir().unwrap();
    let limits = jail_common::test_limits();
    let mut fixtures = Fixtures::create(&dir.path().join("fixtures"), &limits).unwrap();
    let workspace = dir.path().join("workspace");
    let jail = jail_common::start(&workspace, fixtures.grants()).await;

    let mut failures = Vec::new();
    let mut contained = 0;
    for probe in PROBES {
        let started = Instant::now();
        let outcome = escape_suite::run_probe(&jail, &fixtures, probe).await;
        let took = started.elapsed();
        eprintln!(
            "{:<34} {:<11} {:<9} {:>6} ms  {}",
            outcome.name,
            format!("{:?}", outcome.category),
            if outcome.contained {
                "contained"
            } else {
                "FAILED"
            },
            took.as_millis(),
            outcome.detail.chars().take(160).collect::<String>()
        );
        if outcome.contained {
            contained += 1;
        } else {
            failures.push(format!(
                "{}: expected {} — {}",
                outcome.name, outcome.expected, outcome.detail
            ));
        }
        if probe.category == Category::Resources || probe.name == "kill-guest-init" {
            // The host must stay responsive and the same session usable.
            if let Err(e) = escape_suite::session_still_usable(&jail, Duration::from_secs(30)).await
            {
                failures.push(format!("{}: {e}", probe.name));
                break;
            }
            let host = Instant::now();
            let status = std::process::Command::new("true").status().unwrap();
            assert!(status.success() && host.elapsed() < Duration::from_secs(10));
        }
    }
    let host_problems = fixtures.verify_host_untouched();
    jail.stop().await.unwrap();
    eprintln!("escape suite: {contained}/{} contained", PROBES.len());
    assert!(PROBES.len() >= 40);
    assert!(
        failures.is_empty() && host_problems.is_empty(),
        "not contained:\n{}\nhost problems:\n{}",
        failures.join("\n"),
        host_problems.join("\n")
    );
}
