//! Egress proxy cost on loopback, against a direct connection in the same run:
//! bulk throughput through a CONNECT tunnel (over TCP `listen` and over the
//! in-memory `open_stream` the sandbox uses) versus straight to the sink, and
//! the added latency per small request (p50 over 1000). Prints ratios; asserts
//! nothing. `EGRESS_BENCH_BYTES` overrides the 1 GiB volume.
//!
//! Run with `cargo bench -p cubicle-egress --bench throughput`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cubicle_egress::{AddressRule, DomainRule, EgressConfig, EgressProxy, StaticResolver};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 256 * 1024;
const REQUESTS: usize = 1000;
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Reads everything, then closes: the writer's EOF proves delivery.
async fn sink() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Answers every request head on a connection with a 2-byte body.
async fn tiny_http() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if s.write_all(RESPONSE).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "closed early");
        head.push(b[0]);
    }
    head
}

async fn get<S: Io>(s: &mut S, request: &[u8]) {
    s.write_all(request).await.unwrap();
    let head = read_head(s).await;
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut body = [0u8; 2];
    s.read_exact(&mut body).await.unwrap();
}

async fn connect_via<S: Io>(s: &mut S, target: &str) {
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(s).await;
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

async fn push(mut s: Box<dyn Io>, bytes: u64) -> Duration {
    let buf = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    start.elapsed()
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bytes: u64 = std::env::var("EGRESS_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let sink = sink().await;
    let http = tiny_http().await;
    let config = EgressConfig {
        allow: vec![DomainRule::new("*.bench.test", "bench")],
        allow_addresses: vec![AddressRule::new("127.0.0.1", "bench: loopback sink")],
        ..EgressConfig::default()
    };
    let resolver = StaticResolver::new()
        .with("sink.bench.test", ["127.0.0.1".parse().unwrap()])
        .with("http.bench.test", ["127.0.0.1".parse().unwrap()]);
    let proxy = EgressProxy::builder("bench", config)
        .resolver(Arc::new(resolver))
        .build()
        .unwrap();
    let proxy_addr = proxy.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let sink_target = format!("sink.bench.test:{}", sink.port());

    // Warm-up so that the first measured run does not pay for page faults.
    let warm = (bytes / 8).max(1 << 20);
    push(Box::new(TcpStream::connect(sink).await.unwrap()), warm).await;

    let direct = push(Box::new(TcpStream::connect(sink).await.unwrap()), bytes).await;
    let mut tcp = TcpStream::connect(proxy_addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    connect_via(&mut tcp, &sink_target).await;
    let via_tcp = push(Box::new(tcp), bytes).await;
    let mut stream = proxy.open_stream();
    connect_via(&mut stream, &sink_target).await;
    let via_stream = push(Box::new(stream), bytes).await;

    println!(
        "throughput, {:.2} GiB each:",
        bytes as f64 / (1u64 << 30) as f64
    );
    println!("  direct                 {:6.2} GB/s", gbps(bytes, direct));
    println!(
        "  CONNECT over TCP       {:6.2} GB/s  ratio {:.2}",
        gbps(bytes, via_tcp),
        direct.as_secs_f64() / via_tcp.as_secs_f64()
    );
    println!(
        "  CONNECT over stream    {:6.2} GB/s  ratio {:.2}",
        gbps(bytes, via_stream),
        direct.as_secs_f64() / via_stream.as_secs_f64()
    );

    let request = b"GET / HTTP/1.1\r\nHost: http.bench.test\r\n\r\n";
    let http_target = format!("http.bench.test:{}", http.port());
    let absolute = format!("GET http://{http_target}/ HTTP/1.1\r\nHost: http.bench.test\r\n\r\n");

    // Each sample: a new connection and one request, as a tool without
    // connection reuse would do.
    let mut direct_new = Vec::with_capacity(REQUESTS);
    let mut connect_new = Vec::with_capacity(REQUESTS);
    let mut stream_new = Vec::with_capacity(REQUESTS);
    let mut absolute_kept = Vec::with_capacity(REQUESTS);
    let mut direct_kept = Vec::with_capacity(REQUESTS);
    let mut kept_direct = TcpStream::connect(http).await.unwrap();
    kept_direct.set_nodelay(true).unwrap();
    let mut kept_proxy = TcpStream::connect(proxy_addr).await.unwrap();
    kept_proxy.set_nodelay(true).unwrap();
    for _ in 0..REQUESTS {
        let t = Instant::now();
        let mut s = TcpStream::connect(http).await.unwrap();
        s.set_nodelay(true).unwrap();
        get(&mut s, request).await;
        direct_new.push(t.elapsed());

        let t = Instant::now();
        let mut s = TcpStream::connect(proxy_addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        connect_via(&mut s, &http_target).await;
        get(&mut s, request).await;
        connect_new.push(t.elapsed());

        let t = Instant::now();
        let mut s = proxy.open_stream();
        connect_via(&mut s, &http_target).await;
        get(&mut s, request).await;
        stream_new.push(t.elapsed());

        let t = Instant::now();
        get(&mut kept_direct, request).await;
        direct_kept.push(t.elapsed());

        let t = Instant::now();
        get(&mut kept_proxy, absolute.as_bytes()).await;
        absolute_kept.push(t.elapsed());
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (dn, cn, sn, dk, ak) = (
        p50(direct_new),
        p50(connect_new),
        p50(stream_new),
        p50(direct_kept),
        p50(absolute_kept),
    );
    println!("latency, p50 of {REQUESTS} small requests:");
    println!("  direct, new connection            {:8.1} µs", us(dn));
    println!(
        "  CONNECT over TCP, new connection  {:8.1} µs  added {:7.1} µs  ratio {:.2}",
        us(cn),
        us(cn) - us(dn),
        us(cn) / us(dn)
    );
    println!(
        "  CONNECT over stream, new          {:8.1} µs  added {:7.1} µs  ratio {:.2}",
        us(sn),
        us(sn) - us(dn),
        us(sn) / us(dn)
    );
    println!("  direct, kept-alive connection     {:8.1} µs", us(dk));
    println!(
        "  absolute-form GET via proxy       {:8.1} µs  added {:7.1} µs  ratio {:.2}  (proxy opens a fresh upstream connection per request)",
        us(ak),
        us(ak) - us(dk),
        us(ak) / us(dk)
    );
    proxy.shutdown().await;
}
