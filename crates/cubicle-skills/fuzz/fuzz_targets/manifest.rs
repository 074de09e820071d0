//! Fuzzes the plugin, marketplace, hooks and `.mcp.json` readers: any JSON
//! must give a value, warnings or an error, never a panic.
#![no_main]

use std::path::Path;

use cubicle_skills::hooks::HookSet;
use cubicle_skills::marketplace::Marketplace;
use cubicle_skills::mcp::parse_servers;
use cubicle_skills::plugin::PluginManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let path = Path::new("/fuzz/.claude-plugin/plugin.json");
    let _ = PluginManifest::from_json(&value, path, &mut Vec::new());
    if let Ok(m) = Marketplace::from_json(&value, Path::new("/fuzz"), path) {
        for e in &m.plugins {
            let _ = m.resolve_relative(&e.manifest.name, &e.source.to_string());
        }
    }
    let _ = HookSet::from_json(&value, "fuzz", &|s| s.to_owned(), &[], &mut Vec::new());
    let _ = parse_servers(&value, "fuzz", "p_", &|s| s.to_owned(), &mut Vec::new());
});
