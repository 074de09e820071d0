//! `cargo fuzz run skill_md`: see [`cubicle_fuzz::skill_md`] for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cubicle_fuzz::skill_md(data));
