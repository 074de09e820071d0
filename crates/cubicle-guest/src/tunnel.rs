//! Egress tunnels: the guest listens on `GuestConfig::egress_listen` inside
//! the cubicle and carries each accepted connection to the host as a tunnel,
//! where the host relays it to its egress proxy (or refuses it). Each
//! direction is flow-controlled by a [`Window`], as the protocol's "Tunnels
//! and flow control" describes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use cubicle_protocol::guest::{DATA_CHUNK, GuestFrame, TUNNEL_WINDOW};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

use crate::server::Outgoing;

/// One direction of a tunnel: how many bytes are out and not yet
/// acknowledged, against [`TUNNEL_WINDOW`]. The sender counts what it sends
/// and waits while the window is full; the receiver's side (the host) keeps
/// the same count to catch a sender that overruns it.
#[derive(Debug, Default)]
pub struct Window {
    unacked: AtomicU64,
    reopened: Notify,
}

impl Window {
    /// How many more bytes may be sent now.
    pub fn room(&self) -> usize {
        let room = TUNNEL_WINDOW.saturating_sub(self.unacked.load(Ordering::Acquire));
        usize::try_from(room).unwrap_or(usize::MAX)
    }

    /// Counts `n` bytes sent (or, on the receiving side, received).
    pub fn sent(&self, n: usize) {
        self.unacked.fetch_add(n as u64, Ordering::AcqRel);
    }

    /// Takes an acknowledgement of `n` bytes. Acknowledging more than is out
    /// counts as acknowledging all of it, so a peer cannot open the window
    /// wider than [`TUNNEL_WINDOW`].
    pub fn ack(&self, n: u64) {
        let _ = self
            .unacked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
        self.reopened.notify_one();
    }

    /// Returns once there is room to send.
    pub async fn reopened(&self) {
        while self.room() == 0 {
            // `notify_one` keeps a permit when nobody waits, so an ack that
            // lands between the check and the wait is not lost.
            self.reopened.notified().await;
        }
    }
}

/// An open tunnel, as the frame reader sees it.
#[derive(Debug)]
struct Open {
    /// Host bytes for the connection's task; an empty chunk stands for the
    /// host's half-close.
    to_conn: mpsc::UnboundedSender<Vec<u8>>,
    /// The window of what this guest sends the host.
    window: std::sync::Arc<Window>,
}

/// The open tunnels, by id, each with the channel to its connection's task.
#[derive(Debug, Default)]
pub struct Tunnels {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Open>>,
}

impl Tunnels {
    /// Delivers host bytes to a tunnel; unknown ids (already closed) are
    /// dropped. The host keeps within the window this guest acknowledges,
    /// and the guest trusts the host, so the queue stays within a window.
    pub fn data(&self, tunnel: u64, data: Vec<u8>) {
        let sender = self
            .open
            .lock()
            .ok()
            .and_then(|m| m.get(&tunnel).map(|o| o.to_conn.clone()));
        match sender {
            Some(s) => {
                let _ = s.send(data);
            }
            None => tracing::debug!(tunnel, "data for a closed tunnel"),
        }
    }

    /// The tunnel's upstream half-closed: the connection's task half-closes
    /// the in-cubicle socket once it has written what came before.
    pub fn eof(&self, tunnel: u64) {
        self.data(tunnel, Vec::new());
    }

    /// The host passed on `bytes` more of what this guest sent.
    pub fn ack(&self, tunnel: u64, bytes: u64) {
        if let Some(window) = self
            .open
            .lock()
            .ok()
            .and_then(|m| m.get(&tunnel).map(|o| o.window.clone()))
        {
            window.ack(bytes);
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
        let window = std::sync::Arc::new(Window::default());
        if let Ok(mut m) = tunnels.open.lock() {
            m.insert(
                id,
                Open {
                    to_conn: tx,
                    window: window.clone(),
                },
            );
        }
        if out
            .send(Outgoing::Frame(GuestFrame::TunnelOpen { tunnel: id }))
            .await
            .is_err()
        {
            return;
        }
        tokio::spawn(relay(stream, id, rx, window, tunnels.clone(), out.clone()));
    }
}

async fn relay(
    stream: TcpStream,
    tunnel: u64,
    mut from_host: mpsc::UnboundedReceiver<Vec<u8>>,
    window: std::sync::Arc<Window>,
    tunnels: std::sync::Arc<Tunnels>,
    out: mpsc::Sender<Outgoing>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; DATA_CHUNK];
    // Whether the in-cubicle side and the host may still send.
    let (mut reading, mut writing) = (true, true);
    while reading || writing {
        // Never more than the window lets out: the host closes a tunnel
        // that overruns it.
        let room = window.room().min(DATA_CHUNK);
        tokio::select! {
            n = rd.read(&mut buf[..room]), if reading && room > 0 => {
                match n {
                    Ok(0) => {
                        reading = false;
                        if out.send(Outgoing::Frame(GuestFrame::TunnelEof { tunnel })).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                    Ok(n) => {
                        window.sent(n);
                        let frame = GuestFrame::TunnelData { tunnel, data: buf[..n].to_vec().into() };
                        if out.send(Outgoing::Frame(frame)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            () = window.reopened(), if reading && room == 0 => {}
            data = from_host.recv() => {
                match data {
                    Some(d) if d.is_empty() => {
                        writing = false;
                        if wr.shutdown().await.is_err() {
                            break;
                        }
                    }
                    Some(d) => {
                        if wr.write_all(&d).await.is_err() {
                            break;
                        }
                        let ack = GuestFrame::TunnelAck { tunnel, bytes: d.len() as u64 };
                        if out.send(Outgoing::Frame(ack)).await.is_err() {
                            return;
                        }
                    }
                    // The host closed the tunnel: no need to tell it.
                    None => return,
                }
            }
        }
    }
    // Both ways are done, or the in-cubicle side failed.
    tunnels.close(tunnel, None);
    let _ = out
        .send(Outgoing::Frame(GuestFrame::TunnelClose { tunnel }))
        .await;
}
