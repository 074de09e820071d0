//! Claude Code plugins: a folder with `.claude-plugin/plugin.json` (only
//! `name` is required) and components in default folders or at the paths
//! the manifest names:
//!
//! | component | default | what it becomes |
//! |---|---|---|
//! | skills | `skills/*/SKILL.md` | skills named `plugin:skill` |
//! | commands | `commands/**/*.md` | slash-command prompts `/plugin:command` ([`crate::commands`]) |
//! | agents | `agents/*.md` | sub-agents (name, description, tools, model), offered as delegates `plugin__agent` ([`crate::agents`]) |
//! | hooks | `hooks/hooks.json` | command hooks ([`crate::hooks`]) |
//! | MCP servers | `.mcp.json` | servers `plugin_<plugin>_<server>` ([`crate::mcp`]) |
//!
//! `${CLAUDE_PLUGIN_ROOT}` and `${CUBICLE_PLUGIN_ROOT}` in hook commands and
//! server definitions become the plugin's folder *inside the cubicle*
//! (`/mnt/.plugins/<name>`, mounted read-only), because that is where hooks
//! and stdio servers run. Manifest paths must be relative and stay inside the
//! plugin; symbolic links in a plugin are not followed. A component that
//! cannot be read is a warning; the rest of the plugin loads.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::frontmatter::{self, Diagnostic};
use crate::hooks::HookSet;
use crate::mcp::McpServerConfig;
use crate::skill::{SKILL_FILE, Skill, SkillSource};

/// The manifest's path inside a plugin.
pub const PLUGIN_MANIFEST: &str = ".claude-plugin/plugin.json";
/// Where a plugin's folder appears, read-only, inside the cubicle.
pub const CUBICLE_PLUGINS_MOUNT: &str = "/mnt/.plugins";
/// Most bytes a manifest, `hooks.json` or `.mcp.json` may have.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// Most commands or agents read from one plugin.
const MAX_COMPONENT_FILES: usize = 1_000;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No manifest where one is required.
    #[error("{root}: no {PLUGIN_MANIFEST}")]
    NoManifest {
        /// The plugin folder.
        root: PathBuf,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// The manifest is valid JSON but not a usable manifest.
    #[error("{path}: {message}")]
    Manifest {
        /// The file (or marketplace entry).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A marketplace entry with `strict: false` and a plugin manifest both
    /// declare components.
    #[error(
        "plugin `{name}`: the marketplace entry has `strict: false` but the plugin's own {PLUGIN_MANIFEST} also declares components; one of them must go"
    )]
    StrictConflict {
        /// The plugin.
        name: String,
    },
}

/// A component reference in a manifest: a path in the plugin, or the
/// definition inline.
#[derive(Debug, Clone, PartialEq)]
pub enum ComponentRef {
    /// A relative path (`./hooks/extra.json`).
    Path(String),
    /// The JSON itself.
    Inline(Value),
}

/// What `plugin.json` (or a marketplace entry standing in for it) says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PluginManifest {
    /// Kebab-case name; skills and commands are namespaced by it.
    pub name: String,
    /// Version, shown and compared on update.
    pub version: Option<String>,
    /// What the plugin does.
    pub description: Option<String>,
    /// The author's name.
    pub author: Option<String>,
    /// Extra command files or folders.
    pub commands: Vec<String>,
    /// Extra agent files or folders.
    pub agents: Vec<String>,
    /// Extra skill folders (each holding skill folders).
    pub skills: Vec<String>,
    /// Extra hook configurations.
    pub hooks: Vec<ComponentRef>,
    /// Extra MCP server configurations.
    pub mcp_servers: Vec<ComponentRef>,
}

impl PluginManifest {
    /// Reads a manifest object; `origin` names it in messages. Unknown keys
    /// are ignored (the format grows); malformed known ones are warnings.
    pub fn from_json(
        value: &Value,
        origin: &Path,
        warnings: &mut Vec<Diagnostic>,
    ) -> Result<Self, PluginError> {
        let bad = |message: String| PluginError::Manifest {
            path: origin.to_path_buf(),
            message,
        };
        let Value::Object(map) = value else {
            return Err(bad("a plugin manifest must be a JSON object".to_owned()));
        };
        let name = match map.get("name") {
            Some(Value::String(n)) if !n.trim().is_empty() => n.trim().to_owned(),
            Some(_) => return Err(bad("`name` must be a non-empty string".to_owned())),
            None => return Err(bad("`name` is required".to_owned())),
        };
        if let Err(why) = validate_plugin_name(&name) {
            return Err(bad(format!("plugin name `{name}`: {why}")));
        }
        let mut warn = |message: String| {
            warnings.push(Diagnostic {
                path: origin.to_path_buf(),
                line: None,
                message,
            })
        };
        let text = |key: &str, warn: &mut dyn FnMut(String)| match map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                warn(format!("`{key}` should be a string; ignored"));
                None
            }
        };
        let paths = |key: &str, warn: &mut dyn FnMut(String)| -> Vec<String> {
            match map.get(key) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| match v.as_str() {
                        Some(s) => Some(s.to_owned()),
                        None => {
                            warn(format!("`{key}` entries should be paths; one ignored"));
                            None
                        }
                    })
                    .collect(),
                Some(_) => {
                    warn(format!(
                        "`{key}` should be a path or a list of paths; ignored"
                    ));
                    Vec::new()
                }
            }
        };
        let refs = |key: &str, warn: &mut dyn FnMut(String)| -> Vec<ComponentRef> {
            match map.get(key) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => vec![ComponentRef::Path(s.clone())],
                Some(v @ Value::Object(_)) => vec![ComponentRef::Inline(v.clone())],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(ComponentRef::Path(s.clone())),
                        Value::Object(_) => Some(ComponentRef::Inline(v.clone())),
                        _ => {
                            warn(format!(
                                "`{key}` entries should be paths or objects; one ignored"
                            ));
                            None
                        }
                    })
                    .collect(),
                Some(_) => {
                    warn(format!("`{key}` should be a path or an object; ignored"));
                    Vec::new()
                }
            }
        };
        let author = match map.get("author") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(a)) => a.get("name").and_then(Value::as_str).map(str::to_owned),
            Some(_) => {
                warn("`author` should be an object with a `name`; ignored".to_owned());
                None
            }
        };
        Ok(Self {
            version: text("version", &mut warn),
            description: text("description", &mut warn),
            author,
            commands: paths("commands", &mut warn),
            agents: paths("agents", &mut warn),
            skills: paths("skills", &mut warn),
            hooks: refs("hooks", &mut warn),
            mcp_servers: refs("mcpServers", &mut warn),
            name,
        })
    }

    /// Whether it names any component explicitly.
    pub fn declares_components(&self) -> bool {
        !(self.commands.is_empty()
            && self.agents.is_empty()
            && self.skills.is_empty()
            && self.hooks.is_empty()
            && self.mcp_servers.is_empty())
    }

    /// Adds `other`'s components to these (a strict marketplace entry
    /// supplementing the plugin's own manifest).
    pub fn supplement(&mut self, other: &PluginManifest) {
        self.commands.extend(other.commands.iter().cloned());
        self.agents.extend(other.agents.iter().cloned());
        self.skills.extend(other.skills.iter().cloned());
        self.hooks.extend(other.hooks.iter().cloned());
        self.mcp_servers.extend(other.mcp_servers.iter().cloned());
        if self.description.is_none() {
            self.description = other.description.clone();
        }
        if self.version.is_none() {
            self.version = other.version.clone();
        }
    }
}

/// Checks a plugin name: 1 to 64 lowercase letters, digits, `-` and `_`
/// (Claude Code asks for kebab-case; names with `_` exist in the wild).
pub fn validate_plugin_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "`{}` is not allowed: use lowercase letters, digits and hyphens",
            c.escape_default()
        ));
    }
    if name.starts_with(['-', '_']) {
        return Err("cannot start with a hyphen".to_owned());
    }
    Ok(())
}

/// A slash command a plugin adds: a Markdown prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginCommand {
    /// `plugin:command`.
    pub name: String,
    /// Its description (frontmatter, else the first line of the body).
    pub description: String,
    /// `argument-hint`.
    pub argument_hint: Option<String>,
    /// `allowed-tools`.
    pub allowed_tools: Vec<String>,
    /// `model`.
    pub model: Option<String>,
    /// The file.
    pub path: PathBuf,
}

impl PluginCommand {
    /// The prompt for `/name arguments`: the body with `$ARGUMENTS`,
    /// `$1`…`$9` and the plugin-root variables replaced (see
    /// [`crate::commands::substitute`]).
    pub fn render(&self, arguments: &str, cubicle_root: &str) -> Result<String, PluginError> {
        let text = read_limited(&self.path)?;
        let body = match frontmatter::split(&text) {
            Ok(split) => split.body.trim_start_matches(['\r', '\n']).to_owned(),
            Err(_) => text,
        };
        Ok(crate::commands::substitute(&body, arguments, cubicle_root))
    }
}

/// A sub-agent definition a plugin adds.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDefinition {
    /// `plugin:agent`.
    pub name: String,
    /// When to use it.
    pub description: String,
    /// The tools it may use (all when empty).
    pub tools: Vec<String>,
    /// The model it asks for (`sonnet`, `opus`, `inherit`, a full id).
    pub model: Option<String>,
    /// Its system prompt (the Markdown body).
    pub prompt: String,
    /// The file.
    pub path: PathBuf,
}

/// A loaded plugin and its components.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// The manifest (merged with its marketplace entry, if any).
    pub manifest: PluginManifest,
    /// The plugin's folder on the host.
    pub root: PathBuf,
    /// Its skills, named `plugin:skill`.
    pub skills: Vec<Skill>,
    /// Its slash commands.
    pub commands: Vec<PluginCommand>,
    /// Its sub-agent definitions.
    pub agents: Vec<AgentDefinition>,
    /// Its hooks, commands expanded for the cubicle.
    pub hooks: HookSet,
    /// Its MCP servers, expanded for the cubicle.
    pub mcp_servers: Vec<McpServerConfig>,
    /// What could not be read, and was skipped.
    pub warnings: Vec<Diagnostic>,
}

/// Replaces `${CLAUDE_PLUGIN_ROOT}` and `${CUBICLE_PLUGIN_ROOT}` with `root`.
pub fn expand_root(s: &str, root: &str) -> String {
    s.replace("${CLAUDE_PLUGIN_ROOT}", root)
        .replace("${CUBICLE_PLUGIN_ROOT}", root)
}

impl Plugin {
    /// Loads the plugin at `root` from its own manifest.
    pub fn load(root: &Path) -> Result<Plugin, PluginError> {
        Self::load_with_entry(root, None, true)
    }

    /// Loads the plugin at `root` as a marketplace lists it: with `strict`,
    /// the plugin's manifest (if any) is supplemented by `entry`; without,
    /// `entry` is the whole definition and a plugin manifest that declares
    /// components too is an error.
    pub fn load_with_entry(
        root: &Path,
        entry: Option<&PluginManifest>,
        strict: bool,
    ) -> Result<Plugin, PluginError> {
        let mut warnings = Vec::new();
        let manifest_path = root.join(PLUGIN_MANIFEST);
        let own = if manifest_path.is_file() {
            let value = read_json(&manifest_path)?;
            Some(PluginManifest::from_json(
                &value,
                &manifest_path,
                &mut warnings,
            )?)
        } else {
            None
        };
        let manifest = match (own, entry) {
            (Some(mut own), Some(entry)) if strict => {
                own.supplement(entry);
                own
            }
            (Some(own), Some(entry)) => {
                if own.declares_components() {
                    return Err(PluginError::StrictConflict {
                        name: entry.name.clone(),
                    });
                }
                let mut m = entry.clone();
                m.version = m.version.or(own.version);
                m.description = m.description.or(own.description);
                m
            }
            (Some(own), None) => own,
            (None, Some(entry)) => entry.clone(),
            (None, None) => {
                return Err(PluginError::NoManifest {
                    root: root.to_path_buf(),
                });
            }
        };
        let name = manifest.name.clone();
        let cubicle_root = format!("{CUBICLE_PLUGINS_MOUNT}/{name}");
        let mut plugin = Plugin {
            root: root.to_path_buf(),
            skills: Vec::new(),
            commands: Vec::new(),
            agents: Vec::new(),
            hooks: HookSet::new(),
            mcp_servers: Vec::new(),
            warnings,
            manifest,
        };
        let warn = |w: &mut Vec<Diagnostic>, path: &Path, message: String| {
            w.push(Diagnostic {
                path: path.to_path_buf(),
                line: None,
                message,
            })
        };

        // Skills.
        for dir in plugin.component_dirs("skills", &plugin.manifest.skills.clone()) {
            for skill_dir in sorted_subdirs(&dir) {
                if !skill_dir.join(SKILL_FILE).is_file() {
                    continue;
                }
                match Skill::load(&skill_dir, SkillSource::Plugin { name: name.clone() }) {
                    Ok(mut skill) => {
                        skill.name = format!("{name}:{}", skill.name);
                        plugin.warnings.extend(skill.warnings.iter().cloned());
                        plugin.skills.push(skill);
                    }
                    Err(e) => warn(
                        &mut plugin.warnings,
                        &skill_dir,
                        format!("skill skipped: {e}"),
                    ),
                }
            }
        }

        // Commands and agents: Markdown files.
        for path in plugin.component_files("commands", &plugin.manifest.commands.clone()) {
            match load_command(&path, &name) {
                Ok(c) => plugin.commands.push(c),
                Err(e) => warn(&mut plugin.warnings, &path, format!("command skipped: {e}")),
            }
        }
        for path in plugin.component_files("agents", &plugin.manifest.agents.clone()) {
            match load_agent(&path, &name) {
                Ok(a) => plugin.agents.push(a),
                Err(e) => warn(&mut plugin.warnings, &path, format!("agent skipped: {e}")),
            }
        }

        // Hooks and MCP servers: JSON, from the default file and the manifest.
        let expand = |s: &str| expand_root(s, &cubicle_root);
        let env = vec![
            ("CLAUDE_PLUGIN_ROOT".to_owned(), cubicle_root.clone()),
            ("CUBICLE_PLUGIN_ROOT".to_owned(), cubicle_root.clone()),
        ];
        let mut hook_refs = vec![ComponentRef::Path("./hooks/hooks.json".to_owned())];
        hook_refs.extend(plugin.manifest.hooks.iter().cloned());
        let mut seen = Vec::new();
        for r in hook_refs {
            let Some((value, origin)) = plugin.resolve_ref(&r, &mut seen) else {
                continue;
            };
            let mut msgs = Vec::new();
            let set = HookSet::from_json(&value, &origin, &expand, &env, &mut msgs);
            plugin.hooks.extend(set);
            for m in msgs {
                warn(&mut plugin.warnings, root, m);
            }
        }
        let mut mcp_refs = vec![ComponentRef::Path("./.mcp.json".to_owned())];
        mcp_refs.extend(plugin.manifest.mcp_servers.iter().cloned());
        let mut seen = Vec::new();
        for r in mcp_refs {
            let Some((value, origin)) = plugin.resolve_ref(&r, &mut seen) else {
                continue;
            };
            let mut msgs = Vec::new();
            let prefix = format!("plugin_{}_", name.replace('-', "_"));
            let servers = crate::mcp::parse_servers(&value, &origin, &prefix, &expand, &mut msgs);
            plugin.mcp_servers.extend(servers);
            for m in msgs {
                warn(&mut plugin.warnings, root, m);
            }
        }
        Ok(plugin)
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The plugin's folder as seen inside the cubicle.
    pub fn cubicle_root(&self) -> String {
        format!("{CUBICLE_PLUGINS_MOUNT}/{}", self.manifest.name)
    }

    /// The folders searched for skills: `skills/` and the manifest's.
    pub fn skill_dirs(&self) -> Vec<PathBuf> {
        self.component_dirs("skills", &self.manifest.skills)
    }

    /// The existing folders for a component: the default one and the
    /// manifest's (those that are folders).
    fn component_dirs(&self, default: &str, extra: &[String]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for rel in std::iter::once(default).chain(extra.iter().map(String::as_str)) {
            match self.inside(rel) {
                Some(p) if is_real_dir(&p) => {
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
                Some(_) | None => {}
            }
        }
        out
    }

    /// The Markdown files for a component: every `.md` under the default
    /// folder and the manifest's folders, plus the manifest's files.
    fn component_files(&mut self, default: &str, extra: &[String]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for rel in std::iter::once(default).chain(extra.iter().map(String::as_str)) {
            let Some(p) = self.inside(rel) else {
                self.warnings.push(Diagnostic {
                    path: self.root.join(PLUGIN_MANIFEST),
                    line: None,
                    message: format!("`{rel}` is outside the plugin; ignored"),
                });
                continue;
            };
            if is_real_dir(&p) {
                collect_md(&p, &mut out, 0);
            } else if is_real_file(&p) && p.extension().is_some_and(|e| e == "md") {
                out.push(p);
            }
        }
        out.sort();
        out.dedup();
        out.truncate(MAX_COMPONENT_FILES);
        out
    }

    /// `rel` resolved inside the plugin, or `None` if it would leave it.
    fn inside(&self, rel: &str) -> Option<PathBuf> {
        let p = Path::new(rel);
        if p.is_absolute() {
            return None;
        }
        let mut out = self.root.clone();
        for c in p.components() {
            match c {
                Component::CurDir => {}
                Component::Normal(n) => out.push(n),
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        Some(out)
    }

    /// Reads a hooks or MCP reference; `None` (with a warning where due)
    /// when there is nothing to read.
    fn resolve_ref(
        &mut self,
        r: &ComponentRef,
        seen: &mut Vec<PathBuf>,
    ) -> Option<(Value, String)> {
        match r {
            ComponentRef::Inline(v) => Some((
                v.clone(),
                format!("{} (inline)", self.root.join(PLUGIN_MANIFEST).display()),
            )),
            ComponentRef::Path(rel) => {
                let Some(path) = self.inside(rel) else {
                    self.warnings.push(Diagnostic {
                        path: self.root.join(PLUGIN_MANIFEST),
                        line: None,
                        message: format!("`{rel}` is outside the plugin; ignored"),
                    });
                    return None;
                };
                if seen.contains(&path) || !is_real_file(&path) {
                    return None;
                }
                seen.push(path.clone());
                match read_json(&path) {
                    Ok(v) => Some((v, path.display().to_string())),
                    Err(e) => {
                        self.warnings.push(Diagnostic {
                            path: path.clone(),
                            line: None,
                            message: format!("skipped: {e}"),
                        });
                        None
                    }
                }
            }
        }
    }
}

fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

fn is_real_file(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
}

fn sorted_subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

fn collect_md(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 8 || out.len() >= MAX_COMPONENT_FILES {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let p = e.path();
        if ft.is_dir() {
            collect_md(&p, out, depth + 1);
        } else if ft.is_file() && p.extension().is_some_and(|x| x == "md") {
            out.push(p);
        }
    }
}

/// Reads a JSON file of at most [`MAX_MANIFEST_BYTES`].
pub fn read_json(path: &Path) -> Result<Value, PluginError> {
    let text = read_limited(path)?;
    serde_json::from_str(&text).map_err(|e| PluginError::Json {
        path: path.to_path_buf(),
        message: format!("invalid JSON: {e}"),
    })
}

fn read_limited(path: &Path) -> Result<String, PluginError> {
    use std::io::Read as _;
    let io = |source| PluginError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(PluginError::Manifest {
            path: path.to_path_buf(),
            message: format!("larger than {MAX_MANIFEST_BYTES} bytes"),
        });
    }
    String::from_utf8(bytes).map_err(|_| PluginError::Manifest {
        path: path.to_path_buf(),
        message: "not UTF-8 text".to_owned(),
    })
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn load_command(path: &Path, plugin: &str) -> Result<PluginCommand, PluginError> {
    let text = read_limited(path)?;
    let (fm, body) = match frontmatter::split(&text) {
        Ok(split) => {
            let (fm, _) =
                frontmatter::parse(split.yaml, path, split.yaml_first_line).map_err(|e| {
                    PluginError::Manifest {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    }
                })?;
            (fm, split.body.to_owned())
        }
        Err(_) => (frontmatter::Frontmatter::default(), text),
    };
    let description = fm
        .description
        .clone()
        .filter(|d| !d.trim().is_empty())
        .or_else(|| {
            body.lines()
                .map(|l| l.trim().trim_start_matches('#').trim())
                .find(|l| !l.is_empty())
                .map(|l| l.chars().take(200).collect())
        })
        .unwrap_or_default();
    Ok(PluginCommand {
        name: format!("{plugin}:{}", stem(path)),
        description,
        argument_hint: fm.argument_hint,
        allowed_tools: fm.allowed_tools,
        model: fm.model,
        path: path.to_path_buf(),
    })
}

fn load_agent(path: &Path, plugin: &str) -> Result<AgentDefinition, PluginError> {
    let text = read_limited(path)?;
    let bad = |message: String| PluginError::Manifest {
        path: path.to_path_buf(),
        message,
    };
    let split = frontmatter::split(&text).map_err(|e| bad(e.to_string()))?;
    let fields =
        frontmatter::fields(split.yaml, split.yaml_first_line).map_err(|e| bad(e.to_string()))?;
    let mut name = None;
    let mut description = None;
    let mut tools = Vec::new();
    let mut model = None;
    for (key, _line, value) in fields {
        match key.as_str() {
            "name" => name = frontmatter::as_string(&value),
            "description" => description = frontmatter::as_string(&value),
            "tools" => tools = frontmatter::as_list(&value, false).unwrap_or_default(),
            "model" => model = frontmatter::as_string(&value),
            _ => {}
        }
    }
    let description = description
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| bad("an agent needs a `description`".to_owned()))?;
    Ok(AgentDefinition {
        name: format!("{plugin}:{}", name.unwrap_or_else(|| stem(path))),
        description,
        tools,
        model,
        prompt: split.body.trim().to_owned(),
        path: path.to_path_buf(),
    })
}
