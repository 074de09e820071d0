//! Forwarding absolute-form requests (`GET http://host/path`) and the helpers
//! shared with interception: hop-by-hop and `Proxy-*` header stripping, the
//! origin-form rewrite, and bodies that count their bytes into the request's
//! event. Bodies stream both ways; nothing is buffered whole.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;

use crate::domain::Host;
use crate::event::PendingEvent;
use crate::proxy::{BoxError, Inner, ProxyBody, base_event, refuse};
use crate::refusal::Refusal;
use crate::tunnel::{Meter, Metered, idle_expired};

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Removes hop-by-hop headers, those the `Connection` header names, and every
/// `Proxy-*` header (credentials for this proxy must not travel on).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

/// The origin-form of a URI (`/path?query`).
pub(crate) fn origin_form(uri: &Uri) -> Uri {
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let pq = if pq.is_empty() { "/" } else { pq };
    pq.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

/// Which way a counted body flows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    Up,
    Down,
}

/// A body that adds its bytes to an event; the event is sent once every
/// body holding it is done or dropped.
pub(crate) struct Counted {
    inner: ProxyBody,
    event: Arc<PendingEvent>,
    direction: Direction,
}

impl Counted {
    pub(crate) fn new(inner: ProxyBody, event: Arc<PendingEvent>, direction: Direction) -> Self {
        Self {
            inner,
            event,
            direction,
        }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            match this.direction {
                Direction::Up => this.event.add_up(n),
                Direction::Down => this.event.add_down(n),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body, limited to the policy's size, boxed.
pub(crate) fn limited_body(body: Incoming, limit: Option<u64>) -> ProxyBody {
    match limit.and_then(|l| usize::try_from(l).ok()) {
        Some(l) => Limited::new(body, l).boxed_unsync(),
        None => body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
    }
}

/// Whether a declared body length exceeds the limit.
pub(crate) fn body_too_large(headers: &HeaderMap, limit: Option<u64>) -> Option<Refusal> {
    let limit = limit?;
    let len: u64 = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (len > limit).then_some(Refusal::BodyTooLarge { limit })
}

/// Forwards one absolute-form request over a fresh upstream connection.
pub(crate) async fn forward(
    inner: &Arc<Inner>,
    req: Request<Incoming>,
    started: Instant,
) -> Response<ProxyBody> {
    let method = req.method().clone();
    let mut event = base_event(inner, "", 0, method.as_str());
    let uri = req.uri().clone();
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            let refusal = Refusal::BadRequest(
                "https:// requests must be tunnelled: send CONNECT host:443 (set HTTPS_PROXY to this proxy)".into(),
            );
            return refuse(inner, event, started, &refusal);
        }
        Some(other) => {
            let refusal = Refusal::BadRequest(format!(
                "the {other}: scheme is not supported; only http:// and CONNECT are"
            ));
            return refuse(inner, event, started, &refusal);
        }
        None => {
            let refusal = Refusal::BadRequest(
                "this is an HTTP proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port; HTTP_PROXY must point here, not be requested directly".into(),
            );
            return refuse(inner, event, started, &refusal);
        }
    }
    let Some(authority) = uri.authority().cloned() else {
        return refuse(
            inner,
            event,
            started,
            &Refusal::BadRequest("the request URI has no host".into()),
        );
    };
    let port = authority.port_u16().unwrap_or(80);
    event.host = authority.host().to_owned();
    event.port = port;
    let host = match Host::parse(authority.host()) {
        Ok(h) => h,
        Err(e) => return refuse(inner, event, started, &Refusal::BadRequest(e.to_string())),
    };
    event.host = host.to_string();
    let rule = match inner.decide(&host) {
        Ok(r) => r,
        Err(refusal) => return refuse(inner, event, started, &refusal),
    };
    if let Some(refusal) = body_too_large(req.headers(), inner.limits.max_request_body_bytes) {
        return refuse(inner, event, started, &refusal);
    }
    let (tcp, addr) = match inner.open(&host, port).await {
        Ok(c) => c,
        Err(refusal) => return refuse(inner, event, started, &refusal),
    };
    let meter = Meter::new();
    let io = TokioIo::new(Metered::new(tcp, meter.clone()));
    let (mut sender, conn) = match hyper::client::conn::http1::handshake::<_, Counted>(io).await {
        Ok(pair) => pair,
        Err(e) => {
            let refusal = Refusal::ConnectFailed {
                host,
                port,
                why: e.to_string(),
            };
            return refuse(inner, event, started, &refusal);
        }
    };
    let cancel = inner.cancel.clone();
    let idle = inner.limits.idle_timeout;
    inner.tracker.spawn(async move {
        tokio::select! {
            r = conn => if let Err(e) = r { tracing::debug!(error = %e, "upstream connection ended with an error") },
            () = idle_expired(&meter, idle) => {}
            () = cancel.cancelled() => {}
        }
    });

    event.allowed = true;
    event.address = Some(addr);
    event.reason = match &rule {
        Some(r) => format!("allowed by rule {r}"),
        None => "allowed".to_owned(),
    };
    event.rule = rule;
    let pending = Arc::new(PendingEvent::new(inner.events.clone(), event, started));

    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.uri = origin_form(&uri);
    // The URI's authority, not a Host header the client may have set to
    // something else, says which site this is.
    let host_value = match authority.port_u16() {
        Some(80) | None => host.to_string(),
        Some(p) => format!("{host}:{p}"),
    };
    if let Ok(v) = HeaderValue::from_str(&host_value) {
        parts.headers.insert(header::HOST, v);
    }
    let body = Counted::new(
        limited_body(body, inner.limits.max_request_body_bytes),
        pending.clone(),
        Direction::Up,
    );
    let response = sender.send_request(Request::from_parts(parts, body)).await;
    // With the sender gone, the connection closes once this response is read.
    drop(sender);
    match response {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            pending.update(|e| e.status = Some(parts.status.as_u16()));
            let body = Counted::new(
                body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
                pending,
                Direction::Down,
            );
            Response::from_parts(parts, body.boxed_unsync())
        }
        Err(e) => {
            let refusal = Refusal::ConnectFailed {
                host,
                port,
                why: format!("the upstream failed: {e}"),
            };
            pending.update(|ev| {
                ev.allowed = true;
                ev.status = Some(refusal.status().as_u16());
                ev.reason = refusal.to_string();
            });
            refusal.response()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn hop_by_hop_and_proxy_headers_are_stripped() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("proxy-anything", "x"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("accept", "*/*"),
            ("x-end-to-end", "kept"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        left.sort();
        assert_eq!(left, vec!["accept", "x-end-to-end"]);
    }

    #[test]
    fn origin_form_keeps_path_and_query() {
        let uri: Uri = "http://a.test:8080/x/y?q=1".parse().unwrap();
        assert_eq!(origin_form(&uri), "/x/y?q=1");
        let uri: Uri = "http://a.test".parse().unwrap();
        assert_eq!(origin_form(&uri), "/");
    }
}
