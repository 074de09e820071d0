//! Every way a request can fail, with the status and the plain-text body the
//! client gets. Bodies are written for a model to read and relay: they name
//! the rule that decided or the allowance that is missing, and the next step.
//! None of them ever contains a header value or a secret.

use std::fmt;
use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::address::AddressClass;
use crate::domain::Host;
use crate::proxy::ProxyBody;

/// Why the proxy did not (fully) serve a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a request this proxy can serve.
    BadRequest(String),
    /// The request head is larger than the limit.
    HeadersTooLarge { limit: usize },
    /// The declared request body is larger than the limit.
    BodyTooLarge { limit: u64 },
    /// No allow rule names the host.
    NotListed { host: Host },
    /// A deny rule names the host.
    DeniedByRule {
        host: Host,
        pattern: String,
        origin: String,
    },
    /// The host is, or resolves to, an address that is blocked.
    BlockedAddress {
        host: Host,
        ip: IpAddr,
        class: AddressClass,
    },
    /// Too many connections are open.
    Busy { limit: usize },
    /// The name does not resolve.
    ResolveFailed { host: Host, why: String },
    /// No address accepted the connection.
    ConnectFailed { host: Host, port: u16, why: String },
    /// Resolving or connecting took too long.
    Timeout { host: Host, port: u16 },
    /// TLS to the upstream of an intercepted domain failed.
    UpstreamTls { host: Host, why: String },
    /// The secret for a credential rule could not be read.
    Credential { host: Host, why: String },
    /// Inside an intercepted tunnel, a request named a different host.
    Misdirected { host: Host, asked: String },
    /// The proxy is shutting down.
    ShuttingDown,
}

impl Refusal {
    /// The HTTP status for this refusal.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::NotListed { .. }
            | Refusal::DeniedByRule { .. }
            | Refusal::BlockedAddress { .. } => StatusCode::FORBIDDEN,
            Refusal::Busy { .. } | Refusal::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::ResolveFailed { .. }
            | Refusal::ConnectFailed { .. }
            | Refusal::UpstreamTls { .. }
            | Refusal::Credential { .. } => StatusCode::BAD_GATEWAY,
            Refusal::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
        }
    }

    /// The rule that decided, as `"pattern" (origin)`, if a rule did.
    pub(crate) fn rule(&self) -> Option<String> {
        match self {
            Refusal::DeniedByRule {
                pattern, origin, ..
            } => Some(rule_label(pattern, origin)),
            _ => None,
        }
    }

    /// The response a client gets.
    pub(crate) fn response(&self) -> Response<ProxyBody> {
        let mut resp = Response::new(
            Full::new(Bytes::from(format!("{self}\n")))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        // A refused CONNECT must not be followed by tunnel bytes parsed as HTTP.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if matches!(self, Refusal::Busy { .. }) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }

    /// The same response as raw HTTP/1.1 bytes, for failures before hyper runs.
    pub(crate) fn raw_response(&self) -> Vec<u8> {
        let body = format!("{self}\n");
        let status = self.status();
        let retry = if matches!(self, Refusal::Busy { .. }) {
            "retry-after: 1\r\n"
        } else {
            ""
        };
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n{retry}\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len(),
        )
        .into_bytes()
    }
}

/// How events and denials name a rule.
pub(crate) fn rule_label(pattern: &str, origin: &str) -> String {
    format!("{pattern:?} ({origin})")
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cubicle egress: ")?;
        match self {
            Refusal::BadRequest(why) => f.write_str(why),
            Refusal::HeadersTooLarge { limit } => write!(
                f,
                "the request headers are larger than the {limit}-byte limit; send fewer or smaller headers"
            ),
            Refusal::BodyTooLarge { limit } => write!(
                f,
                "the request body is larger than the {limit}-byte limit set by policy"
            ),
            Refusal::NotListed {
                host: host @ Host::Name(_),
            } => write!(
                f,
                "{host} is not on the allowed list — ask the person to allow it (cubicle policy allow-domain {host})"
            ),
            Refusal::NotListed {
                host: host @ Host::Ip(_),
            } => write!(
                f,
                "{host} is an IP address that no rule names — use the site's name, or ask the person to allow it (cubicle policy allow-domain {host})"
            ),
            Refusal::DeniedByRule {
                host,
                pattern,
                origin,
            } => write!(
                f,
                "{host} is denied by rule {} — this cannot be allowed from inside the session",
                rule_label(pattern, origin)
            ),
            Refusal::BlockedAddress {
                host: Host::Ip(_),
                ip,
                class,
            } => write!(
                f,
                "{ip} is {class}, which is blocked — the cubicle may not reach this computer or its local network unless policy names the address"
            ),
            Refusal::BlockedAddress { host, ip, class } => write!(
                f,
                "{host} resolves to {ip}, {class}, which is blocked — the cubicle may not reach this computer or its local network unless policy names the address"
            ),
            Refusal::Busy { limit } => write!(
                f,
                "too many connections are open (the limit is {limit}); close some or retry in a moment"
            ),
            Refusal::ResolveFailed { host, why } => write!(f, "cannot resolve {host}: {why}"),
            Refusal::ConnectFailed { host, port, why } => {
                write!(f, "cannot connect to {host} port {port}: {why}")
            }
            Refusal::Timeout { host, port } => {
                write!(f, "connecting to {host} port {port} timed out")
            }
            Refusal::UpstreamTls { host, why } => {
                write!(f, "secure connection to {host} failed: {why}")
            }
            Refusal::Credential { host, why } => write!(
                f,
                "the credential for {host} is not available ({why}) — ask the person to set it up on their computer"
            ),
            Refusal::Misdirected { host, asked } => write!(
                f,
                "this connection is for {host}; a request for {asked:?} must use its own CONNECT"
            ),
            Refusal::ShuttingDown => f.write_str("the session is ending"),
        }
    }
}
