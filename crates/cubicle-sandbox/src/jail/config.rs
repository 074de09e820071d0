//! What a jail is made of: the host-side [`JailConfig`], the resource
//! [`Limits`], and the [`LaunchSpec`] the host hands the launcher (as one
//! JSON argument) so that the launcher needs nothing else from the host.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::grants::Grant;
use crate::guest_client::EgressConnector;
use crate::locate::GuestProgram;

/// Settings of a `jail` computer.
#[derive(Clone)]
pub struct JailConfig {
    /// Host folders visible at `/mnt/<name>`.
    pub grants: Vec<Grant>,
    /// Host directory bound at `/workspace`; created if missing.
    pub workspace: PathBuf,
    /// The guest program, bound read-only at `/.cubicle/guest`.
    pub guest: GuestProgram,
    /// The `cubicle-jail-init` launcher (see [`super::locate_jail_init`]).
    pub launcher: PathBuf,
    /// Arguments before the launch spec (`["__jail-init"]` when the launcher
    /// is the `cubicle` binary itself).
    pub launcher_args: Vec<String>,
    /// Root file system of a built cubicle image; `None` uses read-only
    /// binds of the host's system directories.
    pub rootfs: Option<PathBuf>,
    /// Resource limits of the session.
    pub limits: Limits,
    /// Variables added to (or overriding) the scrubbed base environment of
    /// every command.
    pub env: BTreeMap<String, String>,
    /// Run even where landlock cannot be enforced. Mount namespaces still
    /// confine the jail; landlock is the second wall.
    pub dangerously_allow_no_landlock: bool,
    /// Where connections to the in-cubicle proxy port go (the host's egress
    /// proxy); `None` refuses them all.
    pub egress: Option<Arc<dyn EgressConnector>>,
    /// Skill folders (path below `/mnt/.skills`, host path), visible
    /// read-only at `/mnt/.skills/<path>` so that scripts bundled with a
    /// skill run inside; a plugin's skill is two levels deep
    /// (`plugin/skill`).
    pub skills: Vec<(String, PathBuf)>,
    /// Installed plugins' folders (name, host path), visible read-only at
    /// `/mnt/.plugins/<name>`, where their hooks and MCP servers run from.
    pub plugins: Vec<(String, PathBuf)>,
}

impl std::fmt::Debug for JailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JailConfig")
            .field("grants", &self.grants)
            .field("workspace", &self.workspace)
            .field("guest", &self.guest)
            .field("launcher", &self.launcher)
            .field("rootfs", &self.rootfs)
            .field("limits", &self.limits)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("egress", &self.egress.is_some())
            .field("skills", &self.skills)
            .field("plugins", &self.plugins)
            .finish_non_exhaustive()
    }
}

/// Resource limits of one jail.
///
/// The rlimits are inherited by the guest and so by every command; the
/// cgroup limits (where the host lets the launcher create a cgroup) cover
/// the whole session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Most processes and threads of the session (`RLIMIT_NPROC`, counted
    /// per user namespace, and the `pids` cgroup).
    pub max_processes: u64,
    /// Most private writable memory of one process (`RLIMIT_DATA`): a
    /// memory bomb gets `ENOMEM` instead of growing. `RLIMIT_AS` is not used
    /// because runtimes such as V8 reserve huge, untouched address ranges.
    pub process_memory_bytes: u64,
    /// Most memory of the whole session (`memory` cgroup, when available):
    /// the kernel's OOM killer picks a victim inside the jail only.
    pub session_memory_bytes: u64,
    /// Most open files of one process (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Largest file one process may write (`RLIMIT_FSIZE`); the only cap on
    /// single files in `/workspace` and the grants.
    pub file_size_bytes: u64,
    /// CPU seconds of one process (`RLIMIT_CPU`); `None` for no limit. The
    /// guest itself lives for the whole session and counts against this
    /// too, so commands are better bounded by their timeouts.
    pub cpu_seconds: Option<u64>,
    /// Size of the `/tmp` and `/dev/shm` tmpfs, each.
    pub tmp_bytes: u64,
    /// Most disk space the files under `/workspace` may take together
    /// (allocated blocks, not apparent sizes); `None` for no cap. Enforced
    /// from the host side, not by the kernel: see step 10 in
    /// [`crate::jail`] for what it does and how far it can overshoot.
    #[serde(default = "default_workspace_bytes")]
    pub workspace_bytes: Option<u64>,
}

fn default_workspace_bytes() -> Option<u64> {
    Some(10 << 30)
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_processes: 512,
            process_memory_bytes: 4 << 30,
            session_memory_bytes: 8 << 30,
            open_files: 4096,
            file_size_bytes: 4 << 30,
            cpu_seconds: None,
            tmp_bytes: 1 << 30,
            workspace_bytes: default_workspace_bytes(),
        }
    }
}

/// One grant as the launcher sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// Host path (canonical).
    pub host_path: PathBuf,
    /// Name under `/mnt`.
    pub name: String,
    /// Read-write when true.
    pub writable: bool,
}

/// Everything the launcher needs, passed as its only argument (JSON). It
/// holds no secrets: the session environment travels in the guest
/// protocol's hello, not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchSpec {
    /// Host path of the guest program; `None` for a one-shot jail
    /// ([`super::oneshot`]), whose PID 1 runs one command instead.
    pub guest: Option<PathBuf>,
    /// Arguments for the guest.
    pub guest_args: Vec<String>,
    /// Host workspace directory (canonical).
    pub workspace: PathBuf,
    /// Grants, already checked to exist.
    pub grants: Vec<GrantSpec>,
    /// Skill and plugin folders, mounted read-only at `/mnt/<name>`, where
    /// `name` is a relative path whose first component starts with a dot
    /// (`.skills/pdf`, `.skills/plugin/skill`, `.plugins/plugin`), so that
    /// it cannot meet a grant.
    #[serde(default)]
    pub skills: Vec<GrantSpec>,
    /// Image root file system, when one is used.
    pub rootfs: Option<PathBuf>,
    /// Resource limits.
    pub limits: Limits,
    /// Run without landlock where the kernel lacks it.
    pub dangerously_allow_no_landlock: bool,
    /// Name of the session's cgroup (a leaf under `cubicle/`), when the
    /// host should try to create one.
    pub cgroup: Option<String>,
    /// `CUBICLE_GUEST_LOG` for the guest, the only variable passed in.
    pub guest_log: Option<String>,
    /// Pid of the host process that starts the launcher: the launcher and
    /// PID 1 ask for `SIGKILL` when it dies, and the launcher gives up if
    /// this is no longer its parent. Set by the launcher itself, not by a `pre_exec`
    /// hook in the host, so that the host can start it with a vfork-style
    /// `posix_spawn` instead of copying its whole address space with fork.
    #[serde(default)]
    pub parent_pid: Option<u32>,
}

impl LaunchSpec {
    /// Parses the launcher's arguments: exactly one, the spec as JSON.
    pub fn from_args<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> Result<Self, String> {
        let mut args = args.into_iter().skip(1);
        let (Some(json), None) = (args.next(), args.next()) else {
            return Err(
                "usage: cubicle-jail-init SPEC-JSON (it is started by cubicle, not by hand)"
                    .to_owned(),
            );
        };
        let json = json
            .into_string()
            .map_err(|_| "the launch spec is not valid UTF-8".to_owned())?;
        serde_json::from_str(&json).map_err(|e| format!("bad launch spec: {e}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn spec_round_trips_through_args() {
        let spec = LaunchSpec {
            guest: Some("/g".into()),
            guest_args: vec![],
            workspace: "/w".into(),
            skills: vec![],
            grants: vec![GrantSpec {
                host_path: "/h".into(),
                name: "h".into(),
                writable: true,
            }],
            rootfs: None,
            limits: Limits::default(),
            dangerously_allow_no_landlock: false,
            cgroup: Some("s1".into()),
            guest_log: None,
            parent_pid: Some(42),
        };
        let json = serde_json::to_string(&spec).unwrap();
        let parsed = LaunchSpec::from_args(["init".into(), json.into()]).unwrap();
        assert_eq!(parsed, spec);
        assert!(LaunchSpec::from_args(["init".into()]).is_err());
    }
}
