//! Running commands: spawn in a fresh process group with a clean
//! environment, stream output, enforce timeouts and output caps, and report
//! how the command ended.
//!
//! A command owns its process group. Signals (from the host, a timeout, or
//! shutdown) go to the whole group so that they reach grandchildren, and
//! when the command's main process ends whatever it left running in its
//! group is killed too: otherwise a stray background job would hold the
//! output pipes open and the request would never finish.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cubicle_protocol::guest::{
    Command, DATA_CHUNK, ErrorCode, ExecRequest, ExecResult, GuestFrame, OUTPUT_WINDOW, OpResult,
    OutputStream, Stdin,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::confine::Access;
use crate::error::OpError;
use crate::reap;
use crate::server::{Ctx, Outgoing};

/// How long output may keep arriving after the command's process group was
/// killed; only a process that left the group (`setsid`) can hold the pipes
/// longer, and it is not waited for.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// A command that is running, as the rest of the guest sees it.
#[derive(Debug)]
pub struct Running {
    /// Process group id (the pid of the command's main process); `None`
    /// while it is being started.
    pgid: Option<u32>,
    /// A signal asked for before the process existed, delivered at start.
    early_signal: Option<i32>,
    /// Feeds the stdin task of a command started with [`Stdin::Pipe`].
    stdin: Option<mpsc::UnboundedSender<StdinWrite>>,
    /// The output window: one permit per `Output` frame the host has room
    /// for (see the protocol's "Command output and flow control").
    window: Arc<Semaphore>,
}

/// What [`prepare`] hands on to [`run`].
#[derive(Debug)]
pub struct Prepared {
    stdin: Option<mpsc::UnboundedReceiver<StdinWrite>>,
    window: Arc<Semaphore>,
}

/// Registers an exec request before its task starts, so that `write_stdin`
/// and `signal` requests sent right behind it find it.
pub fn prepare(ctx: &Ctx, id: u64, req: &ExecRequest) -> Prepared {
    let (tx, rx) = match req.stdin {
        Stdin::Pipe => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        Stdin::Null | Stdin::Bytes(_) => (None, None),
    };
    let window = Arc::new(Semaphore::new(OUTPUT_WINDOW as usize));
    ctx.execs.insert(
        id,
        Running {
            pgid: None,
            early_signal: None,
            stdin: tx,
            window: window.clone(),
        },
    );
    Prepared { stdin: rx, window }
}

/// One `write_stdin` request on its way to the command.
#[derive(Debug)]
struct StdinWrite {
    data: Vec<u8>,
    eof: bool,
    done: oneshot::Sender<io::Result<()>>,
}

/// The commands currently running, by exec request id.
#[derive(Debug, Default)]
pub struct ExecTable {
    running: Mutex<HashMap<u64, Running>>,
}

impl ExecTable {
    fn insert(&self, id: u64, running: Running) {
        if let Ok(mut map) = self.running.lock() {
            map.insert(id, running);
        }
    }

    fn remove(&self, id: u64) {
        if let Ok(mut map) = self.running.lock() {
            map.remove(&id);
        }
    }

    /// Records the started process; returns a signal that was asked for
    /// while it was starting.
    fn started(&self, id: u64, pgid: u32) -> Option<i32> {
        let mut map = self.running.lock().ok()?;
        let r = map.get_mut(&id)?;
        r.pgid = Some(pgid);
        r.early_signal.take()
    }

    /// Takes the host's acknowledgement of `frames` output frames of command
    /// `id`. The window never opens wider than [`OUTPUT_WINDOW`]; an unknown
    /// id (a command that already ended) is ignored.
    pub fn ack(&self, id: u64, frames: u64) {
        let Ok(map) = self.running.lock() else {
            return;
        };
        if let Some(r) = map.get(&id) {
            let room = (OUTPUT_WINDOW as usize).saturating_sub(r.window.available_permits());
            r.window
                .add_permits(usize::try_from(frames).unwrap_or(usize::MAX).min(room));
        }
    }

    /// The host wants no more of command `id`'s output: closing its window
    /// makes the pumps read and drop it.
    pub fn stop_output(&self, id: u64) {
        if let Ok(map) = self.running.lock()
            && let Some(r) = map.get(&id)
        {
            r.window.close();
        }
    }

    /// Sends SIGKILL to every running command's process group.
    pub fn kill_all(&self) {
        let Ok(map) = self.running.lock() else {
            return;
        };
        for (id, r) in map.iter() {
            if let Some(pgid) = r.pgid {
                tracing::debug!(id, pgid, "killing command");
                let _ = reap::signal_group(pgid, libc::SIGKILL);
            }
        }
    }
}

/// Removes a command from the table however its request ends.
struct Registration<'a> {
    table: &'a ExecTable,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

/// Runs a command to completion.
pub async fn run(ctx: &Arc<Ctx>, id: u64, req: ExecRequest, prepared: Prepared) -> OpResult {
    match run_inner(ctx, id, req, prepared).await {
        Ok(result) => OpResult::Exit(result),
        Err(e) => e.into_result(),
    }
}

async fn run_inner(
    ctx: &Arc<Ctx>,
    id: u64,
    req: ExecRequest,
    prepared: Prepared,
) -> Result<ExecResult, OpError> {
    let _registration = Registration {
        table: &ctx.execs,
        id,
    };
    let cwd_shown = req
        .cwd
        .clone()
        .unwrap_or_else(|| ctx.confine.workspace().display().to_string());
    let cwd = ctx.confine.resolve(&cwd_shown, Access::Read)?;
    match std::fs::metadata(&cwd) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(OpError::new(
                ErrorCode::NotDirectory,
                format!("working directory {cwd_shown} is not a directory"),
            ));
        }
        Err(e) => {
            return Err(OpError::new(
                crate::error::code_of(&e),
                format!("working directory {cwd_shown}: {e}"),
            ));
        }
    }
    let (program, args) = match &req.command {
        Command::Argv(argv) => match argv.split_first() {
            Some((p, rest)) if !p.is_empty() => (p.clone(), rest.to_vec()),
            _ => return Err(OpError::new(ErrorCode::InvalidInput, "empty command")),
        },
        Command::Shell(line) => ("/bin/sh".to_owned(), vec!["-c".to_owned(), line.clone()]),
    };

    // A program found on PATH here is started by path, which lets std use
    // posix_spawn (a vfork, no copy of the guest's page tables) instead of
    // fork and execvp; argv[0] stays as the caller wrote it.
    let path_var = req.env.get("PATH").or_else(|| ctx.base_env.get("PATH"));
    let found = path_var.and_then(|p| search_path(&program, p));
    let command = |path: Option<&std::path::Path>| {
        let mut cmd = match path {
            Some(path) => {
                let mut cmd = std::process::Command::new(path);
                cmd.arg0(&program);
                cmd
            }
            None => std::process::Command::new(&program),
        };
        cmd.args(&args)
            // Nothing of the guest's own environment leaks into commands.
            .env_clear()
            .envs(&ctx.base_env)
            .envs(&req.env)
            .current_dir(&cwd)
            // A group of its own, so signals reach everything it starts.
            .process_group(0)
            .stdin(match req.stdin {
                Stdin::Null => Stdio::null(),
                Stdin::Bytes(_) | Stdin::Pipe => Stdio::piped(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    // std opens every descriptor close-on-exec and replaces 0, 1 and 2 in the
    // child, so the protocol channel (the guest's stdin/stdout) never leaks.
    let started = Instant::now();
    // Held until the command is watched, when the guest reaps orphans.
    let spawning = reap::spawn_guard();
    let spawned = match command(found.as_deref()).spawn() {
        // A script without `#!`: execvp runs it with /bin/sh, posix_spawn
        // refuses it; keep execvp's behaviour.
        Err(e) if found.is_some() && e.raw_os_error() == Some(libc::ENOEXEC) => {
            command(None).spawn()
        }
        other => other,
    };
    let mut child = spawned.map_err(|e| spawn_error(&program, &e))?;
    let pid = child.id();
    let waiter = reap::watch(pid);
    drop(spawning);
    tracing::debug!(id, pid, program, "started command");

    if let Some(sig) = ctx.execs.started(id, pid) {
        let _ = reap::signal_group(pid, sig);
    }
    let stdin_rx = prepared.stdin;

    if let Some(stdin) = child.stdin.take() {
        match tokio::process::ChildStdin::from_std(stdin) {
            Ok(stdin) => {
                let bytes = match &req.stdin {
                    Stdin::Bytes(b) => Some(b.as_slice().to_vec()),
                    Stdin::Null | Stdin::Pipe => None,
                };
                tokio::spawn(feed_stdin(stdin, bytes, stdin_rx));
            }
            Err(e) => tracing::warn!(id, error = %e, "cannot use the command's stdin"),
        }
    }
    let budget = Arc::new(Budget::new(req.max_output_bytes));
    let (stop_reading, reading) = watch::channel(false);
    let pipe = |stream| Pipe {
        id,
        stream,
        out: ctx.out.clone(),
        budget: budget.clone(),
        window: prepared.window.clone(),
        stop: reading.clone(),
    };
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        match tokio::process::ChildStdout::from_std(out) {
            Ok(out) => pumps.push(tokio::spawn(pipe(OutputStream::Stdout).pump(out))),
            Err(e) => tracing::warn!(id, error = %e, "cannot read the command's stdout"),
        }
    }
    if let Some(err) = child.stderr.take() {
        match tokio::process::ChildStderr::from_std(err) {
            Ok(err) => pumps.push(tokio::spawn(pipe(OutputStream::Stderr).pump(err))),
            Err(e) => tracing::warn!(id, error = %e, "cannot read the command's stderr"),
        }
    }
    // `child` is never waited on through std: `reap` owns that.
    drop(child);

    let waiter = waiter.ended();
    tokio::pin!(waiter);
    let deadline = req
        .timeout_ms
        .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let mut timed_out = false;
    let exit = loop {
        tokio::select! {
            exit = &mut waiter => break exit,
            () = sleep_until(deadline), if deadline.is_some() && !timed_out => {
                tracing::debug!(id, pid, "timed out; killing its process group");
                timed_out = true;
                let _ = reap::signal_group(pid, libc::SIGKILL);
            }
        }
    };
    // Leftovers in the group die with the command (see the module docs).
    // The group id cannot have been reused yet: either members remain and
    // hold it, or the kill finds no one.
    let _ = reap::signal_group(pid, libc::SIGKILL);
    let exit = exit.map_err(|e| {
        OpError::new(
            ErrorCode::Internal,
            format!("waiting for the command failed: {e}"),
        )
    })?;
    // The pipes end once the group is gone; only a process that left the
    // group can hold them open, and after the grace its output is not read
    // any more. Output already read still waits for the host to make room:
    // a host slow to take it holds up its own request only.
    let drain_until = tokio::time::Instant::now() + DRAIN_GRACE;
    let mut abandoned = false;
    for mut pump in pumps {
        if tokio::time::timeout_at(drain_until, &mut pump)
            .await
            .is_ok()
        {
            continue;
        }
        if !abandoned {
            tracing::warn!(
                id,
                "output still open after the command ended; abandoning it"
            );
            abandoned = true;
            let _ = stop_reading.send(true);
        }
        let _ = pump.await;
    }
    Ok(ExecResult {
        code: exit.code,
        signal: exit.signal,
        timed_out,
        output_truncated: budget.truncated.load(Ordering::Relaxed),
        duration_ms: millis(started.elapsed()),
        user_ms: millis(exit.user),
        system_ms: millis(exit.system),
        max_rss_kib: exit.max_rss_kib,
    })
}

/// Feeds a request's signal to a running command's process group.
pub fn signal(ctx: &Ctx, exec_id: u64, signal: i32) -> OpResult {
    let pgid = {
        let Ok(mut map) = ctx.execs.running.lock() else {
            return OpError::new(ErrorCode::Internal, "exec table poisoned").into_result();
        };
        let Some(r) = map.get_mut(&exec_id) else {
            return no_such(exec_id);
        };
        match r.pgid {
            Some(pgid) => pgid,
            None => {
                r.early_signal = Some(signal);
                return OpResult::Done;
            }
        }
    };
    match reap::signal_group(pgid, signal) {
        Ok(()) => OpResult::Done,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => no_such(exec_id),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            OpError::new(ErrorCode::InvalidInput, format!("invalid signal {signal}")).into_result()
        }
        Err(e) => OpError::new(ErrorCode::Io, format!("signal {signal}: {e}")).into_result(),
    }
}

/// Writes to the stdin pipe of a running command, closing it on `eof`.
pub async fn write_stdin(ctx: &Ctx, exec_id: u64, data: Vec<u8>, eof: bool) -> OpResult {
    let sender = {
        let Ok(map) = ctx.execs.running.lock() else {
            return OpError::new(ErrorCode::Internal, "exec table poisoned").into_result();
        };
        match map.get(&exec_id) {
            None => return no_such(exec_id),
            Some(r) => r.stdin.clone(),
        }
    };
    let Some(sender) = sender else {
        return OpError::new(
            ErrorCode::InvalidInput,
            format!("command {exec_id} was not started with a stdin pipe"),
        )
        .into_result();
    };
    let (done, wait) = oneshot::channel();
    if sender.send(StdinWrite { data, eof, done }).is_err() {
        return OpError::new(
            ErrorCode::InvalidInput,
            format!("stdin of command {exec_id} is already closed"),
        )
        .into_result();
    }
    match wait.await {
        Ok(Ok(())) => OpResult::Done,
        Ok(Err(e)) => OpError::new(
            ErrorCode::Io,
            format!("writing to the stdin of command {exec_id}: {e}"),
        )
        .into_result(),
        Err(_) => OpError::new(
            ErrorCode::InvalidInput,
            format!("stdin of command {exec_id} is already closed"),
        )
        .into_result(),
    }
}

fn no_such(exec_id: u64) -> OpResult {
    OpError::new(
        ErrorCode::NoSuchProcess,
        format!("no running command has id {exec_id}"),
    )
    .into_result()
}

/// Where `execvp` would find `program` on `path`: the first absolute entry
/// holding an executable file of that name. `None` (leave the search to
/// `execvp`, with its own errors) when `program` has a slash, nothing
/// matches, or an empty or relative entry (relative to the command's working
/// directory) comes first.
fn search_path(program: &str, path: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    if program.contains('/') {
        return None;
    }
    for dir in path.split(':') {
        if !dir.starts_with('/') {
            return None;
        }
        let candidate = std::path::Path::new(dir).join(program);
        let Ok(c) = std::ffi::CString::new(candidate.as_os_str().as_bytes()) else {
            return None;
        };
        // SAFETY: `c` is a valid NUL-terminated string for the call.
        let executable = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0;
        if executable && candidate.is_file() {
            return Some(candidate);
        }
    }
    None
}

fn spawn_error(program: &str, err: &io::Error) -> OpError {
    let message = match err.kind() {
        io::ErrorKind::NotFound if program.contains('/') => format!("no such program: {program}"),
        io::ErrorKind::NotFound => format!("command not found: {program}"),
        io::ErrorKind::PermissionDenied => format!("permission denied: {program}"),
        _ => format!("cannot start {program}: {err}"),
    };
    OpError::new(ErrorCode::SpawnFailed, message)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The shared output allowance of a command's two streams.
#[derive(Debug)]
struct Budget {
    remaining: Mutex<Option<u64>>,
    truncated: AtomicBool,
}

impl Budget {
    fn new(limit: Option<u64>) -> Self {
        Self {
            remaining: Mutex::new(limit),
            truncated: AtomicBool::new(false),
        }
    }

    /// How many of `n` new bytes may be forwarded.
    fn take(&self, n: usize) -> usize {
        let Ok(mut rem) = self.remaining.lock() else {
            return 0;
        };
        match rem.as_mut() {
            None => n,
            Some(left) => {
                let allowed = (*left).min(n as u64);
                *left -= allowed;
                if allowed < n as u64 {
                    self.truncated.store(true, Ordering::Relaxed);
                }
                allowed as usize
            }
        }
    }
}

/// One output stream of a command on its way to the host.
struct Pipe {
    id: u64,
    stream: OutputStream,
    out: mpsc::Sender<Outgoing>,
    budget: Arc<Budget>,
    /// The request's output window, shared by its two streams.
    window: Arc<Semaphore>,
    /// Changes (to true) when the pipe is not to be read any more.
    stop: watch::Receiver<bool>,
}

impl Pipe {
    /// Forwards the stream as `Output` frames until it ends, one frame per
    /// permit of the output window. While the window is closed the output
    /// waits in the pipe, which gathers it, so a slow host gets fewer and
    /// larger frames; once the pipe is full the command waits on it, as on
    /// a slow terminal. Output past the budget is read and dropped, and so
    /// is everything once the host is gone or wants no more, so that the
    /// command never blocks on a pipe nobody will read.
    async fn pump(mut self, mut src: impl AsyncRead + Unpin) {
        let mut buf = vec![0u8; DATA_CHUNK];
        loop {
            let n = tokio::select! {
                read = src.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => self.budget.take(n),
                },
                _ = self.stop.changed() => return,
            };
            if n == 0 {
                continue;
            }
            // A closed window means the host is gone, or wants no more of
            // this output: the chunk is dropped.
            let Ok(permit) = self.window.acquire().await else {
                continue;
            };
            permit.forget();
            let frame = GuestFrame::Output {
                id: self.id,
                stream: self.stream,
                data: buf[..n].to_vec().into(),
            };
            if self.out.send(Outgoing::Frame(frame)).await.is_err() {
                self.window.close();
            }
        }
    }
}

/// Writes a command's stdin: fixed bytes then EOF, or `write_stdin` requests
/// as they come.
async fn feed_stdin(
    mut stdin: tokio::process::ChildStdin,
    bytes: Option<Vec<u8>>,
    rx: Option<mpsc::UnboundedReceiver<StdinWrite>>,
) {
    if let Some(bytes) = bytes {
        // A command that exits without reading its input is not an error.
        let _ = stdin.write_all(&bytes).await;
        return;
    }
    let Some(mut rx) = rx else {
        return;
    };
    while let Some(w) = rx.recv().await {
        let res = async {
            stdin.write_all(&w.data).await?;
            stdin.flush().await
        }
        .await;
        if w.eof || res.is_err() {
            // Dropping the pipe is what delivers EOF; do it before answering
            // so the host's next step sees the command's input closed.
            drop(stdin);
            let _ = w.done.send(res);
            return;
        }
        let _ = w.done.send(res);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn search_path_finds_the_first_executable_like_execvp() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        // Not executable in `a`: skipped, as execvp skips it.
        std::fs::write(a.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::write(b.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(b.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        // A directory of that name is not a program.
        std::fs::create_dir(a.join("dir")).unwrap();
        let path = format!("{}:{}", a.display(), b.display());
        assert_eq!(search_path("tool", &path), Some(b.join("tool")));
        assert_eq!(search_path("dir", &path), None);
        assert_eq!(search_path("missing", &path), None);
        // Slashes and relative entries are left to execvp.
        assert_eq!(search_path("./tool", &path), None);
        assert_eq!(search_path("tool", &format!("rel:{}", b.display())), None);
        assert_eq!(search_path("tool", &format!(":{}", b.display())), None);
    }
}
