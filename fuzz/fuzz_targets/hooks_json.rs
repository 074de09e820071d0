//! `cargo fuzz run hooks_json`: see [`cubicle_fuzz::hooks_json`] for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cubicle_fuzz::hooks_json(data));
