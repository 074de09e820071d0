//! Errors a caller of this crate can see: configuration that does not compile
//! into rules, a CA that cannot be loaded, a listener that cannot bind. What
//! goes wrong inside one proxied request is not an error here but a response
//! to the client and an [`crate::EgressEvent`].

use std::io;
use std::path::PathBuf;

/// A configuration that cannot be turned into a running proxy.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A domain pattern that is not `*`, `*.name`, a name or an IP literal.
    #[error("domain pattern {pattern:?} is not valid: {why}")]
    BadDomainPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        why: String,
    },
    /// An address rule that is neither an address nor a CIDR range.
    #[error("address rule {pattern:?} is not an IP address or a CIDR range such as 10.0.0.0/8")]
    BadAddressPattern {
        /// The pattern as written.
        pattern: String,
    },
    /// A credential header name that HTTP does not allow.
    #[error("credential header {header:?} for {domain} is not a valid HTTP header name")]
    BadCredentialHeader {
        /// The header as written.
        header: String,
        /// The rule's domain.
        domain: String,
    },
    /// Credential rules need a CA to intercept TLS with.
    #[error("credential rules need a certificate authority (EgressConfig::ca) to intercept TLS")]
    CredentialsNeedCa,
    /// An extra upstream root that is not a PEM certificate.
    #[error("an extra upstream root certificate is not valid PEM: {0}")]
    BadRootCertificate(String),
    /// The TLS stack refused the configuration.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// A limit that cannot work (zero connections, say).
    #[error("limit {0} must be greater than zero")]
    ZeroLimit(&'static str),
}

/// A per-install CA that cannot be loaded, created or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing a CA file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The key file is readable by others; refuse rather than use a leaked key.
    #[error("{path} is readable by other users (mode {mode:o}); it must be 0600")]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// Certificate generation or parsing failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// `ca.pem` and `ca-key.pem` exist but do not belong together.
    #[error("{0} does not match its key; move both files away to make a new CA")]
    Mismatch(PathBuf),
}

/// Starting a listener failed.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Only loopback addresses may be bound: the proxy must not serve the LAN.
    #[error("the egress proxy only listens on loopback, not {0}")]
    NotLoopback(std::net::SocketAddr),
    /// Binding failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The failure.
        source: io::Error,
    },
}
