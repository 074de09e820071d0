//! Agent Skills for Cubicle, in the public on-disk format that Claude Code and
//! the Agent Skills specification use (`SKILL.md` folders), plus what Cubicle
//! adds: a person's private preferences kept apart from the portable skill,
//! and sharing a skill as one `.skill` file that is scanned for secrets and
//! personal data before it leaves the machine.
//!
//! What the rest of Cubicle calls:
//!
//! - the agent: [`SkillIndex::discover`] (or [`discover()`]) over
//!   [`SkillRoots`], then [`Catalog::render`] into the system prompt and
//!   [`SkillTool`] among the tools;
//! - the sandbox: for each [`Skill`] in the catalog, mount
//!   [`Skill::host_dir`] read-only at [`Skill::cubicle_dir`]
//!   (`/mnt/.skills/<name>`);
//! - the CLI: [`Preferences`], [`export()`], [`import()`], [`scaffold`],
//!   and [`plugin_store::PluginStore`] for `cubicle plugin`;
//! - sessions, for plugins: [`plugin_store::PluginStore::load_installed`]
//!   gives each installed [`plugin::Plugin`] with its skills (already in
//!   [`SkillRoots::from_env`] as `plugin:skill`), commands, agents,
//!   [`hooks::HookSet`] (run with [`hooks::HookRunner`] through an executor
//!   that runs inside the cubicle) and [`mcp::McpServerConfig`]s (connected
//!   with [`mcp::RmcpClient`], offered as [`mcp::McpTool`]s);
//! - sessions, beyond plugins: [`settings::load`] for the hooks and MCP
//!   servers in settings files (Cubicle's TOML and Claude Code's JSON),
//!   [`commands::CommandIndex`] to expand `/plugin:command` and `/skill`
//!   prompts the person types, and [`agents::delegate`] to offer plugins'
//!   sub-agents to the model as delegates named `plugin__agent`.

pub mod agents;
pub mod catalog;
pub mod commands;
pub mod discover;
pub mod export;
pub mod frontmatter;
pub mod git;
pub mod hooks;
pub mod import;
pub mod in_cubicle;
pub mod marketplace;
pub mod mcp;
pub mod plugin;
pub mod plugin_store;
pub mod prefs;
pub mod scan;
pub mod settings;
pub mod skill;
pub mod tool;

pub use catalog::{Catalog, estimate_tokens};
pub use commands::{CommandIndex, Expansion, SlashCommand, SlashError};
pub use discover::{
    Discovery, Notice, PluginSkills, ProjectFolder, SkillIndex, SkillRoots, discover,
};
pub use export::{ExportError, ExportReport, export, scan_skill};
pub use frontmatter::{Diagnostic, Frontmatter, FrontmatterError};
pub use import::{ImportError, ImportLimits, ImportReport, import, import_with_limits};
pub use prefs::{Preferences, PrefsError, prefs_dir};
pub use scan::{Finding, FindingKind};
pub use skill::{LoadError, Skill, SkillSource, scaffold, validate_name};
pub use tool::{SkillInput, SkillTool};
