//! Path resolution and, when the host asks for it, confinement to a set of
//! root folders.
//!
//! Backends without a mount namespace of their own (`host`) pass the folders
//! a session may use as [`GuestConfig::roots`]; every file operation and every
//! command's working directory must then resolve, symlinks followed, to
//! inside one of them. This is a *check*, not isolation: a process in the
//! cubicle can swap a symlink between the check and the use (a TOCTOU race),
//! and commands themselves are not confined at all. Real isolation is the
//! `jail` and `vm` backends' job; there the roots list is empty and paths are
//! taken as given.

use std::path::{Component, Path, PathBuf};

use cubicle_protocol::guest::{ErrorCode, GuestConfig};

use crate::error::OpError;

/// What an operation will do with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read or list it.
    Read,
    /// Create, change or remove it.
    Write,
}

/// One confining folder, canonicalised.
#[derive(Debug, Clone)]
struct Root {
    path: PathBuf,
    writable: bool,
}

/// Resolves request paths against the workspace and the session's roots.
#[derive(Debug, Clone)]
pub struct Confinement {
    workspace: PathBuf,
    roots: Vec<Root>,
}

impl Confinement {
    /// Builds the resolver from the hello's configuration.
    pub fn new(config: &GuestConfig) -> Self {
        let roots = config
            .roots
            .iter()
            .map(|r| {
                // A root that cannot be canonicalised (it does not exist yet)
                // still confines by its literal path.
                let path = std::fs::canonicalize(&r.path).unwrap_or_else(|e| {
                    tracing::warn!(root = %r.path, error = %e, "cannot resolve root");
                    PathBuf::from(&r.path)
                });
                Root {
                    path,
                    writable: r.writable,
                }
            })
            .collect();
        Self {
            workspace: PathBuf::from(&config.workspace),
            roots,
        }
    }

    /// The session's default working directory.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Whether paths are checked against roots at all.
    pub fn is_confined(&self) -> bool {
        !self.roots.is_empty()
    }

    /// Resolves `path` (relative paths against the workspace), following
    /// symlinks all the way, and checks it against the roots.
    pub fn resolve(&self, path: &str, access: Access) -> Result<PathBuf, OpError> {
        let joined = self.join(path)?;
        if !self.is_confined() {
            return Ok(joined);
        }
        let real = canonicalize_lenient(&joined)?;
        self.check(path, &real, access)?;
        Ok(real)
    }

    /// Like [`Confinement::resolve`], but the last component is not followed
    /// when it is a symlink: removing a link must remove the link, not what it
    /// points to.
    pub fn resolve_nofollow(&self, path: &str, access: Access) -> Result<PathBuf, OpError> {
        let joined = self.join(path)?;
        if !self.is_confined() {
            return Ok(joined);
        }
        let (parent, name) = match (joined.parent(), joined.file_name()) {
            (Some(p), Some(n)) => (p, n),
            // `/` or a path ending in `..`: nothing to keep unfollowed.
            _ => return self.resolve(path, access),
        };
        let real = canonicalize_lenient(parent)?.join(name);
        self.check(path, &real, access)?;
        Ok(real)
    }

    /// Whether `real` (already resolved) lies in a writable root.
    pub fn is_writable(&self, real: &Path) -> bool {
        !self.is_confined() || self.root_of(real).is_some_and(|r| r.writable)
    }

    /// Whether `real` is exactly one of the roots or the workspace.
    pub fn is_root(&self, real: &Path) -> bool {
        real == self.workspace || self.roots.iter().any(|r| r.path == real)
    }

    fn join(&self, path: &str) -> Result<PathBuf, OpError> {
        if path.is_empty() {
            return Err(OpError::new(ErrorCode::InvalidInput, "empty path"));
        }
        if path.contains('\0') {
            return Err(OpError::new(
                ErrorCode::InvalidInput,
                "path contains a NUL byte",
            ));
        }
        // Collecting the components drops `.` segments, so results read
        // `/ws/a.txt`, not `/ws/./a.txt`; `..` is left for the kernel.
        Ok(self.workspace.join(path).components().collect())
    }

    fn check(&self, shown: &str, real: &Path, access: Access) -> Result<(), OpError> {
        match self.root_of(real) {
            None => Err(OpError::new(
                ErrorCode::OutsideRoots,
                format!("{shown} is outside the folders this session may use"),
            )),
            Some(root) if access == Access::Write && !root.writable => Err(OpError::new(
                ErrorCode::ReadOnly,
                format!("{shown} is in a read-only folder"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// The most specific root holding `real`, so that a writable folder nested
    /// in a read-only one (or the reverse) gets its own permission.
    fn root_of(&self, real: &Path) -> Option<&Root> {
        self.roots
            .iter()
            .filter(|r| real.starts_with(&r.path))
            .max_by_key(|r| r.path.components().count())
    }
}

/// Canonicalises a path that may not exist yet: the nearest existing ancestor
/// is canonicalised and the missing tail appended. A `..` in the missing tail
/// fails as the kernel would (the directory it climbs out of does not exist).
fn canonicalize_lenient(path: &Path) -> Result<PathBuf, OpError> {
    let mut existing = path.to_path_buf();
    let mut tail = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(real) => {
                let mut out = real;
                for part in tail.iter().rev() {
                    out.push(part);
                }
                return Ok(out);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let last = existing.components().next_back();
                match last {
                    Some(Component::Normal(name)) => tail.push(name.to_os_string()),
                    Some(Component::CurDir) => {}
                    Some(Component::ParentDir) => return Err(OpError::io(path, &e)),
                    Some(Component::RootDir | Component::Prefix(_)) | None => {
                        return Err(OpError::io(path, &e));
                    }
                }
                if !existing.pop() {
                    return Err(OpError::io(path, &e));
                }
            }
            Err(e) => return Err(OpError::io(path, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use cubicle_protocol::guest::Root as WireRoot;
    use pretty_assertions::assert_eq;

    fn setup() -> (tempfile::TempDir, Confinement) {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(base.join("ws")).unwrap();
        std::fs::create_dir_all(base.join("ro")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        let config = GuestConfig {
            workspace: base.join("ws").display().to_string(),
            roots: vec![
                WireRoot {
                    path: base.join("ws").display().to_string(),
                    writable: true,
                },
                WireRoot {
                    path: base.join("ro").display().to_string(),
                    writable: false,
                },
            ],
            ..GuestConfig::default()
        };
        (dir, Confinement::new(&config))
    }

    #[test]
    fn relative_and_new_paths_resolve_inside() {
        let (dir, c) = setup();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            c.resolve("a/b.txt", Access::Write).unwrap(),
            base.join("ws/a/b.txt")
        );
    }

    #[test]
    fn dotdot_and_symlinks_out_are_refused() {
        let (dir, c) = setup();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let err = c.resolve("../outside/x", Access::Read).unwrap_err();
        assert_eq!(err.code, ErrorCode::OutsideRoots);
        std::os::unix::fs::symlink(base.join("outside"), base.join("ws/link")).unwrap();
        let err = c.resolve("link/new.txt", Access::Write).unwrap_err();
        assert_eq!(err.code, ErrorCode::OutsideRoots);
        // The link itself may be removed: it lives inside the root.
        assert_eq!(
            c.resolve_nofollow("link", Access::Write).unwrap(),
            base.join("ws/link")
        );
        let err = c
            .resolve("missing/../../outside", Access::Read)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
    }

    #[test]
    fn read_only_roots_refuse_writes() {
        let (dir, c) = setup();
        let ro = std::fs::canonicalize(dir.path()).unwrap().join("ro/f");
        let ro = ro.to_str().unwrap();
        assert!(c.resolve(ro, Access::Read).is_ok());
        assert_eq!(
            c.resolve(ro, Access::Write).unwrap_err().code,
            ErrorCode::ReadOnly
        );
    }
}
