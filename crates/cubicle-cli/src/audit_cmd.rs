//! `cubicle audit verify|tail|export`: reading the tamper-evident record.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use anyhow::{Result, bail};
use cubicle_agent::Store;

use crate::cli::AuditCommand;

/// Runs an `audit` subcommand.
pub async fn run(cmd: AuditCommand) -> Result<ExitCode> {
    let store = Store::from_env(|k| std::env::var(k).ok())?;
    let dir = store.root().join("audit");
    if !dir.is_dir() {
        println!("No audit log yet ({} does not exist).", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    match cmd {
        AuditCommand::Verify => {
            let key = crate::safety::audit_key();
            let report = cubicle_audit::verify(&dir, key.as_deref())?;
            match &report.first_bad {
                None => {
                    println!(
                        "ok: {} records in {} file(s), chain intact",
                        report.records, report.files
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some(bad) => {
                    println!("TAMPERED: {}", bad.message);
                    println!(
                        "  first bad record: {} line {}",
                        bad.file.display(),
                        bad.line
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AuditCommand::Tail { lines, follow } => {
            for r in cubicle_audit::tail(&dir, lines)? {
                println!("{}", line(&r));
            }
            if follow {
                let mut f = cubicle_audit::follow(&dir)?;
                loop {
                    tokio::select! {
                        r = f.next_async() => println!("{}", line(&r?)),
                        _ = tokio::signal::ctrl_c() => break,
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export { format, endpoint } => match format.as_str() {
            "jsonl" => {
                cubicle_audit::export_jsonl(&dir, std::io::stdout().lock())?;
                Ok(ExitCode::SUCCESS)
            }
            "otlp" => {
                let records = cubicle_audit::tail(&dir, usize::MAX)?;
                let payload = cubicle_audit::export_otlp(&records);
                match endpoint {
                    Some(url) => {
                        cubicle_audit::send_otlp(&url, &payload).await?;
                        println!("sent {} records to {url}", records.len());
                    }
                    None => println!("{}", serde_json::to_string_pretty(&payload)?),
                }
                Ok(ExitCode::SUCCESS)
            }
            other => bail!("unknown export format `{other}` — use jsonl or otlp"),
        },
    }
}

/// One record, readable: sequence, time, session, kind, details.
fn line(r: &cubicle_audit::Record) -> String {
    let mut details = serde_json::to_value(&r.kind).unwrap_or_default();
    if let Some(obj) = details.as_object_mut() {
        obj.remove("kind");
    }
    format!(
        "{:>6} {} {} {:<15} {}",
        r.seq,
        r.ts,
        r.session.as_deref().unwrap_or("-"),
        r.kind.name(),
        details
    )
}
