//! `cubicle doctor`: what this machine offers each backend, and — with
//! `--escape-suite` — a live scorecard of attacks against a real cubicle,
//! the same probes the test suite runs.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use cubicle_sandbox::jail::escape_suite::{self, Backend, Category, Fixtures};
use cubicle_sandbox::jail::{Limits, probe};

use crate::backend;
use crate::cli::DoctorArgs;

/// Runs `cubicle doctor`.
pub async fn run(args: DoctorArgs) -> Result<ExitCode> {
    let features = probe::probe();
    println!("Kernel features for the jail backend:");
    for f in &features {
        let mark = match (f.available, f.required) {
            (true, _) => "ok     ",
            (false, true) => "MISSING",
            (false, false) => "absent ",
        };
        println!("  {mark} {:<28} {}", f.name, f.detail);
    }
    let jail = probe::jail_usable(&features);
    println!();
    println!(
        "Backends: jail {}, host available (no isolation)",
        if jail { "usable" } else { "NOT usable" }
    );
    match backend::vm_with_kvm() {
        Ok(()) => println!("VM with KVM: usable"),
        Err(why) => println!("VM with KVM: not used by `auto` ({why})"),
    }
    match backend::resolve("auto") {
        Ok(b) => println!("`--backend auto` uses: {b}"),
        Err(e) => println!("`--backend auto`: {e}"),
    }
    if !args.escape_suite {
        return Ok(if jail {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    escape_scorecard(&args.backend).await
}

async fn escape_scorecard(backend_name: &str) -> Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("cubicle-doctor-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut fixtures = Fixtures::create(&dir.join("fixtures"), &Limits::default())
        .context("setting up the escape suite's host-side targets")?;
    let computer = backend::start(
        backend_name,
        fixtures.grants(),
        dir.join("workspace"),
        &backend::BackendOptions::default(),
    )
    .await?;
    let resolved = backend::resolve(backend_name)?;
    let (plan, not_applicable) = escape_suite::plan(if resolved == "vm" {
        Backend::Vm
    } else {
        Backend::Jail
    });
    println!();
    println!("Escape suite against `{resolved}`:");
    println!(
        "  {:<34} {:<12} {:<10} expected",
        "probe", "category", "result"
    );
    let mut contained = 0;
    for planned in &plan {
        let p = &planned.probe;
        let o = escape_suite::run_probe(&*computer, &fixtures, p).await;
        if o.contained {
            contained += 1;
        }
        println!(
            "  {:<34} {:<12} {:<10} {}",
            o.name,
            format!("{:?}", o.category),
            if o.contained { "contained" } else { "ESCAPED" },
            o.expected
        );
        if let Some(why) = planned.adapted {
            println!("      (adapted for this backend: {why})");
        }
        if !o.contained {
            println!("      observed: {}", o.detail);
        }
        if p.category == Category::Resources
            && let Err(e) =
                escape_suite::session_still_usable(&*computer, Duration::from_secs(30)).await
        {
            println!("      the session did not recover: {e}");
        }
    }
    for (name, why) in &not_applicable {
        println!("  {name:<34} {:<12} {:<10} {why}", "", "n/a");
    }
    let host = fixtures.verify_host_untouched();
    let _ = computer.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    println!();
    println!(
        "{contained}/{} probes contained ({} not applicable to this backend)",
        plan.len(),
        not_applicable.len()
    );
    for h in &host {
        println!("host problem: {h}");
    }
    Ok(if contained == plan.len() && host.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
