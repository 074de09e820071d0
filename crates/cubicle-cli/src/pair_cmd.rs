//! `cubicle pair`: pair a phone or another computer with the running
//! `cubicle serve` (a QR code in the terminal and a short one-time code), or
//! list and revoke paired devices. Listing and revoking work on the device
//! file directly, so they work whether the server runs or not; a revoked
//! device is refused from its next request.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cubicle_audit::RecordKind;
use cubicle_server::{DeviceStore, Scope};
use serde_json::{Value, json};

use crate::serve_cmd::{OpenAudit, RuntimeFile, runtime_path};

/// Options of `cubicle pair`.
#[derive(Debug, clap::Args)]
pub struct PairArgs {
    /// What the device may do: `watch` (see sessions and outputs) or
    /// `control` (also answer questions, approve, pause and stop).
    #[arg(long, default_value = "watch", value_parser = parse_scope)]
    pub scope: Scope,
    /// List paired devices instead of pairing one.
    #[arg(long, conflicts_with_all = ["revoke", "scope"])]
    pub list: bool,
    /// Revoke a paired device by its id (see --list).
    #[arg(long, value_name = "ID", conflicts_with = "scope")]
    pub revoke: Option<String>,
    /// Print the pairing URL and code, but not the QR code.
    #[arg(long)]
    pub no_qr: bool,
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s).ok_or_else(|| format!("{s:?} is not a scope: use watch or control"))
}

/// `cubicle pair`.
pub async fn run(args: PairArgs, open_audit: OpenAudit) -> anyhow::Result<ExitCode> {
    let store = cubicle_agent::Store::from_env(|k| std::env::var(k).ok())?;
    let data_root = store.root().to_path_buf();
    let devices = DeviceStore::in_dir(&data_root);
    let mut out = std::io::stdout().lock();
    if args.list {
        let list = devices.list()?;
        if list.is_empty() {
            writeln!(out, "No paired devices.")?;
        }
        for d in list {
            writeln!(
                out,
                "{}  {:<7}  paired {}  {}",
                d.id, d.scope, d.paired_at, d.name
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(id) = args.revoke {
        let device = devices.revoke(&id)?;
        writeln!(out, "Revoked {} ({}).", device.id, device.name)?;
        match open_audit(&data_root) {
            Ok(log) => {
                let record = json!({
                    "kind": "device_revoked", "device": device.id,
                    "device_name": device.name, "scope": device.scope, "by": "cli",
                });
                if let Err(e) = log.append(None, RecordKind::Other(record)) {
                    eprintln!("cubicle: note: the revocation was not audited: {e}");
                }
            }
            Err(e) => eprintln!("cubicle: note: the revocation was not audited: {e:#}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    drop(out);
    pair(&data_root, args.scope, !args.no_qr, &devices).await
}

/// Reads the running server's runtime file.
fn running_server(data_root: &Path) -> anyhow::Result<RuntimeFile> {
    let path = runtime_path(data_root);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("Cubicle is not running: start `cubicle serve --remote 0.0.0.0:8443` first")
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))
}

async fn pair(
    data_root: &Path,
    scope: Scope,
    show_qr: bool,
    devices: &DeviceStore,
) -> anyhow::Result<ExitCode> {
    let rt = running_server(data_root)?;
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/pairing", rt.base_url))
        .bearer_auth(&rt.token)
        .json(&json!({ "scope": scope }))
        .send()
        .await
        .with_context(|| {
            format!(
                "cannot reach the server at {} (is `cubicle serve` still running?)",
                rt.base_url
            )
        })?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "the server refused to pair: {}",
            body["error"].as_str().unwrap_or(status.as_str())
        );
    }
    let text = |k: &str| body[k].as_str().unwrap_or("").to_owned();
    let url = text("url");
    let before: Vec<String> = devices.list()?.into_iter().map(|d| d.id).collect();
    {
        let mut out = std::io::stdout().lock();
        if show_qr && let Some(qr) = cubicle_server::pairing::qr_text(&url) {
            writeln!(out, "{qr}")?;
        }
        writeln!(out, "Scan the code with the device's camera, or open")?;
        writeln!(out, "  {}", text("pair_page"))?;
        writeln!(out, "on it and type the code {}", text("code"))?;
        if let Some(fp) = body["fingerprint"].as_str() {
            writeln!(
                out,
                "The browser will warn about the certificate: it is this computer's own; check its SHA-256 fingerprint is\n  {fp}"
            )?;
        } else {
            writeln!(
                out,
                "Note: the server listens on this computer only (start it with --remote to reach it from another device)."
            )?;
        }
        writeln!(
            out,
            "The device may {}. The code works once, for {} minutes.",
            match scope {
                Scope::Watch => "watch sessions",
                Scope::Control => "watch, answer, approve, pause and stop sessions",
            },
            body["expires_in_s"].as_u64().unwrap_or(300) / 60
        )?;
        out.flush()?;
    }
    let deadline =
        Instant::now() + Duration::from_secs(body["expires_in_s"].as_u64().unwrap_or(300));
    while Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::FAILURE),
        }
        if let Some(d) = devices
            .list()?
            .into_iter()
            .find(|d| !before.contains(&d.id))
        {
            writeln!(
                std::io::stdout().lock(),
                "Paired {} as {} ({}). Revoke it with `cubicle pair --revoke {}`.",
                d.name,
                d.id,
                d.scope,
                d.id
            )?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    eprintln!("cubicle: the pairing code expired; run `cubicle pair` again");
    Ok(ExitCode::FAILURE)
}
