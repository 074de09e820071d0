//! The `cubicle` binary end to end: a local server speaking Anthropic's
//! Messages wire format (SSE) stands in for the model API, the `host` backend
//! runs the real guest, and sessions land in a temporary XDG data folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::json;

fn grant_dir(root: &Path) -> PathBuf {
    let d = root.join("Receipts");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("jan.csv"),
        "category,amount\nfood,12.50\ntravel,40\nfood,7.50\n",
    )
    .unwrap();
    d
}

#[test]
fn run_against_an_anthropic_server_does_the_work_and_records_it() {
    let env = Env::new();
    let receipts = grant_dir(env.home.path());
    // The jail (the default backend) shows the grant at /mnt/<name>.
    let csv = "/mnt/Receipts/jan.csv";
    let script = format!(
        "python3 -c \"import csv,collections;t=collections.Counter();[t.update({{r['category']:float(r['amount'])}}) for r in csv.DictReader(open('{csv}'))];open('totals.csv','w').write(''.join(f'{{k}},{{v:.2f}}\\n' for k,v in sorted(t.items())))\" && cat totals.csv"
    );
    let api = FakeApi::start(vec![
        Reply::Message(vec![
            text("I'll total the receipts."),
            tool(
                "toolu_1",
                "todo_write",
                json!({"todos": [{"content": "Total by category", "status": "in_progress", "activeForm": "Totalling"}]}),
            ),
            tool("toolu_2", "bash", json!({"command": script})),
        ]),
        Reply::Message(vec![text(
            "Done: totals.csv has food 20.00 and travel 40.00.",
        )]),
    ]);
    let (out, stdout, stderr) = run(env
        .with_api(&api)
        .args(["run", "Total my receipts by category", "--grant"])
        .arg(&receipts));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("I'll total the receipts."), "{stdout}");
    assert!(stdout.contains("◐ Totalling"), "{stdout}");
    assert!(stdout.contains("│ food,20.00"), "{stdout}");
    assert!(stdout.contains("Done: totals.csv"), "{stdout}");
    assert!(stdout.contains("· jail"), "{stdout}");
    assert!(!stderr.contains("does not isolate"), "{stderr}");

    let ids = env.sessions();
    assert_eq!(ids.len(), 1);
    let totals = std::fs::read_to_string(env.workspace(&ids[0]).join("totals.csv")).unwrap();
    assert_eq!(totals, "food,20.00\ntravel,40.00\n");

    // The API saw the key, the task, the tools and the tool results.
    let reqs = api.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0]["messages"][0]["content"][0]["text"],
        "Total my receipts by category"
    );
    let tools: Vec<&str> = reqs[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for t in [
        "bash",
        "read",
        "write",
        "edit",
        "glob",
        "grep",
        "todo_write",
        "ask_user",
        "task",
    ] {
        assert!(tools.contains(&t), "{t} missing from {tools:?}");
    }
    let results = reqs[1]["messages"][2]["content"].to_string();
    assert!(results.contains("food,20.00"), "{results}");

    // sessions list and show read it back.
    let (out, stdout, _) = run(env.cmd().args(["sessions", "list"]));
    assert!(out.status.success());
    assert!(
        stdout.contains(&ids[0]) && stdout.contains("Total my receipts"),
        "{stdout}"
    );
    let (out, stdout, _) = run(env.cmd().args(["sessions", "show", &ids[0][..12]]));
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("» Total my receipts by category"),
        "{stdout}"
    );
    assert!(stdout.contains("▸ bash python3"), "{stdout}");
    assert!(stdout.contains("☐") || stdout.contains("◐"), "{stdout}");

    // Replaying the transcript re-runs the tool calls for real in a new workspace.
    let transcript = env
        .home
        .path()
        .join(format!("data/cubicle/sessions/{}.jsonl", ids[0]));
    let (out, stdout, stderr) = run(env
        .cmd()
        .args([
            "run",
            "Total my receipts by category",
            "--provider",
            "replay",
            "--replay",
        ])
        .arg(&transcript)
        .arg("--grant")
        .arg(&receipts));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let ids2 = env.sessions();
    assert_eq!(ids2.len(), 2);
    let replayed = ids2.iter().find(|i| **i != ids[0]).unwrap();
    assert_eq!(
        std::fs::read_to_string(env.workspace(replayed).join("totals.csv")).unwrap(),
        totals
    );
}

#[test]
fn questions_under_no_input_fail_with_a_clear_message() {
    let env = Env::new();
    let api = FakeApi::start(vec![
        Reply::Message(vec![tool(
            "toolu_q",
            "ask_user",
            json!({"questions": [{"question": "Which month?", "header": "Month", "options": [{"label": "January", "description": ""}, {"label": "February", "description": ""}]}]}),
        )]),
        Reply::Message(vec![text("I assumed January.")]),
    ]);
    let (out, stdout, stderr) = run(env.with_api(&api).args(["run", "Summarise", "--no-input"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("this session runs without input (--no-input): Which month?"),
        "{stderr}"
    );
    let reqs = api.requests.lock().unwrap().clone();
    assert!(reqs[1].to_string().contains("nobody can answer questions"));
}

#[test]
fn questions_are_answered_from_stdin() {
    let env = Env::new();
    let api = FakeApi::start(vec![
        Reply::Message(vec![tool(
            "toolu_q",
            "ask_user",
            json!({"questions": [{"question": "Which month?", "header": "Month", "options": [{"label": "January", "description": "the first"}, {"label": "February", "description": ""}]}]}),
        )]),
        Reply::Message(vec![text("February it is.")]),
    ]);
    let mut child = env
        .with_api(&api)
        .args(["run", "Summarise"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"2\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("? Month — Which month?"), "{stdout}");
    assert!(stdout.contains("1. January — the first"), "{stdout}");
    let reqs = api.requests.lock().unwrap().clone();
    assert!(
        reqs[1]
            .to_string()
            .contains("Which month? (Month): February"),
        "{}",
        reqs[1]
    );
}

#[test]
fn resume_after_kill_dash_nine() {
    let env = Env::new();
    let api = FakeApi::start(vec![
        Reply::Message(vec![tool(
            "toolu_w",
            "write",
            json!({"path": "step1.txt", "content": "one\n"}),
        )]),
        Reply::Hang,
    ]);
    let mut child = env
        .with_api(&api)
        .args(["run", "Two steps", "--no-input"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the second model call is in flight, then kill -9.
    for _ in 0..400 {
        if api.requests.lock().unwrap().len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(
        api.requests.lock().unwrap().len(),
        2,
        "the second call never came"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let ids = env.sessions();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        std::fs::read_to_string(env.workspace(&ids[0]).join("step1.txt")).unwrap(),
        "one\n"
    );

    // Nothing recorded is lost: resume continues where it stopped.
    api.push(Reply::Message(vec![tool(
        "toolu_w2",
        "write",
        json!({"path": "step2.txt", "content": "two\n"}),
    )]));
    api.push(Reply::Message(vec![text("Both steps done.")]));
    let (out, stdout, stderr) = run(env.with_api(&api).args(["resume", &ids[0], "--no-input"]));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("Both steps done."));
    assert_eq!(
        std::fs::read_to_string(env.workspace(&ids[0]).join("step2.txt")).unwrap(),
        "two\n"
    );
    // The resumed request carried the whole conversation.
    let reqs = api.requests.lock().unwrap().clone();
    let third = &reqs[2]["messages"];
    assert_eq!(third.as_array().unwrap().len(), 3, "{third}");
    assert!(
        third[2].to_string().contains("Created step1.txt"),
        "{third}"
    );

    // A finished session needs a message to go on.
    let (out, _, stderr) = run(env.with_api(&api).args(["resume", &ids[0], "--no-input"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("finished its last turn; give a message"),
        "{stderr}"
    );
}

#[test]
fn clear_errors_for_bad_input() {
    let env = Env::new();
    let (out, _, stderr) = run(env.cmd().args(["run", "x"]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr.trim(),
        "cubicle: no model is configured — set ANTHROPIC_API_KEY or store a key in the settings of `cubicle serve`, or use --provider openai --base-url URL for a local server (llama.cpp, Ollama, vLLM); to see Cubicle work without one, run `cubicle demo`"
    );
    let (out, _, stderr) = run(env.cmd().args(["run", "x", "--grant", "/no/such/dir"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot grant /no/such/dir: no such folder"),
        "{stderr}"
    );
    let (out, _, stderr) = run(env.cmd().args(["run", "x", "--backend", "mainframe"]));
    assert!(!out.status.success());
    assert!(stderr.contains("unknown backend `mainframe`"), "{stderr}");
    let (out, _, stderr) = run(env.cmd().args(["sessions", "show", "nope"]));
    assert!(!out.status.success());
    assert!(stderr.contains("no session matches `nope`"), "{stderr}");
    std::fs::create_dir_all(env.home.path().join("config/cubicle")).unwrap();
    std::fs::write(
        env.home.path().join("config/cubicle/config.toml"),
        "max_turns = \"lots\"\n",
    )
    .unwrap();
    let (out, _, stderr) = run(env.cmd().args(["run", "x"]));
    assert!(!out.status.success());
    assert!(stderr.contains("config.toml:1:"), "{stderr}");
}

#[test]
fn sandbox_exec_returns_the_command_status() {
    let env = Env::new();
    let dir = grant_dir(env.home.path());
    let (out, stdout, _) = run(env
        .cmd()
        .args(["sandbox", "exec", "--grant"])
        .arg(&dir)
        .args(["--", "cat", "/mnt/Receipts/jan.csv"]));
    assert!(out.status.success());
    assert!(stdout.starts_with("category,amount"));
    // The unisolated backend sees host paths and says so.
    let (out, stdout, _) = run(env
        .cmd()
        .args(["sandbox", "exec", "--backend", "host", "--grant"])
        .arg(&dir)
        .args(["--", "cat"])
        .arg(dir.join("jan.csv")));
    assert!(out.status.success());
    assert!(stdout.starts_with("category,amount"));
    let (out, _, _) = run(env
        .cmd()
        .args(["sandbox", "exec", "--", "sh", "-c", "exit 7"]));
    assert_eq!(out.status.code(), Some(7));
    let (out, _, stderr) =
        run(env
            .cmd()
            .args(["sandbox", "exec", "--timeout", "1s", "--", "sleep", "30"]));
    assert_eq!(out.status.code(), Some(124));
    assert!(stderr.contains("timed out"));
    let (out, _, _) = run(env
        .cmd()
        .args(["sandbox", "exec", "--", "sh", "-c", "kill -9 $$"]));
    assert_eq!(out.status.code(), Some(137));
    // Host secrets do not reach commands.
    let (out, stdout, _) = run(env
        .cmd()
        .env("ANTHROPIC_API_KEY", "sk-secret")
        .args(["sandbox", "exec", "--", "sh", "-c", "env"]));
    assert!(out.status.success());
    assert!(!stdout.contains("sk-secret"), "{stdout}");
}

#[test]
fn the_host_backend_is_labelled_unisolated() {
    let env = Env::new();
    let api = FakeApi::start(vec![Reply::Message(vec![text("hello")])]);
    let (out, stdout, stderr) = run(env.with_api(&api).args(["run", "hi", "--backend", "host"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("host — NOT isolated"), "{stdout}");
    assert!(stderr.contains("does not isolate commands"), "{stderr}");
    // The model is told too.
    let reqs = api.requests.lock().unwrap().clone();
    assert!(reqs[0]["system"].to_string().contains("WITHOUT isolation"));
}

#[test]
fn doctor_lists_kernel_features() {
    let env = Env::new();
    let (out, stdout, _) = run(env.cmd().arg("doctor"));
    for feature in [
        "user namespaces",
        "landlock",
        "seccomp filters",
        "cgroup limits",
    ] {
        assert!(stdout.contains(feature), "{feature} missing:\n{stdout}");
    }
    if stdout.contains("jail usable") {
        assert!(out.status.success());
        assert!(stdout.contains("`--backend auto` uses: jail"), "{stdout}");
    } else {
        eprintln!("skipping the usable-jail assertions: this kernel lacks a jail feature");
    }
}

#[test]
fn the_readme_example_replays_into_a_real_report() {
    let env = Env::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/expenses");
    let (out, stdout, stderr) = run(env
        .cmd()
        .args(["run", "--provider", "replay", "--replay"])
        .arg(root.join("reference.jsonl"))
        .arg("--grant")
        .arg(root.join("receipts"))
        .arg("Turn the receipts into an expense report"));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let ids = env.sessions();
    let report = env.workspace(&ids[0]).join("report");
    assert_eq!(
        // Python's csv module writes RFC 4180 line ends.
        std::fs::read_to_string(report.join("totals.csv"))
            .unwrap()
            .replace("\r\n", "\n"),
        "category,total_eur\nlodging,410.40\nmeals,82.00\noffice,32.05\nsoftware,24.00\ntravel,247.80\nTOTAL,796.25\n"
    );
    let expenses = std::fs::read_to_string(report.join("expenses.csv")).unwrap();
    assert_eq!(expenses.lines().count(), 14, "{expenses}");
    assert!(
        std::fs::read_to_string(report.join("summary.md"))
            .unwrap()
            .contains("796.25 EUR")
    );
}

#[test]
fn ctrl_c_interrupts_the_turn_and_loses_nothing() {
    let env = Env::new();
    let api = FakeApi::start(vec![
        Reply::Message(vec![tool(
            "toolu_s",
            "bash",
            json!({"command": "echo started > started.txt; sleep 120"}),
        )]),
        Reply::Hang,
    ]);
    let child = env
        .with_api(&api)
        .args(["run", "Long job", "--no-input"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut workspace = None;
    for _ in 0..400 {
        if let Some(id) = env.sessions().first() {
            let ws = env.workspace(id);
            if ws.join("started.txt").exists() {
                workspace = Some(ws);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(workspace.is_some(), "the command never started");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc_kill(child.id() as i32, 2) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupting"), "{stderr}");
    let id = env.sessions()[0].clone();
    let (_, shown, _) = run(env.cmd().args(["sessions", "show", &id]));
    assert!(shown.contains("interrupted"), "{shown}");
    assert!(shown.contains("▸ bash echo started"), "{shown}");
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Env {
    fn write_settings(&self, text: &str) -> PathBuf {
        let p = self.home.path().join("config/cubicle/settings.toml");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn managed(&self, text: &str) -> PathBuf {
        let d = self.home.path().join("managed");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("managed.toml"), text).unwrap();
        d
    }
}

#[test]
fn policy_check_show_and_allow_domain() {
    let env = Env::new();
    let managed = env.managed("[permissions]\ndeny = [\"Bash(rm -rf *)\"]\n");
    env.write_settings("[permissions]\nallow = [\"Bash(git *)\"]\n");
    let (out, stdout, _) = run(env.cmd().env("CUBICLE_MANAGED_DIR", &managed).args([
        "policy",
        "check",
        "Bash(rm -rf /mnt/x)",
    ]));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("deny:"), "{stdout}");
    assert!(stdout.contains("Bash(rm -rf *)"), "{stdout}");
    assert!(stdout.contains("managed.toml:2"), "{stdout}");
    let (out, stdout, _) = run(env.cmd().env("CUBICLE_MANAGED_DIR", &managed).args([
        "policy",
        "check",
        "Bash(git status && rm -rf /mnt/x)",
    ]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a chained command slipped past: {stdout}"
    );
    let (out, stdout, _) = run(env
        .cmd()
        .env("CUBICLE_MANAGED_DIR", &managed)
        .args(["policy", "show"]));
    assert!(out.status.success());
    assert!(stdout.contains("permissions.deny"), "{stdout}");
    assert!(stdout.contains("from managed"), "{stdout}");
    assert!(stdout.contains("from user"), "{stdout}");

    let (out, stdout, _) = run(env
        .cmd()
        .args(["policy", "allow-domain", "api.example.org"]));
    assert!(out.status.success(), "{stdout}");
    let (_, stdout, _) = run(env.cmd().args(["policy", "show"]));
    assert!(stdout.contains("api.example.org"), "{stdout}");
    // The person's rule survived the rewrite.
    assert!(stdout.contains("Bash(git *)"), "{stdout}");
}

#[test]
fn malformed_or_forbidding_policy_stops_the_session_before_it_starts() {
    let env = Env::new();
    let api = FakeApi::start(vec![Reply::Message(vec![text("should not run")])]);
    let settings = env.write_settings("[permissions]\nallow = [\"Bash(git *)\", \"Bash(ls\"]\n");
    let (out, _, stderr) = run(env.with_api(&api).args(["run", "x"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{}:2:", settings.display()))
            && stderr.contains("permissions.allow[1]"),
        "{stderr}"
    );
    std::fs::remove_file(&settings).unwrap();
    // An administrator forbids the unisolated backend and locks the choice.
    let managed = env.managed("[sandbox]\nallowed_backends = [\"jail\"]\n[locks]\nkeys = [\"sandbox.allowed_backends\"]\n");
    let (out, _, stderr) = run(env
        .with_api(&api)
        .env("CUBICLE_MANAGED_DIR", &managed)
        .args(["run", "x", "--backend", "host"]));
    assert!(!out.status.success());
    assert!(stderr.contains("host"), "{stderr}");
    assert!(
        api.requests.lock().unwrap().is_empty(),
        "the model was called"
    );
    assert!(env.sessions().is_empty());
}

#[test]
fn denials_network_and_audit_end_to_end() {
    let env = Env::new();
    let fetch = "python3 -c \"import urllib.request as u\ntry:\n  u.urlopen('http://example.org/data', timeout=10)\nexcept Exception as e:\n  print('FETCH', getattr(e, 'code', ''), e.read().decode() if hasattr(e, 'read') else e)\"";
    let api = FakeApi::start(vec![
        Reply::Message(vec![
            tool(
                "toolu_rm",
                "bash",
                json!({"command": "rm -rf /workspace/x"}),
            ),
            tool("toolu_net", "bash", json!({"command": fetch})),
        ]),
        Reply::Message(vec![text("Blocked twice.")]),
    ]);
    let (out, stdout, stderr) =
        run(env
            .with_api(&api)
            .args(["run", "Try things", "--no-input", "--deny", "Bash(rm *)"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    let reqs = api.requests.lock().unwrap().clone();
    let results = reqs[1]["messages"][2]["content"].to_string();
    assert!(results.contains("not allowed by policy"), "{results}");
    assert!(results.contains("Bash(rm *)"), "{results}");
    assert!(results.contains("FETCH 403"), "{results}");
    assert!(results.contains("not on the allowed list"), "{results}");

    let (out, stdout, _) = run(env.cmd().args(["audit", "verify"]));
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with("ok:"), "{stdout}");
    let (_, tail, _) = run(env.cmd().args(["audit", "tail", "-n", "50"]));
    for kind in [
        "policy_loaded",
        "session_start",
        "model_call",
        "tool_call",
        "network_request",
        "session_end",
    ] {
        assert!(tail.contains(kind), "{kind} missing:\n{tail}");
    }
    assert!(tail.contains("example.org"), "{tail}");
    assert!(
        !tail.contains("sk-test-key"),
        "a secret reached the audit log"
    );

    // Editing any record is found, and named.
    let dir = env.home.path().join("data/cubicle/audit");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replacen("\"allowed\":false", "\"allowed\":true", 1),
    )
    .unwrap();
    let (out, stdout, _) = run(env.cmd().args(["audit", "verify"]));
    assert!(!out.status.success());
    assert!(stdout.contains("TAMPERED"), "{stdout}");
}

#[test]
fn credentials_stay_on_the_host_and_the_cubicle_trusts_the_proxy() {
    let env = Env::new();
    env.write_settings(
        "[network]\nallow = [\"api.example.org\"]\n\n[[credential]]\ndomain = \"api.example.org\"\nheader = \"Authorization\"\nvalue = \"Bearer {secret}\"\nsecret = \"keyring:example-token\"\n",
    );
    let mut child = env
        .cmd()
        .args(["secret", "set", "example-token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"tok-SECRET-42\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let secrets = env.home.path().join("config/cubicle/secrets");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let api = FakeApi::start(vec![
        Reply::Message(vec![tool(
            "toolu_env",
            "bash",
            json!({"command": "env; grep -c 'BEGIN CERTIFICATE' \"$SSL_CERT_FILE\"; tail -n 2 \"$SSL_CERT_FILE\"; grep -rl SECRET-42 /tmp /workspace /etc 2>/dev/null; echo scanned"}),
        )]),
        Reply::Message(vec![text("checked")]),
    ]);
    let (out, stdout, stderr) = run(env.with_api(&api).args(["run", "check", "--no-input"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    let reqs = api.requests.lock().unwrap().clone();
    let result = reqs[1]["messages"][2]["content"].to_string();
    assert!(
        result.contains("SSL_CERT_FILE=/tmp/.cubicle/ca-bundle.pem"),
        "{result}"
    );
    assert!(result.contains("scanned"), "{result}");
    assert!(
        !result.contains("tok-SECRET-42"),
        "the secret reached the cubicle: {result}"
    );
    // The CA the proxy signs with is the one the cubicle trusts.
    let ca = std::fs::read_to_string(env.home.path().join("config/cubicle/ca/ca.pem")).unwrap();
    let workspace_ca = ca.lines().nth(1).unwrap().to_owned();
    let (_, shown, _) = run(env
        .cmd()
        .args(["sessions", "show", &env.sessions()[0], "--json"]));
    assert!(!shown.contains("tok-SECRET-42"));
    assert!(!workspace_ca.is_empty());
}

#[test]
fn a_stored_hmac_key_seals_the_audit_log() {
    let env = Env::new();
    let mut child = env
        .cmd()
        .args(["secret", "set", "audit-hmac"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a-long-random-key\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let api = FakeApi::start(vec![Reply::Message(vec![text("hi")])]);
    let (out, _, stderr) = run(env.with_api(&api).args(["run", "hello", "--no-input"]));
    assert!(out.status.success(), "{stderr}");
    let (out, stdout, _) = run(env.cmd().args(["audit", "verify"]));
    assert!(out.status.success(), "{stdout}");
    // Without the key the seals do not check out: they are HMACs, not hashes.
    std::fs::remove_file(env.home.path().join("config/cubicle/secrets")).unwrap();
    let (out, stdout, _) = run(env.cmd().args(["audit", "verify"]));
    assert!(!out.status.success(), "{stdout}");
}

#[test]
fn demo_runs_the_expense_report_without_a_key() {
    let env = Env::new();
    let out_dir = env.home.path().join("demo");
    let (out, stdout, stderr) = run(env.cmd().arg("demo").arg("--out").arg(&out_dir));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let shown = format!("{stdout}{stderr}");
    assert!(shown.contains("recorded"), "{shown}");
    assert!(shown.contains("ANTHROPIC_API_KEY"), "{shown}");
    let totals = std::fs::read_to_string(out_dir.join("report/totals.csv")).unwrap();
    assert!(totals.contains("TOTAL,796.25"), "{totals}");
    assert!(out_dir.join("transcript.jsonl").is_file());
}

#[test]
fn skills_are_offered_activated_with_preferences_and_their_scripts_run_inside() {
    let env = Env::new();
    let skill = env.home.path().join("config/cubicle/skills/expense-rules");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(
        skill.join("SKILL.md"),
        "---\nname: expense-rules\ndescription: Company rules for expense reports. Use when building an expense report.\n---\nRun `${CUBICLE_SKILL_DIR}/check.sh $ARGUMENTS` before finishing.\n",
    )
    .unwrap();
    std::fs::write(
        skill.join("check.sh"),
        "#!/bin/sh\necho \"policy ok for $1\"\n",
    )
    .unwrap();
    let (out, _, stderr) =
        run(env
            .cmd()
            .args(["skill", "prefs", "expense-rules", "set", "currency", "EUR"]));
    assert!(out.status.success(), "{stderr}");
    let api = FakeApi::start(vec![
        Reply::Message(vec![tool(
            "toolu_s",
            "skill",
            json!({"name": "expense-rules", "arguments": "Q3"}),
        )]),
        Reply::Message(vec![
            tool(
                "toolu_r",
                "bash",
                json!({"command": "sh /mnt/.skills/expense-rules/check.sh Q3"}),
            ),
            tool(
                "toolu_w",
                "bash",
                json!({"command": "touch /mnt/.skills/expense-rules/evil"}),
            ),
        ]),
        Reply::Message(vec![text("done")]),
    ]);
    let (out, stdout, stderr) =
        run(env
            .with_api(&api)
            .args(["run", "Build my report", "--no-input"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    let reqs = api.requests.lock().unwrap().clone();
    // The catalog is in the system prompt; the tool is offered.
    assert!(
        reqs[0]["system"].to_string().contains("expense-rules"),
        "{}",
        reqs[0]["system"]
    );
    assert!(reqs[0]["tools"].to_string().contains("\"skill\""));
    // Activation returns the body with its folder and arguments filled in,
    // and the person's private preferences.
    let activation = reqs[1]["messages"][2]["content"].to_string();
    assert!(
        activation.contains("/mnt/.skills/expense-rules/check.sh Q3"),
        "{activation}"
    );
    assert!(activation.contains("currency"), "{activation}");
    assert!(activation.contains("EUR"), "{activation}");
    // The bundled script runs inside the cubicle, and the skill is read-only there.
    let results = reqs[2]["messages"][4]["content"].to_string();
    assert!(results.contains("policy ok for Q3"), "{results}");
    assert!(results.contains("Read-only file system"), "{results}");
    assert!(!skill.join("evil").exists());
}

#[test]
fn demo_in_the_web_ui_runs_the_recording_as_a_served_session() {
    let env = Env::new();
    let mut child = env
        .cmd()
        .args(["demo", "--ui", "--no-open", "--out"])
        .arg(env.home.path().join("demo"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let link = loop {
        let line = lines
            .next()
            .expect("the demo ended before printing its link")
            .unwrap();
        if let Some(pos) = line.find("http://127.0.0.1:") {
            break line[pos..].trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let id = link.rsplit_once("session=").unwrap().1.to_owned();
    let totals = env.workspace(&id).join("report/totals.csv");
    for _ in 0..600 {
        if std::fs::read_to_string(&totals).is_ok_and(|t| t.contains("TOTAL")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::fs::read_to_string(&totals)
            .unwrap()
            .contains("TOTAL,796.25"),
        "the served demo did not produce its report"
    );
    // The page it links to is served (the token is in the link).
    let (host, rest) = link.trim_start_matches("http://").split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET /{rest} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    assert!(
        page.starts_with("HTTP/1.1 200"),
        "{}",
        &page[..page.len().min(200)]
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc_kill(child.id() as i32, 2) };
    assert!(child.wait().unwrap().success());
}
