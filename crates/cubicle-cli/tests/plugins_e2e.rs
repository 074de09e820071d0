//! Plugins end to end through the `cubicle` binary: a marketplace in a real
//! git repository (made with the `git` program, fetched by `gix` over
//! `file://`), `cubicle plugin marketplace add` and `install`, then
//! sessions against a loopback server speaking Anthropic's Messages SSE in
//! which a slash command expands, the plugin's hooks run inside the
//! cubicle, a hook stops the agent with `"continue": false`, a settings
//! file's hook runs too, and the plugin's agent is offered as a delegate.
//! Assertions are on what the model was sent, what the hooks wrote in the
//! workspace and what the transcript holds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn bash(id: &str, command: &str) -> Value {
    tool(id, "bash", json!({ "command": command }))
}

fn have_git() -> bool {
    let ok = Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!(
            "skipped: the `git` program is needed to make the test marketplace (apt-get install git)"
        );
    }
    ok
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A marketplace `local` offering the plugin `greet`: a command, an agent,
/// and hooks for UserPromptSubmit, PreToolUse and PostToolUse whose scripts
/// live in the plugin (so they run from `/mnt/.plugins/greet` inside).
fn make_marketplace(dir: &Path) {
    write(
        dir,
        ".claude-plugin/marketplace.json",
        r#"{"name": "local", "owner": {"name": "Test"},
            "plugins": [{"name": "greet", "source": "./plugins/greet", "description": "Greets people"}]}"#,
    );
    let p = "plugins/greet";
    write(
        dir,
        &format!("{p}/.claude-plugin/plugin.json"),
        r#"{"name": "greet", "version": "1.0.0"}"#,
    );
    write(
        dir,
        &format!("{p}/commands/hello.md"),
        "---\ndescription: Greet someone by name\nargument-hint: NAME [STYLE]\nallowed-tools: Bash\n---\nGreet $1 in a $2 way, using the words in ${CLAUDE_PLUGIN_ROOT}/greeting.txt (request: $ARGUMENTS).\n",
    );
    write(dir, &format!("{p}/greeting.txt"), "Good day\n");
    write(
        dir,
        &format!("{p}/agents/helper.md"),
        "---\nname: helper\ndescription: Drafts greeting cards.\ntools: Read, Bash\nmodel: haiku\n---\nYou draft greeting cards.\n",
    );
    write(
        dir,
        &format!("{p}/hooks/hooks.json"),
        r#"{"hooks": {
            "UserPromptSubmit": [{"hooks": [{"type": "command", "command": "cat > /workspace/prompt-hook.json; echo greet-hook-context"}]}],
            "PreToolUse": [{"matcher": "bash", "hooks": [{"type": "command", "command": "sh ${CLAUDE_PLUGIN_ROOT}/hooks/guard.sh"}]}],
            "PostToolUse": [{"matcher": "bash", "hooks": [{"type": "command", "command": "sh ${CLAUDE_PLUGIN_ROOT}/hooks/log.sh", "timeout": 20}]}]
        }}"#,
    );
    write(
        dir,
        &format!("{p}/hooks/guard.sh"),
        "if grep -q forbidden; then echo '{\"continue\": false, \"stopReason\": \"forbidden words\"}'; fi\n",
    );
    write(
        dir,
        &format!("{p}/hooks/log.sh"),
        "cat >> /workspace/tool-log.jsonl\necho >> /workspace/tool-log.jsonl\necho \"plugin root: $CLAUDE_PLUGIN_ROOT\" > /workspace/hook-env.txt\n",
    );
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "greet 1.0.0"]);
}

fn first_user_text(request: &Value) -> String {
    request["messages"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn an_installed_plugin_expands_its_command_runs_its_hooks_inside_and_can_stop_the_agent() {
    if !have_git() {
        return;
    }
    let env = Env::with_own_managed_dir();
    let market = env.home.path().join("market");
    make_marketplace(&market);
    // A hook from the person's own settings, next to the policy's keys.
    let settings = env.home.path().join("config/cubicle/settings.toml");
    write(
        settings.parent().unwrap(),
        "settings.toml",
        "[permissions]\nallow = [\"Bash(echo *)\"]\n\n[[hooks.SessionStart]]\nhooks = [{ type = \"command\", command = \"echo started > /workspace/settings-hook.txt\" }]\n",
    );

    let url = format!("file://{}", market.display());
    let (out, stdout, stderr) = run(env.cmd().args(["plugin", "marketplace", "add", &url]));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Added marketplace `local`"), "{stdout}");
    let (out, stdout, stderr) = run(env.cmd().args(["plugin", "install", "greet@local"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("1 command(s), 1 agent(s), 3 hook(s)"),
        "{stdout}"
    );
    let (_, listed, _) = run(env.cmd().args(["plugin", "list"]));
    assert!(
        listed.contains("  /greet:hello NAME [STYLE]  Greet someone by name"),
        "{listed}"
    );

    // An unknown command fails before anything starts, naming the close match.
    let (out, _, stderr) = run(env.cmd().args(["run", "/helo Ann", "--no-input"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("there is no command /helo; did you mean /greet:hello?"),
        "{stderr}"
    );
    assert!(env.sessions().is_empty(), "no session was started");

    // The command by its short name: expanded, hooked, recorded.
    let api = FakeApi::start(vec![
        Reply::Message(vec![
            text("Greeting."),
            bash("toolu_1", "echo Good day, Ann"),
        ]),
        Reply::Message(vec![text("Done: greeted Ann.")]),
    ]);
    let (out, stdout, stderr) =
        run(env
            .with_api(&api)
            .args(["run", "/hello Ann warm", "--no-input"]));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let sent = first_user_text(&reqs[0]);
    assert!(
        sent.starts_with(
            "<command-name>/greet:hello</command-name>\n<command-args>Ann warm</command-args>\n\nGreet Ann in a warm way, using the words in /mnt/.plugins/greet/greeting.txt (request: Ann warm)."
        ),
        "{sent}"
    );
    // The UserPromptSubmit hook's stdout is context for the model.
    assert!(
        sent.contains("<hook-context>\ngreet-hook-context\n</hook-context>"),
        "{sent}"
    );
    // The plugin's agent is a delegate the model can call.
    let tools: Vec<&str> = reqs[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(tools.contains(&"greet__helper"), "{tools:?}");
    let helper = reqs[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "greet__helper")
        .unwrap();
    assert!(
        helper["description"]
            .as_str()
            .unwrap()
            .contains("Drafts greeting cards."),
        "{helper}"
    );

    let ids = env.sessions();
    assert_eq!(ids.len(), 1);
    let ws = env.workspace(&ids[0]);
    // The hooks ran inside the cubicle: they wrote into /workspace.
    let prompt_input: Value =
        serde_json::from_str(&std::fs::read_to_string(ws.join("prompt-hook.json")).unwrap())
            .unwrap();
    assert_eq!(prompt_input["hook_event_name"], "UserPromptSubmit");
    assert_eq!(prompt_input["session_id"], ids[0].as_str());
    assert!(
        prompt_input["prompt"]
            .as_str()
            .unwrap()
            .contains("Greet Ann in a warm way"),
        "{prompt_input}"
    );
    let log = std::fs::read_to_string(ws.join("tool-log.jsonl")).unwrap();
    let post: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(post["hook_event_name"], "PostToolUse");
    assert_eq!(post["tool_name"], "bash");
    assert_eq!(post["tool_input"]["command"], "echo Good day, Ann");
    assert!(
        post["tool_response"]["output"]
            .as_str()
            .unwrap()
            .contains("Good day, Ann"),
        "{post}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("hook-env.txt")).unwrap(),
        "plugin root: /mnt/.plugins/greet\n"
    );
    // The settings file's SessionStart hook ran too.
    assert_eq!(
        std::fs::read_to_string(ws.join("settings-hook.txt")).unwrap(),
        "started\n"
    );
    // The transcript holds the expanded command as the person's message.
    let records = env.records(&ids[0]);
    let user = records
        .iter()
        .find(|r| r["type"] == "user_message")
        .expect("no user message recorded");
    assert!(
        user.to_string()
            .contains("<command-name>/greet:hello</command-name>"),
        "{user}"
    );

    // A PreToolUse hook answering `"continue": false` stops the agent: the
    // tool does not run, the model is not called again, the transcript says why.
    let api = FakeApi::start(vec![
        Reply::Message(vec![bash("toolu_2", "echo forbidden > /workspace/ran.txt")]),
        Reply::Message(vec![text("should not be asked")]),
    ]);
    let (out, stdout, stderr) =
        run(env
            .with_api(&api)
            .args(["run", "/greet:hello Bob", "--no-input"]));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("forbidden words") || stderr.contains("forbidden words"),
        "{stdout}{stderr}"
    );
    assert_eq!(api.requests().len(), 1);
    let id = env.sessions().into_iter().find(|i| *i != ids[0]).unwrap();
    assert!(!env.workspace(&id).join("ran.txt").exists());
    let records = env.records(&id);
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "interrupted"
                && r["reason"] == "stopped by a hook: forbidden words"),
        "{records:?}"
    );
    assert!(
        records.iter().any(|r| r["type"] == "tool_result"
            && r["is_error"] == true
            && r.to_string().contains("stopped by a hook")),
        "{records:?}"
    );

    // The plugin's agent runs on the model its definition names
    // (`model: haiku`), the session on its own.
    let api = FakeApi::start(vec![
        Reply::Message(vec![tool(
            "toolu_3",
            "greet__helper",
            json!({"description": "draft a card", "prompt": "Draft a card for Cy."}),
        )]),
        Reply::Message(vec![text("Dear Cy, best wishes.")]),
        Reply::Message(vec![text("Here is the card.")]),
    ]);
    let (out, stdout, stderr) = run(env
        .with_api(&api)
        .args(["run", "Make a card", "--no-input"]));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let reqs = api.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[1]["model"], "claude-haiku-4-5", "{}", reqs[1]);
    let system = reqs[1]["system"].to_string();
    assert!(system.contains("You draft greeting cards."), "{system}");
    assert_ne!(reqs[0]["model"], "claude-haiku-4-5");
    assert_eq!(reqs[2]["model"], reqs[0]["model"]);
}
