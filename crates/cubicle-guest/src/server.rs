//! The guest's main loop: handshake, then read frames from the host and run
//! each request concurrently, sending every reply through one writer task.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use cubicle_protocol::guest::{
    ErrorCode, GuestConfig, GuestFrame, HostFrame, MAX_FRAME_LEN, Op, OpResult, PROTOCOL_VERSION,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use crate::confine::Confinement;
use crate::error::OpError;
use crate::exec::{self, ExecTable};
use crate::files::{self, WriteOptions};
use crate::search;
use crate::tunnel::{self, Tunnels};
use crate::wire::{self, WireError};

/// Frames waiting for the writer; bounded so that a host that stops reading
/// slows commands' output down instead of growing memory.
const OUT_QUEUE: usize = 64;

/// What the writer task is asked to do.
#[derive(Debug)]
pub enum Outgoing {
    /// Send a frame.
    Frame(GuestFrame),
    /// Acknowledge once everything queued before has been written.
    Flush(oneshot::Sender<()>),
}

/// State shared by every request of a connection after the hello.
#[derive(Debug)]
pub struct Ctx {
    /// Path resolution and root checks.
    pub confine: Confinement,
    /// Environment every command starts with.
    pub base_env: BTreeMap<String, String>,
    /// Running commands.
    pub execs: ExecTable,
    /// Request ids being worked on.
    in_flight: Mutex<HashSet<u64>>,
    /// To the writer task.
    pub out: mpsc::Sender<Outgoing>,
    /// Open egress tunnels.
    tunnels: Arc<Tunnels>,
}

/// The guest loop failed in a way that ends it.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The channel to the host broke.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Serves one host connection until it closes or asks to shut down.
pub async fn serve<R, W>(reader: R, writer: W) -> Result<(), ServeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    serve_until(reader, writer, std::future::pending()).await
}

/// Like [`serve`], but also ends (killing every command) when `stop`
/// completes, e.g. on SIGTERM.
pub async fn serve_until<R, W, S>(mut reader: R, writer: W, stop: S) -> Result<(), ServeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
    S: Future<Output = ()>,
{
    let (out, rx) = mpsc::channel(OUT_QUEUE);
    let writer_task = tokio::spawn(write_loop(writer, rx));
    let mut session = Session {
        out,
        ctx: None,
        tasks: Vec::new(),
    };
    tokio::pin!(stop);
    let result = loop {
        let raw = tokio::select! {
            raw = wire::read_raw_frame(&mut reader) => raw,
            () = &mut stop => {
                tracing::info!("asked to stop");
                break Ok(());
            }
        };
        let raw = match raw {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                tracing::info!("host closed the channel");
                break Ok(());
            }
            Err(WireError::TooLarge { len }) => {
                session
                    .send(GuestFrame::Error {
                        id: None,
                        code: ErrorCode::FrameTooLarge,
                        message: format!(
                            "frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit"
                        ),
                    })
                    .await;
                if let Err(e) = wire::discard(&mut reader, len).await {
                    break Err(e.into());
                }
                continue;
            }
            Err(e) => break Err(e.into()),
        };
        let frame: HostFrame = match serde_json::from_slice(&raw) {
            Ok(f) => f,
            Err(e) => {
                session
                    .send(GuestFrame::Error {
                        id: id_of(&raw),
                        code: ErrorCode::BadFrame,
                        message: format!("malformed frame: {e}"),
                    })
                    .await;
                continue;
            }
        };
        if session.handle(frame).await == Flow::Stop {
            break Ok(());
        }
    };
    if let Some(ctx) = &session.ctx {
        ctx.execs.kill_all();
        ctx.tunnels.close_all();
    }
    for t in &session.tasks {
        t.abort();
    }
    // Let queued replies (the shutdown's `Done` above all) reach the host.
    let (ack, flushed) = oneshot::channel();
    if session.out.send(Outgoing::Flush(ack)).await.is_ok() {
        let _ = flushed.await;
    }
    drop(session);
    writer_task.abort();
    result
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

struct Session {
    out: mpsc::Sender<Outgoing>,
    ctx: Option<Arc<Ctx>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Session {
    async fn send(&self, frame: GuestFrame) {
        let _ = self.out.send(Outgoing::Frame(frame)).await;
    }

    async fn error(&self, id: Option<u64>, code: ErrorCode, message: impl Into<String>) {
        self.send(GuestFrame::Error {
            id,
            code,
            message: message.into(),
        })
        .await;
    }

    async fn handle(&mut self, frame: HostFrame) -> Flow {
        match frame {
            HostFrame::Hello {
                min_version,
                max_version,
                config,
            } => self.hello(min_version, max_version, config).await,
            HostFrame::Request { id, op } => {
                let Some(ctx) = self.ctx.clone() else {
                    self.error(Some(id), ErrorCode::OutOfOrder, "request before hello")
                        .await;
                    return Flow::Continue;
                };
                let fresh = ctx
                    .in_flight
                    .lock()
                    .map(|mut s| s.insert(id))
                    .unwrap_or(false);
                if !fresh {
                    self.error(
                        Some(id),
                        ErrorCode::DuplicateId,
                        format!("request id {id} is already in use"),
                    )
                    .await;
                    return Flow::Continue;
                }
                if op == Op::Shutdown {
                    ctx.execs.kill_all();
                    self.send(GuestFrame::Response {
                        id,
                        result: OpResult::Done,
                    })
                    .await;
                    return Flow::Stop;
                }
                let prepared = match &op {
                    Op::Exec(req) => Some(exec::prepare(&ctx, id, req)),
                    _ => None,
                };
                tokio::spawn(async move {
                    let result = dispatch(&ctx, id, op, prepared).await;
                    if let Ok(mut s) = ctx.in_flight.lock() {
                        s.remove(&id);
                    }
                    let _ = ctx
                        .out
                        .send(Outgoing::Frame(GuestFrame::Response { id, result }))
                        .await;
                });
                Flow::Continue
            }
            // Tunnel and flow-control frames: they act on the session, and
            // before the hello there is none, nor anything they could name.
            frame => {
                if let Some(ctx) = &self.ctx {
                    match frame {
                        HostFrame::TunnelData { tunnel, data } => {
                            ctx.tunnels.data(tunnel, data.into_vec());
                        }
                        HostFrame::TunnelEof { tunnel } => ctx.tunnels.eof(tunnel),
                        HostFrame::TunnelAck { tunnel, bytes } => ctx.tunnels.ack(tunnel, bytes),
                        HostFrame::TunnelClose { tunnel, reason } => {
                            ctx.tunnels.close(tunnel, reason.as_deref());
                        }
                        HostFrame::OutputAck { id, frames } => ctx.execs.ack(id, frames),
                        HostFrame::OutputStop { id } => ctx.execs.stop_output(id),
                        // Answered above.
                        HostFrame::Hello { .. } | HostFrame::Request { .. } => {}
                    }
                }
                Flow::Continue
            }
        }
    }

    async fn hello(&mut self, min_version: u32, max_version: u32, config: GuestConfig) -> Flow {
        if self.ctx.is_some() {
            self.error(None, ErrorCode::OutOfOrder, "second hello")
                .await;
            return Flow::Continue;
        }
        if !(min_version..=max_version).contains(&PROTOCOL_VERSION) {
            self.error(
                None,
                ErrorCode::UnsupportedVersion,
                format!(
                    "this guest speaks protocol version {PROTOCOL_VERSION}; the host wants \
                     {min_version} to {max_version} — use a matching cubicle-guest"
                ),
            )
            .await;
            return Flow::Stop;
        }
        let tunnels = Arc::new(Tunnels::default());
        let ctx = Arc::new(Ctx {
            confine: Confinement::new(&config),
            base_env: config.env.clone(),
            execs: ExecTable::default(),
            in_flight: Mutex::new(HashSet::new()),
            out: self.out.clone(),
            tunnels: tunnels.clone(),
        });
        if let Some(addr) = &config.egress_listen {
            match tunnel::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(addr, "egress listener ready");
                    self.tasks.push(tokio::spawn(tunnel::accept_loop(
                        listener,
                        tunnels,
                        self.out.clone(),
                    )));
                }
                // Commands will find no proxy; that is what "no network"
                // looks like anyway, so the session goes on.
                Err(e) => tracing::error!(addr, error = %e, "cannot listen for egress"),
            }
        }
        self.ctx = Some(ctx);
        self.send(GuestFrame::Hello {
            version: PROTOCOL_VERSION,
            guest_version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            capabilities: vec!["tunnel".to_owned()],
        })
        .await;
        Flow::Continue
    }
}

/// Runs one request and produces its result.
async fn dispatch(ctx: &Arc<Ctx>, id: u64, op: Op, prepared: Option<exec::Prepared>) -> OpResult {
    match op {
        Op::Exec(req) => match prepared {
            Some(p) => exec::run(ctx, id, req, p).await,
            None => OpError::new(ErrorCode::Internal, "exec was not prepared").into_result(),
        },
        Op::WriteStdin { exec_id, data, eof } => {
            exec::write_stdin(ctx, exec_id, data.into_vec(), eof).await
        }
        Op::Signal { exec_id, signal } => exec::signal(ctx, exec_id, signal),
        Op::ReadFile {
            path,
            offset,
            limit,
        } => blocking(ctx, move |c| files::read_file(c, &path, offset, limit)).await,
        Op::WriteFile {
            path,
            data,
            append,
            create_parents,
            mode,
        } => {
            let opts = WriteOptions {
                append,
                create_parents,
                mode,
            };
            blocking(ctx, move |c| {
                files::write_file(c, &path, data.as_slice(), opts)
            })
            .await
        }
        Op::Stat { path } => blocking(ctx, move |c| files::stat(c, &path)).await,
        Op::ListDir { path } => blocking(ctx, move |c| files::list_dir(c, &path)).await,
        Op::MakeDir { path } => blocking(ctx, move |c| files::make_dir(c, &path)).await,
        Op::Remove { path, recursive } => {
            blocking(ctx, move |c| files::remove(c, &path, recursive)).await
        }
        Op::Glob {
            root,
            pattern,
            limit,
        } => blocking(ctx, move |c| search::glob(c, &root, &pattern, limit)).await,
        Op::Grep(req) => blocking(ctx, move |c| search::grep(c, &req)).await,
        Op::Ping => OpResult::Pong,
        // Handled by the read loop, which must stop reading after it.
        Op::Shutdown => OpResult::Done,
    }
}

/// Runs file-system work off the async threads.
async fn blocking<F>(ctx: &Arc<Ctx>, f: F) -> OpResult
where
    F: FnOnce(&Confinement) -> Result<OpResult, OpError> + Send + 'static,
{
    let ctx = ctx.clone();
    match tokio::task::spawn_blocking(move || f(&ctx.confine)).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => e.into_result(),
        Err(e) => OpError::new(ErrorCode::Internal, format!("request failed: {e}")).into_result(),
    }
}

/// The `id` of a frame that did not parse, when its JSON has one.
fn id_of(raw: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<u64>,
    }
    serde_json::from_slice::<IdOnly>(raw)
        .ok()
        .and_then(|v| v.id)
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(item) = rx.recv().await {
        match item {
            Outgoing::Frame(frame) => {
                if let Err(e) = wire::write_frame(&mut writer, &frame).await {
                    tracing::warn!(error = %e, "cannot write to the host");
                    // Keep receiving so senders never block on a dead host.
                    while let Some(item) = rx.recv().await {
                        if let Outgoing::Flush(ack) = item {
                            let _ = ack.send(());
                        }
                    }
                    return;
                }
            }
            Outgoing::Flush(ack) => {
                let _ = ack.send(());
            }
        }
    }
}
