//! The fuzz targets' checks on stable, without cargo-fuzz: every seed in
//! `fuzz/seeds/<target>/` and every reproducer of a fixed bug in
//! `fuzz/crashes/<target>/` goes through the same function the fuzzer calls
//! (`fuzz/src/lib.rs`, compiled here from its source), so CI keeps each
//! found bug fixed. Reproducers of bugs found but not fixed yet wait in
//! `fuzz/open/<target>/`; a test checks that they still fail, so a fix is
//! noticed and the file moved to `crashes/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../fuzz/src/lib.rs"]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files in `fuzz/<kind>/<target>/`, sorted; none when it is absent.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Whether `check` panics on `data`.
fn panics(check: &impl Fn(&[u8]), data: &[u8]) -> bool {
    catch_unwind(AssertUnwindSafe(|| check(data))).is_err()
}

/// Runs `check` on every seed and reproducer of `target`; fails naming each
/// input that panicked, and when there are no seeds at all.
fn run(target: &str, check: impl Fn(&[u8])) {
    let seeds = inputs("seeds", target);
    assert!(
        !seeds.is_empty(),
        "no seeds in {}",
        fuzz_dir().join("seeds").join(target).display()
    );
    let mut failed = Vec::new();
    for file in seeds.iter().chain(&inputs("crashes", target)) {
        if panics(&check, &std::fs::read(file).unwrap()) {
            failed.push(file.display().to_string());
        }
    }
    assert_eq!(failed, Vec::<String>::new(), "inputs that panicked");
    let mut fixed = Vec::new();
    for file in inputs("open", target) {
        if !panics(&check, &std::fs::read(&file).unwrap()) {
            fixed.push(file.display().to_string());
        }
    }
    assert_eq!(
        fixed,
        Vec::<String>::new(),
        "fixed: move these from fuzz/open/{target}/ to fuzz/crashes/{target}/"
    );
}

#[test]
fn skill_md() {
    run("skill_md", harness::skill_md);
}

#[test]
fn plugin_json() {
    run("plugin_json", harness::plugin_json);
}

#[test]
fn marketplace_json() {
    let tmp = tempfile::tempdir().unwrap();
    let root = harness::marketplace_fixture(tmp.path()).unwrap();
    run("marketplace_json", |data| {
        harness::marketplace_json(data, &root)
    });
}

#[test]
fn hooks_json() {
    run("hooks_json", harness::hooks_json);
}

#[test]
fn mcp_json() {
    run("mcp_json", harness::mcp_json);
}

#[test]
fn skill_archive() {
    run("skill_archive", harness::skill_archive);
}
