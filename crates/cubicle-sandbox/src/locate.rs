//! Finding the `cubicle-guest` program on the host: the one the `host`
//! backend runs directly, and the one other backends copy into a cubicle.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::SandboxError;

/// Environment variable naming the guest program explicitly.
pub const GUEST_BIN_ENV: &str = "CUBICLE_GUEST_BIN";

/// File name of the guest program.
const GUEST_NAME: &str = "cubicle-guest";

/// How to run the guest: a program and the arguments that make it serve the
/// protocol on stdin/stdout (none today; a future single binary may run
/// itself with a subcommand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestProgram {
    /// Program to execute.
    pub path: PathBuf,
    /// Arguments before any the backend adds.
    pub args: Vec<String>,
}

impl GuestProgram {
    /// Finds the guest: `$CUBICLE_GUEST_BIN`, else `cubicle-guest` beside the
    /// running executable, else in its parent directory (so test binaries in
    /// `target/debug/deps/` find `target/debug/cubicle-guest`).
    pub fn locate() -> Result<Self, SandboxError> {
        locate_from(
            std::env::var_os(GUEST_BIN_ENV),
            std::env::current_exe().ok(),
        )
    }
}

fn locate_from(env: Option<OsString>, exe: Option<PathBuf>) -> Result<GuestProgram, SandboxError> {
    if let Some(path) = env.filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(program(path))
        } else {
            Err(SandboxError::Start(format!(
                "cannot find cubicle-guest: {GUEST_BIN_ENV} is {}, which is not a file",
                path.display()
            )))
        };
    }
    let mut looked = Vec::new();
    if let Some(dir) = exe.as_deref().and_then(Path::parent) {
        for candidate in [Some(dir), dir.parent()].into_iter().flatten() {
            let path = candidate.join(GUEST_NAME);
            if path.is_file() {
                return Ok(program(path));
            }
            looked.push(path.display().to_string());
        }
    }
    Err(SandboxError::Start(format!(
        "cannot find cubicle-guest (looked for {}) — install it beside cubicle or set {GUEST_BIN_ENV}",
        if looked.is_empty() {
            "nothing: the running program's location is unknown".to_owned()
        } else {
            looked.join(" and ")
        }
    )))
}

fn program(path: PathBuf) -> GuestProgram {
    GuestProgram {
        path,
        args: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn env_wins_then_beside_then_parent() {
        let dir = tempfile::tempdir().unwrap();
        let deps = dir.path().join("deps");
        std::fs::create_dir(&deps).unwrap();
        let exe = deps.join("tests-123");
        let parent_guest = dir.path().join(GUEST_NAME);
        std::fs::write(&parent_guest, "").unwrap();
        assert_eq!(
            locate_from(None, Some(exe.clone())).unwrap().path,
            parent_guest
        );
        let beside = deps.join(GUEST_NAME);
        std::fs::write(&beside, "").unwrap();
        assert_eq!(locate_from(None, Some(exe.clone())).unwrap().path, beside);
        let explicit = dir.path().join("other");
        std::fs::write(&explicit, "").unwrap();
        assert_eq!(
            locate_from(Some(explicit.clone().into()), Some(exe)).unwrap(),
            GuestProgram {
                path: explicit,
                args: vec![]
            }
        );
    }

    #[test]
    fn missing_guest_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate_from(None, Some(dir.path().join("bin/cubicle")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("install it beside cubicle or set CUBICLE_GUEST_BIN"),
            "{err}"
        );
        let err = locate_from(Some("/no/such/guest".into()), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/guest, which is not a file"), "{err}");
    }
}
