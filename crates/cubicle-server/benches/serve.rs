//! `cargo bench -p cubicle-server --bench serve`: the server's idle memory
//! and its event latency, each against a peer in the same run.
//!
//! - **Idle RSS**: this binary re-executed as an idle `Server` (one page
//!   served, then idle for a second) against the same binary re-executed as
//!   a bare axum server that answers one route; `VmRSS` from `/proc`.
//! - **Event latency** (agent → browser): an event pushed into a live
//!   session's event channel until a WebSocket client receives it, one at a
//!   time, 1,000 events, p50 and p99; the peer is a bare axum WebSocket that
//!   forwards a broadcast channel (no hub, no JSON, no security layer).
//!
//! Goals (issue 7): ≤ 30 MiB idle, ≤ 5 ms p50 on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocketUpgrade};
use cubicle_agent::{SessionHandle, Store};
use cubicle_protocol::events::{Event, EventMsg, NoticeLevel, Op};
use cubicle_server::{Server, SessionStarter, StartRequest, StartedSession};
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const EVENTS: usize = 1_000;
const ROLE: &str = "CUBICLE_SERVE_BENCH_ROLE";

/// Starts sessions whose events the bench injects by hand.
#[derive(Default)]
struct Injector {
    events: Mutex<Option<mpsc::UnboundedSender<EventMsg>>>,
}

#[async_trait::async_trait]
impl SessionStarter for Injector {
    async fn start(&self, _req: StartRequest) -> Result<StartedSession, String> {
        let (ops, mut ops_rx) = mpsc::unbounded_channel();
        let (tx, events) = mpsc::unbounded_channel();
        *self.events.lock().unwrap() = Some(tx);
        let done = tokio::spawn(async move {
            while let Some(op) = ops_rx.recv().await {
                if op == Op::Shutdown {
                    break;
                }
            }
            Default::default()
        });
        Ok(StartedSession {
            id: "bench-session".into(),
            handle: SessionHandle { ops, events, done },
            workspace: std::env::temp_dir(),
            on_end: None,
            prepare: None,
        })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn next_text(
    ws: &mut (impl StreamExt<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> String {
    loop {
        match ws.next().await.unwrap().unwrap() {
            WsMessage::Text(t) => return t.to_string(),
            _ => continue,
        }
    }
}

async fn cubicle_latency() -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let injector = Arc::new(Injector::default());
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        injector.clone(),
        Store::at(dir.path()),
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", server.addr().port());
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/api/sessions"))
        .bearer_auth(server.token())
        .json(&serde_json::json!({"task": "bench"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let mut req = format!(
        "ws://127.0.0.1:{}/api/sessions/bench-session/events",
        server.addr().port()
    )
    .into_client_request()
    .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("cubicle.v1, cubicle.token.{}", server.token())
            .parse()
            .unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let tx = injector.events.lock().unwrap().clone().unwrap();
    let mut out = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS + 50 {
        let msg = EventMsg {
            agent: None,
            event: Event::Notice {
                level: NoticeLevel::Info,
                message: format!("event {i}"),
            },
        };
        let t = Instant::now();
        tx.send(msg).unwrap();
        let text = next_text(&mut ws).await;
        let took = t.elapsed();
        assert!(text.contains(&format!("event {i}\"")), "{text}");
        if i >= 50 {
            out.push(took);
        }
    }
    server.shutdown().await;
    out
}

async fn peer_latency() -> Vec<Duration> {
    let (tx, _) = broadcast::channel::<String>(1024);
    let sub = tx.clone();
    let app = axum::Router::new().route(
        "/ws",
        axum::routing::get(move |ws: WebSocketUpgrade| {
            let mut rx = sub.subscribe();
            async move {
                ws.on_upgrade(move |mut socket| async move {
                    while let Ok(t) = rx.recv().await {
                        if socket.send(Message::Text(t.into())).await.is_err() {
                            return;
                        }
                    }
                })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    while tx.receiver_count() == 0 {
        tokio::task::yield_now().await;
    }
    let mut out = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS + 50 {
        let t = Instant::now();
        tx.send(format!("{{\"type\":\"notice\",\"message\":\"event {i}\"}}"))
            .unwrap();
        let _ = next_text(&mut ws).await;
        if i >= 50 {
            out.push(t.elapsed());
        }
    }
    task.abort();
    out
}

/// Runs as a child: an idle server of either kind; prints its port, then
/// waits to be killed.
async fn child(role: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = if role == "cubicle" {
        let server = Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Injector::default()),
            Store::at(dir.path()),
        )
        .await
        .unwrap();
        let url = server.url();
        println!("{url}");
        std::mem::forget(server);
        0
    } else {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        println!("http://127.0.0.1:{port}/");
        port
    };
    let _ = port;
    tokio::time::sleep(Duration::from_secs(600)).await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn idle_rss(role: &str) -> u64 {
    use tokio::io::AsyncBufReadExt;
    let mut proc = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(proc.stdout.take().unwrap()).lines();
    let url = lines.next_line().await.unwrap().unwrap();
    // One page served, so the page and the runtime are warm, then idle.
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    let _ = page.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = rss_kib(proc.id().unwrap());
    proc.kill().await.unwrap();
    rss
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Ok(role) = std::env::var(ROLE) {
        rt.block_on(child(&role));
        return;
    }
    // `cargo bench` passes `--bench`; any other run (cargo test) does nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    rt.block_on(async {
        let cubicle = idle_rss("cubicle").await;
        let peer = idle_rss("peer").await;
        println!(
            "idle RSS: cubicle server {:.1} MiB, bare axum {:.1} MiB, ratio {:.2} (goal <= 30 MiB)",
            cubicle as f64 / 1024.0,
            peer as f64 / 1024.0,
            cubicle as f64 / peer as f64
        );
        let mut ours = cubicle_latency().await;
        let mut theirs = peer_latency().await;
        ours.sort();
        theirs.sort();
        let (p50, p99) = (percentile(&ours, 0.5), percentile(&ours, 0.99));
        let (q50, q99) = (percentile(&theirs, 0.5), percentile(&theirs, 0.99));
        println!(
            "event latency over {EVENTS} events: cubicle p50 {:.3} ms p99 {:.3} ms; bare WebSocket p50 {:.3} ms p99 {:.3} ms; p50 ratio {:.2} (goal p50 <= 5 ms)",
            ms(p50),
            ms(p99),
            ms(q50),
            ms(q99),
            ms(p50) / ms(q50)
        );
    });
}
