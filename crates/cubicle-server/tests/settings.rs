//! The settings screen's data (the API key goes in, never out), a skill's
//! private preferences, and installing a plugin from a marketplace with the
//! policy's marketplace lists applied, over real HTTP on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

async fn json_of(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn settings_are_saved_and_the_key_is_never_sent_back() {
    let f = serve_remote().await;
    let before = json_of(f.get("/api/settings").send().await.unwrap(), 200).await;
    assert_eq!(before["api_key_stored"], false);
    assert_eq!(before["providers"], json!(["anthropic", "openai"]));

    let saved = f
        .post(
            "/api/settings",
            json!({
                "provider": "openai",
                "model": "qwen2.5-coder:7b",
                "base_url": "http://127.0.0.1:8080/v1",
                "api_key": "sk-very-secret-123",
            }),
        )
        .send()
        .await
        .unwrap();
    let text = saved.text().await.unwrap();
    assert!(!text.contains("sk-very-secret"), "{text}");
    let saved: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(saved["provider"], "openai");
    assert_eq!(saved["model"], "qwen2.5-coder:7b");
    assert_eq!(saved["api_key_stored"], true);

    let again = f.get("/api/settings").send().await.unwrap();
    let text = again.text().await.unwrap();
    assert!(!text.contains("sk-very-secret"), "{text}");
    assert!(text.contains("\"api_key_stored\":true"), "{text}");

    // Leaving the key out keeps it; asking to clear it removes it.
    let kept = json_of(
        f.post(
            "/api/settings",
            json!({ "provider": "anthropic", "model": "", "base_url": "" }),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(kept["api_key_stored"], true);
    assert_eq!(kept["model"], Value::Null);
    let cleared = json_of(
        f.post(
            "/api/settings",
            json!({ "provider": "anthropic", "model": "", "base_url": "", "clear_api_key": true }),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(cleared["api_key_stored"], false);

    // The store's refusal reaches the person; unknown fields are refused.
    let bad = json_of(
        f.post(
            "/api/settings",
            json!({ "provider": "gpt", "model": "", "base_url": "" }),
        )
        .send()
        .await
        .unwrap(),
        400,
    )
    .await;
    assert!(bad["error"].as_str().unwrap().contains("gpt"), "{bad}");
    let resp = f
        .post(
            "/api/settings",
            json!({ "provider": "", "model": "", "base_url": "", "api_kye": "x" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    f.server.shutdown().await;
}

fn install_skill(f: &Fixture, name: &str) {
    let dir = f._dir.path().join("skills").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("SKILL.md"),
        cubicle_skills::scaffold(name, Some("Builds expense reports.")),
    )
    .unwrap();
}

#[tokio::test]
async fn a_skills_private_preferences_are_edited() {
    let f = serve_remote().await;
    install_skill(&f, "expense-report");
    let empty = json_of(
        f.get("/api/skills/expense-report/prefs")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(empty["entries"], json!([]));

    let set = json_of(
        f.post(
            "/api/skills/expense-report/prefs",
            json!({ "set": { "currency": "EUR", "company": "Acme GmbH" } }),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        set["entries"],
        json!([
            { "key": "company", "value": "Acme GmbH" },
            { "key": "currency", "value": "EUR" },
        ])
    );
    // The file the skill reads when it activates holds them.
    let prefs =
        cubicle_skills::Preferences::load(&f._dir.path().join("preferences"), "expense-report")
            .unwrap();
    assert_eq!(prefs.get("currency").as_deref(), Some("EUR"));

    let unset = json_of(
        f.post(
            "/api/skills/expense-report/prefs",
            json!({ "unset": ["company"] }),
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        unset["entries"],
        json!([{ "key": "currency", "value": "EUR" }])
    );

    // A bad key changes nothing; an unknown skill gets no file.
    let bad = json_of(
        f.post(
            "/api/skills/expense-report/prefs",
            json!({ "set": { "ok": "1", "not ok": "2" } }),
        )
        .send()
        .await
        .unwrap(),
        400,
    )
    .await;
    assert!(bad["error"].as_str().unwrap().contains("not ok"), "{bad}");
    let prefs =
        cubicle_skills::Preferences::load(&f._dir.path().join("preferences"), "expense-report")
            .unwrap();
    assert_eq!(prefs.get("ok"), None);
    let resp = f
        .post("/api/skills/nope/prefs", json!({ "set": { "a": "b" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(!f._dir.path().join("preferences/nope.toml").exists());
    let resp = f.get("/api/skills/..%2Fescape/prefs").send().await.unwrap();
    assert!(resp.status().is_client_error());
    f.server.shutdown().await;
}

#[tokio::test]
async fn a_plugin_is_installed_from_a_marketplace_the_policy_allows() {
    let f = serve_remote().await;
    let listed = json_of(f.get("/api/plugins").send().await.unwrap(), 200).await;
    assert_eq!(listed, json!({ "marketplaces": [], "installed": [] }));

    let market = marketplace(f._dir.path(), "finance");
    let added = json_of(
        f.post(
            "/api/plugins/marketplaces",
            json!({ "source": market.display().to_string() }),
        )
        .send()
        .await
        .unwrap(),
        201,
    )
    .await;
    assert_eq!(added["name"], "finance");
    assert_eq!(added["plugins"][0]["spec"], "invoices@finance");
    assert_eq!(added["plugins"][0]["installed"], false);

    let installed = json_of(
        f.post(
            "/api/plugins/install",
            json!({ "spec": "invoices@finance" }),
        )
        .send()
        .await
        .unwrap(),
        201,
    )
    .await;
    assert_eq!(installed["record"]["plugin"], "invoices");
    assert_eq!(installed["record"]["version"], "1.2.0");
    assert_eq!(installed["skills"], json!(["invoices:file-invoice"]));
    assert!(
        f._dir
            .path()
            .join("plugins/installed/finance/invoices/skills/file-invoice/SKILL.md")
            .is_file()
    );
    let listed = json_of(f.get("/api/plugins").send().await.unwrap(), 200).await;
    assert_eq!(listed["marketplaces"][0]["plugins"][0]["installed"], true);
    assert_eq!(listed["installed"][0]["plugin"], "invoices");

    // Twice is a conflict; an unknown plugin says what the marketplace has.
    let again = f
        .post(
            "/api/plugins/install",
            json!({ "spec": "invoices@finance" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let unknown = json_of(
        f.post("/api/plugins/install", json!({ "spec": "payroll@finance" }))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(
        unknown["error"].as_str().unwrap().contains("invoices"),
        "{unknown}"
    );

    // The policy's block list refuses a marketplace, and nothing is added.
    let blocked = marketplace(f._dir.path(), "blocked-market");
    let refused = json_of(
        f.post(
            "/api/plugins/marketplaces",
            json!({ "source": blocked.display().to_string() }),
        )
        .send()
        .await
        .unwrap(),
        403,
    )
    .await;
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("marketplaces.block"),
        "{refused}"
    );
    let listed = json_of(f.get("/api/plugins").send().await.unwrap(), 200).await;
    assert_eq!(listed["marketplaces"].as_array().unwrap().len(), 1);
    let nonsense = f
        .post(
            "/api/plugins/marketplaces",
            json!({ "source": "not a source" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(nonsense.status(), 400);
    f.server.shutdown().await;
}

#[tokio::test]
async fn without_these_parts_the_routes_say_so() {
    let f = serve().await;
    for path in ["/api/settings", "/api/plugins", "/api/skills/x/prefs"] {
        let resp = f.get(path).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("without"),
            "{path}"
        );
    }
    f.server.shutdown().await;
}
