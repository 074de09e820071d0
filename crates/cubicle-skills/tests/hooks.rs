//! Command hooks run as real `sh` processes with Claude Code's contract.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cubicle_skills::hooks::{
    HookEvent, HookInput, HookOutcome, HookRunner, HookSet, PermissionDecision, ShellExecutor,
};
use pretty_assertions::assert_eq;
use serde_json::json;

fn runner(config: serde_json::Value) -> (HookRunner, Vec<String>) {
    let mut warnings = Vec::new();
    let set = HookSet::from_json(&config, "test", &|s| s.to_owned(), &[], &mut warnings);
    (
        HookRunner::new(set, Arc::new(ShellExecutor::default())),
        warnings,
    )
}

fn pre_tool(tool: &str, input: serde_json::Value) -> HookInput {
    HookInput::new(HookEvent::PreToolUse, "s1", "/t.jsonl", "/work")
        .with("tool_name", json!(tool))
        .with("tool_input", input)
}

fn hook(event: &str, matcher: &str, command: &str) -> serde_json::Value {
    json!({"hooks": {event: [{"matcher": matcher, "hooks": [{"type": "command", "command": command}]}]}})
}

#[tokio::test]
async fn exit_2_blocks_with_stderr_and_the_hook_sees_its_input() {
    let (r, w) = runner(hook(
        "PreToolUse",
        "Bash",
        r#"input=$(cat); case "$input" in *'"rm -rf /"'*) echo "no deleting everything" >&2; exit 2;; esac"#,
    ));
    assert!(w.is_empty(), "{w:?}");
    let out = r
        .run(&pre_tool("Bash", json!({"command": "rm -rf /"})))
        .await;
    assert_eq!(out.blocked.as_deref(), Some("no deleting everything"));
    let out = r.run(&pre_tool("Bash", json!({"command": "ls"}))).await;
    assert_eq!(out, HookOutcome::default());
    // The matcher is anchored: `Bash` does not match `BashOutput`.
    let out = r
        .run(&pre_tool("BashOutput", json!({"command": "rm -rf /"})))
        .await;
    assert_eq!(out.blocked, None);
}

#[tokio::test]
async fn json_output_decides_permission_input_and_context() {
    let (r, _) = runner(
        json!({"hooks": {"PreToolUse": [{"matcher": "Write|Edit", "hooks": [
            {"type": "command", "command": r#"echo '{"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "ask", "updatedInput": {"path": "/work/safe.txt"}}, "systemMessage": "checked"}'"#},
            {"type": "command", "command": r#"echo '{"hookSpecificOutput": {"permissionDecision": "deny", "permissionDecisionReason": "read-only folder"}}'"#}
        ]}]}}),
    );
    let out = r.run(&pre_tool("Write", json!({"path": "/etc/x"}))).await;
    assert_eq!(
        out.permission,
        Some(PermissionDecision::Deny),
        "deny wins over ask"
    );
    assert_eq!(out.blocked.as_deref(), Some("read-only folder"));
    assert_eq!(out.updated_input, Some(json!({"path": "/work/safe.txt"})));
    assert_eq!(out.system_messages, ["checked"]);

    let (r, _) = runner(hook("UserPromptSubmit", "", "echo 'Today is a holiday.'"));
    let input = HookInput::new(HookEvent::UserPromptSubmit, "s1", "/t", "/work")
        .with("prompt", json!("plan my week"));
    let out = r.run(&input).await;
    assert_eq!(out.additional_context, ["Today is a holiday."]);
}

#[tokio::test]
async fn a_hook_that_hangs_fails_or_prints_garbage_does_not_block() {
    let config = json!({"hooks": {"Stop": [{"hooks": [
        {"type": "command", "command": "sleep 30", "timeout": 0.5},
        {"type": "command", "command": "echo '{not json'"},
        {"type": "command", "command": "echo boom >&2; exit 1"},
        {"type": "command", "command": "echo '{\"decision\": \"block\", \"reason\": \"tests still fail\"}'"}
    ]}]}});
    let (r, _) = runner(config);
    let out = r
        .run(&HookInput::new(HookEvent::Stop, "s", "/t", "/w"))
        .await;
    assert_eq!(out.blocked.as_deref(), Some("tests still fail"));
    assert_eq!(out.errors.len(), 3, "{:?}", out.errors);
    assert!(
        out.errors.iter().any(|e| e.contains("did not finish")),
        "{:?}",
        out.errors
    );
    assert!(
        out.errors.iter().any(|e| e.contains("not valid JSON")),
        "{:?}",
        out.errors
    );
    assert!(
        out.errors.iter().any(|e| e.contains("exit code 1: boom")),
        "{:?}",
        out.errors
    );
}

#[tokio::test]
async fn exit_2_on_an_event_that_cannot_block_is_reported() {
    let (r, _) = runner(hook("SessionStart", "startup", "echo nope >&2; exit 2"));
    let input =
        HookInput::new(HookEvent::SessionStart, "s", "/t", "/w").with("source", json!("startup"));
    let out = r.run(&input).await;
    assert_eq!(out.blocked, None);
    assert_eq!(out.errors.len(), 1);
    let resumed =
        HookInput::new(HookEvent::SessionStart, "s", "/t", "/w").with("source", json!("resume"));
    assert_eq!(r.run(&resumed).await, HookOutcome::default());
}

#[test]
fn malformed_configuration_is_warned_about_and_the_rest_kept() {
    let mut warnings = Vec::new();
    let set = HookSet::from_json(
        &json!({"hooks": {
            "NoSuchEvent": [],
            "PreToolUse": [
                {"matcher": "(", "hooks": [{"type": "command", "command": "true"}]},
                {"matcher": "Read", "hooks": [{"type": "prompt", "prompt": "x"}, {"type": "command"}, {"type": "command", "command": "true", "timeout": -1}]}
            ],
            "Stop": "not a list"
        }}),
        "hooks.json",
        &|s| s.to_owned(),
        &[],
        &mut warnings,
    );
    assert_eq!(set.len(), 1);
    assert_eq!(set.summary(), [(HookEvent::PreToolUse, 1)]);
    assert_eq!(warnings.len(), 6, "{warnings:#?}");
}
