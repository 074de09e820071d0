//! What the browser tells us on its own, kept per tab from DevTools events:
//! console messages, network requests, dialogs, downloads, whether a page is
//! loading. Updated on the connection's reader task, read by tool calls.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::cdp::{CdpEvent, CommandSender};

/// Log entries kept per tab and kind; older ones are dropped.
const MAX_LOG: usize = 500;
/// Requests remembered while waiting for their answer.
const MAX_INFLIGHT: usize = 2000;

/// Which log an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// `console.*` calls, uncaught exceptions, dialogs.
    Console,
    /// Requests and their outcome.
    Network,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Which log.
    pub kind: LogKind,
    /// The line, e.g. `GET http://shop.test/a.css → 200`.
    pub text: String,
}

/// Where a download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadState {
    /// Still arriving.
    InProgress,
    /// On disk in the browser's download folder.
    Completed,
    /// Cancelled or failed.
    Canceled,
}

/// A download the browser started.
#[derive(Debug, Clone)]
pub struct Download {
    /// Where it came from.
    pub url: String,
    /// The name the site suggested.
    pub suggested_name: String,
    /// Where it stands.
    pub state: DownloadState,
    /// Its file in the browser's download folder.
    pub path: PathBuf,
    /// Whether it was handed out already.
    pub taken: bool,
}

#[derive(Default)]
pub(crate) struct State {
    logs: HashMap<String, VecDeque<LogEntry>>,
    inflight: HashMap<String, (String, String)>,
    pub(crate) loading: HashSet<String>,
    pub(crate) crashed: HashSet<String>,
    /// Each tab session's main frame id (which is its target id).
    pub(crate) main_frames: HashMap<String, String>,
    pub(crate) downloads: Vec<(String, Download)>,
    pub(crate) download_dir: PathBuf,
}

pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    pub(crate) fn new(download_dir: PathBuf) -> Self {
        Self {
            download_dir,
            ..Self::default()
        }
    }

    fn log(&mut self, session: Option<&str>, kind: LogKind, text: String) {
        let Some(session) = session else { return };
        let log = self.logs.entry(session.to_owned()).or_default();
        if log.len() >= MAX_LOG {
            log.pop_front();
        }
        log.push_back(LogEntry { kind, text });
    }

    /// The log of a tab, optionally cleared after reading.
    pub(crate) fn logs(
        &mut self,
        session: &str,
        kind: Option<LogKind>,
        clear: bool,
    ) -> Vec<LogEntry> {
        let Some(log) = self.logs.get_mut(session) else {
            return Vec::new();
        };
        let out: Vec<LogEntry> = log
            .iter()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .cloned()
            .collect();
        if clear {
            log.retain(|e| kind.is_some_and(|k| e.kind != k));
        }
        out
    }

    /// Updates the state from one event; answers dialogs so that they never
    /// block the page.
    pub(crate) fn on_event(&mut self, ev: &CdpEvent, send: &CommandSender) {
        let p = &ev.params;
        let s = ev.session_id.as_deref();
        let str_at = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        match ev.method.as_str() {
            "Runtime.consoleAPICalled" => {
                let args: Vec<String> = p
                    .get("args")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(remote_object_text).collect())
                    .unwrap_or_default();
                let line = format!("console.{}: {}", str_at(p, "type"), args.join(" "));
                self.log(s, LogKind::Console, clip(&line));
            }
            "Runtime.exceptionThrown" => {
                let d = p.get("exceptionDetails").cloned().unwrap_or(Value::Null);
                let text = d
                    .get("exception")
                    .and_then(|e| e.get("description"))
                    .and_then(Value::as_str)
                    .map_or_else(|| str_at(&d, "text"), str::to_owned);
                self.log(
                    s,
                    LogKind::Console,
                    clip(&format!("uncaught error: {text}")),
                );
            }
            "Page.javascriptDialogOpening" => {
                let kind = str_at(p, "type");
                // Alerts and leave-page prompts are accepted so the page goes
                // on; confirm and prompt are declined: a page's "are you
                // sure?" is never answered yes on the person's behalf.
                let accept = kind == "alert" || kind == "beforeunload";
                send.fire(
                    "Page.handleJavaScriptDialog",
                    json!({ "accept": accept }),
                    s,
                );
                let what = if accept { "accepted" } else { "declined" };
                let line = format!("dialog ({kind}) {what}: {}", str_at(p, "message"));
                self.log(s, LogKind::Console, clip(&line));
            }
            "Network.requestWillBeSent" => {
                let req = p.get("request").cloned().unwrap_or(Value::Null);
                if self.inflight.len() >= MAX_INFLIGHT {
                    self.inflight.clear();
                }
                self.inflight.insert(
                    str_at(p, "requestId"),
                    (str_at(&req, "method"), str_at(&req, "url")),
                );
            }
            "Network.responseReceived" => {
                let resp = p.get("response").cloned().unwrap_or(Value::Null);
                let status = resp.get("status").and_then(Value::as_u64).unwrap_or(0);
                let (method, url) = self
                    .inflight
                    .remove(&str_at(p, "requestId"))
                    .unwrap_or_else(|| ("GET".into(), str_at(&resp, "url")));
                self.log(
                    s,
                    LogKind::Network,
                    clip(&format!("{method} {url} → {status}")),
                );
            }
            "Network.loadingFailed" => {
                if let Some((method, url)) = self.inflight.remove(&str_at(p, "requestId")) {
                    let why = str_at(p, "errorText");
                    self.log(
                        s,
                        LogKind::Network,
                        clip(&format!("{method} {url} failed: {why}")),
                    );
                }
            }
            "Page.frameStartedLoading" | "Page.frameStoppedLoading" | "Page.loadEventFired" => {
                let Some(s) = s else { return };
                let main = ev.method == "Page.loadEventFired"
                    || self.main_frames.get(s).map(String::as_str)
                        == p.get("frameId").and_then(Value::as_str);
                if main {
                    if ev.method == "Page.frameStartedLoading" {
                        self.loading.insert(s.to_owned());
                    } else {
                        self.loading.remove(s);
                    }
                }
            }
            "Inspector.targetCrashed" => {
                if let Some(s) = s {
                    self.crashed.insert(s.to_owned());
                }
            }
            "Browser.downloadWillBegin" => {
                let guid = str_at(p, "guid");
                let path = self.download_dir.join(&guid);
                self.downloads.push((
                    guid,
                    Download {
                        url: str_at(p, "url"),
                        suggested_name: str_at(p, "suggestedFilename"),
                        state: DownloadState::InProgress,
                        path,
                        taken: false,
                    },
                ));
            }
            "Browser.downloadProgress" => {
                let guid = str_at(p, "guid");
                let state = match str_at(p, "state").as_str() {
                    "completed" => DownloadState::Completed,
                    "canceled" => DownloadState::Canceled,
                    _ => DownloadState::InProgress,
                };
                if let Some((_, d)) = self.downloads.iter_mut().find(|(g, _)| *g == guid) {
                    d.state = state;
                }
            }
            _ => {}
        }
    }
}

fn remote_object_text(o: &Value) -> String {
    if let Some(v) = o.get("value") {
        return match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
    }
    o.get("description")
        .and_then(Value::as_str)
        .or_else(|| o.get("type").and_then(Value::as_str))
        .unwrap_or("")
        .to_owned()
}

fn clip(s: &str) -> String {
    cubicle_tools::output::clip(s, 1000)
}
