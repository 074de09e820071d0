//! Fuzzes `.skill` import from bytes: any input must install into the
//! temporary folder or be refused, and nothing may appear outside it.
#![no_main]

use cubicle_skills::ImportLimits;
use cubicle_skills::import::import_archive_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tmp) = tempfile::tempdir() else { return };
    let install = tmp.path().join("skills");
    let limits = ImportLimits {
        max_entries: 64,
        max_file_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        max_ratio: 100,
    };
    let _ = import_archive_bytes(data, &install, None, limits);
    for entry in std::fs::read_dir(tmp.path()).into_iter().flatten().flatten() {
        assert_eq!(entry.file_name(), "skills", "wrote outside the install folder");
    }
});
