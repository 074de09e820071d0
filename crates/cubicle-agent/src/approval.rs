//! Asking the permission gate about a call, and the person when it says so.

use cubicle_protocol::events::{ApprovalDecision, Event};
use cubicle_protocol::transcript::Record;
use cubicle_tools::ToolOutput;
use serde_json::Value;

use crate::gate::GateDecision;
use crate::hooks::HookPermission;
use crate::session::{Shared, lock};

/// Decides whether a call may run; `Err` carries the tool result to return
/// instead. Every decision, and every answer from the person, is recorded.
pub(crate) async fn check(
    shared: &Shared,
    agent: Option<&str>,
    call_id: &str,
    tool: &str,
    input: &Value,
    summary: &str,
    hook: Option<HookPermission>,
) -> Result<(), ToolOutput> {
    let decide_as = |allowed: bool, asked: bool, reason: String| {
        shared.audit(cubicle_audit::RecordKind::ToolCall {
            tool: tool.to_owned(),
            summary: summary.to_owned(),
            decision: match (asked, allowed) {
                (true, _) => cubicle_audit::ToolDecision::Asked,
                (false, true) => cubicle_audit::ToolDecision::Allowed,
                (false, false) => cubicle_audit::ToolDecision::Denied,
            },
            reason: reason.clone(),
            rule: None,
        });
        shared.record(
            agent,
            Record::Decision {
                call_id: call_id.to_owned(),
                tool: tool.to_owned(),
                allowed,
                reason,
            },
        );
    };
    let decide = |allowed: bool, reason: String| decide_as(allowed, false, reason);
    match tighten(shared.gate.check(tool, input), hook) {
        GateDecision::Allow { reason } => {
            decide(true, reason);
            Ok(())
        }
        GateDecision::Deny { reason } => {
            decide(false, reason.clone());
            Err(ToolOutput::error(format!(
                "not allowed by policy: {reason}. Tell the person what you needed and why, so they can allow it."
            )))
        }
        GateDecision::Ask { reason } => {
            let key = format!("{tool}\u{0}{reason}");
            if lock(&shared.session_allows).contains(&key) {
                decide(
                    true,
                    format!("allowed for this session by the person: {reason}"),
                );
                return Ok(());
            }
            if !shared.config.interactive {
                decide(
                    false,
                    format!(
                        "needs the person's approval ({reason}), but nobody can answer in this session"
                    ),
                );
                return Err(ToolOutput::error(format!(
                    "this call needs the person's approval ({reason}), and nobody can approve it in this session. Do without it, or tell the person what to allow."
                )));
            }
            let _one_at_a_time = shared.ask_lock.lock().await;
            let id = shared.next_ask_id();
            let rx = shared.wait_approval(&id);
            shared.emit(
                agent,
                Event::ApprovalRequest {
                    id,
                    tool: tool.to_owned(),
                    summary: summary.to_owned(),
                    reason: reason.clone(),
                },
            );
            // A front end that goes away without answering denies.
            let decision = rx.await.unwrap_or(ApprovalDecision::Deny);
            shared.record(
                agent,
                Record::Approval {
                    call_id: call_id.to_owned(),
                    decision,
                },
            );
            shared.audit(cubicle_audit::RecordKind::Approval {
                tool: tool.to_owned(),
                decision: match decision {
                    ApprovalDecision::AllowOnce => cubicle_audit::ApprovalChoice::AllowOnce,
                    ApprovalDecision::AllowSession => cubicle_audit::ApprovalChoice::AllowSession,
                    ApprovalDecision::Deny => cubicle_audit::ApprovalChoice::Deny,
                },
                by: "the person".to_owned(),
            });
            match decision {
                ApprovalDecision::AllowOnce => {
                    decide_as(true, true, format!("approved once by the person: {reason}"));
                    Ok(())
                }
                ApprovalDecision::AllowSession => {
                    lock(&shared.session_allows).insert(key);
                    decide(
                        true,
                        format!("approved for this session by the person: {reason}"),
                    );
                    Ok(())
                }
                ApprovalDecision::Deny => {
                    decide_as(false, true, format!("denied by the person: {reason}"));
                    Err(ToolOutput::error(
                        "the person denied this call. Do not retry it; find another way or ask them what they want.",
                    ))
                }
            }
        }
    }
}

/// The gate's decision made at least as strict as a hook's: a hook may turn
/// an allow into an ask (deny is handled before the gate), never loosen it.
fn tighten(decision: GateDecision, hook: Option<HookPermission>) -> GateDecision {
    match (decision, hook) {
        (GateDecision::Allow { .. }, Some(HookPermission::Ask)) => GateDecision::Ask {
            reason: "a plugin hook asks for the person's confirmation".to_owned(),
        },
        (GateDecision::Allow { .. } | GateDecision::Ask { .. }, Some(HookPermission::Deny)) => {
            GateDecision::Deny {
                reason: "denied by a plugin hook".to_owned(),
            }
        }
        (d, _) => d,
    }
}
