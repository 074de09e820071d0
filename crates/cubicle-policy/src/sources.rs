//! Where settings come from: the managed files, the command line, trusted
//! project folders and the person's own file. This is the only module that
//! touches the file system, and it only reads.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{COMMAND_LINE_FILE, PolicyError};
use crate::origin::{Layer, Notice};
use crate::schema::{self, ValueKind};
use crate::settings_file::{self, Entry, toml_string};

/// Where the managed and user settings files are; tests point these at a
/// temporary folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPaths {
    /// The administrator's main file, normally `/etc/cubicle/managed.toml`.
    pub managed_file: PathBuf,
    /// The administrator's drop-in folder, normally `/etc/cubicle/managed.d`;
    /// its `*.toml` files are read in name order, later ones overriding earlier.
    pub managed_dir: PathBuf,
    /// The person's file, normally `~/.config/cubicle/settings.toml`; `None` skips it.
    pub user_file: Option<PathBuf>,
}

impl PolicyPaths {
    /// The standard places, with the person's file under `config_dir`
    /// (normally `~/.config`) when one is given.
    pub fn standard(config_dir: Option<&Path>) -> Self {
        PolicyPaths {
            managed_file: PathBuf::from("/etc/cubicle/managed.toml"),
            managed_dir: PathBuf::from("/etc/cubicle/managed.d"),
            user_file: config_dir.map(|dir| dir.join("cubicle").join("settings.toml")),
        }
    }
}

/// Settings and rules given on the command line, a layer between managed and project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLineSettings {
    /// `key=value` settings; the value is TOML (`sandbox.allowed_backends=["jail"]`,
    /// `permissions.ask_before_changing_granted_files=false`); a value that is
    /// not TOML is taken as a string (a list of one string for list settings).
    pub settings: Vec<String>,
    /// Rules added to `permissions.allow`.
    pub allow: Vec<String>,
    /// Rules added to `permissions.ask`.
    pub ask: Vec<String>,
    /// Rules added to `permissions.deny`.
    pub deny: Vec<String>,
}

/// A granted folder that may hold `.cubicle/settings.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectFolder {
    /// The folder on the host.
    pub path: PathBuf,
    /// Whether the person trusts it; an untrusted folder's settings are not loaded.
    pub trusted: bool,
}

impl ProjectFolder {
    /// The settings file this folder may hold.
    pub fn settings_file(&self) -> PathBuf {
        self.path.join(".cubicle").join("settings.toml")
    }
}

/// One settings source as given to [`crate::Policy::from_sources`]: text
/// already read, with the layer and file it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsSource {
    /// Its layer.
    pub layer: Layer,
    /// Its file (`None` for the command line).
    pub file: Option<PathBuf>,
    /// Its TOML text.
    pub text: String,
}

/// A source the policy was built from, for the audit log's "policy loaded" record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSource {
    /// Its layer.
    pub layer: Layer,
    /// Its file (`None` for the command line).
    pub file: Option<PathBuf>,
    /// Hex SHA-256 of its text.
    pub sha256: String,
}

/// A source read by [`read_all`]: the command line's text has one setting
/// per line, each a document of its own, so the same key may appear twice.
#[derive(Debug, Clone)]
pub(crate) struct RawSource {
    pub source: SettingsSource,
    pub one_setting_per_line: bool,
}

impl From<SettingsSource> for RawSource {
    fn from(source: SettingsSource) -> Self {
        RawSource {
            source,
            one_setting_per_line: false,
        }
    }
}

/// A parsed source, in the order of increasing precedence.
#[derive(Debug, Clone)]
pub(crate) struct ParsedSource {
    pub layer: Layer,
    pub file: Option<PathBuf>,
    pub entries: Vec<Entry>,
    pub loaded: LoadedSource,
}

/// Reads every source, lowest precedence first: user, projects (in the order
/// given), command line, managed.toml, managed.d in name order.
pub(crate) fn read_all(
    paths: &PolicyPaths,
    command_line: &CommandLineSettings,
    projects: &[ProjectFolder],
    notices: &mut Vec<Notice>,
) -> Result<Vec<RawSource>, PolicyError> {
    let mut sources: Vec<RawSource> = Vec::new();
    if let Some(user) = &paths.user_file
        && let Some(text) = read_optional(user)?
    {
        sources.push(
            SettingsSource {
                layer: Layer::User,
                file: Some(user.clone()),
                text,
            }
            .into(),
        );
    }
    for project in projects {
        let file = project.settings_file();
        if !project.trusted {
            // Not even read: an untrusted file cannot fail the load either.
            if file.is_file() {
                notices.push(Notice {
                    layer: Layer::Project,
                    file: Some(file),
                    line: None,
                    key: None,
                    message: "not loaded: folder not trusted".into(),
                });
            }
            continue;
        }
        if let Some(text) = read_optional(&file)? {
            sources.push(
                SettingsSource {
                    layer: Layer::Project,
                    file: Some(file),
                    text,
                }
                .into(),
            );
        }
    }
    if *command_line != CommandLineSettings::default() {
        sources.push(RawSource {
            source: SettingsSource {
                layer: Layer::CommandLine,
                file: None,
                text: command_line_text(command_line),
            },
            one_setting_per_line: true,
        });
    }
    if let Some(text) = read_optional(&paths.managed_file)? {
        sources.push(
            SettingsSource {
                layer: Layer::Managed,
                file: Some(paths.managed_file.clone()),
                text,
            }
            .into(),
        );
    }
    for file in managed_dir_files(&paths.managed_dir)? {
        if let Some(text) = read_optional(&file)? {
            sources.push(
                SettingsSource {
                    layer: Layer::Managed,
                    file: Some(file),
                    text,
                }
                .into(),
            );
        }
    }
    Ok(sources)
}

/// Parses each source; the first malformed one fails the whole load.
pub(crate) fn parse_all(sources: &[RawSource]) -> Result<Vec<ParsedSource>, PolicyError> {
    sources
        .iter()
        .map(|raw| {
            let source = &raw.source;
            let file_for_errors = match (&source.file, source.layer) {
                (Some(file), _) => file.clone(),
                (None, Layer::CommandLine) => PathBuf::from(COMMAND_LINE_FILE),
                (None, layer) => PathBuf::from(format!("<{layer} settings>")),
            };
            let entries = if raw.one_setting_per_line {
                settings_file::parse_lines(&file_for_errors, &source.text)?
            } else {
                settings_file::parse(&file_for_errors, &source.text)?
            };
            Ok(ParsedSource {
                layer: source.layer,
                file: source.file.clone(),
                entries,
                loaded: LoadedSource {
                    layer: source.layer,
                    file: source.file.clone(),
                    sha256: sha256_hex(source.text.as_bytes()),
                },
            })
        })
        .collect()
}

/// Writes the command line's settings as a TOML document, one setting per
/// line, so that errors and origins can name the setting by its position.
fn command_line_text(cli: &CommandLineSettings) -> String {
    let mut lines = Vec::new();
    for setting in &cli.settings {
        let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
        // One setting per line: a raw value's line breaks become spaces.
        let value = value.trim().replace(['\n', '\r'], " ");
        let value = value.as_str();
        let key = key.trim();
        let value = if toml::de::DeValue::parse(value).is_ok() {
            value.to_string()
        } else if schema::find(key).is_some_and(|spec| spec.kind != ValueKind::Bool) {
            // `--set models.allowed_models=claude-*` means a list of one.
            format!("[{}]", toml_string(value))
        } else {
            toml_string(value)
        };
        lines.push(format!("{key} = {value}"));
    }
    for (key, rules) in [
        ("permissions.allow", &cli.allow),
        ("permissions.ask", &cli.ask),
        ("permissions.deny", &cli.deny),
    ] {
        for rule in rules {
            lines.push(format!("{key} = [{}]", toml_string(rule)));
        }
    }
    // Each line is its own document in `settings_file::parse_lines`, so the
    // same key may appear twice, as it may on a command line.
    lines.join("\n")
}

fn read_optional(path: &Path) -> Result<Option<String>, PolicyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PolicyError::Read {
            file: path.to_path_buf(),
            source,
        }),
    }
}

/// The `*.toml` files of the drop-in folder, sorted by name.
fn managed_dir_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PolicyError::Read {
                file: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files = Vec::new();
    for entry in read {
        let entry = entry.map_err(|source| PolicyError::Read {
            file: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn command_line_settings_become_one_line_each() {
        let cli = CommandLineSettings {
            settings: vec![
                "sandbox.allowed_backends=[\"jail\"]".into(),
                "models.allowed_models = claude-*".into(),
            ],
            allow: vec!["Bash(echo \"hi\")".into()],
            ask: vec![],
            deny: vec!["Read(/mnt/x)".into()],
        };
        assert_eq!(
            command_line_text(&cli),
            "sandbox.allowed_backends = [\"jail\"]\n\
             models.allowed_models = [\"claude-*\"]\n\
             permissions.allow = [\"Bash(echo \\\"hi\\\")\"]\n\
             permissions.deny = [\"Read(/mnt/x)\"]"
        );
    }

    #[test]
    fn toml_strings_escape_what_they_must() {
        assert_eq!(toml_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }

    #[test]
    fn sha256_is_hex() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
