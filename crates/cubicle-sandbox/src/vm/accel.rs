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
        .get_or_init(|| async {
            if let Some(verdict) = stored_verdict(qemu, image) {
                return verdict;
            }
            let verdict = probe_kvm(qemu, image).await;
            store_verdict(qemu, image, &verdict);
            verdict
        })
        .await
        .clone()
}

/// Whether KVM boots this image here, for callers outside an async context
/// (choosing the `auto` backend). Uses the stored verdict when there is one;
/// otherwise boots the probe VM (at most [`KVM_PROBE_TIMEOUT`]) on a thread
/// of its own and stores what it found.
pub fn kvm_usable_blocking(qemu: &Path, image: &VmImage) -> Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("cannot open /dev/kvm: {e}"));
    }
    if let Some(verdict) = stored_verdict(qemu, image) {
        return verdict;
    }
    let (qemu, image) = (qemu.to_owned(), image.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the KVM probe: {e}"))?;
        let verdict = runtime.block_on(probe_kvm(&qemu, &image));
        store_verdict(&qemu, &image, &verdict);
        verdict
    })
    .join()
    .unwrap_or_else(|_| Err("the KVM probe failed".to_owned()))
}

/// Where the probe's verdict is kept between runs: booting a probe VM costs
/// up to [`KVM_PROBE_TIMEOUT`] on a host whose KVM cannot run the kernel, too
/// long to pay at every start.
fn verdict_file() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| std::path::PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("cubicle/kvm-probe"))
}

/// What the verdict depends on: the host kernel, the QEMU binary and the
/// guest kernel. A change to any of them probes again.
fn verdict_key(qemu: &Path, image: &VmImage) -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let stamp = |p: &Path| -> Option<String> {
        let m = std::fs::metadata(p).ok()?;
        let mtime = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(format!("{}:{}:{mtime}", p.display(), m.len()))
    };
    let qemu = if qemu.components().count() > 1 {
        qemu.to_owned()
    } else {
        cubicle_image::builder::find_program(qemu.to_str()?)?
    };
    Some(format!(
        "v1 {} {} {}",
        release.trim(),
        stamp(&qemu)?,
        stamp(&image.kernel)?
    ))
}

fn stored_verdict(qemu: &Path, image: &VmImage) -> Option<Result<(), String>> {
    read_verdict(&verdict_file()?, &verdict_key(qemu, image)?)
}

fn read_verdict(file: &Path, key: &str) -> Option<Result<(), String>> {
    let text = std::fs::read_to_string(file).ok()?;
    verdicts(&text)
        .find(|(k, _)| *k == key)
        .and_then(|(_, verdict)| match verdict.strip_prefix("err ") {
            Some(why) => Some(Err(why.to_owned())),
            None if verdict == "ok" => Some(Ok(())),
            None => None,
        })
}

/// The `key<TAB>verdict` lines of the verdict file. Several are kept: each
/// image's kernel is a key of its own, and sessions alternate images.
fn verdicts(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|l| l.split_once('\t'))
}

/// How many verdicts the file keeps, newest last.
const MAX_VERDICTS: usize = 8;

/// Stores what a probe VM's boot showed. Failures to start the probe at all
/// (no `/dev/kvm` access, no QEMU) are not stored: they are cheap to find
/// again and the person may fix them.
fn store_verdict(qemu: &Path, image: &VmImage, verdict: &Result<(), String>) {
    if matches!(verdict, Err(why) if !why.starts_with(PROBE_FAILED)) {
        return;
    }
    if let (Some(key), Some(file)) = (verdict_key(qemu, image), verdict_file()) {
        write_verdict(&file, &key, verdict);
    }
}

/// Writes a verdict atomically; a cache that cannot be written only means
/// the next start probes again.
fn write_verdict(file: &Path, key: &str, verdict: &Result<(), String>) {
    let line = match verdict {
        Ok(()) => format!("{key}\tok"),
        Err(why) => format!("{key}\terr {}", why.replace(['\n', '\t'], " ")),
    };
    let old = std::fs::read_to_string(file).unwrap_or_default();
    let mut lines: Vec<String> = verdicts(&old)
        .filter(|(k, _)| *k != key)
        .map(|(k, v)| format!("{k}\t{v}"))
        .collect();
    lines.push(line);
    let keep = lines.len().saturating_sub(MAX_VERDICTS);
    let mut body = lines[keep..].join("\n");
    body.push('\n');
    let Some(dir) = file.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(".kvm-probe.{}", std::process::id()));
    if std::fs::write(&tmp, body).is_ok() && std::fs::rename(&tmp, file).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// How every verdict of a probe VM that started begins.
const PROBE_FAILED: &str = "a probe VM did not";

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
            Err(format!("{PROBE_FAILED} boot under KVM: {err}"))
        }
        Err(_) => Err(format!(
            "{PROBE_FAILED} reach its init under KVM within {} s (a paravirtualised /dev/kvm, such as PVM, cannot run a standard kernel)",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_verdict_is_read_back_only_under_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cubicle/kvm-probe");
        assert_eq!(read_verdict(&file, "k1"), None, "nothing stored yet");

        write_verdict(&file, "k1", &Ok(()));
        assert_eq!(read_verdict(&file, "k1"), Some(Ok(())));
        assert_eq!(
            read_verdict(&file, "k2"),
            None,
            "another host kernel or QEMU probes again"
        );

        // Two images (two keys) keep a verdict each.
        let why = "a probe VM did not reach its init\nunder KVM".to_owned();
        write_verdict(&file, "k2", &Err(why));
        assert_eq!(
            read_verdict(&file, "k2"),
            Some(Err("a probe VM did not reach its init under KVM".to_owned()))
        );
        assert_eq!(read_verdict(&file, "k1"), Some(Ok(())));

        // A new verdict replaces the old one of its key; the oldest go.
        write_verdict(&file, "k1", &Err("a probe VM did not boot".to_owned()));
        assert!(read_verdict(&file, "k1").unwrap().is_err());
        for i in 0..MAX_VERDICTS {
            write_verdict(&file, &format!("n{i}"), &Ok(()));
        }
        assert_eq!(read_verdict(&file, "k1"), None);
        assert_eq!(read_verdict(&file, "n0"), Some(Ok(())));
    }

    #[test]
    fn a_garbled_verdict_file_means_probe_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kvm-probe");
        std::fs::write(&file, "k1\tmaybe\n").unwrap();
        assert_eq!(read_verdict(&file, "k1"), None);
        std::fs::write(&file, "no tab at all").unwrap();
        assert_eq!(read_verdict(&file, "no tab at all"), None);
    }
}
