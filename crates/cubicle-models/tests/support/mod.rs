//! A tiny HTTP/1.1 server on 127.0.0.1 for testing the model clients against
//! the real wire format. It is written on a raw `TcpListener` so that a test
//! controls every byte: the status line, headers such as `retry-after`,
//! chunked or close-delimited bodies, pauses, and a connection cut in the
//! middle of an event. Each connection serves one scripted reply, in order,
//! and every request is captured for assertions.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cubicle_models::{DeltaTx, ModelDelta, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How a reply's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `content-length`.
    Length,
    /// `transfer-encoding: chunked`, one chunk per [`Part::Bytes`].
    Chunked,
    /// No length: the body ends when the connection closes.
    Close,
}

/// A piece of a reply body.
#[derive(Debug, Clone)]
pub enum Part {
    /// Bytes written (and flushed) as they are.
    Bytes(Vec<u8>),
    /// A pause.
    Sleep(Duration),
    /// The connection is dropped here, without finishing the body.
    Cut,
}

/// One scripted reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub parts: Vec<Part>,
    pub framing: Framing,
}

impl Reply {
    /// A 200 event stream, chunked, split into small pieces so that events
    /// straddle reads the way they do on a real network.
    pub fn sse(body: impl AsRef<[u8]>) -> Self {
        let parts = body
            .as_ref()
            .chunks(61)
            .map(|c| Part::Bytes(c.to_vec()))
            .collect();
        Self {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream".into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            parts,
            framing: Framing::Chunked,
        }
    }

    /// A 200 event stream from explicit parts (for pauses and cuts).
    pub fn sse_parts(parts: Vec<Part>) -> Self {
        Self {
            parts,
            ..Self::sse("")
        }
    }

    /// A JSON reply with a `content-length`.
    pub fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            parts: vec![Part::Bytes(body.as_bytes().to_vec())],
            framing: Framing::Length,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Changes the framing.
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: BTreeMap<String, String>,
    pub body: serde_json::Value,
}

/// The server; stops accepting when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    requests: Arc<Mutex<Vec<Captured>>>,
    accept: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl TestServer {
    /// Starts serving `replies`, one per connection. A connection beyond the
    /// script gets a 418 so that the test fails loudly.
    pub async fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let captured = Arc::clone(&requests);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let reply = replies.lock().unwrap().pop_front().unwrap_or_else(|| {
                    Reply::json(
                        418,
                        r#"{"error":{"message":"the test script has no more replies"}}"#,
                    )
                });
                let captured = Arc::clone(&captured);
                tokio::spawn(async move {
                    let _ = serve(socket, reply, captured).await;
                });
            }
        });
        Self {
            url,
            requests,
            accept,
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Captured> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    mut socket: TcpStream,
    reply: Reply,
    captured: Arc<Mutex<Vec<Captured>>>,
) -> std::io::Result<()> {
    let request = read_request(&mut socket).await?;
    captured.lock().unwrap().push(request);

    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        529 => "Site Overloaded",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match reply.framing {
        Framing::Length => {
            let len: usize = reply
                .parts
                .iter()
                .map(|p| match p {
                    Part::Bytes(b) => b.len(),
                    Part::Sleep(_) | Part::Cut => 0,
                })
                .sum();
            head.push_str(&format!("content-length: {len}\r\n"));
        }
        Framing::Chunked => head.push_str("transfer-encoding: chunked\r\n"),
        Framing::Close => {}
    }
    // One request per connection keeps the script's order simple.
    head.push_str("connection: close\r\n\r\n");
    socket.write_all(head.as_bytes()).await?;
    socket.flush().await?;

    for part in &reply.parts {
        match part {
            Part::Bytes(bytes) if bytes.is_empty() => {}
            Part::Bytes(bytes) => {
                if reply.framing == Framing::Chunked {
                    socket
                        .write_all(format!("{:x}\r\n", bytes.len()).as_bytes())
                        .await?;
                    socket.write_all(bytes).await?;
                    socket.write_all(b"\r\n").await?;
                } else {
                    socket.write_all(bytes).await?;
                }
                socket.flush().await?;
            }
            Part::Sleep(d) => tokio::time::sleep(*d).await,
            Part::Cut => {
                drop(socket);
                return Ok(());
            }
        }
    }
    if reply.framing == Framing::Chunked {
        socket.write_all(b"0\r\n\r\n").await?;
    }
    socket.shutdown().await?;
    Ok(())
}

async fn read_request(socket: &mut TcpStream) -> std::io::Result<Captured> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut words = request_line.split(' ');
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or_default().to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    Ok(Captured {
        method,
        path,
        headers,
        body,
    })
}

/// The text of a fixture under `tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
        .iter()
        .collect();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Retries with waits short enough for tests.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    }
}

/// A delta channel and a way to read what was sent on it.
pub fn delta_channel() -> (DeltaTx, mpsc::UnboundedReceiver<ModelDelta>) {
    mpsc::unbounded_channel()
}

/// Everything sent on a delta channel so far.
pub fn drain(rx: &mut mpsc::UnboundedReceiver<ModelDelta>) -> Vec<ModelDelta> {
    let mut out = Vec::new();
    while let Ok(d) = rx.try_recv() {
        out.push(d);
    }
    out
}

/// The concatenated text deltas, ignoring everything else.
pub fn text_of(deltas: &[ModelDelta]) -> String {
    deltas
        .iter()
        .filter_map(|d| match d {
            ModelDelta::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}
