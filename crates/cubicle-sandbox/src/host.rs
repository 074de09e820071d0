//! The `host` backend: runs `cubicle-guest` as a plain child process on this
//! machine. Nothing is isolated — commands see the whole host — so it is
//! only for where policy allows it, and [`ComputerInfo::isolated`] says so.
//!
//! What it does contain: commands start with a scrubbed environment (no API
//! keys from the host's), and the guest confines its *file operations* to
//! the granted folders and the workspace by checking paths
//! ([`GuestConfig::roots`]). Paths inside are the host's real paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cubicle_protocol::events::GrantInfo;
use cubicle_protocol::guest::{GuestConfig, Root};
use tokio::process::Child;

use crate::computer::{Computer, ComputerInfo, SandboxError};
use crate::grants::Grant;
use crate::guest_client::{EgressConnector, GuestClient};
use crate::locate::GuestProgram;

/// How long `stop` waits for the guest at each step before forcing it.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// `PATH` for commands when the host has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Settings of a `host` computer.
#[derive(Clone)]
pub struct HostConfig {
    /// Folders the session may use, besides the workspace.
    pub grants: Vec<Grant>,
    /// Host directory for the session's scratch space; created if missing.
    pub workspace: PathBuf,
    /// The guest program to run.
    pub guest: GuestProgram,
    /// Variables added to every command's environment.
    pub env: BTreeMap<String, String>,
    /// Where tunnels from `egress_listen` go; `None` refuses them.
    pub egress: Option<Arc<dyn EgressConnector>>,
    /// Address on which the guest accepts connections for egress, e.g.
    /// `127.0.0.1:3128`; on this backend it is a real port of the host.
    pub egress_listen: Option<String>,
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("grants", &self.grants)
            .field("workspace", &self.workspace)
            .field("guest", &self.guest)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("egress", &self.egress.is_some())
            .field("egress_listen", &self.egress_listen)
            .finish()
    }
}

/// A cubicle that is this machine, with the guest as a child process.
pub struct HostComputer {
    info: ComputerInfo,
    client: GuestClient,
    child: Mutex<Option<Child>>,
    pid: Option<u32>,
    stopped: AtomicBool,
}

impl std::fmt::Debug for HostComputer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostComputer")
            .field("info", &self.info)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl HostComputer {
    /// Starts the guest and connects to it.
    pub async fn start(config: HostConfig) -> Result<Self, SandboxError> {
        std::fs::create_dir_all(&config.workspace).map_err(|e| {
            SandboxError::Start(format!(
                "cannot create the workspace {}: {e}",
                config.workspace.display()
            ))
        })?;
        let workspace = std::fs::canonicalize(&config.workspace)?;
        let ws = utf8(&workspace)?;
        let tmp = workspace.join(".tmp");
        std::fs::create_dir_all(&tmp)?;

        // Commands get this and nothing else of the host's environment, so
        // no credential can leak in by inheritance.
        let mut env = BTreeMap::from([
            (
                "PATH".to_owned(),
                std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned()),
            ),
            ("HOME".to_owned(), ws.clone()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("TMPDIR".to_owned(), utf8(&tmp)?),
        ]);
        env.extend(config.env.clone());

        let mut roots = Vec::new();
        let mut grants = Vec::new();
        for g in &config.grants {
            let path = utf8(&g.host_path)?;
            roots.push(Root {
                path: path.clone(),
                writable: g.writable,
            });
            grants.push(GrantInfo {
                host_path: path.clone(),
                path,
                writable: g.writable,
            });
        }
        roots.push(Root {
            path: ws.clone(),
            writable: true,
        });
        let guest_config = GuestConfig {
            workspace: ws.clone(),
            roots,
            env: env.clone(),
            egress_listen: config.egress_listen.clone(),
        };

        let mut cmd = tokio::process::Command::new(&config.guest.path);
        cmd.args(&config.guest.args)
            .env_clear()
            .envs(&env)
            .current_dir(&workspace)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The guest logs to stderr; let it show with the host's.
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(filter) = std::env::var_os("CUBICLE_GUEST_LOG") {
            cmd.env("CUBICLE_GUEST_LOG", filter);
        }
        let mut child = cmd.spawn().map_err(|e| {
            SandboxError::Start(format!(
                "cannot run the guest {}: {e}",
                config.guest.path.display()
            ))
        })?;
        let pid = child.id();
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(SandboxError::Start(
                "the guest's stdin/stdout were not piped".to_owned(),
            ));
        };
        let client = GuestClient::connect(stdout, stdin, guest_config, config.egress.clone())
            .await
            .inspect_err(|_| {
                let _ = child.start_kill();
            })?;
        tracing::info!(pid, workspace = %ws, "host computer started");
        Ok(Self {
            info: ComputerInfo {
                backend: "host".to_owned(),
                isolated: false,
                workspace: ws.clone(),
                workspace_host: ws,
                grants,
            },
            client,
            child: Mutex::new(Some(child)),
            pid,
            stopped: AtomicBool::new(false),
        })
    }

    /// Process id of the guest, while it runs.
    pub fn guest_pid(&self) -> Option<u32> {
        self.pid
    }
}

#[async_trait]
impl Computer for HostComputer {
    fn info(&self) -> &ComputerInfo {
        &self.info
    }

    fn guest(&self) -> &GuestClient {
        &self.client
    }

    fn host_pid(&self) -> Option<u32> {
        self.guest_pid()
    }

    async fn stop(&self) -> Result<(), SandboxError> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if tokio::time::timeout(STOP_GRACE, self.client.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("guest did not acknowledge shutdown; killing it");
        }
        let child = self.child.lock().ok().and_then(|mut c| c.take());
        if let Some(mut child) = child {
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "waiting for the guest failed"),
                Err(_) => {
                    tracing::warn!("guest did not exit; killing it");
                    child.kill().await?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for HostComputer {
    fn drop(&mut self) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Some(mut child) = self.child.lock().ok().and_then(|mut c| c.take()) else {
            return;
        };
        // Dropping the client right after this closes the guest's stdin,
        // which makes it kill every command's process group and exit. Give it
        // a moment to do that before the hard kill, which would orphan them.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if tokio::time::timeout(STOP_GRACE, child.wait())
                        .await
                        .is_err()
                    {
                        let _ = child.kill().await;
                    }
                });
            }
            Err(_) => {
                let _ = child.start_kill();
            }
        }
    }
}

fn utf8(path: &Path) -> Result<String, SandboxError> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        SandboxError::Config(format!(
            "{} is not valid UTF-8; rename it to use it with cubicle",
            path.display()
        ))
    })
}
