//! The `skill` tool: how the model activates a skill from the catalog.
//!
//! It returns the skill's instructions with `$ARGUMENTS` replaced by the
//! call's arguments and `${CLAUDE_SKILL_DIR}` / `${CUBICLE_SKILL_DIR}` by the
//! folder's path *inside the cubicle* (`/mnt/.skills/<name>`, where the
//! sandbox mounts it read-only, so bundled scripts run there and never on
//! the host), then the list of bundled files, then the person's preferences
//! for the skill in a delimited section. Skills marked
//! `disable-model-invocation` are refused: only the person may start them.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use cubicle_protocol::conversation::ToolSpec;
use cubicle_tools::{Tool, ToolContext, ToolOutput, parse_input, spec_for};
use serde::Deserialize;
use serde_json::Value;

use crate::catalog::Catalog;
use crate::prefs::Preferences;
use crate::skill::Skill;

/// Most bundled files listed in an activation.
pub const MAX_LISTED_FILES: usize = 200;

/// Arguments of the `skill` tool.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SkillInput {
    /// The skill's name, exactly as in the list of available skills.
    pub name: String,
    /// Text passed to the skill (replaces `$ARGUMENTS` in its instructions).
    #[serde(default)]
    pub arguments: Option<String>,
}

/// The `skill` tool over a catalog that can be swapped when skills change.
#[derive(Debug, Clone)]
pub struct SkillTool {
    catalog: Arc<RwLock<Catalog>>,
    prefs_dir: Option<PathBuf>,
}

/// Why a skill could not be activated.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// No skill has that name.
    #[error("no skill named `{name}`. Available skills: {available}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names that exist, comma-separated (or "none").
        available: String,
    },
    /// Only the person may invoke it.
    #[error("skill `{name}` can only be started by the person (disable-model-invocation)")]
    UserOnly {
        /// The skill.
        name: String,
    },
    /// Its `SKILL.md` could not be read again.
    #[error(transparent)]
    Load(#[from] crate::skill::LoadError),
    /// Its preferences could not be read.
    #[error(transparent)]
    Prefs(#[from] crate::prefs::PrefsError),
}

impl SkillTool {
    /// A tool over `catalog`, reading preferences from `prefs_dir` (normally
    /// `~/.config/cubicle/preferences`; `None` for no preferences).
    pub fn new(catalog: Arc<RwLock<Catalog>>, prefs_dir: Option<PathBuf>) -> Self {
        Self { catalog, prefs_dir }
    }

    /// What the tool returns to the model for skill `name` called with
    /// `arguments`.
    pub fn activate(&self, name: &str, arguments: Option<&str>) -> Result<String, ActivateError> {
        let skill = {
            let catalog = self
                .catalog
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match catalog.get(name) {
                Some(s) => s.clone(),
                None => {
                    let names: Vec<&str> =
                        catalog.model_invocable().map(|s| s.name.as_str()).collect();
                    return Err(ActivateError::Unknown {
                        name: name.to_owned(),
                        available: if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        },
                    });
                }
            }
        };
        if skill.frontmatter.disable_model_invocation {
            return Err(ActivateError::UserOnly {
                name: skill.name.clone(),
            });
        }
        let prefs = match &self.prefs_dir {
            Some(dir) => Some(Preferences::load(dir, &skill.name)?),
            None => None,
        };
        Ok(render_activation(
            &skill,
            &skill.load_body()?,
            arguments,
            prefs.as_ref(),
        ))
    }
}

/// Substitutes `$ARGUMENTS` and the skill-folder variables in `body`. When
/// the body has no `$ARGUMENTS` but arguments were given, they are appended
/// (as Claude Code does) so they are not lost.
pub fn substitute(body: &str, cubicle_dir: &str, arguments: Option<&str>) -> String {
    let args = arguments.unwrap_or("");
    let mut out = body
        .replace("${CLAUDE_SKILL_DIR}", cubicle_dir)
        .replace("${CUBICLE_SKILL_DIR}", cubicle_dir);
    if out.contains("$ARGUMENTS") {
        out = out.replace("$ARGUMENTS", args);
    } else if !args.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("\nARGUMENTS: {args}\n"));
    }
    out
}

/// The full activation text for `skill` with instructions `body`.
pub fn render_activation(
    skill: &Skill,
    body: &str,
    arguments: Option<&str>,
    prefs: Option<&Preferences>,
) -> String {
    let dir = skill.cubicle_dir();
    let mut out = format!(
        "<skill name=\"{}\" dir=\"{dir}\">\n{}",
        skill.name,
        substitute(body, &dir, arguments)
    );
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("</skill>\n");
    let notes = activation_notes(skill);
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    let files = skill.bundled_files(MAX_LISTED_FILES + 1);
    if !files.is_empty() {
        out.push_str(&format!(
            "\nFiles bundled with this skill (read-only, under {dir}/):\n"
        ));
        for f in files.iter().take(MAX_LISTED_FILES) {
            out.push_str(&format!("- {f}\n"));
        }
        if files.len() > MAX_LISTED_FILES {
            out.push_str("- … (more; list the folder to see them all)\n");
        }
    }
    if let Some(section) = prefs.and_then(|p| p.render_for_model(&skill.name)) {
        out.push('\n');
        out.push_str(&section);
    }
    out
}

/// What the frontmatter asks of the session (`allowed-tools`, `model`,
/// `context`), said to the model. The permission gate, not this text, decides
/// what runs: the person's rules still apply to every tool.
pub fn activation_notes(skill: &Skill) -> String {
    let fm = &skill.frontmatter;
    let mut out = String::new();
    if !fm.allowed_tools.is_empty() {
        out.push_str(&format!(
            "Tools this skill expects to use: {} (the person's permission rules still apply).\n",
            fm.allowed_tools.join(", ")
        ));
    }
    if let Some(model) = &fm.model {
        out.push_str(&format!(
            "This skill asks for model `{model}`; the session's model stays unless the person switches it.\n"
        ));
    }
    if fm.context.as_deref() == Some("fork") {
        out.push_str(
            "This skill is meant to run in its own context (context: fork): if a sub-agent tool is available, hand the task to a sub-agent with these instructions.\n",
        );
    }
    out
}

#[async_trait]
impl Tool for SkillTool {
    fn name(&self) -> &'static str {
        "skill"
    }

    fn spec(&self) -> ToolSpec {
        spec_for::<SkillInput>(
            "skill",
            "Load a skill from the list of available skills: returns its instructions, the files \
             bundled with it and the person's preferences for it. Call it before starting a task \
             the skill's description matches, then follow the instructions.",
        )
    }

    fn summary(&self, input: &Value) -> String {
        let name = input.get("name").and_then(Value::as_str).unwrap_or("?");
        match input.get("arguments").and_then(Value::as_str) {
            Some(a) if !a.is_empty() => format!("Skill {name} {a}"),
            _ => format!("Skill {name}"),
        }
    }

    async fn call(&self, input: Value, _ctx: &ToolContext) -> ToolOutput {
        let input: SkillInput = match parse_input("skill", &input) {
            Ok(i) => i,
            Err(e) => return e,
        };
        match self.activate(&input.name, input.arguments.as_deref()) {
            Ok(text) => ToolOutput::text(text),
            Err(e) => ToolOutput::error(e.to_string()),
        }
    }
}
