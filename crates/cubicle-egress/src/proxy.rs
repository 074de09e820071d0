//! The proxy itself: one [`EgressProxy`] per session, serving client
//! connections that arrive over TCP ([`EgressProxy::listen`]) or as any byte
//! stream ([`EgressProxy::serve_stream`], [`EgressProxy::open_stream`] for the
//! guest's tunnels, an in-memory [`MemStream`]). Each connection is one tokio
//! task: its first request head is read and checked here, then hyper serves
//! it; a CONNECT becomes a byte tunnel (or, for a credential domain, an
//! intercepted TLS session) and an absolute-form request is forwarded. A
//! byte tunnel on a [`MemStream`] takes the stream back from hyper after the
//! upgrade and moves its chunks without copying ([`pipe_mem`]); any other
//! connection goes through hyper's upgraded stream ([`pipe`]). Connections
//! past the limit get 503 at once. Cancelling the proxy's token closes
//! everything.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::AddressRules;
use crate::config::{CredentialRule, EgressConfig, Limits};
use crate::domain::{DomainPattern, DomainRules, Host};
use crate::error::{ConfigError, ListenError};
use crate::event::{EgressEvent, EventSink, PendingEvent};
use crate::head::{HeadError, Prefixed, read_head};
use crate::intercept::{Credential, Interceptor};
use crate::memstream::MemStream;
use crate::refusal::Refusal;
use crate::resolver::{Resolver, SystemResolver};
use crate::secrets::{EnvSecrets, SecretStore};
use crate::tunnel::{Meter, Metered, idle_expired, pipe, pipe_mem};

/// Boxed error of proxied bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the proxy gives.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// hyper refuses a read buffer smaller than this.
const HYPER_MIN_BUF: usize = 8192;
/// Bytes in flight each way on an in-memory stream from [`EgressProxy::open_stream`].
const STREAM_IN_FLIGHT: usize = 1024 * 1024;
/// How long in-flight requests get to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a connection over the limit gets to send its head before we give up on it.
const BUSY_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// A client connection as hyper serves it: the stream, metered, behind the
/// bytes of its first head already read.
type Served<S> = TokioIo<Prefixed<Metered<S>>>;

/// State shared by every connection of one proxy.
pub(crate) struct Inner {
    pub(crate) session: String,
    pub(crate) domains: DomainRules,
    pub(crate) addresses: AddressRules,
    pub(crate) credentials: Vec<(DomainPattern, CredentialRule, http::HeaderName)>,
    pub(crate) limits: Limits,
    pub(crate) interceptor: Option<Interceptor>,
    pub(crate) resolver: Arc<dyn Resolver>,
    pub(crate) secrets: Arc<dyn SecretStore>,
    pub(crate) events: EventSink,
    pub(crate) permits: Arc<Semaphore>,
    busy: AtomicUsize,
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

/// A host-side HTTP proxy enforcing one session's egress rules.
#[derive(Clone)]
pub struct EgressProxy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressProxy")
            .field("session", &self.inner.session)
            .finish_non_exhaustive()
    }
}

/// Builds an [`EgressProxy`].
pub struct EgressProxyBuilder {
    session: String,
    config: EgressConfig,
    resolver: Arc<dyn Resolver>,
    secrets: Arc<dyn SecretStore>,
    events: Option<mpsc::UnboundedSender<EgressEvent>>,
    cancel: CancellationToken,
}

impl EgressProxyBuilder {
    /// Resolves names with `resolver` instead of the system's.
    pub fn resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Reads credential secrets from `secrets` (default: the host environment only).
    pub fn secrets(mut self, secrets: Arc<dyn SecretStore>) -> Self {
        self.secrets = secrets;
        self
    }

    /// Sends one [`EgressEvent`] per request to `tx`.
    pub fn events(mut self, tx: mpsc::UnboundedSender<EgressEvent>) -> Self {
        self.events = Some(tx);
        self
    }

    /// Shuts the proxy down when `token` is cancelled (default: a fresh token).
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Compiles the rules and returns the proxy.
    pub fn build(self) -> Result<EgressProxy, ConfigError> {
        let config = self.config;
        if config.limits.max_connections == 0 {
            return Err(ConfigError::ZeroLimit("max_connections"));
        }
        if config.limits.max_request_header_bytes == 0 {
            return Err(ConfigError::ZeroLimit("max_request_header_bytes"));
        }
        let credentials = config
            .credentials
            .iter()
            .map(|c| {
                let name = http::HeaderName::from_bytes(c.header.as_bytes()).map_err(|_| {
                    ConfigError::BadCredentialHeader {
                        header: c.header.clone(),
                        domain: c.domain.clone(),
                    }
                })?;
                Ok((DomainPattern::parse(&c.domain)?, c.clone(), name))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let interceptor = match (&config.ca, credentials.is_empty()) {
            (Some(ca), _) => Some(Interceptor::new(ca.clone(), &config.upstream_tls)?),
            (None, true) => None,
            (None, false) => return Err(ConfigError::CredentialsNeedCa),
        };
        let inner = Inner {
            session: self.session,
            domains: DomainRules::new(&config.allow, &config.deny)?,
            addresses: AddressRules::new(&config.allow_addresses)?,
            credentials,
            permits: Arc::new(Semaphore::new(config.limits.max_connections)),
            limits: config.limits,
            interceptor,
            resolver: self.resolver,
            secrets: self.secrets,
            events: EventSink::new(self.events),
            busy: AtomicUsize::new(0),
            cancel: self.cancel,
            tracker: TaskTracker::new(),
        };
        Ok(EgressProxy {
            inner: Arc::new(inner),
        })
    }
}

impl EgressProxy {
    /// A builder for a proxy serving `session` under `config`.
    pub fn builder(session: impl Into<String>, config: EgressConfig) -> EgressProxyBuilder {
        EgressProxyBuilder {
            session: session.into(),
            config,
            resolver: Arc::new(SystemResolver),
            secrets: Arc::new(EnvSecrets),
            events: None,
            cancel: CancellationToken::new(),
        }
    }

    /// The session label on this proxy's events.
    pub fn session(&self) -> &str {
        &self.inner.session
    }

    /// The interception CA certificate (PEM) for the cubicle's trust store, if any.
    pub fn ca_cert_pem(&self) -> Option<&str> {
        self.inner.interceptor.as_ref().map(|i| i.ca_cert_pem())
    }

    /// The token that shuts this proxy down.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Client connections being served now.
    pub fn active_connections(&self) -> usize {
        self.inner.limits.max_connections - self.inner.permits.available_permits()
    }

    /// Serves one client connection given as any byte stream, on its own task.
    pub fn serve_stream<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let inner = self.inner.clone();
        if inner.cancel.is_cancelled() {
            return;
        }
        match inner.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let tracker = inner.tracker.clone();
                tracker.spawn(serve_connection(inner, stream, permit));
            }
            Err(_) => {
                // Over the limit: answer 503 rather than queue, but bound how
                // many such answers are in flight so a flood costs nothing.
                if inner.busy.fetch_add(1, Ordering::AcqRel) >= inner.limits.max_connections {
                    inner.busy.fetch_sub(1, Ordering::AcqRel);
                    return;
                }
                let tracker = inner.tracker.clone();
                tracker.spawn(async move {
                    refuse_busy(&inner, stream).await;
                    inner.busy.fetch_sub(1, Ordering::AcqRel);
                });
            }
        }
    }

    /// A new in-memory connection to this proxy: the returned end is the
    /// client's, the other end is being served. This is what the sandbox's
    /// egress connector hands to each guest tunnel. Bytes sent with
    /// [`MemStream::send`] through a CONNECT tunnel reach the upstream socket
    /// without being copied in the proxy.
    pub fn open_stream(&self) -> MemStream {
        let (client, server) = MemStream::pair(STREAM_IN_FLIGHT);
        self.serve_stream(server);
        client
    }

    /// Accepts TCP connections on a loopback address until shutdown; returns
    /// the bound address (pass port 0 for any free port). A connection from
    /// a socket another user owns is closed unserved: the listener carries
    /// this session's policy and credentials, which are not theirs to use.
    pub async fn listen(&self, addr: SocketAddr) -> Result<SocketAddr, ListenError> {
        if !addr.ip().is_loopback() {
            return Err(ListenError::NotLoopback(addr));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ListenError::Bind { addr, source })?;
        let proxy = self.clone();
        let cancel = self.inner.cancel.clone();
        let own_uid = crate::peer::own_uid();
        self.inner.tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let uid = crate::peer::peer_uid(peer, local);
                            if uid.is_none() || uid != own_uid {
                                tracing::warn!(
                                    %peer,
                                    ?uid,
                                    "egress proxy: a connection from another user (or an unknown one) was refused"
                                );
                                continue;
                            }
                            let _ = stream.set_nodelay(true);
                            proxy.serve_stream(stream);
                        }
                        Err(e) => {
                            // Out of file descriptors, say: back off instead of spinning.
                            tracing::warn!(error = %e, "egress proxy accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                }
            }
        });
        Ok(local)
    }

    /// Stops accepting, closes every connection, and waits (briefly) for their tasks.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, self.inner.tracker.wait()).await;
    }
}

/// A base event for a request to `host:port`.
pub(crate) fn base_event(inner: &Inner, host: &str, port: u16, method: &str) -> EgressEvent {
    EgressEvent {
        session: inner.session.clone(),
        host: host.to_owned(),
        port,
        method: method.to_owned(),
        allowed: false,
        reason: String::new(),
        rule: None,
        status: None,
        address: None,
        intercepted: false,
        bytes_up: 0,
        bytes_down: 0,
        duration: Duration::ZERO,
    }
}

/// Records a refusal and returns the response for it.
pub(crate) fn refuse(
    inner: &Inner,
    mut event: EgressEvent,
    started: Instant,
    refusal: &Refusal,
) -> Response<ProxyBody> {
    event.allowed = false;
    event.reason = refusal.to_string();
    event.rule = refusal.rule();
    event.status = Some(refusal.status().as_u16());
    event.duration = started.elapsed();
    inner.events.emit(event);
    refusal.response()
}

/// Host and port of a request target, as far as they can be told, for events.
fn target_of(method: &str, target: &str) -> (String, u16) {
    let default_port = if method == "CONNECT" { 443 } else { 80 };
    match target.parse::<http::Uri>() {
        Ok(uri) => match uri.authority() {
            Some(a) => (a.host().to_owned(), a.port_u16().unwrap_or(default_port)),
            None => (String::new(), 0),
        },
        Err(_) => (String::new(), 0),
    }
}

async fn write_refusal<S: AsyncWrite + Unpin>(stream: &mut S, refusal: &Refusal) {
    let _ = stream.write_all(&refusal.raw_response()).await;
    let _ = stream.shutdown().await;
}

async fn refuse_busy<S>(inner: &Inner, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let limit = inner.limits.max_connections;
    let refusal = Refusal::Busy { limit };
    let head = tokio::time::timeout(
        BUSY_HEAD_TIMEOUT.min(inner.limits.header_timeout),
        read_head(&mut stream, inner.limits.max_request_header_bytes),
    )
    .await;
    let (host, port, method) = match &head {
        Ok(Ok(h)) => {
            let (host, port) = target_of(&h.method, &h.target);
            (host, port, h.method.clone())
        }
        _ => (String::new(), 0, String::new()),
    };
    refuse(
        inner,
        base_event(inner, &host, port, &method),
        started,
        &refusal,
    );
    write_refusal(&mut stream, &refusal).await;
}

async fn serve_connection<S>(inner: Arc<Inner>, stream: S, permit: OwnedSemaphorePermit)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let permit = Arc::new(permit);
    let started = Instant::now();
    let meter = Meter::new();
    let mut stream = Metered::new(stream, meter.clone());
    let limits = &inner.limits;
    let head = tokio::select! {
        r = tokio::time::timeout(limits.header_timeout, read_head(&mut stream, limits.max_request_header_bytes)) => r,
        () = inner.cancel.cancelled() => return,
    };
    let head = match head {
        Ok(Ok(head)) => head,
        Ok(Err(HeadError::Closed)) | Err(_) => return,
        Ok(Err(HeadError::Io(e))) => {
            tracing::debug!(error = %e, "egress client read failed");
            return;
        }
        Ok(Err(HeadError::TooLarge)) => {
            let refusal = Refusal::HeadersTooLarge {
                limit: limits.max_request_header_bytes,
            };
            refuse(&inner, base_event(&inner, "", 0, ""), started, &refusal);
            write_refusal(&mut stream, &refusal).await;
            return;
        }
        Ok(Err(HeadError::Malformed(why))) => {
            let refusal = Refusal::BadRequest(why);
            refuse(&inner, base_event(&inner, "", 0, ""), started, &refusal);
            write_refusal(&mut stream, &refusal).await;
            return;
        }
    };
    let io: Served<S> = TokioIo::new(Prefixed::new(head.bytes, stream));
    let service_inner = inner.clone();
    let service = service_fn(move |req| {
        let inner = service_inner.clone();
        let permit = permit.clone();
        async move { Ok::<_, Infallible>(handle(inner, req, permit).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_request_header_bytes.max(HYPER_MIN_BUF))
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "egress client connection ended with an error");
            }
        }
        () = idle_expired(&meter, limits.idle_timeout) => {}
        () = inner.cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

/// One request on a client connection.
async fn handle(
    inner: Arc<Inner>,
    req: Request<Incoming>,
    permit: Arc<OwnedSemaphorePermit>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    if inner.cancel.is_cancelled() {
        let event = base_event(&inner, "", 0, req.method().as_str());
        return refuse(&inner, event, started, &Refusal::ShuttingDown);
    }
    if req.method() == Method::CONNECT {
        handle_connect(inner, req, permit, started).await
    } else {
        crate::forward::forward(&inner, req, started).await
    }
}

async fn handle_connect(
    inner: Arc<Inner>,
    mut req: Request<Incoming>,
    permit: Arc<OwnedSemaphorePermit>,
    started: Instant,
) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        let event = base_event(&inner, "", 0, "CONNECT");
        let refusal = Refusal::BadRequest("CONNECT needs a target of the form host:port".into());
        return refuse(&inner, event, started, &refusal);
    };
    let port = authority.port_u16().unwrap_or(443);
    let mut event = base_event(&inner, authority.host(), port, "CONNECT");
    let host = match Host::parse(authority.host()) {
        Ok(h) => h,
        Err(e) => return refuse(&inner, event, started, &Refusal::BadRequest(e.to_string())),
    };
    event.host = host.to_string();
    let rule = match inner.decide(&host) {
        Ok(rule) => rule,
        Err(refusal) => return refuse(&inner, event, started, &refusal),
    };
    let (tcp, addr) = match inner.open(&host, port).await {
        Ok(c) => c,
        Err(refusal) => return refuse(&inner, event, started, &refusal),
    };
    event.allowed = true;
    event.rule = rule.clone();
    event.address = Some(addr);
    event.status = Some(StatusCode::OK.as_u16());
    event.reason = match &rule {
        Some(r) => format!("allowed by rule {r}"),
        None => "allowed".to_owned(),
    };

    let credential = match inner.credential_for(&host).await {
        Ok(c) => c,
        Err(refusal) => return refuse(&inner, event, started, &refusal),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_inner = inner.clone();
    match credential {
        Some(credential) => {
            let Some(interceptor) = inner.interceptor.as_ref() else {
                // build() refuses credentials without a CA, so this cannot happen.
                let refusal = Refusal::Credential {
                    host,
                    why: "no certificate authority is configured".into(),
                };
                return refuse(&inner, event, started, &refusal);
            };
            let upstream = match interceptor.connect_upstream(&inner, &host, tcp).await {
                Ok(s) => s,
                Err(refusal) => return refuse(&inner, event, started, &refusal),
            };
            event.intercepted = true;
            event.reason = format!(
                "{}; TLS intercepted to add {}",
                event.reason,
                credential.describe()
            );
            let pending = PendingEvent::new(inner.events.clone(), event, started);
            inner.tracker.spawn(async move {
                let _permit = permit;
                match on_upgrade.await {
                    Ok(upgraded) => {
                        crate::intercept::serve(
                            task_inner, credential, host, port, upgraded, upstream, pending,
                        )
                        .await;
                    }
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            });
        }
        None => {
            let pending = PendingEvent::new(inner.events.clone(), event, started);
            inner.tracker.spawn(async move {
                let _permit = permit;
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let meter = Meter::new();
                        let idle = task_inner.limits.idle_timeout;
                        let cancel = &task_inner.cancel;
                        match in_memory(upgraded) {
                            Ok((early, client)) => {
                                let mut tcp = tcp;
                                pipe_mem(client, early, &mut tcp, &meter, idle, cancel).await;
                            }
                            Err(upgraded) => {
                                let mut client = TokioIo::new(upgraded);
                                let mut upstream = Metered::new(tcp, meter.clone());
                                pipe(&mut client, &mut upstream, idle, cancel).await;
                            }
                        }
                        pending.add_up(meter.written());
                        pending.add_down(meter.read());
                    }
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            });
        }
    }
    Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync())
}

/// The client's [`MemStream`] behind an upgraded connection, if that is what
/// it was served on, with the bytes it sent that were read already (hyper's
/// buffer, then what is left of the first head's), for the zero-copy tunnel.
fn in_memory(upgraded: Upgraded) -> Result<(Bytes, MemStream), Upgraded> {
    let parts = upgraded.downcast::<Served<MemStream>>()?;
    let (rest_of_head, metered) = parts.io.into_inner().into_parts();
    let early = match (parts.read_buf.is_empty(), rest_of_head.is_empty()) {
        (_, true) => parts.read_buf,
        (true, false) => Bytes::from(rest_of_head),
        (false, false) => {
            let mut both = BytesMut::with_capacity(parts.read_buf.len() + rest_of_head.len());
            both.extend_from_slice(&parts.read_buf);
            both.extend_from_slice(&rest_of_head);
            both.freeze()
        }
    };
    Ok((early, metered.into_inner()))
}

impl Inner {
    /// The credential to add for `host`, with its secret read now (on a
    /// blocking thread: keyrings may block), or `None` if no rule names it.
    async fn credential_for(&self, host: &Host) -> Result<Option<Credential>, Refusal> {
        let Some((_, rule, header)) = self.credentials.iter().find(|(p, _, _)| p.matches(host))
        else {
            return Ok(None);
        };
        let secrets = self.secrets.clone();
        let reference = rule.secret.clone();
        let got = tokio::task::spawn_blocking(move || secrets.get(&reference))
            .await
            .map_err(|e| Refusal::Credential {
                host: host.clone(),
                why: format!("the secret store failed: {e}"),
            })?;
        let secret = got.map_err(|e| Refusal::Credential {
            host: host.clone(),
            why: e.to_string(),
        })?;
        Credential::new(rule, header.clone(), &secret)
            .map(Some)
            .map_err(|why| Refusal::Credential {
                host: host.clone(),
                why,
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_connect_on_a_mem_stream_hands_over_the_stream_itself_and_every_early_byte() {
        // More early bytes than hyper's first read takes: some are left in
        // hyper's buffer and some behind the head, and both must come out,
        // in order.
        let early: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut first = b"CONNECT a.test:1 HTTP/1.1\r\nHost: a.test:1\r\n\r\n".to_vec();
        first.extend_from_slice(&early);
        let (mut client, server) = MemStream::pair(STREAM_IN_FLIGHT);
        let io: Served<MemStream> =
            TokioIo::new(Prefixed::new(first, Metered::new(server, Meter::new())));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        let service = service_fn(move |mut req: Request<Incoming>| {
            let on_upgrade = hyper::upgrade::on(&mut req);
            let tx = tx.lock().unwrap().take();
            tokio::spawn(async move {
                let found = in_memory(on_upgrade.await.unwrap()).ok();
                let _ = tx.unwrap().send(found);
            });
            async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .with_upgrades();
        tokio::spawn(conn);
        let (got_early, mut server) = rx.await.unwrap().expect("not recognised as a MemStream");
        assert_eq!(got_early.len(), early.len());
        assert!(got_early == early, "early bytes differ");
        let mut head = [0u8; 12];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        let after = Bytes::from_static(b"after the upgrade");
        client.send(after.clone()).await.unwrap();
        assert_eq!(server.recv().await.unwrap().as_ptr(), after.as_ptr());
    }
}
