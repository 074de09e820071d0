//! The host side of the `vm` backend: starts QEMU, waits for the image's
//! init to say it is ready, connects a [`GuestClient`] over the
//! virtio-serial port's socket, watches the VM (heartbeat, QEMU's exit) and
//! tears it down.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cubicle_image::initramfs::{ERROR_PREFIX, LIMITS_LINE, READY_LINE};
use cubicle_protocol::events::GrantInfo;
use cubicle_protocol::guest::{
    DirEntry, ExecRequest, FileStat, GrepMatch, GrepRequest, GuestConfig,
};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::accel::{self, AccelChoice};
use super::config::VmConfig;
use super::qemu::{self, GUEST_MOUNT, GUEST_TAG, Launch, Share, WORKSPACE_TAG};
use super::{EGRESS_LISTEN, WORKSPACE};
use crate::computer::{Computer, ComputerInfo, ExecOutput, OutputChunk, SandboxError};
use crate::grants::utf8_path as utf8;
use crate::guest_client::GuestClient;

/// How long `stop` waits for the guest and then for QEMU.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Console lines kept for error messages.
const CONSOLE_TAIL: usize = 30;

/// Makes run directories unique within this process.
static VM_COUNTER: AtomicU64 = AtomicU64::new(0);

/// State shared with the VM's background tasks.
#[derive(Debug, Default)]
struct Watch {
    /// Last lines of the serial console.
    console: Mutex<VecDeque<String>>,
    /// QEMU's stderr.
    stderr: Mutex<String>,
    /// Why the computer is dead, once it is.
    dead: Mutex<Option<String>>,
    /// Set while `stop` runs, so QEMU's exit is not reported as a crash.
    stopping: AtomicBool,
    /// Set when the init reports it applied the session's limits.
    init_applied_limits: AtomicBool,
}

impl Watch {
    fn console_tail(&self) -> String {
        self.console
            .lock()
            .map(|c| c.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    fn mark_dead(&self, reason: String) {
        if let Ok(mut d) = self.dead.lock()
            && d.is_none()
        {
            tracing::error!(target: "cubicle::vm", "{reason}");
            *d = Some(reason);
        }
    }

    fn dead(&self) -> Option<String> {
        self.dead.lock().ok().and_then(|d| d.clone())
    }

    /// Why QEMU or the init failed, for a start error.
    fn failure(&self) -> String {
        let console = self.console_tail();
        let init_error = console
            .lines()
            .find_map(|l| l.split_once(ERROR_PREFIX).map(|(_, m)| m.to_owned()));
        let stderr = self
            .stderr
            .lock()
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        match (init_error, stderr.is_empty()) {
            (Some(e), _) => format!("the VM's init failed: {e}"),
            (None, false) => format!("QEMU failed: {stderr}"),
            (None, true) if console.is_empty() => "the VM printed nothing".to_owned(),
            (None, true) => format!("the VM's console ended with:\n{console}"),
        }
    }
}

/// One boot of the VM: a QEMU process, its guest and its watchers.
struct VmInstance {
    info: ComputerInfo,
    client: Arc<GuestClient>,
    watch: Arc<Watch>,
    qemu_pid: Option<u32>,
    kill: Arc<Notify>,
    exited: watch::Receiver<bool>,
    watcher: Mutex<Option<JoinHandle<()>>>,
    heartbeat: JoinHandle<()>,
    run_dir: PathBuf,
    accel: AccelChoice,
    boot_time: Duration,
    stopped: AtomicBool,
}

impl std::fmt::Debug for VmInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmInstance")
            .field("info", &self.info)
            .field("qemu_pid", &self.qemu_pid)
            .field("accel", &self.accel)
            .finish_non_exhaustive()
    }
}

/// The base environment of every command: nothing of the host's.
fn base_env() -> BTreeMap<String, String> {
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

impl VmInstance {
    /// Boots the VM, waits for its guest and connects to it.
    async fn start(config: VmConfig) -> Result<Self, SandboxError> {
        let started = Instant::now();
        for (what, path) in [
            ("kernel", &config.image.kernel),
            ("initramfs", &config.image.initramfs),
            ("root disk", &config.image.root_disk),
        ] {
            if !path.is_file() {
                return Err(SandboxError::Start(format!(
                    "the image's {what} {} is missing — build the image with `cubicle image build`",
                    path.display()
                )));
            }
        }
        std::fs::create_dir_all(&config.workspace).map_err(|e| {
            SandboxError::Start(format!(
                "cannot create the workspace {}: {e}",
                config.workspace.display()
            ))
        })?;
        let workspace = std::fs::canonicalize(&config.workspace)?;
        let mut shares = vec![Share {
            tag: WORKSPACE_TAG.to_owned(),
            host: workspace.clone(),
            guest: WORKSPACE.to_owned(),
            writable: true,
        }];
        let mut infos = Vec::new();
        for (i, g) in crate::grants::check_for_mount(&config.grants)?
            .into_iter()
            .enumerate()
        {
            shares.push(Share {
                tag: format!("g{i}"),
                host: g.host_path,
                guest: g.info.path.clone(),
                writable: g.writable,
            });
            infos.push(g.info);
        }
        for (i, (guest, host)) in config.read_only.iter().enumerate() {
            if !guest.starts_with("/mnt/.") || guest.split('/').any(|c| c == "..") {
                return Err(SandboxError::Config(format!(
                    "{} cannot be shown at {guest}: extra read-only folders go below /mnt/.",
                    host.display()
                )));
            }
            let host = std::fs::canonicalize(host).map_err(|e| {
                SandboxError::Start(format!("cannot share {}: {e}", host.display()))
            })?;
            shares.push(Share {
                tag: format!("r{i}"),
                host,
                guest: guest.clone(),
                writable: false,
            });
        }

        let accel = accel::choose(config.accel, &config.qemu, &config.image)
            .await
            .map_err(SandboxError::Start)?;
        tracing::info!(target: "cubicle::vm", accel = accel.qemu_name(), "{}", accel.reason);

        let run_dir = config.run_dir.join(format!(
            "cubicle-vm-{}-{}",
            std::process::id(),
            VM_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir).map_err(|e| {
            SandboxError::Start(format!("cannot create {}: {e}", run_dir.display()))
        })?;
        match Self::boot(
            config,
            accel,
            run_dir.clone(),
            workspace,
            shares,
            infos,
            started,
        )
        .await
        {
            Ok(vm) => Ok(vm),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&run_dir);
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn boot(
        config: VmConfig,
        accel: AccelChoice,
        run_dir: PathBuf,
        workspace: PathBuf,
        mut shares: Vec<Share>,
        infos: Vec<GrantInfo>,
        started: Instant,
    ) -> Result<Self, SandboxError> {
        let guest_path = match &config.guest {
            None => "/usr/local/bin/cubicle-guest".to_owned(),
            Some(g) => {
                // Share a directory holding only the guest, never its
                // build directory.
                let dir = run_dir.join("guest");
                std::fs::create_dir_all(&dir)?;
                let dest = dir.join("cubicle-guest");
                if std::fs::hard_link(&g.path, &dest).is_err() {
                    std::fs::copy(&g.path, &dest).map_err(|e| {
                        SandboxError::Start(format!(
                            "cannot stage the guest {}: {e} — build it with `cargo build -p cubicle-guest`",
                            g.path.display()
                        ))
                    })?;
                }
                shares.push(Share {
                    tag: GUEST_TAG.to_owned(),
                    host: dir,
                    guest: GUEST_MOUNT.to_owned(),
                    writable: false,
                });
                format!("{GUEST_MOUNT}/cubicle-guest")
            }
        };
        let channel = run_dir.join("chan.sock");
        let console = run_dir.join("con.sock");
        let launch = Launch {
            image: &config.image,
            accel: &accel,
            memory_mib: config.memory_mib,
            cpus: config.cpus,
            overlay_mib: config.overlay_mib,
            shares: &shares,
            limits: config.limits.as_ref(),
            guest_path: &guest_path,
            channel: &channel,
            console: &console,
            sandbox: accel::sandbox_supported(&config.qemu),
            tsc_khz: match accel.accel {
                super::Accel::Kvm => None,
                super::Accel::Auto | super::Accel::Tcg => qemu::host_tsc_khz(),
            },
        };
        let args = qemu::args(&launch)?;
        tracing::debug!(target: "cubicle::vm", ?args, "starting QEMU");

        let mut cmd = tokio::process::Command::new(&config.qemu);
        cmd.args(&args)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        crate::spawn::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            SandboxError::Start(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "QEMU ({}) is not installed — install the Debian package qemu-system-x86",
                    config.qemu.display()
                )
            } else {
                format!("cannot run {}: {e}", config.qemu.display())
            })
        })?;
        let qemu_pid = child.id();
        let watch_state = Arc::new(Watch::default());
        if let Some(stderr) = child.stderr.take() {
            let w = watch_state.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut stderr = stderr;
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Ok(mut s) = w.stderr.lock() {
                        *s = String::from_utf8_lossy(&buf).into_owned();
                    }
                }
            });
        }
        let kill = Arc::new(Notify::new());
        let (exit_tx, exited) = watch::channel(false);
        let watcher = {
            let kill = kill.clone();
            let w = watch_state.clone();
            tokio::spawn(async move {
                let status = tokio::select! {
                    s = child.wait() => s,
                    () = kill.notified() => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                if !w.stopping.load(Ordering::SeqCst) {
                    let how = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    w.mark_dead(format!(
                        "the VM exited unexpectedly ({how}); {}",
                        w.failure()
                    ));
                }
                let _ = exit_tx.send(true);
            })
        };
        let mut vm_exit = exited.clone();

        // The console socket appears once QEMU has parsed its options.
        let ready = Arc::new(Notify::new());
        let deadline = tokio::time::Instant::now() + config.boot_timeout;
        let boot = async {
            let stream = loop {
                if *vm_exit.borrow() {
                    return Err(watch_state.failure());
                }
                match tokio::net::UnixStream::connect(&console).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            };
            tokio::spawn(read_console(stream, watch_state.clone(), ready.clone()));
            tokio::select! {
                () = ready.notified() => Ok(()),
                _ = vm_exit.wait_for(|e| *e) => Err(watch_state.failure()),
            }
        };
        let booted = tokio::time::timeout_at(deadline, boot).await;
        let fail = |msg: String| {
            kill.notify_one();
            SandboxError::Start(msg)
        };
        match booted {
            Ok(Ok(())) => {
                tracing::debug!(target: "cubicle::vm", ms = started.elapsed().as_millis() as u64, "the init is starting the guest");
            }
            Ok(Err(msg)) => return Err(fail(msg)),
            Err(_) => {
                return Err(fail(format!(
                    "the VM did not become ready within {} s ({}); {}",
                    config.boot_timeout.as_secs(),
                    accel.reason,
                    watch_state.failure()
                )));
            }
        }
        let stream = tokio::net::UnixStream::connect(&channel)
            .await
            .map_err(|e| fail(format!("cannot connect to the VM's guest channel: {e}")))?;
        let (reader, writer) = stream.into_split();
        let mut env = base_env();
        env.extend(config.env.clone());
        let guest_config = GuestConfig {
            workspace: WORKSPACE.to_owned(),
            // The VM is the boundary; the guest sees only what is mounted.
            roots: Vec::new(),
            env,
            egress_listen: Some(EGRESS_LISTEN.to_owned()),
        };
        let client =
            match GuestClient::connect(reader, writer, guest_config, config.egress.clone()).await {
                Ok(c) => Arc::new(c),
                Err(e) => return Err(fail(format!("{e}; {}", watch_state.failure()))),
            };
        // An image whose init predates `cubicle.limits=` ignores it.
        if let Some(limits) = &config.limits
            && !watch_state.init_applied_limits.load(Ordering::SeqCst)
        {
            tracing::warn!(
                target: "cubicle::vm",
                image = %config.image.root_disk.display(),
                "this image was built by an older cubicle, so the session's limits are applied after boot, which takes seconds under TCG; rebuild it with `cubicle image build` to start sessions faster"
            );
            if let Err(e) = apply_limits(&client, limits).await {
                return Err(fail(format!(
                    "cannot apply the session's limits in the VM: {e}"
                )));
            }
        }
        let boot_time = started.elapsed();
        tracing::info!(
            target: "cubicle::vm",
            pid = qemu_pid,
            accel = accel.qemu_name(),
            boot_ms = boot_time.as_millis() as u64,
            "VM ready"
        );
        let heartbeat = tokio::spawn(heartbeat(
            Arc::downgrade(&client),
            watch_state.clone(),
            kill.clone(),
            config.heartbeat_interval,
            config.heartbeat_timeout,
        ));
        Ok(Self {
            info: ComputerInfo {
                backend: "vm".to_owned(),
                isolated: true,
                workspace: WORKSPACE.to_owned(),
                workspace_host: utf8(&workspace)?,
                grants: infos,
            },
            client,
            watch: watch_state,
            qemu_pid,
            kill,
            exited,
            watcher: Mutex::new(Some(watcher)),
            heartbeat,
            run_dir,
            accel,
            boot_time,
            stopped: AtomicBool::new(false),
        })
    }
}

/// For images whose init cannot apply the limits itself (it then does so
/// before the guest starts, in milliseconds rather than seconds under TCG):
/// moves the guest into a `pids` cgroup, gives it the resource limits its
/// commands inherit and caps `/tmp` and `/dev/shm`; run once, as root inside
/// the VM, before the first command. The guest's main thread (its event
/// loop) also gets a low real-time priority that its children do not
/// inherit (`SCHED_RESET_ON_FORK`): on one emulated CPU a fork bomb's
/// hundreds of runnable processes would otherwise starve it past the
/// heartbeat, and it must stay able to answer, report and kill. The
/// kernel's real-time throttling still leaves the commands 5 % at worst.
async fn apply_limits(client: &GuestClient, l: &super::VmLimits) -> Result<(), String> {
    let pid = client.info().pid;
    let tmp_kib = l.tmp_bytes >> 10;
    let script = format!(
        "set -e\n\
         grep -q ' /sys/fs/cgroup ' /proc/mounts || mount -t cgroup2 cgroup2 /sys/fs/cgroup\n\
         echo +pids > /sys/fs/cgroup/cgroup.subtree_control\n\
         mkdir -p /sys/fs/cgroup/session\n\
         echo {procs} > /sys/fs/cgroup/session/pids.max\n\
         echo {pid} > /sys/fs/cgroup/session/cgroup.procs\n\
         chrt --reset-on-fork --fifo --pid 1 {pid}\n\
         mount -o remount,size={tmp_kib}k /tmp\n\
         mount -o remount,size={tmp_kib}k /dev/shm\n\
         python3 -c 'import resource as r\n\
         for k,v in ((r.RLIMIT_DATA,{data}),(r.RLIMIT_NOFILE,{files}),(r.RLIMIT_FSIZE,{fsize})): r.prlimit({pid},k,(v,v))'\n",
        procs = l.max_processes,
        data = l.process_memory_bytes,
        files = l.open_files,
        fsize = l.file_size_bytes,
    );
    let mut req = ExecRequest::shell(script);
    req.timeout_ms = Some(30_000);
    let out = client.exec(req, None).await.map_err(|e| e.to_string())?;
    if out.result.code == Some(0) {
        Ok(())
    } else {
        Err(format!(
            "{:?}: {}",
            out.result,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Copies the serial console into the log and the kept tail; wakes `ready`
/// at the init's ready line.
async fn read_console(stream: tokio::net::UnixStream, w: Arc<Watch>, ready: Arc<Notify>) {
    let mut lines = tokio::io::BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim_end_matches('\r').to_owned();
        tracing::debug!(target: "cubicle::vm::console", "{line}");
        if line.contains(LIMITS_LINE) {
            w.init_applied_limits.store(true, Ordering::SeqCst);
        }
        if line.contains(READY_LINE) {
            ready.notify_one();
        }
        if let Ok(mut c) = w.console.lock() {
            if c.len() == CONSOLE_TAIL {
                c.pop_front();
            }
            c.push_back(line);
        }
    }
}

/// Pings the guest every `interval`; a ping unanswered within `timeout`
/// marks the VM dead and kills it, which fails every pending request.
async fn heartbeat(
    client: std::sync::Weak<GuestClient>,
    w: Arc<Watch>,
    kill: Arc<Notify>,
    interval: Duration,
    timeout: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(c) = client.upgrade() else { return };
        let ping = tokio::time::timeout(timeout, c.ping()).await;
        drop(c);
        match ping {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if !w.stopping.load(Ordering::SeqCst) {
                    w.mark_dead(format!("the VM's guest went away: {e}; {}", w.failure()));
                }
                kill.notify_one();
                return;
            }
            Err(_) => {
                w.mark_dead(format!(
                    "the VM stopped answering (no heartbeat reply in {} s) and was stopped",
                    timeout.as_secs()
                ));
                kill.notify_one();
                return;
            }
        }
    }
}

impl VmInstance {
    async fn exec(
        &self,
        req: ExecRequest,
        live: Option<tokio::sync::mpsc::Sender<OutputChunk>>,
    ) -> Result<ExecOutput, SandboxError> {
        if let Some(reason) = self.watch.dead() {
            return Err(SandboxError::Disconnected(reason));
        }
        self.client.exec(req, live).await
    }

    async fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.watch.stopping.store(true, Ordering::SeqCst);
        self.heartbeat.abort();
        if self.client.is_connected()
            && tokio::time::timeout(STOP_GRACE, self.client.shutdown())
                .await
                .is_err()
        {
            tracing::warn!(target: "cubicle::vm", "the guest did not acknowledge shutdown; killing the VM");
        }
        // The init reboots once the guest exits, which ends QEMU.
        let mut exited = self.exited.clone();
        if tokio::time::timeout(STOP_GRACE, exited.wait_for(|e| *e))
            .await
            .is_err()
        {
            self.kill.notify_one();
        }
        let watcher = self.watcher.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = watcher {
            let _ = w.await;
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// One boot and, once it is replaced, the one after it. Replaced boots stay
/// in the chain (stopped) until the computer is dropped, so that
/// [`Computer::guest`] can hand out a plain reference to the current one.
struct Generation {
    vm: VmInstance,
    next: OnceLock<Box<Generation>>,
}

/// A cubicle in a QEMU micro-VM.
///
/// A VM that crashes or hangs (see the heartbeat) is replaced by a fresh
/// boot of the same image with the same shares, up to
/// [`VmConfig::max_restarts`] times: the command that found it dead fails
/// with an error saying what was lost and that it may be run again, and the
/// next one runs in the new VM. `/workspace` and the granted folders live on
/// the host and survive; processes, `/tmp` and the overlay do not.
pub struct VmComputer {
    config: VmConfig,
    first: Generation,
    restart_lock: tokio::sync::Mutex<()>,
    restarts: AtomicU32,
    stopped: AtomicBool,
}

impl std::fmt::Debug for VmComputer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmComputer")
            .field("current", &self.current())
            .field("restarts", &self.restarts.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl VmComputer {
    /// Boots the VM, waits for its guest and connects to it.
    pub async fn start(config: VmConfig) -> Result<Self, SandboxError> {
        let vm = VmInstance::start(config.clone()).await?;
        Ok(Self {
            config,
            first: Generation {
                vm,
                next: OnceLock::new(),
            },
            restart_lock: tokio::sync::Mutex::new(()),
            restarts: AtomicU32::new(0),
            stopped: AtomicBool::new(false),
        })
    }

    fn current_generation(&self) -> &Generation {
        let mut g = &self.first;
        while let Some(next) = g.next.get() {
            g = next;
        }
        g
    }

    fn current(&self) -> &VmInstance {
        &self.current_generation().vm
    }

    /// The accelerator in use.
    pub fn accel(&self) -> &AccelChoice {
        &self.current().accel
    }

    /// Why that accelerator, for the person.
    pub fn accel_reason(&self) -> &str {
        &self.current().accel.reason
    }

    /// How long the current VM's start took, until the guest's handshake.
    pub fn boot_time(&self) -> Duration {
        self.current().boot_time
    }

    /// Why the current VM is dead, once it is (crashed, hung, killed) and
    /// not yet replaced.
    pub fn dead_reason(&self) -> Option<String> {
        self.current().watch.dead()
    }

    /// The last lines of the current VM's serial console.
    pub fn console_tail(&self) -> String {
        self.current().watch.console_tail()
    }

    /// How many times the VM has been replaced.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// Replaces the VM by a fresh boot, whether or not it is still alive
    /// (for a person who wants a clean machine, or after a crash).
    /// Does not count against [`VmConfig::max_restarts`].
    pub async fn restart(&self) -> Result<(), SandboxError> {
        let _turn = self.restart_lock.lock().await;
        if self.stopped.load(Ordering::SeqCst) {
            return Err(SandboxError::Disconnected("the VM was stopped".to_owned()));
        }
        self.replace().await
    }

    /// Stops the current VM and boots its successor; the caller holds
    /// `restart_lock`.
    async fn replace(&self) -> Result<(), SandboxError> {
        let generation = self.current_generation();
        generation.vm.stop().await;
        let vm = VmInstance::start(self.config.clone()).await?;
        tracing::info!(target: "cubicle::vm", pid = vm.qemu_pid, "the VM was replaced by a fresh boot");
        if let Err(unused) = generation.next.set(Box::new(Generation {
            vm,
            next: OnceLock::new(),
        })) {
            // Cannot happen while the lock is held; do not leak a VM if it did.
            unused.vm.stop().await;
        }
        Ok(())
    }

    /// Passes `result` of an operation on `vm` through, unless it failed
    /// because the VM died: then the VM is replaced (see [`Self::recover`]).
    async fn checked<T>(
        &self,
        vm: &VmInstance,
        result: Result<T, SandboxError>,
    ) -> Result<T, SandboxError> {
        match result {
            Err(SandboxError::Disconnected(msg)) => {
                // Give the watcher a moment to say why.
                let mut exited = vm.exited.clone();
                let _ = tokio::time::timeout(Duration::from_secs(1), exited.wait_for(|e| *e)).await;
                match vm.watch.dead() {
                    Some(reason) => Err(self.recover(vm, reason).await),
                    None => Err(SandboxError::Disconnected(msg)),
                }
            }
            other => other,
        }
    }

    /// After `failed` was found dead with `reason`: replaces it (unless
    /// another call already did, the computer is stopping, or the restarts
    /// are used up) and says what happened, for the model.
    async fn recover(&self, failed: &VmInstance, reason: String) -> SandboxError {
        let _turn = self.restart_lock.lock().await;
        let lost = "A fresh VM was started in its place: /workspace and the granted folders are as they were; running processes and files outside /workspace were lost. Run the command again if it is still needed.";
        if !std::ptr::eq(self.current(), failed) {
            return SandboxError::Disconnected(format!("{reason}. {lost}"));
        }
        if self.stopped.load(Ordering::SeqCst) {
            return SandboxError::Disconnected(reason);
        }
        let done = self.restarts.load(Ordering::SeqCst);
        if self.config.max_restarts == 0 {
            return SandboxError::Disconnected(format!("{reason} — start a new session"));
        }
        if done >= self.config.max_restarts {
            return SandboxError::Disconnected(format!(
                "{reason}. The VM was already restarted {done} times in this session, so it was not restarted again — start a new session"
            ));
        }
        match self.replace().await {
            Ok(()) => {
                self.restarts.fetch_add(1, Ordering::SeqCst);
                SandboxError::Disconnected(format!("{reason}. {lost}"))
            }
            Err(e) => SandboxError::Disconnected(format!(
                "{reason}. Starting a fresh VM failed too ({e}) — start a new session"
            )),
        }
    }
}

#[async_trait]
impl Computer for VmComputer {
    fn info(&self) -> &ComputerInfo {
        &self.current().info
    }

    fn guest(&self) -> &GuestClient {
        &self.current().client
    }

    fn host_pid(&self) -> Option<u32> {
        self.current().qemu_pid
    }

    async fn exec(
        &self,
        req: ExecRequest,
        live: Option<tokio::sync::mpsc::Sender<OutputChunk>>,
    ) -> Result<ExecOutput, SandboxError> {
        let vm = self.current();
        let result = vm.exec(req, live).await;
        self.checked(vm, result).await
    }

    async fn read_file(
        &self,
        path: &str,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<(Vec<u8>, u64), SandboxError> {
        let vm = self.current();
        let result = vm.client.read_file(path, offset, limit).await;
        self.checked(vm, result).await
    }

    async fn write_file(&self, path: &str, data: Vec<u8>) -> Result<(), SandboxError> {
        let vm = self.current();
        let result = vm.client.write_file(path, data).await;
        self.checked(vm, result).await
    }

    async fn stat(&self, path: &str) -> Result<FileStat, SandboxError> {
        let vm = self.current();
        let result = vm.client.stat(path).await;
        self.checked(vm, result).await
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, SandboxError> {
        let vm = self.current();
        let result = vm.client.list_dir(path).await;
        self.checked(vm, result).await
    }

    async fn glob(
        &self,
        root: &str,
        pattern: &str,
        limit: u32,
    ) -> Result<(Vec<String>, bool), SandboxError> {
        let vm = self.current();
        let result = vm.client.glob(root, pattern, limit).await;
        self.checked(vm, result).await
    }

    async fn grep(&self, req: GrepRequest) -> Result<(Vec<GrepMatch>, bool), SandboxError> {
        let vm = self.current();
        let result = vm.client.grep(req).await;
        self.checked(vm, result).await
    }

    async fn stop(&self) -> Result<(), SandboxError> {
        self.stopped.store(true, Ordering::SeqCst);
        let _turn = self.restart_lock.lock().await;
        self.current().stop().await;
        Ok(())
    }
}

impl Drop for VmInstance {
    fn drop(&mut self) {
        self.heartbeat.abort();
        if !self.stopped.load(Ordering::SeqCst) {
            self.watch.stopping.store(true, Ordering::SeqCst);
            // The watcher kills QEMU; if the runtime is gone the watcher is
            // dropped with the child, whose kill-on-drop does it.
            self.kill.notify_one();
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}
