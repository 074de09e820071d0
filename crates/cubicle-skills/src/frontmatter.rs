//! The `SKILL.md` frontmatter: splitting the `---` block off the Markdown
//! body and reading its YAML leniently.
//!
//! Skills are untrusted input (they arrive from marketplaces and mailed
//! `.skill` files), so the YAML is parsed by `serde-saphyr` with tight budgets
//! (size, depth, nodes, aliases) that bound the work a hostile file can cause.
//! Reading is lenient in the way people expect from Claude Code: an unknown
//! key or a value of the wrong type becomes a [`Diagnostic`] with the file's
//! line number and the field keeps its default; only YAML that cannot be read
//! at all (or a frontmatter that is not a mapping) fails the skill.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// Most bytes a frontmatter block may have; real ones are well under 4 KiB.
pub const MAX_FRONTMATTER_BYTES: usize = 64 * 1024;

/// A warning about a skill, pointing at a file and, where known, a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the warning is about.
    pub path: PathBuf,
    /// 1-based line in that file, when known.
    pub line: Option<u64>,
    /// What is wrong, and what was done about it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// Why a frontmatter could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontmatterError {
    /// The file does not start with a `---` line.
    #[error("no YAML frontmatter: SKILL.md must start with a line `---`")]
    Missing,
    /// The opening `---` has no closing `---`.
    #[error("the frontmatter opened on line 1 is never closed by a `---` line")]
    Unclosed,
    /// The frontmatter is larger than [`MAX_FRONTMATTER_BYTES`].
    #[error("the frontmatter is {size} bytes, more than the {MAX_FRONTMATTER_BYTES} allowed")]
    TooLarge {
        /// Its size in bytes.
        size: usize,
    },
    /// The YAML could not be parsed, or broke a budget.
    #[error("{}invalid YAML: {message}", line_prefix(*.line))]
    Yaml {
        /// 1-based line in SKILL.md, when known.
        line: Option<u64>,
        /// The parser's complaint.
        message: String,
    },
    /// The YAML is valid but is not a mapping of keys to values.
    #[error("the frontmatter must be a mapping of keys to values, e.g. `name: my-skill`")]
    NotAMapping,
}

/// A `SKILL.md` split into its frontmatter text and its Markdown body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split<'a> {
    /// The YAML between the `---` lines.
    pub yaml: &'a str,
    /// Everything after the closing `---` line.
    pub body: &'a str,
    /// 1-based line number in the file of the YAML's first line.
    pub yaml_first_line: u64,
}

/// Splits `text` at its `---` frontmatter fences (a leading BOM and CRLF line
/// ends are accepted).
pub fn split(text: &str) -> Result<Split<'_>, FrontmatterError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().ok_or(FrontmatterError::Missing)?;
    if first.trim_end() != "---" {
        return Err(FrontmatterError::Missing);
    }
    let yaml_start = first.len();
    let mut offset = yaml_start;
    for line in lines {
        if line.trim_end() == "---" {
            let yaml = &text[yaml_start..offset];
            if yaml.len() > MAX_FRONTMATTER_BYTES {
                return Err(FrontmatterError::TooLarge { size: yaml.len() });
            }
            return Ok(Split {
                yaml,
                body: &text[offset + line.len()..],
                yaml_first_line: 2,
            });
        }
        offset += line.len();
        if offset - yaml_start > MAX_FRONTMATTER_BYTES {
            return Err(FrontmatterError::TooLarge {
                size: offset - yaml_start,
            });
        }
    }
    Err(FrontmatterError::Unclosed)
}

/// The fields of a `SKILL.md` frontmatter: the Agent Skills specification's
/// and Claude Code's extensions. Absent or malformed fields keep their default.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frontmatter {
    /// `name`: lowercase letters, digits and hyphens, the folder's name.
    pub name: Option<String>,
    /// `description`: what the skill does and when to use it.
    pub description: Option<String>,
    /// `license`: the license name or the bundled license file.
    pub license: Option<String>,
    /// `compatibility`: what the skill needs from its environment.
    pub compatibility: Option<String>,
    /// `metadata`: free string-to-string properties.
    pub metadata: BTreeMap<String, String>,
    /// `allowed-tools`: tools pre-approved while the skill is active
    /// (a space-separated string per the spec, or a list as Claude Code allows).
    pub allowed_tools: Vec<String>,
    /// `when_to_use` (Claude Code): extra guidance shown with the description.
    pub when_to_use: Option<String>,
    /// `argument-hint` (Claude Code): e.g. `[file] [format]`.
    pub argument_hint: Option<String>,
    /// `disable-model-invocation` (Claude Code): only the person can invoke it.
    pub disable_model_invocation: bool,
    /// `user-invocable` (Claude Code): whether it appears as a `/name` command.
    pub user_invocable: bool,
    /// `paths` (Claude Code): globs of files the skill is relevant to.
    pub paths: Vec<String>,
    /// `model` (Claude Code): model to use while the skill runs.
    pub model: Option<String>,
    /// `context` (Claude Code): `fork` runs the skill in a sub-agent.
    pub context: Option<String>,
    /// Keys Cubicle knows but does not act on yet (`agent`, `hooks`,
    /// `effort`, `shell`, `version`), kept for later use.
    pub reserved: BTreeMap<String, Value>,
}

/// Keys that are known but not yet acted on: no warning, kept raw.
const RESERVED_KEYS: &[&str] = &["agent", "hooks", "effort", "shell", "version"];

/// Parses frontmatter YAML leniently. `file` and `first_line` place the
/// warnings: `first_line` is the file line of the YAML's first line.
pub fn parse(
    yaml: &str,
    file: &Path,
    first_line: u64,
) -> Result<(Frontmatter, Vec<Diagnostic>), FrontmatterError> {
    let raw = parse_raw(yaml, first_line)?;
    let mut fm = Frontmatter {
        user_invocable: true,
        ..Frontmatter::default()
    };
    let mut warnings = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in raw.0 {
        let line = (entry.line > 0).then(|| entry.line + first_line - 1);
        let mut warn = |message: String| {
            warnings.push(Diagnostic {
                path: file.to_path_buf(),
                line,
                message,
            });
        };
        if !seen.insert(entry.key.clone()) {
            warn(format!(
                "key `{}` appears twice; the last value is used",
                entry.key
            ));
        }
        let key = entry.key.as_str();
        let value = entry.value;
        let bad = |expected: &str| format!("`{key}` should be {expected}; ignored");
        match key {
            "name" => match as_string(&value) {
                Some(s) => fm.name = Some(s),
                None => warn(bad("a string")),
            },
            "description" => match as_string(&value) {
                Some(s) => fm.description = Some(s),
                None => warn(bad("a string")),
            },
            "license" => match as_string(&value) {
                Some(s) => fm.license = Some(s),
                None => warn(bad("a string")),
            },
            "compatibility" => match as_string(&value) {
                Some(s) => fm.compatibility = Some(s),
                None => warn(bad("a string")),
            },
            "when_to_use" | "when-to-use" => match as_string(&value) {
                Some(s) => fm.when_to_use = Some(s),
                None => warn(bad("a string")),
            },
            "argument-hint" | "argument_hint" => match as_string(&value) {
                Some(s) => fm.argument_hint = Some(s),
                None => warn(bad("a string")),
            },
            "model" => match as_string(&value) {
                Some(s) => fm.model = Some(s),
                None => warn(bad("a string")),
            },
            "context" => match as_string(&value) {
                Some(s) => fm.context = Some(s),
                None => warn(bad("a string such as `fork`")),
            },
            "disable-model-invocation" => match as_bool(&value) {
                Some(b) => fm.disable_model_invocation = b,
                None => warn(bad("true or false")),
            },
            "user-invocable" => match as_bool(&value) {
                Some(b) => fm.user_invocable = b,
                None => warn(bad("true or false")),
            },
            "allowed-tools" | "allowed_tools" => match as_list(&value, true) {
                Some(list) => fm.allowed_tools = list,
                None => warn(bad("a space-separated string or a list of strings")),
            },
            "paths" => match as_list(&value, false) {
                Some(list) => fm.paths = list,
                None => warn(bad("a glob or a list of globs")),
            },
            "metadata" => match value {
                Value::Object(map) => {
                    for (k, v) in map {
                        match as_string(&v) {
                            Some(s) => {
                                fm.metadata.insert(k, s);
                            }
                            None => warn(format!("`metadata.{k}` should be a string; ignored")),
                        }
                    }
                }
                Value::Null => {}
                _ => warn(bad("a mapping of strings")),
            },
            k if RESERVED_KEYS.contains(&k) => {
                fm.reserved.insert(k.to_owned(), value);
            }
            other => warn(format!("unknown key `{other}`; ignored")),
        }
    }
    Ok((fm, warnings))
}

/// The top-level keys of a frontmatter, in file order, each with its 1-based
/// line in the file (when known) and its value, under the same budgets as
/// [`parse`]. For formats with keys of their own (agent definitions).
pub fn fields(
    yaml: &str,
    first_line: u64,
) -> Result<Vec<(String, Option<u64>, Value)>, FrontmatterError> {
    Ok(parse_raw(yaml, first_line)?
        .0
        .into_iter()
        .map(|e| {
            let line = (e.line > 0).then(|| e.line + first_line - 1);
            (e.key, line, e.value)
        })
        .collect())
}

fn parse_raw(yaml: &str, first_line: u64) -> Result<RawMap, FrontmatterError> {
    if yaml.len() > MAX_FRONTMATTER_BYTES {
        return Err(FrontmatterError::TooLarge { size: yaml.len() });
    }
    let raw: Option<RawMap> =
        serde_saphyr::from_str_with_options(yaml, options()).map_err(|e| {
            let message = first_line_of(&e.without_snippet().to_string());
            if message.contains(EXPECTING) {
                return FrontmatterError::NotAMapping;
            }
            let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
            FrontmatterError::Yaml {
                line: line.map(|l| l + first_line - 1),
                message,
            }
        })?;
    Ok(raw.unwrap_or_default())
}

/// The budgets for frontmatter YAML: generous for any real skill, tight
/// enough that billion-laughs, deep nesting and huge documents stop fast.
fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(MAX_FRONTMATTER_BYTES);
    budget.max_events = 20_000;
    budget.max_aliases = 64;
    budget.max_anchors = 64;
    budget.max_recorded_anchor_events = 4_096;
    budget.max_recorded_anchor_bytes = 64 * 1024;
    budget.max_depth = 16;
    budget.flow_nesting_limit = 16;
    budget.max_documents = 1;
    budget.max_nodes = 10_000;
    budget.max_total_scalar_bytes = MAX_FRONTMATTER_BYTES;
    budget.max_merge_keys = 16;
    budget.max_inclusion_depth = 0;
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = 4_096;
    alias_limits.max_replay_stack_depth = 8;
    alias_limits.max_alias_expansions_per_anchor = 16;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits = alias_limits;
    // Duplicate keys are reported by us as warnings, not refused.
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    options.with_snippet = false;
    options
}

fn first_line_of(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    line.chars().take(300).collect()
}

pub(crate) fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        // YAML reads `version: 1.0` or `name: 2024` as numbers; a person
        // meant the text.
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

pub(crate) fn as_list(v: &Value, split_spaces: bool) -> Option<Vec<String>> {
    match v {
        Value::String(s) if split_spaces => Some(split_tools(s)),
        Value::String(s) => Some(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        Value::Array(items) => items.iter().map(as_string).collect(),
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

/// Splits `Bash(git add *) Read Write` into tools, keeping the spaces inside
/// parentheses; commas also separate, as Claude Code accepts.
fn split_tools(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            c if (c.is_whitespace() || c == ',') && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One top-level `key: value` pair with the key's 1-based YAML line.
struct RawEntry {
    key: String,
    line: u64,
    value: Value,
}

/// The top-level mapping, in file order.
#[derive(Default)]
struct RawMap(Vec<RawEntry>);

impl<'de> serde::Deserialize<'de> for RawMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawMapVisitor)
    }
}

struct RawMapVisitor;

const EXPECTING: &str = "a mapping of keys to values";

fn line_prefix(line: Option<u64>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

impl<'de> Visitor<'de> for RawMapVisitor {
    type Value = RawMap;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTING)
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawMap, E> {
        Ok(RawMap::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<RawMap, E> {
        Ok(RawMap::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMap, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<serde_saphyr::Spanned<Value>>()? {
            let line = key.referenced.line();
            let key = match key.value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let value: Value = map.next_value()?;
            out.push(RawEntry { key, line, value });
        }
        Ok(RawMap(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn splits_fences_with_crlf_and_bom() {
        let s = split("\u{feff}---\r\nname: a\r\n---\r\nbody\n").unwrap();
        assert_eq!(s.yaml, "name: a\r\n");
        assert_eq!(s.body, "body\n");
        assert_eq!(split("no fm"), Err(FrontmatterError::Missing));
        assert_eq!(split("---\nname: a\n"), Err(FrontmatterError::Unclosed));
    }

    #[test]
    fn allowed_tools_keep_parenthesised_spaces() {
        assert_eq!(
            split_tools("Bash(git add *) Read, Write"),
            vec!["Bash(git add *)", "Read", "Write"]
        );
    }

    #[test]
    fn empty_frontmatter_is_empty() {
        let (fm, w) = parse("", Path::new("x"), 2).unwrap();
        assert_eq!(fm.name, None);
        assert!(fm.user_invocable);
        assert!(w.is_empty());
    }
}
