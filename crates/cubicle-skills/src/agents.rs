//! Plugins' sub-agent definitions (`agents/*.md`) as the session's
//! [`Delegate`]s: the main agent hands one a task by calling it as a tool,
//! and it runs with its own system prompt (the definition's Markdown body)
//! and only the tools its `tools` list names.
//!
//! Tool names for the model may only hold letters, digits, `_` and `-`, so
//! `plugin:agent` is offered as `plugin__agent`; the description names it
//! `plugin:agent`. Claude Code's tool names in `tools` (`Read`, `Bash`, …)
//! are mapped to Cubicle's by the caller's `map` (the policy crate's
//! table); an empty list means every tool the session has. A tool the
//! session does not have is left out with a warning. The definition's
//! `model` is the caller's to resolve (it knows the session's provider and
//! the policy) and set as [`Delegate::model`].

use std::sync::Arc;

use cubicle_agent::Delegate;
use cubicle_tools::Tool;

use crate::plugin::AgentDefinition;

/// The tool name the model calls a plugin agent by: `plugin:agent` becomes
/// `plugin__agent`, other characters outside `[A-Za-z0-9_-]` become `_`,
/// and the name is cut to 64 characters.
pub fn delegate_tool_name(name: &str) -> String {
    crate::mcp::api_tool_name(&name.replace(':', "__"))
}

/// The delegate for `def`, with `tools` picked from the session's by its
/// `tools` list (`map` turns a Claude Code tool name into Cubicle's), its
/// system prompt its body followed by `environment` (what every sub-agent
/// is told about the cubicle). Returns the warnings too.
pub fn delegate(
    def: &AgentDefinition,
    tools: &[Arc<dyn Tool>],
    map: &dyn Fn(&str) -> Option<&'static str>,
    environment: &str,
) -> (Delegate, Vec<String>) {
    let mut warnings = Vec::new();
    let picked: Vec<Arc<dyn Tool>> = if def.tools.is_empty() {
        tools.to_vec()
    } else {
        let mut picked: Vec<Arc<dyn Tool>> = Vec::new();
        for wanted in &def.tools {
            // `Bash(git *)`-style entries name the tool before the parenthesis.
            let bare = wanted.split('(').next().unwrap_or(wanted).trim();
            let found = tools
                .iter()
                .find(|t| t.name() == bare)
                .or_else(|| map(bare).and_then(|n| tools.iter().find(|t| t.name() == n)));
            match found {
                Some(t) if !picked.iter().any(|p| p.name() == t.name()) => picked.push(t.clone()),
                Some(_) => {}
                None => warnings.push(format!(
                    "agent `{}` ({}): the tool `{wanted}` is not available in this session; it runs without it",
                    def.name,
                    def.path.display()
                )),
            }
        }
        picked
    };
    let mut system_prompt = def.prompt.trim().to_owned();
    if !environment.is_empty() {
        system_prompt.push_str("\n\n");
        system_prompt.push_str(environment);
    }
    let delegate = Delegate {
        name: delegate_tool_name(&def.name),
        description: format!("{} (plugin agent `{}`)", def.description.trim(), def.name),
        system_prompt,
        tools: picked,
        model: None,
    };
    (delegate, warnings)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    fn claude(name: &str) -> Option<&'static str> {
        match name {
            "Read" => Some("read"),
            "Grep" => Some("grep"),
            "Bash" => Some("bash"),
            _ => None,
        }
    }

    fn def(tools: &[&str], model: Option<&str>) -> AgentDefinition {
        AgentDefinition {
            name: "review:code-reviewer".into(),
            description: "Reviews code. Use after changes.".into(),
            tools: tools.iter().map(|t| (*t).to_owned()).collect(),
            model: model.map(str::to_owned),
            prompt: "You review code.\n".into(),
            path: "/p/agents/code-reviewer.md".into(),
        }
    }

    #[test]
    fn names_are_valid_tool_names() {
        assert_eq!(
            delegate_tool_name("review:code-reviewer"),
            "review__code-reviewer"
        );
        assert_eq!(delegate_tool_name("a:b c.d"), "a__b_c_d");
        assert_eq!(delegate_tool_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn tools_are_picked_and_mapped() {
        let all = cubicle_tools::computer_tools();
        let (d, warnings) = delegate(
            &def(
                &["Read", "Grep", "Bash(git *)", "grep", "WebSearch"],
                Some("sonnet"),
            ),
            &all,
            &claude,
            "You run in a cubicle.",
        );
        assert_eq!(d.name, "review__code-reviewer");
        assert_eq!(
            d.description,
            "Reviews code. Use after changes. (plugin agent `review:code-reviewer`)"
        );
        assert_eq!(d.system_prompt, "You review code.\n\nYou run in a cubicle.");
        assert_eq!(
            d.tools.iter().map(|t| t.name()).collect::<Vec<_>>(),
            vec!["read", "grep", "bash"]
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("`WebSearch` is not available"),
            "{warnings:?}"
        );
        assert!(d.model.is_none(), "the caller resolves the model");

        let (d, warnings) = delegate(&def(&[], Some("inherit")), &all, &claude, "");
        assert_eq!(d.tools.len(), all.len());
        assert!(warnings.is_empty());
        assert_eq!(d.system_prompt, "You review code.");
    }
}
