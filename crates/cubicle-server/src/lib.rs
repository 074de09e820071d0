//! The local server behind `cubicle serve`: a JSON API and a WebSocket event
//! stream over sessions, guarded by a per-run token, `Host` and `Origin`
//! checks, plus the web UI, embedded in the binary.
//!
//! The server does not know how to start a session (policy, audit, egress,
//! backend): a front end gives it a [`SessionStarter`]. It keeps the live
//! sessions, fans each one's events out to every connected browser (with a
//! replay for late joiners), and reads history from the transcripts in the
//! [`Store`](cubicle_agent::Store). The API is documented in `API.md`.
//!
//! Remote control: a phone or another computer pairs with a one-time code
//! ([`pairing`]) and gets a scoped, revocable token ([`devices`]); when the
//! front end says policy allows it, a second listener serves such devices on
//! the network over TLS with a self-signed certificate whose fingerprint the
//! pairing QR code carries. Every action of a paired device is written to
//! the audit log before it runs.
//!
//! The settings screen (provider, model, base URL, API key) reads and writes
//! through a [`SettingsStore`] the front end gives, as sessions start through
//! a [`SessionStarter`]: the server never learns where settings live, and an
//! API key only ever goes from the page into the store.

mod api;
pub mod devices;
mod files;
mod hub;
mod insights;
pub mod pairing;
mod preview;
mod remote_audit;
mod security;
mod server;
mod settings;
mod skills;
mod starter;
mod tls;
mod ui;

pub use devices::{Device, DeviceError, DeviceStore, Scope};
pub use insights::{PolicyReport, PolicySetting};
pub use server::{RemoteConfig, RemoteInfo, Server, ServerConfig, ServerError};
pub use settings::{ModelSettings, SettingsError, SettingsStore, SettingsUpdate};
pub use skills::{MarketplaceGate, PluginAccess};
pub use starter::{
    GrantRequest, OnEnd, PrepareMessage, SessionEnd, SessionStarter, StartRequest, StartedSession,
};
pub use tls::{TlsError, fingerprint};
