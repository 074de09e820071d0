//! The errors of loading a policy and of checking a call given as text. A
//! malformed settings file fails the whole load: a session never starts with
//! half a policy.

use std::fmt;
use std::path::PathBuf;

/// Why a policy could not be loaded, or a call in rule syntax not understood.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A settings file (or command-line setting) is malformed.
    #[error("{}", InvalidDisplay { file, line: *line, key, message })]
    Invalid {
        /// The file; `<command line>` for a command-line setting.
        file: PathBuf,
        /// The 1-based line (for the command line: the setting's position).
        line: usize,
        /// The key, with an index for list items, e.g. `permissions.allow[2]`;
        /// empty when the file is not valid TOML at all.
        key: String,
        /// What is wrong and, where it helps, how to fix it.
        message: String,
    },
    /// A settings file exists but could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A call given as `Tool(argument)` to `cubicle policy check` is not understood.
    #[error("{call:?} is not a call Cubicle understands: {message}")]
    BadCall {
        /// The text given.
        call: String,
        /// What is wrong.
        message: String,
    },
}

/// Renders `file:line: key: message`, leaving out the key when there is none.
struct InvalidDisplay<'a> {
    file: &'a PathBuf,
    line: usize,
    key: &'a str,
    message: &'a str,
}

impl fmt::Display for InvalidDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(self.message)
    }
}

/// The pseudo file name used in errors about command-line settings.
pub const COMMAND_LINE_FILE: &str = "<command line>";
