//! Kernel feature checks for `cubicle doctor`: each feature the jail needs,
//! whether this machine has it, and what to do when it does not.
//!
//! The checks only look (and, for user namespaces, try in a throw-away
//! child process); they change nothing on the host.

use std::path::Path;

use super::sys;

/// One kernel feature and whether it is usable here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// Short name, e.g. `user namespaces`.
    pub name: &'static str,
    /// Whether the jail can use it.
    pub available: bool,
    /// Whether the jail cannot start without it.
    pub required: bool,
    /// What was found, and what to do when it is missing.
    pub detail: String,
}

/// Checks every feature the jail uses.
pub fn probe() -> Vec<Feature> {
    vec![
        user_namespaces(),
        landlock(),
        seccomp(),
        overlayfs(),
        cgroups(),
    ]
}

/// Whether every required feature is available.
pub fn jail_usable(features: &[Feature]) -> bool {
    features.iter().all(|f| f.available || !f.required)
}

fn user_namespaces() -> Feature {
    fn try_unshare() -> std::io::Result<()> {
        sys::unshare(
            libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWNET,
        )
    }
    let result = sys::probe_in_child(try_unshare);
    let (available, detail) = match result {
        Ok(()) => (
            true,
            "a user namespace (with mount, PID and network) can be created".to_owned(),
        ),
        Err(e) => {
            let mut detail = format!("unshare(CLONE_NEWUSER) failed: {e}");
            for (file, bad) in [
                ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
                ("/proc/sys/user/max_user_namespaces", "0"),
                (
                    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
                    "1",
                ),
            ] {
                if read_trim(file).as_deref() == Some(bad) {
                    detail.push_str(&format!("; {file} is {bad}"));
                }
            }
            detail.push_str(" — enable unprivileged user namespaces or use the vm backend");
            (false, detail)
        }
    };
    Feature {
        name: "user namespaces",
        available,
        required: true,
        detail,
    }
}

fn landlock() -> Feature {
    let abi = sys::landlock_abi();
    let needed = super::landlock::REQUIRED_ABI as i64;
    Feature {
        name: "landlock",
        available: abi >= needed,
        required: true,
        detail: if abi >= needed {
            format!("ABI {abi} (ABI {needed} needed)")
        } else if abi == 0 {
            "not available — Linux 5.19+ with `landlock` in the lsm= boot parameter is needed \
             (or --dangerously-allow-no-landlock)"
                .to_owned()
        } else {
            format!("ABI {abi}, but ABI {needed} (Linux 5.19) is needed")
        },
    }
}

fn seccomp() -> Feature {
    let actions = read_trim("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    let available = actions.split_whitespace().any(|a| a == "errno");
    Feature {
        name: "seccomp filters",
        available,
        required: true,
        detail: if available {
            format!("actions: {actions}")
        } else {
            "seccomp filters are not available — the kernel needs CONFIG_SECCOMP_FILTER".to_owned()
        },
    }
}

fn overlayfs() -> Feature {
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let available = fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    Feature {
        name: "overlayfs",
        available,
        required: false,
        detail: if available {
            "available (for image layers)".to_owned()
        } else {
            "not loaded — `modprobe overlay` (needed only for layered images)".to_owned()
        },
    }
}

fn cgroups() -> Feature {
    let writable: Vec<&str> = ["pids", "memory"]
        .into_iter()
        .filter(|c| {
            let dir = Path::new("/sys/fs/cgroup").join(c);
            dir.join("cgroup.procs").exists() && sys::writable(&dir)
        })
        .collect();
    let available = writable.len() == 2;
    Feature {
        name: "cgroup limits",
        available,
        required: false,
        detail: if available {
            "cgroup v1 pids and memory controllers are writable: sessions get a cgroup".to_owned()
        } else {
            format!(
                "writable v1 controllers: {} — sessions fall back to rlimits (per-process \
                 memory, per-jail process count); delegated cgroup v2 is not used yet",
                if writable.is_empty() {
                    "none".to_owned()
                } else {
                    writable.join(", ")
                }
            )
        },
    }
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reports_every_feature() {
        let features = probe();
        let names: Vec<_> = features.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "user namespaces",
                "landlock",
                "seccomp filters",
                "overlayfs",
                "cgroup limits"
            ]
        );
        assert!(features.iter().all(|f| !f.detail.is_empty()));
    }
}
