//! Remote control over real sockets: pairing a device with a one-time code,
//! its scoped token on the TLS listener (whose certificate is the one the
//! QR code's fingerprint names), revocation, the rate limit, and the audit
//! trail of everything a device did. Security probes: no token, wrong token,
//! the owner token on the network listener, a foreign Origin or Host, a
//! watch-scoped device trying to answer, approve or stop, a revoked token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use cubicle_server::DeviceStore;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// An HTTPS client that trusts exactly the server's certificate, after
/// checking that it is the one whose fingerprint pairing hands out.
fn device_client(f: &Fixture) -> reqwest::Client {
    let remote = f.server.remote().unwrap();
    let pem = std::fs::read(f._dir.path().join("data/tls/127.0.0.1.cert.pem")).unwrap();
    let der = rustls_pem_der(&pem);
    assert_eq!(cubicle_server::fingerprint(&der), remote.fingerprint);
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap()
}

fn rustls_pem_der(pem: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let text = std::str::from_utf8(pem).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

async fn offer(f: &Fixture, scope: &str) -> Value {
    let resp = f
        .post("/api/pairing", json!({ "scope": scope }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

/// Redeems a code on the network listener; the status and body.
async fn redeem(dev: &reqwest::Client, base: &str, code: &str, name: &str) -> (u16, Value) {
    let resp = dev
        .post(format!("{base}/api/pair/redeem"))
        .json(&json!({ "code": code, "name": name }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn pair(f: &Fixture, dev: &reqwest::Client, scope: &str, name: &str) -> String {
    let o = offer(f, scope).await;
    let base = &f.server.remote().unwrap().base_url;
    let (status, body) = redeem(dev, base, o["code"].as_str().unwrap(), name).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["device"]["scope"], scope);
    body["token"].as_str().unwrap().to_owned()
}

fn audit_records(f: &Fixture) -> Vec<Value> {
    cubicle_audit::tail(f._dir.path().join("audit"), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| serde_json::to_value(&r.kind).unwrap())
        .collect()
}

#[tokio::test]
async fn pairing_gives_a_scoped_token_over_pinned_tls() {
    let f = serve_remote().await;
    let remote = f.server.remote().unwrap().clone();
    let o = offer(&f, "watch").await;
    // The QR code carries the pairing URL with the certificate fingerprint.
    let url = o["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/pair#code=", remote.base_url)),
        "{url}"
    );
    assert!(
        url.ends_with(&format!("&fp=sha256:{}", remote.fingerprint)),
        "{url}"
    );
    assert!(o["qr_svg"].as_str().unwrap().contains("<svg"));
    let code = o["code"].as_str().unwrap();
    assert_eq!(code.len(), 9, "{code}");

    let dev = device_client(&f);
    // The pairing page needs no token.
    let page = dev
        .get(format!("{}/pair", remote.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("redeem-form"));

    let (status, body) = redeem(&dev, &remote.base_url, code, "Anna's phone").await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    // One use only.
    let (again, _) = redeem(&dev, &remote.base_url, code, "thief").await;
    assert_eq!(again, 403);

    let me: Value = dev
        .get(format!("{}/api/me", remote.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "device");
    assert_eq!(me["scope"], "watch");
    assert_eq!(me["name"], "Anna's phone");
    let sessions = dev
        .get(format!("{}/api/sessions", remote.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(sessions.status(), 200);

    // Listed for the owner, and survives a restart (a new store on the file).
    let listed: Value = f
        .get("/api/devices")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["devices"][0]["name"], "Anna's phone");
    assert!(!listed.to_string().contains(&token));
    let reopened = DeviceStore::in_dir(&f._dir.path().join("data"));
    assert_eq!(reopened.authenticate(&token).unwrap().name, "Anna's phone");

    // Audited: the pairing and each request the device made.
    let records = audit_records(&f);
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["device_paired", "remote_request", "remote_request"]);
    assert_eq!(records[2]["path"], "/api/sessions");
    assert_eq!(records[2]["device_name"], "Anna's phone");
    f.server.shutdown().await;
}

#[tokio::test]
async fn the_network_listener_refuses_what_it_must() {
    let f = serve_remote().await;
    let remote = f.server.remote().unwrap().clone();
    let dev = device_client(&f);
    let base = &remote.base_url;
    let port = remote.addr.port();
    let url = format!("{base}/api/sessions");
    // Plain HTTP to the TLS port does not get an answer.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/api/sessions"))
            .await
            .is_err()
    );
    // No token, a wrong one, and the owner's (only good on loopback).
    assert_eq!(dev.get(&url).send().await.unwrap().status(), 401);
    let wrong = dev
        .get(&url)
        .bearer_auth("0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let owner = dev
        .get(&url)
        .bearer_auth(f.server.token())
        .send()
        .await
        .unwrap();
    assert_eq!(owner.status(), 401);

    let token = pair(&f, &dev, "control", "laptop").await;
    let ok = dev.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // Foreign Origin (and an http:// origin for an https listener), foreign Host.
    for origin in [
        "https://evil.example".to_owned(),
        format!("http://127.0.0.1:{port}"),
    ] {
        let r = dev
            .get(&url)
            .bearer_auth(&token)
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let same = dev
        .get(&url)
        .bearer_auth(&token)
        .header("Origin", format!("https://127.0.0.1:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200);
    let rebind = dev
        .get(&url)
        .bearer_auth(&token)
        .header("Host", format!("evil.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(rebind.status(), 403);
    // A device never starts sessions, pairs others or lists devices, even with control.
    let start = dev
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"task": "x", "backend": "host"}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 403);
    let pairing = dev
        .post(format!("{base}/api/pairing"))
        .bearer_auth(&token)
        .json(&json!({"scope": "control"}))
        .send()
        .await
        .unwrap();
    assert_eq!(pairing.status(), 403);
    let devices = dev
        .get(format!("{base}/api/devices"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(devices.status(), 403);
    // The owner listener refuses a device on the owner's routes too.
    let via_loopback = f
        .http
        .get(format!("{}/api/devices", f.base()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(via_loopback.status(), 403);
    // The refusals were audited.
    let refused: Vec<Value> = audit_records(&f)
        .into_iter()
        .filter(|r| r["allowed"] == false)
        .collect();
    assert_eq!(refused.len(), 4, "{refused:#?}");
    f.server.shutdown().await;
}

#[tokio::test]
async fn a_watch_device_cannot_steer_and_a_control_device_can() {
    let f = serve_remote().await;
    let remote = f.server.remote().unwrap().clone();
    let dev = device_client(&f);
    let watcher = pair(&f, &dev, "watch", "wall screen").await;
    let controller = pair(&f, &dev, "control", "phone").await;

    let resp = f
        .post(
            "/api/sessions",
            json!({"task": "Write a report", "backend": "host"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let op = |token: &str, body: Value| {
        dev.post(format!("{}/api/sessions/{id}/ops", remote.base_url))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    // The watcher streams the events over wss, with its token as a subprotocol.
    let mut req = format!(
        "wss://127.0.0.1:{}/api/sessions/{id}/events",
        remote.addr.port()
    )
    .into_client_request()
    .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("cubicle.v1, cubicle.token.{watcher}")
            .parse()
            .unwrap(),
    );
    let pem = std::fs::read(f._dir.path().join("data/tls/127.0.0.1.cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pem_der(&pem).into()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(
            tls,
        ))),
    )
    .await
    .unwrap();

    let mut refused = 0;
    loop {
        let ev = next_event(&mut ws).await.expect("stream closed early");
        let watch_try = match ev["type"].as_str().unwrap() {
            "question" => {
                json!({"type": "answer", "id": ev["id"], "answers": [{"selected": ["EUR"]}]})
            }
            "approval_request" => {
                json!({"type": "approve", "id": ev["id"], "decision": "allow_once"})
            }
            "turn_ended" => break,
            _ => continue,
        };
        // The watcher is refused; the controller is obeyed.
        let r = op(&watcher, watch_try.clone()).await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("watch only"));
        refused += 1;
        let r = op(&controller, watch_try).await.unwrap();
        assert_eq!(r.status(), 202);
    }
    assert_eq!(refused, 2);
    // Messages are not part of control; stop is.
    let msg = op(&controller, json!({"type": "message", "text": "hi"}))
        .await
        .unwrap();
    assert_eq!(msg.status(), 403);
    let stop = op(&watcher, json!({"type": "stop"})).await.unwrap();
    assert_eq!(stop.status(), 403);
    let stop = op(&controller, json!({"type": "stop"})).await.unwrap();
    assert_eq!(stop.status(), 202);
    while next_event(&mut ws).await.is_some() {}

    // Every op a device sent is in the audit log with the verdict.
    let ops: Vec<(String, String, bool)> = audit_records(&f)
        .into_iter()
        .filter(|r| r["kind"] == "remote_op")
        .map(|r| {
            (
                r["device_name"].as_str().unwrap().to_owned(),
                r["op"].as_str().unwrap().to_owned(),
                r["allowed"].as_bool().unwrap(),
            )
        })
        .collect();
    let expect = |n: &str, o: &str, a: bool| (n.to_owned(), o.to_owned(), a);
    assert_eq!(
        ops,
        vec![
            expect("wall screen", "answer", false),
            expect("phone", "answer", true),
            expect("wall screen", "approve", false),
            expect("phone", "approve", true),
            expect("phone", "user_message", false),
            expect("wall screen", "shutdown", false),
            expect("phone", "shutdown", true),
        ]
    );
    let _ = ws.close(None).await;
    f.server.shutdown().await;
}

#[tokio::test]
async fn revoked_tokens_stop_working_at_once() {
    let f = serve_remote().await;
    let remote = f.server.remote().unwrap().clone();
    let dev = device_client(&f);
    let token = pair(&f, &dev, "watch", "old phone").await;
    let url = format!("{}/api/sessions", remote.base_url);
    assert_eq!(
        dev.get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let id = DeviceStore::in_dir(&f._dir.path().join("data"))
        .list()
        .unwrap()[0]
        .id
        .clone();
    let revoked = f
        .http
        .delete(format!("{}/api/devices/{id}", f.base()))
        .bearer_auth(f.server.token())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(
        dev.get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Revoking from outside the server (as `cubicle pair --revoke` does) works too.
    let token2 = pair(&f, &dev, "watch", "tablet").await;
    let store = DeviceStore::in_dir(&f._dir.path().join("data"));
    let id2 = store.list().unwrap()[0].id.clone();
    store.revoke(&id2).unwrap();
    assert_eq!(
        dev.get(&url)
            .bearer_auth(&token2)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let kinds: Vec<String> = audit_records(&f)
        .into_iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .filter(|k| k.starts_with("device_"))
        .collect();
    assert_eq!(kinds, ["device_paired", "device_revoked", "device_paired"]);
    f.server.shutdown().await;
}

#[tokio::test]
async fn pairing_attempts_are_rate_limited() {
    let f = serve_remote().await;
    let remote = f.server.remote().unwrap().clone();
    let dev = device_client(&f);
    let o = offer(&f, "control").await;
    let code = o["code"].as_str().unwrap().replace('-', "");
    let wrong = if code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(redeem(&dev, &remote.base_url, wrong, "guess").await.0);
    }
    assert_eq!(statuses, [403, 403, 403, 403, 403, 429]);
    let limited = dev
        .post(format!("{}/api/pair/redeem", remote.base_url))
        .json(&json!({"code": code, "name": "late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().get("retry-after").is_some());
    // Nothing was paired.
    let listed: Value = f
        .get("/api/devices")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["devices"], json!([]));
    f.server.shutdown().await;
}

#[tokio::test]
async fn without_an_audit_log_devices_are_refused() {
    // `Server::bind` opens no audit log: pairing cannot be recorded, so it fails.
    let f = serve().await;
    let o = offer(&f, "watch").await;
    assert!(o["fingerprint"].is_null());
    let (status, body) = redeem(&f.http, &f.base(), o["code"].as_str().unwrap(), "x").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("audit"));
    assert_eq!(DeviceStore::in_dir(f.store.root()).list().unwrap(), vec![]);
    f.server.shutdown().await;
}

#[tokio::test]
async fn remote_access_needs_an_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = cubicle_agent::Store::at(dir.path());
    let err = cubicle_server::Server::start(cubicle_server::ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        starter: std::sync::Arc::new(TestStarter {
            store: store.clone(),
        }),
        store,
        data_dir: dir.path().to_path_buf(),
        audit: None,
        remote: Some(cubicle_server::RemoteConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
        }),
        policy: None,
        audit_key: None,
        skills: None,
        prefs_dir: None,
        plugins: None,
        settings: None,
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("audit"), "{err}");
}

#[tokio::test]
async fn a_device_cannot_reach_settings_preferences_or_plugins() {
    let f = serve_remote().await;
    let dev = device_client(&f);
    let token = pair(&f, &dev, "control", "phone").await;
    let remote_base = f.server.remote().unwrap().base_url.clone();
    let probes: [(&str, &str, Value); 7] = [
        ("GET", "/api/settings", Value::Null),
        (
            "POST",
            "/api/settings",
            json!({"provider": "openai", "model": "", "base_url": "", "api_key": "stolen"}),
        ),
        ("GET", "/api/skills/any/prefs", Value::Null),
        ("POST", "/api/skills/any/prefs", json!({"set": {"a": "b"}})),
        ("GET", "/api/plugins", Value::Null),
        (
            "POST",
            "/api/plugins/marketplaces",
            json!({"source": "/tmp"}),
        ),
        (
            "POST",
            "/api/plugins/install",
            json!({"spec": "invoices@finance"}),
        ),
    ];
    // On the network listener and, with the device's token, on loopback.
    for (client, base) in [(&dev, remote_base.as_str()), (&f.http, &f.base())] {
        for (method, path, body) in &probes {
            let url = format!("{base}{path}");
            let req = if *method == "GET" {
                client.get(&url)
            } else {
                client.post(&url).json(body)
            };
            let resp = req.bearer_auth(&token).send().await.unwrap();
            assert_eq!(resp.status(), 403, "{method} {url}");
        }
    }
    // Nothing changed.
    let settings: Value = f
        .get("/api/settings")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["api_key_stored"], false);
    assert_eq!(settings["provider"], Value::Null);
    f.server.shutdown().await;
}
