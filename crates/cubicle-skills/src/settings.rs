//! Hooks and MCP servers configured in settings files rather than plugins.
//!
//! Cubicle's own settings are TOML, the same files the policy reads (which
//! leaves these two sections to this module):
//!
//! ```toml
//! [[hooks.PreToolUse]]
//! matcher = "Bash"
//! hooks = [{ type = "command", command = "/mnt/Project/check.sh", timeout = 30 }]
//!
//! [mcp_servers.notes]
//! command = "notes-server"
//! args = ["--root", "/mnt/Notes"]
//! ```
//!
//! For compatibility, Claude Code's JSON files are read too: `hooks` and
//! `mcpServers` in `~/.claude/settings.json`, the user's MCP servers in
//! `~/.claude.json` (its `mcpServers` only) and, in a project,
//! `.claude/settings.json` and `.claude/settings.local.json`, and a project's
//! `.mcp.json`. The files, in the order they are read:
//!
//! 1. managed: `/etc/cubicle/managed.toml`, then `managed.d/*.toml`;
//! 2. user: `~/.config/cubicle/settings.toml`, `~/.claude/settings.json`,
//!    `~/.claude.json`;
//! 3. project, only for a granted folder the person trusts (its files name
//!    programs to run): `.cubicle/settings.toml`, `.claude/settings.json`,
//!    `.claude/settings.local.json`, `.mcp.json`. An untrusted folder's
//!    files are named in a notice and not read.
//!
//! Hooks from every file run. An MCP server name taken by an earlier file
//! is skipped with a warning (so managed and user definitions win). A
//! project's stdio servers run from the project's folder in the cubicle.
//! `[hooks] disable_all = true` (Claude Code: `"disableAllHooks": true`) in
//! a user or project file turns off every hook but the managed ones,
//! plugins' too; in a managed file it turns off every hook. A file that cannot be
//! read is a warning; the rest still load. Hooks and servers run inside the
//! cubicle like plugins' do.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::hooks::HookSet;
use crate::mcp::{McpServerConfig, McpTransport};

/// A granted folder whose settings may count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSettings {
    /// The folder on the host.
    pub host_path: PathBuf,
    /// Where it appears in the cubicle (`/mnt/<name>`).
    pub cubicle_path: String,
    /// Whether the person trusts it.
    pub trusted: bool,
}

/// Where to look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPaths {
    /// Managed files, highest first.
    pub managed: Vec<PathBuf>,
    /// Cubicle's user file (`~/.config/cubicle/settings.toml`).
    pub user: Option<PathBuf>,
    /// Claude Code's user file (`~/.claude/settings.json`).
    pub claude_user: Option<PathBuf>,
    /// Claude Code's state file, for its user MCP servers (`~/.claude.json`).
    pub claude_state: Option<PathBuf>,
    /// Granted folders.
    pub projects: Vec<ProjectSettings>,
}

impl SettingsPaths {
    /// The standard places: managed files under `managed_dir`
    /// (`/etc/cubicle`), the user's under `config_dir`
    /// (`~/.config/cubicle`) and `home`, and `projects`.
    pub fn standard(
        managed_dir: &Path,
        config_dir: Option<&Path>,
        home: Option<&Path>,
        projects: Vec<ProjectSettings>,
    ) -> Self {
        let mut managed = vec![managed_dir.join("managed.toml")];
        if let Ok(entries) = std::fs::read_dir(managed_dir.join("managed.d")) {
            let mut dropins: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            dropins.sort();
            managed.extend(dropins);
        }
        Self {
            managed,
            user: config_dir.map(|d| d.join("settings.toml")),
            claude_user: home.map(|h| h.join(".claude/settings.json")),
            claude_state: home.map(|h| h.join(".claude.json")),
            projects,
        }
    }
}

/// What the settings files configure.
#[derive(Debug, Clone, Default)]
pub struct SettingsExtensions {
    /// The managed files' hooks: only a managed file can turn them off.
    pub managed_hooks: HookSet,
    /// The other files' hooks, in file order.
    pub hooks: HookSet,
    /// Their MCP servers.
    pub servers: Vec<McpServerConfig>,
    /// Whether a user or project file turned hooks off (all but managed).
    pub hooks_disabled: bool,
    /// Whether a managed file turned every hook off.
    pub managed_disabled: bool,
    /// Files that configure something, for messages.
    pub files: Vec<PathBuf>,
    /// What could not be read or was ignored.
    pub warnings: Vec<String>,
    /// Files not read because their folder is not trusted.
    pub untrusted: Vec<PathBuf>,
}

/// The format of a settings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Cubicle's TOML: `[hooks]`, `[mcp_servers]`.
    CubicleToml,
    /// Claude Code's JSON: `hooks`, `mcpServers`, `disableAllHooks`.
    ClaudeJson,
    /// `.mcp.json`: `mcpServers`, or the bare map of servers.
    McpJson,
    /// `~/.claude.json`: its `mcpServers` key only (it holds much else).
    ClaudeState,
}

/// Reads every file of `paths`; never fails.
pub fn load(paths: &SettingsPaths) -> SettingsExtensions {
    let mut out = SettingsExtensions::default();
    for f in &paths.managed {
        read_file(&mut out, f, Format::CubicleToml, None);
        out.managed_hooks.extend(std::mem::take(&mut out.hooks));
        out.managed_disabled |= std::mem::take(&mut out.hooks_disabled);
    }
    if let Some(f) = &paths.user {
        read_file(&mut out, f, Format::CubicleToml, None);
    }
    if let Some(f) = &paths.claude_user {
        read_file(&mut out, f, Format::ClaudeJson, None);
    }
    if let Some(f) = &paths.claude_state {
        read_file(&mut out, f, Format::ClaudeState, None);
    }
    for p in &paths.projects {
        let files = [
            (
                p.host_path.join(".cubicle/settings.toml"),
                Format::CubicleToml,
            ),
            (
                p.host_path.join(".claude/settings.json"),
                Format::ClaudeJson,
            ),
            (
                p.host_path.join(".claude/settings.local.json"),
                Format::ClaudeJson,
            ),
            (p.host_path.join(".mcp.json"), Format::McpJson),
        ];
        for (file, format) in files {
            if !p.trusted {
                if file.is_file() {
                    out.untrusted.push(file);
                }
                continue;
            }
            read_file(&mut out, &file, format, Some(&p.cubicle_path));
        }
    }
    out
}

fn read_file(out: &mut SettingsExtensions, file: &Path, format: Format, project: Option<&str>) {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            out.warnings.push(format!("{}: {e}", file.display()));
            return;
        }
    };
    if text.len() as u64 > crate::plugin::MAX_MANIFEST_BYTES {
        out.warnings.push(format!(
            "{}: larger than {} bytes; not read",
            file.display(),
            crate::plugin::MAX_MANIFEST_BYTES
        ));
        return;
    }
    let origin = file.display().to_string();
    let value: Value = match format {
        Format::CubicleToml => match toml::from_str::<toml::Table>(&text) {
            Ok(t) => match serde_json::to_value(t) {
                Ok(v) => v,
                Err(e) => {
                    out.warnings.push(format!("{origin}: {e}"));
                    return;
                }
            },
            Err(e) => {
                out.warnings.push(format!(
                    "{origin}: not valid TOML ({}); its hooks and MCP servers are not loaded",
                    e.message()
                ));
                return;
            }
        },
        Format::ClaudeJson | Format::McpJson | Format::ClaudeState => {
            match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    out.warnings.push(format!(
                        "{origin}: invalid JSON ({e}); its hooks and MCP servers are not loaded"
                    ));
                    return;
                }
            }
        }
    };
    let (hooks_key, servers_key, disable_key) = match format {
        Format::CubicleToml => (Some("hooks"), "mcp_servers", "disable_all"),
        Format::ClaudeJson => (Some("hooks"), "mcpServers", "disableAllHooks"),
        Format::McpJson | Format::ClaudeState => (None, "mcpServers", ""),
    };
    let mut used = false;
    if let Some(key) = hooks_key
        && let Some(hooks) = value.get(key)
    {
        let mut events = hooks.clone();
        // Cubicle's `[hooks]` table also holds `disable_all`.
        if let Value::Object(map) = &mut events
            && let Some(flag) = map.remove(disable_key)
        {
            out.hooks_disabled |= flag.as_bool() == Some(true);
        }
        let mut warnings = Vec::new();
        let set = HookSet::from_json(
            &events,
            &origin,
            &|s: &str| s.to_owned(),
            &[],
            &mut warnings,
        );
        used |= !set.is_empty();
        out.hooks.extend(set);
        out.warnings.extend(warnings);
    }
    if format == Format::ClaudeJson && value.get(disable_key).and_then(Value::as_bool) == Some(true)
    {
        out.hooks_disabled = true;
        used = true;
    }
    if let Some(servers) = match format {
        Format::McpJson => Some(&value),
        Format::CubicleToml | Format::ClaudeJson | Format::ClaudeState => value.get(servers_key),
    } {
        let wrapped = match format {
            Format::McpJson => servers.clone(),
            Format::CubicleToml | Format::ClaudeJson | Format::ClaudeState => {
                serde_json::json!({ "mcpServers": servers })
            }
        };
        let mut warnings = Vec::new();
        let parsed = crate::mcp::parse_servers(
            &wrapped,
            &origin,
            "",
            &|s: &str| s.to_owned(),
            &mut warnings,
        );
        out.warnings.extend(warnings);
        for mut s in parsed {
            if out.servers.iter().any(|o| o.name == s.name) {
                out.warnings.push(format!(
                    "{origin}: MCP server `{}` is already defined by an earlier settings file; this one is skipped",
                    s.name
                ));
                continue;
            }
            // A project's servers run from the project's folder.
            if let Some(inside) = project
                && let McpTransport::Stdio { cwd, .. } = &mut s.transport
                && cwd.is_none()
            {
                *cwd = Some(inside.to_owned());
            }
            used = true;
            out.servers.push(s);
        }
    }
    if used {
        out.files.push(file.to_path_buf());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::hooks::{HookEvent, HookInput};
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn commands(set: &HookSet, event: HookEvent, tool: &str) -> Vec<String> {
        let input = HookInput::new(event, "s", "/t", "/workspace").with("tool_name", json!(tool));
        set.matching(&input)
            .into_iter()
            .map(|c| c.command.clone())
            .collect()
    }

    #[test]
    fn cubicle_toml_and_claude_json_merge_and_trust_is_respected() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            &d.join("etc/managed.toml"),
            "[permissions]\ndeny = []\n\n[[hooks.PreToolUse]]\nmatcher = \"bash\"\nhooks = [{ type = \"command\", command = \"managed-check\" }]\n",
        );
        write(
            &d.join("config/settings.toml"),
            "[mcp_servers.notes]\ncommand = \"notes-server\"\nargs = [\"--root\", \"/mnt/Notes\"]\n\n[[hooks.PostToolUse]]\nhooks = [{ type = \"command\", command = \"user-log\", timeout = 5 }]\n",
        );
        write(
            &d.join("home/.claude/settings.json"),
            r#"{"model": "x", "hooks": {"PreToolUse": [{"matcher": "bash|edit", "hooks": [{"type": "command", "command": "claude-check"}]}]},
               "mcpServers": {"notes": {"command": "other"}, "db": {"command": "db-server"}}}"#,
        );
        write(
            &d.join("home/.claude.json"),
            r#"{"numStartups": 3, "projects": {"/x": {}}, "mcpServers": {"memory": {"command": "mem-server"}}}"#,
        );
        let trusted = d.join("Project");
        write(
            &trusted.join(".claude/settings.json"),
            r#"{"hooks": {"PreToolUse": [{"hooks": [{"type": "command", "command": "project-check"}]}]}}"#,
        );
        write(
            &trusted.join(".mcp.json"),
            r#"{"mcpServers": {"files": {"command": "fs-server", "args": ["."]}}}"#,
        );
        let untrusted = d.join("Downloads");
        write(
            &untrusted.join(".cubicle/settings.toml"),
            "[[hooks.SessionStart]]\nhooks = [{ type = \"command\", command = \"evil\" }]\n",
        );
        let paths = SettingsPaths::standard(
            &d.join("etc"),
            Some(&d.join("config")),
            Some(&d.join("home")),
            vec![
                ProjectSettings {
                    host_path: trusted.clone(),
                    cubicle_path: "/mnt/Project".into(),
                    trusted: true,
                },
                ProjectSettings {
                    host_path: untrusted.clone(),
                    cubicle_path: "/mnt/Downloads".into(),
                    trusted: false,
                },
            ],
        );
        let got = load(&paths);
        assert_eq!(
            commands(&got.hooks, HookEvent::PreToolUse, "bash"),
            vec!["claude-check", "project-check"]
        );
        assert_eq!(
            commands(&got.managed_hooks, HookEvent::PreToolUse, "bash"),
            vec!["managed-check"]
        );
        assert_eq!(
            commands(&got.hooks, HookEvent::PreToolUse, "read"),
            vec!["project-check"]
        );
        assert_eq!(
            commands(&got.hooks, HookEvent::PostToolUse, "read"),
            vec!["user-log"]
        );
        assert!(commands(&got.hooks, HookEvent::SessionStart, "").is_empty());
        let servers: Vec<(&str, McpTransport)> = got
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.transport.clone()))
            .collect();
        assert_eq!(servers.len(), 4, "{servers:?}");
        assert_eq!(servers[0].0, "notes");
        assert!(
            matches!(&servers[0].1, McpTransport::Stdio { command, .. } if command == "notes-server"),
            "the user's own file wins the name"
        );
        assert_eq!(servers[1].0, "db");
        assert_eq!(servers[2].0, "memory");
        assert!(
            matches!(&servers[3].1, McpTransport::Stdio { command, cwd, .. }
                if command == "fs-server" && cwd.as_deref() == Some("/mnt/Project")),
            "{:?}",
            servers[3]
        );
        assert!(
            got.warnings
                .iter()
                .any(|w| w.contains("`notes` is already defined")),
            "{:?}",
            got.warnings
        );
        assert_eq!(
            got.untrusted,
            vec![untrusted.join(".cubicle/settings.toml")]
        );
        assert!(!got.hooks_disabled && !got.managed_disabled);
        assert_eq!(got.files.len(), 6, "{:?}", got.files);
        assert!(
            !got.warnings.iter().any(|w| w.contains("numStartups")),
            "{:?}",
            got.warnings
        );
    }

    #[test]
    fn disable_all_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            &d.join("config/settings.toml"),
            "[hooks]\ndisable_all = true\n",
        );
        write(&d.join("home/.claude/settings.json"), "{ not json");
        let got = load(&SettingsPaths::standard(
            &d.join("etc"),
            Some(&d.join("config")),
            Some(&d.join("home")),
            Vec::new(),
        ));
        assert!(got.hooks_disabled);
        assert!(got.hooks.is_empty());
        assert_eq!(got.warnings.len(), 1, "{:?}", got.warnings);
        assert!(
            got.warnings[0].contains("invalid JSON"),
            "{:?}",
            got.warnings
        );

        write(
            &d.join("home/.claude/settings.json"),
            r#"{"disableAllHooks": true}"#,
        );
        write(&d.join("config/settings.toml"), "[[hooks.Nope]]\n");
        let got = load(&SettingsPaths::standard(
            &d.join("etc"),
            Some(&d.join("config")),
            Some(&d.join("home")),
            Vec::new(),
        ));
        assert!(got.hooks_disabled);
        assert!(
            !got.managed_disabled,
            "a user cannot turn managed hooks off"
        );
        assert!(
            got.warnings
                .iter()
                .any(|w| w.contains("unknown hook event `Nope`")),
            "{:?}",
            got.warnings
        );

        // An administrator can turn every hook off.
        write(
            &d.join("etc/managed.toml"),
            "[hooks]
disable_all = true
",
        );
        let got = load(&SettingsPaths::standard(
            &d.join("etc"),
            None,
            None,
            Vec::new(),
        ));
        assert!(got.managed_disabled && !got.hooks_disabled);
    }
}
