//! The host side of the guest protocol: a [`GuestClient`] drives one
//! `cubicle-guest` over any byte stream, multiplexing concurrent requests by
//! id, streaming command output, and relaying egress tunnels.
//!
//! Everything the guest sends is untrusted: frames are size-capped by
//! [`cubicle_guest::wire`], unknown ids and malformed frames are logged and
//! dropped, and nothing the guest says can make the host panic. When the
//! stream closes, every pending call fails with
//! [`SandboxError::Disconnected`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cubicle_guest::Window;
use cubicle_guest::wire::{self, WireError};
use cubicle_protocol::guest::{
    DATA_CHUNK, DirEntry, ExecRequest, ExecResult, FileStat, GrepMatch, GrepRequest, GuestConfig,
    GuestFrame, HostFrame, MAX_FILE_CHUNK, OUTPUT_WINDOW, Op, OpResult, OutputStream,
    PROTOCOL_VERSION,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::computer::{ExecOutput, OutputChunk, SandboxError};

/// How long the guest has to answer the hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most output collected for a command whose request sets no cap, so that a
/// hostile command cannot exhaust the host's memory.
pub const DEFAULT_OUTPUT_CAP: u64 = 64 * 1024 * 1024;

/// Why a tunnel is closed when the guest sent more than its window.
const OVERRUN: &str = "the guest sent more than the tunnel's flow-control window";

/// Why a command fails when the guest sent more output than its window.
const OUTPUT_OVERRUN: &str = "the guest sent more output than the request's flow-control window";

/// Why a tunnel is refused when the session has no network.
const NO_NETWORK: &str = "network access is not available in this cubicle";

/// A byte stream in both directions (a socket, say).
pub trait AsyncReadWrite: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite + ?Sized> AsyncReadWrite for T {}

/// Opens host-side connections for tunnels the guest opens: normally to the
/// egress proxy.
#[async_trait]
pub trait EgressConnector: Send + Sync {
    /// A fresh connection for one tunnel.
    async fn connect(&self) -> std::io::Result<Box<dyn AsyncReadWrite + Send + Unpin>>;
}

/// What the guest said about itself in its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestInfo {
    /// Protocol version in use.
    pub version: u32,
    /// `cubicle-guest` build version.
    pub guest_version: String,
    /// The guest's pid in its own PID namespace.
    pub pid: u32,
    /// Optional features it supports.
    pub capabilities: Vec<String>,
}

/// What the reader task delivers to a waiting call.
#[derive(Debug)]
enum Event {
    Output(OutputStream, Vec<u8>),
    Done(Result<OpResult, SandboxError>),
}

/// A pending request: `None` when nobody waits any more (a cancelled exec, a
/// fire-and-forget signal) and its answer is to be dropped quietly.
type Waiter = Option<mpsc::UnboundedSender<Event>>;

/// An open tunnel, as the frame reader sees it. Dropping the last one (the
/// map's, when the tunnel is closed) silences the doorbell, which ends the
/// relay task and its connection.
#[derive(Clone)]
struct HostTunnel {
    /// Guest bytes on their way to the upstream.
    inbound: Arc<Inbound>,
    /// Rung when `inbound` has news; the relay task holds the receiver.
    doorbell: mpsc::Sender<()>,
    /// The window of what the host sends the guest.
    sending: Arc<Window>,
}

/// What the guest sent and the relay task has yet to take, kept as one
/// buffer: the memory it holds follows the window's byte count whatever
/// the sizes of the frames (a queue of frames would cost a node per frame,
/// so a hostile guest sending one byte at a time could multiply it).
#[derive(Default)]
struct Inbound {
    /// The guest's window as this side counts it: bytes received and not yet
    /// acknowledged. A guest that overruns it loses the tunnel.
    received: Window,
    state: Mutex<InboundState>,
}

#[derive(Default)]
struct InboundState {
    bytes: Vec<u8>,
    /// The guest half-closed: once `bytes` is written, so does the relay.
    eof: bool,
}

impl HostTunnel {
    /// Takes guest bytes; `false` when they overrun the window.
    fn push(&self, data: &[u8]) -> bool {
        if data.len() > self.inbound.received.room() {
            return false;
        }
        if let Ok(mut st) = self.inbound.state.lock()
            && !st.eof
        {
            self.inbound.received.sent(data.len());
            st.bytes.extend_from_slice(data);
        }
        self.ring();
        true
    }

    /// The guest half-closed its end.
    fn eof(&self) {
        if let Ok(mut st) = self.inbound.state.lock() {
            st.eof = true;
        }
        self.ring();
    }

    fn ring(&self) {
        // Full means a ring is already pending, which covers this one.
        let _ = self.doorbell.try_send(());
    }
}

/// State shared by the client, its tasks and its handles.
struct Shared {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Waiter>>,
    /// The commands started and not yet finished or cancelled, each with
    /// the `Output` frames received and not yet acknowledged: the guest's
    /// output window as this side counts it.
    execs: Mutex<HashMap<u64, u64>>,
    tunnels: Mutex<HashMap<u64, HostTunnel>>,
    /// Why the connection closed, once it has.
    closed: Mutex<Option<String>>,
    connected: AtomicBool,
    out: mpsc::UnboundedSender<HostFrame>,
    egress: Option<Arc<dyn EgressConnector>>,
}

impl Shared {
    fn disconnected(&self) -> SandboxError {
        let reason = self
            .closed
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .unwrap_or_else(|| "the connection closed".to_owned());
        SandboxError::Disconnected(reason)
    }

    /// Allocates an id and registers a waiter for it.
    fn register(
        &self,
        waiting: bool,
    ) -> Result<(u64, Option<mpsc::UnboundedReceiver<Event>>), SandboxError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = if waiting {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| SandboxError::Protocol("client state poisoned".to_owned()))?;
        // Checked under the lock `close` takes, so no call can register after
        // the pending calls were failed and then wait forever.
        if !self.connected.load(Ordering::SeqCst) {
            return Err(self.disconnected());
        }
        pending.insert(id, tx);
        Ok((id, rx))
    }

    fn forget(&self, id: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&id);
        }
    }

    /// Keeps the id registered but drops whatever arrives for it.
    fn ignore(&self, id: u64) {
        if let Ok(mut p) = self.pending.lock()
            && let Some(w) = p.get_mut(&id)
        {
            *w = None;
        }
    }

    fn send(&self, frame: HostFrame) -> Result<(), SandboxError> {
        self.out.send(frame).map_err(|_| self.disconnected())
    }

    /// Marks the connection closed and fails every pending call.
    fn close(&self, reason: String) {
        let drained: Vec<Waiter> = {
            let Ok(mut pending) = self.pending.lock() else {
                return;
            };
            if !self.connected.swap(false, Ordering::SeqCst) {
                return;
            }
            tracing::debug!(%reason, "guest connection closed");
            if let Ok(mut c) = self.closed.lock() {
                *c = Some(reason.clone());
            }
            pending.drain().map(|(_, w)| w).collect()
        };
        for w in drained.into_iter().flatten() {
            let _ = w.send(Event::Done(Err(SandboxError::Disconnected(reason.clone()))));
        }
        if let Ok(mut t) = self.tunnels.lock() {
            t.clear();
        }
    }

    /// Delivers a frame from the reader task to whoever waits for it.
    fn dispatch(self: &Arc<Self>, frame: GuestFrame) {
        match frame {
            GuestFrame::Response { id, result } => {
                let waiter = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
                match waiter {
                    Some(Some(w)) => {
                        let _ = w.send(Event::Done(Ok(result)));
                    }
                    Some(None) => {}
                    None => tracing::warn!(id, "guest answered an unknown request"),
                }
            }
            GuestFrame::Output { id, stream, data } => self.output(id, stream, data.into_vec()),
            GuestFrame::Error {
                id: Some(id),
                code,
                message,
            } => {
                let waiter = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
                match waiter {
                    Some(Some(w)) => {
                        let _ = w.send(Event::Done(Err(SandboxError::Guest { code, message })));
                    }
                    Some(None) => {}
                    None => {
                        tracing::warn!(id, %code, message, "guest error for an unknown request")
                    }
                }
            }
            GuestFrame::Error {
                id: None,
                code,
                message,
            } => tracing::warn!(%code, message, "guest reported a protocol error"),
            GuestFrame::Hello { .. } => tracing::warn!("guest sent a second hello; ignored"),
            GuestFrame::TunnelOpen { tunnel } => self.open_tunnel(tunnel),
            GuestFrame::TunnelData { tunnel, data } => {
                let Some(open) = self.tunnel(tunnel) else {
                    tracing::debug!(tunnel, "data for an unknown or closed tunnel");
                    return;
                };
                if !open.push(&data.into_vec()) {
                    tracing::warn!(tunnel, "guest overran a tunnel's window; closing it");
                    if self.drop_tunnel(tunnel) {
                        let _ = self.send(HostFrame::TunnelClose {
                            tunnel,
                            reason: Some(OVERRUN.to_owned()),
                        });
                    }
                }
            }
            GuestFrame::TunnelEof { tunnel } => {
                if let Some(open) = self.tunnel(tunnel) {
                    open.eof();
                }
            }
            GuestFrame::TunnelAck { tunnel, bytes } => {
                if let Some(open) = self.tunnel(tunnel) {
                    open.sending.ack(bytes);
                }
            }
            GuestFrame::TunnelClose { tunnel } => {
                // Dropping the sender ends the relay task and its connection.
                if let Ok(mut t) = self.tunnels.lock() {
                    t.remove(&tunnel);
                }
            }
        }
    }

    /// Hands a command's output to its waiter, within the output window.
    fn output(&self, id: u64, stream: OutputStream, data: Vec<u8>) {
        let waiter = self.pending.lock().ok().and_then(|p| p.get(&id).cloned());
        let w = match waiter {
            Some(Some(w)) => w,
            // Nobody waits: dropped, and not counted (the guest was told to
            // stop sending it).
            Some(None) => return,
            None => {
                tracing::warn!(id, "guest sent output for an unknown request");
                return;
            }
        };
        let within = self.execs.lock().ok().and_then(|mut execs| {
            let unacked = execs.get_mut(&id)?;
            let within = *unacked < OUTPUT_WINDOW && data.len() <= DATA_CHUNK;
            *unacked += u64::from(within);
            Some(within)
        });
        match within {
            Some(true) => {
                let _ = w.send(Event::Output(stream, data));
            }
            Some(false) => {
                tracing::warn!(id, "guest overran a command's output window; failing it");
                self.abandon_exec(id);
                let _ = w.send(Event::Done(Err(SandboxError::Protocol(
                    OUTPUT_OVERRUN.to_owned(),
                ))));
            }
            None => tracing::warn!(id, "guest sent output for a request that is not exec"),
        }
    }

    /// Acknowledges `frames` output frames of command `id`, passed on;
    /// nothing for a command abandoned meanwhile.
    fn output_passed(&self, id: u64, frames: u64) {
        let counted = self.execs.lock().ok().is_some_and(|mut execs| {
            execs
                .get_mut(&id)
                .map(|unacked| *unacked = unacked.saturating_sub(frames))
                .is_some()
        });
        if counted {
            let _ = self.send(HostFrame::OutputAck { id, frames });
        }
    }

    /// Nobody waits for command `id` any more: kills its process group, and
    /// lets whatever it still sends fall on the floor.
    fn abandon_exec(&self, id: u64) {
        self.ignore(id);
        if let Ok(mut e) = self.execs.lock() {
            e.remove(&id);
        }
        let _ = self.send(HostFrame::OutputStop { id });
        if let Ok((sig_id, _)) = self.register(false) {
            let _ = self.send(HostFrame::Request {
                id: sig_id,
                op: Op::Signal {
                    exec_id: id,
                    signal: 9,
                },
            });
        }
    }

    fn open_tunnel(self: &Arc<Self>, tunnel: u64) {
        let Some(connector) = self.egress.clone() else {
            let _ = self.send(HostFrame::TunnelClose {
                tunnel,
                reason: Some(NO_NETWORK.to_owned()),
            });
            return;
        };
        let (doorbell, rung) = mpsc::channel(1);
        let open = HostTunnel {
            inbound: Arc::default(),
            doorbell,
            sending: Arc::default(),
        };
        {
            let Ok(mut t) = self.tunnels.lock() else {
                return;
            };
            if t.contains_key(&tunnel) {
                tracing::warn!(tunnel, "guest reopened an open tunnel; ignored");
                return;
            }
            t.insert(tunnel, open.clone());
        }
        let (inbound, sending) = (open.inbound.clone(), open.sending.clone());
        tokio::spawn(relay_tunnel(
            self.clone(),
            tunnel,
            connector,
            inbound,
            sending,
            rung,
        ));
    }

    /// Sends `signal` to every command in flight, without waiting for the
    /// guest's answers; returns how many were signalled.
    fn signal_all(&self, signal: i32) -> usize {
        let ids: Vec<u64> = match self.execs.lock() {
            Ok(e) => e.keys().copied().collect(),
            Err(_) => return 0,
        };
        let mut sent = 0;
        for exec_id in ids {
            let Ok((id, _)) = self.register(false) else {
                break;
            };
            if self
                .send(HostFrame::Request {
                    id,
                    op: Op::Signal { exec_id, signal },
                })
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        sent
    }

    fn tunnel(&self, tunnel: u64) -> Option<HostTunnel> {
        self.tunnels
            .lock()
            .ok()
            .and_then(|t| t.get(&tunnel).cloned())
    }

    fn drop_tunnel(&self, tunnel: u64) -> bool {
        self.tunnels
            .lock()
            .ok()
            .and_then(|mut t| t.remove(&tunnel))
            .is_some()
    }
}

/// Carries one tunnel between the guest and a fresh egress connection.
async fn relay_tunnel(
    shared: Arc<Shared>,
    tunnel: u64,
    connector: Arc<dyn EgressConnector>,
    inbound: Arc<Inbound>,
    sending: Arc<Window>,
    mut rung: mpsc::Receiver<()>,
) {
    let conn = match connector.connect().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(tunnel, error = %e, "cannot reach the egress proxy");
            shared.drop_tunnel(tunnel);
            let _ = shared.send(HostFrame::TunnelClose {
                tunnel,
                reason: Some(format!("cannot reach the network proxy: {e}")),
            });
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(conn);
    let mut buf = vec![0u8; DATA_CHUNK];
    // Whether the upstream and the guest may still send.
    let (mut reading, mut writing) = (true, true);
    while reading || writing {
        // Read no more from upstream than the guest's window takes: a
        // cubicle that stops reading stalls this tunnel, not the host.
        let room = sending.room().min(DATA_CHUNK);
        tokio::select! {
            n = rd.read(&mut buf[..room]), if reading && room > 0 => match n {
                Ok(0) => {
                    reading = false;
                    if shared.send(HostFrame::TunnelEof { tunnel }).is_err() {
                        return;
                    }
                }
                Ok(n) => {
                    sending.sent(n);
                    let frame = HostFrame::TunnelData { tunnel, data: buf[..n].to_vec().into() };
                    if shared.send(frame).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            },
            () = sending.reopened(), if reading && room == 0 => {}
            ring = rung.recv() => match ring {
                Some(()) => {
                    let (bytes, eof) = match inbound.state.lock() {
                        Ok(mut st) => (std::mem::take(&mut st.bytes), st.eof),
                        Err(_) => break,
                    };
                    if !bytes.is_empty() {
                        if wr.write_all(&bytes).await.is_err() {
                            break;
                        }
                        inbound.received.ack(bytes.len() as u64);
                        let ack = HostFrame::TunnelAck { tunnel, bytes: bytes.len() as u64 };
                        if shared.send(ack).is_err() {
                            return;
                        }
                    }
                    if eof && writing {
                        writing = false;
                        if wr.shutdown().await.is_err() {
                            break;
                        }
                    }
                }
                // The guest closed it (or the connection went away).
                None => return,
            },
        }
    }
    // Both ways are done, or the upstream failed.
    if shared.drop_tunnel(tunnel) {
        let _ = shared.send(HostFrame::TunnelClose {
            tunnel,
            reason: None,
        });
    }
}

/// A connection to one `cubicle-guest`.
pub struct GuestClient {
    shared: Arc<Shared>,
    info: GuestInfo,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for GuestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestClient")
            .field("info", &self.info)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Drop for GuestClient {
    fn drop(&mut self) {
        // Ending the writer closes the guest's input, which makes it kill
        // every command and exit.
        for t in &self.tasks {
            t.abort();
        }
        self.shared.close("the client was dropped".to_owned());
    }
}

impl GuestClient {
    /// Performs the handshake over `reader`/`writer` and starts serving.
    pub async fn connect<R, W>(
        mut reader: R,
        mut writer: W,
        config: GuestConfig,
        egress: Option<Arc<dyn EgressConnector>>,
    ) -> Result<Self, SandboxError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let hello = HostFrame::Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            config,
        };
        let info = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            wire::write_frame(&mut writer, &hello)
                .await
                .map_err(|e| SandboxError::Start(format!("cannot greet the guest: {e}")))?;
            handshake(&mut reader).await
        })
        .await
        .map_err(|_| {
            SandboxError::Start(format!(
                "the guest did not answer within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ))
        })??;

        let (out, out_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            tunnels: Mutex::new(HashMap::new()),
            closed: Mutex::new(None),
            connected: AtomicBool::new(true),
            out,
            egress,
        });
        let tasks = vec![
            tokio::spawn(read_loop(reader, shared.clone())),
            tokio::spawn(write_loop(writer, out_rx, shared.clone())),
        ];
        Ok(Self {
            shared,
            info,
            tasks,
        })
    }

    /// What the guest said about itself.
    pub fn info(&self) -> &GuestInfo {
        &self.info
    }

    /// Whether the connection is still up.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Sends one request and waits for its result; guest failures become
    /// [`SandboxError::Guest`].
    pub async fn request(&self, op: Op) -> Result<OpResult, SandboxError> {
        let (id, rx) = self.shared.register(true)?;
        let mut rx = rx.ok_or_else(|| SandboxError::Protocol("no waiter".to_owned()))?;
        let _guard = ForgetOnDrop {
            shared: &self.shared,
            id,
        };
        self.shared.send(HostFrame::Request { id, op })?;
        loop {
            match rx.recv().await {
                Some(Event::Done(result)) => return failed_to_err(result?),
                Some(Event::Output(..)) => {
                    tracing::warn!(id, "guest sent output for a request that is not exec");
                }
                None => return Err(self.shared.disconnected()),
            }
        }
    }

    /// Starts a command; the returned handle waits for it, and dropping the
    /// handle before it finishes kills the command.
    pub fn start_exec(&self, req: ExecRequest) -> Result<ExecHandle, SandboxError> {
        let cap = req.max_output_bytes.unwrap_or(DEFAULT_OUTPUT_CAP);
        let (id, rx) = self.shared.register(true)?;
        let rx = rx.ok_or_else(|| SandboxError::Protocol("no waiter".to_owned()))?;
        if let Ok(mut e) = self.shared.execs.lock() {
            e.insert(id, 0);
        }
        let handle = ExecHandle {
            shared: self.shared.clone(),
            id,
            rx,
            cap,
            finished: false,
        };
        self.shared.send(HostFrame::Request {
            id,
            op: Op::Exec(req),
        })?;
        Ok(handle)
    }

    /// Runs a command to completion, collecting its output (up to the
    /// request's `max_output_bytes`, or [`DEFAULT_OUTPUT_CAP`]) and sending
    /// each chunk to `live` as it arrives. A `live` receiver that falls
    /// behind holds the command up (its output waits in the guest, then in
    /// its pipe), so the host never buffers more than a window of it.
    /// Dropping the future kills the command.
    pub async fn exec(
        &self,
        req: ExecRequest,
        live: Option<mpsc::Sender<OutputChunk>>,
    ) -> Result<ExecOutput, SandboxError> {
        self.start_exec(req)?.wait(live).await
    }

    /// Sends `signal` to the process group of every command in flight
    /// (started with [`GuestClient::start_exec`] or [`GuestClient::exec`]
    /// and not yet finished), without waiting for the guest to confirm;
    /// returns how many commands were signalled. Each command's own call
    /// then returns its result as usual (killed by the signal).
    pub fn signal_all(&self, signal: i32) -> usize {
        self.shared.signal_all(signal)
    }

    /// A handle that can signal this client's commands from another task
    /// without keeping the connection alive.
    pub fn signaller(&self) -> ExecSignaller {
        ExecSignaller {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Sends a signal to a running command's process group.
    pub async fn signal(&self, exec_id: u64, signal: i32) -> Result<(), SandboxError> {
        expect_done(self.request(Op::Signal { exec_id, signal }).await?)
    }

    /// Writes to a running command's stdin pipe, closing it on `eof`.
    pub async fn write_stdin(
        &self,
        exec_id: u64,
        data: Vec<u8>,
        eof: bool,
    ) -> Result<(), SandboxError> {
        expect_done(
            self.request(Op::WriteStdin {
                exec_id,
                data: data.into(),
                eof,
            })
            .await?,
        )
    }

    /// Reads up to `limit` bytes (at most [`MAX_FILE_CHUNK`]) at `offset`;
    /// returns the bytes and the file's size.
    pub async fn read_file(
        &self,
        path: &str,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<(Vec<u8>, u64), SandboxError> {
        match self
            .request(Op::ReadFile {
                path: path.to_owned(),
                offset,
                limit,
            })
            .await?
        {
            OpResult::FileData { data, size } => Ok((data.into_vec(), size)),
            other => Err(unexpected("read_file", &other)),
        }
    }

    /// Replaces a file, creating its parent directories. Contents up to
    /// [`MAX_FILE_CHUNK`] are replaced atomically; larger ones are written as
    /// a first chunk plus appends, so a reader may see them partly written.
    pub async fn write_file(&self, path: &str, data: Vec<u8>) -> Result<(), SandboxError> {
        let chunk = usize::try_from(MAX_FILE_CHUNK).unwrap_or(usize::MAX);
        let mut chunks = data.chunks(chunk);
        let first = chunks.next().unwrap_or(&[]);
        self.write_chunk(path, first, false).await?;
        for rest in chunks {
            self.write_chunk(path, rest, true).await?;
        }
        Ok(())
    }

    /// Appends to a file, creating it (and its parents) when missing.
    pub async fn append_file(&self, path: &str, data: Vec<u8>) -> Result<(), SandboxError> {
        let chunk = usize::try_from(MAX_FILE_CHUNK).unwrap_or(usize::MAX);
        for part in data.chunks(chunk) {
            self.write_chunk(path, part, true).await?;
        }
        Ok(())
    }

    async fn write_chunk(&self, path: &str, data: &[u8], append: bool) -> Result<(), SandboxError> {
        expect_done(
            self.request(Op::WriteFile {
                path: path.to_owned(),
                data: data.into(),
                append,
                create_parents: true,
                mode: None,
            })
            .await?,
        )
    }

    /// Metadata of a path (symlinks followed).
    pub async fn stat(&self, path: &str) -> Result<FileStat, SandboxError> {
        match self
            .request(Op::Stat {
                path: path.to_owned(),
            })
            .await?
        {
            OpResult::Stat { stat: s } => Ok(s),
            other => Err(unexpected("stat", &other)),
        }
    }

    /// Entries of a directory, sorted by name.
    pub async fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, SandboxError> {
        match self
            .request(Op::ListDir {
                path: path.to_owned(),
            })
            .await?
        {
            OpResult::Entries { entries } => Ok(entries),
            other => Err(unexpected("list_dir", &other)),
        }
    }

    /// Creates a directory and its parents.
    pub async fn make_dir(&self, path: &str) -> Result<(), SandboxError> {
        expect_done(
            self.request(Op::MakeDir {
                path: path.to_owned(),
            })
            .await?,
        )
    }

    /// Removes a file, or a directory with `recursive`.
    pub async fn remove(&self, path: &str, recursive: bool) -> Result<(), SandboxError> {
        expect_done(
            self.request(Op::Remove {
                path: path.to_owned(),
                recursive,
            })
            .await?,
        )
    }

    /// Paths under `root` matching `pattern`, newest first, and whether the
    /// list was cut at `limit`.
    pub async fn glob(
        &self,
        root: &str,
        pattern: &str,
        limit: u32,
    ) -> Result<(Vec<String>, bool), SandboxError> {
        match self
            .request(Op::Glob {
                root: root.to_owned(),
                pattern: pattern.to_owned(),
                limit,
            })
            .await?
        {
            OpResult::Paths { paths, truncated } => Ok((paths, truncated)),
            other => Err(unexpected("glob", &other)),
        }
    }

    /// Matching lines, and whether the list was cut at the request's limit.
    pub async fn grep(&self, req: GrepRequest) -> Result<(Vec<GrepMatch>, bool), SandboxError> {
        match self.request(Op::Grep(req)).await? {
            OpResult::Matches { matches, truncated } => Ok((matches, truncated)),
            other => Err(unexpected("grep", &other)),
        }
    }

    /// Round-trip time of a ping.
    pub async fn ping(&self) -> Result<Duration, SandboxError> {
        let start = Instant::now();
        match self.request(Op::Ping).await? {
            OpResult::Pong => Ok(start.elapsed()),
            other => Err(unexpected("ping", &other)),
        }
    }

    /// Asks the guest to kill every command and exit. A guest that is
    /// already gone counts as shut down.
    pub async fn shutdown(&self) -> Result<(), SandboxError> {
        match self.request(Op::Shutdown).await {
            Ok(result) => expect_done(result),
            Err(SandboxError::Disconnected(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Signals a [`GuestClient`]'s commands from elsewhere (see
/// [`GuestClient::signaller`]); does nothing once the client is gone.
#[derive(Debug, Clone)]
pub struct ExecSignaller {
    shared: Weak<Shared>,
}

impl ExecSignaller {
    /// Like [`GuestClient::signal_all`]; 0 when the client is gone.
    pub fn signal_all(&self, signal: i32) -> usize {
        self.shared.upgrade().map_or(0, |s| s.signal_all(signal))
    }
}

/// A running command started by [`GuestClient::start_exec`].
pub struct ExecHandle {
    shared: Arc<Shared>,
    id: u64,
    rx: mpsc::UnboundedReceiver<Event>,
    cap: u64,
    finished: bool,
}

impl std::fmt::Debug for ExecHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecHandle")
            .field("id", &self.id)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ExecHandle {
    /// The exec request's id, for [`GuestClient::signal`] and
    /// [`GuestClient::write_stdin`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the command, collecting its output (up to the cap of
    /// [`GuestClient::exec`]) and forwarding it to `live`.
    pub async fn wait(
        self,
        live: Option<mpsc::Sender<OutputChunk>>,
    ) -> Result<ExecOutput, SandboxError> {
        let cap = self.cap;
        self.collect(live, Some(cap)).await
    }

    /// Waits for the command, forwarding its output to `live` and keeping
    /// none of it: for a command that runs as long as the session, whose
    /// output is a stream (an MCP server's stdout).
    pub async fn stream(self, live: mpsc::Sender<OutputChunk>) -> Result<ExecResult, SandboxError> {
        Ok(self.collect(Some(live), None).await?.result)
    }

    /// Takes the command's output as it comes, keeping up to `keep` bytes
    /// of it, and acknowledges each frame once it is passed on.
    async fn collect(
        mut self,
        mut live: Option<mpsc::Sender<OutputChunk>>,
        keep: Option<u64>,
    ) -> Result<ExecOutput, SandboxError> {
        let mut out = ExecOutput::default();
        let mut room = keep;
        let mut cut = false;
        let mut passed = 0;
        loop {
            match self.rx.recv().await {
                Some(Event::Output(stream, data)) => {
                    if let Some(room) = &mut room {
                        let kept = usize::try_from(*room).unwrap_or(usize::MAX).min(data.len());
                        cut |= kept < data.len();
                        *room -= kept as u64;
                        let sink = match stream {
                            OutputStream::Stdout => &mut out.stdout,
                            OutputStream::Stderr => &mut out.stderr,
                        };
                        sink.extend_from_slice(&data[..kept]);
                    }
                    // A caller that stopped listening still gets the result.
                    if let Some(tx) = &live
                        && tx.send(OutputChunk { stream, data }).await.is_err()
                    {
                        live = None;
                    }
                    // Half a window at a time, or whatever was passed on
                    // once nothing more is queued, so that a guest keeping
                    // pace is not held up for an acknowledgement. (Half a
                    // window alone could not deadlock either: the guest only
                    // waits with a whole window out.)
                    passed += 1;
                    if passed >= OUTPUT_WINDOW / 2 || self.rx.is_empty() {
                        self.shared.output_passed(self.id, passed);
                        passed = 0;
                    }
                }
                Some(Event::Done(result)) => {
                    self.finished = true;
                    return match failed_to_err(result?)? {
                        OpResult::Exit(mut r) => {
                            r.output_truncated |= cut;
                            out.result = r;
                            Ok(out)
                        }
                        other => Err(unexpected("exec", &other)),
                    };
                }
                None => {
                    self.finished = true;
                    return Err(self.shared.disconnected());
                }
            }
        }
    }
}

impl Drop for ExecHandle {
    fn drop(&mut self) {
        if let Ok(mut e) = self.shared.execs.lock() {
            e.remove(&self.id);
        }
        if self.finished {
            return;
        }
        // Cancelled: kill the command's whole process group, and let its
        // remaining output and result fall on the floor.
        self.shared.abandon_exec(self.id);
    }
}

/// Removes a request's waiter when its call is abandoned.
struct ForgetOnDrop<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.shared.forget(self.id);
    }
}

async fn handshake<R: AsyncRead + Unpin>(reader: &mut R) -> Result<GuestInfo, SandboxError> {
    let raw = match wire::read_raw_frame(reader).await {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            return Err(SandboxError::Start(
                "the guest exited during the handshake".to_owned(),
            ));
        }
        Err(e) => return Err(SandboxError::Start(format!("handshake failed: {e}"))),
    };
    match wire::parse_guest_frame(&raw) {
        Ok(GuestFrame::Hello {
            version,
            guest_version,
            pid,
            capabilities,
        }) if version == PROTOCOL_VERSION => Ok(GuestInfo {
            version,
            guest_version,
            pid,
            capabilities,
        }),
        Ok(GuestFrame::Hello { version, .. }) => Err(SandboxError::Protocol(format!(
            "the guest chose protocol version {version}, which this host did not offer"
        ))),
        Ok(GuestFrame::Error { message, .. }) => Err(SandboxError::Start(format!(
            "the guest refused the session: {message}"
        ))),
        Ok(_) => Err(SandboxError::Protocol(
            "the guest did not start with a hello".to_owned(),
        )),
        Err(e) => Err(SandboxError::Protocol(format!(
            "bad hello from the guest: {e}"
        ))),
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut reader: R, shared: Arc<Shared>) {
    let reason = loop {
        let raw = match wire::read_raw_frame(&mut reader).await {
            Ok(Some(raw)) => raw,
            Ok(None) => break "the guest closed the connection".to_owned(),
            // Resynchronising would mean reading what a possibly hostile guest
            // sent; dropping the connection is safer.
            Err(WireError::TooLarge { len }) => {
                break format!("the guest sent a {len}-byte frame, over the limit");
            }
            Err(e) => break e.to_string(),
        };
        match wire::parse_guest_frame(&raw) {
            Ok(frame) => shared.dispatch(frame),
            Err(e) => tracing::warn!(error = %e, "malformed frame from the guest; ignored"),
        }
    };
    shared.close(reason);
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<HostFrame>,
    shared: Arc<Shared>,
) {
    while let Some(frame) = rx.recv().await {
        if let Err(e) = wire::write_frame(&mut writer, &frame).await {
            shared.close(format!("cannot write to the guest: {e}"));
            return;
        }
    }
}

fn failed_to_err(result: OpResult) -> Result<OpResult, SandboxError> {
    match result {
        OpResult::Failed { code, message } => Err(SandboxError::Guest { code, message }),
        other => Ok(other),
    }
}

fn expect_done(result: OpResult) -> Result<(), SandboxError> {
    match result {
        OpResult::Done => Ok(()),
        other => Err(unexpected("request", &other)),
    }
}

fn unexpected(what: &str, got: &OpResult) -> SandboxError {
    let kind = match got {
        OpResult::Done => "done",
        OpResult::Exit(_) => "exit",
        OpResult::FileData { .. } => "file_data",
        OpResult::Stat { .. } => "stat",
        OpResult::Entries { .. } => "entries",
        OpResult::Paths { .. } => "paths",
        OpResult::Matches { .. } => "matches",
        OpResult::Pong => "pong",
        OpResult::Failed { .. } => "failed",
    };
    SandboxError::Protocol(format!("unexpected `{kind}` answer to {what}"))
}
