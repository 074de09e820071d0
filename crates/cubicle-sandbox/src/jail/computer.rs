//! The host side of the `jail` backend: starts the launcher, connects a
//! [`GuestClient`] over its stdin/stdout, and tears the jail down.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cubicle_protocol::events::GrantInfo;
use cubicle_protocol::guest::GuestConfig;
use tokio::io::AsyncBufReadExt as _;
use tokio::process::Child;

use super::config::{GrantSpec, JailConfig, LaunchSpec};
use super::init::ERROR_PREFIX;
use super::limits;
use crate::computer::{Computer, ComputerInfo, SandboxError};
use crate::guest_client::GuestClient;

/// How long `stop` waits for the guest at each step before forcing it.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Where the workspace is inside the jail.
pub const WORKSPACE: &str = "/workspace";

/// The guest's egress listener inside the jail.
pub const EGRESS_LISTEN: &str = "127.0.0.1:3128";

/// Makes session cgroup names unique within this process.
static SESSION_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A cubicle in Linux namespaces on this machine.
pub struct JailComputer {
    info: ComputerInfo,
    client: GuestClient,
    child: Mutex<Option<Child>>,
    launcher_pid: Option<u32>,
    cgroup: String,
    stopped: AtomicBool,
}

impl std::fmt::Debug for JailComputer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JailComputer")
            .field("info", &self.info)
            .field("launcher_pid", &self.launcher_pid)
            .finish_non_exhaustive()
    }
}

/// The base environment of every command: nothing of the host's.
pub fn base_env() -> BTreeMap<String, String> {
    let proxy = format!("http://{EGRESS_LISTEN}");
    BTreeMap::from(
        [
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("HOME", WORKSPACE),
            ("LANG", "C.UTF-8"),
            ("TMPDIR", "/tmp"),
            ("HTTP_PROXY", &proxy),
            ("HTTPS_PROXY", &proxy),
            ("http_proxy", &proxy),
            ("https_proxy", &proxy),
            ("NO_PROXY", "localhost,127.0.0.1"),
            ("no_proxy", "localhost,127.0.0.1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
}

impl JailComputer {
    /// Builds the jail, starts the guest in it and connects to it.
    pub async fn start(config: JailConfig) -> Result<Self, SandboxError> {
        std::fs::create_dir_all(&config.workspace).map_err(|e| {
            SandboxError::Start(format!(
                "cannot create the workspace {}: {e}",
                config.workspace.display()
            ))
        })?;
        let workspace = std::fs::canonicalize(&config.workspace)?;
        let mut grants = Vec::new();
        let mut infos = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for g in &config.grants {
            let host_path = std::fs::canonicalize(&g.host_path).map_err(|_| {
                SandboxError::Config(format!(
                    "cannot grant {}: no such folder — check the path exists",
                    g.host_path.display()
                ))
            })?;
            if !host_path.is_dir() {
                return Err(SandboxError::Config(format!(
                    "cannot grant {}: it is not a folder — grant the folder that holds it",
                    host_path.display()
                )));
            }
            if !names.insert(g.name.clone()) {
                return Err(SandboxError::Config(format!(
                    "two grants are both named `{}` — make names unique with grants::dedupe_names",
                    g.name
                )));
            }
            infos.push(GrantInfo {
                host_path: utf8(&host_path)?,
                path: g.guest_path(),
                writable: g.writable,
            });
            grants.push(GrantSpec {
                host_path,
                name: g.name.clone(),
                writable: g.writable,
            });
        }
        let guest = std::fs::canonicalize(&config.guest.path).map_err(|e| {
            SandboxError::Start(format!(
                "cannot find the guest {}: {e} — build it with `cargo build -p cubicle-guest`",
                config.guest.path.display()
            ))
        })?;
        let cgroup = format!(
            "s{}-{}",
            std::process::id(),
            SESSION_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let spec = LaunchSpec {
            guest,
            guest_args: config.guest.args.clone(),
            workspace: workspace.clone(),
            grants,
            rootfs: config.rootfs.clone(),
            limits: config.limits.clone(),
            dangerously_allow_no_landlock: config.dangerously_allow_no_landlock,
            cgroup: Some(cgroup.clone()),
            guest_log: std::env::var("CUBICLE_GUEST_LOG").ok(),
        };
        let spec_json = serde_json::to_string(&spec)
            .map_err(|e| SandboxError::Start(format!("cannot encode the launch spec: {e}")))?;

        let mut env = base_env();
        env.extend(config.env.clone());
        let guest_config = GuestConfig {
            workspace: WORKSPACE.to_owned(),
            // The mount namespace is the confinement; the guest sees only
            // what is mounted.
            roots: Vec::new(),
            env,
            egress_listen: Some(EGRESS_LISTEN.to_owned()),
        };

        let mut cmd = tokio::process::Command::new(&config.launcher);
        cmd.args(&config.launcher_args)
            .arg(spec_json)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: the closure runs in the forked child before exec and only
        // calls prctl, which is async-signal-safe. The death signal follows
        // the spawning thread; tokio spawns from a worker thread, which lives
        // as long as the runtime.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            SandboxError::Start(format!(
                "cannot run the jail launcher {}: {e}",
                config.launcher.display()
            ))
        })?;
        let launcher_pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(SandboxError::Start(
                "the launcher's stdio were not piped".to_owned(),
            ));
        };
        let setup_error = Arc::new(Mutex::new(None::<String>));
        tokio::spawn(forward_stderr(stderr, setup_error.clone()));

        let client =
            match GuestClient::connect(stdout, stdin, guest_config, config.egress.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    // The launcher most likely failed and said why on stderr:
                    // wait for it to finish saying so.
                    let _ = tokio::time::timeout(STOP_GRACE, child.wait()).await;
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    // The stderr task may need a moment to take the last line.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let cg = cgroup.clone();
                    let _ = tokio::task::spawn_blocking(move || limits::remove_cgroup(&cg)).await;
                    let reason = setup_error.lock().ok().and_then(|m| m.clone());
                    return Err(match reason {
                        Some(line) => SandboxError::Start(line),
                        None => e,
                    });
                }
            };
        tracing::info!(pid = launcher_pid, workspace = %workspace.display(), "jail started");
        Ok(Self {
            info: ComputerInfo {
                backend: "jail".to_owned(),
                isolated: true,
                workspace: WORKSPACE.to_owned(),
                workspace_host: utf8(&workspace)?,
                grants: infos,
            },
            client,
            child: Mutex::new(Some(child)),
            launcher_pid,
            cgroup,
            stopped: AtomicBool::new(false),
        })
    }

    /// Host pid of the launcher, while it runs (its PID namespace's parent).
    pub fn launcher_pid(&self) -> Option<u32> {
        self.launcher_pid
    }
}

/// Copies the launcher's (and the guest's) stderr to the log, keeping the
/// launcher's setup error, if any, for [`JailComputer::start`].
async fn forward_stderr(
    stderr: tokio::process::ChildStderr,
    setup_error: Arc<Mutex<Option<String>>>,
) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(msg) = line.strip_prefix(ERROR_PREFIX) {
            let msg = msg.trim().to_owned();
            if !msg.starts_with("warning:")
                && let Ok(mut slot) = setup_error.lock()
            {
                slot.get_or_insert(msg.clone());
            }
            tracing::warn!(target: "cubicle::jail", "{msg}");
        } else {
            tracing::debug!(target: "cubicle::jail", "{line}");
        }
    }
}

#[async_trait]
impl Computer for JailComputer {
    fn info(&self) -> &ComputerInfo {
        &self.info
    }

    fn guest(&self) -> &GuestClient {
        &self.client
    }

    fn host_pid(&self) -> Option<u32> {
        self.launcher_pid()
    }

    async fn stop(&self) -> Result<(), SandboxError> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if self.client.is_connected()
            && tokio::time::timeout(STOP_GRACE, self.client.shutdown())
                .await
                .is_err()
        {
            tracing::warn!("guest did not acknowledge shutdown; killing the jail");
        }
        let child = self.child.lock().ok().and_then(|mut c| c.take());
        if let Some(mut child) = child {
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "waiting for the launcher failed"),
                Err(_) => {
                    // Killing the launcher kills PID 1 (parent-death signal),
                    // and with it the whole PID namespace.
                    child.kill().await?;
                }
            }
        }
        let cg = self.cgroup.clone();
        let _ = tokio::task::spawn_blocking(move || limits::remove_cgroup(&cg)).await;
        Ok(())
    }
}

impl Drop for JailComputer {
    fn drop(&mut self) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        // Without a graceful stop, kill at once: everything in the jail dies
        // with the launcher, so nothing is orphaned on the host.
        if let Some(mut child) = self.child.lock().ok().and_then(|mut c| c.take()) {
            let _ = child.start_kill();
            // tokio reaps the killed launcher in the background; the cgroup
            // can go once the namespace's processes are gone, which a plain
            // thread can wait for even when no runtime is left.
            let cg = self.cgroup.clone();
            std::thread::spawn(move || limits::remove_cgroup(&cg));
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
