//! The server over real HTTP and WebSocket on 127.0.0.1: a session started
//! through the API with a scripted model in a `host` cubicle, its events
//! streamed to several clients, a question answered and a permission
//! approved over the API, an output file fetched; then the security probes
//! (token, Origin, Host, path traversal, symlinks out of the workspace).
//! Paired devices are in `remote.rs`, previews and resume in `outputs.rs`,
//! the browser in `browser.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use cubicle_agent::Store;
use cubicle_server::Server;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn a_session_runs_end_to_end_over_the_api() {
    let f = serve().await;
    let resp = f
        .post(
            "/api/sessions",
            json!({"task": "Write a report", "grants": [], "backend": "host", "model": null}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Two browsers on one session.
    let mut a = f.ws(&id).await;
    let mut b = f.ws(&id).await;

    let mut seen_a = Vec::new();
    loop {
        let ev = next_event(&mut a).await.expect("stream closed early");
        match ev["type"].as_str().unwrap() {
            "question" => {
                assert_eq!(ev["questions"][0]["options"][0]["label"], "EUR");
                let st = f
                    .op(
                        &id,
                        json!({"type": "answer", "id": ev["id"], "answers": [{"selected": ["EUR"]}]}),
                    )
                    .await;
                assert_eq!(st, 202);
            }
            "approval_request" => {
                assert_eq!(ev["tool"], "bash");
                assert!(ev["reason"].as_str().unwrap().contains("test rule"));
                let st = f
                    .op(
                        &id,
                        json!({"type": "approve", "id": ev["id"], "decision": "allow_once"}),
                    )
                    .await;
                assert_eq!(st, 202);
            }
            _ => {}
        }
        let end = ev["type"] == "turn_ended";
        seen_a.push(ev);
        if end {
            break;
        }
    }
    assert_eq!(
        seen_a.last().unwrap()["reason"]["kind"],
        "done",
        "{seen_a:#?}"
    );
    let types: Vec<&str> = seen_a.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in [
        "session_started",
        "text_delta",
        "tool_call_started",
        "tool_call_finished",
        "plan",
        "question",
        "approval_request",
    ] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
    let plans: Vec<&Value> = seen_a.iter().filter(|e| e["type"] == "plan").collect();
    assert_eq!(plans.len(), 2);
    assert_eq!(plans[0]["todos"][0]["status"], "in_progress");
    assert!(
        plans[1]["todos"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "completed")
    );

    // The second browser saw exactly the same events, in the same order.
    let seen_b = until_turn_end(&mut b).await;
    assert_eq!(seen_a, seen_b);
    // A browser that joins late gets the replay (token as a query parameter).
    let (mut late, _) =
        tokio_tungstenite::connect_async(format!("{}?token={}", f.ws_url(&id), f.server.token()))
            .await
            .unwrap();
    assert_eq!(until_turn_end(&mut late).await, seen_a);

    // Output files.
    let files: Value = f
        .get(&format!("/api/sessions/{id}/files"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: Vec<&str> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["approved.txt", "report.md"]);
    let file = f
        .get(&format!("/api/sessions/{id}/files/report.md"))
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "application/octet-stream");
    assert!(
        file.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(file.text().await.unwrap(), "# Report\nTotal: 12 EUR\n");

    // History from the transcript.
    let list: Value = f
        .get("/api/sessions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = &list["sessions"][0];
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["live"], true);
    assert_eq!(row["task"], "Write a report");
    let one: Value = f
        .get(&format!("/api/sessions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["header"]["session_id"], id.as_str());
    assert!(one["entries"].as_array().unwrap().len() >= 10);

    // Stop: every stream ends with session_ended, then closes.
    assert_eq!(f.op(&id, json!({"type": "stop"})).await, 202);
    for ws in [&mut a, &mut b] {
        let mut last = None;
        while let Some(ev) = next_event(ws).await {
            last = Some(ev);
        }
        assert_eq!(last.unwrap()["type"], "session_ended");
    }
    // Ops to an ended session are refused.
    let mut status = 0;
    for _ in 0..50 {
        status = f.op(&id, json!({"type": "interrupt"})).await.as_u16();
        if status == 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 409);
    let _ = a.close(None).await;
    f.server.shutdown().await;
}

#[tokio::test]
async fn a_session_that_cannot_start_says_why() {
    let f = serve().await;
    let resp = f
        .post("/api/sessions", json!({"task": "x", "backend": "vm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("not available"));
    let empty = f
        .post("/api/sessions", json!({"task": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    let unknown = f
        .post("/api/sessions", json!({"task": "x", "evil": 1}))
        .send()
        .await
        .unwrap();
    assert!(unknown.status().is_client_error());
    f.server.shutdown().await;
}

#[tokio::test]
async fn a_slash_command_typed_in_the_browser_is_prepared_by_the_front_end() {
    let f = serve().await;
    // An unknown command is refused before anything reaches the model.
    let resp = f
        .post(
            "/api/sessions",
            json!({"task": "/nope now", "backend": "host"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("there is no command /nope")
    );

    let resp = f
        .post(
            "/api/sessions",
            json!({"task": "/shout write a report", "backend": "host"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ws = f.ws(&id).await;
    loop {
        let ev = next_event(&mut ws).await.expect("stream closed early");
        match ev["type"].as_str().unwrap() {
            "question" => {
                f.op(
                    &id,
                    json!({"type": "answer", "id": ev["id"], "answers": [{"selected": ["EUR"]}]}),
                )
                .await;
            }
            "approval_request" => {
                f.op(
                    &id,
                    json!({"type": "approve", "id": ev["id"], "decision": "allow_once"}),
                )
                .await;
            }
            "turn_ended" => break,
            _ => {}
        }
    }
    // A follow-up with an unknown command is refused; nothing is sent.
    let st = f
        .op(&id, json!({"type": "user_message", "text": "/whisper hi"}))
        .await;
    assert_eq!(st, 400);

    let transcript = cubicle_agent::Transcript::load(&f.store.transcript_path(&id)).unwrap();
    let history = serde_json::to_string(&transcript.history()).unwrap();
    assert!(history.contains("WRITE A REPORT"), "{history}");
    assert!(!history.contains("/shout"), "{history}");
    assert!(!history.contains("whisper"), "{history}");
    f.server.shutdown().await;
}

#[tokio::test]
async fn requests_without_the_right_token_are_refused() {
    let f = serve().await;
    let url = format!("{}/api/sessions", f.base());
    assert_eq!(f.http.get(&url).send().await.unwrap().status(), 401);
    let wrong = f
        .http
        .get(&url)
        .bearer_auth("0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let prefix = f
        .http
        .get(&url)
        .bearer_auth(&f.server.token()[..63])
        .send()
        .await
        .unwrap();
    assert_eq!(prefix.status(), 401);
    // The query token is for the page and the event stream, not the API.
    let query = f
        .http
        .get(format!("{url}?token={}", f.server.token()))
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 401);
    let post = f
        .http
        .post(&url)
        .json(&json!({"task": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401);
    assert_eq!(f.get("/api/sessions").send().await.unwrap().status(), 200);
    // Unknown paths need the token too (no probing for routes).
    assert_eq!(
        f.http
            .get(format!("{}/nope", f.base()))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // The page needs the token in its URL.
    assert_eq!(
        f.http
            .get(format!("{}/", f.base()))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let page = f.http.get(f.server.url()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"),
        "{csp}"
    );
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<form id=\"new-form\">")
    );

    // The event stream: no token, a wrong one.
    let id = past_session(&f.store, f._dir.path());
    let err = tokio_tungstenite::connect_async(f.ws_url(&id))
        .await
        .unwrap_err();
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401));
    let mut req = f.ws_url(&id).into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "cubicle.v1, cubicle.token.wrong".parse().unwrap(),
    );
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401));
    f.server.shutdown().await;
}

#[tokio::test]
async fn foreign_origins_and_hosts_are_refused() {
    let f = serve().await;
    let port = f.server.addr().port();
    let url = format!("{}/api/sessions", f.base());
    let with = |name: &'static str, value: String| f.get("/api/sessions").header(name, value);

    // CSRF: another site's page, even with a stolen token, and preflights.
    let evil = with("Origin", "http://evil.example".into())
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    let other_port = with(
        "Origin",
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(other_port.status(), 403);
    assert_eq!(
        with("Origin", "null".into()).send().await.unwrap().status(),
        403
    );
    let preflight = f
        .http
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "http://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 403);
    assert!(
        preflight
            .headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control"))
    );
    assert_eq!(
        with("Sec-Fetch-Site", "cross-site".into())
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    // The same origin is fine, and gets no CORS headers either.
    let same = with("Origin", format!("http://127.0.0.1:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200);
    assert!(
        same.headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control"))
    );
    let localhost = f
        .get("/api/sessions")
        .header("Host", format!("localhost:{port}"))
        .header("Origin", format!("http://localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(localhost.status(), 200);

    // DNS rebinding: a page on evil.example resolved to 127.0.0.1.
    let rebind = with("Host", format!("evil.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(rebind.status(), 403);
    let rebind_page = f
        .http
        .get(f.server.url())
        .header("Host", format!("evil.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(rebind_page.status(), 403);
    assert_eq!(
        with("Host", "127.0.0.1".into())
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    // The WebSocket upgrade is checked too.
    let id = past_session(&f.store, f._dir.path());
    let mut req = format!("{}?token={}", f.ws_url(&id), f.server.token())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 403));
    let mut req = format!("{}?token={}", f.ws_url(&id), f.server.token())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Host", format!("evil.example:{port}").parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 403));
    f.server.shutdown().await;
}

#[tokio::test]
async fn output_files_never_leave_the_workspace() {
    let f = serve().await;
    let id = past_session(&f.store, f._dir.path());
    let ok = f
        .get(&format!("/api/sessions/{id}/files/out.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "a,b\n");
    let listed: Value = f
        .get(&format!("/api/sessions/{id}/files"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["files"], json!([{"path": "out.csv", "size": 4}]));

    for probe in [
        "%2e%2e/%2e%2e/secret.txt",
        "..%2F..%2Fsecret.txt",
        "%2Fetc%2Fpasswd",
        "a/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        ".%2Fout.csv",
        "link.txt",
        "outside/secret.txt",
        "missing.txt",
    ] {
        let r = f
            .get(&format!("/api/sessions/{id}/files/{probe}"))
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!(st == 400 || st == 404, "{probe}: {st}");
        assert!(
            !body.contains("secret") || body.contains("error"),
            "{probe}: {body}"
        );
    }
    // Session ids cannot walk the store either.
    for probe in ["..%2F..%2Fetc", "%2e%2e"] {
        let st = f
            .get(&format!("/api/sessions/{probe}/files"))
            .send()
            .await
            .unwrap()
            .status();
        assert!(st == 400 || st == 404, "{probe}: {st}");
    }
    // A past session is not live: no ops, no stream.
    assert_eq!(f.op(&id, json!({"type": "interrupt"})).await, 404);
    f.server.shutdown().await;
}

#[tokio::test]
async fn only_loopback_addresses_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let starter = Arc::new(TestStarter {
        store: store.clone(),
    });
    let err = Server::bind("0.0.0.0:0".parse().unwrap(), starter, store)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}
