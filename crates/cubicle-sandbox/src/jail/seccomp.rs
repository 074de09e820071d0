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
//! calls numbered as x32-ABI calls (bit 30 set) fail with `ENOSYS`: an
//! exact-number match would not see them.
//!
//! # One small filter
//!
//! The filter is one program, written here instruction by instruction (about
//! 60 of them) rather than generated: every filter a process installs is
//! checked, translated and compiled by the kernel when it is installed and
//! run on every system call after, and a generic compiler's output for the
//! same rules (three filters, 297 instructions) cost a third of a
//! millisecond to install, on each start of a cubicle. In order:
//!
//! 1. a call of a foreign architecture (32-bit `int 0x80`) kills the process;
//! 2. x32-ABI numbers fail with `ENOSYS` (x86_64);
//! 3. `clone` with any `CLONE_NEW*` flag in its first argument, `socket` of a
//!    family not allowed, and `ioctl` with a refused request fail with
//!    `EPERM`; `clone3` fails with `ENOSYS`;
//! 4. every call on the refused list fails with `EPERM`;
//! 5. everything else is allowed.

use seccompiler::{BpfProgram, sock_filter};

use super::init::InitError;

/// `AUDIT_ARCH_*` of the architecture this build runs as.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

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

/// Installs the filter on the calling thread; it is inherited by every
/// child and survives `execve`. `no_new_privs` must already be set.
pub fn install() -> Result<(), InitError> {
    seccompiler::apply_filter(&build()).map_err(|e| {
        InitError::new(format!(
            "cannot install the seccomp filter: {e} — the kernel needs CONFIG_SECCOMP_FILTER; \
             see `cubicle doctor`"
        ))
    })
}

/// Where a jump goes: the next instruction, or a labelled one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    Allow,
    Eperm,
    Enosys,
    Kill,
    Clone,
    Socket,
    Ioctl,
}

/// A classic-BPF program with symbolic jump targets.
#[derive(Default)]
struct Asm {
    ops: Vec<(u16, u32, To, To)>,
    labels: Vec<(To, usize)>,
}

// Classic BPF opcodes (linux/filter.h) and seccomp return values.
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // for x32 numbers
const JMP_JGE_K: u16 = 0x35;
const JMP_JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;

// Offsets in `struct seccomp_data`: the call number, the architecture, and
// the low 32 bits of the first two arguments (little-endian).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;
const ARG1_LOW: u32 = 24;

impl Asm {
    fn load(&mut self, offset: u32) {
        self.ops.push((LD_W_ABS, offset, To::Next, To::Next));
    }

    fn jump(&mut self, code: u16, k: u32, yes: To, no: To) {
        self.ops.push((code, k, yes, no));
    }

    fn goto(&mut self, to: To) {
        self.ops.push((JMP_JA, 0, to, To::Next));
    }

    fn ret(&mut self, k: u32) {
        self.ops.push((RET_K, k, To::Next, To::Next));
    }

    fn label(&mut self, to: To) {
        self.labels.push((to, self.ops.len()));
    }

    /// Resolves the jumps. Every target lies ahead (classic BPF cannot jump
    /// back) and within reach; the program is fixed, so a failure here is a
    /// bug the unit tests catch. Such a bug fails closed: a label never
    /// placed resolves to the last instruction (which kills), and a jump out
    /// of reach makes the kernel refuse the filter, and the jail not start.
    fn finish(self) -> BpfProgram {
        let last = self.ops.len().saturating_sub(1);
        let at = |to: To, from: usize| -> usize {
            if to == To::Next {
                return 0;
            }
            let target = self
                .labels
                .iter()
                .find(|(label, _)| *label == to)
                .map_or(last, |&(_, at)| at);
            target.saturating_sub(from + 1)
        };
        self.ops
            .iter()
            .enumerate()
            .map(|(i, &(code, k, yes, no))| {
                if code == JMP_JA {
                    let k = u32::try_from(at(yes, i)).unwrap_or(u32::MAX);
                    sock_filter {
                        code,
                        jt: 0,
                        jf: 0,
                        k,
                    }
                } else {
                    let jt = u8::try_from(at(yes, i)).unwrap_or(u8::MAX);
                    let jf = u8::try_from(at(no, i)).unwrap_or(u8::MAX);
                    sock_filter { code, jt, jf, k }
                }
            })
            .collect()
    }
}

/// The filter, as installed.
pub fn build() -> BpfProgram {
    let mut a = Asm::default();
    a.load(ARCH);
    a.jump(JMP_JEQ_K, AUDIT_ARCH, To::Next, To::Kill);
    a.load(NR);
    #[cfg(target_arch = "x86_64")]
    a.jump(JMP_JGE_K, 0x4000_0000, To::Enosys, To::Next);
    let nr = |n: libc::c_long| u32::try_from(n).unwrap_or(u32::MAX);
    a.jump(JMP_JEQ_K, nr(libc::SYS_clone), To::Clone, To::Next);
    a.jump(JMP_JEQ_K, nr(libc::SYS_clone3), To::Enosys, To::Next);
    a.jump(JMP_JEQ_K, nr(libc::SYS_socket), To::Socket, To::Next);
    a.jump(JMP_JEQ_K, nr(libc::SYS_ioctl), To::Ioctl, To::Next);
    for (_, n) in DENIED {
        a.jump(JMP_JEQ_K, nr(*n), To::Eperm, To::Next);
    }
    a.goto(To::Allow);

    // clone(flags, …): all the CLONE_NEW* flags sit in the low word.
    a.label(To::Clone);
    a.load(ARG0_LOW);
    let new_flags = CLONE_NEW_FLAGS.iter().fold(0u32, |m, f| m | *f as u32);
    a.jump(JMP_JSET_K, new_flags, To::Eperm, To::Allow);

    // socket(domain, …): the kernel reads `domain` as an int.
    a.label(To::Socket);
    a.load(ARG0_LOW);
    for family in ALLOWED_FAMILIES {
        a.jump(JMP_JEQ_K, *family as u32, To::Allow, To::Next);
    }
    a.goto(To::Eperm);

    // ioctl(fd, request, …): the kernel reads `request` as an unsigned int.
    a.label(To::Ioctl);
    a.load(ARG1_LOW);
    for request in DENIED_IOCTLS {
        a.jump(JMP_JEQ_K, *request as u32, To::Eperm, To::Next);
    }
    a.goto(To::Allow);

    a.label(To::Allow);
    a.ret(RET_ALLOW);
    a.label(To::Eperm);
    a.ret(RET_ERRNO | libc::EPERM as u32);
    a.label(To::Enosys);
    a.ret(RET_ERRNO | libc::ENOSYS as u32);
    a.label(To::Kill);
    a.ret(RET_KILL_PROCESS);
    a.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn every_jump_lands_on_an_instruction_ahead() {
        let prog = build();
        assert!(prog.len() < 100, "{} instructions", prog.len());
        for (i, op) in prog.iter().enumerate() {
            let targets: Vec<usize> = match op.code {
                JMP_JA => vec![op.k as usize],
                JMP_JEQ_K | JMP_JGE_K | JMP_JSET_K => vec![op.jt.into(), op.jf.into()],
                _ => vec![],
            };
            for t in targets {
                assert!(i + 1 + t < prog.len(), "instruction {i} jumps out");
                assert!(t < usize::from(u8::MAX), "instruction {i} jumps too far");
            }
        }
        let last = prog.last().unwrap();
        assert_eq!((last.code, last.k), (RET_K, RET_KILL_PROCESS));
    }

    /// Runs `probe` in a child with the filter installed; returns its exit
    /// status (0 when every check held).
    fn in_filtered_child(probe: fn() -> i32) -> i32 {
        let prog = build();
        // SAFETY: the child only makes system calls and `_exit`s; it never
        // returns into the test harness.
        match unsafe { libc::fork() } {
            0 => {
                let code = unsafe {
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        100
                    } else if seccompiler::apply_filter(&prog).is_err() {
                        101
                    } else {
                        probe()
                    }
                };
                unsafe { libc::_exit(code) }
            }
            pid => {
                assert!(pid > 0, "fork failed");
                let mut status = 0;
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status), "the probe died: {status:#x}");
                libc::WEXITSTATUS(status)
            }
        }
    }

    fn errno_of(ret: libc::c_long) -> i32 {
        if ret >= 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
        }
    }

    #[test]
    fn the_filter_refuses_what_it_lists_and_allows_the_rest() {
        fn probe() -> i32 {
            // Each check: (its number, the errno wanted, what came).
            let checks: [(i32, i32, i32); 12] = unsafe {
                [
                    (1, 0, errno_of(libc::syscall(libc::SYS_getpid))),
                    (
                        2,
                        libc::EPERM,
                        errno_of(libc::syscall(libc::SYS_ptrace, 0, 0, 0, 0)),
                    ),
                    (
                        3,
                        libc::EPERM,
                        errno_of(libc::syscall(libc::SYS_unshare, 0)),
                    ),
                    (
                        4,
                        libc::EPERM,
                        errno_of(libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0)),
                    ),
                    (
                        5,
                        libc::EPERM,
                        errno_of(libc::syscall(
                            libc::SYS_clone,
                            libc::CLONE_NEWNET,
                            0,
                            0,
                            0,
                            0,
                        )),
                    ),
                    (
                        6,
                        libc::ENOSYS,
                        errno_of(libc::syscall(libc::SYS_clone3, 0, 0)),
                    ),
                    (
                        7,
                        libc::EPERM,
                        errno_of(libc::syscall(
                            libc::SYS_socket,
                            libc::AF_NETLINK,
                            libc::SOCK_RAW,
                            0,
                        )),
                    ),
                    (
                        8,
                        0,
                        errno_of(libc::syscall(
                            libc::SYS_socket,
                            libc::AF_UNIX,
                            libc::SOCK_STREAM,
                            0,
                        )),
                    ),
                    (
                        9,
                        libc::EPERM,
                        errno_of(libc::syscall(libc::SYS_ioctl, 0, libc::TIOCSTI, 0)),
                    ),
                    // An ioctl not refused reaches the kernel (and fails there).
                    (
                        10,
                        libc::EBADF,
                        errno_of(libc::syscall(libc::SYS_ioctl, -1, libc::FIONREAD, 0)),
                    ),
                    (
                        11,
                        libc::EPERM,
                        errno_of(libc::syscall(libc::SYS_bpf, 0, 0, 0)),
                    ),
                    // getpid with the x32 bit set.
                    (
                        12,
                        if cfg!(target_arch = "x86_64") {
                            libc::ENOSYS
                        } else {
                            0
                        },
                        if cfg!(target_arch = "x86_64") {
                            errno_of(libc::syscall(libc::SYS_getpid | 0x4000_0000))
                        } else {
                            0
                        },
                    ),
                ]
            };
            for (n, want, got) in checks {
                if want != got {
                    return n;
                }
            }
            0
        }
        assert_eq!(in_filtered_child(probe), 0, "the numbered check failed");
    }
}
