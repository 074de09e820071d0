//! An in-memory byte stream between two ends in one process: what
//! [`EgressProxy::open_stream`](crate::EgressProxy::open_stream) hands the
//! sandbox for each guest tunnel. It behaves like tokio's `DuplexStream`
//! (both ends read and write; a shutdown is a half-close, end of input after
//! what was sent; dropping an end gives the other end of input on reads and
//! `BrokenPipe` on writes) but carries owned [`Bytes`] chunks instead of
//! copying into a ring buffer, so that bytes can move without being copied:
//! [`MemStream::send`] queues a buffer the caller already owns, and
//! [`MemStream::recv`] takes one out as it was queued. The proxy's CONNECT
//! tunnel uses both: chunks from the client go to the upstream socket as
//! they are, several to a system call, and each read from the upstream is
//! handed to the client as a chunk. Plain `AsyncWrite` copies each write
//! into new chunks and `AsyncRead` copies out of them, as a duplex would.
//!
//! Each direction holds at most a fixed number of bytes in flight (sent and
//! not yet read): a writer past that waits, which is the backpressure that
//! keeps memory bounded. Copied writes of 16 KiB and more go into 64 KiB
//! buffers that return to their writer's pool once read, so that a bulk
//! transfer reuses warm memory instead of faulting in fresh pages for every
//! chunk; a pooled buffer always carries at least 16 KiB, so the memory behind the
//! bytes in flight stays within four times the bound, and an idle pool keeps
//! at most 512 KiB.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffers of this size carry copied writes (and the tunnel's reads from
/// upstream), and go back to their writer's pool once read, so that bulk
/// transfers reuse warm memory instead of faulting in fresh pages.
pub(crate) const POOLED_CHUNK: usize = 64 * 1024;
/// Fewer bytes than this are copied into a buffer of their own size instead.
pub(crate) const POOLED_MIN: usize = 16 * 1024;

/// Most idle buffers one writer keeps (512 KiB): a stream that moved bulk
/// data and then idles on a kept-alive connection holds no more than this.
const MAX_FREE: usize = 8;

/// Idle buffers of one writer, for reuse.
struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    /// Most idle buffers kept: enough for a good part of a full pipe, at
    /// most [`MAX_FREE`].
    max_free: usize,
}

impl Pool {
    fn new(max_in_flight: usize) -> Arc<Pool> {
        Arc::new(Pool {
            free: Mutex::new(Vec::new()),
            max_free: max_in_flight.div_ceil(POOLED_CHUNK).min(MAX_FREE),
        })
    }

    /// An empty buffer of [`POOLED_CHUNK`] bytes' capacity.
    fn take(&self) -> Vec<u8> {
        let reused = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        reused.unwrap_or_else(|| Vec::with_capacity(POOLED_CHUNK))
    }
}

/// A pooled buffer lent to a chunk; it goes back to the pool when the last
/// [`Bytes`] over it is dropped (or is freed if the writer is gone).
struct Pooled {
    buf: Vec<u8>,
    pool: Weak<Pool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let mut free = pool.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < pool.max_free && self.buf.capacity() == POOLED_CHUNK {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            free.push(buf);
        }
    }
}

/// One direction: chunks queued by its writer for its reader.
struct Pipe {
    chunks: VecDeque<Bytes>,
    /// Bytes sent and not yet read, including the unread rest of a chunk the
    /// reader has taken out of the queue and any chunk being queued.
    in_flight: usize,
    max_in_flight: usize,
    /// The writer shut down or was dropped: after the queue, end of input.
    write_closed: bool,
    /// The reader was dropped: writes fail with `BrokenPipe`.
    read_closed: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Pipe {
    fn shared(max_in_flight: usize) -> Arc<Mutex<Pipe>> {
        Arc::new(Mutex::new(Pipe {
            chunks: VecDeque::new(),
            in_flight: 0,
            max_in_flight: max_in_flight.max(1),
            write_closed: false,
            read_closed: false,
            read_waker: None,
            write_waker: None,
        }))
    }

    /// Room for the writer now, reserved for it; 0 means it has to wait and
    /// will be woken.
    fn reserve(&mut self, cx: &mut Context<'_>, wanted: usize) -> io::Result<usize> {
        if self.read_closed || self.write_closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let room = self.max_in_flight - self.in_flight;
        if room == 0 {
            self.write_waker = Some(cx.waker().clone());
            return Ok(0);
        }
        let n = room.min(wanted);
        self.in_flight += n;
        Ok(n)
    }

    /// Queues chunks whose room was reserved; the reader's waker, if it waits.
    fn push(&mut self, chunks: impl IntoIterator<Item = Bytes>) -> Option<Waker> {
        if self.read_closed {
            // Nobody will read them (closing cleared what was in flight);
            // the writer learns on its next write.
            return None;
        }
        self.chunks.extend(chunks);
        self.read_waker.take()
    }

    /// Counts `n` bytes as read; the writer's waker once there is enough room
    /// that waking it is worth it (a quarter of the bound), so that a reader
    /// taking small reads does not wake it for each.
    fn consumed(&mut self, n: usize) -> Option<Waker> {
        self.in_flight -= n;
        let room = self.max_in_flight - self.in_flight;
        if room >= (self.max_in_flight / 4).max(1) {
            self.write_waker.take()
        } else {
            None
        }
    }

    fn close_write(&mut self) -> Option<Waker> {
        self.write_closed = true;
        self.read_waker.take()
    }

    fn close_read(&mut self) -> Option<Waker> {
        self.read_closed = true;
        self.chunks.clear();
        self.in_flight = 0;
        self.write_waker.take()
    }
}

/// Appends `len` bytes of `bufs` starting at `from` to `out`.
fn copy_range(bufs: &[io::IoSlice<'_>], mut from: usize, len: usize, out: &mut Vec<u8>) {
    let end = out.len() + len;
    for b in bufs {
        if from >= b.len() {
            from -= b.len();
            continue;
        }
        let take = (b.len() - from).min(end - out.len());
        out.extend_from_slice(&b[from..from + take]);
        from = 0;
        if out.len() == end {
            return;
        }
    }
}

fn lock(pipe: &Mutex<Pipe>) -> MutexGuard<'_, Pipe> {
    // A panic while holding the lock leaves the queue consistent: every
    // change to it is a single push, pop or flag.
    pipe.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

/// The reading half of a [`MemStream`].
pub struct MemReader {
    pipe: Arc<Mutex<Pipe>>,
    /// The unread rest of the chunk being read (still counted in flight).
    current: Bytes,
}

/// The writing half of a [`MemStream`].
pub struct MemWriter {
    pipe: Arc<Mutex<Pipe>>,
    pool: Arc<Pool>,
}

/// One end of an in-memory byte stream (see the module docs).
pub struct MemStream {
    reader: MemReader,
    writer: MemWriter,
}

impl MemStream {
    /// Two connected ends, each direction holding at most `max_in_flight`
    /// bytes sent and not yet read (at least 1).
    pub fn pair(max_in_flight: usize) -> (MemStream, MemStream) {
        let a_to_b = Pipe::shared(max_in_flight);
        let b_to_a = Pipe::shared(max_in_flight);
        let a = MemStream {
            reader: MemReader::new(b_to_a.clone()),
            writer: MemWriter::new(a_to_b.clone(), max_in_flight),
        };
        let b = MemStream {
            reader: MemReader::new(a_to_b),
            writer: MemWriter::new(b_to_a, max_in_flight),
        };
        (a, b)
    }

    /// Separates the two halves, to read and write from different places.
    /// Dropping one half closes only its direction.
    pub fn into_split(self) -> (MemReader, MemWriter) {
        (self.reader, self.writer)
    }

    /// Sends `bytes` without copying them; see [`MemWriter::send`].
    pub async fn send(&mut self, bytes: Bytes) -> io::Result<()> {
        self.writer.send(bytes).await
    }

    /// The next chunk as it was sent; see [`MemReader::recv`].
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.reader.recv().await
    }

    /// Polls for the next chunk; see [`MemReader::poll_recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.reader.poll_recv(cx)
    }

    /// Sends the front of `bytes`; see [`MemWriter::poll_send`].
    pub fn poll_send(&mut self, cx: &mut Context<'_>, bytes: &mut Bytes) -> Poll<io::Result<()>> {
        self.writer.poll_send(cx, bytes)
    }
}

impl MemReader {
    fn new(pipe: Arc<Mutex<Pipe>>) -> Self {
        Self {
            pipe,
            current: Bytes::new(),
        }
    }

    /// The next chunk as the other end sent it (or the rest of one partly
    /// read), without copying; `None` at end of input.
    pub async fn recv(&mut self) -> Option<Bytes> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next chunk; `Ready(None)` at end of input.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let mut pipe = lock(&self.pipe);
        let chunk = if self.current.is_empty() {
            match pipe.chunks.pop_front() {
                Some(chunk) => chunk,
                None if pipe.write_closed => return Poll::Ready(None),
                None => {
                    pipe.read_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        } else {
            std::mem::take(&mut self.current)
        };
        let waker = pipe.consumed(chunk.len());
        drop(pipe);
        coop.made_progress();
        wake(waker);
        Poll::Ready(Some(chunk))
    }

    /// Takes up to `max` chunks (at least one, waiting for it) into `out`;
    /// `false` at end of input. Lets a reader write several chunks with one
    /// gathering system call.
    pub(crate) async fn recv_many(&mut self, out: &mut VecDeque<Bytes>, max: usize) -> bool {
        std::future::poll_fn(|cx| self.poll_recv_many(cx, out, max)).await
    }

    fn poll_recv_many(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut VecDeque<Bytes>,
        max: usize,
    ) -> Poll<bool> {
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let mut pipe = lock(&self.pipe);
        let mut taken = 0;
        let mut count = 0;
        if !self.current.is_empty() {
            let chunk = std::mem::take(&mut self.current);
            taken += chunk.len();
            count += 1;
            out.push_back(chunk);
        }
        while count < max.max(1) {
            let Some(chunk) = pipe.chunks.pop_front() else {
                break;
            };
            taken += chunk.len();
            count += 1;
            out.push_back(chunk);
        }
        if count == 0 {
            if pipe.write_closed {
                return Poll::Ready(false);
            }
            pipe.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let waker = pipe.consumed(taken);
        drop(pipe);
        coop.made_progress();
        wake(waker);
        Poll::Ready(true)
    }
}

impl AsyncRead for MemReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let this = &mut *self;
        // Take a chunk and count what this read will consume under the lock;
        // copy after letting go of it.
        let mut pipe = lock(&this.pipe);
        if this.current.is_empty() {
            match pipe.chunks.pop_front() {
                Some(chunk) => this.current = chunk,
                None if pipe.write_closed => return Poll::Ready(Ok(())),
                None => {
                    pipe.read_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
        let n = this.current.len().min(buf.remaining());
        let waker = pipe.consumed(n);
        drop(pipe);
        buf.put_slice(&this.current[..n]);
        if n == this.current.len() {
            // Let go of it now: a pooled buffer goes back to its writer.
            this.current = Bytes::new();
        } else {
            this.current.advance(n);
        }
        coop.made_progress();
        wake(waker);
        Poll::Ready(Ok(()))
    }
}

impl Drop for MemReader {
    fn drop(&mut self) {
        let waker = lock(&self.pipe).close_read();
        wake(waker);
    }
}

impl MemWriter {
    fn new(pipe: Arc<Mutex<Pipe>>, max_in_flight: usize) -> Self {
        Self {
            pipe,
            pool: Pool::new(max_in_flight),
        }
    }

    /// An empty buffer of [`POOLED_CHUNK`] bytes' capacity from this
    /// writer's pool, to fill and hand to [`MemWriter::pooled`].
    pub(crate) fn buffer(&self) -> Vec<u8> {
        self.pool.take()
    }

    /// `buf` as a chunk to send that returns to this writer's pool once read.
    pub(crate) fn pooled(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: Arc::downgrade(&self.pool),
        })
    }

    /// Sends all of `bytes` without copying them: the other end's
    /// [`MemReader::recv`] gets them as they are (split into parts if they
    /// exceed the room in flight). Fails with `BrokenPipe` once the other end
    /// is gone or this one has shut down.
    pub async fn send(&mut self, mut bytes: Bytes) -> io::Result<()> {
        while !bytes.is_empty() {
            std::future::poll_fn(|cx| self.poll_send(cx, &mut bytes)).await?;
        }
        Ok(())
    }

    /// Sends as much of the front of `bytes` as there is room for, without
    /// copying, and leaves the rest in `bytes`; `Ready` once anything was
    /// sent (or `bytes` is empty).
    pub fn poll_send(&mut self, cx: &mut Context<'_>, bytes: &mut Bytes) -> Poll<io::Result<()>> {
        if bytes.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let mut pipe = lock(&self.pipe);
        let n = pipe.reserve(cx, bytes.len())?;
        if n == 0 {
            return Poll::Pending;
        }
        let waker = pipe.push([bytes.split_to(n)]);
        drop(pipe);
        coop.made_progress();
        wake(waker);
        Poll::Ready(Ok(()))
    }

    /// Copies up to the room in flight from `bufs` into new chunks.
    fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        // Reserve under the lock, copy outside it: only this half queues
        // into the pipe, so the reserved room stays ours.
        let n = lock(&self.pipe).reserve(cx, total)?;
        if n == 0 {
            return Poll::Pending;
        }
        // Pieces of up to a pooled buffer each; a small one (the whole of a
        // small write, or the tail of a large one) gets a buffer of its own
        // size, so that a pooled buffer always carries at least
        // `POOLED_MIN` bytes and memory stays within a small multiple of
        // the bound.
        let mut chunks = Vec::with_capacity(n.div_ceil(POOLED_CHUNK));
        let mut done = 0;
        while done < n {
            let take = (n - done).min(POOLED_CHUNK);
            let chunk = if take < POOLED_MIN {
                let mut buf = Vec::with_capacity(take);
                copy_range(bufs, done, take, &mut buf);
                Bytes::from(buf)
            } else {
                let mut buf = self.pool.take();
                copy_range(bufs, done, take, &mut buf);
                self.pooled(buf)
            };
            chunks.push(chunk);
            done += take;
        }
        let waker = lock(&self.pipe).push(chunks);
        coop.made_progress();
        wake(waker);
        Poll::Ready(Ok(n))
    }

    fn close(&mut self) {
        let waker = lock(&self.pipe).close_write();
        wake(waker);
    }
}

impl AsyncWrite for MemWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_copy(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_copy(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close();
        Poll::Ready(Ok(()))
    }
}

impl Drop for MemWriter {
    fn drop(&mut self) {
        self.close();
    }
}

// Not derived: that would print every byte in flight.
impl std::fmt::Debug for MemStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStream").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for MemReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemReader").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for MemWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemWriter").finish_non_exhaustive()
    }
}

impl AsyncRead for MemStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for MemStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    use super::*;
    use pretty_assertions::assert_eq;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Only a guard against hanging: a slow run still passes.
    async fn guard<F: Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("hung")
    }

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Writes once without waiting: `None` if the write would wait.
    fn try_write(w: &mut MemStream, cx: &mut Context<'_>, buf: &[u8]) -> Option<io::Result<usize>> {
        match Pin::new(w).poll_write(cx, buf) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn a_shutdown_ends_input_one_way_and_the_other_way_still_flows() {
        let (mut a, mut b) = MemStream::pair(64);
        a.write_all(b"request").await.unwrap();
        a.shutdown().await.unwrap();
        let mut got = Vec::new();
        guard(b.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"request");
        // Writing after a shutdown fails, as on a duplex.
        let err = a.write_all(b"more").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        b.write_all(b"reply after EOF").await.unwrap();
        b.shutdown().await.unwrap();
        let mut back = Vec::new();
        guard(a.read_to_end(&mut back)).await.unwrap();
        assert_eq!(back, b"reply after EOF");
    }

    #[tokio::test]
    async fn dropping_an_end_gives_the_other_what_was_sent_then_eof_and_broken_pipe() {
        let (mut a, mut b) = MemStream::pair(64);
        a.write_all(b"last words").await.unwrap();
        drop(a);
        let mut got = Vec::new();
        guard(b.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"last words");
        let err = b.write_all(b"anyone?").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let err = b.send(Bytes::from_static(b"anyone?")).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn dropping_the_reader_wakes_a_waiting_writer_with_broken_pipe() {
        let (mut a, b) = MemStream::pair(8);
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert_eq!(
            try_write(&mut a, &mut cx, b"123456789").unwrap().unwrap(),
            8
        );
        assert!(try_write(&mut a, &mut cx, b"9").is_none());
        drop(b);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        let err = try_write(&mut a, &mut cx, b"9").unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_writer_can_get_no_more_than_the_bound_in_flight_and_is_woken_once_there_is_room() {
        let (mut a, mut b) = MemStream::pair(1000);
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut sent = 0;
        while let Some(r) = try_write(&mut a, &mut cx, &[7u8; 300]) {
            sent += r.unwrap();
        }
        assert_eq!(sent, 1000);
        assert!(try_write(&mut a, &mut cx, b"x").is_none());
        // Reading less than a quarter of the bound does not wake the writer...
        let mut buf = [0u8; 100];
        let mut rb = ReadBuf::new(&mut buf);
        let noop = Waker::noop();
        let mut read_cx = Context::from_waker(noop);
        assert!(Pin::new(&mut b).poll_read(&mut read_cx, &mut rb).is_ready());
        assert_eq!(rb.filled().len(), 100);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        // ...and reading a quarter does.
        let mut buf = [0u8; 200];
        let mut rb = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut b).poll_read(&mut read_cx, &mut rb).is_ready());
        assert_eq!(rb.filled().len(), 200);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // Exactly what was read is free again, no more.
        let mut more = 0;
        while let Some(r) = try_write(&mut a, &mut cx, &[7u8; 64]) {
            more += r.unwrap();
        }
        assert_eq!(more, 300);
    }

    #[test]
    fn zero_copy_sends_are_bounded_too_and_split_without_copying() {
        let (mut a, mut b) = MemStream::pair(4);
        let noop = Waker::noop();
        let mut cx = Context::from_waker(noop);
        let payload = Bytes::from_static(b"0123456789");
        let mut rest = payload.clone();
        assert!(a.poll_send(&mut cx, &mut rest).is_ready());
        assert_eq!(rest, &b"456789"[..]);
        assert!(a.poll_send(&mut cx, &mut rest).is_pending());
        let Poll::Ready(Some(first)) = b.poll_recv(&mut cx) else {
            panic!("nothing queued");
        };
        assert_eq!(first, &b"0123"[..]);
        // The very bytes sent, not a copy of them.
        assert_eq!(first.as_ptr(), payload.as_ptr());
        assert!(a.poll_send(&mut cx, &mut rest).is_ready());
        let Poll::Ready(Some(second)) = b.poll_recv(&mut cx) else {
            panic!("nothing queued");
        };
        assert_eq!(second.as_ptr(), payload[4..].as_ptr());
        assert!(b.poll_recv(&mut cx).is_pending());
    }

    #[tokio::test]
    async fn recv_returns_chunks_as_sent_and_the_rest_of_a_partly_read_one() {
        let (mut a, mut b) = MemStream::pair(1024);
        let first = Bytes::from(vec![1u8; 100]);
        a.send(first.clone()).await.unwrap();
        a.write_all(b"copied").await.unwrap();
        a.shutdown().await.unwrap();
        let mut head = [0u8; 10];
        b.read_exact(&mut head).await.unwrap();
        let rest = b.recv().await.unwrap();
        assert_eq!(rest.as_ptr(), first[10..].as_ptr());
        assert_eq!(rest.len(), 90);
        assert_eq!(b.recv().await.unwrap(), &b"copied"[..]);
        assert_eq!(b.recv().await, None);
    }

    #[tokio::test]
    async fn copied_writes_go_into_pooled_buffers_that_are_reused_once_read() {
        let (mut a, mut b) = MemStream::pair(1024 * 1024);
        a.write_all(&[1u8; POOLED_CHUNK]).await.unwrap();
        let first = b.recv().await.unwrap();
        assert_eq!(first.len(), POOLED_CHUNK);
        let ptr = first.as_ptr();
        drop(first);
        a.write_all(&[2u8; POOLED_CHUNK]).await.unwrap();
        let second = b.recv().await.unwrap();
        assert_eq!(second.as_ptr(), ptr, "the buffer was not reused");
        assert!(second.iter().all(|&x| x == 2));
    }

    #[tokio::test]
    async fn a_pooled_buffer_never_carries_only_a_few_bytes() {
        let (mut a, mut b) = MemStream::pair(1024 * 1024);
        // A large write's small tail gets a buffer of its own size.
        let len = 2 * POOLED_CHUNK + 10;
        let data: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
        a.write_all(&data).await.unwrap();
        a.shutdown().await.unwrap();
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        while let Some(chunk) = b.recv().await {
            sizes.push(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(sizes, vec![POOLED_CHUNK, POOLED_CHUNK, 10]);
        assert!(got == data, "bytes differ");
    }

    #[tokio::test]
    async fn recv_many_takes_queued_chunks_up_to_the_limit_then_reports_the_end() {
        let (mut a, b) = MemStream::pair(1024);
        let (mut r, _w) = b.into_split();
        for part in [&b"one"[..], b"two", b"three"] {
            a.send(Bytes::from_static(part)).await.unwrap();
        }
        a.shutdown().await.unwrap();
        let mut out = VecDeque::new();
        assert!(r.recv_many(&mut out, 2).await);
        assert_eq!(out, [&b"one"[..], b"two"]);
        out.clear();
        assert!(r.recv_many(&mut out, 2).await);
        assert_eq!(out, [&b"three"[..]]);
        assert!(!r.recv_many(&mut out, 2).await);
    }

    /// Deterministic bytes that differ by offset and seed.
    fn pattern(seed: u64, offset: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| {
                let x = (offset + i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
                ((x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 56) as u8
            })
            .collect()
    }

    /// Sends `len` pattern bytes in uneven pieces, alternating copying writes
    /// and zero-copy sends, then shuts down.
    async fn send_all(mut w: MemWriter, seed: u64, len: u64) {
        let mut sent = 0u64;
        let mut piece = 1usize;
        while sent < len {
            let n = (len - sent).min(piece as u64) as usize;
            let bytes = pattern(seed, sent, n);
            if piece.is_multiple_of(2) {
                w.write_all(&bytes).await.unwrap();
            } else {
                w.send(Bytes::from(bytes)).await.unwrap();
            }
            sent += n as u64;
            piece = (piece * 3 + 1) % 300_000;
        }
        w.shutdown().await.unwrap();
    }

    /// Reads to end of input, alternating reads and zero-copy receives.
    async fn receive_all(mut r: MemReader) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 50_000];
        loop {
            if got.len().is_multiple_of(2) {
                let n = r.read(&mut buf).await.unwrap();
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&buf[..n]);
            } else {
                match r.recv().await {
                    Some(chunk) => got.extend_from_slice(&chunk),
                    None => return got,
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_transfers_both_ways_arrive_intact() {
        const UP: u64 = 8 * 1024 * 1024 + 5;
        const DOWN: u64 = 5 * 1024 * 1024 + 3;
        let (a, b) = MemStream::pair(256 * 1024);
        let (a_r, a_w) = a.into_split();
        let (b_r, b_w) = b.into_split();
        let (_, _, up, down) = guard(async {
            tokio::join!(
                send_all(a_w, 1, UP),
                send_all(b_w, 2, DOWN),
                receive_all(b_r),
                receive_all(a_r),
            )
        })
        .await;
        assert!(up == pattern(1, 0, UP as usize), "a to b differs");
        assert!(down == pattern(2, 0, DOWN as usize), "b to a differs");
    }
}
