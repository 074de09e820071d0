//! `cubicle policy show|check|allow-domain`: the effective policy with the
//! origin of every value, a decision explained, and allowing a domain in one
//! step.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cubicle_policy::{Effect, Policy, PolicyError};

use crate::cli::PolicyCommand;
use crate::safety::{PolicyArgs, load_policy, policy_paths};

/// Runs a `policy` subcommand.
pub fn run(cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Show { effective } => {
            let policy = load_policy(&PolicyArgs::default(), &[])?;
            show(&policy, effective);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check { call } => {
            let policy = load_policy(&PolicyArgs::default(), &[])?;
            let d = policy.check_str(&call).map_err(|e| match e {
                PolicyError::Invalid { .. } | PolicyError::Read { .. } => anyhow::Error::from(e),
                other => anyhow::anyhow!(
                    "{other} — write the call as a rule, e.g. 'Bash(rm -rf /mnt/x)'"
                ),
            })?;
            let word = match d.effect {
                Effect::Allow => "allow",
                Effect::Ask => "ask",
                Effect::Deny => "deny",
            };
            println!("{word}: {}", d.reason);
            match &d.rule {
                Some(rule) => println!("  rule: {rule}"),
                None => println!("  rule: none matched; this is the default"),
            }
            Ok(match d.effect {
                Effect::Allow => ExitCode::SUCCESS,
                Effect::Ask => ExitCode::from(2),
                Effect::Deny => ExitCode::from(1),
            })
        }
        PolicyCommand::AllowDomain { domain } => allow_domain(&domain),
    }
}

fn show(policy: &Policy, effective: bool) {
    println!("Settings files, highest precedence first:");
    let paths = policy_paths();
    for (layer, file) in [
        ("managed", Some(paths.managed_file.clone())),
        ("managed", Some(paths.managed_dir.join("*.toml"))),
        ("user", paths.user_file.clone()),
    ] {
        if let Some(f) = file {
            let loaded = policy
                .sources()
                .iter()
                .any(|s| s.file.as_deref() == Some(f.as_path()));
            println!(
                "  {layer:<8} {}{}",
                f.display(),
                if loaded { "" } else { " (not present)" }
            );
        }
    }
    println!();
    let settings = policy.effective();
    let shown: Vec<_> = settings
        .iter()
        .filter(|s| effective || s.origin.is_some())
        .collect();
    if shown.is_empty() {
        println!("No settings are set; everything is at its default (see --effective).");
    }
    for s in shown {
        println!("{s}");
    }
    for n in policy.notices() {
        println!("note: {n}");
    }
}

/// Adds a domain to `network.allow` in the person's settings file, keeping
/// a backup of the previous file.
fn allow_domain(domain: &str) -> Result<ExitCode> {
    if cubicle_policy::DomainPattern::parse(domain).is_err() {
        bail!("`{domain}` is not a domain or a *.domain pattern");
    }
    let Some(file) = policy_paths().user_file else {
        bail!("cannot find your settings folder: set HOME or XDG_CONFIG_HOME");
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
    let network = table
        .entry("network")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(network) = network.as_table_mut() else {
        bail!("{}: `network` is not a table", file.display());
    };
    let allow = network
        .entry("allow")
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    let Some(allow) = allow.as_array_mut() else {
        bail!("{}: `network.allow` is not a list", file.display());
    };
    if allow.iter().any(|v| v.as_str() == Some(domain)) {
        println!("{domain} is already allowed in {}", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    allow.push(toml::Value::String(domain.to_owned()));
    let new_text = toml::to_string_pretty(&table)?;
    // Check the result loads before replacing anything.
    Policy::from_sources(&[cubicle_policy::SettingsSource {
        layer: cubicle_policy::Layer::User,
        file: Some(file.clone()),
        text: new_text.clone(),
    }])?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if !text.is_empty() {
        std::fs::write(file.with_extension("toml.bak"), &text)?;
    }
    let tmp = file.with_extension("toml.tmp");
    std::fs::write(&tmp, new_text)?;
    std::fs::rename(&tmp, &file)?;
    println!("allowed {domain} in {}", file.display());
    println!(
        "note: anything the agent sends to {domain} leaves your computer; allow only domains you trust with your data"
    );
    Ok(ExitCode::SUCCESS)
}
