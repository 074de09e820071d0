//! Byte plumbing: a stream wrapper that counts bytes and notes when they last
//! moved, an idle watchdog built on it, and the two-way copy for CONNECT
//! tunnels. The copy is tokio's `copy_bidirectional` with larger buffers, so
//! half-closes propagate; the meter is what lets a tunnel that goes quiet be
//! closed and what gives the audit log its byte counts even when a tunnel
//! ends by timeout or shutdown. A client on a [`MemStream`] (the sandbox's
//! guest tunnels) gets [`pipe_mem`] instead, which moves the stream's owned
//! chunks to and from the upstream socket without copying them, with the
//! same endings, half-closes and counts.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::memstream::{MemStream, POOLED_MIN};

/// Copy buffer per direction: large enough that loopback throughput is not
/// limited by system calls.
const COPY_BUF: usize = 256 * 1024;
/// Most chunks from a [`MemStream`] written with one system call.
const MAX_GATHER: usize = 16;

/// Bytes moved through a stream, and when they last moved.
#[derive(Debug)]
pub(crate) struct Meter {
    base: Instant,
    last_ms: AtomicU64,
    read: AtomicU64,
    written: AtomicU64,
}

impl Meter {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Bytes read from the stream.
    pub(crate) fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Bytes written to the stream.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    fn last_activity(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Resolves once no bytes have moved through `meter` for `idle`.
pub(crate) async fn idle_expired(meter: &Meter, idle: Duration) {
    loop {
        let deadline = meter.last_activity() + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// A stream that reports to a [`Meter`].
#[derive(Debug)]
pub(crate) struct Metered<S> {
    inner: S,
    meter: Arc<Meter>,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, meter: Arc<Meter>) -> Self {
        Self { inner, meter }
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.meter.read.fetch_add(n as u64, Ordering::Relaxed);
            this.meter.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.meter.written.fetch_add(*n as u64, Ordering::Relaxed);
            this.meter.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            this.meter.written.fetch_add(*n as u64, Ordering::Relaxed);
            this.meter.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Copies both ways until both sides close, the tunnel idles out, or the
/// proxy shuts down. Byte counts are read from the upstream's meter.
pub(crate) async fn pipe<A, B>(
    client: &mut A,
    upstream: &mut Metered<B>,
    idle: Duration,
    cancel: &CancellationToken,
) where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let meter = upstream.meter.clone();
    meter.touch();
    tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(client, upstream, COPY_BUF, COPY_BUF) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "tunnel closed with an error");
            }
        }
        () = idle_expired(&meter, idle) => tracing::debug!("tunnel idle; closing"),
        () = cancel.cancelled() => {}
    }
}

/// [`pipe`] for a client on a [`MemStream`], without copying in the proxy:
/// each chunk the client sent is written to the upstream socket as it is,
/// and each read from the upstream becomes a chunk handed to the client.
/// `early` is what the client sent before the tunnel began (read while its
/// request was parsed), which goes upstream first. Same endings and byte
/// counts as [`pipe`]: the upstream's `meter` counts, both sides' half-closes
/// pass on, and the first error in either direction ends both.
pub(crate) async fn pipe_mem(
    client: MemStream,
    early: Bytes,
    upstream: &mut TcpStream,
    meter: &Arc<Meter>,
    idle: Duration,
    cancel: &CancellationToken,
) {
    meter.touch();
    let (mut from_client, mut to_client) = client.into_split();
    let (up_read, up_write) = upstream.split();
    let mut up_read = Metered::new(up_read, meter.clone());
    let mut up_write = Metered::new(up_write, meter.clone());
    let up = async {
        up_write.write_all(&early).await?;
        let mut chunks = VecDeque::with_capacity(MAX_GATHER);
        while from_client.recv_many(&mut chunks, MAX_GATHER).await {
            write_chunks(&mut up_write, &mut chunks).await?;
        }
        up_write.shutdown().await
    };
    let down = async {
        let mut buf = to_client.buffer();
        loop {
            buf.clear();
            if up_read.read_buf(&mut buf).await? == 0 {
                break;
            }
            // A short read is copied out so that the pooled buffer is not
            // held for a few bytes.
            let chunk = if buf.len() < POOLED_MIN {
                Bytes::copy_from_slice(&buf)
            } else {
                to_client.pooled(std::mem::replace(&mut buf, to_client.buffer()))
            };
            to_client.send(chunk).await?;
        }
        to_client.shutdown().await
    };
    tokio::select! {
        r = async { tokio::try_join!(up, down) } => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "tunnel closed with an error");
            }
        }
        () = idle_expired(meter, idle) => tracing::debug!("tunnel idle; closing"),
        () = cancel.cancelled() => {}
    }
}

/// Writes every chunk in `chunks`, several to a system call, letting go of
/// each as soon as it is written.
async fn write_chunks<W: AsyncWrite + Unpin>(
    w: &mut W,
    chunks: &mut VecDeque<Bytes>,
) -> io::Result<()> {
    loop {
        while chunks.front().is_some_and(Bytes::is_empty) {
            chunks.pop_front();
        }
        if chunks.is_empty() {
            return Ok(());
        }
        let slices: Vec<io::IoSlice<'_>> = chunks.iter().map(|c| io::IoSlice::new(c)).collect();
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while let Some(front) = chunks.front_mut() {
            if n < front.len() {
                front.advance(n);
                break;
            }
            n -= front.len();
            chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::memstream::{MemReader, MemWriter};
    use pretty_assertions::assert_eq;
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets.
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// The application's end, the upstream server's end, and the running
    /// tunnel between them with the upstream's meter: TCP on both sides (as
    /// from `listen`, [`tunnel`]) or a [`MemStream`] client ([`mem_tunnel`]).
    struct Tunnel<A> {
        app: A,
        server: TcpStream,
        meter: Arc<Meter>,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn tunnel() -> Tunnel<TcpStream> {
        let (app, mut client) = tcp_pair().await;
        let (upstream, server) = tcp_pair().await;
        let meter = Meter::new();
        let mut upstream = Metered::new(upstream, meter.clone());
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let task = tokio::spawn(async move {
            pipe(&mut client, &mut upstream, Duration::from_secs(600), &token).await;
        });
        Tunnel {
            app,
            server,
            meter,
            cancel,
            task,
        }
    }

    /// Deterministic bytes that differ by offset and seed.
    fn pattern(seed: u64, offset: u64, out: &mut [u8]) {
        for (i, b) in out.iter_mut().enumerate() {
            let mut x = (offset + i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
            x ^= x >> 29;
            *b = (x.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 56) as u8;
        }
    }

    /// FNV-1a over a stream, fed in pieces.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Checksum(u64);

    impl Checksum {
        fn new() -> Self {
            Self(0xcbf2_9ce4_8422_2325)
        }
        fn update(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }

    /// Writes `len` pattern bytes, then half-closes; returns their checksum.
    async fn send<W: AsyncWrite + Unpin>(mut w: W, seed: u64, len: u64) -> Checksum {
        let mut sum = Checksum::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < len {
            let n = (len - sent).min(buf.len() as u64) as usize;
            pattern(seed, sent, &mut buf[..n]);
            sum.update(&buf[..n]);
            w.write_all(&buf[..n]).await.unwrap();
            sent += n as u64;
        }
        w.shutdown().await.unwrap();
        sum
    }

    /// Reads to end of input; returns the count and checksum.
    async fn receive<R: AsyncRead + Unpin>(mut r: R) -> (u64, Checksum) {
        let mut sum = Checksum::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                return (total, sum);
            }
            sum.update(&buf[..n]);
            total += n as u64;
        }
    }

    /// Only a guard against hanging: a slow run still passes.
    fn guard<F: Future>(f: F) -> tokio::time::Timeout<F> {
        tokio::time::timeout(Duration::from_secs(120), f)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_transfers_both_ways_arrive_intact_and_are_counted() {
        // Odd sizes, so the last chunk is partial.
        const UP: u64 = 24 * 1024 * 1024 + 7;
        const DOWN: u64 = 16 * 1024 * 1024 + 3;
        let t = tunnel().await;
        let (app_r, app_w) = t.app.into_split();
        let (server_r, server_w) = t.server.into_split();
        let (up_sent, down_sent, up_got, down_got) = guard(async {
            tokio::join!(
                send(app_w, 1, UP),
                send(server_w, 2, DOWN),
                receive(server_r),
                receive(app_r),
            )
        })
        .await
        .unwrap();
        // Both sides closed their sending half: the tunnel ends by itself.
        guard(t.task).await.unwrap().unwrap();
        assert_eq!(up_got, (UP, up_sent), "client to upstream");
        assert_eq!(down_got, (DOWN, down_sent), "upstream to client");
        assert_eq!((t.meter.written(), t.meter.read()), (UP, DOWN));
    }

    async fn a_half_close_from_the_client_reaches_upstream_and_the_reply_still_flows<
        A: AsyncRead + AsyncWrite + Unpin,
    >(
        mut t: Tunnel<A>,
    ) {
        t.app.write_all(b"request").await.unwrap();
        t.app.shutdown().await.unwrap();
        // The upstream sees end of input only if the half-close went through.
        let mut got = Vec::new();
        guard(t.server.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"request");
        t.server.write_all(b"reply after EOF").await.unwrap();
        t.server.shutdown().await.unwrap();
        let mut back = Vec::new();
        guard(t.app.read_to_end(&mut back)).await.unwrap().unwrap();
        assert_eq!(back, b"reply after EOF");
        guard(t.task).await.unwrap().unwrap();
        assert_eq!((t.meter.written(), t.meter.read()), (7, 15));
    }

    #[tokio::test]
    async fn tcp_a_half_close_from_the_client_reaches_upstream_and_the_reply_still_flows() {
        a_half_close_from_the_client_reaches_upstream_and_the_reply_still_flows(tunnel().await)
            .await;
    }

    #[tokio::test]
    async fn zero_copy_a_half_close_from_the_client_reaches_upstream_and_the_reply_still_flows() {
        a_half_close_from_the_client_reaches_upstream_and_the_reply_still_flows(
            mem_tunnel(b"").await,
        )
        .await;
    }

    async fn a_half_close_from_upstream_leaves_the_client_able_to_send<
        A: AsyncRead + AsyncWrite + Unpin,
    >(
        mut t: Tunnel<A>,
    ) {
        t.server.write_all(b"banner").await.unwrap();
        t.server.shutdown().await.unwrap();
        let mut got = Vec::new();
        guard(t.app.read_to_end(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, b"banner");
        t.app.write_all(b"still talking").await.unwrap();
        t.app.shutdown().await.unwrap();
        let mut up = Vec::new();
        guard(t.server.read_to_end(&mut up)).await.unwrap().unwrap();
        assert_eq!(up, b"still talking");
        guard(t.task).await.unwrap().unwrap();
        assert_eq!((t.meter.written(), t.meter.read()), (13, 6));
    }

    #[tokio::test]
    async fn tcp_a_half_close_from_upstream_leaves_the_client_able_to_send() {
        a_half_close_from_upstream_leaves_the_client_able_to_send(tunnel().await).await;
    }

    #[tokio::test]
    async fn zero_copy_a_half_close_from_upstream_leaves_the_client_able_to_send() {
        a_half_close_from_upstream_leaves_the_client_able_to_send(mem_tunnel(b"").await).await;
    }

    async fn an_upstream_reset_ends_the_tunnel_and_closes_the_client<
        A: AsyncRead + AsyncWrite + Unpin,
    >(
        mut t: Tunnel<A>,
    ) {
        t.app.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        guard(t.server.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(&got, b"hello");
        // Closing with SO_LINGER 0 sends a reset instead of a FIN.
        t.server.set_zero_linger().unwrap();
        drop(t.server);
        // The tunnel ends on its own (no idle timeout, no cancel)...
        guard(t.task).await.unwrap().unwrap();
        // ...and the client's connection is closed, not left hanging.
        let mut rest = Vec::new();
        let closed = guard(t.app.read_to_end(&mut rest)).await.unwrap();
        assert!(
            matches!(&closed, Ok(0)) || closed.is_err(),
            "expected end of input or an error, got {closed:?} with {rest:?}"
        );
        assert!(!t.cancel.is_cancelled());
        assert_eq!((t.meter.written(), t.meter.read()), (5, 0));
    }

    #[tokio::test]
    async fn tcp_an_upstream_reset_ends_the_tunnel_and_closes_the_client() {
        an_upstream_reset_ends_the_tunnel_and_closes_the_client(tunnel().await).await;
    }

    #[tokio::test]
    async fn zero_copy_an_upstream_reset_ends_the_tunnel_and_closes_the_client() {
        an_upstream_reset_ends_the_tunnel_and_closes_the_client(mem_tunnel(b"").await).await;
    }

    async fn cancelling_ends_a_tunnel_that_is_still_open<A: AsyncRead + AsyncWrite + Unpin>(
        mut t: Tunnel<A>,
    ) {
        t.app.write_all(b"x").await.unwrap();
        let mut got = [0u8; 1];
        guard(t.server.read_exact(&mut got)).await.unwrap().unwrap();
        t.cancel.cancel();
        guard(t.task).await.unwrap().unwrap();
        let mut rest = Vec::new();
        let n = guard(t.app.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert_eq!(n, 0);
        // The upstream sees the tunnel close too.
        let mut up = Vec::new();
        let closed = guard(t.server.read_to_end(&mut up)).await.unwrap();
        assert!(matches!(closed, Ok(0)) || closed.is_err(), "{closed:?}");
        assert_eq!((t.meter.written(), t.meter.read()), (1, 0));
    }

    #[tokio::test]
    async fn tcp_cancelling_ends_a_tunnel_that_is_still_open() {
        cancelling_ends_a_tunnel_that_is_still_open(tunnel().await).await;
    }

    #[tokio::test]
    async fn zero_copy_cancelling_ends_a_tunnel_that_is_still_open() {
        cancelling_ends_a_tunnel_that_is_still_open(mem_tunnel(b"").await).await;
    }

    /// Takes at most `max` bytes per write, to exercise partial writes.
    struct Trickle {
        got: Vec<u8>,
        max: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn gathered_chunks_are_written_whole_and_in_order_across_partial_writes() {
        for max in [1, 4, 7, 100] {
            let mut w = Trickle {
                got: Vec::new(),
                max,
            };
            let mut chunks: VecDeque<Bytes> = [&b"hello "[..], b"", b"big ", b"world", b""]
                .into_iter()
                .map(Bytes::from_static)
                .collect();
            write_chunks(&mut w, &mut chunks).await.unwrap();
            assert_eq!(w.got, b"hello big world", "at most {max} per write");
            assert!(chunks.is_empty());
        }
    }

    /// A tunnel from a client on a [`MemStream`] (as from `open_stream`) to a
    /// TCP upstream, taking the zero-copy path, with `early` already read.
    async fn mem_tunnel(early: &'static [u8]) -> Tunnel<MemStream> {
        let (app, client) = MemStream::pair(1024 * 1024);
        let (mut upstream, server) = tcp_pair().await;
        let meter = Meter::new();
        let cancel = CancellationToken::new();
        let (m, token) = (meter.clone(), cancel.clone());
        let early = Bytes::from_static(early);
        let task = tokio::spawn(async move {
            pipe_mem(
                client,
                early,
                &mut upstream,
                &m,
                Duration::from_secs(600),
                &token,
            )
            .await;
        });
        Tunnel {
            app,
            server,
            meter,
            cancel,
            task,
        }
    }

    /// Sends `len` pattern bytes as owned chunks, then half-closes; returns
    /// their checksum.
    async fn send_chunks(mut w: MemWriter, seed: u64, len: u64) -> Checksum {
        let mut sum = Checksum::new();
        let mut sent = 0u64;
        while sent < len {
            let n = (len - sent).min(100_000) as usize;
            let mut chunk = vec![0u8; n];
            pattern(seed, sent, &mut chunk);
            sum.update(&chunk);
            w.send(Bytes::from(chunk)).await.unwrap();
            sent += n as u64;
        }
        w.shutdown().await.unwrap();
        sum
    }

    /// Takes chunks to end of input; returns the count and checksum.
    async fn recv_chunks(mut r: MemReader) -> (u64, Checksum) {
        let mut sum = Checksum::new();
        let mut total = 0u64;
        while let Some(chunk) = r.recv().await {
            sum.update(&chunk);
            total += chunk.len() as u64;
        }
        (total, sum)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn zero_copy_transfers_both_ways_arrive_intact_and_are_counted() {
        const UP: u64 = 24 * 1024 * 1024 + 7;
        const DOWN: u64 = 16 * 1024 * 1024 + 3;
        let mut t = mem_tunnel(b"early").await;
        let mut early = [0u8; 5];
        guard(t.server.read_exact(&mut early))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&early, b"early");
        let (app_r, app_w) = t.app.into_split();
        let (server_r, server_w) = t.server.into_split();
        let (up_sent, down_sent, up_got, down_got) = guard(async {
            tokio::join!(
                send_chunks(app_w, 1, UP),
                send(server_w, 2, DOWN),
                receive(server_r),
                recv_chunks(app_r),
            )
        })
        .await
        .unwrap();
        guard(t.task).await.unwrap().unwrap();
        assert_eq!(up_got, (UP, up_sent), "client to upstream");
        assert_eq!(down_got, (DOWN, down_sent), "upstream to client");
        assert_eq!((t.meter.written(), t.meter.read()), (UP + 5, DOWN));
    }
}
