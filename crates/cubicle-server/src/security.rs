//! The checks every request passes before any handler runs, in order:
//! `Host` must name this listener (DNS-rebinding defence), `Origin` must be
//! absent or this listener's own origin and `Sec-Fetch-Site` must not say
//! cross-site (CSRF and cross-site WebSocket defence), then the token must
//! match, compared in constant time, and the principal it names must be
//! allowed the route. No CORS headers are ever sent.
//!
//! Two principals exist: the **owner**, who holds the per-run token that
//! `cubicle serve` printed (only accepted on the loopback listener), and a
//! **paired device**, whose token names a [`Scope`]. Devices may read (the
//! page, sessions, events, files, previews) and post ops, which the ops handler checks
//! against the scope; every other route is the owner's. Two routes need no
//! token, because they are how a device gets one: the pairing page and the
//! redeem call, which is rate-limited.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::devices::{Device, DeviceStore, Scope};
use crate::remote_audit::{RemoteAudit, session_of};

/// The subprotocol a browser offers for the event stream, beside the token.
pub(crate) const WS_PROTOCOL: &str = "cubicle.v1";
/// Prefix of the subprotocol that carries the token (`cubicle.token.TOKEN`).
pub(crate) const WS_TOKEN_PREFIX: &str = "cubicle.token.";

/// Who a request acts for; handlers find it in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// The person at this computer (the printed token).
    Owner,
    /// A paired device.
    Device(Device),
}

impl Principal {
    /// The device, if a device acts.
    pub fn device(&self) -> Option<&Device> {
        match self {
            Principal::Owner => None,
            Principal::Device(d) => Some(d),
        }
    }
}

/// The tokens: the owner's and the paired devices'.
#[derive(Debug)]
pub(crate) struct Auth {
    /// The per-run owner token.
    pub owner_token: String,
    /// The paired devices.
    pub devices: Arc<DeviceStore>,
    /// Where their actions are recorded.
    pub audit: RemoteAudit,
}

impl Auth {
    fn owner_ok(&self, given: &str) -> bool {
        given.as_bytes().ct_eq(self.owner_token.as_bytes()).into()
    }
}

/// What the checks of one listener need to know.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The tokens.
    pub auth: Arc<Auth>,
    /// Accepted `Host` values (`127.0.0.1:PORT`, `localhost:PORT`, …).
    pub hosts: Vec<String>,
    /// `http` or `https`: the scheme of this listener's own origin.
    pub scheme: &'static str,
    /// Whether this is the network listener, where only devices are served.
    pub remote: bool,
}

fn deny(status: StatusCode, why: &'static str) -> Response {
    (status, axum::Json(json!({ "error": why }))).into_response()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether a route is how a device gets its token (no token needed).
fn is_pairing_route(method: &Method, path: &str) -> bool {
    (method == Method::GET && path == "/pair")
        || (method == Method::POST && path == "/api/pair/redeem")
}

/// Whether a paired device may reach a route at all (ops are then checked
/// op by op against its scope).
fn device_may(method: &Method, path: &str) -> bool {
    let session_part = path.strip_prefix("/api/sessions/");
    if method == Method::GET {
        return path == "/"
            || path == "/api/me"
            || path == "/api/sessions"
            || session_part.is_some_and(|rest| {
                let mut parts = rest.splitn(2, '/');
                let _id = parts.next();
                match parts.next() {
                    None => true,
                    Some(tail) => {
                        tail == "events"
                            || tail == "files"
                            || tail.starts_with("files/")
                            || tail.starts_with("preview/")
                    }
                }
            });
    }
    method == Method::POST
        && session_part.is_some_and(|rest| rest.split_once('/').is_some_and(|(_, t)| t == "ops"))
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

/// The middleware: host, origin, token, then what the principal may reach.
pub(crate) async fn check(
    State(guard): State<Arc<Guard>>,
    mut req: Request,
    next: Next,
) -> Response {
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
            .and_then(|o| o.strip_prefix(guard.scheme))
            .and_then(|o| o.strip_prefix("://"))
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
    if is_pairing_route(req.method(), &path) {
        return next.run(req).await;
    }
    let principal = match token_of(&req, &path) {
        Some(t) if !guard.remote && guard.auth.owner_ok(t) => Principal::Owner,
        Some(t) => match guard.auth.devices.authenticate(t) {
            Some(device) => Principal::Device(device),
            None => return unauthorized(guard.remote),
        },
        None => return unauthorized(guard.remote),
    };
    if let Some(device) = principal.device() {
        let allowed = device_may(req.method(), &path);
        let recorded = guard
            .auth
            .audit
            .record(
                session_of(&path),
                "remote_request",
                device,
                json!({ "method": req.method().as_str(), "path": path, "allowed": allowed }),
            )
            .await;
        if !allowed {
            return deny(
                StatusCode::FORBIDDEN,
                "a paired device cannot do this; use the computer running Cubicle",
            );
        }
        if let Err(e) = recorded {
            tracing::warn!("{e}");
            return deny(
                StatusCode::SERVICE_UNAVAILABLE,
                "this action could not be recorded in the audit log, so it was not done",
            );
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

fn unauthorized(remote: bool) -> Response {
    deny(
        StatusCode::UNAUTHORIZED,
        if remote {
            "missing or wrong token: pair this device again"
        } else {
            "missing or wrong token: open the URL `cubicle serve` printed"
        },
    )
}

/// Whether a scope allows an op, by the op's `type`.
pub(crate) fn scope_allows(scope: Scope, op_type: &str) -> bool {
    match scope {
        Scope::Watch => false,
        Scope::Control => matches!(op_type, "answer" | "approve" | "interrupt" | "shutdown"),
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
        let dir = std::env::temp_dir();
        let g = Auth {
            owner_token: "abcdef".into(),
            devices: Arc::new(DeviceStore::in_dir(&dir)),
            audit: RemoteAudit::default(),
        };
        assert!(g.owner_ok("abcdef"));
        assert!(!g.owner_ok("abcde"));
        assert!(!g.owner_ok("abcdefg"));
        assert!(!g.owner_ok(""));
    }

    #[test]
    fn devices_reach_reads_and_ops_only() {
        let get = Method::GET;
        let post = Method::POST;
        for ok in [
            "/",
            "/api/me",
            "/api/sessions",
            "/api/sessions/abc",
            "/api/sessions/abc/events",
            "/api/sessions/abc/files",
            "/api/sessions/abc/files/out/report.md",
            "/api/sessions/abc/preview/report.md",
        ] {
            assert!(device_may(&get, ok), "{ok}");
        }
        assert!(device_may(&post, "/api/sessions/abc/ops"));
        for (m, no) in [
            (&post, "/api/sessions"),
            (&post, "/api/pairing"),
            (&get, "/api/devices"),
            (&Method::DELETE, "/api/devices/dev-1"),
            (&get, "/api/audit"),
            (&get, "/api/policy"),
            (&get, "/api/skills"),
            (&post, "/api/skills/import"),
            (&get, "/api/skills/pdf/prefs"),
            (&post, "/api/skills/pdf/prefs"),
            (&get, "/api/plugins"),
            (&post, "/api/plugins/marketplaces"),
            (&post, "/api/plugins/install"),
            (&get, "/api/settings"),
            (&post, "/api/settings"),
            (&post, "/api/sessions/abc/resume"),
            (&get, "/api/sessions/abc/other"),
            (&post, "/api/sessions/abc/files"),
        ] {
            assert!(!device_may(m, no), "{m} {no}");
        }
    }

    #[test]
    fn watch_scope_changes_nothing() {
        for op in ["answer", "approve", "interrupt", "shutdown", "user_message"] {
            assert!(!scope_allows(Scope::Watch, op));
        }
        for op in ["answer", "approve", "interrupt", "shutdown"] {
            assert!(scope_allows(Scope::Control, op));
        }
        assert!(!scope_allows(Scope::Control, "user_message"));
        assert!(!scope_allows(Scope::Control, "continue"));
    }
}
