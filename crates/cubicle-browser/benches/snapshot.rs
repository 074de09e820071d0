//! Snapshot time and size on a 10,000-element page, and actions per second,
//! against `playwright-core` driving the same Chromium in the same run.
//!
//! `cargo bench -p cubicle-browser --bench snapshot`. The peer runs when
//! `node` is on PATH and `playwright-core` is installed in the folder named by
//! `CUBICLE_PLAYWRIGHT_DIR` (e.g. `npm install playwright-core` in /tmp/pw).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cubicle_browser::{AllowAnyHost, Browser, LaunchOptions, SnapshotLimits, find_executable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RUNS: usize = 15;
const ACTIONS: usize = 60;

fn page() -> String {
    let mut b = String::from("<!doctype html><title>Many</title><h1>Many</h1><p id=count>0</p>");
    for i in 0..2500 {
        b.push_str(&format!("<div><span>Row {i}</span> <a href=\"#r{i}\">open {i}</a> <input aria-label=\"qty {i}\" value=\"{i}\"> <button onclick=\"document.getElementById('count').textContent=+document.getElementById('count').textContent+1\">add {i}</button></div>"));
    }
    b
}

async fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = Arc::new(page());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

const PEER: &str = r#"
const { chromium } = require('playwright-core');
(async () => {
  const [exe, url, runs, actions] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath: exe, args: ['--no-sandbox', '--disable-gpu'] });
  const page = await browser.newPage();
  await page.goto(url);
  const times = []; let size = 0;
  for (let i = 0; i < +runs; i++) {
    const t = performance.now();
    const s = await page.locator('body').ariaSnapshot();
    times.push(performance.now() - t); size = s.length;
  }
  times.sort((a, b) => a - b);
  const buttons = page.getByRole('button');
  const t = performance.now();
  for (let i = 0; i < +actions; i++) await buttons.nth(i).click();
  const secs = (performance.now() - t) / 1000;
  console.log(JSON.stringify({ snapshot_ms: times[times.length >> 1], size, actions_per_s: +actions / secs }));
  await browser.close();
})();
"#;

#[tokio::main]
async fn main() {
    let exe = match find_executable(None) {
        Ok(p) => p,
        Err(e) => {
            println!("skipping the browser bench: {e}");
            return;
        }
    };
    let port = serve().await;
    let url = format!("http://127.0.0.1:{port}/");
    let b = Browser::new(LaunchOptions::default(), Arc::new(AllowAnyHost));
    b.navigate(&url).await.unwrap();
    // Take a big enough page that the whole digest comes back, as Playwright's does.
    let limits = SnapshotLimits {
        page_chars: 10_000_000,
        ..SnapshotLimits::default()
    };
    let mut times = Vec::new();
    let mut size = 0;
    let mut text = String::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let s = b.snapshot(1, limits).await.unwrap();
        times.push(t.elapsed());
        size = s.text.len();
        text = s.text;
    }
    let ours_ms = median(times).as_secs_f64() * 1000.0;
    let refs: Vec<String> = text
        .lines()
        .filter(|l| l.contains("- button"))
        .take(ACTIONS)
        .map(|l| {
            let i = l.find("[ref=").unwrap() + 5;
            l[i..i + l[i..].find(']').unwrap()].to_owned()
        })
        .collect();
    let t = Instant::now();
    for r in &refs {
        b.click(r).await.unwrap();
    }
    let ours_aps = refs.len() as f64 / t.elapsed().as_secs_f64();
    b.shutdown().await;
    println!(
        "cubicle-browser: snapshot {ours_ms:.1} ms (median of {RUNS}), {size} bytes; {ours_aps:.1} clicks/s"
    );

    let Some(dir) = std::env::var_os("CUBICLE_PLAYWRIGHT_DIR") else {
        println!(
            "peer skipped: set CUBICLE_PLAYWRIGHT_DIR to a folder with playwright-core installed"
        );
        return;
    };
    let script = std::path::Path::new(&dir).join("cubicle-bench.js");
    std::fs::write(&script, PEER).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .args([
            exe.display().to_string(),
            url,
            RUNS.to_string(),
            ACTIONS.to_string(),
        ])
        .current_dir(&dir)
        .output()
        .await
        .unwrap();
    if !out.status.success() {
        println!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pw_ms = v["snapshot_ms"].as_f64().unwrap_or(f64::NAN);
    let pw_size = v["size"].as_f64().unwrap_or(f64::NAN);
    let pw_aps = v["actions_per_s"].as_f64().unwrap_or(f64::NAN);
    println!("playwright-core: snapshot {pw_ms:.1} ms, {pw_size} bytes; {pw_aps:.1} clicks/s");
    println!(
        "ratios (cubicle / playwright): snapshot time {:.2}, snapshot size {:.2}, clicks/s {:.2}",
        ours_ms / pw_ms,
        size as f64 / pw_size,
        ours_aps / pw_aps
    );
}
