//! Cubicle's policy: layered settings, permission rules and the decisions
//! built on them. Pure — it reads the settings files and nothing else, holds
//! no global state, and every check is a method on an immutable [`Policy`].
//!
//! # Layers
//!
//! Highest first: **managed** (`/etc/cubicle/managed.toml`, then
//! `/etc/cubicle/managed.d/*.toml` in name order, later files overriding
//! earlier ones), **command line** ([`CommandLineSettings`]), **project**
//! (`.cubicle/settings.toml` in a granted folder, read only when the person
//! trusts the folder — see [`ProjectFolder`]) and **user**
//! (`~/.config/cubicle/settings.toml`). Paths come in a [`PolicyPaths`].
//!
//! - Rule lists (`permissions.*`, `network.allow`/`deny`, `marketplaces.block`,
//!   `tools.disabled`) accumulate across layers, and a deny in any layer wins
//!   over an allow in any layer.
//! - Other settings take the value of the highest layer that sets them.
//! - `[locks] keys = [...]` (managed only) names settings or whole sections no
//!   lower layer may change; a lower layer that tries gets a [`Notice`]
//!   ("ignored: locked by your administrator"), not an error.
//! - `network.managed_only = true` (managed only) ignores every other
//!   layer's `network.allow`.
//! - `[[credential]]` tables accumulate across the managed, command-line and
//!   user layers, each with its origin ([`Policy::credentials`]); a lock on
//!   `credential` (or `credentials`) keeps only the managed layer's. Project
//!   settings never add credentials (a notice says so): a folder the agent
//!   can write must not be able to send the person's secrets elsewhere.
//! - A malformed file, an unknown section or key, a value of the wrong type,
//!   an invalid rule or an invalid credential fails the whole load with
//!   [`PolicyError::Invalid`], which names the file, line and key. Errors
//!   about a credential's `secret` or `value` never repeat what was written,
//!   in case it was the secret itself.
//!
//! # Settings file
//!
//! Every key, its type and how it merges is in [`schema::SCHEMA`]; the
//! example below (also `examples/settings.toml`) uses all of them.
//!
//! ```toml
//! [permissions]
//! allow = ["Bash(git *)", "Read(/mnt/contracts/**)"]
//! ask   = ["Edit(/mnt/**/*.xlsx)"]
//! deny  = ["Bash(rm -rf *)", "WebFetch(domain:*.example.com)"]
//! ask_before_changing_granted_files = true
//!
//! [network]
//! allow = ["api.github.com", "*.wikipedia.org"]
//! deny  = ["*.pastebin.com"]
//! managed_only = true            # managed layer only
//!
//! [[credential]]                 # one table per credential
//! domain = "api.github.com"      # a name or *.name
//! header = "Authorization"
//! secret = "keyring:github-token" # or env:NAME; never the secret itself
//! value  = "Bearer {secret}"     # optional; default "{secret}"
//!
//! [sandbox]
//! allowed_backends = ["jail", "vm"]
//!
//! [models]
//! allowed_providers = ["anthropic"]
//! allowed_models = ["claude-*"]
//!
//! [marketplaces]
//! allow = ["github:acme/*"]
//! block = ["github:evil/*"]
//!
//! [tools]
//! disabled = ["task"]
//!
//! [locks]                        # managed layer only
//! keys = ["sandbox.allowed_backends", "network", "credential"]
//! ```
//!
//! # Permission rules
//!
//! Rules use Claude Code's `Tool(specifier)` syntax; how each maps onto
//! Cubicle's tools is in [`rule`]. Rules are tried deny, then ask, then
//! allow; the first match decides. A tool in `tools.disabled` is denied
//! before any rule is tried.
//!
//! # Defaults
//!
//! With no matching rule, commands and file changes inside the cubicle are
//! allowed: the cubicle is the boundary. The exception is `edit` or `write` to
//! a path outside `/workspace` and `/tmp` — into the person's own granted
//! folders — which asks ("The agent wants to change /mnt/Reports/q3.xlsx in
//! your folder /mnt/Reports."), unless
//! `permissions.ask_before_changing_granted_files = false`.
//!
//! DESIGN.md treats a read-write grant as consent to change that folder,
//! while issue 4 asks before anything writes outside `/workspace`; the
//! setting keeps the issue's safer behaviour as the default and lets an
//! administrator or person choose the design's. Either way `bash` commands
//! that change a granted folder are not asked about (they cannot be told
//! apart reliably) — add rules such as `ask = ["Bash(rm *)"]` for that.
//!
//! The `host` backend (no isolation) is allowed only when a layer lists it in
//! `sandbox.allowed_backends`. A domain no rule names gets
//! [`Effect::Ask`] from [`NetworkRules::check`]; the caller refuses it when
//! no one can be asked.

pub mod call;
pub mod domain;
pub mod error;
pub mod origin;
pub mod path;
pub mod policy;
pub mod rule;
pub mod schema;
mod settings_file;
pub mod shell;
pub mod sources;

pub use call::parse_call;
pub use domain::{DomainPattern, domain_matches, host_of_url};
pub use error::PolicyError;
pub use origin::{Layer, Notice, Origin, RuleOrigin};
pub use policy::{CredentialSetting, Decision, DomainRule, EffectiveSetting, NetworkRules, Policy};
pub use rule::{Effect, Rule, RuleError};
pub use sources::{CommandLineSettings, LoadedSource, PolicyPaths, ProjectFolder, SettingsSource};
