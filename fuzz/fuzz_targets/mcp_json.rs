//! `cargo fuzz run mcp_json`: see [`cubicle_fuzz::mcp_json`] for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cubicle_fuzz::mcp_json(data));
