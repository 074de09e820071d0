//! Reads one settings file (or the command line's settings) into checked,
//! compiled entries that remember their line. Unknown sections and keys,
//! wrong types and invalid rules are errors naming the file, line and key: a
//! typo in a security setting must not silently do nothing.

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::domain::DomainPattern;
use crate::error::PolicyError;
use crate::rule::{Rule, cubicle_tool_name};
use crate::schema::{self, BACKENDS, KeySpec, SECTIONS, ValueKind};

/// One setting as a file wrote it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub spec: &'static KeySpec,
    pub line: usize,
    pub value: EntryValue,
}

/// A setting's checked value.
#[derive(Debug, Clone)]
pub(crate) enum EntryValue {
    Bool(bool),
    List(Vec<Item>),
}

/// One item of a list setting, compiled for matching.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub text: String,
    pub line: usize,
    pub compiled: Compiled,
}

/// The matcher an item compiles to.
#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    Rule(Box<Rule>),
    Domain(DomainPattern),
    Name(GlobMatcher),
    Text,
}

/// Parses settings `text` read from `file`.
pub(crate) fn parse(file: &Path, text: &str) -> Result<Vec<Entry>, PolicyError> {
    let lines = LineIndex::new(text);
    let invalid = |offset: usize, key: &str, message: String| PolicyError::Invalid {
        file: file.to_path_buf(),
        line: lines.line(offset),
        key: key.to_string(),
        message,
    };
    let doc = DeTable::parse(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let message = e
            .message()
            .trim()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        invalid(offset, "", format!("not valid TOML: {message}"))
    })?;
    let mut entries = Vec::new();
    for (section_key, section_value) in doc.get_ref().iter() {
        let section = section_key.get_ref().as_ref();
        let at = section_key.span().start;
        if !SECTIONS.contains(&section) {
            return Err(invalid(
                at,
                section,
                format!(
                    "unknown section; the sections are {}",
                    SECTIONS
                        .iter()
                        .map(|s| format!("[{s}]"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let DeValue::Table(table) = section_value.get_ref() else {
            return Err(invalid(
                section_value.span().start,
                section,
                format!("expected a table: write [{section}] on its own line, then its settings"),
            ));
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let full = format!("{section}.{name}");
            let Some(spec) = schema::find(&full) else {
                let known: Vec<&str> = schema::SCHEMA
                    .iter()
                    .filter(|s| s.section() == section)
                    .map(|s| s.key)
                    .collect();
                return Err(invalid(
                    key.span().start,
                    &full,
                    format!("unknown setting; [{section}] has {}", known.join(", ")),
                ));
            };
            entries.push(parse_value(spec, value, &lines, file)?);
        }
    }
    // The parsed tables are sorted by key; the file's order reads better in
    // notices and `policy show`.
    entries.sort_by_key(|e| e.line);
    Ok(entries)
}

/// Parses text whose every line is a document of its own (the command
/// line's settings), numbering entries and errors by line.
pub(crate) fn parse_lines(file: &Path, text: &str) -> Result<Vec<Entry>, PolicyError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let parsed = parse(file, line).map_err(|e| match e {
            PolicyError::Invalid {
                file, key, message, ..
            } => PolicyError::Invalid {
                file,
                line: number,
                key,
                message,
            },
            other => other,
        })?;
        for mut entry in parsed {
            entry.line = number;
            if let EntryValue::List(items) = &mut entry.value {
                for item in items {
                    item.line = number;
                }
            }
            entries.push(entry);
        }
    }
    Ok(entries)
}

fn parse_value(
    spec: &'static KeySpec,
    value: &Spanned<DeValue<'_>>,
    lines: &LineIndex,
    file: &Path,
) -> Result<Entry, PolicyError> {
    let line = lines.line(value.span().start);
    let invalid = |line: usize, key: String, message: String| PolicyError::Invalid {
        file: file.to_path_buf(),
        line,
        key,
        message,
    };
    let value = match (spec.kind, value.get_ref()) {
        (ValueKind::Bool, DeValue::Boolean(b)) => EntryValue::Bool(*b),
        (ValueKind::Bool, other) => {
            return Err(invalid(
                line,
                spec.key.into(),
                format!("expected true or false, found {}", other.type_str()),
            ));
        }
        (_, DeValue::Array(array)) => {
            let mut items = Vec::with_capacity(array.len());
            for (i, element) in array.iter().enumerate() {
                let item_line = lines.line(element.span().start);
                let key = format!("{}[{i}]", spec.key);
                let DeValue::String(text) = element.get_ref() else {
                    return Err(invalid(
                        item_line,
                        key,
                        format!("expected a string, found {}", element.get_ref().type_str()),
                    ));
                };
                let compiled = compile_item(spec.kind, text)
                    .map_err(|message| invalid(item_line, key, message))?;
                items.push(Item {
                    text: text.to_string(),
                    line: item_line,
                    compiled,
                });
            }
            EntryValue::List(items)
        }
        (_, other) => {
            return Err(invalid(
                line,
                spec.key.into(),
                format!(
                    "expected a list of strings, like [\"...\"], found {}",
                    other.type_str()
                ),
            ));
        }
    };
    Ok(Entry { spec, line, value })
}

/// Checks and compiles one list item of the given kind.
fn compile_item(kind: ValueKind, text: &str) -> Result<Compiled, String> {
    match kind {
        ValueKind::Rules => Rule::parse(text)
            .map(|r| Compiled::Rule(Box::new(r)))
            .map_err(|e| e.to_string()),
        ValueKind::Domains => DomainPattern::parse(text).map(Compiled::Domain),
        ValueKind::Backends => {
            if BACKENDS.contains(&text) {
                Ok(Compiled::Text)
            } else {
                Err(format!(
                    "{text:?} is not a backend; the backends are {}",
                    BACKENDS.join(", ")
                ))
            }
        }
        ValueKind::Names => name_glob(text).map(Compiled::Name),
        ValueKind::Tools => {
            let name = cubicle_tool_name(text).unwrap_or(text);
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*' | '?'))
                || name.is_empty()
            {
                return Err(format!("{text:?} is not a tool name"));
            }
            name_glob(name).map(Compiled::Name)
        }
        ValueKind::Keys => {
            let known = SECTIONS.contains(&text) || schema::find(text).is_some();
            if !known || text == "locks" || text == "locks.keys" {
                return Err(format!(
                    "{text:?} is not a setting or section that can be locked"
                ));
            }
            Ok(Compiled::Text)
        }
        ValueKind::Bool => Ok(Compiled::Text),
    }
}

/// A case-sensitive glob where `*` also crosses `/` (`github:acme/*`).
pub(crate) fn name_glob(text: &str) -> Result<GlobMatcher, String> {
    if text.is_empty() {
        return Err("the name is empty".into());
    }
    GlobBuilder::new(text)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("{text:?} is not a valid pattern: {}", e.kind()))
}

/// Maps byte offsets to 1-based line numbers.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use pretty_assertions::assert_eq;

    fn err(text: &str) -> String {
        parse(Path::new("/u/settings.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn line_index_counts_from_one() {
        let idx = LineIndex::new("a\nb\n\nc");
        assert_eq!(idx.line(0), 1);
        assert_eq!(idx.line(1), 1);
        assert_eq!(idx.line(2), 2);
        assert_eq!(idx.line(4), 3);
        assert_eq!(idx.line(5), 4);
    }

    #[test]
    fn a_full_file_parses_with_lines() {
        let text = "[permissions]\nallow = [\n  \"Bash(git *)\",\n  \"Read\",\n]\nask_before_changing_granted_files = false\n";
        let entries = parse(Path::new("f"), text).unwrap();
        assert_eq!(entries.len(), 2);
        let allow = entries
            .iter()
            .find(|e| e.spec.key == "permissions.allow")
            .unwrap();
        let EntryValue::List(items) = &allow.value else {
            panic!()
        };
        assert_eq!(
            items
                .iter()
                .map(|i| (i.text.as_str(), i.line))
                .collect::<Vec<_>>(),
            vec![("Bash(git *)", 3), ("Read", 4)]
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        assert_eq!(
            err("[permissions]\n\nallow = [\"Read\", \"Bash\",\n \"Bash(git *\"]\n"),
            "/u/settings.toml:4: permissions.allow[2]: \"Bash(git *\" is not a valid rule: missing \")\""
        );
        assert_eq!(
            err("[permissions]\nalow = []\n"),
            "/u/settings.toml:2: permissions.alow: unknown setting; [permissions] has \
             permissions.allow, permissions.ask, permissions.deny, \
             permissions.ask_before_changing_granted_files"
        );
        assert!(err("[permission]\nallow = []\n").starts_with(
            "/u/settings.toml:1: permission: unknown section; the sections are [permissions]"
        ));
        assert_eq!(
            err("[network]\nmanaged_only = \"yes\"\n"),
            "/u/settings.toml:2: network.managed_only: expected true or false, found string"
        );
        assert_eq!(
            err("[sandbox]\nallowed_backends = \"jail\"\n"),
            "/u/settings.toml:2: sandbox.allowed_backends: expected a list of strings, like [\"...\"], found string"
        );
        assert_eq!(
            err("[sandbox]\nallowed_backends = [\"jail\", 3]\n"),
            "/u/settings.toml:2: sandbox.allowed_backends[1]: expected a string, found integer"
        );
        assert_eq!(
            err("[sandbox]\nallowed_backends = [\"jial\"]\n"),
            "/u/settings.toml:2: sandbox.allowed_backends[0]: \"jial\" is not a backend; the backends are jail, vm, remote, host"
        );
        assert!(err("[network]\nallow = [\"https://x.com\"]").contains("network.allow[0]"));
        assert!(err("[locks]\nkeys = [\"sandbox.nope\"]").contains("locks.keys[0]"));
        assert!(err("[tools]\ndisabled = [\"a b\"]").contains("tools.disabled[0]"));
        assert!(err("[models]\nallowed_models = [\"[x\"]").contains("models.allowed_models[0]"));
        assert!(err("permissions = 3").contains("permissions: expected a table"));
    }

    #[test]
    fn toml_syntax_errors_name_the_line() {
        let e = err("[permissions]\nallow = [\"x\"\n\n");
        assert!(e.starts_with("/u/settings.toml:"), "{e}");
        assert!(e.contains("not valid TOML"), "{e}");
        let e = err("[a]\nb = 1\n[a]\n");
        assert!(e.starts_with("/u/settings.toml:3: "), "{e}");
    }

    #[test]
    fn dotted_keys_work_like_tables() {
        let entries = parse(Path::new("f"), "sandbox.allowed_backends = [\"jail\"]\n").unwrap();
        assert_eq!(entries[0].spec.key, "sandbox.allowed_backends");
        assert_eq!(entries[0].line, 1);
    }

    #[test]
    fn claude_tool_names_are_accepted_in_disabled() {
        let entries = parse(
            Path::new("f"),
            "[tools]\ndisabled = [\"Task\", \"browser_*\"]",
        )
        .unwrap();
        let EntryValue::List(items) = &entries[0].value else {
            panic!()
        };
        let Compiled::Name(m) = &items[0].compiled else {
            panic!()
        };
        assert!(m.is_match("task"));
    }
}
