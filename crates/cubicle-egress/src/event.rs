//! The record of each proxied request, for the audit log. Events carry the
//! host, decision and byte counts, never a header value or secret: the audit
//! log is readable by more people than the keyring is.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// One request through the proxy: a CONNECT tunnel, a plain-HTTP request, or
/// one request inside an intercepted TLS tunnel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EgressEvent {
    /// The session this proxy serves.
    pub session: String,
    /// The host the client asked for (a name, or an IP literal).
    pub host: String,
    /// The port the client asked for.
    pub port: u16,
    /// `CONNECT`, `GET`, …
    pub method: String,
    /// Whether the request went upstream.
    pub allowed: bool,
    /// Why, in words a person can read (the same text a denied client gets).
    pub reason: String,
    /// The rule that decided, as `"pattern" (origin)`, when one did.
    pub rule: Option<String>,
    /// The HTTP status the client got, when the proxy knows it.
    pub status: Option<u16>,
    /// The address connected to, when a connection was made.
    pub address: Option<SocketAddr>,
    /// Whether the proxy terminated TLS to add a credential.
    pub intercepted: bool,
    /// Bytes sent upstream (tunnel payload, or request body).
    pub bytes_up: u64,
    /// Bytes received from upstream (tunnel payload, or response body).
    pub bytes_down: u64,
    /// From the request's arrival until it finished.
    pub duration: Duration,
}

/// Where events go.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventSink {
    tx: Option<mpsc::UnboundedSender<EgressEvent>>,
}

impl EventSink {
    pub(crate) fn new(tx: Option<mpsc::UnboundedSender<EgressEvent>>) -> Self {
        Self { tx }
    }

    pub(crate) fn emit(&self, event: EgressEvent) {
        tracing::info!(
            session = %event.session,
            host = %event.host,
            port = event.port,
            method = %event.method,
            allowed = event.allowed,
            status = event.status,
            bytes_up = event.bytes_up,
            bytes_down = event.bytes_down,
            reason = %event.reason,
            "egress"
        );
        if let Some(tx) = &self.tx {
            // A closed receiver means nobody is auditing; the proxy keeps working.
            let _ = tx.send(event);
        }
    }
}

/// An event being filled in while a request runs; sent when the last handle
/// to it is dropped, so that a streaming body finishing (or being abandoned)
/// is what completes the record, and no path can forget to send it.
#[derive(Debug)]
pub(crate) struct PendingEvent {
    sink: EventSink,
    event: Mutex<EgressEvent>,
    started: Instant,
    up: AtomicU64,
    down: AtomicU64,
}

impl PendingEvent {
    pub(crate) fn new(sink: EventSink, event: EgressEvent, started: Instant) -> Self {
        Self {
            sink,
            event: Mutex::new(event),
            started,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
        }
    }

    /// Changes the event before it is sent.
    pub(crate) fn update(&self, f: impl FnOnce(&mut EgressEvent)) {
        if let Ok(mut e) = self.event.lock() {
            f(&mut e);
        }
    }

    pub(crate) fn add_up(&self, n: u64) {
        self.up.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_down(&self, n: u64) {
        self.down.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for PendingEvent {
    fn drop(&mut self) {
        let mut event = match self.event.lock() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        event.bytes_up += *self.up.get_mut();
        event.bytes_down += *self.down.get_mut();
        event.duration = self.started.elapsed();
        self.sink.emit(event);
    }
}
