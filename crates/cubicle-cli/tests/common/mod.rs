//! Shared by the CLI's integration tests: a loopback server speaking
//! Anthropic's Messages wire format (SSE) in place of the model API, and a
//! temporary home in which the `cubicle` binary runs.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// What the fake API does with the next request.
#[derive(Clone)]
pub enum Reply {
    /// Stream an assistant message made of these content blocks.
    Message(Vec<Value>),
    /// Accept the request and never answer.
    Hang,
}

/// A one-thread HTTP server that answers `POST /v1/messages` from a queue and
/// keeps every request body.
pub struct FakeApi {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Value>>>,
    queue: Arc<Mutex<VecDeque<Reply>>>,
}

impl FakeApi {
    pub fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Mutex::new(VecDeque::from(replies)));
        let (reqs, q) = (requests.clone(), queue.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (reqs, q) = (reqs.clone(), q.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    reqs.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    let reply = q.lock().unwrap().pop_front();
                    match reply {
                        Some(Reply::Message(blocks)) => {
                            let body = sse(&blocks);
                            let _ = write!(
                                stream,
                                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                        }
                        Some(Reply::Hang) => std::thread::sleep(Duration::from_secs(600)),
                        None => {
                            let body = r#"{"type":"error","error":{"type":"invalid_request_error","message":"the test script has no more replies"}}"#;
                            let _ = write!(
                                stream,
                                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                        }
                    }
                });
            }
        });
        Self {
            url,
            requests,
            queue,
        }
    }

    pub fn push(&self, reply: Reply) {
        self.queue.lock().unwrap().push_back(reply);
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

/// Anthropic's SSE stream for one assistant message.
pub fn sse(blocks: &[Value]) -> String {
    let mut out = String::new();
    let mut ev = |name: &str, data: Value| {
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    ev(
        "message_start",
        json!({"type":"message_start","message":{"id":"msg_test","type":"message","role":"assistant","content":[],"model":"claude-test","stop_reason":null,"usage":{"input_tokens":50,"output_tokens":1,"cache_read_input_tokens":7}}}),
    );
    ev("ping", json!({"type":"ping"}));
    let mut stop = "end_turn";
    for (i, b) in blocks.iter().enumerate() {
        match b["type"].as_str().unwrap() {
            "text" => {
                ev(
                    "content_block_start",
                    json!({"type":"content_block_start","index":i,"content_block":{"type":"text","text":""}}),
                );
                ev(
                    "content_block_delta",
                    json!({"type":"content_block_delta","index":i,"delta":{"type":"text_delta","text":b["text"]}}),
                );
            }
            "tool_use" => {
                stop = "tool_use";
                ev(
                    "content_block_start",
                    json!({"type":"content_block_start","index":i,"content_block":{"type":"tool_use","id":b["id"],"name":b["name"],"input":{}}}),
                );
                let input = b["input"].to_string();
                let (a, z) = input.split_at(input.len() / 2);
                for part in [a, z] {
                    ev(
                        "content_block_delta",
                        json!({"type":"content_block_delta","index":i,"delta":{"type":"input_json_delta","partial_json":part}}),
                    );
                }
            }
            other => panic!("unsupported block {other}"),
        }
        ev(
            "content_block_stop",
            json!({"type":"content_block_stop","index":i}),
        );
    }
    ev(
        "message_delta",
        json!({"type":"message_delta","delta":{"stop_reason":stop},"usage":{"output_tokens":20}}),
    );
    ev("message_stop", json!({"type":"message_stop"}));
    out
}

pub fn text(t: &str) -> Value {
    json!({"type": "text", "text": t})
}

pub fn tool(id: &str, name: &str, input: Value) -> Value {
    json!({"type": "tool_use", "id": id, "name": name, "input": input})
}

pub struct Env {
    pub home: tempfile::TempDir,
    /// Where `CUBICLE_MANAGED_DIR` points, when set.
    managed_dir: Option<PathBuf>,
}

impl Env {
    pub fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            managed_dir: None,
        }
    }

    /// A home whose managed settings are read from `home/managed` (empty
    /// unless a test writes there), never from the machine's `/etc/cubicle`.
    pub fn with_own_managed_dir() -> Self {
        let home = tempfile::tempdir().unwrap();
        let managed_dir = Some(home.path().join("managed"));
        Self { home, managed_dir }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cubicle"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("XDG_DATA_HOME", self.home.path().join("data"))
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .stdin(Stdio::null());
        if let Some(dir) = &self.managed_dir {
            c.env("CUBICLE_MANAGED_DIR", dir);
        }
        c
    }

    pub fn with_api(&self, api: &FakeApi) -> Command {
        let mut c = self.cmd();
        c.env("ANTHROPIC_API_KEY", "sk-test-key")
            .env("ANTHROPIC_BASE_URL", &api.url);
        c
    }

    pub fn sessions(&self) -> Vec<String> {
        let dir = self.home.path().join("data/cubicle/sessions");
        let mut ids: Vec<String> = std::fs::read_dir(dir)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .trim_end_matches(".jsonl")
                            .to_owned()
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The transcript's records (header line skipped).
    pub fn records(&self, id: &str) -> Vec<Value> {
        let p = self
            .home
            .path()
            .join(format!("data/cubicle/sessions/{id}.jsonl"));
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn workspace(&self, id: &str) -> PathBuf {
        self.home.path().join("data/cubicle/workspaces").join(id)
    }
}

pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}
