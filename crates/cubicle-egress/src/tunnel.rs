//! Byte plumbing: a stream wrapper that counts bytes and notes when they last
//! moved, an idle watchdog built on it, and the two-way copy for CONNECT
//! tunnels. The copy is tokio's `copy_bidirectional` with larger buffers, so
//! half-closes propagate; the meter is what lets a tunnel that goes quiet be
//! closed and what gives the audit log its byte counts even when a tunnel
//! ends by timeout or shutdown.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

/// Copy buffer per direction: large enough that loopback throughput is not
/// limited by system calls.
const COPY_BUF: usize = 256 * 1024;

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
