//! The checks every request passes before any handler runs, in order:
//! `Host` must name this server (DNS-rebinding defence), `Origin` must be
//! absent or this server's own origin and `Sec-Fetch-Site` must not say
//! cross-site (CSRF and cross-site WebSocket defence), then the token must
//! match, compared in constant time. No CORS headers are ever sent.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// The subprotocol a browser offers for the event stream, beside the token.
pub(crate) const WS_PROTOCOL: &str = "cubicle.v1";
/// Prefix of the subprotocol that carries the token (`cubicle.token.TOKEN`).
pub(crate) const WS_TOKEN_PREFIX: &str = "cubicle.token.";

/// What the checks need to know.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The secret token.
    pub token: String,
    /// Accepted `Host` values (`127.0.0.1:PORT`, `localhost:PORT`).
    pub hosts: Vec<String>,
}

impl Guard {
    fn token_ok(&self, given: &str) -> bool {
        given.as_bytes().ct_eq(self.token.as_bytes()).into()
    }
}

fn deny(status: StatusCode, why: &'static str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token a request carries, by where the route allows it.
fn token_of<'a>(req: &'a Request, path: &str) -> Option<&'a str> {
    let query_token = || {
        req.uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")))
    };
    let headers = req.headers();
    if path == "/" {
        return query_token();
    }
    if let Some(bearer) =
        header_str(headers, header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer);
    }
    // Browsers cannot set headers on a WebSocket: the event stream also takes
    // the token as a subprotocol or a query parameter.
    if path.starts_with("/api/sessions/") && path.ends_with("/events") {
        let from_protocol = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|p| p.trim().strip_prefix(WS_TOKEN_PREFIX));
        return from_protocol.or_else(query_token);
    }
    None
}

/// The middleware: host, origin, then token.
pub(crate) async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let Some(host) = header_str(headers, header::HOST) else {
        return deny(StatusCode::FORBIDDEN, "missing Host header");
    };
    if !guard.hosts.iter().any(|h| h == host) {
        return deny(
            StatusCode::FORBIDDEN,
            "this server only answers to its own address (Host header refused)",
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let same = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|o| o == host);
        if !same {
            return deny(StatusCode::FORBIDDEN, "cross-origin requests are refused");
        }
    }
    if header_str(headers, header::HeaderName::from_static("sec-fetch-site"))
        .is_some_and(|s| s == "cross-site" || s == "same-site")
    {
        return deny(StatusCode::FORBIDDEN, "cross-site requests are refused");
    }
    let path = req.uri().path().to_owned();
    match token_of(&req, &path) {
        Some(t) if guard.token_ok(t) => next.run(req).await,
        _ => deny(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: open the URL `cubicle serve` printed",
        ),
    }
}

/// A fresh random token: 256 bits from the OS generator, hex-encoded (safe
/// in a URL, a header and a WebSocket subprotocol).
pub(crate) fn new_token() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let a = new_token();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_token());
    }

    #[test]
    fn compare_needs_the_whole_token() {
        let g = Guard {
            token: "abcdef".into(),
            hosts: vec![],
        };
        assert!(g.token_ok("abcdef"));
        assert!(!g.token_ok("abcde"));
        assert!(!g.token_ok("abcdefg"));
        assert!(!g.token_ok(""));
    }
}
