//! Plain configuration types for one proxy instance. The CLI maps the merged
//! policy onto these; nothing here reads files or knows about policy layers,
//! which is why every rule carries an `origin` string to show in denials.

use std::sync::Arc;
use std::time::Duration;

use crate::ca::CertificateAuthority;
use crate::secrets::SecretRef;

/// Everything one egress proxy enforces. The default allows nothing.
#[derive(Debug, Clone, Default)]
pub struct EgressConfig {
    /// Domains that may be reached; with none, nothing is reachable.
    pub allow: Vec<DomainRule>,
    /// Domains that may never be reached; checked before `allow` and always wins.
    pub deny: Vec<DomainRule>,
    /// Non-public addresses or ranges (loopback, private, link-local, …) that may
    /// be reached; public addresses need no entry here.
    pub allow_addresses: Vec<AddressRule>,
    /// Headers to add, with a secret from the host, to requests for named domains.
    pub credentials: Vec<CredentialRule>,
    /// Resource limits.
    pub limits: Limits,
    /// The per-install CA that signs interception certificates; required when
    /// `credentials` is not empty.
    pub ca: Option<Arc<CertificateAuthority>>,
    /// Which roots verify upstream servers when the proxy itself speaks TLS.
    pub upstream_tls: UpstreamTls,
}

/// A domain pattern and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    /// `api.github.com` (exactly that name), `*.wikipedia.org` (any subdomain,
    /// not the apex), `*` (any name, but never an IP literal), or an IP literal
    /// such as `93.184.216.34` or `[2001:db8::1]`.
    pub pattern: String,
    /// Where the rule was set, shown in denials, e.g. `managed: /etc/cubicle/managed.toml:4`.
    pub origin: String,
}

impl DomainRule {
    /// A rule from a pattern and its origin.
    pub fn new(pattern: impl Into<String>, origin: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
            origin: origin.into(),
        }
    }
}

/// A non-public address or range that may be reached, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRule {
    /// An address (`127.0.0.1`, `::1`) or a CIDR range (`10.1.0.0/16`). A cloud
    /// metadata address is only reachable through a rule naming exactly it.
    pub pattern: String,
    /// Where the rule was set.
    pub origin: String,
}

impl AddressRule {
    /// A rule from an address or range and its origin.
    pub fn new(pattern: impl Into<String>, origin: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
            origin: origin.into(),
        }
    }
}

/// A header whose value comes from a host secret, added to every request for a
/// domain. The proxy intercepts TLS for that domain only. The rule does not
/// itself allow the domain (an allow rule must), and plain `http://` requests
/// to it are forwarded without the header, so a secret never crosses the
/// network in clear text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRule {
    /// The domain, in the same pattern syntax as [`DomainRule::pattern`].
    pub domain: String,
    /// Header name, e.g. `Authorization`.
    pub header: String,
    /// Header value with `{secret}` where the secret goes, e.g. `Bearer {secret}`;
    /// `None` means the secret alone.
    pub value_template: Option<String>,
    /// Where the secret lives on the host.
    pub secret: SecretRef,
    /// Where the rule was set.
    pub origin: String,
}

/// Resource limits for one proxy instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Client connections served at once; more get 503 at once rather than a queue.
    pub max_connections: usize,
    /// Largest request head (request line and headers) accepted; more gets 431.
    pub max_request_header_bytes: usize,
    /// Largest request body forwarded for plain-HTTP and intercepted requests;
    /// `None` for no limit. CONNECT tunnels are opaque and not limited.
    pub max_request_body_bytes: Option<u64>,
    /// Time allowed for resolving and connecting to the upstream.
    pub connect_timeout: Duration,
    /// Time allowed for a client to send a complete request head.
    pub header_timeout: Duration,
    /// A connection or tunnel with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_request_header_bytes: 64 * 1024,
            max_request_body_bytes: None,
            connect_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Trust anchors for upstream TLS (used only for intercepted domains).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Trust Mozilla's root program (`webpki-roots`).
    pub web_roots: bool,
    /// More trusted roots in PEM, e.g. a corporate CA, or a test CA in tests.
    pub extra_roots_pem: Vec<String>,
}

impl Default for UpstreamTls {
    fn default() -> Self {
        Self {
            web_roots: true,
            extra_roots_pem: Vec::new(),
        }
    }
}
