//! Host secrets stay out of the cubicle. A test binary of its own, because
//! it changes the process environment, which is only sound while no other
//! thread runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Setup;
use cubicle_protocol::guest::ExecRequest;
use cubicle_sandbox::Computer;
use pretty_assertions::assert_eq;

#[test]
fn host_api_keys_are_not_visible_inside() {
    // SAFETY: this is the binary's only test and no runtime or other thread
    // has started yet, so nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("ANTHROPIC_API_KEY", "sk-host-secret");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = Setup::new();
        let mut config = s.config(vec![]);
        config.env.insert("SESSION_VAR".to_owned(), "1".to_owned());
        let c = cubicle_sandbox::host::HostComputer::start(config)
            .await
            .unwrap();
        let out = c.exec(ExecRequest::argv(["env"]), None).await.unwrap();
        let mut names: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_owned()))
            .collect();
        names.sort();
        assert_eq!(names, vec!["HOME", "LANG", "PATH", "SESSION_VAR", "TMPDIR"]);
        // Nor is it in the guest process itself.
        let pid = c.guest_pid().unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(!String::from_utf8_lossy(&environ).contains("sk-host-secret"));
        c.stop().await.unwrap();
    });
}
