//! `cubicle secret set NAME`: stores a secret on the host for credential
//! rules. Headless Linux has no keyring service, so this is Cubicle's own
//! owner-only (0600) file in the config folder; the value is read from stdin
//! so it never appears in the shell's history or the process list.

#![allow(clippy::print_stdout)]

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::cli::SecretCommand;
use crate::config::config_dir;

/// Runs a `secret` subcommand.
pub fn run(cmd: SecretCommand) -> Result<ExitCode> {
    match cmd {
        SecretCommand::Set { name } => {
            let dir = config_dir().context("cannot find the config folder: set HOME")?;
            if std::io::stdin().is_terminal() {
                eprintln!("Type the secret for `{name}` and press Enter:");
            }
            let mut value = String::new();
            std::io::stdin().lock().read_line(&mut value)?;
            let value = value.trim_end_matches(['\n', '\r']);
            if value.is_empty() {
                bail!("no secret was given on stdin");
            }
            std::fs::create_dir_all(&dir)?;
            cubicle_egress::FileSecrets::in_dir(&dir).set(&name, value)?;
            println!(
                "stored `{name}` in {} (readable only by you); refer to it as secret = \"keyring:{name}\"",
                dir.join("secrets").display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
