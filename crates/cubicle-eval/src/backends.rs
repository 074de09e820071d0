//! Computers for eval runs on this machine: the `jail` backend where the
//! kernel allows it, else the unisolated `host` backend — said out loud, since
//! a host run is not a cubicle. A jail shows a task's skill folders read-only
//! at `/mnt/.skills/<name>`; the host has no mounts, so there they stay at
//! their host paths.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use cubicle_sandbox::host::{HostComputer, HostConfig};
use cubicle_sandbox::jail::{JailComputer, JailConfig, Limits, locate_jail_init, probe};
use cubicle_sandbox::locate::GuestProgram;
use cubicle_sandbox::{Computer, Grant};

use crate::runner::ComputerFactory;

/// Starts `jail` or `host` computers with fixed programs.
#[derive(Debug, Clone)]
pub enum LocalFactory {
    /// Linux namespace jails.
    Jail {
        /// The `cubicle-jail-init` launcher (or the `cubicle` binary).
        launcher: PathBuf,
        /// Arguments before the launch spec (`["__jail-init"]` for `cubicle`).
        launcher_args: Vec<String>,
        /// The guest program.
        guest: GuestProgram,
    },
    /// No isolation: the guest runs as a child process of this one.
    Host {
        /// The guest program.
        guest: GuestProgram,
    },
}

impl LocalFactory {
    /// The best backend with the installed programs (`cubicle-guest` and
    /// `cubicle-jail-init` beside the running executable, or named by their
    /// environment variables), plus a warning when that is `host`.
    pub fn best() -> Result<(Self, Option<String>), String> {
        let guest = GuestProgram::locate().map_err(|e| e.to_string())?;
        Ok(Self::best_with(guest, None))
    }

    /// Like [`LocalFactory::best`] with a given guest and, optionally, a
    /// given launcher and its arguments.
    pub fn best_with(
        guest: GuestProgram,
        launcher: Option<(PathBuf, Vec<String>)>,
    ) -> (Self, Option<String>) {
        let features = probe::probe();
        if !probe::jail_usable(&features) {
            let missing: Vec<String> = features
                .iter()
                .filter(|f| f.required && !f.available)
                .map(|f| f.name.to_string())
                .collect();
            return (
                Self::Host { guest },
                Some(format!(
                    "the jail is not usable here (missing: {}); running on the host backend, WITHOUT isolation",
                    missing.join(", ")
                )),
            );
        }
        let launcher = match launcher {
            Some(l) => Ok(l),
            None => locate_jail_init().map(|p| (p, Vec::new())),
        };
        match launcher {
            Ok((launcher, launcher_args)) => (
                Self::Jail {
                    launcher,
                    launcher_args,
                    guest,
                },
                None,
            ),
            Err(e) => (
                Self::Host { guest },
                Some(format!(
                    "{e}; running on the host backend, WITHOUT isolation"
                )),
            ),
        }
    }
}

#[async_trait]
impl ComputerFactory for LocalFactory {
    fn backend(&self) -> &str {
        match self {
            LocalFactory::Jail { .. } => "jail",
            LocalFactory::Host { .. } => "host",
        }
    }

    async fn start(
        &self,
        grants: Vec<Grant>,
        workspace: PathBuf,
        skills: Vec<(String, PathBuf)>,
    ) -> Result<Arc<dyn Computer>, String> {
        match self {
            LocalFactory::Jail {
                launcher,
                launcher_args,
                guest,
            } => {
                let c = JailComputer::start(JailConfig {
                    grants,
                    workspace,
                    guest: guest.clone(),
                    launcher: launcher.clone(),
                    launcher_args: launcher_args.clone(),
                    rootfs: None,
                    limits: Limits::default(),
                    env: BTreeMap::new(),
                    dangerously_allow_no_landlock: false,
                    egress: None,
                    skills,
                    plugins: Vec::new(),
                })
                .await
                .map_err(|e| e.to_string())?;
                Ok(Arc::new(c))
            }
            LocalFactory::Host { guest } => {
                // No mounts on the host: the skill folders are used at their
                // host paths (the runner says so in the system prompt).
                drop(skills);
                let c = HostComputer::start(HostConfig {
                    grants,
                    workspace,
                    guest: guest.clone(),
                    env: BTreeMap::new(),
                    egress: None,
                    egress_listen: None,
                })
                .await
                .map_err(|e| e.to_string())?;
                Ok(Arc::new(c))
            }
        }
    }
}
