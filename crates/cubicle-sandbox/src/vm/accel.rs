//! Choosing the accelerator: KVM only where a probe VM actually boots under
//! it (on some hosts `/dev/kvm` exists but cannot run a standard kernel),
//! TCG otherwise; and whether QEMU was built with `-sandbox`.

use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;

use super::config::VmImage;

/// How long the KVM probe VM may take to reach its init.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which accelerator a VM asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when a probe boots under it, else TCG.
    Auto,
    /// KVM, failing the start when it is unusable.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

/// The accelerator chosen and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// `Kvm` or `Tcg`.
    pub accel: Accel,
    /// Why, for the person.
    pub reason: String,
}

impl AccelChoice {
    /// QEMU's name for it.
    pub fn qemu_name(&self) -> &'static str {
        match self.accel {
            Accel::Kvm => "kvm",
            Accel::Auto | Accel::Tcg => "tcg",
        }
    }
}

/// Probe result, once per process (a probe boots a VM).
static KVM_PROBE: tokio::sync::OnceCell<Result<(), String>> = tokio::sync::OnceCell::const_new();

/// Decides the accelerator for `wanted`.
pub async fn choose(wanted: Accel, qemu: &Path, image: &VmImage) -> Result<AccelChoice, String> {
    match wanted {
        Accel::Tcg => Ok(AccelChoice {
            accel: Accel::Tcg,
            reason: "TCG (software emulation) as configured".to_owned(),
        }),
        Accel::Kvm => probe_kvm_cached(qemu, image).await.map(|()| AccelChoice {
            accel: Accel::Kvm,
            reason: "KVM as configured; a probe VM booted under it".to_owned(),
        }),
        Accel::Auto => Ok(match probe_kvm_cached(qemu, image).await {
            Ok(()) => AccelChoice {
                accel: Accel::Kvm,
                reason: "KVM: a probe VM booted under it".to_owned(),
            },
            Err(why) => AccelChoice {
                accel: Accel::Tcg,
                reason: format!("TCG (software emulation, slower): KVM is unusable here: {why}"),
            },
        }),
    }
}

async fn probe_kvm_cached(qemu: &Path, image: &VmImage) -> Result<(), String> {
    KVM_PROBE
        .get_or_init(|| probe_kvm(qemu, image))
        .await
        .clone()
}

/// Boots the image's kernel under KVM with `cubicle.probe=1` and waits for
/// its init's probe line on the serial console.
pub async fn probe_kvm(qemu: &Path, image: &VmImage) -> Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("cannot open /dev/kvm: {e}"));
    }
    let mut cmd = tokio::process::Command::new(qemu);
    cmd.args([
        "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "128",
    ])
    .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
    .arg("-kernel")
    .arg(&image.kernel)
    .arg("-initrd")
    .arg(&image.initramfs)
    .args([
        "-append",
        "console=ttyS0 quiet panic=-1 reboot=t cubicle.probe=1",
    ])
    .args(["-serial", "stdio", "-nic", "none"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", qemu.display()))?;
    let Some(stdout) = child.stdout.take() else {
        return Err("QEMU's console was not piped".to_owned());
    };
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let wait = tokio::time::timeout(KVM_PROBE_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(cubicle_image::initramfs::PROBE_LINE) {
                return true;
            }
        }
        false
    })
    .await;
    let _ = child.start_kill();
    let out = child.wait_with_output().await.ok();
    match wait {
        Ok(true) => Ok(()),
        Ok(false) => {
            let err = out
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "QEMU exited before the guest's init ran".to_owned());
            Err(format!("a probe VM did not boot under KVM: {err}"))
        }
        Err(_) => Err(format!(
            "a probe VM did not reach its init under KVM within {} s (a paravirtualised /dev/kvm, such as PVM, cannot run a standard kernel)",
            KVM_PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// Whether this QEMU supports `-sandbox on` (built with seccomp).
pub fn sandbox_supported(qemu: &Path) -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        std::process::Command::new(qemu)
            .args(["-sandbox", "help"])
            .stdin(Stdio::null())
            .output()
            .map(|o| {
                let err = String::from_utf8_lossy(&o.stderr);
                // A build with seccomp rejects the value `help`; one without
                // says the option group or support is missing.
                err.contains("expects 'on' or 'off'")
            })
            .unwrap_or(false)
    })
}
