//! Step 1 and step 4 of the jail: new namespaces with the caller mapped to
//! root inside, and the UTS and network namespaces' contents (hostname,
//! loopback).

use super::init::InitError;
use super::sys;

/// Every namespace the jail gets: user first (the kernel creates it before
/// the others, which it then owns), then mount, PID, network, IPC, UTS and
/// cgroup.
const NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP;

/// Step 1: unshares all namespaces and maps the caller's uid and gid to 0
/// inside.
///
/// Why root-inside-is-the-caller and not an unused uid: files the jail
/// creates in `/workspace` and read-write grants must belong to the user
/// who owns them, and only the caller's own uid can be mapped without
/// privilege. `RLIMIT_NPROC` is nonetheless counted for the jail alone:
/// since Linux 5.14 rlimit counters are kept per user namespace. When the
/// caller is host root, the jail's uid is kernel uid 0, so the defences
/// that do not depend on uids carry the weight: every capability dropped,
/// `/proc/sys` and friends read-only, and landlock allowing writes only to
/// the workspace, `/tmp` and read-write grants.
pub fn unshare_all() -> Result<(), InitError> {
    let (uid, gid) = sys::ids();
    sys::unshare(NAMESPACES).map_err(|e| namespace_error(&e))?;
    map_ids(uid, gid)
}

/// Step 1 for a one-shot jail ([`super::oneshot`]): `clone` straight into
/// every namespace but the cgroup one (which PID 1 enters once it has
/// joined the session cgroup, so that the namespace is rooted there). The
/// child is PID 1 of the new PID namespace; it must call [`map_ids`]
/// first. The caller must be single-threaded, as for [`sys::clone_with`].
pub fn clone_into_namespaces() -> Result<sys::Forked, InitError> {
    sys::clone_with(NAMESPACES & !libc::CLONE_NEWCGROUP).map_err(|e| namespace_error(&e))
}

/// Step 1 in a process that just entered its namespaces: maps `uid` and
/// `gid`, its ids on the host, to 0 inside.
pub fn map_ids(uid: u32, gid: u32) -> Result<(), InitError> {
    // setgroups must be denied before an unprivileged process may write its
    // gid_map; it also stops the jail from dropping supplementary groups to
    // get around "deny by group" permissions.
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("0 {uid} 1\n"))?;
    write_proc("/proc/self/gid_map", &format!("0 {gid} 1\n"))?;
    Ok(())
}

fn namespace_error(e: &std::io::Error) -> InitError {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::ENOSPC) | Some(libc::EINVAL) => {
            " — the kernel forbids unprivileged user namespaces (check \
             kernel.unprivileged_userns_clone, user.max_user_namespaces and \
             AppArmor's restrict_unprivileged_userns); see `cubicle doctor`"
        }
        _ => " — see `cubicle doctor`",
    };
    InitError::new(format!(
        "cannot create a user namespace: {}{hint}",
        errno_name(e)
    ))
}

fn write_proc(path: &str, contents: &str) -> Result<(), InitError> {
    std::fs::write(path, contents).map_err(|e| {
        InitError::new(format!(
            "cannot write {path}: {} — see `cubicle doctor`",
            errno_name(&e)
        ))
    })
}

/// Step 4: names the host `cubicle` and brings up loopback, the only
/// interface of the new network namespace (so there is no route out).
pub fn configure_uts_and_net() -> Result<(), InitError> {
    sys::sethostname("cubicle")
        .map_err(|e| InitError::new(format!("cannot set the hostname: {}", errno_name(&e))))?;
    sys::interface_up(c"lo").map_err(|e| {
        InitError::new(format!(
            "cannot bring up loopback in the jail's network namespace: {}",
            errno_name(&e)
        ))
    })?;
    Ok(())
}

/// `EPERM (Operation not permitted)` style rendering of an OS error.
pub fn errno_name(e: &std::io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::ENOSYS) => "ENOSYS",
        Some(libc::EBUSY) => "EBUSY",
        Some(libc::ENOTDIR) => "ENOTDIR",
        Some(libc::EAGAIN) => "EAGAIN",
        _ => return e.to_string(),
    };
    format!("{name} ({e})")
}
