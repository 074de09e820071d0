//! The browser a session drives: started on first use, restarted after a
//! crash or a hang, one tab current at a time. Every method that touches a
//! page goes through the page helper (`page.js`) in an isolated world, one
//! `Runtime.evaluate` round trip per question.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::process::Child;
use tokio::sync::broadcast::error::RecvError;

use crate::attach;
use crate::cdp::{CdpEvent, CommandSender, Connection};
use crate::error::BrowserError;
use crate::guard::{NavigationGuard, check_url};
use crate::keys::KeyPress;
use crate::launch::{self, LaunchOptions};
use crate::state::{self, DownloadState, LogEntry, LogKind, State};

/// The page helper, an expression whose value is its API object.
const PAGE_JS: &str = include_str!("page.js");
/// Name of the isolated world the helper lives in.
const WORLD: &str = "__cubicle";
/// How long the browser may take to start.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the browser's stderr kept for error messages.
const STDERR_LINES: usize = 20;
/// How long after an action a navigation it caused may take to start.
const SETTLE_GRACE: Duration = Duration::from_millis(100);

/// Bounds of a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotLimits {
    /// Characters per page of output.
    pub page_chars: usize,
    /// Elements walked at most.
    pub max_nodes: usize,
    /// Characters of digest produced at most, over all pages.
    pub max_chars: usize,
    /// Time the walk may take, in milliseconds.
    pub budget_ms: u64,
}

impl Default for SnapshotLimits {
    fn default() -> Self {
        Self {
            page_chars: 12_000,
            max_nodes: 200_000,
            max_chars: 2_000_000,
            budget_ms: 2_000,
        }
    }
}

/// A page that asks for something only the person may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    /// A password field.
    Login,
    /// A CAPTCHA.
    Captcha,
    /// Card or payment fields.
    Payment,
}

/// One page of a page's digest.
#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    /// The page's address.
    pub url: String,
    /// Its title.
    pub title: String,
    /// The digest lines of this page of output.
    pub text: String,
    /// Which page of output this is, from 1.
    pub page: u32,
    /// How many pages of output there are.
    pub pages: u32,
    /// Why the digest stops before the end of the document, if it does.
    pub truncated: Option<String>,
    /// Login, CAPTCHA or payment requests on the page.
    pub gates: Vec<Gate>,
    /// Lines in the whole digest.
    pub lines: u64,
    /// Characters in the whole digest.
    pub chars: u64,
}

/// Text of a page or element, one page of output.
#[derive(Debug, Clone, Deserialize)]
pub struct PageText {
    /// The page's address.
    pub url: String,
    /// Its title.
    pub title: String,
    /// This page of text.
    pub text: String,
    /// Which page, from 1.
    pub page: u32,
    /// How many pages.
    pub pages: u32,
    /// Whether the text was cut at the size limit.
    pub truncated: bool,
}

/// Where a tab is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabInfo {
    /// Cubicle's id for the tab, e.g. `t2`.
    pub id: String,
    /// The address.
    pub url: String,
    /// The title.
    pub title: String,
    /// Whether it is the current tab.
    pub current: bool,
}

/// Where the page is after an action.
#[derive(Debug, Clone, Deserialize)]
pub struct PageInfo {
    /// The address.
    pub url: String,
    /// The title.
    pub title: String,
    /// Login, CAPTCHA or payment requests on the page.
    pub gates: Vec<Gate>,
}

/// A finished download, taken from the browser's download folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedDownload {
    /// The name the site suggested (not yet sanitised).
    pub suggested_name: String,
    /// Where it came from.
    pub url: String,
    /// The file, on the host.
    pub path: PathBuf,
}

/// Where the page scrolled to.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ScrollPosition {
    /// Top of the viewport, in CSS pixels.
    pub y: i64,
    /// Height of the document.
    pub height: i64,
    /// Height of the viewport.
    pub viewport: i64,
}

/// What a click landed on.
#[derive(Debug, Clone, Deserialize)]
struct Point {
    x: f64,
    y: f64,
    label: String,
    text: String,
    #[serde(rename = "type")]
    kind: String,
    form_payment: bool,
    may_navigate: bool,
}

struct Tab {
    id: String,
    target_id: String,
    session: String,
    world: Option<i64>,
}

struct Running {
    /// The process, when Cubicle started it; `None` when attached to the
    /// person's own browser, which Cubicle never stops.
    child: Option<Child>,
    conn: Arc<Connection>,
    state: Arc<Mutex<State>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    tabs: Vec<Tab>,
    current: usize,
    next_tab: u32,
    /// In the person's browser: the targets of Cubicle's tabs and of the
    /// tabs they opened, whose requests are guarded.
    ours: Arc<Mutex<HashSet<String>>>,
    // Dropped last: the profile and downloads go with the browser.
    _profile: tempfile::TempDir,
}

impl Drop for Running {
    /// In the person's browser, Cubicle's tabs go with it (commands queued
    /// before the connection closes are still sent); the browser stays.
    fn drop(&mut self) {
        if self.child.is_some() {
            return;
        }
        for tab in &self.tabs {
            self.conn.sender().fire(
                "Target.closeTarget",
                json!({ "targetId": tab.target_id }),
                None,
            );
        }
        self.conn.close();
    }
}

/// A Chromium instance for one session.
pub struct Browser {
    options: LaunchOptions,
    /// The person's own browser's DevTools address, when attaching to it
    /// instead of starting one.
    attach_to: Option<SocketAddr>,
    guard: Arc<dyn NavigationGuard>,
    running: tokio::sync::Mutex<Option<Running>>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The words of purchase buttons: clicking one is left to the person.
const PURCHASE_WORDS: &[&str] = &[
    "buy now",
    "buy it now",
    "place order",
    "place your order",
    "complete order",
    "complete purchase",
    "confirm order",
    "confirm purchase",
    "confirm payment",
    "submit order",
    "submit payment",
    "pay now",
    "make payment",
    "checkout and pay",
];

fn is_purchase(text: &str) -> bool {
    let t = text.to_lowercase();
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    PURCHASE_WORDS.iter().any(|w| t.contains(w))
        || matches!(
            t.as_str(),
            "pay" | "purchase" | "buy" | "donate" | "subscribe"
        )
        || (t.starts_with("pay ") && t.chars().any(|c| c.is_ascii_digit() || "$€£¥".contains(c)))
}

/// Runs `$body` with `$r` bound to the running browser (started if need
/// be), recovering from crashes and hangs on the way out.
macro_rules! with_browser {
    ($b:ident, |$r:ident| $body:block) => {{
        let mut slot = $b.running.lock().await;
        let result: Result<_, BrowserError> = async {
            let $r = $b.ensure(&mut slot).await?;
            $body
        }
        .await;
        match result {
            Err(e) if e.browser_lost() => Err($b.recover(&mut slot, e).await),
            other => other,
        }
    }};
}

impl Browser {
    /// A browser that starts on first use, under `guard` for navigations.
    pub fn new(options: LaunchOptions, guard: Arc<dyn NavigationGuard>) -> Self {
        Self {
            options,
            attach_to: None,
            guard,
            running: tokio::sync::Mutex::new(None),
        }
    }

    /// A browser that, on first use, attaches to the person's own Chrome at
    /// `address` (`http://127.0.0.1:PORT`, loopback only) instead of starting
    /// one. Cubicle works in tabs of its own, never reads or touches the
    /// person's other tabs, closes only its own tabs at the end and leaves
    /// the browser running. That browser does not use the session's egress
    /// proxy, so every request of Cubicle's tabs is checked against `guard`
    /// inside the browser and failed when the guard refuses its host.
    /// `options.proxy`, `executable` and `headless` do not apply, and
    /// downloads follow the person's browser's own settings.
    pub fn attached(
        address: &str,
        options: LaunchOptions,
        guard: Arc<dyn NavigationGuard>,
    ) -> Result<Self, BrowserError> {
        let addr = attach::parse_address(address)?;
        Ok(Self {
            attach_to: Some(addr),
            ..Self::new(options, guard)
        })
    }

    /// The person's browser's DevTools address, when attaching to it.
    pub fn attached_to(&self) -> Option<SocketAddr> {
        self.attach_to
    }

    /// The launch options.
    pub fn options(&self) -> &LaunchOptions {
        &self.options
    }

    /// Starts the browser now (normally it starts on first use).
    pub async fn start(&self) -> Result<(), BrowserError> {
        let mut slot = self.running.lock().await;
        self.ensure(&mut slot).await.map(|_| ())
    }

    /// Closes the browser and deletes its profile.
    pub async fn shutdown(&self) {
        let mut slot = self.running.lock().await;
        if let Some(mut r) = slot.take() {
            let Some(child) = r.child.as_mut() else {
                // The person's browser: close Cubicle's own tabs only, and
                // the connection (when `r` drops).
                for tab in std::mem::take(&mut r.tabs) {
                    let _ = r
                        .conn
                        .call(
                            "Target.closeTarget",
                            json!({ "targetId": tab.target_id }),
                            None,
                            Duration::from_secs(2),
                        )
                        .await;
                }
                return;
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                r.conn
                    .call("Browser.close", json!({}), None, Duration::from_secs(2)),
            )
            .await;
            let _ = tokio::time::timeout(Duration::from_secs(3), child.wait()).await;
        }
    }

    /// The process id of the running browser, if one runs (for tests and diagnostics).
    pub async fn pid(&self) -> Option<u32> {
        self.running
            .lock()
            .await
            .as_ref()
            .and_then(|r| r.child.as_ref()?.id())
    }

    async fn ensure<'a>(
        &self,
        slot: &'a mut Option<Running>,
    ) -> Result<&'a mut Running, BrowserError> {
        let mut crashed = None;
        if let Some(r) = slot.as_mut() {
            if let Some(why) = r.conn.closed() {
                crashed = Some(why);
            } else if let Some(Ok(Some(status))) = r.child.as_mut().map(Child::try_wait) {
                crashed = Some(format!("the browser exited with {status}"));
            }
        }
        if let Some(why) = crashed {
            *slot = None;
            let detail = why;
            *slot = Some(self.launch().await?);
            return Err(BrowserError::Crashed { detail });
        }
        if slot.is_none() {
            *slot = Some(self.launch().await?);
        }
        slot.as_mut().ok_or_else(|| BrowserError::Crashed {
            detail: "the browser is not running".into(),
        })
    }

    async fn launch(&self) -> Result<Running, BrowserError> {
        if let Some(addr) = self.attach_to {
            return self.attach_running(addr).await;
        }
        let program = launch::find_executable(self.options.executable.as_deref())?;
        let profile = tempfile::Builder::new()
            .prefix("cubicle-browser-")
            .tempdir()
            .map_err(|source| BrowserError::Io {
                context: "creating the browser's profile directory".into(),
                source,
            })?;
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).map_err(|source| BrowserError::Io {
            context: "creating the browser's download directory".into(),
            source,
        })?;
        let args = launch::arguments(&self.options, &profile.path().join("profile"));
        let mut launched = launch::spawn(&program, &args)?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = launched.child.stderr.take() {
            let keep = stderr.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut k = keep
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if k.len() >= STDERR_LINES {
                        k.pop_front();
                    }
                    k.push_back(line);
                }
            });
        }
        let state = Arc::new(Mutex::new(State::new(downloads.clone())));
        let for_events = state.clone();
        let conn = Connection::start(
            launched.reader,
            launched.writer,
            Box::new(move |ev: &CdpEvent, send| state::lock(&for_events).on_event(ev, send)),
        );
        let mut running = Running {
            ours: Arc::default(),
            child: Some(launched.child),
            conn,
            state,
            stderr,
            tabs: Vec::new(),
            current: 0,
            next_tab: 1,
            _profile: profile,
        };
        if let Err(e) = running
            .conn
            .call("Browser.getVersion", json!({}), None, STARTUP_TIMEOUT)
            .await
        {
            // Give a dying browser a moment so that its last words are read.
            let status = match running.child.as_mut() {
                Some(child) => tokio::time::timeout(Duration::from_secs(2), child.wait())
                    .await
                    .ok(),
                None => None,
            };
            let tail: Vec<String> = running
                .stderr
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .cloned()
                .collect();
            let mut detail = match status {
                Some(Ok(s)) => format!("it exited with {s}"),
                _ => format!("it did not answer: {e}"),
            };
            if !tail.is_empty() {
                detail.push_str("; its last output: ");
                detail.push_str(&tail.join(" | "));
            }
            return Err(BrowserError::Launch {
                program: program.display().to_string(),
                detail,
            });
        }
        let t = self.options.call_timeout;
        running
            .conn
            .call(
                "Browser.setDownloadBehavior",
                json!({ "behavior": "allowAndName", "downloadPath": downloads, "eventsEnabled": true }),
                None,
                t,
            )
            .await?;
        let targets = running
            .conn
            .call("Target.getTargets", json!({}), None, t)
            .await?;
        let first = targets["targetInfos"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["type"] == "page")
            .and_then(|i| i["targetId"].as_str())
            .map(str::to_owned);
        let target = match first {
            Some(id) => id,
            None => create_target(&running.conn, t).await?,
        };
        self.attach(&mut running, target).await?;
        Ok(running)
    }

    /// Connects to the person's own browser and opens Cubicle's tab in it.
    async fn attach_running(&self, addr: SocketAddr) -> Result<Running, BrowserError> {
        let ws = attach::connect(addr, STARTUP_TIMEOUT).await?;
        // Downloads keep the person's browser's own settings (see
        // `Browser::attached`); the folder stays empty.
        let profile = tempfile::Builder::new()
            .prefix("cubicle-browser-")
            .tempdir()
            .map_err(|source| BrowserError::Io {
                context: "creating the browser's download directory".into(),
                source,
            })?;
        let state = Arc::new(Mutex::new(State::new(profile.path().to_owned())));
        let for_events = state.clone();
        let guard = self.guard.clone();
        let ours: Arc<Mutex<HashSet<String>>> = Arc::default();
        let known = ours.clone();
        let conn = Connection::start_websocket(
            ws,
            Box::new(move |ev: &CdpEvent, send| {
                match ev.method.as_str() {
                    "Fetch.requestPaused" => filter_request(guard.as_ref(), ev, send),
                    "Target.attachedToTarget" => guard_child(&known, ev, send),
                    _ => {}
                }
                state::lock(&for_events).on_event(ev, send);
            }),
        );
        let t = self.options.call_timeout;
        conn.call("Browser.getVersion", json!({}), None, STARTUP_TIMEOUT)
            .await
            .map_err(|e| BrowserError::Attach {
                address: format!("http://{addr}"),
                detail: format!("the browser did not answer: {e}"),
            })?;
        // New tabs are held as they open, so that a tab one of Cubicle's
        // tabs opens (a link with target=_blank, say) is guarded before its
        // first request; any other is let go at once, untouched.
        conn.call(
            "Target.setAutoAttach",
            json!({
                "autoAttach": true,
                "waitForDebuggerOnStart": true,
                "flatten": true,
                "filter": [{ "type": "page" }],
            }),
            None,
            t,
        )
        .await?;
        let target = create_target(&conn, t).await?;
        let mut running = Running {
            ours,
            child: None,
            conn,
            state,
            stderr: Arc::new(Mutex::new(VecDeque::new())),
            tabs: Vec::new(),
            current: 0,
            next_tab: 1,
            _profile: profile,
        };
        self.attach(&mut running, target).await?;
        Ok(running)
    }

    /// Attaches to a page target, sets it up and makes it the current tab.
    async fn attach(&self, r: &mut Running, target_id: String) -> Result<(), BrowserError> {
        let t = self.options.call_timeout;
        // Known as Cubicle's before the attachment is announced.
        r.ours
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(target_id.clone());
        let attached = r
            .conn
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
                None,
                t,
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| BrowserError::Protocol {
                method: "Target.attachToTarget".into(),
                message: "no sessionId in the answer".into(),
            })?
            .to_owned();
        state::lock(&r.state)
            .main_frames
            .insert(session.clone(), target_id.clone());

        let s = Some(session.as_str());
        let (a, b, c) = tokio::join!(
            r.conn.call("Page.enable", json!({}), s, t),
            r.conn.call("Runtime.enable", json!({}), s, t),
            r.conn.call(
                "Network.enable",
                json!({ "maxTotalBufferSize": 0, "maxResourceBufferSize": 0 }),
                s,
                t
            ),
        );
        a?;
        b?;
        c?;
        if self.attach_to.is_some() {
            // The person's browser is not behind the egress proxy: every
            // request of this tab, and of its out-of-process frames and
            // workers (held at their start until guarded too), waits for
            // the guard's word.
            let (a, b) = tokio::join!(
                r.conn.call("Fetch.enable", fetch_patterns(), s, t),
                r.conn.call("Target.setAutoAttach", auto_attach(), s, t),
            );
            a?;
            b?;
        }
        let id = format!("t{}", r.next_tab);
        r.next_tab += 1;
        r.tabs.push(Tab {
            id,
            target_id,
            session,
            world: None,
        });
        r.current = r.tabs.len() - 1;
        Ok(())
    }

    /// Turns an error into what the model sees, recovering first: a hung
    /// tab is closed, a hung or crashed browser is dropped (and restarted on
    /// the next call).
    async fn recover(&self, slot: &mut Option<Running>, err: BrowserError) -> BrowserError {
        let BrowserError::Hung { method, after, .. } = err else {
            if matches!(err, BrowserError::Crashed { .. }) {
                *slot = None;
            }
            return err;
        };
        let Some(r) = slot.as_mut() else {
            return BrowserError::Hung {
                method,
                after,
                recovery: "the browser was restarted".into(),
            };
        };
        let alive = r
            .conn
            .call(
                "Browser.getVersion",
                json!({}),
                None,
                Duration::from_secs(3),
            )
            .await
            .is_ok();
        if alive && let Some(tab) = r.tabs.get(r.current) {
            let target = tab.target_id.clone();
            let _ = r
                .conn
                .call(
                    "Target.closeTarget",
                    json!({ "targetId": target }),
                    None,
                    Duration::from_secs(5),
                )
                .await;
            let closed = r.tabs.remove(r.current);
            r.current = r.current.saturating_sub(1);
            let mut recovery = format!("tab {} stopped responding and was closed", closed.id);
            if r.tabs.is_empty() {
                match create_target(&r.conn, self.options.call_timeout).await {
                    Ok(t) => {
                        if self.attach(r, t).await.is_err() {
                            *slot = None;
                            recovery.push_str("; the browser was restarted");
                        }
                    }
                    Err(_) => {
                        *slot = None;
                        recovery.push_str("; the browser was restarted");
                    }
                }
            }
            return BrowserError::Hung {
                method,
                after,
                recovery,
            };
        }
        *slot = None;
        BrowserError::Hung {
            method,
            after,
            recovery: "the whole browser stopped responding and was restarted".into(),
        }
    }

    /// Opens `url` in the current tab and waits for it to load.
    pub async fn navigate(&self, url: &str) -> Result<PageInfo, BrowserError> {
        check_url(self.guard.as_ref(), url).map_err(BrowserError::Refused)?;
        with_browser!(self, |r| {
            self.goto(r, url).await?;
            self.info(r).await
        })
    }

    async fn goto(&self, r: &mut Running, url: &str) -> Result<(), BrowserError> {
        let tab = current(r)?;
        let session = tab.session.clone();
        let mut events = r.conn.subscribe();
        let downloads_before = state::lock(&r.state).downloads.len();
        // Page.navigate answers only once the response starts arriving, so
        // a server that never answers shows up here as a timeout.
        let res = match r
            .conn
            .call(
                "Page.navigate",
                json!({ "url": url }),
                Some(&session),
                self.options.navigation_timeout,
            )
            .await
        {
            Ok(res) => res,
            Err(BrowserError::Hung { .. }) => {
                r.conn
                    .call(
                        "Page.stopLoading",
                        json!({}),
                        Some(&session),
                        self.options.call_timeout,
                    )
                    .await?;
                return Err(BrowserError::NavigationTimeout {
                    url: url.to_owned(),
                    after: self.options.navigation_timeout,
                });
            }
            Err(e) => return Err(e),
        };
        if let Some(tab) = r.tabs.get_mut(r.current) {
            tab.world = None;
        }
        if let Some(err) = res["errorText"].as_str().filter(|e| !e.is_empty()) {
            if err.contains("ERR_ABORTED")
                && state::lock(&r.state).downloads.len() > downloads_before
            {
                return Ok(());
            }
            return Err(BrowserError::Navigation {
                url: url.to_owned(),
                reason: explain_net_error(err),
            });
        }
        if res.get("loaderId").is_none() {
            return Ok(());
        }
        self.wait_load(r, &session, &mut events, url).await
    }

    async fn wait_load(
        &self,
        r: &mut Running,
        session: &str,
        events: &mut tokio::sync::broadcast::Receiver<Arc<CdpEvent>>,
        url: &str,
    ) -> Result<(), BrowserError> {
        let deadline = tokio::time::Instant::now() + self.options.navigation_timeout;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(ev)) => {
                    if ev.session_id.as_deref() == Some(session)
                        && matches!(
                            ev.method.as_str(),
                            "Page.loadEventFired" | "Page.navigatedWithinDocument"
                        )
                    {
                        return Ok(());
                    }
                    if ev.method == "Inspector.targetCrashed"
                        && ev.session_id.as_deref() == Some(session)
                    {
                        return Err(BrowserError::Navigation {
                            url: url.to_owned(),
                            reason: "the tab crashed while loading it".into(),
                        });
                    }
                }
                Ok(Err(RecvError::Lagged(_))) => {
                    if !state::lock(&r.state).loading.contains(session) {
                        return Ok(());
                    }
                }
                Ok(Err(RecvError::Closed)) => {
                    return Err(BrowserError::Crashed {
                        detail: r
                            .conn
                            .closed()
                            .unwrap_or_else(|| "the DevTools connection closed".into()),
                    });
                }
                Err(_) => {
                    let _ = r
                        .conn
                        .call(
                            "Page.stopLoading",
                            json!({}),
                            Some(session),
                            Duration::from_secs(5),
                        )
                        .await;
                    return Err(BrowserError::NavigationTimeout {
                        url: url.to_owned(),
                        after: self.options.navigation_timeout,
                    });
                }
            }
        }
    }

    /// Waits for a load the page started on its own (a form posted, a link
    /// followed) after an action, without failing if it takes too long.
    /// `events` must have been subscribed before the action.
    async fn settle(
        &self,
        r: &mut Running,
        mut events: tokio::sync::broadcast::Receiver<Arc<CdpEvent>>,
        grace: Duration,
    ) -> Result<(), BrowserError> {
        let session = current(r)?.session.clone();
        // One round trip through the renderer, so that what the action
        // caused has been sent; then a short grace for the browser side.
        r.conn
            .call(
                "Runtime.evaluate",
                json!({ "expression": "0" }),
                Some(&session),
                self.options.call_timeout,
            )
            .await?;
        let grace = tokio::time::Instant::now() + grace;
        let mut navigating = state::lock(&r.state).loading.contains(&session);
        while !navigating {
            match tokio::time::timeout_at(grace, events.recv()).await {
                Ok(Ok(ev)) => {
                    navigating = ev.session_id.as_deref() == Some(session.as_str())
                        && matches!(
                            ev.method.as_str(),
                            "Page.frameRequestedNavigation"
                                | "Page.frameStartedLoading"
                                | "Page.frameScheduledNavigation"
                                | "Page.frameStartedNavigating"
                        )
                        && ev.params["frameId"] == r.tabs[r.current].target_id.as_str();
                }
                Ok(Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) | Err(_) => break,
            }
        }
        if navigating {
            if let Some(tab) = r.tabs.get_mut(r.current) {
                tab.world = None;
            }
            match self.wait_load(r, &session, &mut events, "the page").await {
                Ok(()) | Err(BrowserError::NavigationTimeout { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits for a page that is still loading (for reads).
    async fn settle_now(&self, r: &mut Running) -> Result<(), BrowserError> {
        let events = r.conn.subscribe();
        self.settle(r, events, Duration::ZERO).await
    }

    /// Calls the page helper in the current tab's isolated world.
    async fn page_call(&self, r: &mut Running, call: &str) -> Result<Value, BrowserError> {
        let session = current(r)?.session.clone();
        if state::lock(&r.state).crashed.contains(&session) {
            return Err(BrowserError::Hung {
                method: "Runtime.evaluate".into(),
                after: Duration::ZERO,
                recovery: "the tab crashed".into(),
            });
        }
        let expression = format!("({PAGE_JS}).{call}");
        for attempt in 0..2 {
            let world = match current(r)?.world {
                Some(w) => w,
                None => {
                    let w = self.create_world(r, &session).await?;
                    if let Some(tab) = r.tabs.get_mut(r.current) {
                        tab.world = Some(w);
                    }
                    w
                }
            };
            let res = r
                .conn
                .call(
                    "Runtime.evaluate",
                    json!({ "expression": expression, "contextId": world, "returnByValue": true }),
                    Some(&session),
                    self.options.call_timeout,
                )
                .await;
            match res {
                Ok(v) => {
                    if let Some(ex) = v.get("exceptionDetails") {
                        let text = ex
                            .get("exception")
                            .and_then(|e| e.get("description"))
                            .and_then(Value::as_str)
                            .or_else(|| ex.get("text").and_then(Value::as_str))
                            .unwrap_or("unknown error");
                        return Err(BrowserError::Protocol {
                            method: "Runtime.evaluate".into(),
                            message: text.to_owned(),
                        });
                    }
                    let value = v["result"]["value"].clone();
                    if let Some(e) = value.get("error").and_then(Value::as_str) {
                        return Err(BrowserError::Element(e.to_owned()));
                    }
                    return Ok(value);
                }
                Err(BrowserError::Protocol { message, .. })
                    if attempt == 0
                        && (message.contains("context") || message.contains("Context")) =>
                {
                    // The document changed under us: a new world, once.
                    if let Some(tab) = r.tabs.get_mut(r.current) {
                        tab.world = None;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(BrowserError::Protocol {
            method: "Runtime.evaluate".into(),
            message: "the page keeps changing; try again".into(),
        })
    }

    async fn create_world(&self, r: &mut Running, session: &str) -> Result<i64, BrowserError> {
        let frame = r.tabs[r.current].target_id.clone();
        let res = r
            .conn
            .call(
                "Page.createIsolatedWorld",
                json!({ "frameId": frame, "worldName": WORLD, "grantUniveralAccess": false }),
                Some(session),
                self.options.call_timeout,
            )
            .await?;
        res["executionContextId"]
            .as_i64()
            .ok_or_else(|| BrowserError::Protocol {
                method: "Page.createIsolatedWorld".into(),
                message: "no executionContextId in the answer".into(),
            })
    }

    async fn info(&self, r: &mut Running) -> Result<PageInfo, BrowserError> {
        let v = self.page_call(r, "info()").await?;
        decode(v)
    }

    /// The page's digest: one page of output, `page` counting from 1.
    pub async fn snapshot(
        &self,
        page: u32,
        limits: SnapshotLimits,
    ) -> Result<Snapshot, BrowserError> {
        let call = format!(
            "snapshot({})",
            json!({
                "page": page.max(1),
                "pageChars": limits.page_chars,
                "maxNodes": limits.max_nodes,
                "maxChars": limits.max_chars,
                "budgetMs": limits.budget_ms,
            })
        );
        with_browser!(self, |r| {
            self.settle_now(r).await?;
            decode(self.page_call(r, &call).await?)
        })
    }

    /// Visible text of the page or of one element.
    pub async fn text(
        &self,
        element: Option<&str>,
        page: u32,
        page_chars: usize,
    ) -> Result<PageText, BrowserError> {
        let call = format!(
            "text({})",
            json!({ "ref": element, "page": page.max(1), "pageChars": page_chars, "maxChars": 2_000_000 })
        );
        with_browser!(self, |r| { decode(self.page_call(r, &call).await?) })
    }

    /// Clicks an element with a real mouse event at its centre.
    pub async fn click(&self, element: &str) -> Result<PageInfo, BrowserError> {
        let call = format!("point({})", json!(element));
        with_browser!(self, |r| {
            let p: Point = decode(self.page_call(r, &call).await?)?;
            let purchase = is_purchase(&p.text) || is_purchase(&p.label);
            let pays = p.form_payment && matches!(p.kind.as_str(), "submit" | "image");
            if purchase || pays {
                return Err(BrowserError::Refused(format!(
                    "{} looks like it completes a purchase or payment. Cubicle never buys or pays on the person's behalf: stop here and ask the person to finish this step themselves.",
                    p.label
                )));
            }
            let s = current(r)?.session.clone();
            let t = self.options.call_timeout;
            let events = r.conn.subscribe();
            let mouse = |kind: &str| json!({ "type": kind, "x": p.x, "y": p.y, "button": "left", "buttons": if kind == "mouseReleased" { 0 } else { 1 }, "clickCount": 1 });
            let moved = r.conn.call(
                "Input.dispatchMouseEvent",
                json!({ "type": "mouseMoved", "x": p.x, "y": p.y }),
                Some(&s),
                t,
            );
            let pressed = r.conn.call(
                "Input.dispatchMouseEvent",
                mouse("mousePressed"),
                Some(&s),
                t,
            );
            let released = r.conn.call(
                "Input.dispatchMouseEvent",
                mouse("mouseReleased"),
                Some(&s),
                t,
            );
            let (a, c, d) = tokio::join!(moved, pressed, released);
            a?;
            c?;
            d?;
            self.settle(
                r,
                events,
                if p.may_navigate {
                    SETTLE_GRACE
                } else {
                    Duration::ZERO
                },
            )
            .await?;
            self.info(r).await
        })
    }

    /// Types `text` into a text field, replacing its content when `clear`,
    /// then presses Enter when `submit`.
    pub async fn type_text(
        &self,
        element: &str,
        text: &str,
        clear: bool,
        submit: bool,
    ) -> Result<PageInfo, BrowserError> {
        let call = format!("focus({}, {})", json!(element), json!(clear));
        with_browser!(self, |r| {
            let events = r.conn.subscribe();
            let v = self.page_call(r, &call).await?;
            if let Some(kind) = v.get("refused").and_then(Value::as_str) {
                let label = v["label"].as_str().unwrap_or("the field");
                let what = if kind == "password" {
                    "passwords"
                } else {
                    "card or payment details"
                };
                return Err(BrowserError::Refused(format!(
                    "{label} asks for {what}. Cubicle never types {what}: stop and ask the person to sign in or pay themselves, then continue."
                )));
            }
            let s = current(r)?.session.clone();
            let t = self.options.call_timeout;
            if !text.is_empty() {
                r.conn
                    .call("Input.insertText", json!({ "text": text }), Some(&s), t)
                    .await?;
            } else if clear {
                let del = KeyPress::parse("Delete").map_err(BrowserError::Invalid)?;
                self.dispatch_key(r, &del).await?;
            }
            if submit {
                let enter = KeyPress::parse("Enter").map_err(BrowserError::Invalid)?;
                self.dispatch_key(r, &enter).await?;
            }
            self.settle(
                r,
                events,
                if submit { SETTLE_GRACE } else { Duration::ZERO },
            )
            .await?;
            self.info(r).await
        })
    }

    /// Chooses options of a `<select>` by value or label; returns the labels chosen.
    pub async fn select(
        &self,
        element: &str,
        values: &[String],
    ) -> Result<Vec<String>, BrowserError> {
        let call = format!("select({}, {})", json!(element), json!(values));
        with_browser!(self, |r| {
            let events = r.conn.subscribe();
            let v = self.page_call(r, &call).await?;
            self.settle(r, events, Duration::ZERO).await?;
            Ok(v["selected"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect())
        })
    }

    /// Presses a key or chord such as `Enter` or `Control+A`.
    pub async fn press_key(&self, key: &str) -> Result<PageInfo, BrowserError> {
        let press = KeyPress::parse(key).map_err(BrowserError::Invalid)?;
        with_browser!(self, |r| {
            let events = r.conn.subscribe();
            self.dispatch_key(r, &press).await?;
            self.settle(r, events, SETTLE_GRACE).await?;
            self.info(r).await
        })
    }

    async fn dispatch_key(&self, r: &mut Running, press: &KeyPress) -> Result<(), BrowserError> {
        let s = current(r)?.session.clone();
        let t = self.options.call_timeout;
        let (down, up) = press.events();
        let a = r.conn.call("Input.dispatchKeyEvent", down, Some(&s), t);
        let c = r.conn.call("Input.dispatchKeyEvent", up, Some(&s), t);
        let (a, c) = tokio::join!(a, c);
        a?;
        c?;
        Ok(())
    }

    /// Scrolls an element into view, or the page by `pages` viewport heights.
    pub async fn scroll(
        &self,
        element: Option<&str>,
        pages: f64,
    ) -> Result<ScrollPosition, BrowserError> {
        let call = format!("scroll({}, {})", json!(element), json!(pages));
        with_browser!(self, |r| { decode(self.page_call(r, &call).await?) })
    }

    /// Waits until `text` appears (or, with `gone`, disappears) on the page.
    pub async fn wait_for_text(
        &self,
        text: &str,
        gone: bool,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        let call = format!("contains({})", json!(text));
        let start = Instant::now();
        loop {
            let found = with_browser!(self, |r| {
                Ok(self.page_call(r, &call).await?.as_bool() == Some(true))
            })?;
            if found != gone {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(BrowserError::Invalid(format!(
                    "{text:?} did not {} within {} s; take a snapshot to see what the page shows",
                    if gone { "disappear" } else { "appear" },
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Goes back one page in the current tab's history.
    pub async fn back(&self) -> Result<PageInfo, BrowserError> {
        with_browser!(self, |r| {
            let s = current(r)?.session.clone();
            let t = self.options.call_timeout;
            let h = r
                .conn
                .call("Page.getNavigationHistory", json!({}), Some(&s), t)
                .await?;
            let index = h["currentIndex"].as_u64().unwrap_or(0) as usize;
            if index == 0 {
                return Err(BrowserError::Invalid(
                    "there is no earlier page in this tab's history".into(),
                ));
            }
            let entry = &h["entries"][index - 1];
            let url = entry["url"].as_str().unwrap_or("").to_owned();
            check_url(self.guard.as_ref(), &url).map_err(BrowserError::Refused)?;
            let mut events = r.conn.subscribe();
            r.conn
                .call(
                    "Page.navigateToHistoryEntry",
                    json!({ "entryId": entry["id"] }),
                    Some(&s),
                    t,
                )
                .await?;
            if let Some(tab) = r.tabs.get_mut(r.current) {
                tab.world = None;
            }
            self.wait_load(r, &s, &mut events, &url).await?;
            self.info(r).await
        })
    }

    /// The open tabs, adopting any a page opened on its own.
    pub async fn tabs(&self) -> Result<Vec<TabInfo>, BrowserError> {
        with_browser!(self, |r| { self.list_tabs(r).await })
    }

    async fn list_tabs(&self, r: &mut Running) -> Result<Vec<TabInfo>, BrowserError> {
        let t = self.options.call_timeout;
        let targets = r.conn.call("Target.getTargets", json!({}), None, t).await?;
        let infos: Vec<Value> = targets["targetInfos"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i["type"] == "page")
            .collect();
        // Tabs a page opened (window.open, target=_blank) become ours too.
        let current = r.current;
        for i in &infos {
            let id = i["targetId"].as_str().unwrap_or_default().to_owned();
            // Ours are attached; a tab we just closed may still be listed.
            let mut adoptable = i["attached"] == false;
            if self.attach_to.is_some() {
                // In the person's browser, only tabs Cubicle's own tabs opened.
                adoptable = i["openerId"]
                    .as_str()
                    .is_some_and(|o| r.tabs.iter().any(|t| t.target_id == o));
            }
            if adoptable && !id.is_empty() && !r.tabs.iter().any(|t| t.target_id == id) {
                // A tab closing as we look is no tab of ours.
                match self.attach(r, id).await {
                    Ok(()) | Err(BrowserError::Protocol { .. }) => {}
                    Err(e) => return Err(e),
                }
                r.current = current;
            }
        }
        r.tabs.retain(|tab| {
            infos
                .iter()
                .any(|i| i["targetId"] == tab.target_id.as_str())
        });
        r.current = r.current.min(r.tabs.len().saturating_sub(1));
        Ok(r.tabs
            .iter()
            .enumerate()
            .map(|(n, tab)| {
                let info = infos
                    .iter()
                    .find(|i| i["targetId"] == tab.target_id.as_str());
                let field = |k: &str| info.and_then(|i| i[k].as_str()).unwrap_or("").to_owned();
                TabInfo {
                    id: tab.id.clone(),
                    url: field("url"),
                    title: field("title"),
                    current: n == r.current,
                }
            })
            .collect())
    }

    /// Opens a new tab (at `url`, if given) and makes it current.
    pub async fn new_tab(&self, url: Option<&str>) -> Result<Vec<TabInfo>, BrowserError> {
        if let Some(u) = url {
            check_url(self.guard.as_ref(), u).map_err(BrowserError::Refused)?;
        }
        with_browser!(self, |r| {
            let target = create_target(&r.conn, self.options.call_timeout).await?;
            self.attach(r, target).await?;
            if let Some(u) = url {
                self.goto(r, u).await?;
            }
            self.list_tabs(r).await
        })
    }

    /// Makes tab `id` current.
    pub async fn switch_tab(&self, id: &str) -> Result<Vec<TabInfo>, BrowserError> {
        with_browser!(self, |r| {
            self.list_tabs(r).await?;
            let n = tab_index(r, id)?;
            r.current = n;
            let target = r.tabs[n].target_id.clone();
            r.conn
                .call(
                    "Target.activateTarget",
                    json!({ "targetId": target }),
                    None,
                    self.options.call_timeout,
                )
                .await?;
            self.list_tabs(r).await
        })
    }

    /// Closes tab `id`; closing the last tab leaves a blank one.
    pub async fn close_tab(&self, id: &str) -> Result<Vec<TabInfo>, BrowserError> {
        with_browser!(self, |r| {
            self.list_tabs(r).await?;
            let n = tab_index(r, id)?;
            let t = self.options.call_timeout;
            let target = r.tabs[n].target_id.clone();
            if r.tabs.len() == 1 {
                let fresh = create_target(&r.conn, t).await?;
                self.attach(r, fresh).await?;
            }
            r.conn
                .call("Target.closeTarget", json!({ "targetId": target }), None, t)
                .await?;
            let was_current = r.tabs[n].id == current(r)?.id;
            r.tabs.remove(n);
            if was_current || r.current >= r.tabs.len() {
                r.current = r.tabs.len().saturating_sub(1);
            } else if n < r.current {
                r.current -= 1;
            }
            self.list_tabs(r).await
        })
    }

    /// A PNG of the viewport, or of the whole page (up to 16,384 px tall).
    pub async fn screenshot(&self, full_page: bool) -> Result<Vec<u8>, BrowserError> {
        with_browser!(self, |r| {
            self.settle_now(r).await?;
            let s = current(r)?.session.clone();
            let t = self.options.call_timeout;
            let mut params = json!({ "format": "png" });
            if full_page {
                let m = r
                    .conn
                    .call("Page.getLayoutMetrics", json!({}), Some(&s), t)
                    .await?;
                let size = &m["cssContentSize"];
                let w = size["width"].as_f64().unwrap_or(1280.0).min(4096.0);
                let h = size["height"].as_f64().unwrap_or(800.0).min(16_384.0);
                params = json!({ "format": "png", "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 } });
            }
            let v = r
                .conn
                .call("Page.captureScreenshot", params, Some(&s), t)
                .await?;
            let data = v["data"].as_str().unwrap_or("");
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| BrowserError::Protocol {
                    method: "Page.captureScreenshot".into(),
                    message: format!("the image is not base64: {e}"),
                })
        })
    }

    /// The current tab's console or network log (or both), optionally cleared.
    pub async fn logs(
        &self,
        kind: Option<LogKind>,
        clear: bool,
    ) -> Result<Vec<LogEntry>, BrowserError> {
        with_browser!(self, |r| {
            let s = current(r)?.session.clone();
            Ok(state::lock(&r.state).logs(&s, kind, clear))
        })
    }

    /// Downloads that finished since the last call, waiting up to `wait` for
    /// those still arriving. Each is handed out once.
    pub async fn take_downloads(
        &self,
        wait: Duration,
    ) -> Result<(Vec<FinishedDownload>, Vec<String>), BrowserError> {
        let deadline = Instant::now() + wait;
        loop {
            let (done, pending) = {
                let slot = self.running.lock().await;
                let Some(r) = slot.as_ref() else {
                    return Ok((Vec::new(), Vec::new()));
                };
                let mut st = state::lock(&r.state);
                let pending = st
                    .downloads
                    .iter()
                    .filter(|(_, d)| !d.taken && d.state == DownloadState::InProgress)
                    .count();
                if pending > 0 && Instant::now() < deadline {
                    (None, pending)
                } else {
                    let mut done = Vec::new();
                    let mut failed = Vec::new();
                    for (_, d) in st.downloads.iter_mut().filter(|(_, d)| !d.taken) {
                        match d.state {
                            DownloadState::Completed => {
                                d.taken = true;
                                done.push(FinishedDownload {
                                    suggested_name: d.suggested_name.clone(),
                                    url: d.url.clone(),
                                    path: d.path.clone(),
                                });
                            }
                            DownloadState::Canceled => {
                                d.taken = true;
                                failed.push(format!("{} (cancelled or failed)", d.suggested_name));
                            }
                            DownloadState::InProgress => {
                                failed.push(format!("{} (still downloading)", d.suggested_name));
                            }
                        }
                    }
                    (Some((done, failed)), 0)
                }
            };
            if let Some(r) = done {
                return Ok(r);
            }
            let _ = pending;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What `Fetch.enable` intercepts in the person's browser: everything.
fn fetch_patterns() -> Value {
    json!({ "patterns": [{ "urlPattern": "*", "requestStage": "Request" }] })
}

/// Attaches to a tab's frames and workers as they start, held until set up.
fn auto_attach() -> Value {
    json!({ "autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true })
}

/// Guards a frame or worker of one of Cubicle's tabs, or a tab one of them
/// opened, attached as it started (the commands go out in order, before it
/// runs), and its own children in turn. A tab of the person's is let go.
fn guard_child(ours: &Mutex<HashSet<String>>, ev: &CdpEvent, send: &CommandSender) {
    let Some(child) = ev.params["sessionId"].as_str() else {
        return;
    };
    let info = &ev.params["targetInfo"];
    if ev.session_id.is_none() {
        // A page, held by the browser-wide auto-attach (or Cubicle's own
        // attachment to one of its tabs).
        let waiting = ev.params["waitingForDebugger"] == true;
        let mut ours = ours
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if info["targetId"].as_str().is_some_and(|t| ours.contains(t)) {
            // Cubicle's own attachment to one of its tabs, set up in `attach`.
            if waiting {
                send.fire("Runtime.runIfWaitingForDebugger", json!({}), Some(child));
            }
            return;
        }
        let opened_by_ours = info["openerId"].as_str().is_some_and(|o| ours.contains(o));
        if !opened_by_ours {
            // The person's tab (or Cubicle's next one, before it is known):
            // let it run and let go of it.
            if waiting {
                send.fire("Runtime.runIfWaitingForDebugger", json!({}), Some(child));
            }
            send.fire(
                "Target.detachFromTarget",
                json!({ "sessionId": child }),
                None,
            );
            return;
        }
        if let Some(id) = info["targetId"].as_str() {
            ours.insert(id.to_owned());
        }
    }
    let child = Some(child);
    send.fire("Fetch.enable", fetch_patterns(), child);
    send.fire("Target.setAutoAttach", auto_attach(), child);
    send.fire("Runtime.runIfWaitingForDebugger", json!({}), child);
}

/// Lets a paused request of one of Cubicle's tabs in the person's browser
/// go on when the guard allows its host, and fails it otherwise.
fn filter_request(guard: &dyn NavigationGuard, ev: &CdpEvent, send: &CommandSender) {
    let Some(id) = ev.params["requestId"].as_str() else {
        return;
    };
    let url = ev.params["request"]["url"].as_str().unwrap_or_default();
    let session = ev.session_id.as_deref();
    if request_allowed(guard, url) {
        send.fire("Fetch.continueRequest", json!({ "requestId": id }), session);
    } else {
        tracing::info!(url, "blocked a request of the browser sub-agent's tab");
        send.fire(
            "Fetch.failRequest",
            json!({ "requestId": id, "errorReason": "BlockedByClient" }),
            session,
        );
    }
}

/// Whether a request's URL may be fetched: http(s) and WebSocket requests
/// to hosts the guard allows; data and blob URLs carry no host.
fn request_allowed(guard: &dyn NavigationGuard, url: &str) -> bool {
    let scheme = url
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    match scheme.as_str() {
        "http" | "https" | "ws" | "wss" => {
            cubicle_policy::host_of_url(url).is_some_and(|host| guard.check_host(&host).is_ok())
        }
        "data" | "blob" => true,
        _ => false,
    }
}

fn current(r: &Running) -> Result<&Tab, BrowserError> {
    r.tabs
        .get(r.current)
        .ok_or_else(|| BrowserError::Invalid("no tab is open; open one with browser_tabs".into()))
}

fn tab_index(r: &Running, id: &str) -> Result<usize, BrowserError> {
    r.tabs.iter().position(|t| t.id == id).ok_or_else(|| {
        let ids: Vec<&str> = r.tabs.iter().map(|t| t.id.as_str()).collect();
        BrowserError::Invalid(format!(
            "there is no tab {id:?}; the open tabs are {}",
            ids.join(", ")
        ))
    })
}

async fn create_target(conn: &Connection, t: Duration) -> Result<String, BrowserError> {
    let v = conn
        .call(
            "Target.createTarget",
            json!({ "url": "about:blank" }),
            None,
            t,
        )
        .await?;
    v["targetId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| BrowserError::Protocol {
            method: "Target.createTarget".into(),
            message: "no targetId in the answer".into(),
        })
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, BrowserError> {
    serde_json::from_value(v).map_err(|e| BrowserError::Protocol {
        method: "Runtime.evaluate".into(),
        message: format!("unexpected answer from the page helper: {e}"),
    })
}

/// Chromium's network error codes, in words that say what to do.
fn explain_net_error(code: &str) -> String {
    let why = match code {
        "net::ERR_TUNNEL_CONNECTION_FAILED" | "net::ERR_PROXY_CONNECTION_FAILED" => {
            "the egress proxy refused the connection (the network policy does not allow this site, or it could not be reached)"
        }
        "net::ERR_NAME_NOT_RESOLVED" => "the site's name does not resolve",
        "net::ERR_CONNECTION_REFUSED" => "the site refused the connection",
        "net::ERR_CONNECTION_TIMED_OUT" | "net::ERR_TIMED_OUT" => "the site did not answer in time",
        "net::ERR_CERT_AUTHORITY_INVALID" | "net::ERR_CERT_COMMON_NAME_INVALID" => {
            "the site's certificate is not valid"
        }
        "net::ERR_BLOCKED_BY_CLIENT" | "net::ERR_BLOCKED_BY_RESPONSE" => "the page was blocked",
        _ => "",
    };
    if why.is_empty() {
        code.to_owned()
    } else {
        format!("{why} ({code})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_follow_the_guard() {
        struct Only;
        impl NavigationGuard for Only {
            fn check_host(&self, host: &str) -> Result<(), String> {
                if host == "shop.test" {
                    Ok(())
                } else {
                    Err("no".into())
                }
            }
        }
        assert!(request_allowed(&Only, "https://shop.test/a.js"));
        assert!(request_allowed(&Only, "wss://shop.test/live"));
        assert!(request_allowed(&Only, "data:image/png;base64,AAAA"));
        assert!(!request_allowed(&Only, "https://evil.test/pixel.gif"));
        assert!(!request_allowed(&Only, "http://shop.test@evil.test/"));
        assert!(!request_allowed(&Only, "ftp://shop.test/file"));
        assert!(!request_allowed(&Only, "file:///etc/passwd"));
    }

    #[test]
    fn purchases_are_recognised() {
        for yes in [
            "Buy now",
            "Place order",
            "PAY $12.00",
            "Pay",
            "Complete purchase",
            "Confirm payment",
        ] {
            assert!(is_purchase(yes), "{yes}");
        }
        for no in [
            "Add to cart",
            "Payment history",
            "Paypal help",
            "Search",
            "Next",
            "Pay attention",
        ] {
            assert!(!is_purchase(no), "{no}");
        }
    }
}
