//! Folder grants: which host folders a cubicle sees, where, and how.
//!
//! Every backend takes its grants from here, so that how grants are named,
//! checked and (later) versioned lives in one place.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::SandboxError;

/// A host folder made visible inside a cubicle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Canonical host path.
    pub host_path: PathBuf,
    /// Name under `/mnt` inside isolated backends; unique per session.
    pub name: String,
    /// Whether the agent may change the folder.
    pub writable: bool,
}

impl Grant {
    /// Parses `DIR`, `DIR:ro` or `DIR:rw` (read-only unless `:rw`), checks the
    /// folder exists, and resolves it to a canonical path.
    pub fn parse(spec: &str) -> Result<Self, SandboxError> {
        let (path, writable) = match spec.rsplit_once(':') {
            Some((p, "rw")) => (p, true),
            Some((p, "ro")) => (p, false),
            _ => (spec, false),
        };
        if path.is_empty() {
            return Err(SandboxError::Config(format!(
                "grant `{spec}` names no folder — use --grant DIR[:ro|:rw]"
            )));
        }
        let expanded = expand_home(path);
        let host_path = std::fs::canonicalize(&expanded).map_err(|e| {
            SandboxError::Config(format!(
                "cannot grant {}: {} — check the path exists",
                expanded.display(),
                match e.kind() {
                    std::io::ErrorKind::NotFound => "no such folder".to_owned(),
                    _ => e.to_string(),
                }
            ))
        })?;
        if !host_path.is_dir() {
            return Err(SandboxError::Config(format!(
                "cannot grant {}: it is not a folder — grant the folder that holds it",
                host_path.display()
            )));
        }
        if host_path == Path::new("/") {
            return Err(SandboxError::Config(
                "refusing to grant / — grant the folders the task needs".to_owned(),
            ));
        }
        let name = mount_name(&host_path);
        Ok(Self {
            host_path,
            name,
            writable,
        })
    }

    /// Path of the grant inside an isolated cubicle.
    pub fn guest_path(&self) -> String {
        format!("/mnt/{}", self.name)
    }
}

/// A grant checked for mounting: its canonical host path and what the
/// session reports about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedGrant {
    /// Canonical host path.
    pub host_path: PathBuf,
    /// Name under `/mnt`.
    pub name: String,
    /// Whether the agent may change it.
    pub writable: bool,
    /// The grant as front ends and the model see it.
    pub info: cubicle_protocol::events::GrantInfo,
}

/// Checks grants for an isolated backend that mounts them at `/mnt/<name>`:
/// each folder still exists (it may have gone since it was granted), is a
/// folder, has a UTF-8 path, and no two share a name.
pub fn check_for_mount(grants: &[Grant]) -> Result<Vec<MountedGrant>, SandboxError> {
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(grants.len());
    for g in grants {
        let host_path = std::fs::canonicalize(&g.host_path).map_err(|_| {
            SandboxError::Config(format!(
                "cannot grant {}: no such folder — check the path exists",
                g.host_path.display()
            ))
        })?;
        if !host_path.is_dir() {
            return Err(SandboxError::Config(format!(
                "cannot grant {}: it is not a folder — grant the folder that holds it",
                host_path.display()
            )));
        }
        if !names.insert(g.name.clone()) {
            return Err(SandboxError::Config(format!(
                "two grants are both named `{}` — make names unique with grants::dedupe_names",
                g.name
            )));
        }
        out.push(MountedGrant {
            info: cubicle_protocol::events::GrantInfo {
                host_path: utf8_path(&host_path)?,
                path: g.guest_path(),
                writable: g.writable,
            },
            host_path,
            name: g.name.clone(),
            writable: g.writable,
        });
    }
    Ok(out)
}

/// A path as UTF-8, or a clear error (transcripts and the protocol are JSON).
pub fn utf8_path(path: &Path) -> Result<String, SandboxError> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        SandboxError::Config(format!(
            "{} is not valid UTF-8; rename it to use it with cubicle",
            path.display()
        ))
    })
}

/// Makes grant names unique by suffixing `-2`, `-3`, … in order.
pub fn dedupe_names(grants: &mut [Grant]) {
    let mut seen = BTreeSet::new();
    for g in grants.iter_mut() {
        let base = g.name.clone();
        let mut n = 1;
        while !seen.insert(g.name.clone()) {
            n += 1;
            g.name = format!("{base}-{n}");
        }
    }
}

/// `~/x` → `$HOME/x`.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ if path == "~" => std::env::var_os("HOME").map_or_else(|| path.into(), PathBuf::from),
        _ => PathBuf::from(path),
    }
}

/// A file-name-safe name derived from the folder's last component.
fn mount_name(path: &Path) -> String {
    let raw = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        "folder".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn parses_modes_and_defaults_to_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("My Receipts");
        std::fs::create_dir(&base).unwrap();
        let s = base.to_str().unwrap();
        let g = Grant::parse(s).unwrap();
        assert!(!g.writable);
        assert_eq!(g.name, "My_Receipts");
        assert_eq!(g.guest_path(), "/mnt/My_Receipts");
        assert!(Grant::parse(&format!("{s}:rw")).unwrap().writable);
        assert!(!Grant::parse(&format!("{s}:ro")).unwrap().writable);
    }

    #[test]
    fn missing_folder_is_a_clear_error() {
        let err = Grant::parse("/no/such/folder:rw").unwrap_err().to_string();
        assert_eq!(
            err,
            "cannot grant /no/such/folder: no such folder — check the path exists"
        );
    }

    #[test]
    fn files_and_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "x").unwrap();
        assert!(Grant::parse(f.to_str().unwrap()).is_err());
        assert!(Grant::parse("/").is_err());
    }

    #[test]
    fn names_are_made_unique() {
        let mk = |n: &str| Grant {
            host_path: PathBuf::from(format!("/x/{n}")),
            name: n.to_owned(),
            writable: false,
        };
        let mut gs = vec![mk("a"), mk("a"), mk("b"), mk("a")];
        dedupe_names(&mut gs);
        let names: Vec<_> = gs.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, vec!["a", "a-2", "b", "a-3"]);
    }
}
