//! What each fuzz target checks, one function per target, taking the raw
//! input bytes. Any input must give a value, warnings or an error: a panic
//! here is a bug. Beyond "no panic", each function asserts what the parser
//! promises in its docs (names valid, paths inside their root, nothing
//! written outside the install folder, nothing half-installed).
//!
//! The fuzz targets in `fuzz_targets/` call these, and so does the stable
//! regression test `crates/cubicle-skills/tests/fuzz_corpus.rs` (which
//! includes this file by path) over every seed and crash reproducer.

use std::path::{Path, PathBuf};

use cubicle_skills::hooks::{HookEvent, HookInput, HookSet};
use cubicle_skills::import::{import_archive_bytes, rewrite_name};
use cubicle_skills::marketplace::{Marketplace, PluginSource};
use cubicle_skills::mcp::{McpTransport, parse_servers, valid_server_name};
use cubicle_skills::plugin::{PluginManifest, expand_root, validate_plugin_name};
use cubicle_skills::{ImportLimits, Skill, SkillSource, frontmatter};

/// The plugin root variables expand to this, as for an installed plugin.
const PLUGIN_ROOT: &str = "/mnt/.plugins/fuzz";

/// The name `--as` gives in the archive and rename checks.
const NEW_NAME: &str = "renamed-by-fuzz";

fn json(data: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice(data).ok()
}

/// `SKILL.md`: the fence splitter, the lenient frontmatter parser, the raw
/// field reader (agent definitions) and the skill built from them; and the
/// import's `name` rewrite, which must leave a skill called the new name.
pub fn skill_md(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/skills/fuzz/SKILL.md");
    if let Ok(split) = frontmatter::split(text) {
        assert!(split.yaml.len() <= frontmatter::MAX_FRONTMATTER_BYTES);
        assert!(text.ends_with(split.body), "the body is the text's tail");
        if let Ok((_, warnings)) = frontmatter::parse(split.yaml, file, split.yaml_first_line) {
            // YAML counts a lone CR as a line break too, as editors do.
            let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count();
            let last = u64::try_from(lines).unwrap_or(u64::MAX);
            for w in &warnings {
                if let Some(line) = w.line {
                    assert!(
                        line >= 1 && line <= last,
                        "warning line {line} of {last}: {w}"
                    );
                }
            }
        }
        let _ = frontmatter::fields(split.yaml, split.yaml_first_line);
    }
    let dir = Path::new("/skills/fuzz");
    let loaded = Skill::from_text(dir, SkillSource::User, text);
    if let Ok(skill) = &loaded {
        assert!(
            !skill.description.trim().is_empty(),
            "a loaded skill has a description"
        );
    }
    let renamed = rewrite_name(text, NEW_NAME);
    if loaded.is_ok() {
        // What `cubicle skill import --as` relies on: a skill that loaded
        // either loads after the rewrite under the new name, or the rewrite
        // is refused with a reason; never another name left in.
        if let Ok(renamed) = renamed {
            match Skill::from_text(&dir.with_file_name(NEW_NAME), SkillSource::User, &renamed) {
                Ok(skill) => assert_eq!(
                    skill.frontmatter.name.as_deref(),
                    Some(NEW_NAME),
                    "rewrite_name left another name in:\n{renamed}"
                ),
                Err(e) => panic!("rewrite_name broke a loadable SKILL.md ({e}):\n{renamed}"),
            }
        }
    }
}

/// `.claude-plugin/plugin.json`: a manifest that reads has a valid name.
pub fn plugin_json(data: &[u8]) {
    let Some(value) = json(data) else { return };
    let origin = Path::new("/fuzz/.claude-plugin/plugin.json");
    let mut warnings = Vec::new();
    if let Ok(mut manifest) = PluginManifest::from_json(&value, origin, &mut warnings) {
        assert!(
            validate_plugin_name(&manifest.name).is_ok(),
            "accepted the invalid name {:?}",
            manifest.name
        );
        let other = manifest.clone();
        manifest.supplement(&other);
        let _ = manifest.declares_components();
    }
}

/// Lays out the folder `marketplace_json` resolves relative sources in: a
/// plugin folder, a file, and a symbolic link that leads out of the root.
pub fn marketplace_fixture(base: &Path) -> std::io::Result<PathBuf> {
    let root = base.join("market");
    std::fs::create_dir_all(root.join("plugins/fmt/.claude-plugin"))?;
    std::fs::create_dir_all(base.join("outside/.claude-plugin"))?;
    std::fs::write(
        root.join("plugins/fmt/.claude-plugin/plugin.json"),
        "{\"name\":\"fmt\"}",
    )?;
    std::fs::write(root.join("README.md"), "market\n")?;
    #[cfg(unix)]
    {
        let link = root.join("plugins/escape");
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("../../outside", &link)?;
        }
    }
    Ok(root)
}

/// `.claude-plugin/marketplace.json` for the repository at `root` (made by
/// [`marketplace_fixture`]): entries have valid names, and a relative source
/// that resolves is a folder inside the root, links followed.
pub fn marketplace_json(data: &[u8], root: &Path) {
    let Some(value) = json(data) else { return };
    let path = root.join(".claude-plugin/marketplace.json");
    let Ok(market) = Marketplace::from_json(&value, root, &path) else {
        return;
    };
    let Ok(real_root) = root.canonicalize() else {
        return;
    };
    for entry in &market.plugins {
        assert!(validate_plugin_name(&entry.manifest.name).is_ok());
        let _ = entry.source.git_url();
        if let PluginSource::Relative(rel) = &entry.source
            && let Ok(dir) = market.resolve_relative(&entry.manifest.name, rel)
        {
            let real = dir.canonicalize().unwrap_or_default();
            assert!(
                real.starts_with(&real_root) && real.is_dir(),
                "source {rel:?} resolved to {} outside {}",
                real.display(),
                real_root.display()
            );
        }
    }
}

/// `hooks/hooks.json`: every hook kept is counted by its event and runs a
/// non-empty command; matching never panics, whatever the matcher.
pub fn hooks_json(data: &[u8]) {
    let Some(value) = json(data) else { return };
    let expand = |s: &str| expand_root(s, PLUGIN_ROOT);
    let mut warnings = Vec::new();
    let set = HookSet::from_json(&value, "hooks.json", &expand, &[], &mut warnings);
    let counted: usize = set.summary().iter().map(|(_, n)| n).sum();
    assert_eq!(counted, set.len());
    for event in HookEvent::ALL {
        for target in ["Bash", "", "startup"] {
            let input = HookInput::new(event, "s", "/t.jsonl", "/work")
                .with("tool_name", serde_json::json!(target))
                .with("source", serde_json::json!(target))
                .with("trigger", serde_json::json!(target));
            for command in set.matching(&input) {
                assert!(
                    !command.command.trim().is_empty(),
                    "an empty hook command was kept"
                );
            }
        }
    }
}

/// `.mcp.json`: every server kept has a valid, prefixed name, a command or
/// an http(s) URL.
pub fn mcp_json(data: &[u8]) {
    let Some(value) = json(data) else { return };
    let expand = |s: &str| expand_root(s, PLUGIN_ROOT);
    let mut warnings = Vec::new();
    let prefix = "plugin_fuzz_";
    for server in parse_servers(&value, ".mcp.json", prefix, &expand, &mut warnings) {
        assert!(
            valid_server_name(&server.name),
            "kept the name {:?}",
            server.name
        );
        assert!(server.name.starts_with(prefix));
        match &server.transport {
            McpTransport::Stdio { command, .. } => assert!(!command.trim().is_empty()),
            McpTransport::Http { url, .. } => {
                assert!(url.starts_with("http://") || url.starts_with("https://"));
            }
        }
    }
}

/// A `.skill` archive (zip bytes), imported as it is and with `--as`: it
/// installs one folder named as the report says, holding a loadable
/// `SKILL.md` with that name, or it is refused leaving the install folder
/// empty; nothing appears outside the install folder, and no link is made.
pub fn skill_archive(data: &[u8]) {
    let Ok(tmp) = tempfile::tempdir() else { return };
    let limits = ImportLimits {
        max_entries: 64,
        max_file_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        max_ratio: 100,
    };
    for (folder, as_name) in [("plain", None), ("renamed", Some(NEW_NAME))] {
        let install = tmp.path().join(folder);
        let result = import_archive_bytes(data, &install, as_name, limits);
        let mut installed = list(&install);
        installed.retain(|p| p.parent() == Some(install.as_path()));
        match result {
            Ok(report) => {
                assert_eq!(
                    installed,
                    vec![report.dir.clone()],
                    "one folder, the report's"
                );
                if let Some(name) = as_name {
                    assert_eq!(report.name, name);
                }
                assert_eq!(report.dir, install.join(&report.name));
                let skill = Skill::load(&report.dir, SkillSource::User)
                    .unwrap_or_else(|e| panic!("the installed skill does not load: {e}"));
                if as_name.is_some() {
                    assert_eq!(skill.frontmatter.name.as_deref(), as_name);
                }
            }
            Err(_) => assert_eq!(installed, Vec::<PathBuf>::new(), "refused, yet left files"),
        }
        for p in list(&install) {
            let meta = std::fs::symlink_metadata(&p).map(|m| m.file_type().is_symlink());
            assert!(
                !meta.unwrap_or(false),
                "import made the link {}",
                p.display()
            );
        }
    }
    let mut top: Vec<_> = std::fs::read_dir(tmp.path())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    top.sort();
    let expected: Vec<std::ffi::OsString> = ["plain", "renamed"]
        .into_iter()
        .map(std::ffi::OsString::from)
        .filter(|n| tmp.path().join(n).exists())
        .collect();
    assert_eq!(top, expected, "wrote outside the install folders");
}

/// Every path under `dir`, depth first, without following links.
fn list(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        out.push(p.clone());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(list(&p));
        }
    }
    out.sort();
    out
}
