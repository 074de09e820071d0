//! TLS interception, for credential domains only. The proxy answers the
//! client's CONNECT, completes TLS with a leaf certificate from the per-install
//! CA, reads HTTP/1.1 requests, sets the credential header from a host secret,
//! and forwards each request over its own TLS connection to the real upstream,
//! verified against the web roots. Requests for any other host inside the
//! tunnel are refused (421), so a shared front end cannot be used to carry the
//! credential to another site. Every other domain is a plain byte tunnel.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::ca::CertificateAuthority;
use crate::config::{CredentialRule, UpstreamTls};
use crate::domain::Host;
use crate::error::ConfigError;
use crate::event::PendingEvent;
use crate::forward::{
    Counted, Direction, body_too_large, limited_body, origin_form, strip_hop_by_hop,
};
use crate::proxy::{BoxError, Inner, ProxyBody, base_event, refuse};
use crate::refusal::Refusal;
use crate::secrets::Secret;
use crate::tunnel::{Meter, Metered, idle_expired};

/// The one application protocol spoken inside an intercepted tunnel.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The header to set for one intercepted tunnel; the value is marked
/// sensitive and its `Debug` hides it.
pub(crate) struct Credential {
    header: HeaderName,
    value: HeaderValue,
    reference: String,
}

impl Credential {
    /// Builds the header value from the rule's template and the secret. The
    /// error never contains the value.
    pub(crate) fn new(
        rule: &CredentialRule,
        header: HeaderName,
        secret: &Secret,
    ) -> Result<Self, String> {
        let text = match &rule.value_template {
            Some(t) => t.replace("{secret}", secret.expose()),
            None => secret.expose().to_owned(),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            format!(
                "secret {} does not make a valid {} header value",
                rule.secret, rule.header
            )
        })?;
        value.set_sensitive(true);
        Ok(Self {
            header,
            value,
            reference: rule.secret.to_string(),
        })
    }

    /// "header authorization from keyring:NAME", for events.
    pub(crate) fn describe(&self) -> String {
        format!("header {} from {}", self.header, self.reference)
    }
}

/// TLS configurations for both sides of interception.
pub(crate) struct Interceptor {
    ca: Arc<CertificateAuthority>,
    client: Arc<ClientConfig>,
    servers: Mutex<HashMap<Host, Arc<ServerConfig>>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Explicit, so that no process-default provider need be installed (and
    // none installed elsewhere can change it).
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Interceptor {
    pub(crate) fn new(
        ca: Arc<CertificateAuthority>,
        upstream: &UpstreamTls,
    ) -> Result<Self, ConfigError> {
        let mut roots = RootCertStore::empty();
        if upstream.web_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for pem in &upstream.extra_roots_pem {
            let mut any = false;
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| ConfigError::BadRootCertificate(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| ConfigError::BadRootCertificate(e.to_string()))?;
                any = true;
            }
            if !any {
                return Err(ConfigError::BadRootCertificate(
                    "no certificate in the PEM text".into(),
                ));
            }
        }
        let mut client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Self {
            ca,
            client: Arc::new(client),
            servers: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn ca_cert_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    fn server_config(&self, host: &Host) -> Result<Arc<ServerConfig>, String> {
        if let Some(c) = self.servers.lock().ok().and_then(|m| m.get(host).cloned()) {
            return Ok(c);
        }
        let (chain, key) = self.ca.issue(host).map_err(|e| e.to_string())?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        let config = Arc::new(config);
        if let Ok(mut m) = self.servers.lock() {
            m.insert(host.clone(), config.clone());
        }
        Ok(config)
    }

    /// TLS to the real upstream over an already checked TCP connection.
    pub(crate) async fn connect_upstream(
        &self,
        inner: &Inner,
        host: &Host,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, Refusal> {
        let name = match host {
            Host::Name(n) => ServerName::try_from(n.clone()),
            Host::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
        }
        .map_err(|e| Refusal::UpstreamTls {
            host: host.clone(),
            why: e.to_string(),
        })?;
        let connector = TlsConnector::from(self.client.clone());
        match tokio::time::timeout(inner.limits.connect_timeout, connector.connect(name, tcp)).await
        {
            Err(_) => Err(Refusal::UpstreamTls {
                host: host.clone(),
                why: "the TLS handshake timed out".into(),
            }),
            Ok(Err(e)) => Err(Refusal::UpstreamTls {
                host: host.clone(),
                why: e.to_string(),
            }),
            Ok(Ok(s)) => Ok(s),
        }
    }
}

/// One intercepted tunnel: the client side and the current upstream sender.
struct Session {
    inner: Arc<Inner>,
    credential: Credential,
    host: Host,
    port: u16,
    tunnel: Arc<PendingEvent>,
    upstream: tokio::sync::Mutex<Option<SendRequest<Counted>>>,
}

/// Serves an intercepted tunnel until the client closes it.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    credential: Credential,
    host: Host,
    port: u16,
    upgraded: Upgraded,
    upstream: TlsStream<TcpStream>,
    tunnel: PendingEvent,
) {
    let Some(interceptor) = inner.interceptor.as_ref() else {
        return;
    };
    let config = match interceptor.server_config(&host) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%host, error = %e, "cannot issue an interception certificate");
            return;
        }
    };
    let client_meter = Meter::new();
    let client_io = Metered::new(TokioIo::new(upgraded), client_meter.clone());
    let accept = TlsAcceptor::from(config).accept(client_io);
    let tls = match tokio::time::timeout(inner.limits.header_timeout, accept).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(%host, error = %e, "the client refused the interception certificate; is the Cubicle CA in the cubicle's trust store?");
            return;
        }
        Err(_) => return,
    };
    let tunnel = Arc::new(tunnel);
    let sender = match handshake(&inner, upstream).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(%host, error = %e, "upstream HTTP handshake failed; will retry per request");
            None
        }
    };
    let session = Arc::new(Session {
        inner: inner.clone(),
        credential,
        host,
        port,
        tunnel: tunnel.clone(),
        upstream: tokio::sync::Mutex::new(sender),
    });
    let service = service_fn(move |req| {
        let session = session.clone();
        async move { Ok::<_, Infallible>(session.forward(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(inner.limits.header_timeout)
        .max_buf_size(inner.limits.max_request_header_bytes.max(8192))
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r { tracing::debug!(error = %e, "intercepted connection ended with an error") },
        () = idle_expired(&client_meter, inner.limits.idle_timeout) => {}
        () = inner.cancel.cancelled() => {}
    }
    // The tunnel's own event carries the encrypted bytes both ways.
    tunnel.add_up(client_meter.read());
    tunnel.add_down(client_meter.written());
}

/// HTTP/1.1 over an upstream TLS stream; the connection runs on its own task.
async fn handshake(
    inner: &Arc<Inner>,
    tls: TlsStream<TcpStream>,
) -> Result<SendRequest<Counted>, hyper::Error> {
    let (sender, conn) =
        hyper::client::conn::http1::handshake::<_, Counted>(TokioIo::new(tls)).await?;
    let cancel = inner.cancel.clone();
    inner.tracker.spawn(async move {
        tokio::select! {
            r = conn => if let Err(e) = r { tracing::debug!(error = %e, "upstream connection ended with an error") },
            () = cancel.cancelled() => {}
        }
    });
    Ok(sender)
}

impl Session {
    /// A sender ready for a request: the current one, or a new connection
    /// that goes through every check again.
    async fn ready_sender(&self) -> Result<SendRequest<Counted>, Refusal> {
        if let Some(mut sender) = self.upstream.lock().await.take()
            && sender.ready().await.is_ok()
        {
            return Ok(sender);
        }
        let Some(interceptor) = self.inner.interceptor.as_ref() else {
            return Err(Refusal::ShuttingDown);
        };
        let (tcp, _) = self.inner.open(&self.host, self.port).await?;
        let tls = interceptor
            .connect_upstream(&self.inner, &self.host, tcp)
            .await?;
        handshake(&self.inner, tls)
            .await
            .map_err(|e| Refusal::ConnectFailed {
                host: self.host.clone(),
                port: self.port,
                why: e.to_string(),
            })
    }

    async fn forward(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        let inner = &self.inner;
        let mut event = base_event(
            inner,
            &self.host.to_string(),
            self.port,
            req.method().as_str(),
        );
        event.intercepted = true;
        if let Some(refusal) = self.misdirected(&req) {
            return refuse(inner, event, started, &refusal);
        }
        if let Some(refusal) = body_too_large(req.headers(), inner.limits.max_request_body_bytes) {
            return refuse(inner, event, started, &refusal);
        }
        let mut sender = match self.ready_sender().await {
            Ok(s) => s,
            Err(refusal) => return refuse(inner, event, started, &refusal),
        };
        event.allowed = true;
        event.reason = format!("credential added: {}", self.credential.describe());
        self.tunnel.update(|t| event.rule.clone_from(&t.rule));
        let pending = Arc::new(PendingEvent::new(inner.events.clone(), event, started));

        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.uri = origin_form(&parts.uri);
        if !parts.headers.contains_key(header::HOST) {
            let value = if self.port == 443 {
                self.host.to_string()
            } else {
                format!("{}:{}", self.host, self.port)
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                parts.headers.insert(header::HOST, v);
            }
        }
        parts.headers.insert(
            self.credential.header.clone(),
            self.credential.value.clone(),
        );
        let body = Counted::new(
            limited_body(body, inner.limits.max_request_body_bytes),
            pending.clone(),
            Direction::Up,
        );
        let response = sender.send_request(Request::from_parts(parts, body)).await;
        *self.upstream.lock().await = Some(sender);
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
                    host: self.host.clone(),
                    port: self.port,
                    why: format!("the upstream failed: {e}"),
                };
                pending.update(|ev| {
                    ev.status = Some(refusal.status().as_u16());
                    ev.reason = refusal.to_string();
                });
                refusal.response()
            }
        }
    }

    /// A request inside the tunnel must be for the tunnel's host.
    fn misdirected(&self, req: &Request<Incoming>) -> Option<Refusal> {
        let named = req
            .uri()
            .authority()
            .map(|a| a.host().to_owned())
            .or_else(|| {
                let value = req.headers().get(header::HOST)?.to_str().ok()?;
                let authority: http::uri::Authority = value.parse().ok()?;
                Some(authority.host().to_owned())
            });
        let has_host = req.uri().authority().is_some() || req.headers().contains_key(header::HOST);
        match named {
            Some(name) if Host::parse(&name).ok().as_ref() == Some(&self.host) => None,
            Some(name) => Some(Refusal::Misdirected {
                host: self.host.clone(),
                asked: name,
            }),
            None if has_host => Some(Refusal::Misdirected {
                host: self.host.clone(),
                asked: "an unreadable Host header".into(),
            }),
            None => None,
        }
    }
}
