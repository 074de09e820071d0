//! The QEMU command line of a cubicle VM, built as plain data so that it
//! can be read and tested; and the kernel command line that tells the
//! image's init what to mount.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::accel::AccelChoice;
use super::config::VmImage;
use crate::SandboxError;

/// The x86 kernel's command-line limit (`COMMAND_LINE_SIZE`).
const CMDLINE_MAX: usize = 2048;

/// Tag of the workspace share.
pub const WORKSPACE_TAG: &str = "ws";
/// Tag of the share that carries a development guest.
pub const GUEST_TAG: &str = "cubicle";
/// Where the guest share is mounted inside the VM.
pub const GUEST_MOUNT: &str = "/.cubicle";

/// One virtio-9p share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// Mount tag (`g0`, `ws`, …).
    pub tag: String,
    /// Host directory.
    pub host: PathBuf,
    /// Mount point inside the VM.
    pub guest: String,
    /// Read-write when true.
    pub writable: bool,
}

/// Everything the command line depends on.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// The artefacts to boot.
    pub image: &'a VmImage,
    /// The accelerator.
    pub accel: &'a AccelChoice,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// RAM overlay size in MiB.
    pub overlay_mib: u32,
    /// The shares, workspace included.
    pub shares: &'a [Share],
    /// Resource limits the init applies before the guest starts.
    pub limits: Option<&'a super::VmLimits>,
    /// The guest program inside the VM.
    pub guest_path: &'a str,
    /// Socket of the guest channel.
    pub channel: &'a Path,
    /// Socket of the serial console.
    pub console: &'a Path,
    /// Add `-sandbox on,…`.
    pub sandbox: bool,
    /// TSC frequency to pass to the kernel, on TCG.
    pub tsc_khz: Option<u64>,
}

/// The kernel command line.
pub fn kernel_cmdline(l: &Launch<'_>) -> Result<String, SandboxError> {
    let mut shares = Vec::new();
    for s in l.shares {
        // The init splits on `,` and `:` and the kernel on spaces.
        let bad = |t: &str| t.is_empty() || t.contains([',', ':', ' ', '\t', '\n', '"']);
        if bad(&s.tag) || bad(&s.guest) {
            return Err(SandboxError::Config(format!(
                "cannot share {} at {} in a VM: the name may not contain spaces, commas, colons or quotes — rename the folder",
                s.host.display(),
                s.guest
            )));
        }
        shares.push(format!(
            "{}:{}:{}",
            s.tag,
            s.guest,
            if s.writable { "rw" } else { "ro" }
        ));
    }
    let mut line = String::from("console=ttyS0 quiet panic=-1 reboot=t");
    if let Some(khz) = l.tsc_khz {
        // TCG's PIT-based TSC calibration fails under load, after which the
        // kernel hangs; the host's TSC rate is what TCG's TSC runs at.
        line.push_str(&format!(" tsc_early_khz={khz}"));
    }
    line.push_str(&format!(
        " cubicle.overlay={}m cubicle.guest={} cubicle.shares={}",
        l.overlay_mib,
        l.guest_path,
        shares.join(",")
    ));
    if let Some(m) = l.limits {
        // The init's shell counts RLIMIT_DATA in KiB and RLIMIT_FSIZE in
        // 512-byte blocks.
        line.push_str(&format!(
            " cubicle.limits={}:{}:{}:{}:{}",
            m.max_processes.max(1),
            (m.process_memory_bytes >> 10).max(1),
            m.open_files.max(1),
            (m.file_size_bytes >> 9).max(1),
            (m.tmp_bytes >> 10).max(1)
        ));
    }
    if line.len() >= CMDLINE_MAX {
        return Err(SandboxError::Config(format!(
            "too many grants for a VM: the kernel command line would be {} bytes (at most {CMDLINE_MAX}) — grant fewer folders",
            line.len()
        )));
    }
    Ok(line)
}

/// QEMU's arguments.
pub fn args(l: &Launch<'_>) -> Result<Vec<OsString>, SandboxError> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |parts: &[&str]| a.extend(parts.iter().map(OsString::from));
    // ACPI stays on: it is how this kernel (no VIRTIO_MMIO_CMDLINE_DEVICES)
    // finds the virtio-mmio devices.
    if l.accel.qemu_name() == "kvm" {
        push(&["-M", "microvm", "-accel", "kvm", "-cpu", "host"]);
    } else {
        // TCG's translation cache defaults to 1 GiB of host memory, all of
        // it in QEMU's RSS once filled. 32 MiB boots as fast as 64 and runs
        // commands as fast (measured); 16 MiB thrashes (warm commands 7×
        // slower).
        push(&["-M", "microvm", "-accel", "tcg,tb-size=32"]);
    }
    let mem = l.memory_mib.to_string();
    let cpus = l.cpus.to_string();
    push(&["-m", &mem, "-smp", &cpus]);
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
    ]);
    if l.sandbox {
        push(&[
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        ]);
    }
    let mut a2: Vec<OsString> = Vec::new();
    a2.push("-kernel".into());
    a2.push(l.image.kernel.clone().into());
    a2.push("-initrd".into());
    a2.push(l.image.initramfs.clone().into());
    a2.push("-append".into());
    a2.push(kernel_cmdline(l)?.into());
    a2.push("-chardev".into());
    a2.push(chardev_socket("con", l.console)?.into());
    a2.push("-serial".into());
    a2.push("chardev:con".into());
    a2.push("-drive".into());
    a2.push(
        format!(
            "file={},if=none,format=raw,readonly=on,id=root",
            qemu_path(&l.image.root_disk)?
        )
        .into(),
    );
    a2.push("-device".into());
    a2.push("virtio-blk-device,drive=root".into());
    for s in l.shares {
        a2.push("-fsdev".into());
        a2.push(
            format!(
                "local,id=fs-{},path={},security_model=none{}",
                s.tag,
                qemu_path(&s.host)?,
                if s.writable { "" } else { ",readonly=on" }
            )
            .into(),
        );
        a2.push("-device".into());
        a2.push(format!("virtio-9p-device,fsdev=fs-{0},mount_tag={0}", s.tag).into());
    }
    // Free page reporting: memory the guest frees (the kernel's boot-time
    // allocations, a finished command's) goes back to the host instead of
    // staying in QEMU's RSS. A guest without the driver ignores the device.
    a2.push("-device".into());
    a2.push("virtio-balloon-device,free-page-reporting=on".into());
    a2.push("-device".into());
    a2.push("virtio-serial-device".into());
    a2.push("-chardev".into());
    a2.push(chardev_socket("chan", l.channel)?.into());
    a2.push("-device".into());
    a2.push("virtserialport,chardev=chan,name=cubicle".into());
    a.extend(a2);
    Ok(a)
}

fn chardev_socket(id: &str, path: &Path) -> Result<String, SandboxError> {
    Ok(format!(
        "socket,id={id},path={},server=on,wait=off",
        qemu_path(path)?
    ))
}

/// A path as a QEMU option value: UTF-8, with `,` doubled (QEMU's escape).
fn qemu_path(path: &Path) -> Result<String, SandboxError> {
    let s = path.to_str().ok_or_else(|| {
        SandboxError::Config(format!(
            "{} is not valid UTF-8; rename it to use it with a VM",
            path.display()
        ))
    })?;
    Ok(s.replace(',', ",,"))
}

/// The host's TSC rate in kHz, from `/proc/cpuinfo` (TCG's TSC runs at it).
pub fn host_tsc_khz() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = text
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    (mhz > 0.0).then_some((mhz * 1000.0) as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::vm::accel::Accel;
    use pretty_assertions::assert_eq;

    fn image() -> VmImage {
        VmImage::in_dir(Path::new("/img"))
    }

    fn tcg() -> AccelChoice {
        AccelChoice {
            accel: Accel::Tcg,
            reason: String::new(),
        }
    }

    fn launch<'a>(image: &'a VmImage, accel: &'a AccelChoice, shares: &'a [Share]) -> Launch<'a> {
        Launch {
            image,
            accel,
            memory_mib: 512,
            cpus: 1,
            overlay_mib: 256,
            shares,
            limits: None,
            guest_path: "/usr/local/bin/cubicle-guest",
            channel: Path::new("/run/vm/chan.sock"),
            console: Path::new("/run/vm/con.sock"),
            sandbox: true,
            tsc_khz: Some(2_300_000),
        }
    }

    #[test]
    fn limits_reach_the_init_in_its_units() {
        let image = image();
        let accel = tcg();
        let limits = crate::vm::VmLimits {
            max_processes: 512,
            process_memory_bytes: 256 << 20,
            open_files: 4096,
            file_size_bytes: 4 << 30,
            tmp_bytes: 128 << 20,
        };
        let mut l = launch(&image, &accel, &[]);
        assert!(!kernel_cmdline(&l).unwrap().contains("cubicle.limits="));
        l.limits = Some(&limits);
        let line = kernel_cmdline(&l).unwrap();
        // KiB of data, 512-byte blocks of file size, KiB of /tmp.
        assert!(
            line.ends_with(" cubicle.limits=512:262144:4096:8388608:131072"),
            "{line}"
        );
    }

    #[test]
    fn read_only_grants_are_read_only_on_both_sides() {
        let shares = [
            Share {
                tag: "ws".into(),
                host: "/h/ws".into(),
                guest: "/workspace".into(),
                writable: true,
            },
            Share {
                tag: "g0".into(),
                host: "/h/a,b".into(),
                guest: "/mnt/a".into(),
                writable: false,
            },
        ];
        let (img, acc) = (image(), tcg());
        let l = launch(&img, &acc, &shares);
        let args: Vec<String> = args(&l)
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(
            joined.contains("-fsdev local,id=fs-ws,path=/h/ws,security_model=none -device"),
            "{joined}"
        );
        assert!(
            joined.contains("-fsdev local,id=fs-g0,path=/h/a,,b,security_model=none,readonly=on"),
            "{joined}"
        );
        assert!(joined.contains("-nic none"));
        assert!(joined.contains("-sandbox on,"));
        assert!(!joined.contains("-monitor"));
        // Memory the guest frees goes back to the host.
        assert!(joined.contains("-device virtio-balloon-device,free-page-reporting=on"));
        assert_eq!(
            kernel_cmdline(&l).unwrap(),
            "console=ttyS0 quiet panic=-1 reboot=t tsc_early_khz=2300000 cubicle.overlay=256m \
             cubicle.guest=/usr/local/bin/cubicle-guest cubicle.shares=ws:/workspace:rw,g0:/mnt/a:ro"
        );
    }

    #[test]
    fn names_that_break_the_command_line_are_refused() {
        let shares = [Share {
            tag: "g0".into(),
            host: "/h/x".into(),
            guest: "/mnt/a b".into(),
            writable: false,
        }];
        let (img, acc) = (image(), tcg());
        let err = kernel_cmdline(&launch(&img, &acc, &shares))
            .unwrap_err()
            .to_string();
        assert!(err.contains("may not contain spaces"), "{err}");
    }
}
