//! Measurements of the `vm` backend, printed not asserted (run with
//! `cargo test -p cubicle-sandbox --test vm_bench -- --ignored --nocapture`):
//! boot to guest-ready against plain QEMU booting the same kernel and
//! initramfs to a trivial init (`cubicle.probe=1`), in the same run; warm
//! command round trip p50/p99; QEMU's RSS while idle with 512 MiB; the image
//! size on disk and compressed. The guest is the one `GuestProgram::locate`
//! finds: the development build unless `CUBICLE_GUEST_BIN` names another;
//! for the figures a user sees, point it at a release build (it starts in
//! about half the time under TCG).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod vm_common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use cubicle_protocol::guest::ExecRequest;
use cubicle_sandbox::Computer;
use cubicle_sandbox::vm::VmImage;
use cubicle_sandbox::vm::qemu::host_tsc_khz;
use tokio::io::AsyncBufReadExt as _;

const RUNS: usize = 3;

/// Plain QEMU, same machine options, to the trivial init's first line.
async fn plain_boot(image: &VmImage) -> Duration {
    let mut append = "console=ttyS0 quiet panic=-1 reboot=t cubicle.probe=1".to_owned();
    if let Some(k) = host_tsc_khz() {
        append.push_str(&format!(" tsc_early_khz={k}"));
    }
    let start = Instant::now();
    let mut child = tokio::process::Command::new("qemu-system-x86_64")
        .args([
            "-M",
            "microvm",
            "-accel",
            "tcg",
            "-m",
            "512",
            "-nodefaults",
            "-no-user-config",
        ])
        .args([
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initramfs)
        .args(["-append", &append])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains(cubicle_image::initramfs::PROBE_LINE) {
            break;
        }
    }
    let t = start.elapsed();
    let _ = child.kill().await;
    t
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn vm_measurements() {
    let image = require_vm!();
    let dir = tempfile::tempdir().unwrap();

    let mut plain = Vec::new();
    let mut ready = Vec::new();
    for i in 0..RUNS {
        plain.push(plain_boot(&image).await);
        let vm = vm_common::start(vm_common::config(
            image.clone(),
            &dir.path().join(format!("w{i}")),
            vec![],
        ))
        .await;
        ready.push(vm.boot_time());
        vm.stop().await.unwrap();
    }
    let (p, r) = (median(plain), median(ready));
    println!(
        "boot (TCG, median of {RUNS}): plain kernel+trivial init {p:?}, to guest-ready {r:?}, ratio {:.2}x (goal <= 1.2x)",
        r.as_secs_f64() / p.as_secs_f64()
    );

    let vm = vm_common::start(vm_common::config(
        image.clone(),
        &dir.path().join("warm"),
        vec![],
    ))
    .await;
    for _ in 0..10 {
        vm.exec(ExecRequest::shell("true"), None).await.unwrap();
    }
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let out = vm.exec(ExecRequest::shell("true"), None).await.unwrap();
        times.push(t.elapsed());
        assert_eq!(out.result.code, Some(0));
    }
    times.sort();
    println!(
        "warm `true` round trip (200 runs): p50 {:?}, p99 {:?} (goal p50 <= 3 ms)",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    let mut pings = Vec::new();
    for _ in 0..200 {
        pings.push(vm.guest().ping().await.unwrap());
    }
    pings.sort();
    println!(
        "ping round trip: p50 {:?}, p99 {:?}",
        percentile(&pings, 0.5),
        percentile(&pings, 0.99)
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", vm.host_pid().unwrap())).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("VmRSS: ?");
    println!("QEMU idle, 512 MiB guest: {rss} (goal <= 120 MiB)");
    vm.stop().await.unwrap();

    let mut on_disk = 0u64;
    let mut compressed = 0u64;
    for f in [&image.root_disk, &image.kernel, &image.initramfs] {
        on_disk += std::fs::metadata(f).unwrap().len();
        let out = std::process::Command::new("zstd")
            .args(["-q", "-c", "-T0", "-10"])
            .arg(f)
            .output();
        if let Ok(o) = out {
            compressed += o.stdout.len() as u64;
        }
    }
    let rootfs = image
        .root_disk
        .parent()
        .unwrap()
        .join(cubicle_image::ROOTFS_DIR);
    let du = std::process::Command::new("du")
        .args(["-sb"])
        .arg(&rootfs)
        .output()
        .unwrap();
    let rootfs_bytes: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    println!(
        "image (minimal): VM artefacts {} MB on disk ({} MB with zstd -10), rootfs directory {} MB",
        on_disk >> 20,
        compressed >> 20,
        rootfs_bytes >> 20
    );
}
