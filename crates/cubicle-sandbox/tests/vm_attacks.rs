//! The escape suite against the `vm` backend, in ONE VM booted with the
//! fixtures' grants: every probe planned for the VM
//! (`escape_suite::plan(Backend::Vm)`: [`PROBES`] with the VM's
//! adaptations, plus the VM's own probes) must be contained and the host
//! untouched; then egress through the host's connector (a python3 urllib
//! request via `HTTP_PROXY` reaches a host server, and is refused while the
//! connector refuses); last, a guest that stops answering is detected by
//! the heartbeat and every later call fails cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod vm_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cubicle_protocol::guest::ExecRequest;
use cubicle_sandbox::guest_client::{AsyncReadWrite, EgressConnector};
use cubicle_sandbox::jail::Limits;
use cubicle_sandbox::jail::escape_suite::{self, Backend, Category, Fixtures, PROBES};
use cubicle_sandbox::vm::VmLimits;
use cubicle_sandbox::{Computer, SandboxError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Connects tunnels to a host server while `open`, refuses them otherwise.
struct Switch {
    open: AtomicBool,
    addr: std::net::SocketAddr,
}

#[async_trait]
impl EgressConnector for Switch {
    async fn connect(&self) -> std::io::Result<Box<dyn AsyncReadWrite + Send + Unpin>> {
        if !self.open.load(Ordering::SeqCst) {
            return Err(std::io::ErrorKind::ConnectionRefused.into());
        }
        Ok(Box::new(tokio::net::TcpStream::connect(self.addr).await?))
    }
}

/// A loopback HTTP server standing in for the host's proxy: answers every
/// request with a marker and records the request lines.
async fn http_server() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf);
                log.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or_default().to_owned());
                let body = "HELLO-FROM-HOST";
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, seen)
}

#[test]
fn escape_suite_egress_and_hang_in_one_vm() {
    // Host secrets the VM must not see. Set before any thread exists.
    for (k, v) in [
        ("ANTHROPIC_API_KEY", "sk-ant-test-SECRETKEY"),
        ("AWS_SECRET_ACCESS_KEY", "aws-SECRETKEY"),
        ("SSH_AUTH_SOCK", "/tmp/ssh-XXXX/agent.1"),
    ] {
        // SAFETY: this binary has this one test and no runtime has started
        // yet, so no other thread reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

const URLLIB: &str = "python3 -c \"import urllib.request,sys\ntry: print(urllib.request.urlopen('http://egress.test/hello',timeout=20).read().decode())\nexcept Exception as e: print('REFUSED',type(e).__name__,e)\"";

async fn run() {
    let image = require_vm!();
    let suite_started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let vm_limits = VmLimits {
        max_processes: 256,
        process_memory_bytes: 192 << 20,
        open_files: 1024,
        file_size_bytes: 64 << 20,
        tmp_bytes: 64 << 20,
    };
    let limits = Limits {
        max_processes: vm_limits.max_processes,
        process_memory_bytes: vm_limits.process_memory_bytes,
        open_files: vm_limits.open_files,
        file_size_bytes: vm_limits.file_size_bytes,
        tmp_bytes: vm_limits.tmp_bytes,
        ..Limits::default()
    };
    let mut fixtures = Fixtures::create(&dir.path().join("fixtures"), &limits).unwrap();
    let (server, seen) = http_server().await;
    let switch = Arc::new(Switch {
        open: AtomicBool::new(false),
        addr: server,
    });
    let mut config = vm_common::config(image, &dir.path().join("workspace"), fixtures.grants());
    config.limits = Some(vm_limits);
    config.egress = Some(switch.clone());
    config.heartbeat_interval = Duration::from_secs(1);
    // Long enough that a fork bomb starving the guest of the emulated CPU
    // for a while is not taken for a hang (the probe's bomb runs 4 s).
    config.heartbeat_timeout = Duration::from_secs(30);
    // The hang is to be reported, not repaired (vm_faults tests the repair).
    config.max_restarts = 0;
    let vm = vm_common::start(config).await;
    eprintln!("booted in {:?}; {}", vm.boot_time(), vm.accel_reason());

    // ---- 0. the session's limits hold, as the init (or the fallback) set them ----
    let (limits_seen, code) = vm_common::sh(
        &vm,
        "cat /sys/fs/cgroup/session/pids.max; grep -E 'Max (data size|open files|file size)' /proc/self/limits; \
         df -k /tmp /dev/shm | tail -2; chrt -p $PPID; chrt -p $$",
    )
    .await;
    assert_eq!(code, Some(0), "{limits_seen}");
    for want in [
        "256\n",
        "Max data size             201326592            201326592",
        "Max open files            1024                 1024",
        "Max file size             67108864             67108864",
        "65536",
        // The guest's event loop runs at a real-time priority its children
        // (this shell) do not get.
        "current scheduling policy: SCHED_FIFO|SCHED_RESET_ON_FORK",
        "current scheduling policy: SCHED_OTHER",
    ] {
        assert!(limits_seen.contains(want), "no {want:?} in:\n{limits_seen}");
    }

    // ---- 1. the escape suite ----
    let (plan, not_applicable) = escape_suite::plan(Backend::Vm);
    let mut failures = Vec::new();
    let mut contained = 0;
    for planned in &plan {
        let probe = &planned.probe;
        let started = Instant::now();
        let outcome = escape_suite::run_probe(&vm, &fixtures, probe).await;
        eprintln!(
            "{:<34} {:<11} {:<9} {:>6} ms {} {}",
            outcome.name,
            format!("{:?}", outcome.category),
            if outcome.contained {
                "contained"
            } else {
                "FAILED"
            },
            started.elapsed().as_millis(),
            if planned.adapted.is_some() {
                "[vm]"
            } else {
                "    "
            },
            outcome.detail.chars().take(160).collect::<String>()
        );
        if outcome.contained {
            contained += 1;
        } else {
            failures.push(format!(
                "{}: expected {} — {}",
                outcome.name, outcome.expected, outcome.detail
            ));
        }
        if probe.category == Category::Resources || probe.name == "kill-guest-init" {
            if let Err(e) = escape_suite::session_still_usable(&vm, Duration::from_secs(30)).await {
                failures.push(format!("{}: {e}", probe.name));
                break;
            }
            let host = Instant::now();
            let status = std::process::Command::new("true").status().unwrap();
            assert!(status.success() && host.elapsed() < Duration::from_secs(10));
        }
    }
    for (name, why) in &not_applicable {
        eprintln!("{name:<34} not applicable in a VM: {why}");
    }
    let host_problems = fixtures.verify_host_untouched();
    eprintln!(
        "escape suite on the vm: {contained}/{} contained ({} of {} PROBES adapted, {} not applicable, {} VM-only) in {:?}",
        plan.len(),
        plan.iter().filter(|p| p.adapted.is_some()).count(),
        PROBES.len(),
        not_applicable.len(),
        escape_suite::VM_PROBES.len(),
        suite_started.elapsed()
    );
    assert!(
        failures.is_empty() && host_problems.is_empty(),
        "not contained:\n{}\nhost problems:\n{}",
        failures.join("\n"),
        host_problems.join("\n")
    );
    assert!(plan.len() >= 40, "{} probes", plan.len());

    // ---- 2. egress over the protocol to the host's connector ----
    let sh = |line: &str| {
        let mut req = ExecRequest::shell(line);
        req.timeout_ms = Some(60_000);
        vm.exec(req, None)
    };
    let refused = sh(URLLIB).await.unwrap();
    let out = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert!(out.starts_with("REFUSED"), "{out}");
    assert!(seen.lock().unwrap().is_empty());
    switch.open.store(true, Ordering::SeqCst);
    let ok = sh(URLLIB).await.unwrap();
    let out = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert_eq!(
        out.trim(),
        "HELLO-FROM-HOST",
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["GET http://egress.test/hello HTTP/1.1"]
    );
    // The proxy variables are the only way out: straight to the server's
    // port on the host's loopback nothing answers.
    let direct = sh(&format!(
        "python3 -c \"import socket\ntry: socket.create_connection(('127.0.0.1',{}),timeout=3);print('ESCAPED')\nexcept OSError: print('CONTAINED')\"",
        server.port()
    ))
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&direct.stdout).trim(), "CONTAINED");
    switch.open.store(false, Ordering::SeqCst);
    let again = sh(URLLIB).await.unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("REFUSED"));

    // ---- 3. a hung guest: stop the guest process inside the VM ----
    let qemu = vm.host_pid().unwrap();
    let guest_pid = vm.guest().info().pid;
    let hung = Instant::now();
    let err = sh(&format!("kill -STOP {guest_pid}; sleep 60"))
        .await
        .unwrap_err();
    let detected = hung.elapsed();
    let SandboxError::Disconnected(msg) = &err else {
        panic!("{err}")
    };
    assert!(msg.contains("stopped answering"), "{msg}");
    assert!(msg.ends_with("start a new session"), "{msg}");
    let reason = vm.dead_reason().unwrap();
    assert!(msg.starts_with(&reason), "{msg} / {reason}");
    eprintln!("hang detected in {detected:?}: {msg}");
    let later = sh("echo hi").await.unwrap_err();
    assert!(
        matches!(&later, SandboxError::Disconnected(m) if m == msg),
        "{later}"
    );
    assert!(vm.read_file("/workspace/x", 0, None).await.is_err());
    for _ in 0..100 {
        if vm_common::process_gone(qemu) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(vm_common::process_gone(qemu), "the hung VM's QEMU survived");
    vm.stop().await.unwrap();
    eprintln!("whole test: {:?}", suite_started.elapsed());
}
