//! Step 8 of the jail: a seccomp filter. Default allow (the namespaces and
//! landlock do the confining); the system calls that reach kernel surface a
//! cubicle never needs, or that could undo the other walls, fail with
//! `EPERM`:
//!
//! - debugging and other processes' memory: `ptrace`, `process_vm_readv`,
//!   `process_vm_writev`;
//! - mounts and roots: `mount`, `umount2`, `pivot_root`, `chroot`, the new
//!   mount API (`fsopen`, `fsmount`, `fsconfig`, `fspick`, `move_mount`,
//!   `open_tree`, `mount_setattr`);
//! - namespaces: `setns`, `unshare`, and `clone` with any `CLONE_NEW*` flag;
//!   `clone3` fails with `ENOSYS` because its flags sit in memory a filter
//!   cannot read, and libc then falls back to `clone`;
//! - kernel surface: `kexec_load`, `kexec_file_load`, `bpf`, `keyctl`,
//!   `add_key`, `request_key`, `userfaultfd`, `perf_event_open`,
//!   `io_uring_setup`/`_enter`/`_register`, `init_module`, `finit_module`,
//!   `delete_module`, `reboot`, `swapon`, `swapoff`, `open_by_handle_at`,
//!   `name_to_handle_at`, `acct`, `quotactl`, `lookup_dcookie`;
//! - sockets of any family but `AF_UNIX`, `AF_INET`, `AF_INET6` (no
//!   netlink, packet, vsock, …);
//! - terminal input injection: `ioctl` `TIOCSTI` and `TIOCLINUX`.
//!
//! On x86_64 a second, hand-written filter refuses every x32-ABI system call
//! (numbers with bit 30 set), which would otherwise slip past the first
//! filter's exact-number matches; calls of a foreign architecture (32-bit
//! `int 0x80`) kill the process (seccompiler's architecture check).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::init::InitError;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// System calls refused outright.
const DENIED: &[(&str, libc::c_long)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("setns", libc::SYS_setns),
    ("unshare", libc::SYS_unshare),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("bpf", libc::SYS_bpf),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
];

/// Namespace flags `clone` may not carry.
const CLONE_NEW_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

/// Socket families a cubicle may use.
const ALLOWED_FAMILIES: &[libc::c_int] = &[libc::AF_UNIX, libc::AF_INET, libc::AF_INET6];

/// Terminal ioctls that inject input or poke the console.
const DENIED_IOCTLS: &[libc::c_ulong] = &[libc::TIOCSTI, libc::TIOCLINUX];

/// Installs the filters on the calling thread; they are inherited by every
/// child and survive `execve`. `no_new_privs` must already be set.
pub fn install() -> Result<(), InitError> {
    let programs =
        build().map_err(|e| InitError::new(format!("cannot build the seccomp filter: {e}")))?;
    for prog in &programs {
        seccompiler::apply_filter(prog).map_err(|e| {
            InitError::new(format!(
                "cannot install the seccomp filter: {e} — the kernel needs CONFIG_SECCOMP_FILTER; \
                 see `cubicle doctor`"
            ))
        })?;
    }
    Ok(())
}

/// The filters, in the order they are installed.
pub fn build() -> Result<Vec<BpfProgram>, seccompiler::BackendError> {
    let eperm = SeccompAction::Errno(libc::EPERM as u32);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in DENIED {
        rules.insert(*nr, Vec::new());
    }
    let masked = |flag: u64| {
        SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
    };
    let mut clone_rules = Vec::new();
    for flag in CLONE_NEW_FLAGS {
        clone_rules.push(SeccompRule::new(vec![masked(*flag as u64)?])?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let mut family = Vec::new();
    for f in ALLOWED_FAMILIES {
        family.push(SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Ne,
            *f as u64,
        )?);
    }
    rules.insert(libc::SYS_socket, vec![SeccompRule::new(family)?]);
    let mut ioctls = Vec::new();
    for req in DENIED_IOCTLS {
        ioctls.push(SeccompRule::new(vec![SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            *req,
        )?])?);
    }
    rules.insert(libc::SYS_ioctl, ioctls);
    let main: BpfProgram =
        SeccompFilter::new(rules, SeccompAction::Allow, eperm, ARCH)?.try_into()?;

    let clone3: BpfProgram = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        ARCH,
    )?
    .try_into()?;

    let mut programs = vec![main, clone3];
    #[cfg(target_arch = "x86_64")]
    programs.push(x32_filter());
    Ok(programs)
}

/// Refuses x32-ABI system calls (`nr >= 0x4000_0000`) with `ENOSYS`.
#[cfg(target_arch = "x86_64")]
fn x32_filter() -> BpfProgram {
    use seccompiler::sock_filter;
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        // Offset 0 of seccomp_data is the system call number.
        op(BPF_LD_W_ABS, 0, 0, 0),
        op(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT),
        op(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn filters_compile() {
        let progs = build().unwrap();
        assert!(progs.len() >= 2);
        assert!(progs.iter().all(|p| !p.is_empty()));
    }
}
