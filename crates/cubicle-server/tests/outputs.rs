//! Output previews, resuming a finished session, and the policy, audit and
//! skills screens' data, over real HTTP and WebSocket on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;

use common::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

fn xlsx(path: &std::path::Path) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, body) in [
        (
            "xl/workbook.xml",
            r#"<workbook><sheets><sheet name="Totals" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml"/></Relationships>"#,
        ),
        (
            "xl/sharedStrings.xml",
            r#"<sst><si><t>Meals</t></si><si><t>Total</t></si></sst>"#,
        ),
        (
            "xl/worksheets/sheet1.xml",
            r#"<worksheet><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1"><v>82.5</v></c></row><row r="3"><c r="A3" t="s"><v>1</v></c><c r="C3"><f>SUM(B1:B2)</f><v>82.5</v></c></row></sheetData></worksheet>"#,
        ),
    ] {
        zip.start_file(name, opts).unwrap();
        zip.write_all(body.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

async fn preview(f: &Fixture, id: &str, path: &str) -> (u16, Value) {
    let r = f
        .get(&format!("/api/sessions/{id}/preview/{path}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn outputs_preview_as_tables_markdown_and_media() {
    let f = serve().await;
    let id = past_session(&f.store, f._dir.path());
    let ws = f.store.workspace_path(&id);
    std::fs::write(ws.join("expenses.csv"), "item,eur\n\"Taxi, airport\",12\n").unwrap();
    std::fs::write(
        ws.join("report.md"),
        "# Report\n\n<script>alert(1)</script>\n\nTotal **12**\n",
    )
    .unwrap();
    std::fs::write(ws.join("chart.png"), b"\x89PNG\r\n\x1a\n").unwrap();
    std::fs::write(ws.join("notes.bin"), b"\0\0").unwrap();
    xlsx(&ws.join("book.xlsx"));

    assert_eq!(
        preview(&f, &id, "expenses.csv").await,
        (
            200,
            json!({"kind": "table", "rows": [["item", "eur"], ["Taxi, airport", "12"]], "truncated": false})
        )
    );
    assert_eq!(
        preview(&f, &id, "book.xlsx").await,
        (
            200,
            json!({"kind": "table", "sheet": "Totals", "truncated": false, "rows": [
                ["Meals", "82.5", ""], ["", "", ""], ["Total", "", "82.5"]
            ]})
        )
    );
    let (status, md) = preview(&f, &id, "report.md").await;
    assert_eq!(status, 200);
    let html = md["html"].as_str().unwrap();
    assert!(
        html.contains("<h1>Report</h1>") && html.contains("<strong>12</strong>"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
    assert_eq!(
        preview(&f, &id, "chart.png").await,
        (200, json!({"kind": "media", "mime": "image/png"}))
    );
    assert_eq!(preview(&f, &id, "notes.bin").await.1["kind"], "none");
    // The same guards as downloads: no escape through a symlink or `..`.
    assert_eq!(preview(&f, &id, "link.txt").await.0, 404);
    assert_eq!(preview(&f, &id, "..%2F..%2Fsecret.txt").await.0, 400);
    f.server.shutdown().await;
}

#[tokio::test]
async fn a_finished_session_resumes_with_its_history() {
    let f = serve().await;
    // Run a session to its end: answer, approve, stop.
    let resp = f
        .post(
            "/api/sessions",
            json!({"task": "Write a report", "backend": "host"}),
        )
        .send()
        .await
        .unwrap();
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ws = f.ws(&id).await;
    loop {
        let ev = next_event(&mut ws).await.unwrap();
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
    assert_eq!(f.op(&id, json!({"type": "stop"})).await, 202);
    while next_event(&mut ws).await.is_some() {}
    let before: Value = f
        .get(&format!("/api/sessions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries_before = before["entries"].as_array().unwrap().len();
    // The pump marks the session ended right after the last event.
    let mut live = true;
    for _ in 0..100 {
        let s: Value = f
            .get(&format!("/api/sessions/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        live = s["live"].as_bool().unwrap();
        if !live {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!live);

    // Unknown ids and bad bodies are refused; a real one comes back to life.
    let unknown = f
        .post("/api/sessions/20990101-000000-none/resume", json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let resumed = f
        .post(
            &format!("/api/sessions/{id}/resume"),
            json!({"message": "Where is the report?"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 201);
    let again = f
        .post(&format!("/api/sessions/{id}/resume"), json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let mut ws = f.ws(&id).await;
    let events = until_turn_end(&mut ws).await;
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "text_delta")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, RESUMED_TEXT);
    // The transcript goes on: the history there, and the new turn after it.
    let after: Value = f
        .get(&format!("/api/sessions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = after["entries"].as_array().unwrap();
    assert!(entries.len() > entries_before, "{after:#}");
    assert!(after.to_string().contains("Where is the report?"));
    assert_eq!(f.op(&id, json!({"type": "stop"})).await, 202);
    while next_event(&mut ws).await.is_some() {}
    f.server.shutdown().await;
}

#[tokio::test]
async fn policy_and_audit_screens_get_their_data() {
    let f = serve_remote().await;
    let policy: Value = f
        .get("/api/policy")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        policy["settings"][0],
        json!({"key": "sandbox.allowed_backends", "value": "[\"jail\", \"vm\"]",
               "origin": "managed (/etc/cubicle/managed.toml:2)"})
    );
    // Two records, then the audit screen: newest first, and the chain verified.
    let offer: Value = f
        .post("/api/pairing", json!({"scope": "watch"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let redeem = f
        .http
        .post(format!("{}/api/pair/redeem", f.base()))
        .json(&json!({"code": offer["code"], "name": "tablet"}))
        .send()
        .await
        .unwrap();
    assert_eq!(redeem.status(), 201);
    let audit: Value = f
        .get("/api/audit?limit=10")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["verify"]["ok"], true, "{audit:#}");
    assert_eq!(audit["verify"]["records"], 1);
    assert_eq!(audit["records"][0]["kind"], "device_paired");
    assert_eq!(audit["records"][0]["detail"]["device_name"], "tablet");

    // An edited record is found.
    let dir = f._dir.path().join("audit");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("tablet", "tablez")).unwrap();
    let audit: Value = f
        .get("/api/audit")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["verify"]["ok"], false, "{audit:#}");
    assert!(audit["verify"]["first_bad"].as_str().unwrap().len() > 10);

    // Without a policy or an audit log, the screens say so.
    let plain = serve().await;
    assert_eq!(plain.get("/api/policy").send().await.unwrap().status(), 404);
    assert_eq!(plain.get("/api/audit").send().await.unwrap().status(), 404);
    plain.server.shutdown().await;
    f.server.shutdown().await;
}

#[tokio::test]
async fn skills_are_listed_and_a_dropped_skill_file_is_imported() {
    let f = serve_remote().await;
    let listed: Value = f
        .get("/api/skills")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["skills"], json!([]));

    // A .skill file made the way `cubicle skill export` makes one.
    let src = f._dir.path().join("src/expense-report");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("SKILL.md"),
        cubicle_skills::scaffold(
            "expense-report",
            Some("Builds expense reports from receipts."),
        ),
    )
    .unwrap();
    let skill = cubicle_skills::Skill::load(&src, cubicle_skills::SkillSource::User).unwrap();
    let archive = f._dir.path().join("expense-report.skill");
    cubicle_skills::export(&skill, &archive, false).unwrap();

    let imported = f
        .http
        .post(format!("{}/api/skills/import", f.base()))
        .bearer_auth(f.server.token())
        .body(std::fs::read(&archive).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 201);
    assert_eq!(
        imported.json::<Value>().await.unwrap()["name"],
        "expense-report"
    );
    let listed: Value = f
        .get("/api/skills")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["skills"][0]["name"], "expense-report");
    assert_eq!(listed["skills"][0]["source"], "user");
    assert_eq!(
        listed["skills"][0]["description"],
        "Builds expense reports from receipts."
    );
    // Junk is refused with the reason.
    let junk = f
        .http
        .post(format!("{}/api/skills/import", f.base()))
        .bearer_auth(f.server.token())
        .body("not a zip")
        .send()
        .await
        .unwrap();
    assert_eq!(junk.status(), 400);
    assert!(junk.text().await.unwrap().len() > 20);
    f.server.shutdown().await;
}
