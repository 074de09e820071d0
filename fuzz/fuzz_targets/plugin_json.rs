//! `cargo fuzz run plugin_json`: see [`cubicle_fuzz::plugin_json`] for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cubicle_fuzz::plugin_json(data));
