//! `GuestClient` against a scripted fake guest that misbehaves: the host must
//! treat every guest frame as untrusted and never hang or panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cubicle_guest::wire;
use cubicle_protocol::guest::{
    DATA_CHUNK, ErrorCode, ExecRequest, ExecResult, GuestConfig, GuestFrame, HostFrame,
    MAX_FRAME_LEN, OUTPUT_WINDOW, Op, OpResult, OutputStream, PROTOCOL_VERSION, TUNNEL_WINDOW,
};
use cubicle_sandbox::SandboxError;
use cubicle_sandbox::guest_client::{AsyncReadWrite, EgressConnector, GuestClient};
use pretty_assertions::assert_eq;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

struct FakeGuest {
    rd: ReadHalf<DuplexStream>,
    wr: WriteHalf<DuplexStream>,
}

impl FakeGuest {
    async fn recv(&mut self) -> HostFrame {
        wire::read_frame(&mut self.rd).await.unwrap().unwrap()
    }

    async fn send(&mut self, frame: &GuestFrame) {
        wire::write_frame(&mut self.wr, frame).await.unwrap();
    }

    /// Reads the next request, answering nothing.
    async fn request(&mut self) -> (u64, Op) {
        match self.recv().await {
            HostFrame::Request { id, op } => (id, op),
            other => panic!("{other:?}"),
        }
    }
}

/// Connects a client to a fake guest that answers the hello correctly.
async fn connect() -> (GuestClient, FakeGuest) {
    connect_with(None).await
}

/// Hands the first tunnel one end of an in-memory pipe, as the egress proxy
/// would a connection; the test holds the other end as the "upstream".
struct PipeConnector(Mutex<Option<DuplexStream>>);

#[async_trait]
impl EgressConnector for PipeConnector {
    async fn connect(&self) -> std::io::Result<Box<dyn AsyncReadWrite + Send + Unpin>> {
        match self.0.lock().unwrap().take() {
            Some(s) => Ok(Box::new(s)),
            None => Err(std::io::Error::other("one tunnel only")),
        }
    }
}

/// A client whose tunnels reach the returned upstream end, which buffers at
/// most `capacity` bytes each way.
async fn connect_with_upstream(capacity: usize) -> (GuestClient, FakeGuest, DuplexStream) {
    let (ours, upstream) = tokio::io::duplex(capacity);
    let connector = Arc::new(PipeConnector(Mutex::new(Some(ours))));
    let (client, fake) = connect_with(Some(connector)).await;
    (client, fake, upstream)
}

async fn connect_with(egress: Option<Arc<dyn EgressConnector>>) -> (GuestClient, FakeGuest) {
    let (host_side, guest_side) = tokio::io::duplex(1 << 16);
    let (hr, hw) = tokio::io::split(host_side);
    let (gr, gw) = tokio::io::split(guest_side);
    let mut fake = FakeGuest { rd: gr, wr: gw };
    let guest = tokio::spawn(async move {
        assert!(matches!(fake.recv().await, HostFrame::Hello { .. }));
        fake.send(&GuestFrame::Hello {
            version: PROTOCOL_VERSION,
            guest_version: "fake".to_owned(),
            pid: 1,
            capabilities: vec![],
        })
        .await;
        fake
    });
    let client = GuestClient::connect(hr, hw, GuestConfig::default(), egress)
        .await
        .unwrap();
    (client, guest.await.unwrap())
}

#[tokio::test]
async fn junk_and_unknown_ids_are_ignored() {
    let (client, mut fake) = connect().await;
    let task = tokio::spawn(async move {
        let (id, op) = fake.request().await;
        assert_eq!(op, Op::Ping);
        let mut raw = 9u32.to_be_bytes().to_vec();
        raw.extend_from_slice(b"not json!");
        fake.wr.write_all(&raw).await.unwrap();
        fake.send(&GuestFrame::Response {
            id: id + 100,
            result: OpResult::Done,
        })
        .await;
        fake.send(&GuestFrame::Output {
            id: 999,
            stream: cubicle_protocol::guest::OutputStream::Stdout,
            data: "x".into(),
        })
        .await;
        fake.send(&GuestFrame::Response {
            id,
            result: OpResult::Pong,
        })
        .await;
        fake
    });
    client.ping().await.unwrap();
    let _fake = task.await.unwrap();
    assert!(client.is_connected());
}

#[tokio::test]
async fn wrong_answers_and_guest_errors_are_typed() {
    let (client, mut fake) = connect().await;
    let task = tokio::spawn(async move {
        let (id, _) = fake.request().await;
        fake.send(&GuestFrame::Response {
            id,
            result: OpResult::Pong,
        })
        .await;
        let (id, _) = fake.request().await;
        fake.send(&GuestFrame::Error {
            id: Some(id),
            code: ErrorCode::DuplicateId,
            message: "dup".to_owned(),
        })
        .await;
        fake
    });
    let err = client.stat("/x").await.unwrap_err();
    assert!(matches!(err, SandboxError::Protocol(_)), "{err:?}");
    let err = client.list_dir("/x").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::DuplicateId));
    let _fake = task.await.unwrap();
}

#[tokio::test]
async fn oversize_frame_disconnects_and_fails_pending_calls() {
    let (client, mut fake) = connect().await;
    let task = tokio::spawn(async move {
        let _ = fake.request().await;
        fake.wr
            .write_all(&(MAX_FRAME_LEN + 1).to_be_bytes())
            .await
            .unwrap();
        fake
    });
    let err = client
        .exec(ExecRequest::shell("sleep 100"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SandboxError::Disconnected(ref m) if m.contains("over the limit")),
        "{err:?}"
    );
    assert!(!client.is_connected());
    let err = client.ping().await.unwrap_err();
    assert!(matches!(err, SandboxError::Disconnected(_)), "{err:?}");
    let _fake = task.await.unwrap();
}

#[tokio::test]
async fn dropping_an_exec_sends_sigkill() {
    let (client, mut fake) = connect().await;
    let handle = client.start_exec(ExecRequest::shell("sleep 100")).unwrap();
    let exec_id = handle.id();
    let (id, _) = fake.request().await;
    assert_eq!(id, exec_id);
    drop(handle);
    // The guest is told to stop sending its output, and to kill it.
    assert_eq!(fake.recv().await, HostFrame::OutputStop { id: exec_id });
    let (_, op) = fake.request().await;
    assert_eq!(op, Op::Signal { exec_id, signal: 9 });
}

/// Sends `frames` output frames of `DATA_CHUNK` bytes for request `id`.
async fn send_output(fake: &mut FakeGuest, id: u64, frames: u64) {
    for _ in 0..frames {
        fake.send(&GuestFrame::Output {
            id,
            stream: OutputStream::Stdout,
            data: vec![b'x'; DATA_CHUNK].into(),
        })
        .await;
    }
}

/// Output frames the host acknowledges within `wait`, summed.
async fn acknowledged(fake: &mut FakeGuest, id: u64, wait: Duration) -> u64 {
    let mut frames = 0;
    while let Ok(frame) = tokio::time::timeout(wait, fake.recv()).await {
        match frame {
            HostFrame::OutputAck { id: i, frames: n } if i == id => frames += n,
            other => panic!("{other:?}"),
        }
    }
    frames
}

#[tokio::test]
async fn a_slow_live_reader_holds_up_the_output_window() {
    let (client, mut fake) = connect().await;
    let handle = client.start_exec(ExecRequest::shell("yes")).unwrap();
    let (id, _) = fake.request().await;
    // A live reader that reads nothing yet, with room for one chunk.
    let (live, mut chunks) = mpsc::channel(1);
    let waiting = tokio::spawn(handle.wait(Some(live)));
    send_output(&mut fake, id, OUTPUT_WINDOW).await;
    // Only what fits in the live channel is passed on, so only that is
    // acknowledged, however long the guest waits (here, a while).
    let stalled = acknowledged(&mut fake, id, Duration::from_millis(300)).await;
    assert!(
        stalled <= 1,
        "{stalled} frames acknowledged with the reader stalled"
    );
    // As the reader reads, the window reopens, until all of it has.
    for _ in 0..OUTPUT_WINDOW {
        assert_eq!(chunks.recv().await.unwrap().data.len(), DATA_CHUNK);
    }
    let mut acked = stalled;
    while acked < OUTPUT_WINDOW {
        let more = acknowledged(&mut fake, id, Duration::from_secs(2)).await;
        assert!(more > 0, "only {acked} frames acknowledged once read");
        acked += more;
    }
    assert_eq!(acked, OUTPUT_WINDOW);
    fake.send(&GuestFrame::Response {
        id,
        result: OpResult::Exit(ExecResult {
            code: Some(0),
            ..ExecResult::default()
        }),
    })
    .await;
    let out = waiting.await.unwrap().unwrap();
    assert_eq!(out.stdout.len() as u64, OUTPUT_WINDOW * DATA_CHUNK as u64);
}

#[tokio::test]
async fn a_guest_that_overruns_an_output_window_fails_the_command() {
    let (client, mut fake) = connect().await;
    let handle = client.start_exec(ExecRequest::shell("yes")).unwrap();
    let (id, _) = fake.request().await;
    // The reader takes one chunk and then stalls, so at most that one is
    // acknowledged, and the guest sends on regardless.
    let (live, mut chunks) = mpsc::channel(1);
    let waiting = tokio::spawn(handle.wait(Some(live)));
    send_output(&mut fake, id, OUTPUT_WINDOW + 2).await;
    // The host tells the guest to stop the output and kills the command.
    let stop = loop {
        match fake.recv().await {
            HostFrame::OutputAck { frames, .. } => assert!(frames <= 1, "{frames}"),
            other => break other,
        }
    };
    assert_eq!(stop, HostFrame::OutputStop { id });
    let (_, op) = fake.request().await;
    assert_eq!(
        op,
        Op::Signal {
            exec_id: id,
            signal: 9
        }
    );
    // The caller learns why once it reads on.
    while chunks.recv().await.is_some() {}
    let err = waiting.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, SandboxError::Protocol(m) if m.contains("window")),
        "{err:?}"
    );
    // Whatever else comes for it is dropped, and the session serves on.
    send_output(&mut fake, id, 2 * OUTPUT_WINDOW).await;
    ping_answered(&client, fake).await;
}

#[tokio::test]
async fn refused_hello_is_a_start_error() {
    let (host_side, guest_side) = tokio::io::duplex(1 << 16);
    let (hr, hw) = tokio::io::split(host_side);
    let (gr, gw) = tokio::io::split(guest_side);
    let mut fake = FakeGuest { rd: gr, wr: gw };
    tokio::spawn(async move {
        let _ = fake.recv().await;
        fake.send(&GuestFrame::Error {
            id: None,
            code: ErrorCode::UnsupportedVersion,
            message: "speaks 7".to_owned(),
        })
        .await;
    });
    let err = GuestClient::connect(hr, hw, GuestConfig::default(), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not start the cubicle: the guest refused the session: speaks 7"
    );
}

/// Tunnel payload frames from the host, skipping acknowledgements; `None`
/// when nothing comes for a while.
async fn next_tunnel_data(fake: &mut FakeGuest, wait: Duration) -> Option<Vec<u8>> {
    loop {
        match tokio::time::timeout(wait, fake.recv()).await {
            Err(_) => return None,
            Ok(HostFrame::TunnelData { data, .. }) => return Some(data.into_vec()),
            Ok(HostFrame::TunnelAck { .. }) => {}
            Ok(other) => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_guest_that_overruns_a_tunnel_window_loses_the_tunnel() {
    // The upstream never reads, so nothing the guest sends is acknowledged.
    let (client, mut fake, _upstream) = connect_with_upstream(1).await;
    fake.send(&GuestFrame::TunnelOpen { tunnel: 7 }).await;
    let chunk = vec![1u8; DATA_CHUNK];
    let mut sent = 0;
    while sent <= TUNNEL_WINDOW {
        fake.send(&GuestFrame::TunnelData {
            tunnel: 7,
            data: chunk.clone().into(),
        })
        .await;
        sent += DATA_CHUNK as u64;
    }
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(20), fake.recv())
            .await
            .expect("the host closes the tunnel")
        {
            HostFrame::TunnelClose { tunnel, reason } => break (tunnel, reason),
            HostFrame::TunnelAck { .. } => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(closed.0, 7);
    assert!(
        closed.1.as_deref().unwrap_or_default().contains("window"),
        "{closed:?}"
    );
    // The rest of the session is unharmed.
    ping_answered(&client, fake).await;
}

/// A ping the fake guest answers; returns the fake for more.
async fn ping_answered(client: &GuestClient, mut fake: FakeGuest) -> FakeGuest {
    let task = tokio::spawn(async move {
        let (id, _) = fake.request().await;
        fake.send(&GuestFrame::Response {
            id,
            result: OpResult::Pong,
        })
        .await;
        fake
    });
    client.ping().await.unwrap();
    task.await.unwrap()
}

#[tokio::test]
async fn the_host_sends_a_tunnel_no_more_than_the_guest_acknowledges() {
    let (_client, mut fake, upstream) = connect_with_upstream(1 << 20).await;
    let (mut up_rd, mut up_wr) = tokio::io::split(upstream);
    fake.send(&GuestFrame::TunnelOpen { tunnel: 3 }).await;
    // The upstream has three windows to send; the guest acknowledges none.
    let total = 3 * TUNNEL_WINDOW as usize;
    let writer = tokio::spawn(async move {
        up_wr.write_all(&vec![9u8; total]).await.unwrap();
        up_wr
    });
    let quiet = Duration::from_millis(300);
    let mut got = 0u64;
    while let Some(d) = next_tunnel_data(&mut fake, quiet).await {
        got += d.len() as u64;
    }
    assert_eq!(got, TUNNEL_WINDOW, "the host sent past the window");
    // Each acknowledgement lets that much more through.
    while got < total as u64 {
        fake.send(&GuestFrame::TunnelAck {
            tunnel: 3,
            bytes: TUNNEL_WINDOW,
        })
        .await;
        let before = got;
        while got < before + TUNNEL_WINDOW {
            got += next_tunnel_data(&mut fake, Duration::from_secs(20))
                .await
                .expect("more data after the ack")
                .len() as u64;
        }
        assert_eq!(got, before + TUNNEL_WINDOW);
    }
    let _up_wr = writer.await.unwrap();

    // The other way: the host acknowledges guest bytes once the upstream
    // has them.
    fake.send(&GuestFrame::TunnelData {
        tunnel: 3,
        data: "ping".into(),
    })
    .await;
    let mut buf = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut up_rd, &mut buf)
        .await
        .unwrap();
    assert_eq!(&buf, b"ping");
    match tokio::time::timeout(Duration::from_secs(20), fake.recv())
        .await
        .unwrap()
    {
        HostFrame::TunnelAck { tunnel, bytes } => assert_eq!((tunnel, bytes), (3, 4)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_half_closed_tunnel_still_carries_the_answer() {
    let (_client, mut fake, mut upstream) = connect_with_upstream(1 << 16).await;
    fake.send(&GuestFrame::TunnelOpen { tunnel: 5 }).await;
    fake.send(&GuestFrame::TunnelData {
        tunnel: 5,
        data: "request".into(),
    })
    .await;
    fake.send(&GuestFrame::TunnelEof { tunnel: 5 }).await;
    // The upstream gets the request, then the end of it ...
    let mut request = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read_to_end(&mut upstream, &mut request),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(request, b"request");
    // ... and its answer still reaches the guest, then its own end, and the
    // tunnel is over.
    upstream.write_all(b"answer").await.unwrap();
    upstream.shutdown().await.unwrap();
    let mut frames = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), fake.recv())
            .await
            .unwrap();
        let done = matches!(frame, HostFrame::TunnelClose { .. });
        frames.push(frame);
        if done {
            break;
        }
    }
    assert_eq!(
        frames,
        vec![
            HostFrame::TunnelAck {
                tunnel: 5,
                bytes: 7
            },
            HostFrame::TunnelData {
                tunnel: 5,
                data: "answer".into()
            },
            HostFrame::TunnelEof { tunnel: 5 },
            HostFrame::TunnelClose {
                tunnel: 5,
                reason: None
            },
        ]
    );
}

#[tokio::test]
async fn a_tunnel_the_guest_closes_closes_its_upstream() {
    let (_client, mut fake, mut upstream) = connect_with_upstream(1 << 16).await;
    fake.send(&GuestFrame::TunnelOpen { tunnel: 9 }).await;
    fake.send(&GuestFrame::TunnelData {
        tunnel: 9,
        data: "x".into(),
    })
    .await;
    let mut got = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut upstream, &mut got)
        .await
        .unwrap();
    // The in-cubicle side went away without a half-close (killed, reset):
    // the upstream connection must not outlive the tunnel.
    fake.send(&GuestFrame::TunnelClose { tunnel: 9 }).await;
    let mut rest = Vec::new();
    let n = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read_to_end(&mut upstream, &mut rest),
    )
    .await
    .expect("the upstream is closed with the tunnel")
    .unwrap();
    assert_eq!(n, 0);
}
