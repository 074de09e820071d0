//! What a VM is made of: the image artefacts it boots ([`VmImage`]) and the
//! session's settings ([`VmConfig`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::accel::Accel;
use crate::grants::Grant;
use crate::guest_client::EgressConnector;
use crate::locate::GuestProgram;

/// The three artefacts of a cubicle image a VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmImage {
    /// Linux kernel (`vmlinuz`).
    pub kernel: PathBuf,
    /// Initramfs with the cubicle init.
    pub initramfs: PathBuf,
    /// Read-only root disk (erofs).
    pub root_disk: PathBuf,
}

impl VmImage {
    /// The artefacts of a built image.
    pub fn from_image(image: &cubicle_image::Image) -> Self {
        Self {
            kernel: image.kernel(),
            initramfs: image.initramfs(),
            root_disk: image.root_disk(),
        }
    }

    /// The artefacts in an image directory.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            kernel: dir.join(cubicle_image::KERNEL),
            initramfs: dir.join(cubicle_image::INITRAMFS),
            root_disk: dir.join(cubicle_image::ROOT_DISK),
        }
    }
}

/// Settings of a `vm` computer.
#[derive(Clone)]
pub struct VmConfig {
    /// What to boot.
    pub image: VmImage,
    /// Host folders visible at `/mnt/<name>`.
    pub grants: Vec<Grant>,
    /// Further host folders shown read-only at an absolute guest path below
    /// `/mnt/.` — skills at `/mnt/.skills/<name>`, plugins at
    /// `/mnt/.plugins/<name>` — so their bundled scripts run inside.
    pub read_only: Vec<(String, PathBuf)>,
    /// Host directory shared at `/workspace`; created if missing.
    pub workspace: PathBuf,
    /// A guest program to share into the VM read-only and run instead of
    /// the image's own `/usr/local/bin/cubicle-guest` (development builds).
    pub guest: Option<GuestProgram>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Size of the RAM overlay that takes writes outside the shares, in MiB.
    pub overlay_mib: u32,
    /// Which accelerator to use.
    pub accel: Accel,
    /// Directory for the VM's sockets (a private subdirectory is made and
    /// removed); keep it short, Unix socket paths are limited to 107 bytes.
    pub run_dir: PathBuf,
    /// The QEMU program.
    pub qemu: PathBuf,
    /// How long the boot may take before the start fails.
    pub boot_timeout: Duration,
    /// How often the heartbeat pings the guest.
    pub heartbeat_interval: Duration,
    /// How long a ping may go unanswered before the VM counts as hung.
    pub heartbeat_timeout: Duration,
    /// Variables added to (or overriding) the base environment of every
    /// command.
    pub env: BTreeMap<String, String>,
    /// Where connections to the in-cubicle proxy port go; `None` refuses them.
    pub egress: Option<Arc<dyn EgressConnector>>,
    /// Limits applied inside the VM to every command; `None` leaves the
    /// VM's RAM as the only bound.
    pub limits: Option<VmLimits>,
    /// How many times a VM that crashed or hung is replaced by a fresh one
    /// before the session gives up on it.
    pub max_restarts: u32,
}

/// Limits inside the VM, as the jail's: the guest is moved into a `pids`
/// cgroup and gets resource limits that every command inherits, and
/// `/tmp` and `/dev/shm` are capped. The VM's fixed RAM and CPUs bound the
/// whole session on the host regardless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmLimits {
    /// Most processes and threads of the guest and its commands (`pids`
    /// cgroup).
    pub max_processes: u64,
    /// Most private writable memory of one process (`RLIMIT_DATA`).
    pub process_memory_bytes: u64,
    /// Most open files of one process (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Largest file one process may write (`RLIMIT_FSIZE`).
    pub file_size_bytes: u64,
    /// Size of `/tmp` and `/dev/shm`, each.
    pub tmp_bytes: u64,
}

impl VmLimits {
    /// Defaults sized for a guest of `memory_mib`.
    pub fn for_memory(memory_mib: u32) -> Self {
        let mem = u64::from(memory_mib) << 20;
        Self {
            max_processes: 512,
            process_memory_bytes: mem / 2,
            open_files: 4096,
            file_size_bytes: 4 << 30,
            tmp_bytes: mem / 4,
        }
    }
}

impl VmConfig {
    /// Defaults: 512 MiB, one CPU, a 256 MiB overlay, automatic accelerator,
    /// sockets under the temporary directory, a 60 s boot timeout, up to three
    /// restarts after a crash.
    pub fn new(image: VmImage, workspace: PathBuf) -> Self {
        Self {
            image,
            grants: Vec::new(),
            read_only: Vec::new(),
            workspace,
            guest: None,
            memory_mib: 512,
            cpus: 1,
            overlay_mib: 256,
            accel: Accel::Auto,
            run_dir: std::env::temp_dir(),
            qemu: PathBuf::from("qemu-system-x86_64"),
            boot_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(3),
            heartbeat_timeout: Duration::from_secs(20),
            env: BTreeMap::new(),
            egress: None,
            limits: Some(VmLimits::for_memory(512)),
            max_restarts: 3,
        }
    }
}

impl std::fmt::Debug for VmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmConfig")
            .field("image", &self.image)
            .field("grants", &self.grants)
            .field("workspace", &self.workspace)
            .field("guest", &self.guest)
            .field("memory_mib", &self.memory_mib)
            .field("accel", &self.accel)
            .field("run_dir", &self.run_dir)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("egress", &self.egress.is_some())
            .field("limits", &self.limits)
            .field("max_restarts", &self.max_restarts)
            .finish_non_exhaustive()
    }
}
