//! Shared setup for the `host` backend tests.
//!
//! The tests run the real `cubicle-guest` binary found by
//! `GuestProgram::locate` (`target/debug/cubicle-guest`). `cargo test
//! --workspace` builds it because the guest crate has integration tests of
//! its own, and cargo builds a package's binaries for those. With `cargo test
//! -p cubicle-sandbox` alone it may be missing or stale: build it first.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cubicle_sandbox::Grant;
use cubicle_sandbox::guest_client::EgressConnector;
use cubicle_sandbox::host::{HostComputer, HostConfig};
use cubicle_sandbox::locate::GuestProgram;

/// The guest binary, or a failure that says how to build it.
pub fn guest() -> GuestProgram {
    match GuestProgram::locate() {
        Ok(g) => g,
        Err(e) => panic!("{e}\n\nrun `cargo build -p cubicle-guest` before these tests"),
    }
}

/// A temporary tree with a workspace and folders to grant.
pub struct Setup {
    pub _dir: tempfile::TempDir,
    pub base: PathBuf,
}

impl Setup {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        Self { _dir: dir, base }
    }

    pub fn folder(&self, name: &str) -> PathBuf {
        let p = self.base.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn grant(&self, name: &str, writable: bool) -> Grant {
        let p = self.folder(name);
        Grant::parse(&format!(
            "{}:{}",
            p.display(),
            if writable { "rw" } else { "ro" }
        ))
        .unwrap()
    }

    pub fn config(&self, grants: Vec<Grant>) -> HostConfig {
        HostConfig {
            grants,
            workspace: self.base.join("workspace"),
            guest: guest(),
            env: BTreeMap::new(),
            egress: None,
            egress_listen: None,
        }
    }

    pub async fn start(&self, grants: Vec<Grant>) -> HostComputer {
        HostComputer::start(self.config(grants)).await.unwrap()
    }

    pub async fn start_with_egress(
        &self,
        listen: String,
        egress: Option<Arc<dyn EgressConnector>>,
    ) -> HostComputer {
        let mut config = self.config(vec![]);
        config.egress_listen = Some(listen);
        config.egress = egress;
        HostComputer::start(config).await.unwrap()
    }
}

/// Whether a process is gone or a zombie.
pub fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits up to five seconds for a process to die.
pub async fn wait_dead(pid: u32) -> bool {
    for _ in 0..100 {
        if is_dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits for a command to write its pid to `path`.
pub async fn read_pid(path: &Path) -> u32 {
    for _ in 0..250 {
        if let Ok(s) = std::fs::read_to_string(path)
            && let Ok(pid) = s.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no pid appeared in {}", path.display());
}
