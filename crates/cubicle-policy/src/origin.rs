//! Where a setting or rule came from: its layer, file and line. Every
//! effective value carries one, so `cubicle policy show --effective` and every
//! decision can say which file to edit.

use std::fmt;
use std::path::PathBuf;

/// A settings layer; the order of the variants is precedence, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// The administrator's files: `/etc/cubicle/managed.toml` and `managed.d/*.toml`.
    Managed,
    /// Settings and rules passed on the `cubicle` command line.
    CommandLine,
    /// `.cubicle/settings.toml` in a granted folder the person trusts.
    Project,
    /// The person's own `~/.config/cubicle/settings.toml`.
    User,
}

impl Layer {
    /// The layer's name as `cubicle policy show` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Managed => "managed",
            Layer::CommandLine => "command line",
            Layer::Project => "project",
            Layer::User => "user",
        }
    }

    /// Who set a value in this layer, in words for the person ("your administrator").
    pub fn owner(self) -> &'static str {
        match self {
            Layer::Managed => "your administrator",
            Layer::CommandLine => "the command line",
            Layer::Project => "the project's settings",
            Layer::User => "your settings",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one value was set: a layer, and the file and line when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The layer that set it.
    pub layer: Layer,
    /// The file that set it (`None` for the command line).
    pub file: Option<PathBuf>,
    /// The 1-based line in that file (for the command line: the setting's position).
    pub line: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.layer)?;
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " ({}:{line})", file.display()),
            (Some(file), None) => write!(f, " ({})", file.display()),
            (None, Some(line)) if self.layer == Layer::CommandLine => {
                write!(f, " (setting {line})")
            }
            _ => Ok(()),
        }
    }
}

/// The permission rule that made a decision, as the person wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleOrigin {
    /// The rule's text, e.g. `Bash(rm *)`.
    pub text: String,
    /// The layer it came from.
    pub layer: Layer,
    /// The file it came from (`None` for the command line).
    pub file: Option<PathBuf>,
    /// The 1-based line of the rule in that file.
    pub line: Option<usize>,
}

impl RuleOrigin {
    /// The origin without the rule text.
    pub fn origin(&self) -> Origin {
        Origin {
            layer: self.layer,
            file: self.file.clone(),
            line: self.line,
        }
    }
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} — from {}", self.text, self.origin())
    }
}

/// Something the person should know about how the policy was loaded, that is
/// not an error: a setting ignored because of a lock, a folder not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The layer of the file concerned.
    pub layer: Layer,
    /// The file concerned, when there is one.
    pub file: Option<PathBuf>,
    /// The 1-based line, when the notice is about one setting.
    pub line: Option<usize>,
    /// The setting concerned, e.g. `sandbox.allowed_backends`.
    pub key: Option<String>,
    /// What happened, e.g. `ignored: locked by your administrator`.
    pub message: String,
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "{} setting {line}: ", self.layer)?,
            (None, None) => write!(f, "{}: ", self.layer)?,
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}
