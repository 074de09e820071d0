//! Slash commands: what `/name arguments`, typed as a prompt, becomes.
//!
//! Two kinds answer to a slash, as in Claude Code:
//!
//! - a plugin's `commands/*.md` prompt, named `plugin:command`, also
//!   reachable as `/command` when no other command has that short name;
//! - a user-invocable skill (`user-invocable` is not `false`), named as in
//!   the catalog (`name`, or `plugin:skill` for a plugin's).
//!
//! [`CommandIndex::expand`] turns the typed text into the prompt the model
//! receives: the command's Markdown body with `$ARGUMENTS`, `$1`…`$9` and
//! `${CLAUDE_PLUGIN_ROOT}` / `${CUBICLE_PLUGIN_ROOT}` replaced (a skill's
//! body as the `skill` tool would return it, preferences included), headed
//! by the invocation so the transcript shows what the person typed. Text
//! that does not look like a command (`/mnt/Reports is empty`) is not one.
//! An unknown or ambiguous name is a [`SlashError`] naming the close
//! matches, never a prompt sent by mistake.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::catalog::Catalog;
use crate::plugin::{Plugin, PluginCommand};
use crate::prefs::Preferences;
use crate::skill::Skill;

/// Most suggestions an unknown-command error lists.
const MAX_SUGGESTIONS: usize = 5;

/// `/name arguments` as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation<'a> {
    /// The name after the slash (`greet:hello` or `hello`).
    pub name: &'a str,
    /// Everything after the name, trimmed.
    pub arguments: &'a str,
}

/// Reads `text` as a slash command: a `/` then a name of letters, digits,
/// `-`, `_`, `.` and `:`, then whitespace or the end. Anything else (a path
/// such as `/mnt/x`, a lone `/`) is `None`: an ordinary prompt.
pub fn parse_invocation(text: &str) -> Option<Invocation<'_>> {
    let rest = text.trim_start().strip_prefix('/')?;
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let name = &rest[..end];
    let valid = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    valid.then(|| Invocation {
        name,
        arguments: rest[end..].trim(),
    })
}

/// Splits arguments for `$1`…`$9`: on whitespace, with `"…"` and `'…'`
/// keeping spaces together.
pub fn split_arguments(arguments: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in arguments.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                started = true;
            }
            None if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            None => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(current);
    }
    out
}

fn placeholder() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        #[allow(clippy::expect_used)]
        regex::Regex::new(r"\$ARGUMENTS|\$[1-9]|\$\{CLAUDE_PLUGIN_ROOT\}|\$\{CUBICLE_PLUGIN_ROOT\}")
            .expect("a constant pattern")
    })
}

/// A command body with `$ARGUMENTS`, `$1`…`$9` and the plugin-root
/// variables replaced, in one pass (so arguments that contain `$1` stay as
/// typed). A body with no argument placeholder gets the arguments appended
/// as `ARGUMENTS: …`, as Claude Code does, so they are not lost.
pub fn substitute(body: &str, arguments: &str, plugin_root: &str) -> String {
    let positional = split_arguments(arguments);
    let mut used_arguments = false;
    let out = placeholder().replace_all(body, |c: &regex::Captures<'_>| {
        let m = &c[0];
        match m {
            "$ARGUMENTS" => {
                used_arguments = true;
                arguments.to_owned()
            }
            "${CLAUDE_PLUGIN_ROOT}" | "${CUBICLE_PLUGIN_ROOT}" => plugin_root.to_owned(),
            _ => {
                used_arguments = true;
                let i: usize = m[1..].parse().unwrap_or(1);
                positional.get(i - 1).cloned().unwrap_or_default()
            }
        }
    });
    let mut out = out.into_owned();
    if !used_arguments && !arguments.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("\nARGUMENTS: {arguments}\n"));
    }
    out
}

/// What a slash command runs.
#[derive(Debug, Clone)]
enum Target {
    /// A plugin's command file, with the plugin's folder inside the cubicle.
    Plugin {
        command: PluginCommand,
        cubicle_root: String,
    },
    /// A skill, activated as the `skill` tool would.
    Skill(Box<Skill>),
}

/// One command a person can type.
#[derive(Debug, Clone)]
pub struct SlashCommand {
    /// Its full name: `plugin:command`, or a skill's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// `argument-hint`, e.g. `[file] [reviewer]`.
    pub argument_hint: Option<String>,
    /// `allowed-tools` from its frontmatter.
    pub allowed_tools: Vec<String>,
    /// `model` from its frontmatter.
    pub model: Option<String>,
    /// Whether it is a skill (else a plugin command).
    pub is_skill: bool,
    target: Target,
}

impl SlashCommand {
    /// The name after the plugin's, if any (`hello` for `greet:hello`).
    pub fn short_name(&self) -> &str {
        self.name
            .rsplit_once(':')
            .map_or(self.name.as_str(), |(_, s)| s)
    }

    /// How a person types it: `/name [hint]`.
    pub fn usage(&self) -> String {
        match &self.argument_hint {
            Some(h) if !h.trim().is_empty() => format!("/{} {}", self.name, h.trim()),
            _ => format!("/{}", self.name),
        }
    }
}

/// What a typed command became.
#[derive(Debug, Clone, PartialEq)]
pub struct Expansion {
    /// The command's full name.
    pub command: String,
    /// The arguments as typed.
    pub arguments: String,
    /// The prompt for the model.
    pub prompt: String,
    /// `allowed-tools` of the command.
    pub allowed_tools: Vec<String>,
    /// `model` the command asks for.
    pub model: Option<String>,
}

/// Why a typed command cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SlashError {
    /// No command has that name.
    #[error("{}", unknown_message(name, suggestions))]
    Unknown {
        /// The name typed.
        name: String,
        /// Close matches, best first.
        suggestions: Vec<String>,
    },
    /// The short name belongs to several plugins' commands.
    #[error(
        "/{name} is ambiguous: it could be {}; type the full name",
        list(candidates)
    )]
    Ambiguous {
        /// The name typed.
        name: String,
        /// The full names it could mean.
        candidates: Vec<String>,
    },
    /// The command's file (or skill) could not be read.
    #[error("/{name} cannot run: {message}")]
    Unreadable {
        /// The command.
        name: String,
        /// What went wrong.
        message: String,
    },
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("/{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_message(name: &str, suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        format!(
            "there is no command /{name}; `cubicle plugin list` and `cubicle skill list` show the commands there are (start the message with `//` to send it as typed)"
        )
    } else {
        format!(
            "there is no command /{name}; did you mean {}? (start the message with `//` to send it as typed)",
            list(suggestions)
        )
    }
}

/// The commands a session offers.
#[derive(Debug, Clone, Default)]
pub struct CommandIndex {
    commands: Vec<SlashCommand>,
    prefs_dir: Option<PathBuf>,
}

impl CommandIndex {
    /// An empty index; skills' preferences are read from `prefs_dir`.
    pub fn new(prefs_dir: Option<PathBuf>) -> Self {
        Self {
            commands: Vec::new(),
            prefs_dir,
        }
    }

    /// Adds a plugin's commands.
    pub fn add_plugin(&mut self, plugin: &Plugin) {
        let cubicle_root = plugin.cubicle_root();
        for c in &plugin.commands {
            self.push(SlashCommand {
                name: c.name.clone(),
                description: c.description.clone(),
                argument_hint: c.argument_hint.clone(),
                allowed_tools: c.allowed_tools.clone(),
                model: c.model.clone(),
                is_skill: false,
                target: Target::Plugin {
                    command: c.clone(),
                    cubicle_root: cubicle_root.clone(),
                },
            });
        }
    }

    /// Adds the catalog's skills that a person may invoke.
    pub fn add_skills(&mut self, catalog: &Catalog) {
        for s in catalog
            .skills()
            .iter()
            .filter(|s| s.frontmatter.user_invocable)
        {
            self.push(SlashCommand {
                name: s.name.clone(),
                description: s.description.clone(),
                argument_hint: s.frontmatter.argument_hint.clone(),
                allowed_tools: s.frontmatter.allowed_tools.clone(),
                model: s.frontmatter.model.clone(),
                is_skill: true,
                target: Target::Skill(Box::new(s.clone())),
            });
        }
    }

    /// A name already taken keeps its first owner (plugin commands are
    /// added before skills, managed before user before project).
    fn push(&mut self, c: SlashCommand) {
        if !self.commands.iter().any(|o| o.name == c.name) {
            self.commands.push(c);
        }
    }

    /// Every command, in the order added.
    pub fn commands(&self) -> &[SlashCommand] {
        &self.commands
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The command `name` means: a full name, or a short name that only
    /// one command has.
    pub fn resolve(&self, name: &str) -> Result<&SlashCommand, SlashError> {
        if let Some(c) = self.commands.iter().find(|c| c.name == name) {
            return Ok(c);
        }
        let short: Vec<&SlashCommand> = if name.contains(':') {
            Vec::new()
        } else {
            self.commands
                .iter()
                .filter(|c| c.short_name() == name)
                .collect()
        };
        match short.as_slice() {
            [one] => Ok(one),
            [] => Err(SlashError::Unknown {
                name: name.to_owned(),
                suggestions: self.suggestions(name),
            }),
            many => Err(SlashError::Ambiguous {
                name: name.to_owned(),
                candidates: many.iter().map(|c| c.name.clone()).collect(),
            }),
        }
    }

    /// Names close to `name`, best first.
    fn suggestions(&self, name: &str) -> Vec<String> {
        let wanted = name.to_ascii_lowercase();
        let mut scored: Vec<(usize, &str)> = self
            .commands
            .iter()
            .filter_map(|c| {
                let full = c.name.to_ascii_lowercase();
                let short = c.short_name().to_ascii_lowercase();
                let d = distance(&wanted, &full).min(distance(&wanted, &short));
                let close = d <= (wanted.chars().count() / 3).max(2)
                    || (wanted.len() >= 3 && (full.contains(&wanted) || wanted.contains(&short)));
                close.then_some((d, c.name.as_str()))
            })
            .collect();
        scored.sort();
        scored
            .into_iter()
            .take(MAX_SUGGESTIONS)
            .map(|(_, n)| n.to_owned())
            .collect()
    }

    /// What `text` becomes: `Ok(None)` when it is not a slash command (or
    /// starts with `//`, the way to send a leading slash as typed), the
    /// expansion when it names one, an error when it names none.
    pub fn expand(&self, text: &str) -> Result<Option<Expansion>, SlashError> {
        if text.trim_start().starts_with("//") {
            return Ok(None);
        }
        let Some(inv) = parse_invocation(text) else {
            return Ok(None);
        };
        let command = self.resolve(inv.name)?;
        let unreadable = |message: String| SlashError::Unreadable {
            name: command.name.clone(),
            message,
        };
        let body = match &command.target {
            Target::Plugin {
                command: c,
                cubicle_root,
            } => c
                .render(inv.arguments, cubicle_root)
                .map_err(|e| unreadable(e.to_string()))?,
            Target::Skill(skill) => {
                let prefs = match &self.prefs_dir {
                    Some(dir) => Some(
                        Preferences::load(dir, &skill.name)
                            .map_err(|e| unreadable(e.to_string()))?,
                    ),
                    None => None,
                };
                let body = skill.load_body().map_err(|e| unreadable(e.to_string()))?;
                let args = (!inv.arguments.is_empty()).then_some(inv.arguments);
                crate::tool::render_activation(skill, &body, args, prefs.as_ref())
            }
        };
        let mut prompt = format!("<command-name>/{}</command-name>\n", command.name);
        if !inv.arguments.is_empty() {
            prompt.push_str(&format!("<command-args>{}</command-args>\n", inv.arguments));
        }
        prompt.push('\n');
        prompt.push_str(body.trim_end());
        Ok(Some(Expansion {
            command: command.name.clone(),
            arguments: inv.arguments.to_owned(),
            prompt,
            allowed_tools: command.allowed_tools.clone(),
            model: command.model.clone(),
        }))
    }
}

/// Text with a leading `//` (a slash meant literally) as the person meant
/// it: one slash fewer. Other text is returned as is.
pub fn unescape_slash(text: &str) -> &str {
    let trimmed = text.trim_start();
    if trimmed.starts_with("//") {
        &trimmed[1..]
    } else {
        text
    }
}

/// Levenshtein distance over characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn invocations_and_ordinary_prompts() {
        assert_eq!(
            parse_invocation("  /greet:hello  World  wide "),
            Some(Invocation {
                name: "greet:hello",
                arguments: "World  wide"
            })
        );
        assert_eq!(
            parse_invocation("/review"),
            Some(Invocation {
                name: "review",
                arguments: ""
            })
        );
        for prompt in ["/mnt/Reports is empty", "/", "/ x", "hello /x", "/a*b c"] {
            assert_eq!(parse_invocation(prompt), None, "{prompt}");
        }
    }

    #[test]
    fn arguments_split_with_quotes() {
        assert_eq!(
            split_arguments(r#"a "b c"  'd e' f"#),
            vec!["a", "b c", "d e", "f"]
        );
        assert_eq!(split_arguments(r#"x """#), vec!["x", ""]);
        assert!(split_arguments("   ").is_empty());
    }

    #[test]
    fn substitution_is_one_pass() {
        assert_eq!(
            substitute(
                "Review $1 for $2 ($ARGUMENTS) with ${CLAUDE_PLUGIN_ROOT}/x and ${CUBICLE_PLUGIN_ROOT}; $3 is empty",
                "main.rs \"Ann Lee\"",
                "/mnt/.plugins/p"
            ),
            concat!(
                "Review main.rs for Ann Lee (main.rs \"Ann Lee\") with /mnt/.plugins/p/x ",
                "and /mnt/.plugins/p;  is empty"
            )
        );
        // Arguments that look like placeholders stay as typed.
        assert_eq!(
            substitute("say $ARGUMENTS", "$1 $ARGUMENTS", "/r"),
            "say $1 $ARGUMENTS"
        );
        // No placeholder: the arguments are appended, not lost.
        assert_eq!(
            substitute("Tidy up.", "src/", "/r"),
            "Tidy up.\n\nARGUMENTS: src/\n"
        );
        assert_eq!(substitute("Tidy up.", "", "/r"), "Tidy up.");
    }

    fn index(names: &[&str]) -> CommandIndex {
        let mut idx = CommandIndex::new(None);
        for n in names {
            idx.push(SlashCommand {
                name: (*n).to_owned(),
                description: String::new(),
                argument_hint: None,
                allowed_tools: Vec::new(),
                model: None,
                is_skill: false,
                target: Target::Plugin {
                    command: PluginCommand {
                        name: (*n).to_owned(),
                        description: String::new(),
                        argument_hint: None,
                        allowed_tools: Vec::new(),
                        model: None,
                        path: PathBuf::from("/nonexistent"),
                    },
                    cubicle_root: "/r".to_owned(),
                },
            });
        }
        idx
    }

    #[test]
    fn short_names_resolve_when_unambiguous() {
        let idx = index(&["greet:hello", "git:commit", "lint:commit", "pdf"]);
        assert_eq!(idx.resolve("hello").unwrap().name, "greet:hello");
        assert_eq!(idx.resolve("greet:hello").unwrap().name, "greet:hello");
        assert_eq!(idx.resolve("pdf").unwrap().name, "pdf");
        assert_eq!(
            idx.resolve("commit").unwrap_err(),
            SlashError::Ambiguous {
                name: "commit".into(),
                candidates: vec!["git:commit".into(), "lint:commit".into()]
            }
        );
        assert_eq!(
            idx.resolve("commit").unwrap_err().to_string(),
            "/commit is ambiguous: it could be /git:commit, /lint:commit; type the full name"
        );
    }

    #[test]
    fn unknown_commands_list_close_matches() {
        let idx = index(&["greet:hello", "git:commit", "lint:commit", "pdf"]);
        assert_eq!(
            idx.resolve("helo").unwrap_err(),
            SlashError::Unknown {
                name: "helo".into(),
                suggestions: vec!["greet:hello".into()]
            }
        );
        assert_eq!(
            idx.resolve("comit").unwrap_err().to_string(),
            "there is no command /comit; did you mean /git:commit, /lint:commit? (start the message with `//` to send it as typed)"
        );
        let SlashError::Unknown { suggestions, .. } = idx.resolve("zzzzzzzz").unwrap_err() else {
            panic!("expected unknown");
        };
        assert!(suggestions.is_empty());
        // Not a command, or escaped: sent as typed.
        assert_eq!(idx.expand("/mnt/x has files").unwrap(), None);
        assert_eq!(idx.expand("//helo there").unwrap(), None);
        assert_eq!(unescape_slash("//helo there"), "/helo there");
        assert_eq!(unescape_slash("plain"), "plain");
        assert!(matches!(
            idx.expand("/helo").unwrap_err(),
            SlashError::Unknown { .. }
        ));
        // A command whose file went away is a clear error.
        assert!(
            idx.expand("/pdf")
                .unwrap_err()
                .to_string()
                .starts_with("/pdf cannot run: ")
        );
    }

    #[test]
    fn edit_distance() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }
}
