//! TLS for the listener that paired devices reach over the network: a
//! self-signed certificate for the advertised address, kept in the data
//! folder (`tls/<address>.cert.pem`, key 0600) so its fingerprint — which the
//! pairing QR code carries — stays the same across restarts, and a listener
//! that finishes handshakes off the accept path so a slow client cannot stall
//! the others.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing the certificate or key failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Making the certificate failed.
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The stored certificate or key does not parse, or rustls refused it.
    #[error("the server certificate in {0} is unusable ({1}); remove the folder to make a new one")]
    Unusable(PathBuf, String),
}

/// The certificate the remote listener presents.
pub(crate) struct ServerCert {
    pub config: Arc<ServerConfig>,
    /// `AB:CD:…`, SHA-256 of the certificate's DER, as browsers show it.
    pub fingerprint: String,
}

/// SHA-256 of a certificate, as colon-separated upper-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).write(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Loads the certificate for `ip` from `dir`, making it the first time.
pub(crate) fn load_or_create(dir: &Path, ip: IpAddr) -> Result<ServerCert, TlsError> {
    let stem = ip.to_string().replace(':', "_");
    let cert_path = dir.join(format!("{stem}.cert.pem"));
    let key_path = dir.join(format!("{stem}.key.pem"));
    if !cert_path.exists() || !key_path.exists() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
        params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("Cubicle on {ip}"));
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io_err(&key_path))?;
        write_private(&cert_path, cert.pem().as_bytes()).map_err(io_err(&cert_path))?;
    }
    let unusable = |e: String| TlsError::Unusable(dir.to_path_buf(), e);
    let cert_pem = std::fs::read(&cert_path).map_err(io_err(&cert_path))?;
    let key_pem = std::fs::read(&key_path).map_err(io_err(&key_path))?;
    let cert = CertificateDer::from_pem_slice(&cert_pem).map_err(|e| unusable(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| unusable(e.to_string()))?;
    let fingerprint = fingerprint(&cert);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unusable(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| unusable(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerCert {
        config: Arc::new(config),
        fingerprint,
    })
}

/// A listener whose connections are TLS streams that finished their handshake.
pub(crate) struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Wraps `tcp`: each accepted connection does its handshake in a task of
    /// its own, with a time limit, and only finished ones come out.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        let accept_task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            local,
            ready,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task only ends when aborted, which is on drop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_certificate_is_kept_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let ip: IpAddr = "192.168.1.20".parse().unwrap();
        let a = load_or_create(dir.path(), ip).unwrap();
        let b = load_or_create(dir.path(), ip).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        let other = load_or_create(dir.path(), "10.0.0.2".parse().unwrap()).unwrap();
        assert_ne!(a.fingerprint, other.fingerprint);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = dir.path().join("192.168.1.20.key.pem");
            assert_eq!(
                std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
