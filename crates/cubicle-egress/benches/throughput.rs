//! Egress proxy cost on loopback, against a direct connection in the same run:
//! bulk throughput through a CONNECT tunnel (over TCP `listen` and over the
//! in-memory `open_stream` the sandbox uses) versus straight to the sink
//! (uploads, with CPU time) and from a source server (downloads), the
//! CPU time each costs per GB, and the added latency per small request (p50
//! over 1000). Two decision-free relays run beside them as the floor for any
//! TCP hop on the machine: blocking threads copying with read and write, and
//! (Linux) the same moving pages with splice. On a machine with few cores the
//! client, the proxy and the server share them, and even these relays fall
//! well short of direct; the proxy's TCP listener is reported against them
//! too. The proxy runs on its own runtime, as it would in its own
//! process; the client and the sink share another. Throughput is measured in
//! rounds, each running every case once in a rotating order, and each round's
//! ratio is against that round's direct run, so that a neighbour's load on a
//! shared machine skews a round rather than one case; the summary gives
//! medians over rounds. CPU time per GB (the whole process: client, proxy and
//! sink) is the steadier figure when neighbours load the machine; the proxy
//! runtime's own share of it is reported too (Linux; 0 elsewhere), which is
//! what a change to how the proxy moves bytes changes. Prints ratios; asserts
//! nothing. Unix only (it reads CPU clocks).
//!
//! Under `cargo test` (no `--bench` argument) it is a smoke run: 32 MiB, one
//! round, 50 requests.
//!
//! `EGRESS_BENCH_BYTES` (default 1 GiB per case and round),
//! `EGRESS_BENCH_ROUNDS` (default 5) and `EGRESS_BENCH_REQUESTS` (default
//! 1000) change the volume.
//!
//! Run with `cargo bench -p cubicle-egress --bench throughput`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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

/// Sends `bytes` bytes to every connection, then closes it: the download
/// case's server.
async fn source(bytes: u64) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let buf = vec![0xa5u8; CHUNK];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Reads to end of input; the time it took and how many bytes came.
async fn pull(mut s: Box<dyn Io>) -> (Duration, u64) {
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            return (start.elapsed(), got);
        }
        got += n as u64;
    }
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
    // The sink closes once it has read everything: that EOF ends the clock.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    start.elapsed()
}

/// CPU time this process has used so far (every thread, user and system),
/// which moves far less than wall time when neighbours load the machine.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU clocks of the proxy runtime's threads, registered as each starts.
static PROXY_CLOCKS: Mutex<Vec<libc::clockid_t>> = Mutex::new(Vec::new());

fn register_proxy_thread() {
    #[cfg(target_os = "linux")]
    {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: `clock` is a valid clockid_t for the call to fill in, for the
        // calling thread.
        if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } == 0 {
            PROXY_CLOCKS.lock().unwrap().push(clock);
        }
    }
}

/// CPU time the proxy runtime's threads have used so far (threads that have
/// exited drop out: only blocking-pool threads do, and they move no bytes).
fn proxy_cpu_time() -> Duration {
    PROXY_CLOCKS
        .lock()
        .unwrap()
        .iter()
        .map(|&clock| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is a valid timespec for the call to fill in.
            match unsafe { libc::clock_gettime(clock, &mut ts) } {
                0 => Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
                _ => Duration::ZERO,
            }
        })
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Direct,
    Tcp,
    Stream,
    /// The floor for any TCP proxy: a fixed-target relay that makes no
    /// decision, two blocking threads per connection copying with read and
    /// write (plain), or moving pages with splice (Linux).
    Relay(RelayMode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelayMode {
    Copy,
    #[cfg(target_os = "linux")]
    Splice,
}

#[cfg(target_os = "linux")]
const CASES: [Case; 5] = [
    Case::Direct,
    Case::Tcp,
    Case::Stream,
    Case::Relay(RelayMode::Copy),
    Case::Relay(RelayMode::Splice),
];
#[cfg(not(target_os = "linux"))]
const CASES: [Case; 4] = [
    Case::Direct,
    Case::Tcp,
    Case::Stream,
    Case::Relay(RelayMode::Copy),
];

impl Case {
    fn label(self) -> &'static str {
        match self {
            Case::Direct => "direct",
            Case::Tcp => "CONNECT over TCP",
            Case::Stream => "CONNECT over stream",
            Case::Relay(RelayMode::Copy) => "relay, read/write",
            #[cfg(target_os = "linux")]
            Case::Relay(RelayMode::Splice) => "relay, splice",
        }
    }

    fn index(self) -> usize {
        match self {
            Case::Direct => 0,
            Case::Tcp => 1,
            Case::Stream => 2,
            Case::Relay(RelayMode::Copy) => 3,
            #[cfg(target_os = "linux")]
            Case::Relay(RelayMode::Splice) => 4,
        }
    }
}

/// A relay on its own threads (as a separate process would be) that forwards
/// every connection to `target`, in both directions, until each side ends.
fn relay(target: SocketAddr, mode: RelayMode) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in l.incoming() {
            let Ok(client) = client else { break };
            let upstream = std::net::TcpStream::connect(target).unwrap();
            for (from, to) in [
                (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                (upstream, client),
            ] {
                std::thread::spawn(move || {
                    match mode {
                        RelayMode::Copy => copy_plain(&from, &to),
                        #[cfg(target_os = "linux")]
                        RelayMode::Splice => copy_splice(&from, &to),
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    addr
}

fn copy_plain(mut from: &std::net::TcpStream, mut to: &std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; CHUNK];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

#[cfg(target_os = "linux")]
fn copy_splice(from: &std::net::TcpStream, to: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    const PIPE: usize = 1 << 20;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let [r, w] = fds;
    // SAFETY: `w` is the pipe just made; a refused size keeps the default.
    unsafe { libc::fcntl(w, libc::F_SETPIPE_SZ, PIPE as libc::c_int) };
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE;
    'copy: loop {
        // SAFETY: plain descriptors owned by this thread's streams and pipe;
        // null offsets, as sockets and pipes have none.
        let mut n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                w,
                std::ptr::null_mut(),
                PIPE,
                flags,
            )
        };
        if n <= 0 {
            break;
        }
        while n > 0 {
            // SAFETY: as above.
            let m = unsafe {
                libc::splice(
                    r,
                    std::ptr::null_mut(),
                    to.as_raw_fd(),
                    std::ptr::null_mut(),
                    n as usize,
                    flags,
                )
            };
            if m <= 0 {
                break 'copy;
            }
            n -= m;
        }
    }
    // SAFETY: the pipe's descriptors, closed once.
    unsafe {
        libc::close(r);
        libc::close(w);
    }
}

const N: usize = CASES.len();

/// Throughput per case, one entry per round, and its ratio to that round's
/// direct run.
#[derive(Default)]
struct Rates {
    gbps: [Vec<f64>; N],
    ratio: [Vec<f64>; N],
}

impl Rates {
    /// Keeps one round's rates (indexed by [`Case::index`]) and prints them.
    fn record(&mut self, round: &str, rate: [f64; N]) {
        let direct = rate[Case::Direct.index()];
        let mut line = format!("  {round}: direct {direct:5.2} GB/s");
        for case in CASES {
            let i = case.index();
            if case != Case::Direct {
                line += &format!(
                    " | {} {:5.2}, ratio {:.2}",
                    case.label(),
                    rate[i],
                    rate[i] / direct
                );
            }
            self.gbps[i].push(rate[i]);
            self.ratio[i].push(rate[i] / direct);
        }
        println!("{line}");
    }

    /// Prints each case's median rate and ratio, with the rounds' range.
    fn summary(&self, prefix: &str) {
        println!(
            "  {prefix} {:<21} {:5.2} GB/s",
            Case::Direct.label(),
            median(self.gbps[Case::Direct.index()].clone())
        );
        for case in CASES.into_iter().filter(|&c| c != Case::Direct) {
            let i = case.index();
            let (lo, hi) = (
                self.ratio[i].iter().copied().fold(f64::INFINITY, f64::min),
                self.ratio[i]
                    .iter()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max),
            );
            println!(
                "  {prefix} {:<21} {:5.2} GB/s  ratio to direct: median {:.2} (rounds {lo:.2}–{hi:.2})",
                case.label(),
                median(self.gbps[i].clone()),
                median(self.ratio[i].clone()),
            );
        }
    }

    /// The best median ratio to direct among the decision-free relays.
    fn best_relay(&self) -> f64 {
        CASES
            .iter()
            .filter(|c| matches!(c, Case::Relay(_)))
            .map(|c| median(self.ratio[c.index()].clone()))
            .fold(0f64, f64::max)
    }
}

fn main() {
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let proxy_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("proxy")
        .on_thread_start(register_proxy_thread)
        .enable_all()
        .build()
        .unwrap();
    client_rt.block_on(run(proxy_rt.handle().clone()));
}

async fn run(proxy_rt: tokio::runtime::Handle) {
    // `cargo test --all-targets` runs this without `--bench`: a smoke run
    // that every case still works, at a small fraction of the volume.
    let measuring = std::env::args().any(|a| a == "--bench");
    let bytes = env_u64(
        "EGRESS_BENCH_BYTES",
        if measuring { 1 << 30 } else { 32 << 20 },
    );
    let rounds = env_u64("EGRESS_BENCH_ROUNDS", if measuring { 5 } else { 1 }).max(1) as usize;
    let requests = env_u64(
        "EGRESS_BENCH_REQUESTS",
        if measuring { REQUESTS as u64 } else { 50 },
    )
    .max(1) as usize;
    let sink = sink().await;
    let src = source(bytes).await;
    let http = tiny_http().await;
    let config = EgressConfig {
        allow: vec![DomainRule::new("*.bench.test", "bench")],
        allow_addresses: vec![AddressRule::new("127.0.0.1", "bench: loopback sink")],
        ..EgressConfig::default()
    };
    let resolver = StaticResolver::new()
        .with("sink.bench.test", ["127.0.0.1".parse().unwrap()])
        .with("source.bench.test", ["127.0.0.1".parse().unwrap()])
        .with("http.bench.test", ["127.0.0.1".parse().unwrap()]);
    let proxy = EgressProxy::builder("bench", config)
        .resolver(Arc::new(resolver))
        .build()
        .unwrap();
    let proxy_addr = {
        let proxy = proxy.clone();
        proxy_rt
            .spawn(async move { proxy.listen("127.0.0.1:0".parse().unwrap()).await })
            .await
            .unwrap()
            .unwrap()
    };
    // A connection served on the proxy's runtime, as the sandbox would open it.
    let open_stream = || {
        let _on_proxy_runtime = proxy_rt.enter();
        proxy.open_stream()
    };
    // The relays: one per server and mode, each bound to its server.
    let relays: Vec<(SocketAddr, RelayMode, SocketAddr)> = [sink, src]
        .into_iter()
        .flat_map(|server| {
            CASES.into_iter().filter_map(move |case| match case {
                Case::Relay(mode) => Some((server, mode, relay(server, mode))),
                _ => None,
            })
        })
        .collect();
    let relay_for = |server: SocketAddr, mode: RelayMode| {
        relays
            .iter()
            .find(|&&(s, m, _)| s == server && m == mode)
            .map(|&(_, _, relay)| relay)
            .unwrap()
    };
    // A connection to `server` the way `case` makes it: straight there, a
    // tunnel to `target` through the proxy over TCP or the stream, or through
    // a relay.
    let open = async |case: Case, server: SocketAddr, target: &str| -> Box<dyn Io> {
        let s: Box<dyn Io> = match case {
            Case::Direct => Box::new(TcpStream::connect(server).await.unwrap()),
            Case::Tcp => {
                let mut s = TcpStream::connect(proxy_addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                connect_via(&mut s, target).await;
                Box::new(s)
            }
            Case::Stream => {
                let mut s = open_stream();
                connect_via(&mut s, target).await;
                Box::new(s)
            }
            Case::Relay(mode) => {
                Box::new(TcpStream::connect(relay_for(server, mode)).await.unwrap())
            }
        };
        s
    };
    let sink_target = format!("sink.bench.test:{}", sink.port());

    // Warm-up so that the first measured run does not pay for page faults.
    let warm = (bytes / 8).max(1 << 20);
    push(Box::new(TcpStream::connect(sink).await.unwrap()), warm).await;

    println!(
        "throughput, {:.2} GiB per case, {rounds} rounds:",
        bytes as f64 / (1u64 << 30) as f64
    );
    // Per case, one entry per round.
    let mut up = Rates::default();
    let mut up_cpu: [Vec<f64>; N] = Default::default();
    let mut up_proxy_cpu: [Vec<f64>; N] = Default::default();
    for round in 0..rounds {
        let mut took = [Duration::ZERO; N];
        let mut cpu = [Duration::ZERO; N];
        let mut proxy_cpu = [Duration::ZERO; N];
        for i in 0..N {
            let case = CASES[(round + i) % N];
            let s = open(case, sink, &sink_target).await;
            let cpu_before = cpu_time();
            let proxy_before = proxy_cpu_time();
            took[case.index()] = push(s, bytes).await;
            cpu[case.index()] = cpu_time() - cpu_before;
            proxy_cpu[case.index()] = proxy_cpu_time().saturating_sub(proxy_before);
        }
        let per_gb = |c: Duration| c.as_secs_f64() * 1e9 / bytes as f64;
        up.record(
            &format!("round {}", round + 1),
            took.map(|t| gbps(bytes, t)),
        );
        for case in CASES {
            let i = case.index();
            up_cpu[i].push(per_gb(cpu[i]));
            up_proxy_cpu[i].push(per_gb(proxy_cpu[i]));
        }
    }
    up.summary("median");
    let cd = median(up_cpu[0].clone());
    let mut line = format!("  median CPU time per GB, whole process: direct {cd:.2} s");
    for case in &CASES[1..] {
        let c = median(up_cpu[case.index()].clone());
        line += &format!(", {} {c:.2} s ({:.2}x)", case.label(), c / cd);
    }
    println!("{line}");
    println!(
        "  median CPU time per GB, proxy runtime only: CONNECT over TCP {:.2} s, over stream {:.2} s",
        median(up_proxy_cpu[Case::Tcp.index()].clone()),
        median(up_proxy_cpu[Case::Stream.index()].clone())
    );

    // Downloads: the same cases, the bytes flowing from the server.
    let source_target = format!("source.bench.test:{}", src.port());
    let mut down = Rates::default();
    for round in 0..rounds {
        let mut rate = [0f64; N];
        for i in 0..N {
            let case = CASES[(round + i) % N];
            let s = open(case, src, &source_target).await;
            let (took, got) = pull(s).await;
            assert_eq!(got, bytes, "the download was cut short");
            rate[case.index()] = gbps(bytes, took);
        }
        down.record(&format!("download round {}", round + 1), rate);
    }
    down.summary("download: median");
    // What a TCP hop costs on this machine, whoever makes it: the proxy's
    // TCP listener against the best of the decision-free relays.
    let tcp = Case::Tcp.index();
    println!(
        "  CONNECT over TCP against the best relay: upload {:.2}, download {:.2}",
        median(up.ratio[tcp].clone()) / up.best_relay(),
        median(down.ratio[tcp].clone()) / down.best_relay()
    );

    let request = b"GET / HTTP/1.1\r\nHost: http.bench.test\r\n\r\n";
    let http_target = format!("http.bench.test:{}", http.port());
    let absolute = format!("GET http://{http_target}/ HTTP/1.1\r\nHost: http.bench.test\r\n\r\n");

    // Each sample: a new connection and one request, as a tool without
    // connection reuse would do.
    let mut direct_new = Vec::with_capacity(requests);
    let mut connect_new = Vec::with_capacity(requests);
    let mut stream_new = Vec::with_capacity(requests);
    let mut absolute_kept = Vec::with_capacity(requests);
    let mut direct_kept = Vec::with_capacity(requests);
    let mut kept_direct = TcpStream::connect(http).await.unwrap();
    kept_direct.set_nodelay(true).unwrap();
    let mut kept_proxy = TcpStream::connect(proxy_addr).await.unwrap();
    kept_proxy.set_nodelay(true).unwrap();
    for _ in 0..requests {
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
        let mut s = open_stream();
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
    println!("latency, p50 of {requests} small requests:");
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
