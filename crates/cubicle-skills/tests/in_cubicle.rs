//! Plugin hooks run inside a real `host` cubicle (the guest over pipes)
//! through [`CubicleHookExecutor`], as the agent loop sees them through
//! [`PluginHooks`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cubicle_agent::{HookPermission, HookPoint, SessionHooks as _};
use cubicle_sandbox::Computer;
use cubicle_skills::hooks::{HookRunner, HookSet};
use cubicle_skills::in_cubicle::{CubicleHookExecutor, PluginHooks};
use pretty_assertions::assert_eq;
use serde_json::json;

async fn host_cubicle(workspace: &std::path::Path) -> Option<Arc<dyn Computer>> {
    let Ok(guest) = cubicle_sandbox::locate::GuestProgram::locate() else {
        eprintln!("skipped: cubicle-guest is not built (cargo build -p cubicle-guest)");
        return None;
    };
    let computer = cubicle_sandbox::host::HostComputer::start(cubicle_sandbox::host::HostConfig {
        grants: vec![],
        workspace: workspace.to_path_buf(),
        guest,
        env: Default::default(),
        egress: None,
        egress_listen: None,
    })
    .await
    .unwrap();
    Some(Arc::new(computer))
}

#[tokio::test]
async fn hooks_run_in_the_cubicle_and_their_answers_reach_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let Some(computer) = host_cubicle(dir.path()).await else {
        return;
    };
    let config = json!({"hooks": {
        "UserPromptSubmit": [{"hooks": [{"type": "command",
            "command": "cat > prompt.json; echo 'plain context'"}]}],
        "PreToolUse": [
            {"matcher": "bash", "hooks": [{"type": "command",
                "command": "echo 'no shell today' >&2; exit 2"}]},
            {"matcher": "write", "hooks": [{"type": "command",
                "command": "echo '{\"hookSpecificOutput\": {\"permissionDecision\": \"ask\", \"updatedInput\": {\"path\": \"b.txt\"}}}'"}]}
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "sleep 30", "timeout": 1}]}]
    }});
    let mut warnings = Vec::new();
    let set = HookSet::from_json(
        &config,
        "plugin test",
        &|s| s.to_owned(),
        &[],
        &mut warnings,
    );
    assert_eq!(warnings, Vec::<String>::new());
    let executor = Arc::new(CubicleHookExecutor::new(computer.clone(), None));
    let hooks = PluginHooks::new(
        HookRunner::new(set, executor),
        "s1",
        "/t.jsonl",
        &computer.info().workspace,
    );

    let prompt = hooks
        .run(None, HookPoint::UserPromptSubmit { prompt: "hello" })
        .await;
    assert_eq!(prompt.additional_context, vec!["plain context".to_owned()]);
    // The hook ran in the cubicle's workspace and was given the event.
    let seen: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("prompt.json")).unwrap()).unwrap();
    assert_eq!(seen["prompt"], "hello");
    assert_eq!(seen["hook_event_name"], "UserPromptSubmit");
    assert_eq!(seen["session_id"], "s1");

    let input = json!({"command": "ls"});
    let bash = hooks
        .run(
            None,
            HookPoint::PreToolUse {
                tool: "bash",
                input: &input,
                call_id: "c1",
            },
        )
        .await;
    assert_eq!(bash.blocked.as_deref(), Some("no shell today"));

    let input = json!({"path": "a.txt"});
    let write = hooks
        .run(
            None,
            HookPoint::PreToolUse {
                tool: "write",
                input: &input,
                call_id: "c2",
            },
        )
        .await;
    assert_eq!(write.blocked, None);
    assert_eq!(write.permission, Some(HookPermission::Ask));
    assert_eq!(write.updated_input, Some(json!({"path": "b.txt"})));

    // A hook that hangs is stopped at its timeout and reported, not fatal.
    let stop = tokio::time::timeout(
        Duration::from_secs(60),
        hooks.run(
            None,
            HookPoint::Stop {
                stop_hook_active: false,
            },
        ),
    )
    .await
    .expect("the hook's timeout was not enforced");
    assert_eq!(stop.blocked, None);
    assert_eq!(stop.errors.len(), 1, "{:?}", stop.errors);
    assert!(
        stop.errors[0].contains("did not finish within 1 s"),
        "{:?}",
        stop.errors
    );
    computer.stop().await.unwrap();
}
