//! `cubicle plugin …`: Claude Code plugin marketplaces and plugins.
//!
//! A thin layer over `cubicle_skills::plugin_store`; its own logic is
//! wording, exit codes, and turning the policy's `marketplaces.allow` /
//! `block` lists into the store's gate. It uses no other module of this
//! crate, so `cubicle-skills`' tests compile and drive it too.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use cubicle_skills::discover::config_dir_from_env;
use cubicle_skills::plugin::Plugin;
use cubicle_skills::plugin_store::{PluginStore, plugins_dir};

/// `cubicle plugin …`
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Add, list, update or remove plugin marketplaces.
    Marketplace {
        /// What to do.
        #[command(subcommand)]
        action: MarketplaceAction,
    },
    /// Install a plugin from an added marketplace.
    Install {
        /// `PLUGIN@MARKETPLACE`, or `PLUGIN` when one marketplace lists it.
        #[arg(value_name = "PLUGIN[@MARKETPLACE]")]
        spec: String,
    },
    /// Remove an installed plugin.
    Uninstall {
        /// `PLUGIN@MARKETPLACE`, or `PLUGIN`.
        #[arg(value_name = "PLUGIN[@MARKETPLACE]")]
        spec: String,
    },
    /// List installed plugins and what each adds.
    List,
    /// Fetch installed plugins again and install newer versions.
    Update {
        /// One plugin; all when omitted.
        #[arg(value_name = "PLUGIN[@MARKETPLACE]")]
        spec: Option<String>,
    },
}

/// `cubicle plugin marketplace …`
#[derive(Debug, clap::Subcommand)]
pub enum MarketplaceAction {
    /// Add a marketplace: OWNER/REPO on GitHub, a git URL, or a local folder.
    Add {
        /// `OWNER/REPO`, `https://…/repo.git`, `file:///…`, or a folder.
        #[arg(value_name = "OWNER/REPO|GIT-URL|PATH")]
        source: String,
    },
    /// List added marketplaces and the plugins they offer.
    List,
    /// Fetch a marketplace again (all when omitted).
    Update {
        /// The marketplace's name.
        name: Option<String>,
    },
    /// Remove a marketplace and the plugins installed from it.
    Remove {
        /// The marketplace's name.
        name: String,
    },
}

/// The policy check applied to marketplaces: `Err(reason)` refuses.
pub type Gate = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Where plugins are kept and what the policy allows, for one run.
pub struct PluginEnv {
    /// The store.
    pub store: PluginStore,
    /// The policy's marketplace lists.
    pub gate: Gate,
}

impl PluginEnv {
    /// The standard locations and the policy for this process.
    pub fn from_env() -> Result<Self> {
        let config = config_dir_from_env()
            .context("cannot find your config folder: set HOME or XDG_CONFIG_HOME")?;
        let mut paths = cubicle_policy::PolicyPaths::standard(config.parent());
        if let Some(dir) = std::env::var_os("CUBICLE_MANAGED_DIR") {
            let dir = PathBuf::from(dir);
            paths.managed_file = dir.join("managed.toml");
            paths.managed_dir = dir.join("managed.d");
        }
        let policy = cubicle_policy::Policy::load(&paths, &Default::default(), &[])
            .context("cannot load the settings that say which marketplaces are allowed")?;
        Ok(Self {
            store: PluginStore::new(plugins_dir(&config)),
            gate: policy_gate(policy),
        })
    }
}

/// The gate of a loaded policy.
pub fn policy_gate(policy: cubicle_policy::Policy) -> Gate {
    Box::new(move |id: &str| policy.marketplace_allowed(id).map_err(|d| d.explain()))
}

/// Runs a `plugin` subcommand.
pub async fn run(cmd: PluginCommand) -> Result<ExitCode> {
    let env = PluginEnv::from_env()?;
    // Fetching is blocking network and file work.
    tokio::task::spawn_blocking(move || run_in(cmd, &env, &mut std::io::stdout().lock()))
        .await
        .context("the plugin command stopped unexpectedly")?
}

/// Runs a `plugin` subcommand against `env`, writing to `out`.
pub fn run_in(cmd: PluginCommand, env: &PluginEnv, out: &mut dyn Write) -> Result<ExitCode> {
    let gate = |id: &str| (env.gate)(id);
    let store = &env.store;
    match cmd {
        PluginCommand::Marketplace { action } => match action {
            MarketplaceAction::Add { source } => {
                let (record, market) = store.add_marketplace(&source, &gate)?;
                writeln!(
                    out,
                    "Added marketplace `{}` from {}{} with {} plugin(s).",
                    record.name,
                    record.source,
                    commit_note(record.commit.as_deref()),
                    market.plugins.len()
                )?;
                for w in &market.warnings {
                    writeln!(out, "warning: {w}")?;
                }
                writeln!(
                    out,
                    "Install one with `cubicle plugin install PLUGIN@{}`.",
                    record.name
                )?;
            }
            MarketplaceAction::List => {
                let all = store.marketplaces()?;
                if all.is_empty() {
                    writeln!(
                        out,
                        "No marketplaces. Add one with `cubicle plugin marketplace add OWNER/REPO|GIT-URL|PATH`."
                    )?;
                }
                for (name, record) in all {
                    writeln!(
                        out,
                        "{name}  {}{}",
                        record.source,
                        commit_note(record.commit.as_deref())
                    )?;
                    match store.load_marketplace(&name) {
                        Ok((_, market)) => {
                            for e in &market.plugins {
                                let desc = e.manifest.description.as_deref().unwrap_or("");
                                writeln!(out, "  {}@{name}  {desc}", e.manifest.name)?;
                            }
                        }
                        Err(e) => writeln!(out, "  (cannot read it: {e})")?,
                    }
                }
            }
            MarketplaceAction::Update { name } => {
                let names: Vec<String> = match name {
                    Some(n) => vec![n],
                    None => store.marketplaces()?.into_keys().collect(),
                };
                for n in names {
                    let u = store.update_marketplace(&n, &gate)?;
                    if u.before.commit == u.after.commit {
                        writeln!(out, "Marketplace `{n}` is up to date.")?;
                    } else {
                        writeln!(
                            out,
                            "Updated marketplace `{n}`: {} -> {}.",
                            short(u.before.commit.as_deref()),
                            short(u.after.commit.as_deref())
                        )?;
                    }
                    for w in &u.warnings {
                        writeln!(out, "warning: {w}")?;
                    }
                }
            }
            MarketplaceAction::Remove { name } => {
                let removed = store.remove_marketplace(&name)?;
                writeln!(out, "Removed marketplace `{name}`.")?;
                for r in removed {
                    writeln!(out, "Uninstalled {} with it.", r.spec())?;
                }
            }
        },
        PluginCommand::Install { spec } => {
            let report = store.install(&spec, &gate)?;
            writeln!(
                out,
                "Installed {}{}{}: {}.",
                report.record.spec(),
                version_note(report.record.version.as_deref()),
                commit_note(report.record.commit.as_deref()),
                components(&report.plugin)
            )?;
            for w in &report.plugin.warnings {
                writeln!(out, "warning: {w}")?;
            }
        }
        PluginCommand::Uninstall { spec } => {
            let record = store.uninstall(&spec)?;
            writeln!(out, "Uninstalled {}.", record.spec())?;
        }
        PluginCommand::List => {
            let all = store.load_installed()?;
            if all.is_empty() {
                writeln!(
                    out,
                    "No plugins installed. Install one with `cubicle plugin install PLUGIN@MARKETPLACE`."
                )?;
            }
            let mut broken = false;
            for (record, loaded) in all {
                match loaded {
                    Ok(plugin) => {
                        writeln!(
                            out,
                            "{}{}{}: {}",
                            record.spec(),
                            version_note(record.version.as_deref()),
                            commit_note(record.commit.as_deref()),
                            components(&plugin)
                        )?;
                        for c in &plugin.commands {
                            let usage = match c.argument_hint.as_deref().map(str::trim) {
                                Some(h) if !h.is_empty() => format!("/{} {h}", c.name),
                                _ => format!("/{}", c.name),
                            };
                            writeln!(out, "  {usage}  {}", c.description)?;
                        }
                        for a in &plugin.agents {
                            writeln!(
                                out,
                                "  agent {} (the model calls it as `{}`)  {}",
                                a.name,
                                cubicle_skills::agents::delegate_tool_name(&a.name),
                                a.description
                            )?;
                        }
                    }
                    Err(e) => {
                        broken = true;
                        writeln!(out, "{}: cannot be loaded: {e}", record.spec())?;
                    }
                }
            }
            if broken {
                return Ok(ExitCode::FAILURE);
            }
        }
        PluginCommand::Update { spec } => {
            let specs: Vec<String> = match spec {
                Some(s) => vec![s],
                None => store.installed()?.into_keys().collect(),
            };
            for s in specs {
                match store.update(&s, &gate)? {
                    Some(report) => {
                        let before = report.previous.as_ref();
                        writeln!(
                            out,
                            "Updated {}: {} -> {}.",
                            report.record.spec(),
                            short(before.and_then(|p| p.commit.as_deref())),
                            short(report.record.commit.as_deref())
                        )?;
                    }
                    None => writeln!(out, "{s} is up to date.")?,
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn components(p: &Plugin) -> String {
    let mut parts = Vec::new();
    let mut add = |n: usize, what: &str| {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    };
    add(p.skills.len(), "skill(s)");
    add(p.commands.len(), "command(s)");
    add(p.agents.len(), "agent(s)");
    add(p.hooks.len(), "hook(s)");
    add(p.mcp_servers.len(), "MCP server(s)");
    if parts.is_empty() {
        "no components".to_owned()
    } else {
        parts.join(", ")
    }
}

fn version_note(v: Option<&str>) -> String {
    v.map(|v| format!(" v{v}")).unwrap_or_default()
}

fn commit_note(c: Option<&str>) -> String {
    c.map(|c| format!(" at {}", short(Some(c))))
        .unwrap_or_default()
}

fn short(c: Option<&str>) -> String {
    c.map(|c| c.chars().take(12).collect())
        .unwrap_or_else(|| "-".to_owned())
}
