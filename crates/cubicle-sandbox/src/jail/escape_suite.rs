//! The escape suite: real attacks on a cubicle, as data ([`PROBES`]), with
//! the host-side fixtures they aim at ([`Fixtures`]) and a runner
//! ([`run_probe`]) that judges each through the [`Computer`] trait. The
//! jail's integration tests iterate the table; `cubicle doctor
//! --escape-suite` can print the same table as a scorecard.
//!
//! A shell probe must print exactly one verdict word: `CONTAINED` when the
//! attack failed, `ESCAPED` when it worked. Output with neither (a missing
//! tool, a crash) is *inconclusive*, which counts as a failure, so a probe
//! never passes by not running. Before each shell probe the runner checks
//! that the tools it names in [`Probe::requires`] exist inside.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cubicle_protocol::guest::ExecRequest;

use crate::computer::Computer;
use crate::grants::Grant;

/// What a probe attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Host files outside the grants, and grants beyond their mode.
    Files,
    /// Host processes, privileges and the kernel.
    Processes,
    /// The host's network, loopback services and sockets.
    Network,
    /// Secrets of the host.
    Credentials,
    /// Exhausting resources.
    Resources,
}

/// How a probe attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// A `/bin/sh -c` script that prints `CONTAINED` or `ESCAPED`.
    Shell(&'static str),
    /// A `read_file` request through the guest protocol; contained when it
    /// fails or returns nothing containing the fixture secret.
    ReadFile(&'static str),
    /// A `write_file` request; contained when it fails.
    WriteFile(&'static str),
    /// A `list_dir` request; contained when it fails.
    ListDir(&'static str),
    /// A script whose output is flooded: contained when the output is
    /// capped at [`FLOOD_CAP`] bytes and the request ends.
    Flood(&'static str),
}

/// Output cap used by [`Attack::Flood`] probes.
pub const FLOOD_CAP: u64 = 1 << 20;

/// One attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Unique, kebab-case.
    pub name: &'static str,
    /// What it attacks.
    pub category: Category,
    /// The attack. Placeholders like `{SECRET}` are filled from
    /// [`Fixtures::vars`].
    pub attack: Attack,
    /// Tools the script needs inside.
    pub requires: &'static [&'static str],
    /// Timeout of the command, milliseconds.
    pub timeout_ms: u64,
    /// What containment means, for the scorecard.
    pub expected: &'static str,
}

const PY: &[&str] = &["python3"];
const SH: &[&str] = &["sh", "cat", "grep", "ls"];
const T: u64 = 15_000;

macro_rules! probe {
    ($name:expr, $cat:ident, $attack:expr, $req:expr, $expected:expr) => {
        probe!($name, $cat, $attack, $req, T, $expected)
    };
    ($name:expr, $cat:ident, $attack:expr, $req:expr, $timeout:expr, $expected:expr) => {
        Probe {
            name: $name,
            category: Category::$cat,
            attack: $attack,
            requires: $req,
            timeout_ms: $timeout,
            expected: $expected,
        }
    };
}

/// Python helper prefix: `sc(nr, *args)` makes a raw system call and
/// returns (result, errno).
const PY_SYSCALL: &str = "import ctypes,os,sys;L=ctypes.CDLL(None,use_errno=True);L.syscall.restype=ctypes.c_long\ndef sc(nr,*a):\n r=L.syscall(ctypes.c_long(nr),*[ctypes.c_long(x) for x in a]);return r,ctypes.get_errno()\n";

/// Every probe, in scorecard order.
pub const PROBES: &[Probe] = &[
    // ---- files ----
    probe!(
        "read-host-home",
        Files,
        Attack::Shell(
            "ls -A {HOST_HOME} 2>/dev/null | grep -q . && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "the host's home directory does not exist inside"
    ),
    probe!(
        "read-ssh-keys",
        Files,
        Attack::Shell(
            "cat {HOST_HOME}/.ssh/* {FAKE_HOME}/.ssh/id_ed25519 2>/dev/null | grep -q . && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "no SSH key of the host is readable"
    ),
    probe!(
        "read-etc-shadow",
        Files,
        Attack::Shell(
            "cat /etc/shadow /etc/gshadow /etc/sudoers 2>/dev/null | grep -q . && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "/etc/shadow, gshadow and sudoers are absent"
    ),
    probe!(
        "etc-passwd-is-generated",
        Files,
        Attack::Shell(
            "test \"$(grep -c . /etc/passwd)\" -le 2 && ! grep -q {HOST_USER_LINE} /etc/passwd && echo CONTAINED || echo ESCAPED"
        ),
        SH,
        "/etc/passwd lists no host user"
    ),
    probe!(
        "read-secret-by-path",
        Files,
        Attack::Shell(
            "cat {SECRET_PATH} 2>/dev/null | grep -q {SECRET} && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "a host file outside the grants is not visible"
    ),
    probe!(
        "read-secret-via-proc-root",
        Files,
        Attack::Shell(
            "for p in /proc/*/root; do cat $p{SECRET_PATH} 2>/dev/null; done | grep -q {SECRET} && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "/proc/<pid>/root leads only into the jail"
    ),
    probe!(
        "proc-fds-point-only-inside",
        Files,
        Attack::Shell(
            "python3 -c \"import os,glob\nbad=[]\nfor f in glob.glob('/proc/[0-9]*/fd/*')+glob.glob('/proc/[0-9]*/cwd'):\n  try: t=os.readlink(f)\n  except OSError: continue\n  if t.startswith('/') and not t.startswith(('/workspace','/dev','/tmp','/mnt','/.cubicle','/proc','/usr')) and t!='/': bad.append((f,t))\n  if '{SECRET_DIR}' in t: bad.append((f,t))\nprint('ESCAPED',bad) if bad else print('CONTAINED')\""
        ),
        PY,
        "no open descriptor or cwd refers to a host path"
    ),
    probe!(
        "dotdot-traversal-shell",
        Files,
        Attack::Shell(
            "cat /workspace/../../../../..{SECRET_PATH} /mnt/ro/../../..{SECRET_PATH} 2>/dev/null | grep -q {SECRET} && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "`..` never climbs out of the jail's root"
    ),
    probe!(
        "dotdot-traversal-read-op",
        Files,
        Attack::ReadFile("/workspace/../../../../..{SECRET_PATH}"),
        &[],
        "read_file with `..` cannot reach a host file"
    ),
    probe!(
        "secret-read-op",
        Files,
        Attack::ReadFile("{SECRET_PATH}"),
        &[],
        "read_file of a host path fails"
    ),
    probe!(
        "list-host-home-op",
        Files,
        Attack::ListDir("{HOST_HOME}"),
        &[],
        "list_dir of the host's home fails"
    ),
    probe!(
        "planted-absolute-symlink",
        Files,
        Attack::Shell(
            "cat /mnt/ro/escape-link 2>/dev/null | grep -q {SECRET} && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "a symlink planted in a grant resolves inside the jail"
    ),
    probe!(
        "planted-relative-symlink",
        Files,
        Attack::Shell(
            "cat /mnt/ro/rel-link 2>/dev/null | grep -q {SECRET} && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "a relative symlink out of a grant leads nowhere"
    ),
    probe!(
        "planted-symlink-read-op",
        Files,
        Attack::ReadFile("/mnt/ro/escape-link"),
        &[],
        "read_file through a planted symlink fails"
    ),
    probe!(
        "symlink-made-inside",
        Files,
        Attack::Shell(
            "ln -sf {SECRET_PATH} /workspace/l && cat /workspace/l 2>/dev/null | grep -q {SECRET} && echo ESCAPED || echo CONTAINED; rm -f /workspace/l"
        ),
        &["ln", "cat", "grep"],
        "a symlink to a host path made inside resolves inside"
    ),
    probe!(
        "write-through-planted-hardlink",
        Files,
        Attack::Shell(
            "echo PWNED >> /mnt/ro/hard-link 2>/dev/null && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "a hardlink in a read-only grant cannot be written through"
    ),
    probe!(
        "hardlink-ro-file-into-workspace",
        Files,
        Attack::Shell(
            "ln /mnt/ro/data.txt /workspace/hl 2>/dev/null && echo ESCAPED || echo CONTAINED; rm -f /workspace/hl"
        ),
        &["ln"],
        "a read-only grant's file cannot be linked into a writable place"
    ),
    probe!(
        "write-ro-grant",
        Files,
        Attack::Shell(
            "echo PWNED > /mnt/ro/data.txt 2>/dev/null; touch /mnt/ro/new 2>/dev/null; rm -f /mnt/ro/data.txt 2>/dev/null; chmod 777 /mnt/ro 2>/dev/null; grep -q original /mnt/ro/data.txt && test ! -e /mnt/ro/new && echo CONTAINED || echo ESCAPED"
        ),
        &["sh", "touch", "rm", "chmod", "grep"],
        "a read-only grant is read-only to root inside"
    ),
    probe!(
        "write-ro-grant-op",
        Files,
        Attack::WriteFile("/mnt/ro/data.txt"),
        &[],
        "write_file into a read-only grant fails"
    ),
    probe!(
        "remount-ro-grant-rw",
        Files,
        Attack::Shell(
            "mount -o remount,rw /mnt/ro 2>/dev/null; mount -o remount,rw,bind /mnt/ro 2>/dev/null; touch /mnt/ro/remounted 2>/dev/null && echo ESCAPED || echo CONTAINED"
        ),
        &["mount", "touch"],
        "a read-only grant cannot be remounted read-write"
    ),
    probe!(
        "write-root",
        Files,
        Attack::Shell("touch /pwned-{UNIQUE} 2>/dev/null && echo ESCAPED || echo CONTAINED"),
        &["touch"],
        "/ is read-only"
    ),
    probe!(
        "write-usr",
        Files,
        Attack::Shell(
            "touch /usr/pwned-{UNIQUE} /usr/bin/pwned-{UNIQUE} 2>/dev/null && echo ESCAPED || echo CONTAINED"
        ),
        &["touch"],
        "/usr is read-only"
    ),
    probe!(
        "write-etc",
        Files,
        Attack::Shell(
            "touch /etc/pwned-{UNIQUE} 2>/dev/null || echo x >> /etc/hosts 2>/dev/null && echo ESCAPED || echo CONTAINED"
        ),
        &["touch"],
        "/etc is read-only"
    ),
    probe!(
        "write-op-usr",
        Files,
        Attack::WriteFile("/usr/pwned-{UNIQUE}"),
        &[],
        "write_file into /usr fails"
    ),
    probe!(
        "block-devices",
        Files,
        Attack::Shell(
            "ls /dev | grep -Eq '^(sd|vd|xvd|nvme|hd|loop|mem|kmem|port|kmsg|dm-)' && echo ESCAPED || { head -c1 /dev/vda >/dev/null 2>&1 && echo ESCAPED || echo CONTAINED; }"
        ),
        &["ls", "grep", "head"],
        "no disk or memory device exists in /dev"
    ),
    probe!(
        "mknod-device",
        Files,
        Attack::Shell(
            "mknod /tmp/mem c 1 1 2>/dev/null && head -c1 /tmp/mem >/dev/null 2>&1 && echo ESCAPED || echo CONTAINED"
        ),
        &["mknod"],
        "device nodes cannot be created"
    ),
    // ---- processes and kernel ----
    probe!(
        "see-host-processes",
        Processes,
        Attack::Shell(
            "python3 -c \"import glob\nargs=[]\nfor f in glob.glob('/proc/[0-9]*/cmdline'):\n  try: args.append(open(f,'rb').read().split(b'\\\\0'))\n  except OSError: pass\nhost=[a for a in args if len(a)>1 and a[0].endswith(b'sleep') and a[1]==b'{SLEEP_MARKER}']\nprint('ESCAPED' if host or len(args)>=50 else 'CONTAINED', len(args))\""
        ),
        PY,
        "only the jail's processes are visible"
    ),
    probe!(
        "signal-host-process",
        Processes,
        Attack::Shell("kill -9 {HOST_PID} 2>/dev/null && echo ESCAPED || echo CONTAINED"),
        &["sh"],
        "a host process cannot be signalled"
    ),
    probe!(
        "ptrace-attach",
        Processes,
        Attack::Shell(
            "python3 -c \"{PY_SYSCALL}r,e=sc(101,16,1,0,0)\nprint('ESCAPED' if r==0 else 'CONTAINED')\""
        ),
        PY,
        "ptrace is refused"
    ),
    probe!(
        "ptrace-traceme",
        Processes,
        Attack::Shell(
            "python3 -c \"{PY_SYSCALL}r,e=sc(101,0,0,0,0)\nprint('ESCAPED' if r==0 else 'CONTAINED')\""
        ),
        PY,
        "ptrace(TRACEME) is refused"
    ),
    probe!(
        "no-capabilities",
        Processes,
        Attack::Shell(
            "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status | grep -vq '0000000000000000' && echo ESCAPED || { grep -q 'NoNewPrivs:.1' /proc/self/status && echo CONTAINED || echo ESCAPED; }"
        ),
        SH,
        "no capabilities at all, and no_new_privs set"
    ),
    probe!(
        "setuid-binary",
        Processes,
        Attack::Shell(
            "for b in /usr/bin/su /usr/bin/sudo /usr/bin/passwd /usr/bin/newgrp /usr/bin/mount; do test -u $b && break; done; test -u \"$b\" || { echo 'no setuid binary'; exit; }; cp /usr/bin/grep /tmp/g 2>/dev/null; $b --help >/dev/null 2>&1; python3 -c \"import os,subprocess;o=subprocess.run(['$b','-c','grep CapEff /proc/self/status'],capture_output=True,text=True).stdout\nprint('ESCAPED' if o.strip() and not o.strip().endswith('0000000000000000') else 'CONTAINED')\""
        ),
        &["python3", "cp"],
        "a setuid binary gains nothing (no_new_privs, nosuid mounts)"
    ),
    probe!(
        "mount-tmpfs",
        Processes,
        Attack::Shell(
            "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>/dev/null && echo ESCAPED || python3 -c \"{PY_SYSCALL}import ctypes\nr=L.mount(b'none',b'/tmp/m',b'tmpfs',0,None)\nprint('ESCAPED' if r==0 else 'CONTAINED')\""
        ),
        &["mount", "python3"],
        "mount is refused"
    ),
    probe!(
        "unshare-user",
        Processes,
        Attack::Shell(
            "unshare -U -r true 2>/dev/null && echo ESCAPED || python3 -c \"{PY_SYSCALL}r,e=sc(272,0x10000000)\nprint('ESCAPED' if r==0 else 'CONTAINED')\""
        ),
        &["unshare", "python3"],
        "new user namespaces are refused"
    ),
    probe!(
        "clone-newuser",
        Processes,
        Attack::Shell(
            "python3 -c \"{PY_SYSCALL}import signal\nr,e=sc(56,0x10000000|17,0,0,0,0)\nif r==0: os._exit(0)\nr3,e3=sc(435,0,0)\nprint('ESCAPED' if r>0 or r3>0 else 'CONTAINED')\""
        ),
        PY,
        "clone(CLONE_NEWUSER) is refused and clone3 is unavailable"
    ),
    probe!(
        "chroot-escape",
        Processes,
        Attack::Shell(
            "python3 -c \"import os\nos.makedirs('/tmp/c',exist_ok=True)\ntry:\n  os.chroot('/tmp/c')\n  for i in range(64): os.chdir('..')\n  os.chroot('.')\n  print('ESCAPED' if os.path.exists('{SECRET_PATH}') else 'CONTAINED')\nexcept OSError: print('CONTAINED')\""
        ),
        PY,
        "chroot is refused (and the jail has no outside to climb to)"
    ),
    probe!(
        "setns-host",
        Processes,
        Attack::Shell(
            "python3 -c \"{PY_SYSCALL}fd=os.open('/proc/self/ns/mnt',os.O_RDONLY)\nr,e=sc(308,fd,0)\nr2,e2=sc(308,os.open('/proc/self/ns/user',os.O_RDONLY),0)\nprint('ESCAPED' if r==0 or r2==0 else 'CONTAINED')\""
        ),
        PY,
        "setns is refused"
    ),
    probe!(
        "proc-sys-write",
        Processes,
        Attack::Shell(
            "cat /proc/sys/kernel/sysrq > /tmp/v; (cat /tmp/v > /proc/sys/kernel/sysrq) 2>/dev/null && echo ESCAPED || { (echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null && echo ESCAPED || echo CONTAINED; }"
        ),
        SH,
        "/proc/sys is read-only"
    ),
    probe!(
        "sysrq-trigger",
        Processes,
        Attack::Shell(
            "(echo h > /proc/sysrq-trigger) 2>/dev/null && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "/proc/sysrq-trigger cannot be written"
    ),
    probe!(
        "sys-write",
        Processes,
        Attack::Shell(
            "(echo 1 > /sys/kernel/mm/ksm/run) 2>/dev/null && echo ESCAPED || { ls /sys/class 2>/dev/null | grep -q . && echo ESCAPED || echo CONTAINED; }"
        ),
        SH,
        "/sys is not mounted"
    ),
    probe!(
        "kernel-syscalls",
        Processes,
        Attack::Shell(
            "python3 -c \"{PY_SYSCALL}calls={'bpf':(321,0,0,0),'keyctl':(250,0,-3,0),'io_uring_setup':(425,4,0),'perf_event_open':(298,0,0,-1,-1,0),'userfaultfd':(323,0),'kexec_load':(246,0,0,0,0),'init_module':(175,0,0,0),'finit_module':(313,-1,0,0),'reboot_cad_off':(169,0xfee1dead,672274793,0,0),'open_by_handle_at':(304,-1,0,0),'process_vm_readv':(310,1,0,0,0,0,0)}\nok=[n for n,a in calls.items() if sc(*a)[0]>=0]\nprint('ESCAPED',ok) if ok else print('CONTAINED')\""
        ),
        PY,
        "bpf, keyctl, io_uring, perf, userfaultfd, kexec, modules, reboot, open_by_handle_at, process_vm_readv refused"
    ),
    probe!(
        "x32-abi-bypass",
        Processes,
        Attack::Shell(
            "python3 -c \"{PY_SYSCALL}r,e=sc(0x40000000|165,0,0,0,0,0)\nr2,e2=sc(0x40000000|272,0x10000000)\nprint('ESCAPED' if r==0 or r2==0 else 'CONTAINED')\""
        ),
        PY,
        "x32-ABI numbers do not bypass the filter"
    ),
    probe!(
        "kill-guest-init",
        Processes,
        Attack::Shell("kill -9 1 2>/dev/null; sleep 0.2; echo CONTAINED"),
        &["sleep"],
        "signals to PID 1 from inside are ignored (the session survives)"
    ),
    probe!(
        "orphan-zombies",
        Processes,
        Attack::Shell(
            "i=0; while [ $i -lt 50 ]; do (sleep 0 &); i=$((i+1)); done; sleep 0.5; z=$(cat /proc/[0-9]*/stat 2>/dev/null | grep -c ') Z '); [ \"$z\" -gt 0 ] && echo ESCAPED $z zombies || echo CONTAINED"
        ),
        &["sleep", "cat", "grep"],
        "orphans re-parented to PID 1 are reaped, not left to fill the process table"
    ),
    // ---- network ----
    probe!(
        "tcp-host-loopback",
        Network,
        Attack::Shell(
            "python3 -c \"import socket\ntry:\n  s=socket.create_connection(('127.0.0.1',{TCP_PORT}),timeout=3);print('ESCAPED',s.recv(64))\nexcept OSError: print('CONTAINED')\""
        ),
        PY,
        "a server on the host's loopback is unreachable"
    ),
    probe!(
        "dev-tcp-host-loopback",
        Network,
        Attack::Shell(
            "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{TCP_PORT}' 2>/dev/null && echo ESCAPED || echo CONTAINED"
        ),
        &["bash"],
        "bash /dev/tcp to the host's loopback fails"
    ),
    probe!(
        "tcp-host-address",
        Network,
        Attack::Shell(
            "python3 -c \"import socket\ntry:\n  s=socket.create_connection(('{HOST_IP}',{TCP_PORT}),timeout=3);print('ESCAPED',s.recv(64))\nexcept OSError: print('CONTAINED')\""
        ),
        PY,
        "the host's own address is unreachable"
    ),
    probe!(
        "tcp-internet",
        Network,
        Attack::Shell(
            "python3 -c \"import socket\nok=[]\nfor a in [('1.1.1.1',80),('169.254.169.254',80),('[2606:4700:4700::1111]',80)]:\n  try: socket.create_connection((a[0].strip('[]'),a[1]),timeout=3);ok.append(a)\n  except OSError: pass\nprint('ESCAPED',ok) if ok else print('CONTAINED')\""
        ),
        PY,
        "no route to the internet or the metadata endpoint"
    ),
    probe!(
        "udp-host-loopback",
        Network,
        Attack::Shell(
            "python3 -c \"import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(2)\ntry:\n  s.sendto(b'ping',('127.0.0.1',{UDP_PORT}));print('ESCAPED',s.recv(64))\nexcept OSError: print('CONTAINED')\""
        ),
        PY,
        "a UDP service on the host's loopback does not answer"
    ),
    probe!(
        "udp-dns-out",
        Network,
        Attack::Shell(
            "python3 -c \"import socket\nq=bytes.fromhex('abcd01000001000000000000076578616d706c6503636f6d0000010001')\ngot=[]\nfor a in [('127.0.0.1',53),('8.8.8.8',53),('{HOST_IP}',53)]:\n  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(2)\n  try: s.sendto(q,a);got.append(s.recv(512))\n  except OSError: pass\nprint('ESCAPED',got) if got else print('CONTAINED')\""
        ),
        PY,
        "DNS queries get no answer"
    ),
    probe!(
        "dns-resolve",
        Network,
        Attack::Shell("getent hosts example.com >/dev/null 2>&1 && echo ESCAPED || echo CONTAINED"),
        &["getent"],
        "names outside resolve to nothing"
    ),
    probe!(
        "raw-socket",
        Network,
        Attack::Shell(
            "python3 -c \"import socket\ntry:\n  socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_ICMP);print('ESCAPED')\nexcept OSError: print('CONTAINED')\""
        ),
        PY,
        "raw sockets are refused"
    ),
    probe!(
        "packet-and-netlink-sockets",
        Network,
        Attack::Shell(
            "python3 -c \"import socket\nok=[]\nfor fam,typ in [(17,socket.SOCK_RAW),(16,socket.SOCK_RAW),(40,socket.SOCK_STREAM)]:\n  try: socket.socket(fam,typ);ok.append(fam)\n  except OSError: pass\nprint('ESCAPED',ok) if ok else print('CONTAINED')\""
        ),
        PY,
        "packet, netlink and vsock sockets are refused"
    ),
    probe!(
        "only-loopback-interface",
        Network,
        Attack::Shell(
            "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | grep -vx lo | grep -q . && echo ESCAPED || { grep -q '00000000' /proc/net/route && echo ESCAPED || echo CONTAINED; }"
        ),
        &["tail", "cut", "tr"],
        "lo is the only interface and there is no default route"
    ),
    probe!(
        "host-unix-socket-path",
        Network,
        Attack::Shell(
            "python3 -c \"import socket\ns=socket.socket(socket.AF_UNIX)\ntry:\n  s.connect('{UNIX_SOCK}');print('ESCAPED')\nexcept OSError: print('CONTAINED')\""
        ),
        PY,
        "a host unix socket outside the grants is unreachable"
    ),
    probe!(
        "host-abstract-socket",
        Network,
        Attack::Shell(
            "python3 -c \"import socket\ns=socket.socket(socket.AF_UNIX)\ntry:\n  s.connect(b'\\\\0{ABSTRACT}');print('ESCAPED')\nexcept OSError: print('CONTAINED')\""
        ),
        PY,
        "the host's abstract unix sockets are unreachable (per network namespace)"
    ),
    probe!(
        "well-known-host-sockets",
        Network,
        Attack::Shell(
            "python3 -c \"import socket,glob\nok=[]\nfor p in ['/var/run/docker.sock','/run/docker.sock','/run/dbus/system_bus_socket','/var/run/dbus/system_bus_socket','/tmp/.X11-unix/X0','/run/user/0/bus','/run/systemd/private']+glob.glob('/tmp/ssh-*/agent.*'):\n  s=socket.socket(socket.AF_UNIX)\n  try: s.connect(p);ok.append(p)\n  except OSError: pass\nprint('ESCAPED',ok) if ok else print('CONTAINED')\""
        ),
        PY,
        "docker, D-Bus, X11, systemd and agent sockets are absent"
    ),
    probe!(
        "egress-proxy-refuses",
        Network,
        Attack::Shell(
            "python3 -c \"import socket,os\nassert os.environ.get('HTTP_PROXY')=='http://127.0.0.1:3128'\ns=socket.create_connection(('127.0.0.1',3128),timeout=5);s.settimeout(5)\ns.sendall(b'CONNECT example.com:443 HTTP/1.1\\r\\nHost: example.com\\r\\n\\r\\n')\ntry: d=s.recv(64)\nexcept OSError: d=b''\nprint('ESCAPED',d) if d else print('CONTAINED')\""
        ),
        PY,
        "the egress listener exists but the host refuses the tunnel"
    ),
    // ---- credentials ----
    probe!(
        "host-env-absent",
        Credentials,
        Attack::Shell(
            "env | grep -Eq 'ANTHROPIC_API_KEY|AWS_SECRET_ACCESS_KEY|SSH_AUTH_SOCK|{SECRET}' && echo ESCAPED || echo CONTAINED"
        ),
        &["env", "grep"],
        "no host variable reaches a command"
    ),
    probe!(
        "host-env-in-proc",
        Credentials,
        Attack::Shell(
            "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -Eq 'ANTHROPIC_API_KEY|AWS_SECRET_ACCESS_KEY|SSH_AUTH_SOCK|{SECRET}' && echo ESCAPED || echo CONTAINED"
        ),
        &["tr", "grep"],
        "no process in the jail carries a host secret"
    ),
    probe!(
        "keyring",
        Credentials,
        Attack::Shell(
            "python3 -c \"{PY_SYSCALL}r,e=sc(250,0,-3,0)\nr2,e2=sc(250,0,-4,0)\nk=open('/proc/keys').read() if os.path.exists('/proc/keys') else ''\nprint('ESCAPED' if r>=0 or r2>=0 or k.strip() else 'CONTAINED')\""
        ),
        PY,
        "no kernel keyring is reachable"
    ),
    probe!(
        "agent-sockets",
        Credentials,
        Attack::Shell(
            "ls -d /tmp/ssh-* /run/user /tmp/gpg-* {HOST_HOME}/.gnupg 2>/dev/null | grep -q . && echo ESCAPED || { test -n \"$SSH_AUTH_SOCK$GPG_AGENT_INFO\" && echo ESCAPED || echo CONTAINED; }"
        ),
        SH,
        "no SSH or GPG agent socket is visible"
    ),
    // ---- resources ----
    probe!(
        "fork-bomb",
        Resources,
        // The reporting shell must not need a fork while the bomb holds
        // every process slot, or it dies with "Cannot fork" and the probe
        // cannot tell: `sleep` is forked before the bomb, the bomb starts
        // in one subshell (dash forks each part of a pipeline itself, so
        // `bomb | bomb &` here would need a second fork mid-bomb), and the
        // wait is a builtin.
        Attack::Shell(
            "exec 2>/dev/null; sleep 4 & s=$!; bomb() { bomb | bomb & }; (bomb) & wait $s; echo CONTAINED"
        ),
        &["sleep"],
        8_000,
        "a fork bomb hits the process limit; the session survives"
    ),
    probe!(
        "thread-bomb",
        Resources,
        Attack::Shell(
            "python3 -c \"import threading,time\nn=0\ntry:\n  while n<100000:\n    threading.Thread(target=time.sleep,args=(30,),daemon=True).start();n+=1\n  print('ESCAPED',n)\nexcept RuntimeError: print('CONTAINED',n)\n\" 2>/dev/null; true"
        ),
        PY,
        20_000,
        "thread creation stops at the process limit"
    ),
    probe!(
        "memory-bomb",
        Resources,
        Attack::Shell(
            "python3 -c \"a=[]\ntry:\n  while len(a)<4096: a.append(bytearray(16<<20))\n  print('ESCAPED',len(a))\nexcept MemoryError: print('CONTAINED',len(a))\""
        ),
        PY,
        60_000,
        "a growing process gets ENOMEM at the memory limit"
    ),
    probe!(
        "huge-allocation",
        Resources,
        Attack::Shell(
            "python3 -c \"\ntry: b=bytearray(64<<30);print('ESCAPED')\nexcept MemoryError: print('CONTAINED')\""
        ),
        PY,
        "a 64 GiB allocation fails"
    ),
    probe!(
        "fill-tmp",
        Resources,
        Attack::Shell(
            "head -c $(({TMP_MB}+64))M /dev/zero > /tmp/fill 2>/dev/null; s=$(stat -c %s /tmp/fill); rm -f /tmp/fill; test $s -le $(({TMP_MB}*1048576)) && echo CONTAINED || echo ESCAPED"
        ),
        &["head", "stat", "rm"],
        60_000,
        "/tmp stops at its size cap"
    ),
    probe!(
        "fill-shm",
        Resources,
        Attack::Shell(
            "head -c $(({TMP_MB}+64))M /dev/zero > /dev/shm/fill 2>/dev/null; s=$(stat -c %s /dev/shm/fill); rm -f /dev/shm/fill; test $s -le $(({TMP_MB}*1048576)) && echo CONTAINED || echo ESCAPED"
        ),
        &["head", "stat", "rm"],
        60_000,
        "/dev/shm stops at its size cap"
    ),
    probe!(
        "fill-workspace-file",
        Resources,
        Attack::Shell(
            "sh -c 'head -c $(({FSIZE_MB}+64))M /dev/zero > /workspace/fill' 2>/dev/null; s=$(stat -c %s /workspace/fill); rm -f /workspace/fill; test $s -le $(({FSIZE_MB}*1048576)) && echo CONTAINED || echo ESCAPED"
        ),
        &["head", "stat", "rm"],
        60_000,
        "one file in /workspace stops at the file-size limit"
    ),
    probe!(
        "open-files",
        Resources,
        Attack::Shell(
            "python3 -c \"import os\nfds=[]\ntry:\n  while len(fds)<1000000: fds.append(os.open('/dev/null',os.O_RDONLY))\n  print('ESCAPED')\nexcept OSError: print('CONTAINED',len(fds))\""
        ),
        PY,
        "open files stop at the descriptor limit"
    ),
    probe!(
        "stdout-flood",
        Resources,
        Attack::Flood("head -c 10G /dev/zero"),
        &["head"],
        120_000,
        "10 GB on stdout is capped; the request ends"
    ),
    probe!(
        "cpu-spin-timeout",
        Resources,
        Attack::Shell("echo CONTAINED; while :; do :; done"),
        &["sh"],
        2_000,
        "a spinning command is killed at its timeout"
    ),
];

/// The backend a plan of probes is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The namespace jail, which [`PROBES`] is written for.
    Jail,
    /// A QEMU micro-VM: root inside owns a kernel of its own, and the
    /// boundary is the hypervisor.
    Vm,
}

/// How one probe of [`PROBES`] runs on a backend its expectation does not
/// fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adaptation {
    /// Run this probe instead (same name): the same attack, judged by what
    /// containment means on that backend.
    Replace(Probe),
    /// The attack is aimed at the jail's own kernel interface; on this
    /// backend it only reaches a kernel that is itself inside the boundary.
    NotApplicable,
}

/// One adaptation of a probe to a backend, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendRule {
    /// The probe's name in [`PROBES`].
    pub probe: &'static str,
    /// The backend it applies to.
    pub backend: Backend,
    /// What runs instead.
    pub adaptation: Adaptation,
    /// Why.
    pub why: &'static str,
}

const VM_OWN_KERNEL: &str = "inside a VM the command is root of a kernel of its own (capabilities, namespaces, mount, ptrace, /proc/sys, /sys, keyrings, raw sockets all act on the guest kernel); the boundary is QEMU, and the host-side checks still run";

macro_rules! vm_na {
    ($name:expr) => {
        BackendRule {
            probe: $name,
            backend: Backend::Vm,
            adaptation: Adaptation::NotApplicable,
            why: VM_OWN_KERNEL,
        }
    };
}

macro_rules! vm_replace {
    ($why:expr, $name:expr, $cat:ident, $attack:expr, $req:expr, $expected:expr) => {
        BackendRule {
            probe: $name,
            backend: Backend::Vm,
            adaptation: Adaptation::Replace(probe!($name, $cat, $attack, $req, $expected)),
            why: $why,
        }
    };
}

/// Where a probe of [`PROBES`] expects something only the jail provides,
/// what runs instead on another backend. Probes not listed run unchanged.
pub const ADAPTATIONS: &[BackendRule] = &[
    vm_replace!(
        "the VM's /root is the image's own home; what matters is that the host's home (the fixture's) is absent",
        "read-host-home",
        Files,
        Attack::Shell(
            "ls -A {FAKE_HOME} 2>/dev/null | grep -q . && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "the host's home directory does not exist inside"
    ),
    vm_replace!(
        "the VM's /etc/shadow is the image's own; it must hold no usable password",
        "read-etc-shadow",
        Files,
        Attack::Shell(
            "grep -Eq '^[^:]+:[^*!:]' /etc/shadow 2>/dev/null && echo ESCAPED || { grep -q {SECRET} /etc/shadow /etc/sudoers 2>/dev/null && echo ESCAPED || echo CONTAINED; }"
        ),
        SH,
        "the image's shadow file has no usable password and is not the host's"
    ),
    vm_replace!(
        "the image's /etc/passwd lists Debian's system users (daemon, …), not the host's; no human account may be there",
        "etc-passwd-is-generated",
        Files,
        Attack::Shell("grep -q ':/home/' /etc/passwd && echo ESCAPED || echo CONTAINED"),
        SH,
        "/etc/passwd lists no host user"
    ),
    vm_replace!(
        "the VM's init keeps /run/cubicle open; every descriptor must still point inside the VM's tree",
        "proc-fds-point-only-inside",
        Files,
        Attack::Shell(
            "python3 -c \"import os,glob\nbad=[]\nfor f in glob.glob('/proc/[0-9]*/fd/*')+glob.glob('/proc/[0-9]*/cwd'):\n  try: t=os.readlink(f)\n  except OSError: continue\n  if t.startswith('/') and not t.startswith(('/workspace','/dev','/tmp','/mnt','/run/cubicle','/proc','/usr','/sys')) and t!='/': bad.append((f,t))\n  if '{SECRET_DIR}' in t: bad.append((f,t))\nprint('ESCAPED',bad) if bad else print('CONTAINED')\""
        ),
        PY,
        "no open descriptor or cwd refers to a host path"
    ),
    vm_replace!(
        "the VM's /root is the image's own; the op must not list the host's home (the fixture's)",
        "list-host-home-op",
        Files,
        Attack::ListDir("{FAKE_HOME}"),
        &[],
        "list_dir of the host's home fails"
    ),
    vm_replace!(
        "writes outside the shares go to the VM's RAM overlay over the read-only erofs image; the host's / is checked untouched",
        "write-root",
        Files,
        Attack::Shell(
            "touch /pwned-{UNIQUE} 2>/dev/null; grep -q '^overlay / overlay ' /proc/mounts && ! grep -Eq ' / (9p|virtiofs|ext4|xfs|btrfs) ' /proc/mounts && echo CONTAINED || echo ESCAPED"
        ),
        &["touch", "grep"],
        "/ is a RAM overlay over the read-only image"
    ),
    vm_replace!(
        "as write-root: /usr is part of the RAM overlay",
        "write-usr",
        Files,
        Attack::Shell(
            "touch /usr/pwned-{UNIQUE} 2>/dev/null; grep -q '^overlay / overlay' /proc/mounts && ! grep -q ' /usr ' /proc/mounts && echo CONTAINED || echo ESCAPED"
        ),
        &["touch", "grep"],
        "/usr is in the RAM overlay"
    ),
    vm_replace!(
        "as write-root: /etc is part of the RAM overlay",
        "write-etc",
        Files,
        Attack::Shell(
            "touch /etc/pwned-{UNIQUE} 2>/dev/null; grep -q '^overlay / overlay' /proc/mounts && ! grep -q ' /etc ' /proc/mounts && echo CONTAINED || echo ESCAPED"
        ),
        &["touch", "grep"],
        "/etc is in the RAM overlay"
    ),
    vm_replace!(
        "write_file outside the shares lands in the RAM overlay; it must not reach a share",
        "write-op-usr",
        Files,
        Attack::Shell(
            "grep -E ' /usr | /usr/' /proc/mounts | grep -q 9p && echo ESCAPED || echo CONTAINED"
        ),
        &["grep"],
        "/usr is not a host share"
    ),
    vm_replace!(
        "the VM's only disk is the image, attached read-only by QEMU; writing it must fail",
        "block-devices",
        Files,
        Attack::Shell(
            "python3 -c \"import os\ntry:\n  fd=os.open('/dev/vda',os.O_WRONLY);os.write(fd,b'x'*512);os.fsync(fd);print('ESCAPED')\nexcept OSError: print('CONTAINED')\"; ls /dev | grep -Eq '^(vd[b-z]|sd|nvme|xvd)' && echo ESCAPED"
        ),
        PY,
        "the only disk is the read-only image"
    ),
    vm_na!("mknod-device"),
    vm_replace!(
        "the VM has its own kernel threads (50+ entries); only the host's marker process must be absent",
        "see-host-processes",
        Processes,
        Attack::Shell(
            "python3 -c \"import glob\nargs=[]\nfor f in glob.glob('/proc/[0-9]*/cmdline'):\n  try: args.append(open(f,'rb').read().split(b'\\\\0'))\n  except OSError: pass\nhost=[a for a in args if len(a)>1 and a[0].endswith(b'sleep') and a[1]==b'{SLEEP_MARKER}']\nprint('ESCAPED' if host else 'CONTAINED', len(args))\""
        ),
        PY,
        "no host process is visible"
    ),
    vm_na!("ptrace-attach"),
    vm_na!("ptrace-traceme"),
    vm_na!("no-capabilities"),
    vm_na!("setuid-binary"),
    vm_na!("mount-tmpfs"),
    vm_na!("unshare-user"),
    vm_na!("clone-newuser"),
    vm_na!("setns-host"),
    vm_na!("proc-sys-write"),
    vm_na!("sysrq-trigger"),
    vm_na!("sys-write"),
    vm_na!("kernel-syscalls"),
    vm_na!("keyring"),
    vm_replace!(
        "raw and packet sockets open on the guest kernel, but the VM has no network device: a raw ICMP echo to the host gets no answer",
        "raw-socket",
        Network,
        Attack::Shell(
            "python3 -c \"import socket,struct\ns=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_ICMP);s.settimeout(2)\np=struct.pack('!BBHHH',8,0,0xf7fe,1,0)\ngot=[]\nfor a in ['{HOST_IP}','10.0.2.2']:\n  try: s.sendto(p,(a,0))\n  except OSError: pass\ntry:\n  while True:\n    d,f=s.recvfrom(128)\n    if f[0]!='127.0.0.1': got.append(f)\nexcept OSError: pass\nprint('ESCAPED',got) if got else print('CONTAINED')\""
        ),
        PY,
        "no packet leaves the VM"
    ),
    vm_replace!(
        "packet and netlink sockets open on the guest kernel; the VM has no interface but lo to send on",
        "packet-and-netlink-sockets",
        Network,
        Attack::Shell(
            "ls /sys/class/net | grep -vx lo | grep -q . && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "no network interface but lo"
    ),
];

/// Attacks only the VM has a surface for: its hypervisor's devices, the
/// host's addresses as seen from a guest, and the 9p shares.
pub const VM_PROBES: &[Probe] = &[
    probe!(
        "vm-no-nic",
        Network,
        Attack::Shell(
            "ls /sys/class/net | grep -vx lo | grep -q . && echo ESCAPED || { grep -l 0001 /sys/bus/virtio/devices/*/device 2>/dev/null | grep -q . && echo ESCAPED || echo CONTAINED; }"
        ),
        SH,
        "the VM has no network device (no virtio-net, `-nic none`)"
    ),
    probe!(
        "vm-host-loopback-and-gateways",
        Network,
        Attack::Shell(
            "python3 -c \"import socket\nok=[]\nfor a in [('127.0.0.1',{TCP_PORT}),('{HOST_IP}',{TCP_PORT}),('10.0.2.2',{TCP_PORT}),('10.0.2.2',22),('10.0.2.3',53),('192.168.122.1',{TCP_PORT}),('172.17.0.1',{TCP_PORT})]:\n  try: s=socket.create_connection(a,timeout=2);ok.append((a,s.recv(64)))\n  except OSError: pass\nprint('ESCAPED',ok) if ok else print('CONTAINED')\""
        ),
        PY,
        "no host address (loopback, own address, user-net gateway, bridges) answers"
    ),
    probe!(
        "vm-only-virtio-devices",
        Processes,
        Attack::Shell(
            "for d in /sys/bus/virtio/devices/*/device; do cat $d; done | sort -u | grep -vxE '0x0002|0x0003|0x0005|0x0009' | grep -q . && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "QEMU gives the VM only a block disk, the serial port, the memory balloon (free page reporting) and 9p shares: no network device"
    ),
    probe!(
        "vm-9p-symlink-readlink-only",
        Files,
        Attack::Shell(
            "t=$(readlink /mnt/ro/escape-link); cat /mnt/ro/escape-link /mnt/ro/rel-link \"$t\" 2>/dev/null | grep -q {SECRET} && echo ESCAPED || echo CONTAINED"
        ),
        SH,
        "a symlink in a 9p share is resolved by the guest, in the guest's tree"
    ),
    probe!(
        "vm-9p-symlink-made-in-rw-share",
        Files,
        Attack::Shell(
            "ln -sfn {SECRET_DIR} /mnt/rw/dirlink && ln -sf {SECRET_PATH} /mnt/rw/filelink; cat /mnt/rw/filelink /mnt/rw/dirlink/secret.txt 2>/dev/null | grep -q {SECRET} && echo ESCAPED || echo CONTAINED"
        ),
        &["ln", "cat", "grep"],
        "a symlink the guest makes in a writable share does not lead to the host"
    ),
    probe!(
        "vm-9p-symlink-read-op",
        Files,
        Attack::ReadFile("/mnt/rw/dirlink/secret.txt"),
        &[],
        "read_file through a symlink made in a writable share fails"
    ),
    probe!(
        "vm-9p-dotdot",
        Files,
        Attack::Shell(
            "test -e /mnt/ro/../secret -o -e /mnt/../secret -o -e /mnt/rw/../../secret && echo ESCAPED || { cat /mnt/ro/../secret/secret.txt /mnt/rw/../../secret/secret.txt 2>/dev/null | grep -q {SECRET} && echo ESCAPED || echo CONTAINED; }"
        ),
        SH,
        "`..` from a share's root stays in the guest's /mnt"
    ),
    probe!(
        "vm-9p-mount-other-tag",
        Files,
        Attack::Shell(
            "mkdir -p /tmp/9 && mount -t 9p -o rw,trans=virtio,version=9p2000.L g0 /tmp/9 2>/dev/null; (echo PWNED > /tmp/9/data.txt) 2>/dev/null; touch /tmp/9/new 2>/dev/null; ls /tmp/9/.. 2>/dev/null | grep -q secret && echo ESCAPED; umount /tmp/9 2>/dev/null; grep -q original /mnt/ro/data.txt && test ! -e /mnt/ro/new && echo CONTAINED || echo ESCAPED"
        ),
        &["mount", "mkdir", "touch"],
        "mounting the read-only share again read-write still cannot write (QEMU exports it read-only)"
    ),
];

/// One probe to run on a backend, and why it differs from [`PROBES`], if it
/// does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// The probe to run.
    pub probe: Probe,
    /// Why it was adapted for the backend, when it was.
    pub adapted: Option<&'static str>,
}

/// The probes to run on `backend`, in scorecard order ([`PROBES`] with its
/// adaptations, then the backend's own), and the probes that do not apply,
/// with the reason.
pub fn plan(backend: Backend) -> (Vec<Planned>, Vec<(&'static str, &'static str)>) {
    let mut run = Vec::new();
    let mut not_applicable = Vec::new();
    for p in PROBES {
        match ADAPTATIONS
            .iter()
            .find(|r| r.backend == backend && r.probe == p.name)
        {
            None => run.push(Planned {
                probe: *p,
                adapted: None,
            }),
            Some(r) => match r.adaptation {
                Adaptation::Replace(q) => run.push(Planned {
                    probe: q,
                    adapted: Some(r.why),
                }),
                Adaptation::NotApplicable => not_applicable.push((r.probe, r.why)),
            },
        }
    }
    if backend == Backend::Vm {
        // The VM's own probes go before the resource attacks, which are
        // last in PROBES.
        let first_resource = run
            .iter()
            .position(|p| p.probe.category == Category::Resources)
            .unwrap_or(run.len());
        run.splice(
            first_resource..first_resource,
            VM_PROBES.iter().map(|p| Planned {
                probe: *p,
                adapted: None,
            }),
        );
    }
    (run, not_applicable)
}

/// Host-side things the probes aim at: a secret file outside the grants, a
/// planted symlink and hardlink in a read-only grant, loopback servers, a
/// unix socket, an abstract socket and a host process. Dropping it stops the
/// servers and the process.
#[derive(Debug)]
pub struct Fixtures {
    base: PathBuf,
    vars: BTreeMap<&'static str, String>,
    stop: Arc<AtomicBool>,
    sleeper: Option<std::process::Child>,
    _abstract: UnixListener,
    _unix: UnixListener,
}

impl Fixtures {
    /// Creates the fixtures under `base` (an empty directory the caller
    /// owns). `limits` gives the sizes resource probes aim past.
    pub fn create(base: &Path, limits: &super::Limits) -> std::io::Result<Self> {
        let unique = format!("{}{}", std::process::id(), fastish_random());
        let secret = format!("TOPSECRET{unique}");
        let secret_dir = base.join("secret");
        std::fs::create_dir_all(&secret_dir)?;
        let secret_path = secret_dir.join("secret.txt");
        std::fs::write(&secret_path, &secret)?;
        std::fs::write(
            secret_dir.join("hardlinked.txt"),
            format!("original {secret}\n"),
        )?;
        let fake_home = base.join("home");
        std::fs::create_dir_all(fake_home.join(".ssh"))?;
        std::fs::write(fake_home.join(".ssh/id_ed25519"), &secret)?;
        let ro = base.join("ro");
        let rw = base.join("rw");
        std::fs::create_dir_all(&ro)?;
        std::fs::create_dir_all(&rw)?;
        std::fs::write(ro.join("data.txt"), "original\n")?;
        std::os::unix::fs::symlink(&secret_path, ro.join("escape-link"))?;
        std::os::unix::fs::symlink("../secret/secret.txt", ro.join("rel-link"))?;
        std::fs::hard_link(secret_dir.join("hardlinked.txt"), ro.join("hard-link"))?;

        let stop = Arc::new(AtomicBool::new(false));
        let tcp = TcpListener::bind("0.0.0.0:0")?;
        let tcp_port = tcp.local_addr()?.port();
        tcp.set_nonblocking(true)?;
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let udp_port = udp.local_addr()?.port();
        udp.set_read_timeout(Some(Duration::from_millis(100)))?;
        {
            let stop = stop.clone();
            let secret = secret.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut s, _)) => {
                            let _ = s.write_all(secret.as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                    let mut buf = [0u8; 64];
                    if let Ok((_, from)) = udp.recv_from(&mut buf) {
                        let _ = udp.send_to(secret.as_bytes(), from);
                    }
                }
            });
        }
        let unix_path = secret_dir.join("host.sock");
        let unix = UnixListener::bind(&unix_path)?;
        let abstract_name = format!("cubicle-escape-{unique}");
        let abstract_sock = {
            use std::os::linux::net::SocketAddrExt as _;
            let addr =
                std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())?;
            UnixListener::bind_addr(&addr)?
        };
        let sleep_marker = format!("{}", 900_000 + fastish_random() % 99_999);
        let sleeper = std::process::Command::new("sleep")
            .arg(&sleep_marker)
            .stdin(std::process::Stdio::null())
            .spawn()?;
        let host_home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned());
        let host_user_line = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|p| {
                p.lines()
                    .find(|l| l.contains(":/home/") || l.starts_with("daemon:"))
                    .and_then(|l| l.split(':').next().map(str::to_owned))
            })
            .unwrap_or_else(|| "daemon".to_owned());
        let vars = BTreeMap::from([
            ("{SECRET}", secret),
            ("{SECRET_PATH}", path_str(&secret_path)),
            ("{SECRET_DIR}", path_str(&secret_dir)),
            ("{FAKE_HOME}", path_str(&fake_home)),
            ("{HOST_HOME}", host_home),
            ("{HOST_USER_LINE}", format!("'^{host_user_line}:'")),
            ("{HOST_PID}", sleeper.id().to_string()),
            ("{SLEEP_MARKER}", sleep_marker),
            ("{TCP_PORT}", tcp_port.to_string()),
            ("{UDP_PORT}", udp_port.to_string()),
            ("{HOST_IP}", host_ip()),
            ("{UNIX_SOCK}", path_str(&unix_path)),
            ("{ABSTRACT}", abstract_name),
            ("{UNIQUE}", unique),
            ("{TMP_MB}", (limits.tmp_bytes >> 20).to_string()),
            ("{FSIZE_MB}", (limits.file_size_bytes >> 20).to_string()),
            ("{PY_SYSCALL}", PY_SYSCALL.replace('"', "\\\"")),
        ]);
        Ok(Self {
            base: base.to_path_buf(),
            vars,
            stop,
            sleeper: Some(sleeper),
            _abstract: abstract_sock,
            _unix: unix,
        })
    }

    /// The grants the probes expect: `ro` (read-only) and `rw`.
    pub fn grants(&self) -> Vec<Grant> {
        vec![
            Grant {
                host_path: self.base.join("ro"),
                name: "ro".to_owned(),
                writable: false,
            },
            Grant {
                host_path: self.base.join("rw"),
                name: "rw".to_owned(),
                writable: true,
            },
        ]
    }

    /// Placeholder values.
    pub fn vars(&self) -> &BTreeMap<&'static str, String> {
        &self.vars
    }

    /// Fills a probe's placeholders.
    pub fn fill(&self, text: &str) -> String {
        let mut out = text.to_owned();
        // PY_SYSCALL first: it is itself text the other placeholders are not
        // in, and it contains no braces of ours.
        if let Some(py) = self.vars.get("{PY_SYSCALL}") {
            out = out.replace("{PY_SYSCALL}", py);
        }
        for (k, v) in &self.vars {
            out = out.replace(k, v);
        }
        out
    }

    /// Host-side evidence that the suite changed nothing it must not:
    /// returns one line per problem found.
    pub fn verify_host_untouched(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(s) = self.sleeper.as_mut()
            && !matches!(s.try_wait(), Ok(None))
        {
            problems.push("the host process the suite aimed at was killed".to_owned());
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        if read(self.base.join("ro/data.txt")) != "original\n" {
            problems.push("the read-only grant's data.txt changed".to_owned());
        }
        if read(self.base.join("secret/hardlinked.txt")).contains("PWNED") {
            problems.push("a host file was written through a planted hardlink".to_owned());
        }
        let unique = self.vars.get("{UNIQUE}").cloned().unwrap_or_default();
        for dir in ["/usr", "/usr/bin", "/etc", "/"] {
            if Path::new(dir).join(format!("pwned-{unique}")).exists() {
                problems.push(format!("a file appeared in the host's {dir}"));
            }
        }
        problems
    }
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(mut s) = self.sleeper.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// The verdict on one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The probe's name.
    pub name: &'static str,
    /// Its category.
    pub category: Category,
    /// What containment means.
    pub expected: &'static str,
    /// Whether the attack was contained.
    pub contained: bool,
    /// What was observed.
    pub detail: String,
}

/// Runs one probe against `computer` and judges it.
pub async fn run_probe(computer: &dyn Computer, fixtures: &Fixtures, probe: &Probe) -> Outcome {
    let (contained, detail) = judge(computer, fixtures, probe).await;
    Outcome {
        name: probe.name,
        category: probe.category,
        expected: probe.expected,
        contained,
        detail,
    }
}

async fn judge(computer: &dyn Computer, fixtures: &Fixtures, probe: &Probe) -> (bool, String) {
    let secret = fixtures.vars.get("{SECRET}").cloned().unwrap_or_default();
    if !probe.requires.is_empty() {
        let check = format!(
            "for t in {}; do command -v $t >/dev/null || echo \"missing: $t\"; done",
            probe.requires.join(" ")
        );
        let mut req = ExecRequest::shell(check);
        req.timeout_ms = Some(10_000);
        match computer.exec(req, None).await {
            Ok(out) if out.stdout.is_empty() => {}
            Ok(out) => {
                return (
                    false,
                    format!(
                        "inconclusive: {} inside the cubicle",
                        String::from_utf8_lossy(&out.stdout).trim()
                    ),
                );
            }
            Err(e) => return (false, format!("inconclusive: the tool check failed: {e}")),
        }
    }
    match probe.attack {
        Attack::Shell(script) => {
            let mut req = ExecRequest::shell(fixtures.fill(script));
            req.timeout_ms = Some(probe.timeout_ms);
            req.max_output_bytes = Some(64 * 1024);
            match computer.exec(req, None).await {
                Ok(out) => {
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let shown = format!(
                        "stdout: {} | stderr: {} | {:?}",
                        stdout.trim(),
                        stderr.trim().chars().take(300).collect::<String>(),
                        out.result
                    );
                    if stdout.contains("ESCAPED") || stdout.contains(&secret) {
                        (false, format!("escaped: {shown}"))
                    } else if stdout.contains("CONTAINED") {
                        (true, stdout.trim().chars().take(200).collect())
                    } else if probe.category == Category::Resources && out.result.timed_out {
                        (true, format!("killed at its timeout: {shown}"))
                    } else {
                        (false, format!("inconclusive: {shown}"))
                    }
                }
                Err(e) => (false, format!("inconclusive: the request failed: {e}")),
            }
        }
        Attack::ReadFile(path) => match computer.read_file(&fixtures.fill(path), 0, None).await {
            Ok((data, _)) if String::from_utf8_lossy(&data).contains(&secret) => {
                (false, "escaped: the secret was read".to_owned())
            }
            Ok((data, _)) => (true, format!("read {} harmless bytes", data.len())),
            Err(e) => (true, format!("refused: {e}")),
        },
        Attack::WriteFile(path) => {
            match computer
                .write_file(&fixtures.fill(path), b"PWNED\n".to_vec())
                .await
            {
                Ok(()) => (false, "escaped: the write succeeded".to_owned()),
                Err(e) => (true, format!("refused: {e}")),
            }
        }
        Attack::ListDir(path) => match computer.list_dir(&fixtures.fill(path)).await {
            Ok(entries) => (
                entries.is_empty(),
                format!("listed {} entries", entries.len()),
            ),
            Err(e) => (true, format!("refused: {e}")),
        },
        Attack::Flood(script) => {
            let mut req = ExecRequest::shell(fixtures.fill(script));
            req.timeout_ms = Some(probe.timeout_ms);
            req.max_output_bytes = Some(FLOOD_CAP);
            match computer.exec(req, None).await {
                Ok(out) => {
                    let len = out.stdout.len() as u64;
                    let ok =
                        len <= FLOOD_CAP && (out.result.output_truncated || out.result.timed_out);
                    (ok, format!("collected {len} bytes; {:?}", out.result))
                }
                Err(e) => (false, format!("the request failed: {e}")),
            }
        }
    }
}

/// Runs `echo ok` until it works or `patience` passes: after a resource
/// attack, the session must still serve commands.
pub async fn session_still_usable(
    computer: &dyn Computer,
    patience: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let mut req = ExecRequest::shell("echo ok");
        req.timeout_ms = Some(5_000);
        match computer.exec(req, None).await {
            Ok(out) if out.stdout == b"ok\n" => return Ok(()),
            Ok(out) => last = format!("{:?} {}", out.result, String::from_utf8_lossy(&out.stderr)),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("the session no longer runs `echo ok`: {last}"))
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// The host's address on its default route, or a documentation address
/// when it has none (then the probe still checks that nothing answers).
fn host_ip() -> String {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "192.0.2.1".to_owned())
}

/// A number unlikely to repeat between runs (no crypto needed: names of
/// fixtures only).
fn fastish_random() -> u64 {
    let mut buf = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    u64::from_le_bytes(buf) % 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names_are_unique_and_there_are_enough() {
        let mut names: Vec<_> = PROBES.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROBES.len());
        assert!(PROBES.len() >= 40, "{} probes", PROBES.len());
        for r in ADAPTATIONS {
            assert!(
                PROBES.iter().any(|p| p.name == r.probe),
                "adaptation of unknown probe {}",
                r.probe
            );
            if let Adaptation::Replace(q) = r.adaptation {
                assert_eq!(q.name, r.probe);
            }
        }
        let (vm, na) = plan(Backend::Vm);
        assert_eq!(vm.len() + na.len(), PROBES.len() + VM_PROBES.len());
        let mut all: Vec<_> = vm.iter().map(|p| p.probe.name).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), vm.len());
        assert_eq!(plan(Backend::Jail).0.len(), PROBES.len());
        for p in PROBES {
            if let Attack::Shell(s) = p.attack {
                assert!(s.contains("CONTAINED"), "{} never says CONTAINED", p.name);
            }
        }
    }
}
