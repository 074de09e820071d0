//! Shared set-up of the VM tests: the `minimal` image (built on first use
//! when this host can build it), the development guest, and a skip with the
//! reason where QEMU or the image cannot be had. CI installs
//! `qemu-system-x86 mmdebstrap erofs-utils` so that these do not skip.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use cubicle_image::{BuildOptions, Profile};
use cubicle_sandbox::Grant;
use cubicle_sandbox::locate::GuestProgram;
use cubicle_sandbox::vm::{Accel, VmComputer, VmConfig, VmImage};

/// The `minimal` image, built into the user cache if missing; `Err` says
/// why the VM tests cannot run here.
pub fn image() -> Result<VmImage, String> {
    static IMAGE: std::sync::Mutex<Option<Result<VmImage, String>>> = std::sync::Mutex::new(None);
    let mut slot = IMAGE.lock().unwrap_or_else(|e| e.into_inner());
    slot.get_or_insert_with(find_or_build).clone()
}

fn find_or_build() -> Result<VmImage, String> {
    if cubicle_image::builder::find_program("qemu-system-x86_64").is_none() {
        return Err("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into());
    }
    let cache = cubicle_image::default_cache_dir().map_err(|e| e.to_string())?;
    if let Ok(img) = cubicle_image::find_latest(&cache, Profile::Minimal) {
        return Ok(VmImage::from_image(&img));
    }
    cubicle_image::builder::check_host()
        .map_err(|e| format!("no minimal image and cannot build one: {e}"))?;
    eprintln!(
        "building the minimal image into {} (about two minutes)",
        cache.display()
    );
    let img = cubicle_image::build(&BuildOptions::new(Profile::Minimal, cache), &mut |s| {
        eprintln!("{s}")
    })
    .map_err(|e| e.to_string())?;
    Ok(VmImage::from_image(&img))
}

/// Returns early from a test, saying why, where VMs cannot run.
#[macro_export]
macro_rules! require_vm {
    () => {
        match vm_common::image() {
            Ok(image) => image,
            Err(why) => {
                eprintln!("SKIPPED: the vm backend cannot run here: {why}");
                return;
            }
        }
    };
}

/// A TCG config with the development guest shared in.
pub fn config(image: VmImage, workspace: &Path, grants: Vec<Grant>) -> VmConfig {
    let mut c = VmConfig::new(image, workspace.to_path_buf());
    c.grants = grants;
    c.accel = Accel::Tcg;
    c.guest = Some(match GuestProgram::locate() {
        Ok(g) => g,
        Err(e) => panic!("{e}\nrun `cargo build -p cubicle-guest` first"),
    });
    c.boot_timeout = Duration::from_secs(120);
    c
}

/// Starts a VM or fails the test with the reason.
pub async fn start(config: VmConfig) -> VmComputer {
    match VmComputer::start(config).await {
        Ok(vm) => vm,
        Err(e) => panic!("the VM did not start: {e}"),
    }
}

/// Whether a process is gone (or a zombie).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z')),
    }
}

/// Runs `line` with `sh -c` (60 s timeout); its stdout then stderr, and its
/// exit code.
pub async fn try_sh(
    computer: &dyn cubicle_sandbox::Computer,
    line: &str,
) -> Result<(String, Option<i32>), cubicle_sandbox::SandboxError> {
    let mut req = cubicle_protocol::guest::ExecRequest::shell(line);
    req.timeout_ms = Some(60_000);
    let out = computer.exec(req, None).await?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        out.result.code,
    ))
}

/// [`try_sh`], failing the test if the request fails.
pub async fn sh(computer: &dyn cubicle_sandbox::Computer, line: &str) -> (String, Option<i32>) {
    match try_sh(computer, line).await {
        Ok(r) => r,
        Err(e) => panic!("`{line}` failed: {e}"),
    }
}
