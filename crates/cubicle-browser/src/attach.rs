//! Attaching to the person's own Chrome over its remote-debugging port.
//!
//! Only a loopback address is accepted: the DevTools endpoint gives whoever
//! reaches it full control of the browser, so Cubicle never speaks it over a
//! network. The browser's `/json/version` names its WebSocket; Cubicle takes
//! only the path from it and connects to the address it was given, so an
//! answer cannot redirect it elsewhere.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;

use crate::error::BrowserError;

/// Largest `/json/version` answer read.
const MAX_VERSION_BYTES: u64 = 64 * 1024;

/// Parses a DevTools address such as `http://127.0.0.1:9222`, refusing
/// anything that is not loopback.
pub fn parse_address(text: &str) -> Result<SocketAddr, BrowserError> {
    let refuse = |detail: String| BrowserError::Attach {
        address: text.to_owned(),
        detail,
    };
    let trimmed = text.trim();
    let rest = trimmed.strip_prefix("http://").ok_or_else(|| {
        refuse("give the browser's DevTools address as http://127.0.0.1:PORT".into())
    })?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '@', '?', '#']) {
        return Err(refuse(
            "give only the address and port, as http://127.0.0.1:PORT".into(),
        ));
    }
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| refuse("the address needs a port, as http://127.0.0.1:PORT".into()))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| refuse(format!("{port:?} is not a port number")))?;
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| {
                refuse(format!(
                    "{host} is not a loopback address; Cubicle attaches only to a browser on this machine (127.0.0.1, ::1 or localhost)"
                ))
            })?
    };
    if !ip.is_loopback() {
        return Err(refuse(format!(
            "{ip} is not a loopback address; Cubicle attaches only to a browser on this machine (127.0.0.1, ::1 or localhost)"
        )));
    }
    Ok(SocketAddr::new(ip, port))
}

/// Reads the browser's WebSocket path from `/json/version` and opens it.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<WebSocketStream<TcpStream>, BrowserError> {
    let failed = |detail: String| BrowserError::Attach {
        address: format!("http://{addr}"),
        detail,
    };
    let path = tokio::time::timeout(timeout, websocket_path(addr))
        .await
        .map_err(|_| failed("the browser did not answer /json/version in time".into()))?
        .map_err(failed)?;
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| failed("the connection timed out".into()))?
        .map_err(|e| failed(format!("cannot connect: {e}")))?;
    let (ws, _) = tokio::time::timeout(
        timeout,
        tokio_tungstenite::client_async_with_config(
            format!("ws://{addr}{path}"),
            stream,
            Some(
                tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                    .max_message_size(Some(256 << 20))
                    .max_frame_size(Some(256 << 20)),
            ),
        ),
    )
    .await
    .map_err(|_| failed("the DevTools WebSocket did not open in time".into()))?
    .map_err(|e| failed(format!("the DevTools WebSocket did not open: {e}")))?;
    Ok(ws)
}

async fn websocket_path(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| {
        format!(
            "cannot connect ({e}); is Chrome running with --remote-debugging-port={}?",
            addr.port()
        )
    })?;
    // Chrome's DevTools server speaks HTTP/1.1 only and keeps the
    // connection open: the body is read by its length.
    let request = format!("GET /json/version HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot ask for /json/version: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let body = loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("cannot read /json/version: {e}"))?;
        if n == 0 {
            return Err(
                "the connection closed before /json/version was answered; is this a DevTools port?"
                    .into(),
            );
        }
        answer.extend_from_slice(&chunk[..n]);
        if answer.len() as u64 > MAX_VERSION_BYTES {
            return Err(
                "the answer to /json/version is too large; is this a DevTools port?".into(),
            );
        }
        let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return Err(format!(
                "/json/version was answered with {:?}; is this a DevTools port?",
                head.lines().next().unwrap_or_default()
            ));
        }
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or("the answer to /json/version has no length; is this a DevTools port?")?;
        if answer.len() >= end + 4 + length {
            break answer[end + 4..end + 4 + length].to_vec();
        }
    };
    let version: Value = serde_json::from_slice(&body)
        .map_err(|_| "the answer to /json/version is not JSON; is this a DevTools port?")?;
    let url = version["webSocketDebuggerUrl"]
        .as_str()
        .ok_or("/json/version names no webSocketDebuggerUrl")?;
    let path = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .filter(|p| p.starts_with("/devtools/browser/"))
        .ok_or_else(|| format!("unexpected webSocketDebuggerUrl {url:?}"))?;
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses() {
        assert_eq!(
            parse_address("http://127.0.0.1:9222").unwrap(),
            "127.0.0.1:9222".parse().unwrap()
        );
        assert_eq!(
            parse_address("http://localhost:9222/").unwrap(),
            "127.0.0.1:9222".parse().unwrap()
        );
        assert_eq!(
            parse_address("http://[::1]:9222").unwrap(),
            "[::1]:9222".parse().unwrap()
        );
        for bad in [
            "http://192.168.1.5:9222",
            "http://0.0.0.0:9222",
            "http://example.com:9222",
            "http://127.0.0.1.evil.test:9222",
            "http://127.0.0.1:9222@evil.test:80",
            "ws://127.0.0.1:9222",
            "127.0.0.1:9222",
            "http://127.0.0.1",
            "http://127.0.0.1:0",
        ] {
            let err = parse_address(bad).unwrap_err();
            assert!(matches!(err, BrowserError::Attach { .. }), "{bad}: {err}");
        }
        let err = parse_address("http://10.0.0.2:9222")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a loopback address"), "{err}");
    }
}
