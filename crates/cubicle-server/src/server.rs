//! Binding and running the server: loopback only, a fresh token per run,
//! the security layer around every route, and a clean shutdown that ends the
//! running sessions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cubicle_agent::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, router};
use crate::hub::Hub;
use crate::security::{self, Guard};
use crate::starter::SessionStarter;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is not a loopback address (remote access needs pairing
    /// and TLS, which this server does not offer yet).
    #[error("refusing to listen on {0}: only loopback addresses (127.0.0.1, ::1) are allowed")]
    NotLoopback(SocketAddr),
    /// Binding the socket failed.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    token: String,
    hub: Arc<Hub>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` (port 0 picks a free one) and starts serving. Sessions
    /// are started with `starter` and history is read from `store`.
    pub async fn bind(
        addr: SocketAddr,
        starter: Arc<dyn SessionStarter>,
        store: Store,
    ) -> Result<Self, ServerError> {
        if !addr.ip().is_loopback() {
            return Err(ServerError::NotLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Bind(addr, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::Bind(addr, e))?;
        let token = security::new_token();
        let port = addr.port();
        let mut hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")];
        if addr.is_ipv6() {
            hosts.push(format!("[::1]:{port}"));
        }
        let guard = Arc::new(Guard {
            token: token.clone(),
            hosts,
        });
        let hub = Arc::new(Hub::default());
        let state = Arc::new(AppState {
            hub: hub.clone(),
            starter,
            store,
        });
        let app = router(state)
            .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
            .layer(axum::middleware::from_fn_with_state(guard, security::check));
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!("server stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            token,
            hub,
            cancel,
            task,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The secret token every request must carry.
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
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
