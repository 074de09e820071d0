//! Cubicle's host-side egress proxy: the one way out of a cubicle.
//!
//! A cubicle has no network route; programs inside use `HTTP_PROXY`, the guest
//! tunnels each connection to the host, and the host hands it to an
//! [`EgressProxy`] (through [`EgressProxy::open_stream`], an in-memory
//! [`MemStream`] whose owned chunks a CONNECT tunnel moves to the upstream
//! socket without copying; the browser uses [`EgressProxy::listen`]). The proxy serves `CONNECT` tunnels and
//! absolute-form HTTP requests, and for each one:
//!
//! 1. parses the host and applies the domain rules, deny first — with no
//!    allow rule nothing is reachable;
//! 2. resolves the name on the host with an injectable [`Resolver`] and checks
//!    every address: loopback, private, link-local, CGNAT, multicast,
//!    metadata and other non-public addresses are refused unless an
//!    [`AddressRule`] names them;
//! 3. connects to exactly one of the checked addresses;
//! 4. for a domain with a [`CredentialRule`], terminates TLS with a leaf from
//!    the per-install [`CertificateAuthority`] and adds the header from a host
//!    [`SecretStore`]; every other domain is a byte tunnel it never decrypts;
//! 5. sends an [`EgressEvent`] (never a secret) for the audit log.
//!
//! Refusals are plain-text bodies a model can relay: 403 naming the rule or
//! the missing allowance, 400 for what is not a proxy request, 431 for
//! oversized heads, 502/504 for upstream failures, 503 over the connection
//! limit.
//!
//! Tests that put an upstream on 127.0.0.1 must name it in
//! [`EgressConfig::allow_addresses`] (and map a test name to it with a
//! [`StaticResolver`]): loopback is refused like any other local address.
//! TLS uses rustls with the `ring` provider, set explicitly on every config so
//! that another crate enabling `aws-lc-rs` in the same build changes nothing.

mod address;
mod ca;
mod config;
mod connect;
mod domain;
mod error;
mod event;
mod forward;
mod head;
mod intercept;
mod memstream;
mod peer;
mod proxy;
mod refusal;
mod resolver;
mod secrets;
mod tunnel;

pub use address::{AddressClass, classify};
pub use ca::{CA_CERT_FILE, CA_KEY_FILE, CertificateAuthority};
pub use config::{AddressRule, CredentialRule, DomainRule, EgressConfig, Limits, UpstreamTls};
pub use domain::{Host, HostError};
pub use error::{CaError, ConfigError, ListenError};
pub use event::EgressEvent;
pub use memstream::{MemReader, MemStream, MemWriter};
pub use proxy::{EgressProxy, EgressProxyBuilder};
pub use resolver::{Resolver, StaticResolver, SystemResolver};
#[cfg(feature = "keyring")]
pub use secrets::KeyringSecrets;
pub use secrets::{
    EnvSecrets, FileSecrets, HostSecrets, MapSecrets, Secret, SecretError, SecretRef, SecretStore,
};
