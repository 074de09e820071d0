//! Step 3 of the jail: the file system the cubicle sees. A fresh tmpfs
//! becomes the root; onto it go read-only binds of the system directories
//! (the image's, or an allowlist of the host's), generated `/etc` files, a
//! fresh `/proc`, a minimal `/dev`, a tmpfs `/tmp`, the workspace, the grants
//! and the guest binary. Then `pivot_root` and the old root is detached, so
//! nothing else of the host is reachable by any path.
//!
//! Sources are opened (`O_PATH`) *before* the staging tmpfs is mounted and
//! bound through `/proc/self/fd/N`, so a source below the staging directory
//! (a workspace under `/tmp`, say) is still reachable.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{OpenOptionsExt as _, symlink};
use std::path::{Path, PathBuf};

use super::config::LaunchSpec;
use super::init::InitError;
use super::namespaces::errno_name;
use super::sys;

/// Where the new root is assembled before `pivot_root`. Mounting over it
/// hides the host's `/tmp` in the jail's mount namespace only.
const STAGING: &str = "/tmp";

/// Top-level host directories bound read-only when no image is used. Any
/// that is a symlink (usrmerge: `/bin -> usr/bin`) is recreated as one.
const HOST_SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib64", "lib32", "libx32"];

/// Entries of the host's `/etc` that programs need and that hold no
/// secrets. An entry ending in `*` matches by prefix.
const HOST_ETC_ALLOW: &[&str] = &[
    "ssl",
    "ca-certificates*",
    "alternatives",
    "ld.so.*",
    "nsswitch.conf",
    "localtime",
    "timezone",
    "mime.types",
    "mailcap",
    "fonts",
    "python3*",
    "perl",
    "protocols",
    "services",
    "gai.conf",
    "host.conf",
    "magic",
    "magic.mime",
    "inputrc",
    "bash.bashrc",
    "profile",
    "os-release",
    "debian_version",
    "java-*",
    "ImageMagick-*",
];

/// Top-level entries of an image rootfs that are never bound: the jail
/// provides its own, or they must stay empty.
const IMAGE_SKIP: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "tmp",
    "run",
    "home",
    "root",
    "mnt",
    "media",
    "workspace",
    "boot",
    "lost+found",
    ".cubicle",
];

/// Device nodes bound from the host's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// `/proc` entries made read-only (they control the whole machine, and the
/// jail's uid may be the host's root uid).
const PROC_READ_ONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];

/// `/proc` entries hidden behind `/dev/null` (kernel memory and keys).
const PROC_MASKED: &[&str] = &[
    "kcore",
    "keys",
    "key-users",
    "timer_list",
    "sched_debug",
    "kallsyms",
];

/// What a staged entry is made from.
enum Source {
    /// A directory or file bound from this opened path.
    Bind { fd: File, dir: bool },
    /// A symlink recreated with this target.
    Symlink(PathBuf),
}

/// Steps 3a–3h: builds the new root and pivots into it. Runs in the jail's
/// PID 1, after the namespaces exist, so that `/proc` is the new PID
/// namespace's.
pub fn build_root(spec: &LaunchSpec) -> Result<(), InitError> {
    // 3a: nothing we mount may propagate back to the host's namespace.
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .map_err(fail("make / private"))?;

    // Open every source while the host's tree is still visible.
    let system = system_entries(spec)?;
    let etc = match spec.rootfs {
        Some(_) => Vec::new(),
        None => etc_entries()?,
    };
    let devices = DEVICES
        .iter()
        .map(|d| Ok((*d, open_path(&Path::new("/dev").join(d))?)))
        .collect::<Result<Vec<_>, InitError>>()?;
    let workspace = open_path(&spec.workspace)?;
    check_dir(&workspace, &spec.workspace)?;
    let mut grants = Vec::new();
    for g in &spec.grants {
        if g.name.is_empty() || g.name.contains('/') || g.name == "." || g.name == ".." {
            return Err(InitError::new(format!("bad grant name `{}`", g.name)));
        }
        let fd = open_path(&g.host_path).map_err(|_| {
            InitError::new(format!(
                "cannot grant {}: no such folder — check the path exists",
                g.host_path.display()
            ))
        })?;
        check_dir(&fd, &g.host_path)?;
        grants.push((g, fd));
    }
    let mut skills = Vec::new();
    for s in &spec.skills {
        if !is_hidden_mount_path(&s.name) {
            return Err(InitError::new(format!(
                "bad skill or plugin folder `/mnt/{}`",
                s.name
            )));
        }
        let fd = open_path(&s.host_path)?;
        check_dir(&fd, &s.host_path)?;
        skills.push((s, fd));
    }
    let guest = spec.guest.as_deref().map(open_path).transpose()?;

    // 3b: the staging root, a tmpfs only the jail sees.
    let root = Path::new(STAGING);
    sys::mount(
        Some(Path::new("tmpfs")),
        root,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=0755,size=16m"),
    )
    .map_err(fail("mount the root tmpfs"))?;

    // 3c: system directories, read-only.
    for (name, source) in &system {
        place(root, Path::new(name), source, Bind::ReadOnly)?;
    }
    if spec.rootfs.is_none() {
        mkdir(&root.join("etc"))?;
        for (name, source) in &etc {
            place(root, &Path::new("etc").join(name), source, Bind::ReadOnly)?;
        }
        write_generated_etc(root)?;
        mkdir(&root.join("var"))?;
        symlink("/tmp", root.join("var/tmp")).map_err(io_fail("create /var/tmp"))?;
    }
    if spec.rootfs.is_some() {
        overlay_image_etc(root, &devices)?;
    }
    if !root.join("etc/mtab").exists() && root.join("etc").is_dir() {
        // Ignore failure: in an image /etc is a read-only bind.
        let _ = symlink("/proc/self/mounts", root.join("etc/mtab"));
    }

    // 3d: a fresh /proc of the new PID namespace, with the knobs that act on
    // the whole machine made read-only or hidden.
    mount_proc(root, &devices)?;

    // 3e: minimal /dev.
    mount_dev(root, &devices, spec.limits.tmp_bytes)?;

    // 3f: /tmp, size-capped.
    mkdir(&root.join("tmp"))?;
    sys::mount(
        Some(Path::new("tmpfs")),
        &root.join("tmp"),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&format!("mode=1777,size={}", spec.limits.tmp_bytes)),
    )
    .map_err(fail("mount /tmp"))?;

    // 3g: the workspace, the grants (read-only ones read-only even to root
    // inside: the flag is on the mount), and the guest binary.
    let ws = Source::Bind {
        fd: workspace,
        dir: true,
    };
    place(root, Path::new("workspace"), &ws, Bind::ReadWrite)?;
    mkdir(&root.join("mnt"))?;
    for (g, fd) in grants {
        let src = Source::Bind { fd, dir: true };
        let mode = if g.writable {
            Bind::ReadWrite
        } else {
            Bind::ReadOnly
        };
        place(root, &Path::new("mnt").join(&g.name), &src, mode)?;
    }
    // Skills and plugins are read-only: their scripts run inside, and
    // nothing in the cubicle may change the portable skill. Shallower paths
    // first, so that no folder is made inside a read-only mount.
    let mut skills = skills;
    skills.sort_by_key(|(s, _)| s.name.matches('/').count());
    for (s, fd) in skills {
        let src = Source::Bind { fd, dir: true };
        place(root, &Path::new("mnt").join(&s.name), &src, Bind::ReadOnly)?;
    }
    if let Some(fd) = guest {
        mkdir(&root.join(".cubicle"))?;
        let guest = Source::Bind { fd, dir: false };
        place(root, Path::new(".cubicle/guest"), &guest, Bind::ReadOnly)?;
    }

    // 3h: pivot_root with new root and put_old the same directory; the old
    // root ends up stacked on "/" and is detached, so no path leads to it.
    std::env::set_current_dir(root).map_err(io_fail("enter the new root"))?;
    sys::pivot_root(Path::new("."), Path::new(".")).map_err(fail("pivot_root"))?;
    sys::umount2(Path::new("."), libc::MNT_DETACH).map_err(fail("detach the old root"))?;
    std::env::set_current_dir("/").map_err(io_fail("chdir /"))?;
    // The root tmpfs itself becomes read-only: nothing may be created at /.
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )
    .map_err(fail("make / read-only"))?;
    Ok(())
}

/// How a bind is mounted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bind {
    ReadOnly,
    ReadWrite,
}

/// The image's top-level entries, or the host's system directories.
fn system_entries(spec: &LaunchSpec) -> Result<Vec<(String, Source)>, InitError> {
    let mut out = Vec::new();
    match &spec.rootfs {
        Some(rootfs) => {
            let entries = std::fs::read_dir(rootfs).map_err(|e| {
                InitError::new(format!(
                    "cannot read the image rootfs {}: {e} — rebuild it with `cubicle image build`",
                    rootfs.display()
                ))
            })?;
            for entry in entries {
                let entry = entry.map_err(io_fail("read the image rootfs"))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if IMAGE_SKIP.contains(&name.as_str()) {
                    continue;
                }
                if let Some(src) = source(&entry.path())? {
                    out.push((name, src));
                }
            }
        }
        None => {
            for name in HOST_SYSTEM_DIRS {
                if let Some(src) = source(&Path::new("/").join(name))? {
                    out.push(((*name).to_owned(), src));
                }
            }
        }
    }
    Ok(out)
}

/// The allowlisted entries of the host's `/etc`.
fn etc_entries() -> Result<Vec<(String, Source)>, InitError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir("/etc").map_err(io_fail("read /etc"))?;
    for entry in entries {
        let entry = entry.map_err(io_fail("read /etc"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let allowed = HOST_ETC_ALLOW
            .iter()
            .any(|pat| match pat.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == *pat,
            });
        if allowed && let Some(src) = source(&entry.path())? {
            out.push((name, src));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// How to recreate `path`: a symlink, or a bind of it. `None` when it does
/// not exist or is something else (a socket, a device).
fn source(path: &Path) -> Result<Option<Source>, InitError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(None);
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(path).map_err(io_fail("read a symlink"))?;
        return Ok(Some(Source::Symlink(target)));
    }
    if ft.is_dir() || ft.is_file() {
        return Ok(Some(Source::Bind {
            fd: open_path(path)?,
            dir: ft.is_dir(),
        }));
    }
    Ok(None)
}

/// Creates the mount point for `source` at `root/rel` and binds it.
fn place(root: &Path, rel: &Path, source: &Source, mode: Bind) -> Result<(), InitError> {
    let target = root.join(rel);
    match source {
        Source::Symlink(to) => symlink(to, &target).map_err(|e| {
            InitError::new(format!("cannot create the symlink {}: {e}", rel.display()))
        }),
        Source::Bind { fd, dir } => {
            if *dir {
                mkdir(&target)?;
            } else {
                File::create(&target)
                    .map_err(|e| InitError::new(format!("cannot create {}: {e}", rel.display())))?;
            }
            let extra = match mode {
                Bind::ReadOnly => libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                Bind::ReadWrite => libc::MS_NOSUID | libc::MS_NODEV,
            };
            bind_fd(fd, &target, extra).map_err(|e| {
                InitError::new(format!(
                    "cannot mount /{}: {}",
                    rel.display(),
                    errno_name(&e)
                ))
            })
        }
    }
}

/// Binds the file behind `fd` (non-recursively: submounts of a source are
/// not visible, so a read-only bind is read-only throughout) and remounts it
/// with `extra` flags. Flags the kernel locked on the source mount (it
/// belongs to a more privileged namespace) must be repeated in the remount,
/// or the kernel refuses it.
fn bind_fd(fd: &File, target: &Path, extra: libc::c_ulong) -> std::io::Result<()> {
    bind_path(&fd_path(fd), target, extra)
}

/// Binds the file behind `fd` with the flags of its source mount.
fn bind_plain(fd: &File, target: &Path) -> std::io::Result<()> {
    sys::mount(Some(&fd_path(fd)), target, None, libc::MS_BIND, None)
}

/// The path that names the file behind `fd`, as a mount source.
fn fd_path(fd: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn bind_path(src: &Path, target: &Path, extra: libc::c_ulong) -> std::io::Result<()> {
    sys::mount(Some(src), target, None, libc::MS_BIND, None)?;
    let locked = locked_flags(target)?;
    sys::mount(
        None,
        target,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | extra | locked,
        None,
    )
}

/// The per-mount flags of the mount at `path`, as `mount(2)` flags.
fn locked_flags(path: &Path) -> std::io::Result<libc::c_ulong> {
    let f = sys::statvfs_flags(path)?;
    let mut flags = 0;
    for (st, ms) in [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f & st != 0 {
            flags |= ms;
        }
    }
    Ok(flags)
}

fn mount_proc(root: &Path, devices: &[(&str, File)]) -> Result<(), InitError> {
    let proc = root.join("proc");
    mkdir(&proc)?;
    sys::mount(
        Some(Path::new("proc")),
        &proc,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .map_err(|e| {
        InitError::new(format!(
            "cannot mount /proc in the jail: {} — a host /proc with parts hidden by other \
             mounts (as in some containers) prevents it; see `cubicle doctor`",
            errno_name(&e)
        ))
    })?;
    for name in PROC_READ_ONLY {
        let p = proc.join(name);
        if p.exists() {
            bind_path(
                &p,
                &p,
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            )
            .map_err(|e| {
                InitError::new(format!(
                    "cannot make /proc/{name} read-only: {}",
                    errno_name(&e)
                ))
            })?;
        }
    }
    let null = dev_null(devices)?;
    for name in PROC_MASKED {
        let p = proc.join(name);
        if p.is_file() {
            // A plain bind: /dev/null discards writes whatever the flags.
            bind_plain(null, &p).map_err(|e| {
                InitError::new(format!("cannot hide /proc/{name}: {}", errno_name(&e)))
            })?;
        }
    }
    Ok(())
}

fn mount_dev(root: &Path, devices: &[(&str, File)], shm_bytes: u64) -> Result<(), InitError> {
    let dev = root.join("dev");
    mkdir(&dev)?;
    sys::mount(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )
    .map_err(fail("mount /dev"))?;
    for (name, fd) in devices {
        let target = dev.join(name);
        File::create(&target).map_err(io_fail("create a /dev node"))?;
        // Not nodev: the bind must reach the device. The host's device
        // nodes keep their own permissions. No remount to add `nosuid` and
        // `noexec`: neither means anything for a device node, which can
        // be neither executed nor setuid (and it saves two system calls a
        // node on every start).
        bind_plain(fd, &target)
            .map_err(|e| InitError::new(format!("cannot bind /dev/{name}: {}", errno_name(&e))))?;
    }
    let pts = dev.join("pts");
    mkdir(&pts)?;
    // A private devpts instance: terminals of the host are not in it. Some
    // kernels refuse it in a user namespace; terminals are a convenience, so
    // go on without.
    match sys::mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    ) {
        Ok(()) => symlink("pts/ptmx", dev.join("ptmx")).map_err(io_fail("create /dev/ptmx"))?,
        Err(e) => super::init::warn(format_args!("no /dev/pts: {}", errno_name(&e))),
    }
    let shm = dev.join("shm");
    mkdir(&shm)?;
    sys::mount(
        Some(Path::new("tmpfs")),
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&format!("mode=1777,size={shm_bytes}")),
    )
    .map_err(fail("mount /dev/shm"))?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(io_fail("create a /dev symlink"))?;
    }
    Ok(())
}

/// `/etc` files the jail generates instead of binding the host's: the
/// host's `passwd` and `group` name its users, `hosts` its network.
fn write_generated_etc(root: &Path) -> Result<(), InitError> {
    for (name, contents) in GENERATED_ETC {
        std::fs::write(root.join("etc").join(name), contents)
            .map_err(|e| InitError::new(format!("cannot write /etc/{name} in the jail: {e}")))?;
    }
    Ok(())
}

/// `/etc` files a jail on an image hides: the image's own are harmless
/// (system accounts, no passwords), but a cubicle shows none, whatever
/// its root.
const IMAGE_ETC_HIDDEN: &[&str] = &["shadow", "shadow-", "gshadow", "gshadow-", "sudoers"];

/// The generated `/etc` files over an image's own, and its password files
/// hidden, so that a jail's `/etc/passwd` is the same on either root: the
/// image's `/etc` is a read-only bind, so each generated file is written
/// to a staging spot of the root tmpfs, bound over the image's file, and
/// unlinked (the mount keeps it).
fn overlay_image_etc(root: &Path, devices: &[(&str, File)]) -> Result<(), InitError> {
    let etc = root.join("etc");
    if !etc.is_dir() {
        return Ok(());
    }
    let staging = root.join(".etc-generated");
    mkdir(&staging)?;
    for (name, contents) in GENERATED_ETC {
        let target = etc.join(name);
        if !target.is_file() {
            continue;
        }
        let generated = staging.join(name);
        std::fs::write(&generated, contents)
            .map_err(|e| InitError::new(format!("cannot write /etc/{name} in the jail: {e}")))?;
        sys::mount(Some(&generated), &target, None, libc::MS_BIND, None).map_err(|e| {
            InitError::new(format!(
                "cannot put the generated /etc/{name} over the image's: {}",
                errno_name(&e)
            ))
        })?;
        let _ = std::fs::remove_file(&generated);
    }
    let _ = std::fs::remove_dir(&staging);
    let null = dev_null(devices)?;
    for name in IMAGE_ETC_HIDDEN {
        let target = etc.join(name);
        if target.is_file() {
            bind_plain(null, &target).map_err(|e| {
                InitError::new(format!(
                    "cannot hide the image's /etc/{name}: {}",
                    errno_name(&e)
                ))
            })?;
        }
    }
    Ok(())
}

/// The `/etc` files every jail generates.
const GENERATED_ETC: [(&str, &str); 4] = [
    (
        "passwd",
        "root:x:0:0:cubicle:/workspace:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    ),
    ("group", "root:x:0:\nnogroup:x:65534:\n"),
    ("hostname", "cubicle\n"),
    (
        "hosts",
        "127.0.0.1\tlocalhost cubicle\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    ),
];

/// The host's `/dev/null`, opened with the other devices.
fn dev_null<'a>(devices: &'a [(&str, File)]) -> Result<&'a File, InitError> {
    devices
        .iter()
        .find(|(n, _)| *n == "null")
        .map(|(_, f)| f)
        .ok_or_else(|| InitError::new("the host has no /dev/null"))
}

fn open_path(path: &Path) -> Result<File, InitError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| InitError::new(format!("cannot open {}: {e}", path.display())))
}

fn check_dir(fd: &File, path: &Path) -> Result<(), InitError> {
    match fd.metadata() {
        Ok(m) if m.is_dir() => Ok(()),
        _ => Err(InitError::new(format!(
            "{} is not a folder",
            path.display()
        ))),
    }
}

/// A relative path of plain components whose first starts with a dot
/// (`.skills/pdf`): where skill and plugin folders go below `/mnt`, apart
/// from the grants, whose names never start with a dot.
fn is_hidden_mount_path(path: &str) -> bool {
    let mut parts = path.split('/');
    let first_hidden = parts
        .next()
        .is_some_and(|p| p.len() > 1 && p.starts_with('.') && p != "..");
    first_hidden
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\0'))
}

fn mkdir(path: &Path) -> Result<(), InitError> {
    std::fs::create_dir_all(path)
        .map_err(|e| InitError::new(format!("cannot create {}: {e}", path.display())))
}

fn fail(what: &'static str) -> impl Fn(std::io::Error) -> InitError {
    move |e| InitError::new(format!("cannot {what}: {}", errno_name(&e)))
}

fn io_fail(what: &'static str) -> impl Fn(std::io::Error) -> InitError {
    fail(what)
}

#[cfg(test)]
mod tests {
    use super::is_hidden_mount_path;

    #[test]
    fn skill_and_plugin_paths_stay_apart_from_grants() {
        for ok in [".skills/pdf", ".skills/plugin/skill", ".plugins/p"] {
            assert!(is_hidden_mount_path(ok), "{ok}");
        }
        for bad in [
            "",
            "grant",
            ".",
            "..",
            "../etc",
            ".skills/../../etc",
            ".skills//x",
            ".skills/x/",
            "/abs",
            ".skills/./x",
        ] {
            assert!(!is_hidden_mount_path(bad), "{bad}");
        }
    }
}
