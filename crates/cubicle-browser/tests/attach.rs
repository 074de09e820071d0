//! Attaching to "the person's own Chrome": a headless Chromium started here
//! with `--remote-debugging-port=0`, one tab of its own open, and pages
//! served on loopback. Each test skips, saying why, when Chromium is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cubicle_browser::{Browser, BrowserError, LaunchOptions, SnapshotLimits, find_executable};
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The person's browser: its process and DevTools port.
struct PersonsChrome {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

async fn persons_chrome(first_tab: &str) -> PersonsChrome {
    let program = find_executable(None).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(program);
    cmd.arg("--headless=new")
        .arg("--remote-debugging-port=0")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--no-first-run")
        .arg("--disable-gpu")
        .arg("--disable-dev-shm-usage")
        // The test hosts all live on this machine's test server.
        .arg("--host-resolver-rules=MAP *.test 127.0.0.1")
        .arg(first_tab)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.arg("--no-sandbox");
    }
    let child = cmd.spawn().unwrap();
    let file = profile.path().join("DevToolsActivePort");
    let port = wait_for_port(&file).await;
    PersonsChrome {
        child,
        port,
        _profile: profile,
    }
}

async fn wait_for_port(file: &Path) -> u16 {
    for _ in 0..600 {
        if let Ok(text) = std::fs::read_to_string(file)
            && let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok())
        {
            return port;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Chromium wrote no DevToolsActivePort");
}

/// The browser's page targets, from `/json/list`.
async fn pages(port: u16) -> Vec<Value> {
    let all: Vec<Value> = serde_json::from_str(&devtools(port, "GET", "/json/list").await).unwrap();
    all.into_iter().filter(|t| t["type"] == "page").collect()
}

/// One request to the DevTools HTTP endpoint, as the person's own tools make.
async fn devtools(port: u16, method: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // HTTP/1.1 with the connection kept open: read the body by its length.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let body = loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "DevTools closed the connection");
        answer.extend_from_slice(&chunk[..n]);
        let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if answer.len() >= end + 4 + length {
            break answer[end + 4..end + 4 + length].to_vec();
        }
    };
    String::from_utf8(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_works_in_its_own_tab_inside_the_policy() {
    if !chromium_or_skip("attach_works_in_its_own_tab_inside_the_policy") {
        return;
    }
    let site = site().await;
    let mine = site.url("other.test", "/");
    let mut chrome = persons_chrome(&mine).await;
    let before = pages(chrome.port).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let persons_tab = before[0]["id"].as_str().unwrap().to_owned();

    let b = Browser::attached(
        &format!("http://127.0.0.1:{}", chrome.port),
        LaunchOptions {
            navigation_timeout: Duration::from_secs(20),
            ..LaunchOptions::default()
        },
        Arc::new(ShopOnly),
    )
    .unwrap();
    assert_eq!(b.pid().await, None);

    // An allowed page, in a tab of Cubicle's own.
    let info = b.navigate(&site.url("shop.test", "/form")).await.unwrap();
    assert_eq!(info.title, "Form");
    let snap = b.snapshot(1, SnapshotLimits::default()).await.unwrap();
    assert!(
        snap.text.contains("- heading \"Order\" [level=1]"),
        "{}",
        snap.text
    );
    let tabs = b.tabs().await.unwrap();
    assert_eq!(tabs.len(), 1, "only Cubicle's own tab is listed: {tabs:?}");
    assert!(tabs[0].url.contains("shop.test"), "{tabs:?}");

    // A page whose image and fetch go to a denied host: the page loads,
    // its requests to evil.test never leave the browser.
    let info = b.navigate(&site.url("shop.test", "/inject")).await.unwrap();
    assert_eq!(info.title, "Invoice");
    b.wait_for_text("Invoice 1042", false, Duration::from_secs(5))
        .await
        .unwrap();
    // A frame from another (allowed) site runs in a process of its own;
    // its requests to the denied host are stopped as well.
    b.navigate(&site.url("shop.test", "/framed")).await.unwrap();
    // The frame's page is in another process, out of the page helper's
    // sight: wait for the server to have served it.
    for _ in 0..200 {
        if site
            .seen()
            .iter()
            .any(|s| s.host == "other.test" && s.path == "/tracked")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A popup the page opens to a denied host is stopped too.
    b.navigate(&site.url("shop.test", "/popup")).await.unwrap();
    let snap = b.snapshot(1, SnapshotLimits::default()).await.unwrap().text;
    let line = snap.lines().find(|l| l.contains("Open the offer")).unwrap();
    let start = line.find("[ref=").unwrap() + 5;
    let link = &line[start..start + line[start..].find(']').unwrap()];
    let _ = b.click(link).await;
    let _ = b.tabs().await;
    // A page that navigates itself to a denied host is stopped too.
    let _ = b.navigate(&site.url("shop.test", "/leave")).await;
    // The model's own navigation to a denied host is refused up front.
    let err = b
        .navigate(&site.url("evil.test", "/exfil"))
        .await
        .unwrap_err();
    assert!(matches!(err, BrowserError::Refused(_)), "{err}");
    // Let the page's own requests settle: an evil.test request, had one
    // been let through, reaches the server before the next page is loaded.
    b.navigate(&site.url("shop.test", "/")).await.unwrap();
    let seen = site.seen();
    assert!(
        seen.iter()
            .any(|s| s.host == "shop.test" && s.path == "/inject")
            && seen
                .iter()
                .any(|s| s.host == "other.test" && s.path == "/tracked"),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|s| s.host == "evil.test"),
        "a request to the denied host got out: {seen:?}"
    );

    // A tab the person opens meanwhile is theirs: it loads on its own and
    // is not Cubicle's.
    let theirs_new: Value = serde_json::from_str(
        &devtools(
            chrome.port,
            "PUT",
            &format!("/json/new?{}", site.url("other.test", "/form")),
        )
        .await,
    )
    .unwrap();
    let their_id = theirs_new["id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        if site
            .seen()
            .iter()
            .any(|s| s.host == "other.test" && s.path == "/form")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        site.seen()
            .iter()
            .any(|s| s.host == "other.test" && s.path == "/form"),
        "the person's new tab did not load"
    );
    assert!(
        !b.tabs()
            .await
            .unwrap()
            .iter()
            .any(|t| t.url.contains("other.test"))
    );
    devtools(chrome.port, "GET", &format!("/json/close/{their_id}")).await;
    let _ = pages_settled(chrome.port, 3).await;
    // The person's tab is where they left it.
    let during = pages(chrome.port).await;
    let theirs = during
        .iter()
        .find(|t| t["id"] == persons_tab.as_str())
        .unwrap();
    assert_eq!(theirs["url"], mine.as_str());
    // Every other page is Cubicle's: its tab and the popup its page opened.
    let ours = b.tabs().await.unwrap();
    assert_eq!(ours.len(), 2, "{ours:?}");
    assert_eq!(during.len(), ours.len() + 1, "{during:?}");

    b.shutdown().await;
    // Chrome still runs, with the person's tab only.
    assert!(
        chrome.child.try_wait().unwrap().is_none(),
        "Chrome was stopped"
    );
    let after = pages_settled(chrome.port, 1).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["id"], persons_tab.as_str());
    assert_eq!(after[0]["url"], mine.as_str());
    assert!(
        chrome.child.try_wait().unwrap().is_none(),
        "Chrome was stopped"
    );
}

/// Polls `/json/list` until only `count` page targets remain (closing a tab
/// completes asynchronously in the browser), returning them.
async fn pages_settled(port: u16, count: usize) -> Vec<Value> {
    let mut now = pages(port).await;
    for _ in 0..100 {
        if now.len() == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = pages(port).await;
    }
    now
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_closes_its_tab_and_leaves_chrome() {
    if !chromium_or_skip("a_dropped_session_closes_its_tab_and_leaves_chrome") {
        return;
    }
    let site = site().await;
    let mine = site.url("other.test", "/");
    let mut chrome = persons_chrome(&mine).await;
    let b = Browser::attached(
        &format!("http://127.0.0.1:{}", chrome.port),
        LaunchOptions::default(),
        Arc::new(ShopOnly),
    )
    .unwrap();
    b.navigate(&site.url("shop.test", "/")).await.unwrap();
    assert_eq!(pages(chrome.port).await.len(), 2);
    // A session that ends without `shutdown` (the browser is just dropped).
    drop(b);
    let after = pages_settled(chrome.port, 1).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["url"], mine.as_str());
    assert!(
        chrome.child.try_wait().unwrap().is_none(),
        "Chrome was stopped"
    );
}

#[tokio::test]
async fn a_non_loopback_address_is_refused() {
    for address in ["http://192.0.2.7:9222", "http://devtools.example:9222"] {
        let err =
            Browser::attached(address, LaunchOptions::default(), Arc::new(ShopOnly)).unwrap_err();
        assert!(
            err.to_string().contains("not a loopback address"),
            "{address}: {err}"
        );
    }
}

#[tokio::test]
async fn nothing_listening_is_explained() {
    // A port that was free a moment ago.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let b = Browser::attached(
        &format!("http://127.0.0.1:{port}"),
        LaunchOptions::default(),
        Arc::new(ShopOnly),
    )
    .unwrap();
    let err = b.start().await.unwrap_err().to_string();
    assert!(err.contains("--remote-debugging-port"), "{err}");
}
