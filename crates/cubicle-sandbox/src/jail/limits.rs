//! Step 0 and step 5 of the jail: resource limits.
//!
//! Two layers, because neither is always there:
//!
//! - **rlimits** (always): inherited by the guest and so by every command.
//!   `RLIMIT_NPROC` is counted per user namespace (Linux ≥ 5.14), so it caps
//!   the jail's processes and threads, not the caller's — except when the
//!   caller is host root: the kernel never applies `RLIMIT_NPROC` to host
//!   uid 0 (seen here: 100 processes under a limit of 64), so for root the
//!   `pids` cgroup below is what stops a fork bomb, and the launcher warns
//!   when it could not create one. A fork bomb gets
//!   `EAGAIN` and is killed with its process group when its command times
//!   out. `RLIMIT_DATA` caps each process's private memory, so a memory
//!   bomb gets `ENOMEM` in the process that grows, not in the guest.
//! - **a session cgroup** (where the launcher may create one: root with the
//!   cgroup v1 `pids` and `memory` controllers; delegated cgroup v2 is not
//!   handled yet): a hard ceiling on the session's processes and memory, so
//!   that many moderate processes together cannot hurt the host either; the
//!   OOM killer then chooses inside the jail. It is joined *before* the
//!   namespaces are created so that the jail's cgroup namespace is rooted at
//!   it.
//!
//! `/workspace` is a bind mount of a host directory and cannot be given a
//! hard size cap without privilege (no per-directory quota exists for
//! unprivileged users); `RLIMIT_FSIZE` caps each file. `/tmp` and
//! `/dev/shm` are tmpfs mounts with a `size=`, a hard cap.

use std::path::{Path, PathBuf};

use super::config::Limits;
use super::init::InitError;
use super::namespaces::errno_name;
use super::sys;

/// Controllers of cgroup v1 the session cgroup uses.
const V1_CONTROLLERS: &[&str] = &["pids", "memory"];

/// Where cgroup v1 hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Step 5a: applies the rlimits to the calling process (the jail's PID 1,
/// whose children inherit them). Soft and hard are set equal so nothing
/// inside can raise them.
pub fn apply_rlimits(limits: &Limits) -> Result<(), InitError> {
    let set = |res, name: &str, value: u64| {
        sys::setrlimit(res, value).map_err(|e| {
            InitError::new(format!("cannot set {name} to {value}: {}", errno_name(&e)))
        })
    };
    set(libc::RLIMIT_NPROC, "RLIMIT_NPROC", limits.max_processes)?;
    set(
        libc::RLIMIT_DATA,
        "RLIMIT_DATA",
        limits.process_memory_bytes,
    )?;
    // Raising a hard limit needs privilege in the initial namespace; never
    // ask for more open files than the launcher already may have.
    let nofile = limits.open_files.min(current_hard(libc::RLIMIT_NOFILE));
    set(libc::RLIMIT_NOFILE, "RLIMIT_NOFILE", nofile)?;
    set(libc::RLIMIT_FSIZE, "RLIMIT_FSIZE", limits.file_size_bytes)?;
    set(libc::RLIMIT_CORE, "RLIMIT_CORE", 0)?;
    if let Some(cpu) = limits.cpu_seconds {
        set(libc::RLIMIT_CPU, "RLIMIT_CPU", cpu)?;
    }
    Ok(())
}

fn current_hard(res: libc::__rlimit_resource_t) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer for the call.
    if unsafe { libc::getrlimit(res, &mut lim) } == 0 {
        lim.rlim_max
    } else {
        0
    }
}

/// Step 0: creates the session cgroup `cubicle/<name>` in each usable v1
/// controller, sets its limits and moves the calling process into it.
/// Returns the directories created (for [`remove_cgroup`]); an empty list
/// when no controller was writable, which is not an error: the rlimits
/// still apply. The caller must be single-threaded: it joins by moving its one thread.
pub fn enter_cgroup(name: &str, limits: &Limits) -> Vec<PathBuf> {
    let mut created = create_cgroup(name, limits);
    created.retain(|dir| {
        let joined = join(dir);
        if !joined {
            let _ = std::fs::remove_dir(dir);
        }
        joined
    });
    created
}

/// The first half of [`enter_cgroup`]: creates the session cgroup in each
/// usable controller and sets its limits; returns the directories made.
pub fn create_cgroup(name: &str, limits: &Limits) -> Vec<PathBuf> {
    let mut created = Vec::new();
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return created;
    }
    for controller in V1_CONTROLLERS {
        let base = Path::new(CGROUP_ROOT).join(controller);
        if !base.join("cgroup.procs").exists() {
            continue;
        }
        sweep_stale(&base.join("cubicle"));
        let dir = base.join("cubicle").join(name);
        if std::fs::create_dir_all(&dir).is_err() {
            continue;
        }
        let limit_ok = match *controller {
            // A little headroom over RLIMIT_NPROC: the rlimit is what a
            // command should hit first; the cgroup is the backstop.
            "pids" => write(&dir, "pids.max", &(limits.max_processes + 64).to_string()),
            "memory" => write(
                &dir,
                "memory.limit_in_bytes",
                &limits.session_memory_bytes.to_string(),
            ),
            _ => false,
        };
        if limit_ok {
            created.push(dir);
        } else {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    created
}

/// Removes the session cgroups in `parent` of host processes that have
/// exited: a host killed outright (`SIGKILL`, a crash) cannot remove its
/// own. A cgroup still holding a process is not removed (`rmdir` refuses
/// it), and one named after a pid since reused waits for the next sweep.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(host) = name
            .to_str()
            .and_then(|n| n.strip_prefix('s'))
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(host.to_string()).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// The second half of [`enter_cgroup`], in the process to move (its
/// only thread): joins each of `dirs`. One that cannot be joined leaves its
/// limit to the rlimits; the others still apply.
pub fn join_cgroups(dirs: &[PathBuf]) {
    for dir in dirs {
        join(dir);
    }
}

/// Whether `dirs` hold a `pids` cgroup: without one, the kernel does not
/// apply `RLIMIT_NPROC` to a jail started by host root.
pub fn has_pids_cgroup(dirs: &[PathBuf]) -> bool {
    dirs.iter()
        .any(|d| d.starts_with(Path::new(CGROUP_ROOT).join("pids")))
}

/// The session cgroup directories [`enter_cgroup`] would create for `name`
/// (used by the host to remove them after the jail ended).
pub fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    V1_CONTROLLERS
        .iter()
        .map(|c| Path::new(CGROUP_ROOT).join(c).join("cubicle").join(name))
        .collect()
}

/// Removes the session cgroups once every process in them has ended.
/// Retries briefly: the kernel frees a cgroup a moment after its last
/// process is reaped.
pub fn remove_cgroup(name: &str) {
    for dir in cgroup_dirs(name) {
        if !dir.exists() {
            continue;
        }
        for _ in 0..100 {
            if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Moves the calling process into the cgroup `dir`.
///
/// The launcher is single-threaded (checked before this step), so moving
/// its one thread moves the process. That is done by writing `0` ("the
/// calling thread") to `tasks`, for which the kernel skips the global
/// thread-group lock: moving a whole process through `cgroup.procs` write-
/// locks it, which waits for an RCU grace period, 7–14 ms per jail on cgroup
/// v1, here 20 µs. `cgroup.procs` remains the fallback.
fn join(dir: &Path) -> bool {
    write(dir, "tasks", "0") || write(dir, "cgroup.procs", &std::process::id().to_string())
}

fn write(dir: &Path, file: &str, value: &str) -> bool {
    std::fs::write(dir.join(file), value).is_ok()
}
