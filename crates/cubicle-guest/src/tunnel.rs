//! Egress tunnels: the guest listens on `GuestConfig::egress_listen` inside
//! the cubicle and carries each accepted connection to the host as a tunnel,
//! where the host relays it to its egress proxy (or refuses it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use cubicle_protocol::guest::{DATA_CHUNK, GuestFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::server::Outgoing;

/// The open tunnels, by id, each with the channel to its connection's task.
#[derive(Debug, Default)]
pub struct Tunnels {
    next: AtomicU64,
    open: Mutex<HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>>,
}

impl Tunnels {
    /// Delivers host bytes to a tunnel; unknown ids (already closed) are
    /// dropped.
    pub fn data(&self, tunnel: u64, data: Vec<u8>) {
        let sender = self.open.lock().ok().and_then(|m| m.get(&tunnel).cloned());
        match sender {
            Some(s) => {
                let _ = s.send(data);
            }
            None => tracing::debug!(tunnel, "data for a closed tunnel"),
        }
    }

    /// Closes a tunnel at the host's request: dropping its sender ends the
    /// connection task, which closes the socket.
    pub fn close(&self, tunnel: u64, reason: Option<&str>) {
        if let Some(reason) = reason {
            tracing::info!(tunnel, reason, "host refused tunnel");
        }
        if let Ok(mut m) = self.open.lock() {
            m.remove(&tunnel);
        }
    }

    /// Closes every tunnel.
    pub fn close_all(&self) {
        if let Ok(mut m) = self.open.lock() {
            m.clear();
        }
    }
}

/// Binds the egress listener. Returns the listener so that a bind failure
/// is reported before the hello is answered.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Accepts connections forever, opening a tunnel for each.
pub async fn accept_loop(
    listener: TcpListener,
    tunnels: std::sync::Arc<Tunnels>,
    out: mpsc::Sender<Outgoing>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "egress accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = tunnels.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut m) = tunnels.open.lock() {
            m.insert(id, tx);
        }
        if out
            .send(Outgoing::Frame(GuestFrame::TunnelOpen { tunnel: id }))
            .await
            .is_err()
        {
            return;
        }
        tokio::spawn(relay(stream, id, rx, tunnels.clone(), out.clone()));
    }
}

async fn relay(
    stream: TcpStream,
    tunnel: u64,
    mut from_host: mpsc::UnboundedReceiver<Vec<u8>>,
    tunnels: std::sync::Arc<Tunnels>,
    out: mpsc::Sender<Outgoing>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; DATA_CHUNK];
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => {
                match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let frame = GuestFrame::TunnelData { tunnel, data: buf[..n].to_vec().into() };
                        if out.send(Outgoing::Frame(frame)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            data = from_host.recv() => {
                match data {
                    Some(d) => {
                        if wr.write_all(&d).await.is_err() {
                            break;
                        }
                    }
                    // The host closed the tunnel: no need to tell it.
                    None => return,
                }
            }
        }
    }
    // The in-cubicle side went away first.
    tunnels.close(tunnel, None);
    let _ = out
        .send(Outgoing::Frame(GuestFrame::TunnelClose { tunnel }))
        .await;
}
