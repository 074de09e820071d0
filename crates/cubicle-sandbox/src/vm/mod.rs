//! The `vm` backend: every cubicle is a QEMU `microvm` booting the cubicle
//! image's kernel, initramfs and read-only root disk, with the session's
//! writes in a RAM overlay, the grants and `/workspace` as virtio-9p shares
//! and the guest protocol over a virtio-serial port.
//!
//! # How a VM starts, step by step
//!
//! 1. The grants and the workspace are checked and made canonical, as for
//!    the jail ([`crate::grants`]).
//! 2. The accelerator is chosen ([`accel`]): KVM only when `/dev/kvm`
//!    opens *and* a probe VM boots the image's kernel to its init under it
//!    within a few seconds; TCG otherwise. The choice and its reason are
//!    logged and kept ([`VmComputer::accel_reason`]).
//! 3. QEMU starts ([`qemu`]) with `-nodefaults -no-user-config`, no
//!    monitor, no network (`-nic none`), `-sandbox on` (QEMU's own seccomp
//!    filter, denying obsolete calls, privilege changes, spawning and
//!    resource control) where the build supports it, and a parent-death
//!    signal so that it dies with `cubicle`, even after `kill -9`.
//! 4. Shares: each grant is a `virtio-9p-device` over `-fsdev local` with
//!    `security_model=none`; read-only grants carry `readonly=on` *and* are
//!    mounted `ro` in the guest. QEMU's local 9p back end resolves every path
//!    component with `openat(…, O_NOFOLLOW)` under the share's root, so a
//!    symbolic link inside a share is followed by the *guest's* kernel, in
//!    the guest's tree, never on the host (tested by
//!    `tests/vm_backend.rs`).
//! 5. The initramfs' init (`cubicle_image::initramfs::INIT_SCRIPT`) loads
//!    the modules, mounts the erofs root read-only under a tmpfs overlay,
//!    mounts the shares, applies the limits of step 7, prints
//!    `cubicle-init: ready` on the serial console and runs the guest on the
//!    port named `cubicle`. Its commands are busybox applets run in a fork
//!    of its shell, without an exec: under TCG each exec costs tens of
//!    milliseconds.
//! 6. The host waits for that line (boot timeout, generous on TCG), then
//!    connects to the port's Unix socket and runs the protocol handshake.
//! 7. Limits ([`VmLimits`], as the jail's), passed as `cubicle.limits=` on
//!    the kernel command line: the init enters a `pids` cgroup and sets
//!    `RLIMIT_DATA`, `RLIMIT_NOFILE` and `RLIMIT_FSIZE`, which the guest and
//!    every command inherit, sizes `/tmp` and `/dev/shm`, and starts the
//!    guest at a low real-time priority its children do not inherit. An
//!    image built before that parameter existed does not print
//!    `cubicle-init: limits applied`; the host then applies the same limits
//!    through the guest, a few seconds slower. The VM's fixed RAM and CPUs
//!    bound it on the host regardless. The jail's escape suite runs against
//!    the VM with the
//!    adaptations of `jail::escape_suite::plan(Backend::Vm)`
//!    (`tests/vm_attacks.rs`).
//! 8. A heartbeat pings the guest every few seconds; a guest that stops
//!    answering, or a QEMU that exits, marks the computer dead with a clear
//!    reason, and QEMU is killed.
//! 9. `stop` asks the guest to shut down (init then reboots the VM, which
//!    ends QEMU under `-no-reboot`) and kills QEMU if it lingers; dropping the
//!    computer kills QEMU at once. The run directory (sockets) is removed.
//!
//! Network: none in this version. Egress reaches the host the same way as
//! from the jail, through the guest protocol's tunnels to the host's proxy
//! (the guest listens on `127.0.0.1:3128` inside the VM). TODO: the
//! `-nic user,restrict=on,guestfwd=…` path to the proxy, for programs that
//! need a real network device.
//!
//! # macOS and Windows: the same trait on other hypervisors
//!
//! Not code yet; what each step maps to.
//!
//! **macOS, Virtualization framework** (`objc2-virtualization`):
//! `VZVirtualMachineConfiguration` with a `VZLinuxBootLoader` (kernel =
//! the image's `vmlinuz` — an arm64 build on Apple silicon —, `initialRamdiskURL`
//! = the initramfs, `commandLine` = the same `cubicle.*` parameters);
//! the root disk is a `VZVirtioBlockDeviceConfiguration` over a read-only
//! `VZDiskImageStorageDeviceAttachment`; grants are
//! `VZVirtioFileSystemDeviceConfiguration`s with a `VZSharedDirectory`
//! (`readOnly` per grant) and a tag, mounted as virtiofs by the init; the
//! guest channel is a `VZVirtioSocketDeviceConfiguration` (vsock) and the
//! host side `VZVirtioSocketDevice::connectToPort`, giving a file descriptor
//! that `GuestClient::connect` drives like the Unix socket here; the
//! console is a `VZVirtioConsoleDeviceSerialPortConfiguration` over a pipe
//! (the ready line); `start`/`stop`/`requestStop` map to `stop` and the
//! heartbeat; no network device (egress over the protocol's tunnels).
//!
//! **Windows, Host Compute Service** (`windows` crate,
//! `Win32_System_HostComputeSystem`, as WSL2 does): `HcsCreateComputeSystem`
//! with a JSON document of schema 2.x: `VirtualMachine.Chipset.LinuxKernelDirect`
//! (kernel, initrd, command line), a SCSI attachment of the root disk as a
//! read-only VHDX (converted from the erofs image at build time), Plan9
//! shares (`Devices.Plan9.Shares`, `ReadOnly` flag per grant) which the init
//! mounts as 9p over vsock, and an `HvSocket` service id for the guest
//! channel (the host connects an `AF_HYPERV` socket); `HcsStartComputeSystem`,
//! `HcsShutDownComputeSystem` then `HcsTerminateComputeSystem` for `stop`,
//! and a job object with `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE` in place of the
//! parent-death signal.

#![cfg(target_os = "linux")]

pub mod accel;
mod computer;
pub mod config;
pub mod qemu;

pub use accel::{Accel, AccelChoice};
pub use computer::VmComputer;
pub use config::{VmConfig, VmImage, VmLimits};

/// Where the workspace is inside the VM.
pub const WORKSPACE: &str = "/workspace";

/// The guest's egress listener inside the VM.
pub const EGRESS_LISTEN: &str = "127.0.0.1:3128";
