//! The VM's initramfs: busybox, the kernel modules the VM needs (with their
//! dependencies, in load order) and [`INIT_SCRIPT`], packed as a `newc` cpio
//! archive that the kernel unpacks without any decompressor.
//!
//! The init script's kernel command-line parameters are the contract with
//! the `vm` backend:
//! - `cubicle.shares=TAG:PATH:ro|rw,…` — virtio-9p shares to mount;
//! - `cubicle.guest=PATH` — the guest program to run (default
//!   `/usr/local/bin/cubicle-guest`);
//! - `cubicle.overlay=SIZE` — the tmpfs that takes the session's writes;
//! - `cubicle.limits=PROCS:DATA_KIB:FILES:FSIZE_BLOCKS:TMP_KIB` — the
//!   session's resource limits: a `pids` cgroup of `PROCS`, `RLIMIT_DATA`,
//!   `RLIMIT_NOFILE` and `RLIMIT_FSIZE` (in 512-byte blocks) for the guest
//!   and its commands, and the size of `/tmp` and `/dev/shm`; the init
//!   prints [`LIMITS_LINE`] once they hold;
//! - `cubicle.probe=1` — print [`PROBE_LINE`] and power off (boot probes).
//!
//! It prints [`READY_LINE`] on the console just before starting the guest
//! and lines starting with [`ERROR_PREFIX`] when it cannot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::ImageError;

/// Console line printed when the guest is about to start.
pub const READY_LINE: &str = "cubicle-init: ready";
/// Console line printed, before [`READY_LINE`], once the init has applied
/// the `cubicle.limits=` the command line asked for. An image whose init
/// predates that parameter never prints it; the host then applies the
/// limits itself.
pub const LIMITS_LINE: &str = "cubicle-init: limits applied";
/// Console line printed by a `cubicle.probe=1` boot.
pub const PROBE_LINE: &str = "cubicle-init: probe ok";
/// Prefix of the init script's error lines on the console.
pub const ERROR_PREFIX: &str = "cubicle-init: error: ";

/// Modules the VM loads, before dependency resolution. `crc32c_generic` is
/// a soft dependency of `libcrc32c` (erofs), which `modinfo` does not list.
/// `virtio_balloon` reports the guest's free pages so that QEMU gives them
/// back to the host (free page reporting).
pub const WANTED_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "virtio_blk",
    "virtio_console",
    "virtio_balloon",
    "netfs",
    "fscache",
    "9pnet",
    "9pnet_virtio",
    "9p",
    "crc32c_generic",
    "erofs",
    "overlay",
];

/// PID 1 of the VM. Stage 1 (here, in the initramfs) loads the modules,
/// mounts the read-only root disk under a tmpfs overlay and the 9p shares,
/// then switches root to stage 2, which starts the guest on the
/// virtio-serial port named `cubicle` and powers off when it exits.
pub const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
B=/bin/busybox
# Applets by bare name run in a fork of this shell, without an exec: under
# TCG an exec costs tens of milliseconds, and stage 1 runs about forty.
export PATH=/bin
$B --install -s /bin
mkdir -p /proc /sys /dev /lower /upper /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "cubicle-init: error: $*" > /dev/console; sync; reboot -f; }
SHARES=; GUEST=/usr/local/bin/cubicle-guest; OVERLAY=50%; PROBE=; LIMITS=
read -r CMDLINE < /proc/cmdline
for arg in $CMDLINE; do
  case "$arg" in
    cubicle.shares=*) SHARES="${arg#cubicle.shares=}" ;;
    cubicle.guest=*) GUEST="${arg#cubicle.guest=}" ;;
    cubicle.overlay=*) OVERLAY="${arg#cubicle.overlay=}" ;;
    cubicle.limits=*) LIMITS="${arg#cubicle.limits=}" ;;
    cubicle.probe=1) PROBE=1 ;;
  esac
done
if [ -n "$PROBE" ]; then echo "cubicle-init: probe ok" > /dev/console; reboot -f; fi
PROCS=; DATA_K=; FILES=; FSIZE_B=; TMPSIZE=
if [ -n "$LIMITS" ]; then
  IFS=:; set -- $LIMITS; unset IFS
  [ $# -eq 5 ] || fail "bad cubicle.limits=$LIMITS"
  PROCS=$1; DATA_K=$2; FILES=$3; FSIZE_B=$4; TMPSIZE=",size=$5k"
fi
while read -r m; do
  insmod "/lib/modules/$m.ko" || fail "cannot load the kernel module $m"
done < /etc/cubicle-modules
# Report free memory to QEMU down to single pages, not just 2 MiB blocks:
# an idle guest's free memory is mostly smaller pieces.
echo 0 > /sys/module/page_reporting/parameters/page_reporting_order 2>/dev/null
hostname cubicle
ip link set lo up
i=0
while [ ! -b /dev/vda ]; do
  i=$((i+1)); [ $i -gt 1000 ] && fail "no root disk (/dev/vda)"; usleep 10000
done
mount -t erofs -o ro /dev/vda /lower || fail "cannot mount the root disk"
mount -t tmpfs -o "mode=0755,size=$OVERLAY" overlay-rw /upper || fail "cannot mount the overlay tmpfs"
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot || fail "cannot mount the overlay"
mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run /newroot/workspace /newroot/mnt
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
mount -t tmpfs -o "mode=1777$TMPSIZE" tmp /newroot/tmp
mount -t tmpfs -o mode=0755 run /newroot/run
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs -o "mode=1777$TMPSIZE" shm /newroot/dev/shm
IFS=,
for s in $SHARES; do
  tag="${s%%:*}"; rest="${s#*:}"; dir="${rest%:*}"; mode="${rest##*:}"
  mkdir -p "/newroot$dir"
  mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,$mode" "$tag" "/newroot$dir" || fail "cannot mount the share $tag at $dir"
done
unset IFS
PORT=
i=0
while [ -z "$PORT" ]; do
  for p in /newroot/sys/class/virtio-ports/*; do
    name=; read -r name < "$p/name" 2>/dev/null
    [ "$name" = cubicle ] && PORT="/dev/${p##*/}"
  done
  [ -n "$PORT" ] && break
  i=$((i+1)); [ $i -gt 1000 ] && fail "no virtio-serial port named cubicle"; usleep 10000
done
# The session's limits, before the guest starts, so that it and every
# command inherit them: this shell stays PID 1 across switch_root, its
# child the guest. A `pids` cgroup bounds the processes; rlimits the rest
# (ash counts -d in KiB and -f in 512-byte blocks). The guest's event loop
# runs at a low real-time priority its children do not inherit, so that on
# one emulated CPU a fork bomb cannot starve it past the heartbeat.
RT=
if [ -n "$LIMITS" ]; then
  CG=/newroot/sys/fs/cgroup
  mount -t cgroup2 cgroup2 $CG || fail "cannot mount the cgroup file system"
  echo +pids > $CG/cgroup.subtree_control || fail "cannot enable the pids controller"
  mkdir -p $CG/session
  echo "$PROCS" > $CG/session/pids.max || fail "cannot limit processes"
  echo $$ > $CG/session/cgroup.procs || fail "cannot enter the session cgroup"
  ulimit -d "$DATA_K" -n "$FILES" -f "$FSIZE_B" || fail "cannot set resource limits"
  [ -x /newroot/usr/bin/chrt ] || fail "the image has no chrt (util-linux)"
  RT="/usr/bin/chrt --reset-on-fork --fifo 1"
  echo "cubicle-init: limits applied" > /dev/console
fi
mkdir -p /newroot/run/cubicle
cp $B /newroot/run/cubicle/busybox
cat > /newroot/run/cubicle/init <<STAGE2
#!/run/cubicle/busybox sh
B=/run/cubicle/busybox
echo "cubicle-init: ready" > /dev/console
\$B env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/workspace LANG=C.UTF-8 $RT "$GUEST" 0<>"$PORT" 1>&0 2>/dev/console
echo "cubicle-init: the guest exited" > /dev/console
\$B sync
\$B reboot -f
STAGE2
chmod 0755 /newroot/run/cubicle/init
exec $B switch_root /newroot /run/cubicle/init
"#;

/// One kernel module found in a kernel's module tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Name as `insmod`/`lsmod` know it (`9pnet_virtio`).
    pub name: String,
    /// Path of its `.ko` file.
    pub path: PathBuf,
}

/// Indexes the `.ko` files under `modules_dir` (`…/lib/modules/<release>`)
/// by module name.
pub fn index_modules(modules_dir: &Path) -> Result<BTreeMap<String, PathBuf>, ImageError> {
    let mut index = BTreeMap::new();
    let mut stack = vec![modules_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir)
            .map_err(ImageError::io(format!("reading {}", dir.display())))?;
        for entry in rd {
            let entry = entry.map_err(ImageError::io(format!("reading {}", dir.display())))?;
            let path = entry.path();
            let ft = entry
                .file_type()
                .map_err(ImageError::io(format!("reading {}", path.display())))?;
            if ft.is_dir() {
                stack.push(path);
            } else if let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                // Module names use `_` where file names may use `-`.
                index.insert(stem.replace('-', "_"), path);
            }
        }
    }
    Ok(index)
}

/// The `depends=` field of a module's `.modinfo` section, read from the raw
/// file (it is a NUL-separated list of `key=value` strings).
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(start) = ko.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &ko[start + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// `wanted` and everything they depend on, dependencies first, each once.
pub fn resolve_modules(
    index: &BTreeMap<String, PathBuf>,
    wanted: &[&str],
) -> Result<Vec<Module>, ImageError> {
    fn visit(
        name: &str,
        index: &BTreeMap<String, PathBuf>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<Module>,
        depth: usize,
    ) -> Result<(), ImageError> {
        if seen.contains(name) {
            return Ok(());
        }
        let path = index.get(name).ok_or_else(|| ImageError::Step {
            step: "collecting kernel modules".to_owned(),
            detail: format!(
                "the kernel has no module {name} — is it a generic linux-image-*-amd64 kernel?"
            ),
        })?;
        if depth > 32 {
            return Err(ImageError::Step {
                step: "collecting kernel modules".to_owned(),
                detail: format!("module dependencies loop at {name}"),
            });
        }
        let bytes =
            std::fs::read(path).map_err(ImageError::io(format!("reading {}", path.display())))?;
        for dep in module_depends(&bytes) {
            visit(&dep, index, seen, out, depth + 1)?;
        }
        seen.insert(name.to_owned());
        out.push(Module {
            name: name.to_owned(),
            path: path.clone(),
        });
        Ok(())
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for name in wanted {
        visit(name, index, &mut seen, &mut out, 0)?;
    }
    Ok(out)
}

/// A `newc` cpio archive being written in memory.
#[derive(Debug, Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let namesize = name.len() + 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            namesize,
            0
        );
        self.buf.extend_from_slice(header.as_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// Adds a directory.
    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[], (0, 0));
    }

    /// Adds a regular file with permission bits `perm`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, data, (0, 0));
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, 0o020_000 | perm, &[], (major, minor));
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.buf
    }
}

/// The initramfs: `busybox` (a static build), `modules` in order, and the
/// init script.
pub fn assemble(busybox: &[u8], modules: &[Module]) -> Result<Vec<u8>, ImageError> {
    let mut cpio = Cpio::new();
    for d in ["bin", "dev", "etc", "lib", "lib/modules", "proc", "sys"] {
        cpio.dir(d);
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    cpio.char_dev("dev/console", 0o600, 5, 1);
    cpio.file("bin/busybox", 0o755, busybox);
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes());
    let mut order = String::new();
    for m in modules {
        let bytes = std::fs::read(&m.path)
            .map_err(ImageError::io(format!("reading {}", m.path.display())))?;
        cpio.file(&format!("lib/modules/{}.ko", m.name), 0o644, &bytes);
        order.push_str(&m.name);
        order.push('\n');
    }
    cpio.file("etc/cubicle-modules", 0o644, order.as_bytes());
    Ok(cpio.finish())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    fn fake_ko(dir: &Path, rel: &str, depends: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let body = format!("\x7fELF junk\0license=GPL\0depends={depends}\0vermagic=6.1\0");
        std::fs::write(path, body).unwrap();
    }

    #[test]
    fn modules_come_after_their_dependencies_once_each() {
        let dir = tempfile::tempdir().unwrap();
        fake_ko(dir.path(), "kernel/a/virtio_ring.ko", "");
        fake_ko(dir.path(), "kernel/a/virtio.ko", "virtio_ring");
        fake_ko(
            dir.path(),
            "kernel/b/9pnet-virtio.ko",
            "virtio,9pnet,virtio_ring",
        );
        fake_ko(dir.path(), "kernel/b/9pnet.ko", "");
        let index = index_modules(dir.path()).unwrap();
        let order: Vec<String> = resolve_modules(&index, &["9pnet_virtio", "virtio"])
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(order, ["virtio_ring", "virtio", "9pnet", "9pnet_virtio"]);
        let err = resolve_modules(&index, &["erofs"]).unwrap_err().to_string();
        assert!(err.contains("the kernel has no module erofs"), "{err}");
    }

    #[test]
    fn cpio_is_newc_with_aligned_entries_and_a_trailer() {
        let mut c = Cpio::new();
        c.dir("bin");
        c.file("init", 0o755, b"#!/bin/sh\n");
        c.char_dev("dev/console", 0o600, 5, 1);
        let bytes = c.finish();
        assert_eq!(&bytes[..6], b"070701");
        assert!(bytes.len().is_multiple_of(4));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("init\0"));
        assert!(text.contains("#!/bin/sh\n"));
        assert!(text.contains("TRAILER!!!\0"));
        // Second header: mode 0o100755 = 0x81ed, size 10.
        let second = text.match_indices("070701").nth(1).unwrap().0;
        assert_eq!(&text[second + 14..second + 22], "000081ed");
        assert_eq!(&text[second + 54..second + 62], "0000000a");
    }

    #[test]
    fn init_script_names_the_contract_lines() {
        assert!(INIT_SCRIPT.contains(READY_LINE));
        assert!(INIT_SCRIPT.contains(PROBE_LINE));
        assert!(INIT_SCRIPT.contains(ERROR_PREFIX.trim_end()));
    }
}
