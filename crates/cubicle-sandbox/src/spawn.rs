//! Starting the host processes that make up a cubicle (the jail launcher,
//! QEMU): they must never outlive the `cubicle` process that started them,
//! not even after `kill -9` of it.

/// Makes the command's process receive SIGKILL when the thread that spawned
/// it exits (tokio spawns from a runtime worker, which lives as long as the
/// runtime, so in practice: when `cubicle` exits, however it exits).
pub(crate) fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
