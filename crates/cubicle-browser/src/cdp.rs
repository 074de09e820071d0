//! A small DevTools Protocol client over Chromium's `--remote-debugging-pipe`.
//!
//! Chromium reads NUL-terminated JSON commands from its fd 3 and writes
//! NUL-terminated responses and events to its fd 4. A pipe rather than a
//! WebSocket on a TCP port means no other process on the machine (and no web
//! page) can connect to the browser and drive it. Commands carry the flat
//! `sessionId` of the tab they are for; responses are matched by id.
//!
//! The same client also speaks over a WebSocket, for attaching to a browser
//! the person started with `--remote-debugging-port` ([`Connection::start_websocket`]):
//! only the framing differs, so each transport is a reader task and a writer
//! task around the shared dispatch.
//!
//! Events go two ways: a synchronous handler sees every event, in order, and
//! keeps the browser's state (logs, downloads, dialogs); a broadcast channel
//! lets a caller wait for one event (a page load) without polling.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::error::BrowserError;

/// Largest message accepted from the browser. Screenshots of huge pages are
/// the largest legitimate messages; the snapshot script bounds its own output.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Events buffered for waiters that are behind.
const EVENT_BUFFER: usize = 4096;

/// One DevTools event.
#[derive(Debug, Clone)]
pub struct CdpEvent {
    /// E.g. `Page.loadEventFired`.
    pub method: String,
    /// The event's parameters.
    pub params: Value,
    /// The tab session the event is from; `None` for browser-level events.
    pub session_id: Option<String>,
}

/// Sees every event, in order, on the reader task; must not block.
pub type EventHandler = Box<dyn Fn(&CdpEvent, &CommandSender) + Send + Sync>;

type Reply = oneshot::Sender<Result<Value, String>>;

#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, Reply>,
    /// Set once the connection is gone: why.
    closed: Option<String>,
}

/// Sends commands without waiting for their answers (for event handlers).
#[derive(Clone)]
pub struct CommandSender {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    next_id: Arc<AtomicU64>,
}

impl CommandSender {
    /// Queues a command whose answer nobody waits for.
    pub fn fire(&self, method: &str, params: Value, session: Option<&str>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(encode(id, method, params, session));
    }
}

/// A live connection to one browser process.
pub struct Connection {
    sender: CommandSender,
    pending: Arc<Mutex<Pending>>,
    events: broadcast::Sender<Arc<CdpEvent>>,
}

fn lock(p: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn encode(id: u64, method: &str, params: Value, session: Option<&str>) -> Vec<u8> {
    let mut msg = json!({ "id": id, "method": method, "params": params });
    if let Some(s) = session {
        msg["sessionId"] = Value::String(s.to_owned());
    }
    serde_json::to_vec(&msg).unwrap_or_default()
}

/// What a transport's reader task hands each message to.
struct Inbound {
    pending: Arc<Mutex<Pending>>,
    events: broadcast::Sender<Arc<CdpEvent>>,
    handler: EventHandler,
    sender: CommandSender,
}

impl Connection {
    /// Starts the reader and writer tasks over the two pipe ends.
    pub fn start<R, W>(reader: R, writer: W, handler: EventHandler) -> Arc<Self>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (conn, rx, inbound) = Self::assemble(handler);
        tokio::spawn(write_loop(writer, rx, conn.pending.clone()));
        tokio::spawn(read_loop(reader, inbound));
        conn
    }

    /// Starts the reader and writer tasks over a DevTools WebSocket.
    pub fn start_websocket<S>(ws: WebSocketStream<S>, handler: EventHandler) -> Arc<Self>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (conn, rx, inbound) = Self::assemble(handler);
        let (sink, stream) = ws.split();
        tokio::spawn(ws_write_loop(sink, rx, conn.pending.clone()));
        tokio::spawn(ws_read_loop(stream, inbound));
        conn
    }

    fn assemble(handler: EventHandler) -> (Arc<Self>, mpsc::UnboundedReceiver<Vec<u8>>, Inbound) {
        let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let sender = CommandSender {
            tx,
            next_id: Arc::new(AtomicU64::new(1)),
        };
        let inbound = Inbound {
            pending: pending.clone(),
            events: events.clone(),
            handler,
            sender: sender.clone(),
        };
        let conn = Arc::new(Self {
            sender,
            pending,
            events,
        });
        (conn, rx, inbound)
    }

    /// Closes the connection once the commands queued so far are sent (for a
    /// WebSocket, with a close frame; for the pipe, by closing Cubicle's end).
    pub fn close(&self) {
        // `encode` never makes an empty message: an empty one means "close".
        let _ = self.sender.tx.send(Vec::new());
    }

    /// Why the connection is closed, if it is.
    pub fn closed(&self) -> Option<String> {
        lock(&self.pending).closed.clone()
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CdpEvent>> {
        self.events.subscribe()
    }

    /// The fire-and-forget sender.
    pub fn sender(&self) -> &CommandSender {
        &self.sender
    }

    /// Sends a command now and returns a future of its answer. The command is
    /// queued before this returns, so commands issued one after another reach
    /// the browser in that order even when their answers are awaited together.
    pub fn call(
        &self,
        method: &str,
        params: Value,
        session: Option<&str>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Value, BrowserError>> + Send + 'static {
        let id = self.sender.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let method = method.to_owned();
        let queued = {
            let mut p = lock(&self.pending);
            match &p.closed {
                Some(why) => Err(why.clone()),
                None => {
                    p.waiting.insert(id, reply);
                    let _ = self.sender.tx.send(encode(id, &method, params, session));
                    Ok(())
                }
            }
        };
        let pending = self.pending.clone();
        async move {
            if let Err(detail) = queued {
                return Err(BrowserError::Crashed { detail });
            }
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(Ok(v))) => Ok(v),
                Ok(Ok(Err(message))) => Err(BrowserError::Protocol { method, message }),
                Ok(Err(_)) => Err(BrowserError::Crashed {
                    detail: lock(&pending)
                        .closed
                        .clone()
                        .unwrap_or_else(|| "the DevTools connection closed".into()),
                }),
                Err(_) => {
                    lock(&pending).waiting.remove(&id);
                    Err(BrowserError::Hung {
                        method,
                        after: timeout,
                        recovery: "the browser is being restarted".into(),
                    })
                }
            }
        }
    }
}

fn close(pending: &Mutex<Pending>, why: String) {
    let mut p = lock(pending);
    if p.closed.is_none() {
        p.closed = Some(why.clone());
    }
    // Dropping the reply senders wakes every waiter with the close reason.
    p.waiting.clear();
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    pending: Arc<Mutex<Pending>>,
) {
    while let Some(mut msg) = rx.recv().await {
        if msg.is_empty() {
            let _ = writer.shutdown().await;
            return;
        }
        msg.push(0);
        if let Err(e) = writer.write_all(&msg).await {
            close(&pending, format!("writing to the browser failed: {e}"));
            return;
        }
        if rx.is_empty()
            && let Err(e) = writer.flush().await
        {
            close(&pending, format!("writing to the browser failed: {e}"));
            return;
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(reader: R, inbound: Inbound) {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_message(&mut reader, &mut buf).await {
            Ok(true) => inbound.deliver(&buf),
            Ok(false) => {
                close(&inbound.pending, "the browser process exited".into());
                return;
            }
            Err(why) => {
                close(&inbound.pending, why);
                return;
            }
        }
    }
}

async fn ws_write_loop<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    pending: Arc<Mutex<Pending>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(msg) = rx.recv().await {
        if msg.is_empty() {
            break;
        }
        // `encode` makes JSON, which is UTF-8.
        let text = String::from_utf8_lossy(&msg).into_owned();
        if let Err(e) = sink.send(Message::text(text)).await {
            close(&pending, format!("writing to the browser failed: {e}"));
            return;
        }
    }
    let _ = sink.close().await;
}

async fn ws_read_loop<S>(mut stream: SplitStream<WebSocketStream<S>>, inbound: Inbound)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => inbound.deliver(text.as_bytes()),
            Some(Ok(Message::Binary(bytes))) => inbound.deliver(&bytes),
            Some(Ok(Message::Close(_))) | None => {
                close(
                    &inbound.pending,
                    "the browser closed the DevTools connection".into(),
                );
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                close(
                    &inbound.pending,
                    format!("reading from the browser failed: {e}"),
                );
                return;
            }
        }
    }
}

impl Inbound {
    /// Matches an answer to its waiter, or hands an event to the handler
    /// and the subscribers.
    fn deliver(&self, bytes: &[u8]) {
        let Ok(msg) = serde_json::from_slice::<Value>(bytes) else {
            tracing::warn!("ignoring a DevTools message that is not JSON");
            return;
        };
        if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            let reply = lock(&self.pending).waiting.remove(&id);
            if let Some(reply) = reply {
                let result = match msg.get("error") {
                    Some(err) => Err(err
                        .get("message")
                        .and_then(Value::as_str)
                        .map_or_else(|| err.to_string(), str::to_owned)),
                    None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
                };
                let _ = reply.send(result);
            }
            return;
        }
        let Some(method) = msg.get("method").and_then(Value::as_str) else {
            return;
        };
        let event = CdpEvent {
            method: method.to_owned(),
            params: msg.get("params").cloned().unwrap_or(Value::Null),
            session_id: msg
                .get("sessionId")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        (self.handler)(&event, &self.sender);
        let _ = self.events.send(Arc::new(event));
    }
}

/// Reads one NUL-terminated message into `buf`; `false` at end of stream.
async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    buf: &mut Vec<u8>,
) -> Result<bool, String> {
    loop {
        let available = reader
            .fill_buf()
            .await
            .map_err(|e| format!("reading from the browser failed: {e}"))?;
        if available.is_empty() {
            return Ok(false);
        }
        if let Some(end) = available.iter().position(|&b| b == 0) {
            buf.extend_from_slice(&available[..end]);
            reader.consume(end + 1);
            return Ok(true);
        }
        let n = available.len();
        buf.extend_from_slice(available);
        reader.consume(n);
        if buf.len() > MAX_MESSAGE_BYTES {
            return Err(format!(
                "the browser sent a message over {} MiB",
                MAX_MESSAGE_BYTES >> 20
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake browser on the other end of a duplex pipe answers commands and
    /// sends an event; the client matches answers and errors by id.
    #[tokio::test]
    async fn answers_errors_events_and_close() {
        let (client_r, mut server_w) = tokio::io::duplex(1 << 16);
        let (mut server_r, client_w) = tokio::io::duplex(1 << 16);
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen2 = seen.clone();
        let conn = Connection::start(
            client_r,
            client_w,
            Box::new(move |e, _| {
                seen2
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(e.method.clone())
            }),
        );
        let mut events = conn.subscribe();
        let t = Duration::from_secs(5);
        let ok = conn.call("A.ok", json!({}), Some("s1"), t);
        let bad = conn.call("A.bad", json!({}), None, t);
        let server = tokio::spawn(async move {
            let mut r = BufReader::new(&mut server_r);
            let mut got = Vec::new();
            for _ in 0..2 {
                let mut m = Vec::new();
                r.read_until(0, &mut m).await.unwrap();
                m.pop();
                got.push(serde_json::from_slice::<Value>(&m).unwrap());
            }
            let reply = |v: Value| {
                let mut b = serde_json::to_vec(&v).unwrap();
                b.push(0);
                b
            };
            server_w
                .write_all(&reply(
                    json!({"method": "Page.loadEventFired", "params": {}, "sessionId": "s1"}),
                ))
                .await
                .unwrap();
            // Answer out of order.
            server_w
                .write_all(&reply(
                    json!({"id": got[1]["id"], "error": {"code": -32000, "message": "no"}}),
                ))
                .await
                .unwrap();
            server_w
                .write_all(&reply(json!({"id": got[0]["id"], "result": {"x": 1}})))
                .await
                .unwrap();
            got
        });
        assert_eq!(ok.await.unwrap(), json!({"x": 1}));
        let err = bad.await.unwrap_err();
        assert!(matches!(err, BrowserError::Protocol { ref message, .. } if message == "no"));
        let sent = server.await.unwrap();
        assert_eq!(sent[0]["sessionId"], "s1");
        assert_eq!(sent[0]["method"], "A.ok");
        assert!(sent[1].get("sessionId").is_none());
        let ev = events.recv().await.unwrap();
        assert_eq!(ev.method, "Page.loadEventFired");
        assert_eq!(ev.session_id.as_deref(), Some("s1"));
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["Page.loadEventFired".to_owned()]
        );
        // The server side is gone: the next call fails as a crash.
        let err = conn.call("A.more", json!({}), None, t).await.unwrap_err();
        assert!(err.browser_lost(), "{err}");
    }
}
