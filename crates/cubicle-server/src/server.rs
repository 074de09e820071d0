//! Binding and running the server: the loopback listener (the owner's, plain
//! HTTP), and — only when the front end says policy allows it — a network
//! listener for paired devices, over TLS with a self-signed certificate. A
//! fresh owner token per run, the security layer around every route, and a
//! clean shutdown that ends the running sessions.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cubicle_agent::Store;
use cubicle_audit::AuditLog;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, AuditView, PairTarget, router};
use crate::devices::DeviceStore;
use crate::hub::Hub;
use crate::insights::PolicyReport;
use crate::pairing::Offers;
use crate::remote_audit::RemoteAudit;
use crate::security::{self, Auth, Guard};
use crate::settings::SettingsStore;
use crate::skills::PluginAccess;
use crate::starter::SessionStarter;
use crate::tls::{self, TlsError, TlsListener};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The owner's address is not a loopback address.
    #[error(
        "refusing to listen on {0}: only loopback addresses (127.0.0.1, ::1) are allowed; remote devices connect through pairing"
    )]
    NotLoopback(SocketAddr),
    /// Binding the socket failed.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The network listener needs an address devices can reach.
    #[error(
        "cannot tell which address devices should use for {0}; give one explicitly, e.g. --remote 192.168.1.20:8443"
    )]
    NoAdvertisedAddress(SocketAddr),
    /// Paired devices are only served when their actions can be audited.
    #[error("remote access needs the audit log, and none is open")]
    RemoteNeedsAudit,
    /// The TLS certificate could not be made or loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The network listener for paired devices.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Where to listen, e.g. `0.0.0.0:8443` or `192.168.1.20:8443`.
    pub listen: SocketAddr,
    /// The address devices use (in the QR code and the `Host` check); when
    /// `None`, the listen address, or for `0.0.0.0` the address of the
    /// interface that routes outwards.
    pub advertise: Option<IpAddr>,
}

/// Everything the server needs.
pub struct ServerConfig {
    /// The owner's loopback address (port 0 picks a free one).
    pub addr: SocketAddr,
    /// Starts sessions.
    pub starter: Arc<dyn SessionStarter>,
    /// Where history is read from.
    pub store: Store,
    /// Where paired devices (`devices.json`) and the TLS certificate (`tls/`) live.
    pub data_dir: PathBuf,
    /// The audit log that records every paired device's action. Without it
    /// paired devices are refused.
    pub audit: Option<Arc<AuditLog>>,
    /// The network listener, when policy allows one.
    pub remote: Option<RemoteConfig>,
    /// The effective policy, for the policy screen (`None`: not shown).
    pub policy: Option<PolicyReport>,
    /// The audit log's HMAC key, if it is sealed with one, for verifying it.
    pub audit_key: Option<Vec<u8>>,
    /// Where skills are, for the skills screen (`None`: not shown).
    pub skills: Option<cubicle_skills::SkillRoots>,
    /// Where skills' private preferences are (`None`: not editable here).
    pub prefs_dir: Option<PathBuf>,
    /// The plugin store and the policy's marketplace lists (`None`: no
    /// marketplaces in the skills screen).
    pub plugins: Option<PluginAccess>,
    /// The model settings (`None`: no settings screen).
    pub settings: Option<Arc<dyn SettingsStore>>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// The network listener, once bound.
#[derive(Debug, Clone)]
pub struct RemoteInfo {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The base URL devices use, `https://IP:PORT`.
    pub base_url: String,
    /// SHA-256 fingerprint of its certificate (`AB:CD:…`).
    pub fingerprint: String,
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    token: String,
    remote: Option<RemoteInfo>,
    hub: Arc<Hub>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

fn hosts_for(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    match addr.ip() {
        ip if ip.is_loopback() => {
            let mut hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")];
            if addr.is_ipv6() {
                hosts.push(format!("[::1]:{port}"));
            }
            hosts
        }
        IpAddr::V4(ip) => vec![format!("{ip}:{port}")],
        IpAddr::V6(ip) => vec![format!("[{ip}]:{port}")],
    }
}

/// The address of the interface that routes outwards: a UDP socket
/// "connected" to a documentation address sends nothing, but the kernel picks
/// the source address it would use.
fn outward_address(v6: bool) -> Option<IpAddr> {
    let (bind, probe) = if v6 {
        ("[::]:0", "[2001:db8::1]:9")
    } else {
        ("0.0.0.0:0", "192.0.2.1:9")
    };
    let sock = std::net::UdpSocket::bind(bind).ok()?;
    sock.connect(probe).ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

impl Server {
    /// Binds `addr` on loopback with no network listener and no audit log
    /// (paired devices are then refused); devices are kept in `store`'s root.
    pub async fn bind(
        addr: SocketAddr,
        starter: Arc<dyn SessionStarter>,
        store: Store,
    ) -> Result<Self, ServerError> {
        let data_dir = store.root().to_path_buf();
        Self::start(ServerConfig {
            addr,
            starter,
            store,
            data_dir,
            audit: None,
            remote: None,
            policy: None,
            audit_key: None,
            skills: None,
            prefs_dir: None,
            plugins: None,
            settings: None,
        })
        .await
    }

    /// Binds and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        let ServerConfig {
            addr,
            starter,
            store,
            data_dir,
            audit,
            remote,
            policy,
            audit_key,
            skills,
            prefs_dir,
            plugins,
            settings,
        } = config;
        if !addr.ip().is_loopback() {
            return Err(ServerError::NotLoopback(addr));
        }
        if remote.is_some() && audit.is_none() {
            return Err(ServerError::RemoteNeedsAudit);
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Bind(addr, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::Bind(addr, e))?;

        // The network listener, bound before anything is served so that a
        // failure leaves nothing running.
        let mut remote_bound = None;
        if let Some(rc) = remote {
            let ip = match rc.advertise {
                Some(ip) => ip,
                None if !rc.listen.ip().is_unspecified() => rc.listen.ip(),
                None => outward_address(rc.listen.is_ipv6())
                    .ok_or(ServerError::NoAdvertisedAddress(rc.listen))?,
            };
            let cert = tls::load_or_create(&data_dir.join("tls"), ip)?;
            let tcp = tokio::net::TcpListener::bind(rc.listen)
                .await
                .map_err(|e| ServerError::Bind(rc.listen, e))?;
            let bound = tcp
                .local_addr()
                .map_err(|e| ServerError::Bind(rc.listen, e))?;
            let tls = TlsListener::new(tcp, cert.config.clone())
                .map_err(|e| ServerError::Bind(rc.listen, e))?;
            let public = SocketAddr::new(ip, bound.port());
            let info = RemoteInfo {
                addr: bound,
                base_url: format!("https://{public}"),
                fingerprint: cert.fingerprint,
            };
            remote_bound = Some((tls, hosts_for(public), info));
        }

        let token = security::new_token();
        let audit_view = audit.as_ref().map(|log| AuditView {
            dir: log.dir().to_path_buf(),
            key: audit_key,
        });
        let auth = Arc::new(Auth {
            owner_token: token.clone(),
            devices: Arc::new(DeviceStore::in_dir(&data_dir)),
            audit: RemoteAudit::new(audit),
        });
        let hub = Arc::new(Hub::default());
        let pair_target = match &remote_bound {
            Some((_, _, info)) => PairTarget {
                base_url: info.base_url.clone(),
                fingerprint: Some(info.fingerprint.clone()),
            },
            None => PairTarget {
                base_url: format!("http://{}", hosts_for(addr)[0]),
                fingerprint: None,
            },
        };
        let state = Arc::new(AppState {
            hub: hub.clone(),
            starter,
            store,
            auth: auth.clone(),
            offers: Mutex::new(Offers::default()),
            policy,
            audit_view,
            skills,
            prefs_dir,
            plugins,
            settings,
            pair_target,
        });
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();

        let local_guard = Arc::new(Guard {
            auth: auth.clone(),
            hosts: hosts_for(addr),
            scheme: "http",
            remote: false,
        });
        let app = router(state.clone())
            .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
            .layer(axum::middleware::from_fn_with_state(
                local_guard,
                security::check,
            ));
        let stop = cancel.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!("server stopped: {e}");
            }
        }));

        let mut remote_info = None;
        if let Some((tls, hosts, info)) = remote_bound {
            let guard = Arc::new(Guard {
                auth,
                hosts,
                scheme: "https",
                remote: true,
            });
            let app = router(state)
                .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
                .layer(axum::middleware::from_fn_with_state(guard, security::check));
            let stop = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let served = axum::serve(tls, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!("remote listener stopped: {e}");
                }
            }));
            remote_info = Some(info);
        }
        Ok(Self {
            addr,
            token,
            remote: remote_info,
            hub,
            cancel,
            tasks,
        })
    }

    /// The address the owner's listener is on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The network listener for paired devices, if one runs.
    pub fn remote(&self) -> Option<&RemoteInfo> {
        self.remote.as_ref()
    }

    /// The owner's secret token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The URL to open in a browser: `http://127.0.0.1:PORT/?token=TOKEN`.
    pub fn url(&self) -> String {
        let host = match self.addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(_) => "[::1]".to_owned(),
        };
        format!("http://{host}:{}/?token={}", self.addr.port(), self.token)
    }

    /// Ends every running session (waiting up to 10 s for their clean-up),
    /// then stops serving. Open event streams are closed.
    pub async fn shutdown(self) {
        self.hub.shutdown(Duration::from_secs(10)).await;
        self.cancel.cancel();
        // Open WebSockets keep graceful shutdown waiting; do not wait for ever.
        for mut task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}
