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
    Credential(Box<CredentialItem>),
    Text,
}

/// One checked `[[credential]]` table. It holds where the secret lives,
/// never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialItem {
    pub domain: DomainPattern,
    pub header: String,
    pub value_template: String,
    pub secret_ref: String,
}

impl CredentialItem {
    /// The table as an inline TOML table, for `policy show` and origins.
    pub fn display(&self) -> String {
        format!(
            "{{ domain = {}, header = {}, value = {}, secret = {} }}",
            toml_string(&self.domain.to_string()),
            toml_string(&self.header),
            toml_string(&self.value_template),
            toml_string(&self.secret_ref),
        )
    }
}

/// The keys a `[[credential]]` table may have.
const CREDENTIAL_KEYS: &[&str] = &["domain", "header", "secret", "value"];

/// Where the secret goes in a credential's `value`.
const SECRET_PLACEHOLDER: &str = "{secret}";

/// Headers that frame or route the request: the proxy owns them, so a
/// credential may not set them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "proxy-authorization",
];

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
        if section == schema::CREDENTIAL {
            entries.push(parse_credentials(section_value, &lines, file)?);
            continue;
        }
        if schema::READ_ELSEWHERE.contains(&section) {
            continue;
        }
        if !SECTIONS.contains(&section) {
            return Err(invalid(
                at,
                section,
                format!(
                    "unknown section; the sections are {}",
                    SECTIONS
                        .iter()
                        .map(|s| if *s == schema::CREDENTIAL {
                            format!("[[{s}]]")
                        } else {
                            format!("[{s}]")
                        })
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

/// Parses the `[[credential]]` array of tables into one entry whose items
/// are the credentials, in file order.
fn parse_credentials(
    value: &Spanned<DeValue<'_>>,
    lines: &LineIndex,
    file: &Path,
) -> Result<Entry, PolicyError> {
    let invalid = |offset: usize, key: String, message: String| PolicyError::Invalid {
        file: file.to_path_buf(),
        line: lines.line(offset),
        key,
        message,
    };
    let spec = schema::find(schema::CREDENTIAL)
        .ok_or_else(|| invalid(0, schema::CREDENTIAL.into(), "not in the schema".into()))?;
    let DeValue::Array(tables) = value.get_ref() else {
        return Err(invalid(
            value.span().start,
            schema::CREDENTIAL.into(),
            "expected [[credential]] tables (two brackets), one for each credential, \
             with domain, header and secret"
                .into(),
        ));
    };
    let mut items = Vec::with_capacity(tables.len());
    for (i, table) in tables.iter().enumerate() {
        let key = format!("{}[{i}]", schema::CREDENTIAL);
        let DeValue::Table(fields) = table.get_ref() else {
            return Err(invalid(
                table.span().start,
                key,
                format!(
                    "expected a table with domain, header and secret, found {}",
                    table.get_ref().type_str()
                ),
            ));
        };
        let mut domain = None;
        let mut header = None;
        let mut secret = None;
        let mut template = None;
        let first_line_at = table.span().start;
        for (name, field) in fields.iter() {
            let name_text = name.get_ref().as_ref();
            let field_key = format!("{key}.{name_text}");
            if !CREDENTIAL_KEYS.contains(&name_text) {
                return Err(invalid(
                    name.span().start,
                    field_key,
                    format!(
                        "unknown key; a [[credential]] has {}",
                        CREDENTIAL_KEYS.join(", ")
                    ),
                ));
            }
            let DeValue::String(text) = field.get_ref() else {
                return Err(invalid(
                    field.span().start,
                    field_key,
                    format!("expected a string, found {}", field.get_ref().type_str()),
                ));
            };
            let at = field.span().start;
            let checked = match name_text {
                "domain" => check_credential_domain(text).map(|d| domain = Some(d)),
                "header" => check_header(text).map(|()| header = Some(text.to_string())),
                "secret" => check_secret_ref(text).map(|()| secret = Some(text.to_string())),
                _ => check_template(text).map(|()| template = Some(text.to_string())),
            };
            checked.map_err(|message| invalid(at, field_key, message))?;
        }
        let missing = |what: &str, example: &str| {
            invalid(
                first_line_at,
                key.clone(),
                format!("missing {what}, e.g. {example}"),
            )
        };
        let domain = domain.ok_or_else(|| missing("domain", "domain = \"api.example.com\""))?;
        let header = header.ok_or_else(|| missing("header", "header = \"Authorization\""))?;
        let secret_ref =
            secret.ok_or_else(|| missing("secret", "secret = \"keyring:example-token\""))?;
        let item = CredentialItem {
            domain,
            header,
            value_template: template.unwrap_or_else(|| SECRET_PLACEHOLDER.to_string()),
            secret_ref,
        };
        items.push(Item {
            text: item.display(),
            line: lines.line(first_line_at),
            compiled: Compiled::Credential(Box::new(item)),
        });
    }
    Ok(Entry {
        spec,
        line: items
            .first()
            .map_or_else(|| lines.line(value.span().start), |i| i.line),
        value: EntryValue::List(items),
    })
}

/// A credential's domain: a name or `*.name`, never every domain.
fn check_credential_domain(text: &str) -> Result<DomainPattern, String> {
    let pattern = DomainPattern::parse(text)?;
    if pattern.to_string() == "*" {
        return Err(
            "a credential must name its domain (a name or *.name): \"*\" would send the \
             secret to every site"
                .into(),
        );
    }
    Ok(pattern)
}

/// An HTTP header name (RFC 9110 token) the proxy lets a credential set.
fn check_header(text: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if text.is_empty() || !text.chars().all(token) {
        return Err(format!(
            "{text:?} is not an HTTP header name (letters, digits and -, no spaces or colon)"
        ));
    }
    if RESERVED_HEADERS.contains(&text.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "{text:?} frames or routes the request, so a credential cannot set it"
        ));
    }
    Ok(())
}

/// `keyring:NAME` or `env:NAME`. The text is not repeated in the error: a
/// person who pasted the secret itself here must not see it copied into logs.
fn check_secret_ref(text: &str) -> Result<(), String> {
    let name = text
        .strip_prefix("keyring:")
        .or_else(|| text.strip_prefix("env:"));
    match name {
        Some(name) if !name.is_empty() && !name.chars().any(|c| c.is_control() || c == '=') => {
            Ok(())
        }
        Some(_) => Err(
            "the secret's name after keyring: or env: is empty or has a control character or '='"
                .into(),
        ),
        None => Err(
            "must say where the secret lives, as keyring:NAME or env:NAME; the secret itself \
             never goes in a settings file (what was written is not repeated here)"
                .into(),
        ),
    }
}

/// A header value with `{secret}` where the secret goes. Not repeated in
/// errors, for the same reason as the secret reference.
fn check_template(text: &str) -> Result<(), String> {
    if !text.contains(SECRET_PLACEHOLDER) {
        return Err(format!(
            "must contain {SECRET_PLACEHOLDER} where the secret goes, e.g. \"Bearer {SECRET_PLACEHOLDER}\"; \
             the secret itself never goes in a settings file (what was written is not repeated here)"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("a header value cannot hold a line break or control character".into());
    }
    Ok(())
}

/// A TOML basic string holding `text`.
pub(crate) fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
            let key = schema::canonical_lock(text);
            let known = SECTIONS.contains(&key) || schema::find(key).is_some();
            if !known || text == "locks" || text == "locks.keys" {
                return Err(format!(
                    "{text:?} is not a setting or section that can be locked"
                ));
            }
            Ok(Compiled::Text)
        }
        ValueKind::Bool => Ok(Compiled::Text),
        ValueKind::Credentials => {
            Err("credentials are written as [[credential]] tables, not a list of strings".into())
        }
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
    fn hooks_and_mcp_servers_are_left_to_their_reader() {
        let entries = parse(
            Path::new("/u/settings.toml"),
            "[[hooks.PreToolUse]]\nmatcher = \"Bash\"\nhooks = [{ type = \"command\", command = \"true\" }]\n\n[mcp_servers.notes]\ncommand = \"notes\"\n\n[tools]\ndisabled = [\"task\"]\n",
        )
        .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].spec.key, "tools.disabled");
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

    fn credentials(text: &str) -> Vec<(CredentialItem, usize)> {
        let entries = parse(Path::new("f"), text).unwrap();
        let entry = entries.iter().find(|e| e.spec.key == "credential").unwrap();
        let EntryValue::List(items) = &entry.value else {
            panic!()
        };
        items
            .iter()
            .map(|i| match &i.compiled {
                Compiled::Credential(c) => ((**c).clone(), i.line),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn credential_tables_parse_with_their_lines() {
        let text = "[network]\nallow = [\"api.example.com\"]\n\n\
                    [[credential]]\n\
                    domain = \"api.example.com\"\n\
                    header = \"Authorization\"\n\
                    secret = \"keyring:example-token\"\n\
                    value = \"Bearer {secret}\"\n\n\
                    [[credential]]\n\
                    domain = \"*.corp.example\"\n\
                    header = \"X-Api-Key\"\n\
                    secret = \"env:CORP_KEY\"\n";
        let creds = credentials(text);
        assert_eq!(creds.len(), 2);
        let (first, line) = &creds[0];
        assert_eq!(*line, 4);
        assert_eq!(first.domain.to_string(), "api.example.com");
        assert_eq!(first.header, "Authorization");
        assert_eq!(first.secret_ref, "keyring:example-token");
        assert_eq!(first.value_template, "Bearer {secret}");
        assert_eq!(
            first.display(),
            "{ domain = \"api.example.com\", header = \"Authorization\", \
             value = \"Bearer {secret}\", secret = \"keyring:example-token\" }"
        );
        let (second, line) = &creds[1];
        assert_eq!(*line, 10);
        assert_eq!(second.domain.to_string(), "*.corp.example");
        assert_eq!(second.value_template, "{secret}");
        assert_eq!(second.secret_ref, "env:CORP_KEY");
        // The entry sits at the first table, so notices about it point there.
        let entries = parse(Path::new("f"), text).unwrap();
        assert_eq!(entries.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 4]);
    }

    #[test]
    fn inline_credential_tables_work_too() {
        let creds = credentials(
            "credential = [{ domain = \"x.test\", header = \"Authorization\", secret = \"env:X\" }]\n",
        );
        assert_eq!(creds[0].0.domain.to_string(), "x.test");
        assert_eq!(creds[0].1, 1);
    }

    #[test]
    fn bad_credentials_name_file_line_and_key() {
        let table = |body: &str| {
            format!("[sandbox]\nallowed_backends = [\"jail\"]\n[[credential]]\n{body}")
        };
        let ok =
            "domain = \"api.example.com\"\nheader = \"Authorization\"\nsecret = \"keyring:t\"\n";
        assert!(parse(Path::new("f"), &table(ok)).is_ok());
        assert_eq!(
            err(&table(
                "domain = \"https://api.example.com\"\nheader = \"A\"\nsecret = \"env:X\"\n"
            )),
            "/u/settings.toml:4: credential[0].domain: \"https://api.example.com\" is not a \
             domain: write the name alone, without https:// or a path"
        );
        assert!(
            err(&table(
                "domain = \"*\"\nheader = \"A\"\nsecret = \"env:X\"\n"
            ))
            .starts_with(
                "/u/settings.toml:4: credential[0].domain: a credential must name its domain"
            )
        );
        assert!(
            err(&table(
                "domain = \"a.*.com\"\nheader = \"A\"\nsecret = \"env:X\"\n"
            ))
            .starts_with("/u/settings.toml:4: credential[0].domain: ")
        );
        assert_eq!(
            err(&table(
                "domain = \"a.com\"\nheader = \"Author ization\"\nsecret = \"env:X\"\n"
            )),
            "/u/settings.toml:5: credential[0].header: \"Author ization\" is not an HTTP \
             header name (letters, digits and -, no spaces or colon)"
        );
        assert!(
            err(&table(
                "domain = \"a.com\"\nheader = \"Authorization:\"\nsecret = \"env:X\"\n"
            ))
            .contains("credential[0].header")
        );
        assert!(
            err(&table(
                "domain = \"a.com\"\nheader = \"Host\"\nsecret = \"env:X\"\n"
            ))
            .contains("credential[0].header: \"Host\" frames or routes the request")
        );
        // A pasted secret is refused and not repeated in the error.
        let e = err(&table(
            "domain = \"a.com\"\nheader = \"A\"\nsecret = \"sk-live-12345\"\n",
        ));
        assert!(e.starts_with("/u/settings.toml:6: credential[0].secret: must say where the secret lives, as keyring:NAME or env:NAME"), "{e}");
        assert!(!e.contains("sk-live-12345"), "{e}");
        assert!(
            err(&table(
                "domain = \"a.com\"\nheader = \"A\"\nsecret = \"vault:x\"\n"
            ))
            .contains("credential[0].secret")
        );
        assert!(
            err(&table(
                "domain = \"a.com\"\nheader = \"A\"\nsecret = \"env:\"\n"
            ))
            .contains("is empty")
        );
        assert!(
            err(&table(
                "domain = \"a.com\"\nheader = \"A\"\nsecret = \"keyring:a=b\"\n"
            ))
            .contains("credential[0].secret")
        );
        // A value without {secret} is most likely a pasted secret too.
        let e = err(&table(&format!("{ok}value = \"Bearer sk-live-12345\"\n")));
        assert!(
            e.starts_with("/u/settings.toml:7: credential[0].value: must contain {secret}"),
            "{e}"
        );
        assert!(!e.contains("sk-live-12345"), "{e}");
        assert!(
            err(&table(&format!(
                "{ok}value = \"Bearer {{secret}}\\r\\nX: y\"\n"
            )))
            .contains("line break")
        );
        assert_eq!(
            err(&table("domain = \"a.com\"\nsecret = \"env:X\"\n")),
            "/u/settings.toml:3: credential[0]: missing header, e.g. header = \"Authorization\""
        );
        assert!(
            err(&table("header = \"A\"\nsecret = \"env:X\"\n"))
                .contains("credential[0]: missing domain")
        );
        assert!(
            err(&table("domain = \"a.com\"\nheader = \"A\"\n"))
                .contains("credential[0]: missing secret")
        );
        assert_eq!(
            err(&table(&format!("{ok}token = \"x\"\n"))),
            "/u/settings.toml:7: credential[0].token: unknown key; a [[credential]] has domain, header, secret, value"
        );
        assert_eq!(
            err(&table("domain = 3\n")),
            "/u/settings.toml:4: credential[0].domain: expected a string, found integer"
        );
        // The index counts tables in the file.
        assert!(
            err(&format!(
                "[[credential]]\n{ok}[[credential]]\n{ok}header = \"B\"\n"
            ))
            .contains("/u/settings.toml:")
        );
        assert!(
            err(&format!("[[credential]]\n{ok}[[credential]]\ndomain = \"b.com\"\nheader = \"A\"\nsecret = \"x\"\n"))
                .starts_with("/u/settings.toml:8: credential[1].secret: ")
        );
        assert!(err("[credential]\ndomain = \"a.com\"\n").starts_with(
            "/u/settings.toml:1: credential: expected [[credential]] tables (two brackets)"
        ));
        assert!(err("credential = [\"a.com\"]\n").contains("credential[0]: expected a table"));
        assert!(err("[credentials]\n").contains("[[credential]]"));
    }

    #[test]
    fn credentials_can_be_locked_by_either_name() {
        for name in ["credential", "credentials"] {
            let entries =
                parse(Path::new("f"), &format!("[locks]\nkeys = [\"{name}\"]\n")).unwrap();
            assert_eq!(entries.len(), 1);
        }
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
