//! The jail on the cubicle image's root file system: commands see the
//! image's programs and packages (not the host's), and the isolation holds
//! as on the host's system directories. Needs the `minimal` image, which the
//! VM tests' set-up finds or builds; skips where neither can be had.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jail_common;
mod vm_common;

use cubicle_sandbox::Computer;
use cubicle_sandbox::jail::JailComputer;
use vm_common::sh;

#[tokio::test]
async fn commands_run_on_the_image_root() {
    require_jail!();
    let image = match vm_common::image() {
        Ok(i) => i,
        Err(why) => {
            eprintln!("SKIPPED: no cubicle image: {why}");
            return;
        }
    };
    let image_dir = image.root_disk.parent().unwrap().to_path_buf();
    let manifest = cubicle_image::Manifest::load(&image_dir).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = jail_common::config(&dir.path().join("ws"), vec![]);
    config.rootfs = Some(image_dir.join("rootfs"));
    let jail = JailComputer::start(config).await.unwrap();

    // The package database is the image's, not the host's.
    let (out, code) = sh(&jail, "dpkg-query -W -f='${Package}\\n' | wc -l").await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.trim(), manifest.packages.len().to_string());
    // Its Python runs, writes go to /workspace, the image stays read-only.
    let (out, code) = sh(
        &jail,
        "python3 -c 'import sys; print(sys.version_info[0])' && echo hi > /workspace/f && cat /workspace/f",
    )
    .await;
    assert_eq!((out.as_str(), code), ("3\nhi\n", Some(0)));
    let (out, code) = sh(&jail, "touch /usr/bin/planted 2>&1; echo rc=$?").await;
    assert!(out.contains("rc=1"), "{out}");
    assert_eq!(code, Some(0));
    assert!(!image_dir.join("rootfs/usr/bin/planted").exists());
    // Nothing of the host's home or the image's /root is there.
    let (out, _) = sh(
        &jail,
        "ls -A /root /home 2>/dev/null | grep -v ':$' | wc -l",
    )
    .await;
    assert_eq!(out.trim(), "0");
    jail.stop().await.unwrap();
}
