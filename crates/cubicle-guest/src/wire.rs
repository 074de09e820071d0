//! Framing of the guest protocol: a 4-byte big-endian length, then that many
//! bytes of JSON. Both ends use these functions, so the size cap and the
//! error cases are enforced identically on the host and in the guest.

use cubicle_protocol::guest::{GuestFrame, MAX_FRAME_LEN};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The underlying stream failed, or ended in the middle of a frame.
    #[error("i/o error on the guest channel: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix exceeds [`MAX_FRAME_LEN`]; the body was not read.
    #[error("frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge {
        /// Length announced by the prefix.
        len: u32,
    },
    /// The frame's bytes are not JSON of the expected shape.
    #[error("malformed frame: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads one frame's raw bytes. `Ok(None)` means the stream ended cleanly
/// between frames.
///
/// On [`WireError::TooLarge`] the body is left unread: the caller either
/// drops the connection or skips it with [`discard`].
pub async fn read_raw_frame<R>(reader: &mut R) -> Result<Option<Vec<u8>>, WireError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut prefix = [0u8; 4];
    // Read the first byte alone so that end-of-stream at a frame boundary is a
    // clean close, while end-of-stream inside a prefix is an error.
    match reader.read(&mut prefix[..1]).await? {
        0 => return Ok(None),
        _ => reader.read_exact(&mut prefix[1..]).await?,
    };
    let len = u32::from_be_bytes(prefix);
    if len > MAX_FRAME_LEN {
        return Err(WireError::TooLarge { len });
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Skips `len` bytes of the stream without holding them in memory.
pub async fn discard<R>(reader: &mut R, len: u32) -> Result<(), WireError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let copied = tokio::io::copy(&mut reader.take(u64::from(len)), &mut tokio::io::sink()).await?;
    if copied < u64::from(len) {
        return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

/// Reads and parses one frame. `Ok(None)` means the stream ended cleanly.
pub async fn read_frame<T, R>(reader: &mut R) -> Result<Option<T>, WireError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + ?Sized,
{
    match read_raw_frame(reader).await? {
        Some(body) => Ok(Some(serde_json::from_slice(&body)?)),
        None => Ok(None),
    }
}

/// Serialises `frame`, checks the size cap, and writes and flushes it.
pub async fn write_frame<T, W>(writer: &mut W, frame: &T) -> Result<(), WireError>
where
    T: Serialize + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, frame)?;
    let len = buf.len() - 4;
    let len = u32::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_FRAME_LEN)
        .ok_or(WireError::TooLarge {
            len: u32::try_from(len).unwrap_or(u32::MAX),
        })?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    // One write per frame keeps frames whole even if a caller shares the
    // stream carelessly, and costs one syscall instead of two.
    writer.write_all(&buf).await?;
    writer.flush().await?;
    Ok(())
}

/// Parses a guest frame (the one place frames from the guest are decoded).
pub fn parse_guest_frame(raw: &[u8]) -> Result<GuestFrame, serde_json::Error> {
    serde_json::from_slice(raw)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use cubicle_protocol::guest::{HostFrame, Op};
    use pretty_assertions::assert_eq;

    #[tokio::test]
    async fn round_trip_and_clean_eof() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let frame = HostFrame::Request {
            id: 3,
            op: Op::Ping,
        };
        write_frame(&mut a, &frame).await.unwrap();
        write_frame(&mut a, &frame).await.unwrap();
        drop(a);
        let got: Option<HostFrame> = read_frame(&mut b).await.unwrap();
        assert_eq!(got, Some(frame.clone()));
        let got: Option<HostFrame> = read_frame(&mut b).await.unwrap();
        assert_eq!(got, Some(frame));
        let got: Option<HostFrame> = read_frame(&mut b).await.unwrap();
        assert_eq!(got, None);
    }

    #[tokio::test]
    async fn prefix_is_big_endian_length() {
        let mut out = Vec::new();
        write_frame(&mut out, &serde_json::json!({"a": 1}))
            .await
            .unwrap();
        assert_eq!(&out[..4], &[0, 0, 0, 7]);
        assert_eq!(&out[4..], br#"{"a":1}"#);
    }

    #[tokio::test]
    async fn oversize_is_refused_and_can_be_skipped() {
        let len = MAX_FRAME_LEN + 1;
        let mut input = len.to_be_bytes().to_vec();
        input.extend(std::iter::repeat_n(b'x', len as usize));
        let mut next = Vec::new();
        write_frame(&mut next, &serde_json::json!(1)).await.unwrap();
        input.extend(next);
        let mut r = &input[..];
        let err = read_raw_frame(&mut r).await.unwrap_err();
        assert!(matches!(err, WireError::TooLarge { len: l } if l == len));
        discard(&mut r, len).await.unwrap();
        let v: Option<serde_json::Value> = read_frame(&mut r).await.unwrap();
        assert_eq!(v, Some(serde_json::json!(1)));
    }

    #[test]
    fn stat_responses_round_trip() {
        use cubicle_protocol::guest::{FileKind, FileStat, OpResult};
        let frame = GuestFrame::Response {
            id: 4,
            result: OpResult::Stat {
                stat: FileStat {
                    kind: FileKind::Dir,
                    size: 1,
                    mode: 0o755,
                    modified_ms: 2,
                    writable: true,
                },
            },
        };
        let raw = serde_json::to_vec(&frame).unwrap();
        assert_eq!(parse_guest_frame(&raw).unwrap(), frame);
        assert!(parse_guest_frame(br#"{"type":"response","id":1,"result":{"kind":"x"}}"#).is_err());
    }

    #[tokio::test]
    async fn truncated_frames_are_errors() {
        let mut r: &[u8] = &[0, 0];
        assert!(matches!(
            read_raw_frame(&mut r).await,
            Err(WireError::Io(_))
        ));
        let mut r: &[u8] = &[0, 0, 0, 5, b'{'];
        assert!(matches!(
            read_raw_frame(&mut r).await,
            Err(WireError::Io(_))
        ));
        let mut r: &[u8] = &[0, 0, 0, 1, b'{'];
        let res: Result<Option<serde_json::Value>, _> = read_frame(&mut r).await;
        assert!(matches!(res, Err(WireError::Json(_))));
    }
}
