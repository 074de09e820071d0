//! `cargo fuzz run marketplace_json`: see [`cubicle_fuzz::marketplace_json`]
//! for what is checked. Relative sources resolve in a small folder made once.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

static ROOT: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let fixture = ROOT.get_or_init(|| {
        let tmp = tempfile::tempdir().ok()?;
        let root = cubicle_fuzz::marketplace_fixture(tmp.path()).ok()?;
        Some((tmp, root))
    });
    if let Some((_, root)) = fixture {
        cubicle_fuzz::marketplace_json(data, root);
    }
});
