//! Faults of the `vm` backend: `kill -9` of the process that started a VM
//! leaves no QEMU behind (in a child process of its own); a QEMU frozen from
//! the host (`SIGSTOP`) is found by the heartbeat, killed, reported and
//! replaced; a full overlay, a guest killed mid-command and a vanished share
//! leave a usable session; a missing QEMU names its package.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod vm_common;

use std::time::{Duration, Instant};

use cubicle_sandbox::Computer;

/// Set in the child: start a VM, print its QEMU pid, wait to be killed.
const CHILD: &str = "CUBICLE_VM_FAULTS_CHILD";

#[test]
fn qemu_dies_with_a_parent_killed_by_sigkill() {
    if let Ok(dir) = std::env::var(CHILD) {
        child(std::path::Path::new(&dir));
        return;
    }
    if let Err(why) = vm_common::image() {
        eprintln!("SKIPPED: the vm backend cannot run here: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("qemu.pid");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "qemu_dies_with_a_parent_killed_by_sigkill",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The child writes its QEMU's pid once the VM answers.
    let started = Instant::now();
    let qemu = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.strip_suffix('\n').and_then(|p| p.parse::<u32>().ok()))
        {
            break pid;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child never started its VM ({status})");
        }
        if started.elapsed() > Duration::from_secs(180) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the child's VM did not start within 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!vm_common::process_gone(qemu));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed = Instant::now();
    while !vm_common::process_gone(qemu) && killed.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone = vm_common::process_gone(qemu);
    if !gone {
        // Clean up the stray before failing.
        // SAFETY: kill with the pid of the QEMU this test started.
        unsafe { libc::kill(qemu as i32, libc::SIGKILL) };
    }
    assert!(gone, "QEMU {qemu} outlived its parent's kill -9");
    eprintln!(
        "QEMU gone {:?} after its parent's kill -9",
        killed.elapsed()
    );
}

#[tokio::test]
async fn a_frozen_qemu_is_found_by_the_heartbeat_and_replaced() {
    let image = require_vm!();
    let dir = tempfile::tempdir().unwrap();
    let mut config = vm_common::config(image, dir.path(), vec![]);
    config.heartbeat_interval = Duration::from_millis(500);
    config.heartbeat_timeout = Duration::from_secs(3);
    let vm = vm_common::start(config).await;
    let qemu = vm.host_pid().unwrap();
    // SAFETY: signals the QEMU this test started.
    unsafe { libc::kill(qemu as i32, libc::SIGSTOP) };
    let frozen = Instant::now();
    let mut req = cubicle_protocol::guest::ExecRequest::shell("echo hi");
    req.timeout_ms = Some(60_000);
    let err = vm.exec(req, None).await.unwrap_err();
    let cubicle_sandbox::SandboxError::Disconnected(msg) = &err else {
        panic!("{err}")
    };
    assert!(msg.contains("stopped answering"), "{msg}");
    assert!(msg.contains("A fresh VM was started"), "{msg}");
    while !vm_common::process_gone(qemu) && frozen.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        vm_common::process_gone(qemu),
        "the frozen QEMU was not killed"
    );
    // The replacement answers.
    assert_ne!(vm.host_pid(), Some(qemu));
    assert_eq!(vm.restarts(), 1);
    assert!(vm.dead_reason().is_none());
    assert!(vm.list_dir("/workspace").await.is_ok());
    vm.stop().await.unwrap();
}

use vm_common::try_sh as sh;

/// A full overlay, the guest killed in the middle of a command, a granted
/// folder deleted on the host: each gives an error the model can act on and
/// leaves a session that still works.
#[tokio::test]
async fn faults_leave_a_usable_session() {
    let image = require_vm!();
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let granted = dir.path().join("granted");
    std::fs::create_dir_all(&granted).unwrap();
    std::fs::write(granted.join("notes.txt"), "kept\n").unwrap();
    let mut config = vm_common::config(
        image,
        &ws,
        vec![cubicle_sandbox::Grant {
            host_path: granted.clone(),
            name: "granted".to_owned(),
            writable: true,
        }],
    );
    config.overlay_mib = 32;
    let vm = vm_common::start(config).await;

    // A full overlay: the write fails with ENOSPC, the VM carries on.
    let (out, code) = sh(
        &vm,
        "head -c 64M /dev/zero > /var/tmp/fill; echo rc=$?; rm -f /var/tmp/fill",
    )
    .await
    .unwrap();
    assert!(out.contains("No space left on device"), "{out}");
    assert!(!out.contains("rc=0"), "{out}");
    assert_eq!(code, Some(0));
    assert_eq!(sh(&vm, "echo still here").await.unwrap().0, "still here\n");

    // The guest killed while a command runs.
    sh(&vm, "echo before > /workspace/before.txt")
        .await
        .unwrap();
    let guest = vm.guest().info().pid;
    let first_qemu = vm.host_pid().unwrap();
    let err = sh(&vm, &format!("echo started; kill -9 {guest}; sleep 30"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("A fresh VM was started"), "{msg}");
    assert!(
        msg.contains("/workspace and the granted folders are as they were"),
        "{msg}"
    );
    assert_ne!(vm.host_pid(), Some(first_qemu));
    assert!(vm_common::process_gone(first_qemu));
    let (out, _) = sh(&vm, "cat /workspace/before.txt /mnt/granted/notes.txt")
        .await
        .unwrap();
    assert_eq!(out, "before\nkept\n");

    // A granted folder deleted on the host: its commands fail, others work.
    std::fs::remove_dir_all(&granted).unwrap();
    let (out, code) = sh(&vm, "ls /mnt/granted/notes.txt").await.unwrap();
    assert_ne!(code, Some(0), "{out}");
    assert!(
        vm.read_file("/mnt/granted/notes.txt", 0, None)
            .await
            .is_err()
    );
    assert_eq!(sh(&vm, "echo alive").await.unwrap().0, "alive\n");
    vm.write_file("/workspace/after.txt", b"ok".to_vec())
        .await
        .unwrap();
    assert_eq!(std::fs::read(ws.join("after.txt")).unwrap(), b"ok");

    let qemu = vm.host_pid().unwrap();
    vm.stop().await.unwrap();
    assert!(vm_common::process_gone(qemu));
}

/// Without QEMU the error names the package to install.
#[tokio::test]
async fn missing_qemu_names_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let image_dir = dir.path().join("image");
    std::fs::create_dir_all(&image_dir).unwrap();
    let image = cubicle_sandbox::vm::VmImage::in_dir(&image_dir);
    for f in [&image.kernel, &image.initramfs, &image.root_disk] {
        std::fs::write(f, b"not really").unwrap();
    }
    let mut config = cubicle_sandbox::vm::VmConfig::new(image, dir.path().join("ws"));
    config.qemu = dir.path().join("no-such-qemu-system-x86_64");
    let err = cubicle_sandbox::vm::VmComputer::start(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("qemu-system-x86"), "{err}");
    assert!(err.contains("not installed"), "{err}");
}

fn child(dir: &std::path::Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let image = vm_common::image().unwrap();
        let vm = vm_common::start(vm_common::config(image, &dir.join("ws"), vec![])).await;
        let mut req = cubicle_protocol::guest::ExecRequest::shell("echo up");
        req.timeout_ms = Some(30_000);
        vm.exec(req, None).await.unwrap();
        let tmp = dir.join("qemu.pid.tmp");
        std::fs::write(&tmp, format!("{}\n", vm.host_pid().unwrap())).unwrap();
        std::fs::rename(&tmp, dir.join("qemu.pid")).unwrap();
        std::thread::sleep(Duration::from_secs(300));
    });
}
