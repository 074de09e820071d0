//! Reading a connection's first request head ourselves, before hyper sees it,
//! so that garbage gets a 400 and an oversized head a 431 with a body saying
//! why (hyper answers those with an empty body), and so that the exact header
//! limit is enforced (hyper's own buffer cannot be set below 8 KiB). The bytes
//! read are handed on to hyper through [`Prefixed`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Most headers a request may have.
const MAX_HEADERS: usize = 128;

/// The first request head of a connection.
#[derive(Debug)]
pub(crate) struct Head {
    /// Everything read so far: the head and perhaps the start of a body.
    pub(crate) bytes: Vec<u8>,
    /// The request method.
    pub(crate) method: String,
    /// The request target as sent.
    pub(crate) target: String,
}

/// Why no head could be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The client closed before sending anything.
    Closed,
    /// The head exceeds the limit.
    TooLarge,
    /// Not HTTP/1.x.
    Malformed(String),
    /// Reading failed.
    Io(io::Error),
}

/// Reads until one complete request head is buffered.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    max: usize,
) -> Result<Head, HeadError> {
    let mut bytes: Vec<u8> = Vec::with_capacity(4096.min(max + 1));
    loop {
        bytes.reserve(4096);
        let n = stream.read_buf(&mut bytes).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(if bytes.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Malformed("the connection closed in the middle of a request".into())
            });
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&bytes) {
            Ok(httparse::Status::Complete(len)) => {
                if len > max {
                    return Err(HeadError::TooLarge);
                }
                let method = req.method.unwrap_or_default().to_owned();
                let target = req.path.unwrap_or_default().to_owned();
                return Ok(Head {
                    bytes,
                    method,
                    target,
                });
            }
            Ok(httparse::Status::Partial) if bytes.len() > max => return Err(HeadError::TooLarge),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(e) => {
                return Err(HeadError::Malformed(format!(
                    "this is an HTTP proxy and the request is not HTTP/1.1 ({e}); set HTTP_PROXY and HTTPS_PROXY to this address"
                )));
            }
        }
    }
}

/// A stream that first yields bytes already read from it.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }

    /// The prefix bytes not read yet, and the stream.
    pub(crate) fn into_parts(mut self) -> (Vec<u8>, S) {
        let rest = self.prefix.split_off(self.pos);
        (rest, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    #[tokio::test]
    async fn reads_a_head_split_across_reads_and_keeps_the_rest() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let task = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            client
                .write_all(b"CONNECT a.test:443 HTTP/1.1\r\nHo")
                .await
                .unwrap();
            client
                .write_all(b"st: a.test:443\r\n\r\nextra")
                .await
                .unwrap();
            client
        });
        let head = read_head(&mut server, 1024).await.unwrap();
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("CONNECT", "a.test:443")
        );
        let _client = task.await.unwrap();
        let mut all = String::new();
        let mut p = Prefixed::new(head.bytes, tokio::io::empty());
        p.read_to_string(&mut all).await.unwrap();
        assert!(all.ends_with("\r\n\r\nextra"), "{all:?}");
    }

    #[tokio::test]
    async fn garbage_and_oversize_are_told_apart() {
        let mut garbage: &[u8] = b"\x16\x03\x01\x02\x00 hello";
        assert!(matches!(
            read_head(&mut garbage, 1024).await,
            Err(HeadError::Malformed(_))
        ));
        let big = format!(
            "GET http://a.test/ HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(2000)
        );
        let mut big = big.as_bytes();
        assert!(matches!(
            read_head(&mut big, 1024).await,
            Err(HeadError::TooLarge)
        ));
        let mut empty: &[u8] = b"";
        assert!(matches!(
            read_head(&mut empty, 1024).await,
            Err(HeadError::Closed)
        ));
    }
}
