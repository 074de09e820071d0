//! Choosing and starting the computer a session runs in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use cubicle_sandbox::host::{HostComputer, HostConfig};
use cubicle_sandbox::locate::GuestProgram;
use cubicle_sandbox::{Computer, Grant};

/// Backends this build can start.
pub const BACKENDS: &[&str] = &["host"];

/// Resolves `auto` to the best backend this machine has.
pub fn resolve(name: &str) -> Result<&'static str> {
    match name {
        "auto" | "host" => Ok("host"),
        other => bail!(
            "unknown backend `{other}` — available here: {}",
            BACKENDS.join(", ")
        ),
    }
}

/// The guest program: an installed `cubicle-guest`, else this binary, which
/// carries the guest too.
pub fn guest_program() -> Result<GuestProgram> {
    match cubicle_sandbox::locate::GuestProgram::locate() {
        Ok(g) => Ok(g),
        Err(_) => Ok(GuestProgram {
            path: std::env::current_exe()?,
            args: vec!["__guest".to_owned()],
        }),
    }
}

/// Starts a computer.
pub async fn start(
    backend: &str,
    grants: Vec<Grant>,
    workspace: PathBuf,
) -> Result<Arc<dyn Computer>> {
    match resolve(backend)? {
        "host" => {
            let computer = HostComputer::start(HostConfig {
                grants,
                workspace,
                guest: guest_program()?,
                env: BTreeMap::new(),
                egress: None,
                egress_listen: None,
            })
            .await?;
            Ok(Arc::new(computer))
        }
        other => bail!("backend `{other}` is not available in this build"),
    }
}

/// Parses `--grant` values, making names unique.
pub fn parse_grants(specs: &[String]) -> Result<Vec<Grant>> {
    let mut grants = specs
        .iter()
        .map(|s| Grant::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    cubicle_sandbox::grants::dedupe_names(&mut grants);
    Ok(grants)
}
