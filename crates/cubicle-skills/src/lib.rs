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
//! - the CLI: [`Preferences`], [`export()`], [`import()`], [`scaffold`].
//!
//! Plugins, marketplaces, hooks and MCP come later; plugin skills will be
//! [`SkillSource::Plugin`] with names `plugin:skill`.

pub mod catalog;
pub mod discover;
pub mod export;
pub mod frontmatter;
pub mod import;
pub mod prefs;
pub mod scan;
pub mod skill;
pub mod tool;

pub use catalog::{Catalog, estimate_tokens};
pub use discover::{Discovery, Notice, ProjectFolder, SkillIndex, SkillRoots, discover};
pub use export::{ExportError, ExportReport, export, scan_skill};
pub use frontmatter::{Diagnostic, Frontmatter, FrontmatterError};
pub use import::{ImportError, ImportLimits, ImportReport, import, import_with_limits};
pub use prefs::{Preferences, PrefsError, prefs_dir};
pub use scan::{Finding, FindingKind};
pub use skill::{LoadError, Skill, SkillSource, scaffold, validate_name};
pub use tool::{SkillInput, SkillTool};
