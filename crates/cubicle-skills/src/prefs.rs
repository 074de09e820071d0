//! A person's private preferences for a skill: their company name, default
//! currency, the folder their reports go to.
//!
//! A skill folder is portable; the way one person uses it is not. So
//! preferences live apart from the skill, in
//! `~/.config/cubicle/preferences/<name>.toml` (a flat TOML table of
//! key/value pairs) and, for what does not fit a key and a value (a
//! signature, a house style), `<name>.md` in free Markdown; both are handed to the model when the skill activates, and
//! are never inside the folder that `export` packs. The file is written with
//! mode 0600 on Unix, replaced atomically.

use std::path::{Path, PathBuf};

/// Why preferences could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PrefsError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The preferences file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path}: not valid TOML: {message}")]
    Parse {
        /// The preferences file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The key cannot be used.
    #[error("invalid preference key `{key}`: use letters, digits, `_`, `-` and `.`")]
    BadKey {
        /// The key.
        key: String,
    },
    /// The skill name cannot name a file.
    #[error("invalid skill name `{name}` for preferences")]
    BadSkillName {
        /// The name.
        name: String,
    },
}

/// One skill's preferences and the file they live in.
#[derive(Debug, Clone, PartialEq)]
pub struct Preferences {
    path: PathBuf,
    values: toml::Table,
    notes: Option<String>,
}

/// Most bytes of a preferences Markdown file given to the model.
pub const MAX_NOTES_BYTES: usize = 64 * 1024;

/// The preferences folder under Cubicle's config folder.
pub fn prefs_dir(config_dir: &Path) -> PathBuf {
    config_dir.join("preferences")
}

impl Preferences {
    /// Loads the preferences of skill `name` from folder `dir` (normally
    /// `~/.config/cubicle/preferences`); none yet is an empty set.
    pub fn load(dir: &Path, name: &str) -> Result<Self, PrefsError> {
        // `plugin:skill` names become `plugin__skill.toml`; nothing else may
        // leave the folder.
        let file = name.replace(':', "__");
        if file.is_empty()
            || file.starts_with('.')
            || !file
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(PrefsError::BadSkillName {
                name: name.to_owned(),
            });
        }
        let path = dir.join(format!("{file}.toml"));
        let values = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<toml::Table>(&text).map_err(|e| PrefsError::Parse {
                path: path.clone(),
                message: e.message().to_owned(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
            Err(source) => return Err(PrefsError::Io { path, source }),
        };
        let notes_path = path.with_extension("md");
        let notes = match std::fs::read(&notes_path) {
            Ok(bytes) => {
                let mut text = String::from_utf8_lossy(&bytes).into_owned();
                if text.len() > MAX_NOTES_BYTES {
                    let mut cut = MAX_NOTES_BYTES;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                }
                Some(text).filter(|t| !t.trim().is_empty())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(PrefsError::Io {
                    path: notes_path,
                    source,
                });
            }
        };
        Ok(Self {
            path,
            values,
            notes,
        })
    }

    /// The Markdown file for free-form preferences (`<name>.md`).
    pub fn notes_path(&self) -> PathBuf {
        self.path.with_extension("md")
    }

    /// The free-form preferences, if the Markdown file has any.
    pub fn notes(&self) -> Option<&str> {
        self.notes.as_deref()
    }

    /// The file they are kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.notes.is_none()
    }

    /// The value of `key`, as text.
    pub fn get(&self, key: &str) -> Option<String> {
        self.values.get(key).map(value_text)
    }

    /// All pairs, sorted by key, values as text.
    pub fn entries(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect()
    }

    /// Sets `key` to the string `value` and saves.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), PrefsError> {
        check_key(key)?;
        self.values
            .insert(key.to_owned(), toml::Value::String(value.to_owned()));
        self.save()
    }

    /// Removes `key` and saves; whether it was there.
    pub fn unset(&mut self, key: &str) -> Result<bool, PrefsError> {
        let was = self.values.remove(key).is_some();
        if was {
            self.save()?;
        }
        Ok(was)
    }

    /// The TOML text of the file as it would be saved.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.values).unwrap_or_default()
    }

    /// The section appended to a skill's instructions when it activates;
    /// `None` when there are no preferences.
    pub fn render_for_model(&self, skill: &str) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut out = format!(
            "<user_preferences skill=\"{skill}\">\n\
             The person's own settings for this skill. Follow them unless the task says otherwise.\n"
        );
        for (k, v) in self.entries() {
            out.push_str(&format!("{k}: {v}\n"));
        }
        if let Some(notes) = &self.notes {
            out.push_str(notes.trim_end());
            out.push('\n');
        }
        out.push_str("</user_preferences>\n");
        Some(out)
    }

    fn save(&self) -> Result<(), PrefsError> {
        let io = |source| PrefsError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, self.to_toml().as_bytes()).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        tmp.persist(&self.path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

fn check_key(key: &str) -> Result<(), PrefsError> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(PrefsError::BadKey {
            key: key.to_owned(),
        })
    }
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
