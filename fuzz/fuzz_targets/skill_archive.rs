//! `cargo fuzz run skill_archive`: see [`cubicle_fuzz::skill_archive`] for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cubicle_fuzz::skill_archive(data));
