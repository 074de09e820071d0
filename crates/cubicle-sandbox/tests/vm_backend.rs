//! The `vm` backend doing its job and resisting attacks: commands run in a
//! QEMU micro-VM booted from the cubicle image; the workspace and the grants
//! behave as granted; a symbolic link in a share cannot reach the host;
//! several VMs coexist; stopping leaves no QEMU behind and a dead VM is
//! reported clearly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod vm_common;

use std::time::Duration;

use cubicle_protocol::guest::ExecRequest;
use cubicle_sandbox::{Computer, Grant, SandboxError};
use pretty_assertions::assert_eq;

use vm_common::sh;

fn grant(path: &std::path::Path, name: &str, writable: bool) -> Grant {
    Grant {
        host_path: path.to_path_buf(),
        name: name.to_owned(),
        writable,
    }
}

#[tokio::test]
async fn runs_commands_and_shares_folders_as_granted() {
    let image = require_vm!();
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let ro = dir.path().join("ro");
    let rw = dir.path().join("rw");
    for d in [&ro, &rw] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(ro.join("in.txt"), "read me\n").unwrap();
    std::fs::write(rw.join("old.txt"), "old\n").unwrap();
    // A secret outside every grant, and links to it from inside one.
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "HOST-SECRET-42\n").unwrap();
    std::os::unix::fs::symlink(&secret, ro.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", ro.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", ro.join("shadow-link")).unwrap();

    // A plugin's skill, shown read-only two levels below /mnt/.skills.
    let skill = dir.path().join("skill");
    std::fs::create_dir_all(skill.join("scripts")).unwrap();
    std::fs::write(
        skill.join("scripts/hello.sh"),
        "echo hello from the skill\n",
    )
    .unwrap();

    let mut config = vm_common::config(
        image,
        &ws,
        vec![grant(&ro, "ro", false), grant(&rw, "rw", true)],
    );
    config.read_only = vec![("/mnt/.skills/plug/tool".to_owned(), skill.clone())];
    let vm = vm_common::start(config).await;
    eprintln!("booted in {:?}; {}", vm.boot_time(), vm.accel_reason());
    let info = vm.info();
    assert_eq!((info.backend.as_str(), info.isolated), ("vm", true));
    assert_eq!(info.workspace, "/workspace");

    assert_eq!(sh(&vm, "echo ok").await, ("ok\n".to_owned(), Some(0)));
    assert_eq!(sh(&vm, "hostname; pwd").await.0, "cubicle\n/workspace\n");
    assert_eq!(sh(&vm, "python3 -c 'print(6*7)'").await.0, "42\n");

    // The workspace is the host folder, both ways.
    sh(&vm, "echo from-guest > /workspace/g.txt").await;
    assert_eq!(
        std::fs::read_to_string(ws.join("g.txt")).unwrap(),
        "from-guest\n"
    );
    std::fs::write(ws.join("h.txt"), "from-host\n").unwrap();
    assert_eq!(sh(&vm, "cat /workspace/h.txt").await.0, "from-host\n");
    vm.write_file("/workspace/sub/w.txt", b"via protocol".to_vec())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(ws.join("sub/w.txt")).unwrap(),
        b"via protocol"
    );

    // Read-only grant: readable, not writable, on the host untouched.
    assert_eq!(sh(&vm, "cat /mnt/ro/in.txt").await.0, "read me\n");
    let (out, code) = sh(&vm, "echo x > /mnt/ro/in.txt; echo y > /mnt/ro/new.txt").await;
    assert_ne!(code, Some(0));
    assert!(out.contains("Read-only file system"), "{out}");
    assert_eq!(
        std::fs::read_to_string(ro.join("in.txt")).unwrap(),
        "read me\n"
    );
    assert!(!ro.join("new.txt").exists());
    assert!(vm.write_file("/mnt/ro/p.txt", b"x".to_vec()).await.is_err());

    // The skill's bundled script runs inside; its folder is read-only.
    assert_eq!(
        sh(&vm, "sh /mnt/.skills/plug/tool/scripts/hello.sh").await,
        ("hello from the skill\n".to_owned(), Some(0))
    );
    let (_, code) = sh(&vm, "echo x > /mnt/.skills/plug/tool/scripts/hello.sh").await;
    assert_ne!(code, Some(0));
    assert_eq!(
        std::fs::read_to_string(skill.join("scripts/hello.sh")).unwrap(),
        "echo hello from the skill\n"
    );

    // Read-write grant writes through.
    let (_, code) = sh(&vm, "echo new > /mnt/rw/new.txt && rm /mnt/rw/old.txt").await;
    assert_eq!(code, Some(0));
    assert_eq!(
        std::fs::read_to_string(rw.join("new.txt")).unwrap(),
        "new\n"
    );
    assert!(!rw.join("old.txt").exists());

    // Symbolic links in a share resolve inside the VM, never on the host.
    let (out, _) = sh(
        &vm,
        "readlink /mnt/ro/abs-link; cat /mnt/ro/abs-link /mnt/ro/rel-link 2>&1; \
         cat /mnt/ro/shadow-link | head -c 200",
    )
    .await;
    assert!(out.starts_with(&format!("{}\n", secret.display())), "{out}");
    assert!(!out.contains("HOST-SECRET-42"), "{out}");
    let host_shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    if let Some(root_line) = host_shadow.lines().find(|l| l.starts_with("root:")) {
        assert!(
            !out.contains(root_line),
            "the host's /etc/shadow leaked: {out}"
        );
    }
    // `..` out of a share stops at the guest's own tree.
    assert_eq!(sh(&vm, "ls /mnt/ro/../").await.0, "ro\nrw\n");

    // Writes outside the shares go to the RAM overlay, never to the image.
    assert_eq!(
        sh(&vm, "echo x > /etc/cubicle-test && cat /etc/cubicle-test")
            .await
            .0,
        "x\n"
    );
    assert_eq!(
        sh(&vm, "mount | grep ' / '").await.0.split(' ').next(),
        Some("overlay")
    );

    let pid = vm.host_pid().unwrap();
    vm.stop().await.unwrap();
    assert!(
        vm_common::process_gone(pid),
        "QEMU {pid} still runs after stop"
    );
    let err = vm.exec(ExecRequest::shell("true"), None).await.unwrap_err();
    assert!(matches!(err, SandboxError::Disconnected(_)), "{err}");
}

#[tokio::test]
async fn two_vms_at_once_each_with_their_own_overlay() {
    let image = require_vm!();
    let dir = tempfile::tempdir().unwrap();
    let a = vm_common::start(vm_common::config(
        image.clone(),
        &dir.path().join("a"),
        vec![],
    ));
    let b = vm_common::start(vm_common::config(image, &dir.path().join("b"), vec![]));
    let (a, b) = tokio::join!(a, b);
    sh(&a, "echo A > /etc/which").await;
    sh(&b, "echo B > /etc/which").await;
    assert_eq!(sh(&a, "cat /etc/which").await.0, "A\n");
    assert_eq!(sh(&b, "cat /etc/which").await.0, "B\n");
    let pids = [a.host_pid().unwrap(), b.host_pid().unwrap()];
    assert_ne!(pids[0], pids[1]);
    a.stop().await.unwrap();
    assert_eq!(sh(&b, "echo still").await.0, "still\n");
    drop(b);
    // Dropping kills at once; give the reaper a moment.
    for _ in 0..100 {
        if pids.iter().all(|p| vm_common::process_gone(*p)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in pids {
        assert!(vm_common::process_gone(p), "QEMU {p} outlived its computer");
    }
}

#[tokio::test]
async fn a_killed_vm_is_reported_clearly() {
    let image = require_vm!();
    let dir = tempfile::tempdir().unwrap();
    let mut config = vm_common::config(image, dir.path(), vec![]);
    config.max_restarts = 0;
    let vm = vm_common::start(config).await;
    let pid = vm.host_pid().unwrap();
    // SAFETY: kill with a pid this test owns (the VM's QEMU) has no memory
    // effects.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let err = vm
        .exec(ExecRequest::shell("echo hi"), None)
        .await
        .unwrap_err();
    let SandboxError::Disconnected(msg) = &err else {
        panic!("{err}")
    };
    assert!(msg.contains("the VM exited unexpectedly"), "{msg}");
    assert!(msg.ends_with("start a new session"), "{msg}");
    let reason = vm.dead_reason().unwrap();
    assert!(msg.starts_with(&reason), "{msg} / {reason}");
    vm.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_image_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let image = cubicle_sandbox::vm::VmImage::in_dir(&dir.path().join("nothing"));
    let err = cubicle_sandbox::vm::VmComputer::start(cubicle_sandbox::vm::VmConfig::new(
        image,
        dir.path().join("ws"),
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("is missing — build the image with `cubicle image build`"),
        "{err}"
    );
}
