//! Installed marketplaces and plugins, under `~/.config/cubicle/plugins`:
//!
//! ```text
//! plugins/marketplaces.json        what was added, from where, at which commit
//! plugins/installed.json           what is installed, from which marketplace, at which commit
//! plugins/marketplaces/<name>/     a git marketplace's files (local ones are read in place)
//! plugins/installed/<market>/<plugin>/   an installed plugin's files
//! ```
//!
//! Every change is staged in a hidden folder inside `plugins/` and renamed
//! into place, and the records are replaced atomically, so a failed fetch or
//! a bad manifest leaves the previous state as it was and nothing is written
//! outside `plugins/`. Symbolic links are never installed (a plugin from the
//! internet could otherwise point a `SKILL.md` at a host file). A
//! marketplace must pass the policy's allow and block lists when it is
//! added, updated, and installed from.
//!
//! Git sources are fetched over `file://`, `http://` and `https://` (smart
//! HTTP, through `gix`); an HTTP redirect to another host is refused and one
//! on the same host must pass the policy under its new URL too. `OWNER/REPO`
//! and `github` sources are fetched from `https://github.com`, or from the
//! base URL in `CUBICLE_GITHUB_BASE` (a GitHub Enterprise host, a mirror, a
//! test server).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::frontmatter::Diagnostic;
use crate::git::{self, GitError, Revision};
use crate::marketplace::{
    Marketplace, MarketplaceError, PluginSource, github_base, github_url_at, inside_real,
};
use crate::plugin::{Plugin, PluginError, validate_plugin_name};

/// Most files and bytes copied for one plugin.
const MAX_PLUGIN_FILES: usize = 10_000;
const MAX_PLUGIN_BYTES: u64 = 256 * 1024 * 1024;

/// Why a marketplace or plugin operation failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The policy refuses the marketplace.
    #[error("marketplace {id} is not allowed: {reason}")]
    Blocked {
        /// The marketplace's policy id (`github:owner/repo`, a URL, `path:/…`).
        id: String,
        /// The policy's reason.
        reason: String,
    },
    /// The `add` argument is neither a folder, `OWNER/REPO`, nor a git URL.
    #[error(
        "`{source_arg}` is not a marketplace source: give OWNER/REPO (GitHub), a git URL, or a folder that exists"
    )]
    BadSource {
        /// The argument.
        source_arg: String,
    },
    /// A marketplace of that name is already added.
    #[error(
        "a marketplace named `{name}` is already added (from {from}); update it with `cubicle plugin marketplace update {name}`"
    )]
    MarketplaceExists {
        /// The name.
        name: String,
        /// Where it came from.
        from: String,
    },
    /// No marketplace of that name.
    #[error("no marketplace named `{name}`; added: {known}")]
    NoMarketplace {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The marketplace does not list the plugin.
    #[error("marketplace `{marketplace}` has no plugin `{plugin}`; it lists: {available}")]
    NoPlugin {
        /// The plugin.
        plugin: String,
        /// The marketplace.
        marketplace: String,
        /// What it lists.
        available: String,
    },
    /// `NAME` without `@MARKETPLACE` matches several marketplaces.
    #[error(
        "plugin `{plugin}` is in several marketplaces ({markets}); say which, e.g. {plugin}@{first}"
    )]
    Ambiguous {
        /// The plugin.
        plugin: String,
        /// The marketplaces.
        markets: String,
        /// One of them, for the example.
        first: String,
    },
    /// The plugin is already installed.
    #[error("plugin `{spec}` is already installed; update it with `cubicle plugin update {spec}`")]
    AlreadyInstalled {
        /// `plugin@marketplace`.
        spec: String,
    },
    /// The plugin is not installed.
    #[error("plugin `{spec}` is not installed")]
    NotInstalled {
        /// What was asked for.
        spec: String,
    },
    /// The source type cannot be installed.
    #[error(
        "plugin `{plugin}` comes from a {kind} source, which Cubicle does not install; only folders in the marketplace and git repositories are supported"
    )]
    UnsupportedSource {
        /// The plugin.
        plugin: String,
        /// The source type.
        kind: String,
    },
    /// An update fetched a marketplace with another name.
    #[error(
        "the marketplace at {from} is now called `{new}`, not `{old}`; remove it and add it again"
    )]
    Renamed {
        /// The recorded name.
        old: String,
        /// The new name.
        new: String,
        /// Its source.
        from: String,
    },
    /// The plugin has too many files or bytes.
    #[error(
        "plugin `{plugin}` is too large: more than {MAX_PLUGIN_FILES} files or {MAX_PLUGIN_BYTES} bytes"
    )]
    TooLarge {
        /// The plugin.
        plugin: String,
    },
    /// The marketplace manifest is bad.
    #[error(transparent)]
    Marketplace(#[from] MarketplaceError),
    /// The plugin is bad.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Fetching failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// A record file is corrupt.
    #[error("{path}: {message}; fix or delete the file")]
    Record {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a marketplace comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MarketplaceSource {
    /// A GitHub repository.
    Github {
        /// `owner/repo`.
        repo: String,
    },
    /// A git repository.
    Git {
        /// Its URL.
        url: String,
    },
    /// A folder on this machine, read in place.
    Local {
        /// The folder.
        path: PathBuf,
    },
}

impl MarketplaceSource {
    /// Reads an `add` argument: an existing folder, a git URL, or `OWNER/REPO`.
    pub fn parse(arg: &str) -> Result<Self, StoreError> {
        Self::parse_with(arg, &github_base())
    }

    /// Like [`MarketplaceSource::parse`], with GitHub at `github_base`: a
    /// URL under it is a `github` source.
    pub fn parse_with(arg: &str, github_base: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::BadSource {
            source_arg: arg.to_owned(),
        };
        let arg = arg.trim();
        if git::is_git_url(arg) {
            if let Some(repo) = github_repo_of(arg, github_base) {
                return Ok(Self::Github { repo });
            }
            return Ok(Self::Git {
                url: arg.to_owned(),
            });
        }
        let path = Path::new(arg);
        if path.exists() {
            let abs = path.canonicalize().map_err(|_| bad())?;
            return Ok(Self::Local { path: abs });
        }
        let parts: Vec<&str> = arg.split('/').collect();
        let ok = parts.len() == 2
            && parts.iter().all(|p| {
                !p.is_empty()
                    && *p != "."
                    && *p != ".."
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            });
        if ok {
            Ok(Self::Github {
                repo: arg.to_owned(),
            })
        } else {
            Err(bad())
        }
    }

    /// What the policy's `marketplaces.allow` / `block` lists match:
    /// `github:owner/repo`, the git URL, or `path:/folder`.
    pub fn policy_id(&self) -> String {
        match self {
            Self::Github { repo } => format!("github:{repo}"),
            Self::Git { url } => url.clone(),
            Self::Local { path } => format!("path:{}", path.display()),
        }
    }

    fn git_url(&self, github_base: &str) -> Option<String> {
        match self {
            Self::Github { repo } => Some(github_url_at(github_base, repo)),
            Self::Git { url } => Some(url.clone()),
            Self::Local { .. } => None,
        }
    }
}

impl std::fmt::Display for MarketplaceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Github { repo } => write!(f, "github:{repo}"),
            Self::Git { url } => f.write_str(url),
            Self::Local { path } => write!(f, "{}", path.display()),
        }
    }
}

/// `owner/repo` of a `https://github.com/owner/repo(.git)` URL (or one
/// under `github_base`).
fn github_repo_of(url: &str, github_base: &str) -> Option<String> {
    let base = format!("{}/", github_base.trim_end_matches('/'));
    let rest = url
        .strip_prefix(base.as_str())
        .or_else(|| url.strip_prefix("https://github.com/"))
        .or_else(|| url.strip_prefix("git@github.com:"))?;
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    let parts: Vec<&str> = rest.split('/').collect();
    (parts.len() == 2 && parts.iter().all(|p| !p.is_empty())).then(|| rest.to_owned())
}

/// An added marketplace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketplaceRecord {
    /// Its name.
    pub name: String,
    /// Where it comes from.
    pub source: MarketplaceSource,
    /// The commit fetched (git sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When it was last fetched (seconds since 1970).
    pub updated_at: u64,
}

/// An installed plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRecord {
    /// The plugin's name.
    pub plugin: String,
    /// The marketplace it came from.
    pub marketplace: String,
    /// Its version, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where its files came from (as the marketplace says).
    pub source: String,
    /// The commit its files are from (its own repository's, or the
    /// marketplace's for a folder in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When it was installed or last updated (seconds since 1970).
    pub installed_at: u64,
}

impl InstallRecord {
    /// `plugin@marketplace`.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.plugin, self.marketplace)
    }
}

/// What an install or update did.
#[derive(Debug, Clone)]
pub struct InstallReport {
    /// The record written.
    pub record: InstallRecord,
    /// The plugin as installed.
    pub plugin: Plugin,
    /// The previous record, for an update.
    pub previous: Option<InstallRecord>,
}

/// What a marketplace update did.
#[derive(Debug, Clone)]
pub struct MarketplaceUpdate {
    /// The record before.
    pub before: MarketplaceRecord,
    /// The record after.
    pub after: MarketplaceRecord,
    /// Problems in the manifest.
    pub warnings: Vec<Diagnostic>,
}

/// An installed plugin's record and the plugin as loaded (or why not).
pub type LoadedPlugin = (InstallRecord, Result<Plugin, PluginError>);

/// The policy check for marketplaces: `Err(reason)` refuses a policy id.
pub type MarketplaceGate<'a> = &'a dyn Fn(&str) -> Result<(), String>;

/// A gate that allows every marketplace (no policy).
pub fn allow_all(_: &str) -> Result<(), String> {
    Ok(())
}

/// The marketplaces and plugins installed under one folder.
#[derive(Debug, Clone)]
pub struct PluginStore {
    root: PathBuf,
    github_base: String,
}

/// The plugins folder under Cubicle's config folder.
pub fn plugins_dir(config_dir: &Path) -> PathBuf {
    config_dir.join("plugins")
}

impl PluginStore {
    /// The store in `root` (normally `~/.config/cubicle/plugins`), fetching
    /// `github` sources from [`github_base`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            github_base: github_base(),
        }
    }

    /// Fetches `github` sources from `base` (e.g. `http://127.0.0.1:8080`)
    /// instead of `https://github.com`.
    pub fn with_github_base(mut self, base: &str) -> Self {
        self.github_base = base.trim_end_matches('/').to_owned();
        self
    }

    /// Where `github` sources are fetched from.
    pub fn github_base(&self) -> &str {
        &self.github_base
    }

    /// Fetches marketplace `source` into `dir`; a same-host redirect must
    /// pass `gate` under its new URL.
    fn fetch_marketplace(
        &self,
        url: &str,
        dir: &Path,
        gate: MarketplaceGate<'_>,
    ) -> Result<String, StoreError> {
        let on_redirect = |to: &str| {
            let id = MarketplaceSource::parse_with(to, &self.github_base)
                .map(|s| s.policy_id())
                .unwrap_or_else(|_| to.to_owned());
            gate(&id).map_err(|reason| format!("marketplace {id} is not allowed: {reason}"))
        };
        let commit = git::fetch_checked(url, &Revision::Head, dir, &on_redirect)?;
        strip_symlinks(dir)?;
        Ok(commit)
    }

    /// Its folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn marketplaces_file(&self) -> PathBuf {
        self.root.join("marketplaces.json")
    }

    fn installed_file(&self) -> PathBuf {
        self.root.join("installed.json")
    }

    fn marketplace_dir(&self, name: &str) -> PathBuf {
        self.root.join("marketplaces").join(name)
    }

    /// Where plugin `plugin` from `marketplace` is installed.
    pub fn plugin_dir(&self, marketplace: &str, plugin: &str) -> PathBuf {
        self.root.join("installed").join(marketplace).join(plugin)
    }

    /// The added marketplaces, by name.
    pub fn marketplaces(&self) -> Result<BTreeMap<String, MarketplaceRecord>, StoreError> {
        read_records(&self.marketplaces_file())
    }

    /// The installed plugins, by `plugin@marketplace`.
    pub fn installed(&self) -> Result<BTreeMap<String, InstallRecord>, StoreError> {
        read_records(&self.installed_file())
    }

    /// Where a marketplace's files are.
    pub fn marketplace_root(&self, record: &MarketplaceRecord) -> PathBuf {
        match &record.source {
            MarketplaceSource::Local { path } => path.clone(),
            MarketplaceSource::Github { .. } | MarketplaceSource::Git { .. } => {
                self.marketplace_dir(&record.name)
            }
        }
    }

    /// Reads an added marketplace's manifest.
    pub fn load_marketplace(
        &self,
        name: &str,
    ) -> Result<(MarketplaceRecord, Marketplace), StoreError> {
        let record = self.marketplace_record(name)?;
        let market = Marketplace::load(&self.marketplace_root(&record))?;
        Ok((record, market))
    }

    fn marketplace_record(&self, name: &str) -> Result<MarketplaceRecord, StoreError> {
        let all = self.marketplaces()?;
        all.get(name)
            .cloned()
            .ok_or_else(|| StoreError::NoMarketplace {
                name: name.to_owned(),
                known: names_or_none(all.keys()),
            })
    }

    fn staging(&self) -> Result<tempfile::TempDir, StoreError> {
        std::fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&self.root)
            .map_err(io_err(&self.root))
    }

    /// Adds the marketplace at `source` (`OWNER/REPO`, a git URL, or a
    /// folder) if `gate` allows it; returns its record and manifest.
    pub fn add_marketplace(
        &self,
        source: &str,
        gate: MarketplaceGate<'_>,
    ) -> Result<(MarketplaceRecord, Marketplace), StoreError> {
        let source = MarketplaceSource::parse_with(source, &self.github_base)?;
        check_gate(gate, &source)?;
        let staging = self.staging()?;
        let (market, commit, fetched) = match source.git_url(&self.github_base) {
            Some(url) => {
                let dir = staging.path().join("repo");
                let commit = self.fetch_marketplace(&url, &dir, gate)?;
                (Marketplace::load(&dir)?, Some(commit), Some(dir))
            }
            None => {
                let root = match &source {
                    MarketplaceSource::Local { path } => path.clone(),
                    MarketplaceSource::Github { .. } | MarketplaceSource::Git { .. } => {
                        PathBuf::new()
                    }
                };
                (Marketplace::load(&root)?, None, None)
            }
        };
        let mut all = self.marketplaces()?;
        if let Some(existing) = all.get(&market.name) {
            return Err(StoreError::MarketplaceExists {
                name: market.name.clone(),
                from: existing.source.to_string(),
            });
        }
        if let Some(dir) = fetched {
            let target = self.marketplace_dir(&market.name);
            let parent = self.root.join("marketplaces");
            std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
            // A folder left without a record (an interrupted remove) goes.
            if target.exists() {
                std::fs::remove_dir_all(&target).map_err(io_err(&target))?;
            }
            std::fs::rename(&dir, &target).map_err(io_err(&target))?;
        }
        let record = MarketplaceRecord {
            name: market.name.clone(),
            source,
            commit,
            updated_at: now(),
        };
        all.insert(record.name.clone(), record.clone());
        write_records(&self.marketplaces_file(), &all)?;
        let market = Marketplace::load(&self.marketplace_root(&record))?;
        Ok((record, market))
    }

    /// Fetches marketplace `name` again and swaps the new files in.
    pub fn update_marketplace(
        &self,
        name: &str,
        gate: MarketplaceGate<'_>,
    ) -> Result<MarketplaceUpdate, StoreError> {
        let before = self.marketplace_record(name)?;
        check_gate(gate, &before.source)?;
        let mut after = before.clone();
        after.updated_at = now();
        let market = match before.source.git_url(&self.github_base) {
            Some(url) => {
                let staging = self.staging()?;
                let dir = staging.path().join("repo");
                let commit = self.fetch_marketplace(&url, &dir, gate)?;
                let market = Marketplace::load(&dir)?;
                if market.name != before.name {
                    return Err(StoreError::Renamed {
                        old: before.name.clone(),
                        new: market.name,
                        from: before.source.to_string(),
                    });
                }
                swap_in(&dir, &self.marketplace_dir(name), staging.path())?;
                after.commit = Some(commit);
                market
            }
            None => Marketplace::load(&self.marketplace_root(&before))?,
        };
        let mut all = self.marketplaces()?;
        all.insert(name.to_owned(), after.clone());
        write_records(&self.marketplaces_file(), &all)?;
        Ok(MarketplaceUpdate {
            before,
            after,
            warnings: market.warnings,
        })
    }

    /// Removes marketplace `name` and the plugins installed from it; returns
    /// those plugins.
    pub fn remove_marketplace(&self, name: &str) -> Result<Vec<InstallRecord>, StoreError> {
        let record = self.marketplace_record(name)?;
        let mut removed = Vec::new();
        for (spec, r) in self.installed()? {
            if r.marketplace == name {
                self.uninstall(&spec)?;
                removed.push(r);
            }
        }
        let mut all = self.marketplaces()?;
        all.remove(name);
        write_records(&self.marketplaces_file(), &all)?;
        if !matches!(record.source, MarketplaceSource::Local { .. }) {
            let dir = self.marketplace_dir(name);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
            }
        }
        let dir = self.root.join("installed").join(name);
        let _ = std::fs::remove_dir(&dir);
        Ok(removed)
    }

    /// Splits `plugin@marketplace`, finding the marketplace when only one
    /// lists the plugin.
    pub fn resolve_spec(&self, spec: &str) -> Result<(String, String), StoreError> {
        if let Some((plugin, market)) = spec.rsplit_once('@') {
            return Ok((plugin.to_owned(), market.to_owned()));
        }
        let mut found = Vec::new();
        for name in self.marketplaces()?.keys() {
            if let Ok((_, m)) = self.load_marketplace(name)
                && m.entry(spec).is_some()
            {
                found.push(name.clone());
            }
        }
        match found.as_slice() {
            [one] => Ok((spec.to_owned(), one.clone())),
            [] => Err(StoreError::NotInstalled {
                spec: format!("{spec} (no added marketplace lists it)"),
            }),
            [first, ..] => Err(StoreError::Ambiguous {
                plugin: spec.to_owned(),
                markets: found.join(", "),
                first: first.clone(),
            }),
        }
    }

    /// Installs `plugin@marketplace` (or `plugin`, when one marketplace
    /// lists it).
    pub fn install(
        &self,
        spec: &str,
        gate: MarketplaceGate<'_>,
    ) -> Result<InstallReport, StoreError> {
        let (plugin, market_name) = self.resolve_spec(spec)?;
        let key = format!("{plugin}@{market_name}");
        if self.installed()?.contains_key(&key) {
            return Err(StoreError::AlreadyInstalled { spec: key });
        }
        self.install_or_update(&plugin, &market_name, gate, None)
    }

    /// Fetches installed plugin `spec` again and swaps it in when its commit
    /// or version changed (returns `None` when it is up to date).
    pub fn update(
        &self,
        spec: &str,
        gate: MarketplaceGate<'_>,
    ) -> Result<Option<InstallReport>, StoreError> {
        let installed = self.installed()?;
        let previous = installed
            .get(spec)
            .or_else(|| {
                let mut it = installed.values().filter(|r| r.plugin == spec);
                match (it.next(), it.next()) {
                    (Some(one), None) => Some(one),
                    _ => None,
                }
            })
            .cloned()
            .ok_or_else(|| StoreError::NotInstalled {
                spec: spec.to_owned(),
            })?;
        let report = self.install_or_update(
            &previous.plugin,
            &previous.marketplace,
            gate,
            Some(previous.clone()),
        )?;
        let unchanged = report.record.commit == previous.commit
            && report.record.version == previous.version
            && report.record.source == previous.source;
        Ok((!unchanged).then_some(report))
    }

    fn install_or_update(
        &self,
        plugin_name: &str,
        market_name: &str,
        gate: MarketplaceGate<'_>,
        previous: Option<InstallRecord>,
    ) -> Result<InstallReport, StoreError> {
        let (market_record, market) = self.load_marketplace(market_name)?;
        check_gate(gate, &market_record.source)?;
        let entry = market
            .entry(plugin_name)
            .cloned()
            .ok_or_else(|| StoreError::NoPlugin {
                plugin: plugin_name.to_owned(),
                marketplace: market_name.to_owned(),
                available: names_or_none(market.plugins.iter().map(|e| &e.manifest.name)),
            })?;
        validate_plugin_name(plugin_name).map_err(|why| {
            StoreError::Plugin(PluginError::Manifest {
                path: market.root().to_path_buf(),
                message: format!("plugin name `{plugin_name}`: {why}"),
            })
        })?;
        let staging = self.staging()?;
        let dir = staging.path().join("plugin");
        let commit = match &entry.source {
            PluginSource::Relative(rel) => {
                let src = market.resolve_relative(plugin_name, rel)?;
                copy_tree(&src, &dir, plugin_name)?;
                market_record.commit.clone()
            }
            PluginSource::Github { rev, .. } | PluginSource::Git { rev, .. } => {
                let url = entry
                    .source
                    .git_url_at(&self.github_base)
                    .unwrap_or_default();
                let commit = git::fetch(&url, rev, &dir)?;
                strip_symlinks(&dir)?;
                Some(commit)
            }
            PluginSource::GitSubdir { url, path, rev } => {
                let clone = staging.path().join("clone");
                let url = entry
                    .source
                    .git_url_at(&self.github_base)
                    .unwrap_or(url.clone());
                let commit = git::fetch(&url, rev, &clone)?;
                strip_symlinks(&clone)?;
                let rel = crate::marketplace::lexical_relative(path).ok_or_else(|| {
                    MarketplaceError::Outside {
                        plugin: plugin_name.to_owned(),
                        source_path: path.clone(),
                    }
                })?;
                let sub = clone.join(rel);
                inside_real(&clone, &sub).map_err(|missing| {
                    if missing {
                        MarketplaceError::MissingSource {
                            plugin: plugin_name.to_owned(),
                            source_path: path.clone(),
                        }
                    } else {
                        MarketplaceError::Outside {
                            plugin: plugin_name.to_owned(),
                            source_path: path.clone(),
                        }
                    }
                })?;
                std::fs::rename(&sub, &dir).map_err(io_err(&dir))?;
                Some(commit)
            }
            PluginSource::Unsupported(kind) => {
                return Err(StoreError::UnsupportedSource {
                    plugin: plugin_name.to_owned(),
                    kind: kind.clone(),
                });
            }
        };
        // Loading validates the manifest and components before anything
        // is moved into place.
        Plugin::load_with_entry(&dir, Some(&entry.manifest), entry.strict)?;
        let target = self.plugin_dir(market_name, plugin_name);
        swap_in(&dir, &target, staging.path())?;
        let mut loaded = Plugin::load_with_entry(&target, Some(&entry.manifest), entry.strict)?;
        if loaded.manifest.name != plugin_name {
            loaded.warnings.push(Diagnostic {
                path: target.join(crate::plugin::PLUGIN_MANIFEST),
                line: None,
                message: format!(
                    "the plugin calls itself `{}` but the marketplace lists it as `{plugin_name}`; `{plugin_name}` is used",
                    loaded.manifest.name
                ),
            });
        }
        let record = InstallRecord {
            plugin: plugin_name.to_owned(),
            marketplace: market_name.to_owned(),
            version: loaded.manifest.version.clone(),
            source: entry.source.to_string(),
            commit,
            installed_at: now(),
        };
        let mut all = self.installed()?;
        all.insert(record.spec(), record.clone());
        write_records(&self.installed_file(), &all)?;
        Ok(InstallReport {
            record,
            plugin: loaded,
            previous,
        })
    }

    /// Removes installed plugin `spec` (`plugin@marketplace`, or `plugin`
    /// when only one is installed under that name).
    pub fn uninstall(&self, spec: &str) -> Result<InstallRecord, StoreError> {
        let mut all = self.installed()?;
        let key = if all.contains_key(spec) {
            spec.to_owned()
        } else {
            let matches: Vec<&String> = all
                .iter()
                .filter(|(_, r)| r.plugin == spec)
                .map(|(k, _)| k)
                .collect();
            match matches.as_slice() {
                [one] => (*one).clone(),
                _ => {
                    return Err(StoreError::NotInstalled {
                        spec: spec.to_owned(),
                    });
                }
            }
        };
        let Some(record) = all.remove(&key) else {
            return Err(StoreError::NotInstalled { spec: key });
        };
        write_records(&self.installed_file(), &all)?;
        let dir = self.plugin_dir(&record.marketplace, &record.plugin);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(record)
    }

    /// The installed plugins, loaded (a plugin that no longer loads is an
    /// error in its slot; the others are unaffected).
    pub fn load_installed(&self) -> Result<Vec<LoadedPlugin>, StoreError> {
        let markets = self.marketplaces()?;
        let mut out = Vec::new();
        for record in self.installed()?.into_values() {
            let dir = self.plugin_dir(&record.marketplace, &record.plugin);
            let entry = markets
                .get(&record.marketplace)
                .and_then(|m| Marketplace::load(&self.marketplace_root(m)).ok())
                .and_then(|m| m.entry(&record.plugin).cloned());
            let loaded = match &entry {
                Some(e) => Plugin::load_with_entry(&dir, Some(&e.manifest), e.strict),
                None => Plugin::load(&dir),
            };
            out.push((record, loaded));
        }
        Ok(out)
    }
}

fn check_gate(gate: MarketplaceGate<'_>, source: &MarketplaceSource) -> Result<(), StoreError> {
    let id = source.policy_id();
    gate(&id).map_err(|reason| StoreError::Blocked { id, reason })
}

fn names_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn read_records<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<BTreeMap<String, T>, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| StoreError::Record {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_records<T: Serialize>(
    path: &Path,
    records: &BTreeMap<String, T>,
) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let text = serde_json::to_string_pretty(records).map_err(|e| StoreError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Moves `new` to `target`, replacing what is there; the old folder is
/// moved aside into `staging` first, so a failure leaves one or the other.
fn swap_in(new: &Path, target: &Path, staging: &Path) -> Result<(), StoreError> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    if std::fs::symlink_metadata(target).is_ok() {
        let aside = staging.join("previous");
        std::fs::rename(target, &aside).map_err(io_err(target))?;
        if let Err(e) = std::fs::rename(new, target) {
            let _ = std::fs::rename(&aside, target);
            return Err(io_err(target)(e));
        }
        Ok(())
    } else {
        std::fs::rename(new, target).map_err(io_err(target))
    }
}

/// Copies the regular files and folders of `src` into new folder `dst`;
/// symbolic links and `.git` are left out.
fn copy_tree(src: &Path, dst: &Path, plugin: &str) -> Result<(), StoreError> {
    let mut files = 0usize;
    let mut bytes = 0u64;
    copy_dir(src, dst, plugin, &mut files, &mut bytes)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    plugin: &str,
    files: &mut usize,
    bytes: &mut u64,
) -> Result<(), StoreError> {
    std::fs::create_dir(dst).map_err(io_err(dst))?;
    for entry in std::fs::read_dir(src).map_err(io_err(src))? {
        let entry = entry.map_err(io_err(src))?;
        let ft = entry.file_type().map_err(io_err(&entry.path()))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        if ft.is_dir() {
            if entry.file_name() != ".git" {
                copy_dir(&from, &to, plugin, files, bytes)?;
            }
        } else if ft.is_file() {
            *files += 1;
            *bytes += entry.metadata().map_err(io_err(&from))?.len();
            if *files > MAX_PLUGIN_FILES || *bytes > MAX_PLUGIN_BYTES {
                return Err(StoreError::TooLarge {
                    plugin: plugin.to_owned(),
                });
            }
            let mut input = std::fs::File::open(&from).map_err(io_err(&from))?;
            let mut output = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&to)
                .map_err(io_err(&to))?;
            std::io::copy(&mut input, &mut output).map_err(io_err(&to))?;
            #[cfg(unix)]
            {
                let mode = entry.metadata().map_err(io_err(&from))?.permissions();
                std::fs::set_permissions(&to, mode).map_err(io_err(&to))?;
            }
        }
    }
    Ok(())
}

/// Deletes every symbolic link under `dir` (a fetched repository).
fn strip_symlinks(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(io_err(&path))?;
        if ft.is_symlink() {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        } else if ft.is_dir() {
            strip_symlinks(&path)?;
        }
    }
    Ok(())
}
