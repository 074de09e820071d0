//! The host side of the `jail` backend: starts the launcher, takes over the
//! jail's PID 1 from it, connects a [`GuestClient`] over the pipes PID 1
//! inherited, and tears the jail down.

use std::collections::BTreeMap;
use std::fs::ReadDir;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cubicle_protocol::guest::{ExecRequest, GuestConfig, OutputStream};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{GrantSpec, JailConfig, LaunchSpec};
use super::init::{HANDOFF_LEN, launcher_message, parse_handoff};
use super::limits;
use super::pid1::Pid1;
use crate::computer::{Computer, ComputerInfo, ExecOutput, OutputChunk, SandboxError};
use crate::grants::utf8_path as utf8;
use crate::guest_client::{ExecSignaller, GuestClient};

/// How long `stop` waits for the guest at each step before forcing it.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long the launcher may take to hand PID 1 over (steps 0–2: a cgroup,
/// namespaces and a fork).
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// PID 1 of the jail (the guest), a child of this process.
    pid1: Arc<Pid1>,
    cgroup: String,
    stopped: AtomicBool,
    /// The workspace cap and its monitor task, when the limits set one.
    cap: Option<(Arc<WorkspaceCap>, JoinHandle<()>)>,
}

impl std::fmt::Debug for JailComputer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JailComputer")
            .field("info", &self.info)
            .field("pid1", &self.pid1.pid())
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
        let Prepared {
            spec,
            grants: infos,
            workspace,
            cgroup,
        } = prepare(&SpecParts {
            grants: &config.grants,
            workspace: &config.workspace,
            skills: &config.skills,
            plugins: &config.plugins,
            guest: Some(&config.guest),
            rootfs: config.rootfs.as_ref(),
            limits: &config.limits,
            dangerously_allow_no_landlock: config.dangerously_allow_no_landlock,
        })?;
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
        // No `pre_exec` hook: the launcher sets its own parent-death signal
        // (`LaunchSpec::parent_pid`), which lets std start it with
        // posix_spawn rather than fork this whole process.
        let mut launcher = cmd.spawn().map_err(|e| {
            SandboxError::Start(format!(
                "cannot run the jail launcher {}: {e}",
                config.launcher.display()
            ))
        })?;
        let (Some(stdin), Some(mut stdout), Some(stderr)) = (
            launcher.stdin.take(),
            launcher.stdout.take(),
            launcher.stderr.take(),
        ) else {
            return Err(SandboxError::Start(
                "the launcher's stdio were not piped".to_owned(),
            ));
        };
        let setup_error = Arc::new(Mutex::new(None::<String>));
        let stderr_task = tokio::spawn(forward_stderr(stderr, setup_error.clone()));
        let failed = StartFailure {
            setup_error,
            stderr_task,
            cgroup: cgroup.clone(),
        };

        // Step 2: the launcher hands PID 1 over and exits.
        let pid1 = match take_pid1(&mut stdout, &config.launcher).await {
            Ok(pid1) => Arc::new(pid1),
            Err(e) => {
                // The launcher most likely failed and said why on stderr:
                // wait for it to finish saying so.
                let _ = tokio::time::timeout(STOP_GRACE, launcher.wait()).await;
                let _ = launcher.start_kill();
                let _ = launcher.wait().await;
                return Err(failed.report(e).await);
            }
        };
        // It is exiting now; reap it whenever it is done.
        tokio::spawn(async move {
            let _ = launcher.wait().await;
        });

        let client =
            match GuestClient::connect(stdout, stdin, guest_config, config.egress.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    // PID 1 most likely failed to build the jail and said
                    // why on stderr: wait for it to finish saying so.
                    if tokio::time::timeout(STOP_GRACE, pid1.wait()).await.is_err() {
                        pid1.kill();
                        let _ = pid1.wait().await;
                    }
                    return Err(failed.report(e).await);
                }
            };
        tracing::info!(pid = pid1.pid(), workspace = %workspace.display(), "jail started");
        let cap = config.limits.workspace_bytes.map(|bytes| {
            let cap = Arc::new(WorkspaceCap::new(workspace.clone(), bytes));
            let task = tokio::spawn(monitor_workspace(cap.clone(), client.signaller()));
            (cap, task)
        });
        Ok(Self {
            info: ComputerInfo {
                backend: "jail".to_owned(),
                isolated: true,
                workspace: WORKSPACE.to_owned(),
                workspace_host: utf8(&workspace)?,
                grants: infos,
            },
            client,
            pid1,
            cgroup,
            stopped: AtomicBool::new(false),
            cap,
        })
    }

    /// Host pid of the jail's PID 1 (the guest), a child of this process:
    /// killing it ends the jail.
    pub fn pid1(&self) -> u32 {
        self.pid1.pid()
    }
}

/// What a jail is built from, borrowed from a [`JailConfig`] or from a
/// one-shot's settings.
pub(super) struct SpecParts<'a> {
    pub grants: &'a [crate::grants::Grant],
    pub workspace: &'a std::path::Path,
    pub skills: &'a [(String, PathBuf)],
    pub plugins: &'a [(String, PathBuf)],
    /// `None` for a one-shot jail, which runs no guest.
    pub guest: Option<&'a crate::locate::GuestProgram>,
    pub rootfs: Option<&'a PathBuf>,
    pub limits: &'a super::config::Limits,
    pub dangerously_allow_no_landlock: bool,
}

/// A checked launch spec and what the host keeps of it.
pub(super) struct Prepared {
    pub spec: LaunchSpec,
    /// The grants as the session reports them.
    pub grants: Vec<cubicle_protocol::events::GrantInfo>,
    /// The workspace, created and canonical.
    pub workspace: PathBuf,
    /// The session cgroup's name.
    pub cgroup: String,
}

/// Creates the workspace and checks everything the jail will mount, so that
/// a missing grant or guest is an error here, on the host, not a failed
/// mount in the launcher.
pub(super) fn prepare(parts: &SpecParts<'_>) -> Result<Prepared, SandboxError> {
    std::fs::create_dir_all(parts.workspace).map_err(|e| {
        SandboxError::Start(format!(
            "cannot create the workspace {}: {e}",
            parts.workspace.display()
        ))
    })?;
    let workspace = std::fs::canonicalize(parts.workspace)?;
    let mut grants = Vec::new();
    let mut infos = Vec::new();
    for g in crate::grants::check_for_mount(parts.grants)? {
        infos.push(g.info);
        grants.push(GrantSpec {
            host_path: g.host_path,
            name: g.name,
            writable: g.writable,
        });
    }
    let mut skills = Vec::new();
    let folders = parts
        .skills
        .iter()
        .map(|(path, dir)| ("skill", ".skills", path, dir))
        .chain(
            parts
                .plugins
                .iter()
                .map(|(name, dir)| ("plugin", ".plugins", name, dir)),
        );
    for (what, under, name, dir) in folders {
        let host_path = std::fs::canonicalize(dir)
            .map_err(|e| SandboxError::Config(format!("cannot mount the {what} `{name}`: {e}")))?;
        skills.push(GrantSpec {
            host_path,
            name: format!("{under}/{name}"),
            writable: false,
        });
    }
    let guest = parts
        .guest
        .map(|g| {
            std::fs::canonicalize(&g.path).map_err(|e| {
                SandboxError::Start(format!(
                    "cannot find the guest {}: {e} — build it with `cargo build -p cubicle-guest`",
                    g.path.display()
                ))
            })
        })
        .transpose()?;
    let cgroup = format!(
        "s{}-{}",
        std::process::id(),
        SESSION_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let spec = LaunchSpec {
        guest,
        guest_args: parts.guest.map(|g| g.args.clone()).unwrap_or_default(),
        workspace: workspace.clone(),
        grants,
        skills,
        rootfs: parts.rootfs.cloned(),
        limits: parts.limits.clone(),
        dangerously_allow_no_landlock: parts.dangerously_allow_no_landlock,
        cgroup: Some(cgroup.clone()),
        guest_log: std::env::var("CUBICLE_GUEST_LOG").ok(),
        parent_pid: Some(std::process::id()),
    };
    Ok(Prepared {
        spec,
        grants: infos,
        workspace,
        cgroup,
    })
}

/// Reads the launcher's hand-off record (the first bytes on its stdout) and
/// takes charge of the PID 1 it names.
async fn take_pid1(
    stdout: &mut tokio::process::ChildStdout,
    launcher: &std::path::Path,
) -> Result<Pid1, SandboxError> {
    let mut record = [0u8; HANDOFF_LEN];
    match tokio::time::timeout(HANDOFF_TIMEOUT, stdout.read_exact(&mut record)).await {
        Err(_) => {
            return Err(SandboxError::Start(format!(
                "the jail launcher did not start the jail within {} s",
                HANDOFF_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(e)) => {
            return Err(SandboxError::Start(format!(
                "the jail launcher ended before starting the jail ({e})"
            )));
        }
        Ok(Ok(_)) => {}
    }
    let pid = parse_handoff(&record).ok_or_else(|| {
        SandboxError::Start(format!(
            "the jail launcher {} does not speak this cubicle's hand-off — install the \
             cubicle-jail-init of this version beside cubicle, or unset {}",
            launcher.display(),
            super::JAIL_INIT_ENV
        ))
    })?;
    Pid1::adopt(pid)
        .map_err(|e| SandboxError::Start(format!("cannot watch the jail's PID 1 ({pid}): {e}")))
}

/// What a failed start cleans up, and where it finds the reason.
struct StartFailure {
    setup_error: Arc<Mutex<Option<String>>>,
    stderr_task: JoinHandle<()>,
    cgroup: String,
}

impl StartFailure {
    /// Once the jail's processes are gone: waits for their last stderr
    /// line, removes the session cgroup and returns the setup error they
    /// printed, else `fallback`.
    async fn report(self, fallback: SandboxError) -> SandboxError {
        // Every writer of the stderr pipe is gone, so it ends soon.
        let _ = tokio::time::timeout(STOP_GRACE, self.stderr_task).await;
        let cg = self.cgroup;
        let _ = tokio::task::spawn_blocking(move || limits::remove_cgroup(&cg)).await;
        let reason = self.setup_error.lock().ok().and_then(|m| m.clone());
        match reason {
            Some(line) => SandboxError::Start(line),
            None => fallback,
        }
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
        if let Some((msg, warning)) = launcher_message(&line) {
            if !warning && let Ok(mut slot) = setup_error.lock() {
                slot.get_or_insert(msg.to_owned());
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
        Some(self.pid1())
    }

    async fn exec(
        &self,
        req: ExecRequest,
        live: Option<mpsc::Sender<OutputChunk>>,
    ) -> Result<ExecOutput, SandboxError> {
        let Some((cap, _)) = &self.cap else {
            return self.client.exec(req, live).await;
        };
        let kills = cap.kills();
        let mut out = self.client.exec(req, live.clone()).await?;
        if let Some(note) = cap.note_after(kills, &out, &self.client).await {
            let line = format!("{note}\n").into_bytes();
            if let Some(live) = &live {
                let _ = live
                    .send(OutputChunk {
                        stream: OutputStream::Stderr,
                        data: line.clone(),
                    })
                    .await;
            }
            if !out.stderr.is_empty() && !out.stderr.ends_with(b"\n") {
                out.stderr.push(b'\n');
            }
            out.stderr.extend_from_slice(&line);
        }
        Ok(out)
    }

    async fn stop(&self) -> Result<(), SandboxError> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if let Some((_, task)) = &self.cap {
            task.abort();
        }
        if self.client.is_connected()
            && tokio::time::timeout(STOP_GRACE, self.client.shutdown())
                .await
                .is_err()
        {
            tracing::warn!("guest did not acknowledge shutdown; killing the jail");
        }
        match tokio::time::timeout(STOP_GRACE, self.pid1.wait()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "waiting for the jail's PID 1 failed"),
            Err(_) => {
                // The kernel kills the whole PID namespace with its PID 1.
                self.pid1.kill();
                self.pid1.wait().await?;
            }
        }
        let cg = self.cgroup.clone();
        let _ = tokio::task::spawn_blocking(move || limits::remove_cgroup(&cg)).await;
        Ok(())
    }
}

impl Drop for JailComputer {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.cap {
            task.abort();
        }
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        // Without a graceful stop, kill at once: everything in the jail dies
        // with its PID 1, so nothing is orphaned on the host. A plain thread
        // reaps it and then removes the cgroup, even when no runtime is left.
        self.pid1.kill();
        let pid1 = self.pid1.clone();
        let cg = self.cgroup.clone();
        std::thread::spawn(move || {
            pid1.wait_blocking();
            limits::remove_cgroup(&cg);
        });
    }
}

/// How often the workspace cap's monitor measures the workspace.
pub(super) const CAP_INTERVAL: Duration = Duration::from_millis(250);

/// Directory entries one monitor pass examines at most; a larger workspace
/// is measured over several passes.
pub(super) const CAP_PASS_ENTRIES: usize = 50_000;

/// Directory entries a re-measurement after a command examines at most.
const CAP_REMEASURE_ENTRIES: usize = 200_000;

/// Directories the walk keeps open at once (its depth-first stack).
const CAP_OPEN_DIRS: usize = 32;

/// Directories below the open stack's depth the walk remembers to visit
/// later; beyond this many, deeper directories go unmeasured (logged).
const CAP_DEFERRED_DIRS: usize = 8192;

/// While over the cap, growth beyond this much over the lowest usage seen
/// since stops every running command again.
const CAP_GROWTH_SLACK: u64 = 1 << 20;

const MIB: u64 = 1 << 20;

/// The host-side cap on the workspace's disk usage (step 10 in
/// [`crate::jail`]): a monitor measures the workspace every
/// [`CAP_INTERVAL`] and, when it is over the cap, kills every running
/// command; commands' results then say why.
#[derive(Debug)]
pub(super) struct WorkspaceCap {
    cap: u64,
    walk: Mutex<Walk>,
    state: Mutex<CapState>,
    /// How many times the monitor killed the running commands.
    kills: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct CapState {
    /// Over the cap at the last measurement.
    over: bool,
    /// Bytes in use at the last measurement (or the partial sum that
    /// crossed the cap).
    pub(super) used: u64,
    /// Bytes in use when the cap was last crossed.
    breach_used: u64,
    /// Lowest usage since the last kill, while over the cap.
    baseline: u64,
}

impl WorkspaceCap {
    pub(super) fn new(root: PathBuf, cap: u64) -> Self {
        Self {
            cap,
            walk: Mutex::new(Walk::new(root)),
            state: Mutex::new(CapState::default()),
            kills: AtomicU64::new(0),
        }
    }

    fn kills(&self) -> u64 {
        self.kills.load(Ordering::SeqCst)
    }

    pub(super) fn state(&self) -> CapState {
        self.state.lock().map(|s| *s).unwrap_or_default()
    }

    /// One monitor pass (blocking): continues the walk for at most
    /// `entries` entries; true when the running commands must be killed.
    pub(super) fn pass(&self, entries: usize) -> bool {
        let step = match self.walk.lock() {
            Ok(mut w) => w.step(entries),
            Err(_) => return false,
        };
        self.observe(step)
    }

    /// Measures afresh (blocking), as far as `entries` entries go.
    fn remeasure(&self, entries: usize) -> bool {
        let step = match self.walk.lock() {
            Ok(mut w) => {
                w.restart();
                w.step(entries)
            }
            Err(_) => return false,
        };
        self.observe(step)
    }

    fn observe(&self, step: WalkStep) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        let kill = match step {
            // A partial sum only ever grows during a walk: once it is over
            // the cap, the workspace is.
            WalkStep::Partial(sum) => {
                if sum > self.cap && !st.over {
                    st.over = true;
                    st.used = sum;
                    st.breach_used = sum;
                    st.baseline = sum;
                    true
                } else {
                    false
                }
            }
            WalkStep::Done(sum) => {
                st.used = sum;
                if sum <= self.cap {
                    st.over = false;
                    false
                } else if !st.over {
                    st.over = true;
                    st.breach_used = sum;
                    st.baseline = sum;
                    true
                } else if sum > st.baseline.saturating_add(CAP_GROWTH_SLACK) {
                    // Still over, and growing: something is writing again.
                    st.breach_used = sum;
                    st.baseline = sum;
                    true
                } else {
                    st.baseline = st.baseline.min(sum);
                    false
                }
            }
        };
        if kill {
            self.kills.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(
                cap = self.cap,
                used = st.used,
                "the workspace is over its cap; stopping every command"
            );
        }
        kill
    }

    /// The line to add to a finished command's stderr, if any: the command
    /// was stopped by the cap (the monitor killed commands while it ran,
    /// and it died of a signal), or the workspace is still over the cap.
    /// While over, the workspace is measured afresh first, so that a
    /// command that freed space is not warned.
    async fn note_after(
        self: &Arc<Self>,
        kills_before: u64,
        out: &ExecOutput,
        client: &GuestClient,
    ) -> Option<String> {
        let stopped = self.kills() != kills_before && out.result.signal.is_some();
        if self.state().over {
            let cap = self.clone();
            let kill = tokio::task::spawn_blocking(move || cap.remeasure(CAP_REMEASURE_ENTRIES))
                .await
                .unwrap_or(false);
            if kill {
                client.signal_all(libc::SIGKILL);
            }
        }
        let st = self.state();
        let cap_mib = self.cap / MIB;
        if stopped {
            let used = if st.over { st.used } else { st.breach_used };
            Some(format!(
                "cubicle: the workspace is over its {cap_mib} MiB cap ({} MiB used); the command \
                 was stopped — delete files to continue",
                used.div_ceil(MIB)
            ))
        } else if st.over {
            Some(format!(
                "cubicle: the workspace is over its {cap_mib} MiB cap ({} MiB used); commands \
                 that write to it are stopped — delete files to continue",
                st.used.div_ceil(MIB)
            ))
        } else {
            None
        }
    }
}

/// Measures the workspace every [`CAP_INTERVAL`] and kills every running
/// command when it is over the cap. Ends when aborted (the computer
/// stopped or was dropped) or when the client is gone.
async fn monitor_workspace(cap: Arc<WorkspaceCap>, signaller: ExecSignaller) {
    let mut tick = tokio::time::interval(CAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let c = cap.clone();
        let Ok(kill) = tokio::task::spawn_blocking(move || c.pass(CAP_PASS_ENTRIES)).await else {
            return;
        };
        if kill {
            let n = signaller.signal_all(libc::SIGKILL);
            tracing::warn!(
                commands = n,
                "killed the running commands: workspace over its cap"
            );
        }
    }
}

/// Where a walk got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalkStep {
    /// Not finished; the bytes counted so far.
    Partial(u64),
    /// Finished; the bytes of the whole tree. The next step starts over.
    Done(u64),
}

/// A resumable depth-first walk adding up the disk space (allocated
/// blocks) of a tree, without following symbolic links. Its memory is
/// bounded: at most [`CAP_OPEN_DIRS`] open directories and
/// [`CAP_DEFERRED_DIRS`] remembered paths, never the whole tree.
#[derive(Debug)]
struct Walk {
    root: PathBuf,
    open: Vec<ReadDir>,
    deferred: Vec<PathBuf>,
    total: u64,
    /// Directories skipped in this walk because `deferred` was full.
    unmeasured: u64,
    /// Whether that was logged already (once per session is enough).
    warned: bool,
}

impl Walk {
    fn new(root: PathBuf) -> Self {
        let mut w = Self {
            root,
            open: Vec::new(),
            deferred: Vec::new(),
            total: 0,
            unmeasured: 0,
            warned: false,
        };
        w.restart();
        w
    }

    fn restart(&mut self) {
        self.open.clear();
        self.deferred.clear();
        self.deferred.push(self.root.clone());
        self.total = std::fs::symlink_metadata(&self.root).map_or(0, |m| blocks_bytes(&m));
        self.unmeasured = 0;
    }

    /// Examines at most `entries` directory entries.
    fn step(&mut self, entries: usize) -> WalkStep {
        for _ in 0..entries {
            let Some(top) = self.open.last_mut() else {
                let Some(dir) = self.deferred.pop() else {
                    let total = self.total;
                    if self.unmeasured > 0 && !self.warned {
                        self.warned = true;
                        tracing::warn!(
                            dirs = self.unmeasured,
                            "the workspace is nested too deeply to measure fully"
                        );
                    }
                    self.restart();
                    return WalkStep::Done(total);
                };
                // Vanished or unreadable directories count for nothing.
                if let Ok(rd) = std::fs::read_dir(&dir) {
                    self.open.push(rd);
                }
                continue;
            };
            match top.next() {
                None | Some(Err(_)) => {
                    self.open.pop();
                }
                Some(Ok(entry)) => {
                    // `DirEntry::metadata` does not follow symbolic links.
                    let Ok(meta) = entry.metadata() else {
                        continue;
                    };
                    self.total = self.total.saturating_add(blocks_bytes(&meta));
                    if meta.is_dir() {
                        let path = entry.path();
                        if self.open.len() < CAP_OPEN_DIRS {
                            if let Ok(rd) = std::fs::read_dir(&path) {
                                self.open.push(rd);
                            }
                        } else if self.deferred.len() < CAP_DEFERRED_DIRS {
                            self.deferred.push(path);
                        } else {
                            self.unmeasured += 1;
                        }
                    }
                }
            }
        }
        WalkStep::Partial(self.total)
    }
}

/// Disk space a file takes: allocated blocks, so sparse files count for
/// what they really use.
fn blocks_bytes(meta: &std::fs::Metadata) -> u64 {
    meta.blocks().saturating_mul(512)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn full_walk(w: &mut Walk, entries: usize) -> (u64, usize) {
        for passes in 1..10_000 {
            if let WalkStep::Done(total) = w.step(entries) {
                return (total, passes);
            }
        }
        panic!("the walk never finished");
    }

    #[test]
    fn walk_counts_blocks_across_passes_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Deeper than the open stack, to exercise the deferred list.
        let mut deep = root.to_path_buf();
        for i in 0..(CAP_OPEN_DIRS + 5) {
            deep.push(format!("d{i}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("data"), vec![1u8; 1 << 20]).unwrap();
        std::fs::write(root.join("top"), vec![1u8; 1 << 20]).unwrap();
        // Sparse: a huge apparent size, almost no blocks.
        let sparse = std::fs::File::create(root.join("sparse")).unwrap();
        sparse.set_len(1 << 40).unwrap();
        // A link to the whole host must not be walked.
        std::os::unix::fs::symlink("/", root.join("host")).unwrap();

        let mut w = Walk::new(root.to_path_buf());
        let (total, passes) = full_walk(&mut w, 3);
        assert!(passes > 1);
        assert!((2 << 20..4 << 20).contains(&total), "{total}");
        let (again, _) = full_walk(&mut w, 1_000);
        assert_eq!(again, total);
    }

    #[test]
    fn cap_kills_once_then_on_growth_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let cap = WorkspaceCap::new(dir.path().to_path_buf(), 2 << 20);
        assert!(!cap.remeasure(1_000));
        std::fs::write(dir.path().join("a"), vec![1u8; 3 << 20]).unwrap();
        assert!(cap.remeasure(1_000));
        assert!(cap.state().over);
        // Still over but not growing: no second kill.
        assert!(!cap.remeasure(1_000));
        std::fs::write(dir.path().join("b"), vec![1u8; 2 << 20]).unwrap();
        assert!(cap.remeasure(1_000));
        assert_eq!(cap.kills(), 2);
        std::fs::remove_file(dir.path().join("a")).unwrap();
        std::fs::remove_file(dir.path().join("b")).unwrap();
        assert!(!cap.remeasure(1_000));
        assert!(!cap.state().over);
    }
}
