//! The skills screen: the installed skills (managed, the person's, plugins'),
//! and importing a `.skill` file the person dropped on the page. The upload
//! is written to a private temporary folder and imported from there with the
//! skills crate's limits; a URL is never accepted from the page for an
//! import. Also a skill's private preferences, and plugin marketplaces:
//! listing them, adding one (a folder or a git URL, if policy allows it) and
//! installing a plugin from one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cubicle_skills::marketplace::Marketplace;
use cubicle_skills::plugin_store::{InstallRecord, MarketplaceRecord, PluginStore, StoreError};
use cubicle_skills::{Preferences, SkillRoots, SkillSource};
use serde::Serialize;

/// One row of the skills screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SkillRow {
    pub name: String,
    pub description: String,
    /// `managed`, `user`, `project` or `plugin`.
    pub source: &'static str,
    /// Only the person can invoke it (the model does not see it).
    pub person_only: bool,
    /// Only the model invokes it.
    pub model_only: bool,
    pub warnings: Vec<String>,
}

/// The installed skills and what the person should know about discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SkillList {
    pub skills: Vec<SkillRow>,
    pub notices: Vec<String>,
    /// Where imports go.
    pub install_dir: Option<PathBuf>,
}

fn source_word(s: &SkillSource) -> &'static str {
    match s {
        SkillSource::Managed => "managed",
        SkillSource::User => "user",
        SkillSource::Project { .. } => "project",
        SkillSource::Plugin { .. } => "plugin",
    }
}

/// Lists the skills under `roots`.
pub(crate) fn list(roots: &SkillRoots) -> SkillList {
    let d = cubicle_skills::discover(roots);
    SkillList {
        skills: d
            .catalog
            .skills()
            .iter()
            .map(|s| SkillRow {
                name: s.name.clone(),
                description: s.description.clone(),
                source: source_word(&s.source),
                person_only: s.frontmatter.disable_model_invocation,
                model_only: !s.frontmatter.user_invocable,
                warnings: s.warnings.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        notices: d.notices.iter().map(ToString::to_string).collect(),
        install_dir: roots.install_dir().map(PathBuf::from),
    }
}

/// Imports an uploaded `.skill` archive: the installed name and warnings.
pub(crate) fn import_upload(
    roots: &SkillRoots,
    bytes: &[u8],
) -> Result<(String, Vec<String>), String> {
    let install = roots
        .install_dir()
        .ok_or("no user skills folder: set HOME or XDG_CONFIG_HOME")?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary folder: {e}"))?;
    let path = dir.path().join("upload.skill");
    std::fs::write(&path, bytes).map_err(|e| format!("cannot keep the upload: {e}"))?;
    let source = path
        .to_str()
        .ok_or("the temporary folder's path is not UTF-8")?;
    let report = cubicle_skills::import(source, install, None).map_err(|e| e.to_string())?;
    Ok((
        report.name,
        report.warnings.iter().map(ToString::to_string).collect(),
    ))
}

/// Most preference keys one request may change, and longest value.
const MAX_PREF_CHANGES: usize = 200;
const MAX_PREF_VALUE: usize = 16 * 1024;

/// One skill's private preferences, for the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PrefsView {
    pub skill: String,
    /// Key/value pairs, sorted by key.
    pub entries: Vec<PrefEntry>,
    /// The free-form Markdown preferences, if any (edited as a file).
    pub notes: Option<String>,
    /// The file they are kept in.
    pub path: PathBuf,
}

/// One preference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PrefEntry {
    pub key: String,
    pub value: String,
}

/// What the page changes: keys to set, then keys to remove.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrefsChange {
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

fn prefs_view(skill: &str, prefs: &Preferences) -> PrefsView {
    PrefsView {
        skill: skill.to_owned(),
        entries: prefs
            .entries()
            .into_iter()
            .map(|(key, value)| PrefEntry { key, value })
            .collect(),
        notes: prefs.notes().map(str::to_owned),
        path: prefs.path().to_path_buf(),
    }
}

/// The preferences of skill `skill` (check that it is installed first with
/// [`require_skill`], so a typo does not leave a stray file).
pub(crate) fn prefs(dir: &Path, skill: &str) -> Result<PrefsView, String> {
    let prefs = Preferences::load(dir, skill).map_err(|e| e.to_string())?;
    Ok(prefs_view(skill, &prefs))
}

/// Applies `change` to `skill`'s preferences. Every key is checked before
/// anything is written.
pub(crate) fn change_prefs(
    dir: &Path,
    skill: &str,
    change: &PrefsChange,
) -> Result<PrefsView, String> {
    if change.set.len() + change.unset.len() > MAX_PREF_CHANGES {
        return Err(format!(
            "change at most {MAX_PREF_CHANGES} preferences at a time"
        ));
    }
    for (key, value) in &change.set {
        if !valid_pref_key(key) {
            return Err(format!(
                "invalid preference key `{key}`: use letters, digits, `_`, `-` and `.`"
            ));
        }
        if value.len() > MAX_PREF_VALUE {
            return Err(format!(
                "the value of `{key}` is too long (at most {MAX_PREF_VALUE} bytes)"
            ));
        }
    }
    let mut prefs = Preferences::load(dir, skill).map_err(|e| e.to_string())?;
    for (key, value) in &change.set {
        prefs.set(key, value).map_err(|e| e.to_string())?;
    }
    for key in &change.unset {
        prefs.unset(key).map_err(|e| e.to_string())?;
    }
    Ok(prefs_view(skill, &prefs))
}

/// The keys the preferences file takes (as `cubicle skill prefs set` does).
fn valid_pref_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Refuses a skill that is not installed.
pub(crate) fn require_skill(roots: &SkillRoots, skill: &str) -> Result<(), String> {
    let d = cubicle_skills::discover(roots);
    if d.catalog.skills().iter().any(|s| s.name == skill) {
        Ok(())
    } else {
        Err(format!("no installed skill named `{skill}`"))
    }
}

/// The policy check for marketplaces, from the front end: `Err(reason)`
/// refuses a marketplace's policy id.
pub type MarketplaceGate = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Where plugins are installed and what the policy allows.
#[derive(Clone)]
pub struct PluginAccess {
    /// The plugin store (normally `~/.config/cubicle/plugins`).
    pub store: PluginStore,
    /// The policy's `marketplaces.allow` / `block` lists.
    pub gate: MarketplaceGate,
}

impl std::fmt::Debug for PluginAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginAccess")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A marketplace and what it offers.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MarketplaceRow {
    pub name: String,
    pub source: String,
    pub commit: Option<String>,
    pub description: Option<String>,
    pub plugins: Vec<OfferedPlugin>,
    /// Why it cannot be read, if it cannot.
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

/// A plugin a marketplace offers.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OfferedPlugin {
    pub name: String,
    pub spec: String,
    pub description: Option<String>,
    pub version: Option<String>,
    pub installed: bool,
}

/// The marketplaces and the installed plugins.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PluginList {
    pub marketplaces: Vec<MarketplaceRow>,
    pub installed: Vec<InstallRecord>,
}

fn market_row(
    record: &MarketplaceRecord,
    market: Result<&Marketplace, String>,
    installed: &BTreeMap<String, InstallRecord>,
) -> MarketplaceRow {
    let mut row = MarketplaceRow {
        name: record.name.clone(),
        source: record.source.to_string(),
        commit: record.commit.clone(),
        description: None,
        plugins: Vec::new(),
        error: None,
        warnings: Vec::new(),
    };
    match market {
        Ok(m) => {
            row.description = m.description.clone();
            row.warnings = m.warnings.iter().map(ToString::to_string).collect();
            row.plugins = m
                .plugins
                .iter()
                .map(|e| {
                    let spec = format!("{}@{}", e.manifest.name, record.name);
                    OfferedPlugin {
                        name: e.manifest.name.clone(),
                        installed: installed.contains_key(&spec),
                        spec,
                        description: e.manifest.description.clone(),
                        version: e.manifest.version.clone(),
                    }
                })
                .collect();
        }
        Err(e) => row.error = Some(e),
    }
    row
}

/// Lists the added marketplaces, their plugins, and what is installed.
pub(crate) fn plugins(access: &PluginAccess) -> Result<PluginList, String> {
    let store = &access.store;
    let installed = store.installed().map_err(|e| e.to_string())?;
    let mut marketplaces = Vec::new();
    for (name, record) in store.marketplaces().map_err(|e| e.to_string())? {
        let loaded = store.load_marketplace(&name).map_err(|e| e.to_string());
        marketplaces.push(market_row(
            &record,
            loaded.as_ref().map(|(_, m)| m).map_err(Clone::clone),
            &installed,
        ));
    }
    Ok(PluginList {
        marketplaces,
        installed: installed.into_values().collect(),
    })
}

/// Adds a marketplace (a folder or a git URL) if policy allows it.
pub(crate) fn add_marketplace(
    access: &PluginAccess,
    source: &str,
) -> Result<MarketplaceRow, StoreError> {
    let gate = |id: &str| (access.gate)(id);
    let (record, market) = access.store.add_marketplace(source, &gate)?;
    let installed = access.store.installed().unwrap_or_default();
    Ok(market_row(&record, Ok(&market), &installed))
}

/// What installing a plugin did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Installed {
    pub record: InstallRecord,
    pub skills: Vec<String>,
    pub warnings: Vec<String>,
}

/// Installs `plugin@marketplace` if policy allows its marketplace.
pub(crate) fn install_plugin(access: &PluginAccess, spec: &str) -> Result<Installed, StoreError> {
    let gate = |id: &str| (access.gate)(id);
    let report = access.store.install(spec, &gate)?;
    Ok(Installed {
        record: report.record,
        skills: report
            .plugin
            .skills
            .iter()
            .map(|s| s.name.clone())
            .collect(),
        warnings: report
            .plugin
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}
