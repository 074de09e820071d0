//! Shared set-up of the jail integration tests: where the launcher and the
//! guest are, whether this kernel can run a jail, and limits small enough to
//! attack quickly.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cubicle_sandbox::Grant;
use cubicle_sandbox::jail::{JailComputer, JailConfig, Limits};
use cubicle_sandbox::locate::GuestProgram;

/// The launcher cargo built for these tests.
pub fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cubicle-jail-init"))
}

/// The guest program; fails the test with what to do when it is not built.
pub fn guest() -> GuestProgram {
    match GuestProgram::locate() {
        Ok(g) => g,
        Err(e) => panic!("{e}\nrun `cargo build -p cubicle-guest` first"),
    }
}

/// Why jails cannot run here, if they cannot (the test then skips).
pub fn skip_reason() -> Option<String> {
    let features = cubicle_sandbox::jail::probe::probe();
    let missing: Vec<String> = features
        .iter()
        .filter(|f| f.required && !f.available)
        .map(|f| format!("{}: {}", f.name, f.detail))
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(missing.join("; "))
    }
}

/// Returns early from a test, saying why, where the kernel cannot jail.
#[macro_export]
macro_rules! require_jail {
    () => {
        if let Some(why) = jail_common::skip_reason() {
            eprintln!("SKIPPED: the jail backend cannot run here: {why}");
            return;
        }
    };
}

/// Limits small enough that resource attacks end quickly.
pub fn test_limits() -> Limits {
    Limits {
        max_processes: 256,
        process_memory_bytes: 512 << 20,
        session_memory_bytes: 1 << 30,
        open_files: 1024,
        file_size_bytes: 64 << 20,
        cpu_seconds: None,
        tmp_bytes: 64 << 20,
        workspace_bytes: Some(1 << 30),
    }
}

/// A config with the test launcher and guest.
pub fn config(workspace: &Path, grants: Vec<Grant>) -> JailConfig {
    JailConfig {
        grants,
        workspace: workspace.to_path_buf(),
        guest: guest(),
        launcher: launcher(),
        launcher_args: vec![],
        rootfs: None,
        limits: test_limits(),
        env: Default::default(),
        dangerously_allow_no_landlock: false,
        egress: None,
        skills: Vec::new(),
        plugins: Vec::new(),
    }
}

/// Starts a jail or fails the test with the reason.
pub async fn start(workspace: &Path, grants: Vec<Grant>) -> JailComputer {
    match JailComputer::start(config(workspace, grants)).await {
        Ok(j) => j,
        Err(e) => panic!("the jail did not start: {e}"),
    }
}
