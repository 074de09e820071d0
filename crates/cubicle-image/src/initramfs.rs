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
//! - `cubicle.probe=1` — print [`PROBE_LINE`] and power off (boot probes).
//!
//! It prints [`READY_LINE`] on the console just before starting the guest
//! and lines starting with [`ERROR_PREFIX`] when it cannot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::ImageError;

/// Console line printed when the guest is about to start.
pub const READY_LINE: &str = "cubicle-init: ready";
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
$B mkdir -p /proc /sys /dev /lower /upper /newroot
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
fail() { echo "cubicle-init: error: $*" > /dev/console; $B sync; $B reboot -f; }
SHARES=; GUEST=/usr/local/bin/cubicle-guest; OVERLAY=50%; PROBE=
for arg in $($B cat /proc/cmdline); do
  case "$arg" in
    cubicle.shares=*) SHARES="${arg#cubicle.shares=}" ;;
    cubicle.guest=*) GUEST="${arg#cubicle.guest=}" ;;
    cubicle.overlay=*) OVERLAY="${arg#cubicle.overlay=}" ;;
    cubicle.probe=1) PROBE=1 ;;
  esac
done
if [ -n "$PROBE" ]; then echo "cubicle-init: probe ok" > /dev/console; $B reboot -f; fi
for m in $($B cat /etc/cubicle-modules); do
  $B insmod "/lib/modules/$m.ko" || fail "cannot load the kernel module $m"
done
i=0
while [ ! -b /dev/vda ]; do
  i=$((i+1)); [ $i -gt 1000 ] && fail "no root disk (/dev/vda)"; $B usleep 10000
done
$B mount -t erofs -o ro /dev/vda /lower || fail "cannot mount the root disk"
$B mount -t tmpfs -o "mode=0755,size=$OVERLAY" overlay-rw /upper || fail "cannot mount the overlay tmpfs"
$B mkdir -p /upper/data /upper/work
$B mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot || fail "cannot mount the overlay"
$B mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run /newroot/workspace /newroot/mnt
$B mount --move /proc /newroot/proc
$B mount --move /sys /newroot/sys
$B mount --move /dev /newroot/dev
$B mount -t tmpfs -o mode=1777 tmp /newroot/tmp
$B mount -t tmpfs -o mode=0755 run /newroot/run
$B mkdir -p /newroot/dev/pts /newroot/dev/shm
$B mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
$B mount -t tmpfs -o mode=1777 shm /newroot/dev/shm
IFS=,
for s in $SHARES; do
  tag="${s%%:*}"; rest="${s#*:}"; dir="${rest%:*}"; mode="${rest##*:}"
  $B mkdir -p "/newroot$dir"
  $B mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,$mode" "$tag" "/newroot$dir" || fail "cannot mount the share $tag at $dir"
done
unset IFS
PORT=
i=0
while [ -z "$PORT" ]; do
  for p in /newroot/sys/class/virtio-ports/*; do
    [ "$($B cat "$p/name" 2>/dev/null)" = cubicle ] && PORT="/dev/${p##*/}"
  done
  [ -n "$PORT" ] && break
  i=$((i+1)); [ $i -gt 1000 ] && fail "no virtio-serial port named cubicle"; $B usleep 10000
done
$B mkdir -p /newroot/run/cubicle
$B cp $B /newroot/run/cubicle/busybox
$B cat > /newroot/run/cubicle/init <<STAGE2
#!/run/cubicle/busybox sh
B=/run/cubicle/busybox
\$B hostname cubicle
\$B ip link set lo up
echo "cubicle-init: ready" > /dev/console
\$B env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/workspace LANG=C.UTF-8 "$GUEST" 0<>"$PORT" 1>&0 2>/dev/console
echo "cubicle-init: the guest exited" > /dev/console
\$B sync
\$B reboot -f
STAGE2
$B chmod 0755 /newroot/run/cubicle/init
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
