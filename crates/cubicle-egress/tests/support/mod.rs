//! Test fixtures: upstream HTTP and HTTPS servers on 127.0.0.1, a test CA,
//! raw HTTP/1.1 client helpers, and a proxy reached over TCP or over an
//! in-memory stream. Loopback upstreams are only reachable because each test
//! names 127.0.0.1 in `allow_addresses`: the proxy refuses loopback otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cubicle_egress::{
    AddressRule, DomainRule, EgressConfig, EgressEvent, EgressProxy, StaticResolver,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub const LOOPBACK: &str = "127.0.0.1";

/// A stream in both directions.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// What an upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub type SeenLog = Arc<Mutex<Vec<Seen>>>;

async fn upstream_handler(
    seen: SeenLog,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    });
    if req.uri().path() == "/ws" {
        // A minimal WebSocket-style upgrade: after 101, echo raw bytes.
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                let mut io = TokioIo::new(up);
                let mut buf = vec![0u8; 4096];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        resp.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return Ok(resp);
    }
    if req.uri().path() == "/echo" {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Ok(Response::new(Full::new(body)));
    }
    let mut resp = Response::new(Full::new(Bytes::from_static(b"hello from upstream")));
    resp.headers_mut()
        .insert("x-upstream", "yes".parse().unwrap());
    resp.headers_mut()
        .insert("keep-alive", "timeout=5".parse().unwrap());
    Ok(resp)
}

async fn serve_http<S: Io + 'static>(io: S, seen: SeenLog) {
    let svc = service_fn(move |req| upstream_handler(seen.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

/// A plain HTTP upstream on 127.0.0.1.
pub async fn http_upstream() -> (SocketAddr, SeenLog) {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = SeenLog::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve_http(s, log.clone()));
        }
    });
    (addr, seen)
}

/// A raw TCP echo server on 127.0.0.1.
pub async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A test CA and the issuer to sign upstream leaves with.
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cubicle-egress test upstream CA");
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server config with a leaf for `names`.
    pub fn server_config(&self, names: &[&str]) -> rustls::ServerConfig {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let leaf = params.signed_by(&key, &self.issuer).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        cfg
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// An HTTPS upstream on 127.0.0.1 with a leaf from `ca` for `names`.
pub async fn https_upstream(ca: &TestCa, names: &[&str]) -> (SocketAddr, SeenLog) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config(names)));
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = SeenLog::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let log = log.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    serve_http(tls, log).await;
                }
            });
        }
    });
    (addr, seen)
}

/// A TLS client over `io` trusting only the given PEM roots.
pub async fn tls_client<S: Io + 'static>(
    io: S,
    name: &str,
    roots_pem: &[&str],
) -> Result<tokio_rustls::client::TlsStream<S>, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in roots_pem {
        roots
            .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
            .unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(name.to_owned()).unwrap(), io)
        .await
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a response head byte by byte (so no tunnel bytes are consumed), then
/// the body by Content-Length, chunked, or to EOF — unless `head_only`.
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S, head_only: bool) -> Resp {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.unwrap();
        assert!(
            n == 1,
            "connection closed in the response head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).unwrap();
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: String::new(),
    };
    if head_only || status == 101 {
        return resp;
    }
    let mut body = Vec::new();
    if let Some(len) = resp.header("content-length") {
        body.resize(len.parse().unwrap(), 0);
        s.read_exact(&mut body).await.unwrap();
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).await.unwrap();
                line.push(byte[0]);
            }
            let size =
                usize::from_str_radix(std::str::from_utf8(&line).unwrap().trim(), 16).unwrap();
            let mut chunk = vec![0u8; size + 2];
            s.read_exact(&mut chunk).await.unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        s.read_to_end(&mut body).await.unwrap();
    }
    resp.body = String::from_utf8_lossy(&body).into_owned();
    resp
}

/// Sends raw request bytes and reads one response.
pub async fn raw<S: Io>(s: &mut S, request: &str) -> Resp {
    s.write_all(request.as_bytes()).await.unwrap();
    read_response(s, false).await
}

/// Sends CONNECT and reads the response head (and, if refused, its body).
pub async fn connect<S: Io>(s: &mut S, target: &str) -> Resp {
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let resp = read_response(s, true).await;
    if resp.status == 200 {
        return resp;
    }
    let mut resp = resp;
    let len: usize = resp.header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    resp.body = String::from_utf8(body).unwrap();
    resp
}

/// How a test reaches the proxy.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    Tcp,
    Stream,
}

/// A running proxy and its event stream.
pub struct Harness {
    pub proxy: EgressProxy,
    pub addr: SocketAddr,
    pub events: mpsc::UnboundedReceiver<EgressEvent>,
    pub via: Via,
}

impl Harness {
    pub async fn new(config: EgressConfig, resolver: StaticResolver, via: Via) -> Self {
        Self::with(
            EgressProxy::builder("test-session", config).resolver(Arc::new(resolver)),
            via,
        )
        .await
    }

    pub async fn with(builder: cubicle_egress::EgressProxyBuilder, via: Via) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let proxy = builder.events(tx).build().unwrap();
        let addr = proxy
            .listen((LOOPBACK.parse::<IpAddr>().unwrap(), 0).into())
            .await
            .unwrap();
        Self {
            proxy,
            addr,
            events,
            via,
        }
    }

    /// A fresh client connection, over TCP or an in-memory stream.
    pub async fn client(&self) -> Box<dyn Io> {
        match self.via {
            Via::Tcp => Box::new(TcpStream::connect(self.addr).await.unwrap()),
            Via::Stream => Box::new(self.proxy.open_stream()),
        }
    }

    /// The next event, waiting up to five seconds.
    pub async fn event(&mut self) -> EgressEvent {
        tokio::time::timeout(Duration::from_secs(5), self.events.recv())
            .await
            .expect("no event within 5 s")
            .expect("event channel closed")
    }
}

pub fn allow(patterns: &[&str]) -> Vec<DomainRule> {
    patterns
        .iter()
        .map(|p| DomainRule::new(*p, "test: allow"))
        .collect()
}

pub fn loopback_allowed() -> Vec<AddressRule> {
    vec![AddressRule::new(LOOPBACK, "test: loopback upstreams")]
}

pub fn resolver(names: &[(&str, &str)]) -> StaticResolver {
    names.iter().fold(StaticResolver::new(), |r, (n, ip)| {
        r.with(n, [ip.parse::<IpAddr>().unwrap()])
    })
}
