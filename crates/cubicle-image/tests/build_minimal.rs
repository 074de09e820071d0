//! Builds the real `minimal` image with mmdebstrap (about a minute, as root)
//! and checks what came out. Skips, saying why, where the host lacks the
//! tools or the rights; CI installs them (see the crate docs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cubicle_image::{BuildOptions, Profile, build, builder::check_host, verify};

#[test]
fn builds_and_verifies_the_minimal_image() {
    if let Err(why) = check_host() {
        eprintln!("SKIPPED: cannot build an image here: {why}");
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let mut steps = Vec::new();
    let image = build(
        &BuildOptions::new(Profile::Minimal, cache.path().to_path_buf()),
        &mut |s| {
            eprintln!("{s}");
            steps.push(s);
        },
    )
    .unwrap();
    assert_eq!(steps.len(), 7, "{steps:?}");
    let m = verify(&image.dir).unwrap();
    assert_eq!(m.profile, Profile::Minimal);
    assert_eq!(image.dir, cache.path().join(&m.id));
    for p in [
        "python3",
        "ca-certificates",
        "busybox-static",
        "coreutils",
        "bash",
    ] {
        assert!(
            m.packages.contains_key(p),
            "{p} not installed: {:?}",
            m.packages.keys()
        );
    }
    assert!(m.missing.is_empty(), "{:?}", m.missing);
    assert!(m.modules.iter().any(|n| n == "9pnet_virtio"));
    assert!(image.rootfs().join("usr/bin/python3").exists());
    assert!(image.kernel().is_file() && image.initramfs().is_file() && image.root_disk().is_file());
    eprintln!(
        "image {}: root disk {} MB, kernel {} MB, initramfs {} MB",
        m.id,
        m.artefacts["root.erofs"].bytes >> 20,
        m.artefacts["vmlinuz"].bytes >> 20,
        m.artefacts["initramfs.cpio"].bytes >> 20
    );
    // A tampered root disk is caught by name.
    std::fs::write(image.root_disk(), b"tampered").unwrap();
    let err = verify(&image.dir).unwrap_err().to_string();
    assert!(err.contains("root.erofs has 8 bytes"), "{err}");
}
