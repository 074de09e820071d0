//! Faults of the `vm` backend: `kill -9` of the process that started a VM
//! leaves no QEMU behind (in a child process of its own); a QEMU frozen from
//! the host (`SIGSTOP`) is found by the heartbeat, killed and reported.

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
async fn a_frozen_qemu_is_found_by_the_heartbeat() {
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
    assert!(
        frozen.elapsed() < Duration::from_secs(15),
        "{:?}",
        frozen.elapsed()
    );
    assert_eq!(vm.dead_reason().as_deref(), Some(msg.as_str()));
    while !vm_common::process_gone(qemu) && frozen.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        vm_common::process_gone(qemu),
        "the frozen QEMU was not killed"
    );
    assert!(vm.list_dir("/workspace").await.is_err());
    vm.stop().await.unwrap();
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
