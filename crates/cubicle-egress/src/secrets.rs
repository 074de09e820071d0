//! Where credential values come from: the host's environment, the OS keyring
//! (feature `keyring`, through `keyring-core`), a 0600 file for hosts with no
//! keyring service (headless Linux), or a map in tests. Secrets live on the
//! host only; the [`Secret`] type never prints its value, and errors name the
//! reference (`keyring:NAME`), never the value.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// Where a secret lives: `keyring:NAME` or `env:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// An entry in the OS keyring (service `cubicle`, user NAME), or in the
    /// file store where there is no keyring.
    Keyring(String),
    /// A variable in the host process's environment.
    Env(String),
}

impl FromStr for SecretRef {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SecretError::BadRef(s.to_owned());
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() || name.chars().any(|c| c.is_control() || c == '=') {
            return Err(bad());
        }
        match kind {
            "keyring" => Ok(SecretRef::Keyring(name.to_owned())),
            "env" => Ok(SecretRef::Env(name.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Keyring(n) => write!(f, "keyring:{n}"),
            SecretRef::Env(n) => write!(f, "env:{n}"),
        }
    }
}

/// A secret value; its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that puts it in a header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a secret could not be read. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Not `keyring:NAME` or `env:NAME`.
    #[error("{0:?} is not a secret reference; write keyring:NAME or env:NAME")]
    BadRef(String),
    /// The store has no such secret.
    #[error("secret {0} is not set on this computer")]
    Missing(SecretRef),
    /// The store cannot serve this kind of reference.
    #[error("secret {0} cannot be read here: no store for that kind of secret")]
    Unsupported(SecretRef),
    /// The store failed.
    #[error("secret {reference} could not be read: {why}")]
    Store {
        /// Which secret.
        reference: SecretRef,
        /// What failed (never the value).
        why: String,
    },
}

/// Reads secrets. Calls may block (an OS keyring over D-Bus, say); the proxy
/// calls it on a blocking thread.
pub trait SecretStore: Send + Sync {
    /// The value of one secret.
    fn get(&self, reference: &SecretRef) -> Result<Secret, SecretError>;
}

/// `env:NAME` from the host process's environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvSecrets;

impl SecretStore for EnvSecrets {
    fn get(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        match reference {
            SecretRef::Env(name) => std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret)
                .ok_or_else(|| SecretError::Missing(reference.clone())),
            SecretRef::Keyring(_) => Err(SecretError::Unsupported(reference.clone())),
        }
    }
}

/// A fixed table, for tests.
#[derive(Debug, Clone, Default)]
pub struct MapSecrets {
    map: HashMap<SecretRef, Secret>,
}

impl MapSecrets {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one secret.
    pub fn with(mut self, reference: SecretRef, value: impl Into<String>) -> Self {
        self.map.insert(reference, Secret(value.into()));
        self
    }
}

impl SecretStore for MapSecrets {
    fn get(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        self.map
            .get(reference)
            .cloned()
            .ok_or_else(|| SecretError::Missing(reference.clone()))
    }
}

/// `keyring:NAME` from a file of `NAME=VALUE` lines that only the owner may
/// read (0600), for hosts with no keyring service such as headless Linux.
/// Refuses a file that others can read rather than use a leaked secret.
#[derive(Debug, Clone)]
pub struct FileSecrets {
    path: PathBuf,
}

impl FileSecrets {
    /// The store at `dir/secrets` (normally the user's cubicle config folder).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("secrets"),
        }
    }

    /// The store at an exact path.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Stores a secret, creating the file with mode 0600 if needed.
    pub fn set(&self, name: &str, value: &str) -> Result<(), SecretError> {
        let reference = SecretRef::Keyring(name.to_owned());
        let store_err = |why: String| SecretError::Store {
            reference: reference.clone(),
            why,
        };
        if name.contains(['=', '\n', '\r']) || value.contains(['\n', '\r']) {
            return Err(store_err(
                "names may not contain = or newlines, values may not contain newlines".into(),
            ));
        }
        let mut lines: Vec<String> = match std::fs::read_to_string(&self.path) {
            Ok(text) => text
                .lines()
                .filter(|l| l.split_once('=').map(|(k, _)| k.trim()) != Some(name))
                .map(str::to_owned)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(store_err(format!("{}: {e}", self.path.display()))),
        };
        lines.push(format!("{name}={value}"));
        let mut text = lines.join("\n");
        text.push('\n');
        write_private(&self.path, text.as_bytes())
            .map_err(|e| store_err(format!("{}: {e}", self.path.display())))
    }
}

impl SecretStore for FileSecrets {
    fn get(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        let SecretRef::Keyring(name) = reference else {
            return Err(SecretError::Unsupported(reference.clone()));
        };
        let store_err = |why: String| SecretError::Store {
            reference: reference.clone(),
            why,
        };
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SecretError::Missing(reference.clone()));
            }
            Err(e) => return Err(store_err(format!("{}: {e}", self.path.display()))),
        };
        check_private(&self.path).map_err(store_err)?;
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| Secret(v.to_owned()))
            .filter(|s| !s.0.is_empty())
            .ok_or_else(|| SecretError::Missing(reference.clone()))
    }
}

/// Writes a file only its owner can read, replacing it atomically.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Fails when group or others may read the file.
pub(crate) fn check_private(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} is readable by other users (mode {mode:o}); it must be 0600",
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// `keyring:NAME` from the OS keyring through `keyring-core`, as entry
/// (service `cubicle`, user NAME) in the default store the application set
/// with `keyring_core::set_default_store`.
#[cfg(feature = "keyring")]
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyringSecrets;

#[cfg(feature = "keyring")]
impl SecretStore for KeyringSecrets {
    fn get(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        let SecretRef::Keyring(name) = reference else {
            return Err(SecretError::Unsupported(reference.clone()));
        };
        let entry = keyring_core::Entry::new("cubicle", name).map_err(|e| SecretError::Store {
            reference: reference.clone(),
            why: e.to_string(),
        })?;
        match entry.get_password() {
            Ok(v) if !v.is_empty() => Ok(Secret(v)),
            Ok(_) | Err(keyring_core::Error::NoEntry) => {
                Err(SecretError::Missing(reference.clone()))
            }
            Err(e) => Err(SecretError::Store {
                reference: reference.clone(),
                why: e.to_string(),
            }),
        }
    }
}

/// Sends `env:` references to one store and `keyring:` references to another:
/// the usual host set-up is `HostSecrets::new(EnvSecrets, keyring_or_file)`.
#[derive(Clone)]
pub struct HostSecrets {
    env: Arc<dyn SecretStore>,
    keyring: Arc<dyn SecretStore>,
}

impl HostSecrets {
    /// Routes by kind of reference.
    pub fn new(env: impl SecretStore + 'static, keyring: impl SecretStore + 'static) -> Self {
        Self {
            env: Arc::new(env),
            keyring: Arc::new(keyring),
        }
    }
}

impl fmt::Debug for HostSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HostSecrets")
    }
}

impl SecretStore for HostSecrets {
    fn get(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        match reference {
            SecretRef::Env(_) => self.env.get(reference),
            SecretRef::Keyring(_) => self.keyring.get(reference),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn refs_parse_and_print() {
        let k: SecretRef = "keyring:example-token".parse().unwrap();
        assert_eq!(k, SecretRef::Keyring("example-token".into()));
        assert_eq!(k.to_string(), "keyring:example-token");
        assert_eq!(
            "env:GH_TOKEN".parse::<SecretRef>().unwrap(),
            SecretRef::Env("GH_TOKEN".into())
        );
        for bad in [
            "",
            "keyring",
            "keyring:",
            "file:x",
            "env:A=B",
            "plain-secret",
        ] {
            assert!(bad.parse::<SecretRef>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("s3cret");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let err = MapSecrets::new()
            .get(&SecretRef::Env("X".into()))
            .unwrap_err();
        assert_eq!(err.to_string(), "secret env:X is not set on this computer");
    }

    #[test]
    fn env_store_reads_the_host_environment() {
        // PATH is set in every test environment; reading it proves the lookup.
        let got = EnvSecrets.get(&SecretRef::Env("PATH".into())).unwrap();
        assert_eq!(got.expose(), std::env::var("PATH").unwrap());
        assert_eq!(
            EnvSecrets.get(&SecretRef::Env("CUBICLE_SURELY_UNSET_VARIABLE".into())),
            Err(SecretError::Missing(SecretRef::Env(
                "CUBICLE_SURELY_UNSET_VARIABLE".into()
            )))
        );
        assert!(matches!(
            EnvSecrets.get(&SecretRef::Keyring("x".into())),
            Err(SecretError::Unsupported(_))
        ));
    }

    #[test]
    fn file_store_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSecrets::in_dir(dir.path());
        let r = SecretRef::Keyring("example-token".into());
        assert_eq!(store.get(&r), Err(SecretError::Missing(r.clone())));
        store.set("example-token", "one").unwrap();
        store.set("other", "two").unwrap();
        store.set("example-token", "s3cret=with=equals").unwrap();
        assert_eq!(store.get(&r).unwrap().expose(), "s3cret=with=equals");
        assert_eq!(
            store
                .get(&SecretRef::Keyring("other".into()))
                .unwrap()
                .expose(),
            "two"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join("secrets");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = store.get(&r).unwrap_err();
            assert!(matches!(err, SecretError::Store { .. }), "{err}");
            assert!(!err.to_string().contains("s3cret"));
        }
    }

    #[test]
    fn host_secrets_route_by_kind() {
        let keyring = MapSecrets::new().with(SecretRef::Keyring("k".into()), "from-keyring");
        let host = HostSecrets::new(EnvSecrets, keyring);
        assert_eq!(
            host.get(&SecretRef::Keyring("k".into())).unwrap().expose(),
            "from-keyring"
        );
        assert!(host.get(&SecretRef::Env("PATH".into())).is_ok());
    }
}
