//! `GuestClient` against a scripted fake guest that misbehaves: the host must
//! treat every guest frame as untrusted and never hang or panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cubicle_guest::wire;
use cubicle_protocol::guest::{
    ErrorCode, ExecRequest, GuestConfig, GuestFrame, HostFrame, MAX_FRAME_LEN, Op, OpResult,
    PROTOCOL_VERSION,
};
use cubicle_sandbox::SandboxError;
use cubicle_sandbox::guest_client::GuestClient;
use pretty_assertions::assert_eq;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

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
    let client = GuestClient::connect(hr, hw, GuestConfig::default(), None)
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
    let (_, op) = fake.request().await;
    assert_eq!(op, Op::Signal { exec_id, signal: 9 });
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
