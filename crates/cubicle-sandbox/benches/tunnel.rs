//! The path a cubicle's network traffic takes before the egress proxy: a
//! connection to the guest's egress listener, carried over the host⇄guest
//! channel as a flow-controlled tunnel, to whatever the host connects it to.
//! Here the host connects every tunnel straight to a loopback server (no
//! proxy, so that this measures the tunnel alone), and a download and an
//! upload through the tunnel run against the same transfer made directly, in
//! the same rounds. The guest is the `host` backend's: the real
//! `cubicle-guest` process and protocol, without a jail around it, whose
//! cost is not what is measured. Prints throughput and ratios; asserts that
//! every byte arrived and nothing about speed.
//!
//! Under `cargo test` (no `--bench` argument) it is a smoke run of 8 MiB.
//! `TUNNEL_BENCH_BYTES` (default 256 MiB) and `TUNNEL_BENCH_ROUNDS`
//! (default 3) change the volume. Needs `cubicle-guest` built
//! (`cargo build -p cubicle-guest`); says so and skips without it.
//!
//! Run with `cargo bench -p cubicle-sandbox --bench tunnel`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cubicle_sandbox::Computer as _;
use cubicle_sandbox::guest_client::{AsyncReadWrite, EgressConnector};
use cubicle_sandbox::host::{HostComputer, HostConfig};
use cubicle_sandbox::locate::GuestProgram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 256 * 1024;

/// Connects every tunnel to one server.
struct Straight(SocketAddr);

#[async_trait]
impl EgressConnector for Straight {
    async fn connect(&self) -> std::io::Result<Box<dyn AsyncReadWrite + Send + Unpin>> {
        Ok(Box::new(TcpStream::connect(self.0).await?))
    }
}

/// A server that, per connection, reads the first byte: `d` sends `bytes`
/// then closes; `u` reads to the end (the client's half-close), then answers
/// one byte.
async fn server(bytes: u64) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0xa5u8; CHUNK];
                let mut mode = [0u8];
                if s.read_exact(&mut mode).await.is_err() {
                    return;
                }
                if mode[0] == b'd' {
                    let mut left = bytes;
                    while left > 0 {
                        let n = left.min(CHUNK as u64) as usize;
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        left -= n as u64;
                    }
                } else {
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    let _ = s.write_all(b"k").await;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Downloads everything from `to`; the time it took.
async fn download(to: SocketAddr, bytes: u64) -> Duration {
    let mut s = TcpStream::connect(to).await.unwrap();
    let start = Instant::now();
    s.write_all(b"d").await.unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    assert_eq!(got, bytes, "the download was cut short");
    start.elapsed()
}

/// Uploads `bytes` to `to` and waits for its receipt; the time it took.
async fn upload(to: SocketAddr, bytes: u64) -> Duration {
    let mut s = TcpStream::connect(to).await.unwrap();
    let start = Instant::now();
    s.write_all(b"u").await.unwrap();
    let buf = vec![0x5au8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    s.shutdown().await.unwrap();
    let mut receipt = Vec::new();
    s.read_to_end(&mut receipt).await.unwrap();
    assert_eq!(receipt, b"k", "the upload was not received whole");
    start.elapsed()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let bytes = env_u64(
        "TUNNEL_BENCH_BYTES",
        if measuring { 256 << 20 } else { 8 << 20 },
    );
    let rounds = env_u64("TUNNEL_BENCH_ROUNDS", if measuring { 3 } else { 1 }).max(1);
    let guest = match GuestProgram::locate() {
        Ok(g) => g,
        Err(e) => {
            println!("SKIPPED: {e}\nrun `cargo build -p cubicle-guest` first");
            return;
        }
    };
    let server = server(bytes).await;
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let workspace = tempfile::tempdir().unwrap();
    let cubicle = HostComputer::start(HostConfig {
        grants: vec![],
        workspace: workspace.path().to_path_buf(),
        guest,
        env: Default::default(),
        egress: Some(Arc::new(Straight(server))),
        egress_listen: Some(listen.to_string()),
    })
    .await
    .unwrap();

    let gbps = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e9;
    println!(
        "guest tunnel, {} MiB per transfer, {rounds} rounds:",
        bytes >> 20
    );
    let (mut down, mut up) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (dd, dt) = (download(server, bytes).await, download(listen, bytes).await);
        let (ud, ut) = (upload(server, bytes).await, upload(listen, bytes).await);
        let (dd, dt, ud, ut) = (gbps(dd), gbps(dt), gbps(ud), gbps(ut));
        println!(
            "  round {round}: download direct {dd:5.2} GB/s, tunnel {dt:5.3} GB/s ({:.3}) | upload direct {ud:5.2} GB/s, tunnel {ut:5.3} GB/s ({:.3})",
            dt / dd,
            ut / ud
        );
        down.push(dt / dd);
        up.push(ut / ud);
    }
    println!(
        "  median ratio of tunnel to direct: download {:.3}, upload {:.3}",
        median(down),
        median(up)
    );
    cubicle.stop().await.unwrap();
}
