//! The permission gate: asked before every tool call. The policy crate plugs
//! in here; without a policy, everything inside the cubicle is allowed —
//! the cubicle is the boundary.

use serde_json::Value;

/// What the gate says about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    /// Run it.
    Allow {
        /// Why (the rule or default).
        reason: String,
    },
    /// Ask the person first.
    Ask {
        /// Why, in words the person can judge.
        reason: String,
    },
    /// Refuse it.
    Deny {
        /// Why, including what the person could allow.
        reason: String,
    },
}

/// Decides whether a tool call may run.
pub trait PermissionGate: Send + Sync {
    /// Checks one call.
    fn check(&self, tool: &str, input: &Value) -> GateDecision;
}

/// Allows every call: commands and edits stay inside the cubicle.
#[derive(Debug, Default)]
pub struct AllowAll;

impl PermissionGate for AllowAll {
    fn check(&self, _tool: &str, _input: &Value) -> GateDecision {
        GateDecision::Allow {
            reason: "default: tools run inside the cubicle".into(),
        }
    }
}

/// The policy crate's decisions, as the agent's gate. The reason names the
/// rule and where it was set, so a person asked to approve sees why.
pub struct PolicyGate(pub std::sync::Arc<cubicle_policy::Policy>);

impl PermissionGate for PolicyGate {
    fn check(&self, tool: &str, input: &Value) -> GateDecision {
        let d = self.0.check_tool(tool, input);
        let reason = match &d.rule {
            Some(rule) => format!("{} (rule {rule})", d.reason),
            None => d.reason,
        };
        match d.effect {
            cubicle_policy::Effect::Allow => GateDecision::Allow { reason },
            cubicle_policy::Effect::Ask => GateDecision::Ask { reason },
            cubicle_policy::Effect::Deny => GateDecision::Deny { reason },
        }
    }
}
