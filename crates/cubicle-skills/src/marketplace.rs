//! Plugin marketplaces in Claude Code's format: a repository (or folder)
//! with `.claude-plugin/marketplace.json` listing plugins and where each
//! comes from.
//!
//! ```json
//! {"name": "acme-tools", "owner": {"name": "Acme"},
//!  "metadata": {"pluginRoot": "./plugins"},
//!  "plugins": [
//!    {"name": "fmt", "source": "./fmt", "description": "Formats code"},
//!    {"name": "deploy", "source": {"source": "github", "repo": "acme/deploy", "ref": "v2"}},
//!    {"name": "lint", "source": {"source": "url", "url": "https://git.acme.dev/lint.git", "sha": "…"}},
//!    {"name": "docs", "source": {"source": "git-subdir", "url": "…", "path": "plugins/docs"}, "strict": false}]}
//! ```
//!
//! An entry that cannot be read is a warning naming it; the others stay
//! installable. A relative source must stay inside the marketplace: `..`
//! and symbolic links out of it are refused.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::frontmatter::Diagnostic;
use crate::git::Revision;
use crate::plugin::{PluginManifest, read_json, validate_plugin_name};

/// The manifest's path inside a marketplace.
pub const MARKETPLACE_MANIFEST: &str = ".claude-plugin/marketplace.json";

/// Why a marketplace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MarketplaceError {
    /// No manifest.
    #[error("{root}: no {MARKETPLACE_MANIFEST}: this is not a plugin marketplace")]
    NoManifest {
        /// The folder.
        root: PathBuf,
    },
    /// The manifest could not be read or is not JSON.
    #[error(transparent)]
    Read(#[from] crate::plugin::PluginError),
    /// The manifest is not a usable marketplace.
    #[error("{path}: {message}")]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A relative source leaves the marketplace.
    #[error("plugin `{plugin}`: source `{source_path}` is outside the marketplace; refused")]
    Outside {
        /// The plugin.
        plugin: String,
        /// The source as written.
        source_path: String,
    },
    /// A relative source does not exist.
    #[error("plugin `{plugin}`: source folder `{source_path}` does not exist in the marketplace")]
    MissingSource {
        /// The plugin.
        plugin: String,
        /// The source as written.
        source_path: String,
    },
}

/// Where a listed plugin's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A folder in the marketplace itself.
    Relative(String),
    /// A GitHub repository `owner/repo`.
    Github {
        /// `owner/repo`.
        repo: String,
        /// Which revision.
        rev: Revision,
    },
    /// Any git repository.
    Git {
        /// Its URL.
        url: String,
        /// Which revision.
        rev: Revision,
    },
    /// A folder inside a git repository.
    GitSubdir {
        /// The repository's URL.
        url: String,
        /// The folder in it.
        path: String,
        /// Which revision.
        rev: Revision,
    },
    /// A source type Cubicle does not install (npm, pip, …).
    Unsupported(String),
}

impl PluginSource {
    /// The git URL to fetch, for git sources.
    pub fn git_url(&self) -> Option<String> {
        self.git_url_at(&github_base())
    }

    /// The git URL to fetch, for git sources, with `github` sources under
    /// GitHub base URL `github_base`.
    pub fn git_url_at(&self, github_base: &str) -> Option<String> {
        match self {
            PluginSource::Github { repo, .. } => Some(github_url_at(github_base, repo)),
            PluginSource::Git { url, .. } | PluginSource::GitSubdir { url, .. } => {
                Some(rebase_github(url, github_base))
            }
            PluginSource::Relative(_) | PluginSource::Unsupported(_) => None,
        }
    }
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rev = |r: &Revision| match r {
            Revision::Head => String::new(),
            Revision::Ref(r) => format!("#{r}"),
            Revision::Commit(c) => format!("@{c}"),
        };
        match self {
            PluginSource::Relative(p) => write!(f, "{p}"),
            PluginSource::Github { repo, rev: r } => write!(f, "github:{repo}{}", rev(r)),
            PluginSource::Git { url, rev: r } => write!(f, "{url}{}", rev(r)),
            PluginSource::GitSubdir { url, path, rev: r } => write!(f, "{url}{} ({path})", rev(r)),
            PluginSource::Unsupported(k) => write!(f, "({k} source)"),
        }
    }
}

/// Where `github` sources are fetched from.
pub const GITHUB_BASE: &str = "https://github.com";

/// The environment variable that replaces [`GITHUB_BASE`] (a GitHub
/// Enterprise host, a mirror, or a test server on loopback), e.g.
/// `CUBICLE_GITHUB_BASE=http://127.0.0.1:8080`.
pub const GITHUB_BASE_ENV: &str = "CUBICLE_GITHUB_BASE";

/// The base URL `github` sources are fetched from: `$CUBICLE_GITHUB_BASE`
/// when set, else `https://github.com`, without a trailing `/`.
pub fn github_base() -> String {
    std::env::var(GITHUB_BASE_ENV)
        .ok()
        .map(|b| b.trim().trim_end_matches('/').to_owned())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| GITHUB_BASE.to_owned())
}

/// The clone URL of GitHub repository `owner/repo` (under [`github_base`]).
pub fn github_url(repo: &str) -> String {
    github_url_at(&github_base(), repo)
}

/// `url` with a `https://github.com/` prefix moved under `github_base`, so
/// that every GitHub source follows [`GITHUB_BASE_ENV`].
pub fn rebase_github(url: &str, github_base: &str) -> String {
    let base = github_base.trim_end_matches('/');
    match url.strip_prefix("https://github.com/") {
        Some(rest) if base != GITHUB_BASE => format!("{base}/{rest}"),
        _ => url.to_owned(),
    }
}

/// The clone URL of repository `owner/repo` under GitHub base URL `base`.
pub fn github_url_at(base: &str, repo: &str) -> String {
    format!("{}/{repo}.git", base.trim_end_matches('/'))
}

/// One plugin a marketplace lists.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketplaceEntry {
    /// The entry read as a plugin manifest (name, description, version,
    /// components).
    pub manifest: PluginManifest,
    /// Where its files come from.
    pub source: PluginSource,
    /// `strict` (default true): the plugin's own manifest is the authority
    /// and the entry supplements it; false: the entry is the whole definition.
    pub strict: bool,
}

/// A marketplace read from disk.
#[derive(Debug, Clone)]
pub struct Marketplace {
    /// Its name (`plugin@name` installs from it).
    pub name: String,
    /// Its owner's name.
    pub owner: Option<String>,
    /// What it offers.
    pub description: Option<String>,
    /// The plugins it lists, in its order.
    pub plugins: Vec<MarketplaceEntry>,
    /// Entries that could not be read, and other problems.
    pub warnings: Vec<Diagnostic>,
    root: PathBuf,
    plugin_root: String,
}

impl Marketplace {
    /// Reads the marketplace whose repository (or folder) is `root`.
    pub fn load(root: &Path) -> Result<Self, MarketplaceError> {
        let path = root.join(MARKETPLACE_MANIFEST);
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return Err(MarketplaceError::NoManifest {
                root: root.to_path_buf(),
            });
        }
        let value = read_json(&path)?;
        Self::from_json(&value, root, &path)
    }

    /// Reads a marketplace manifest `value` for the repository at `root`.
    pub fn from_json(value: &Value, root: &Path, path: &Path) -> Result<Self, MarketplaceError> {
        let invalid = |message: String| MarketplaceError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let Value::Object(map) = value else {
            return Err(invalid("a marketplace must be a JSON object".to_owned()));
        };
        let name = match map.get("name") {
            Some(Value::String(n)) => n.trim().to_owned(),
            _ => return Err(invalid("`name` (a string) is required".to_owned())),
        };
        validate_plugin_name(&name).map_err(|why| invalid(format!("name `{name}`: {why}")))?;
        let plugins = match map.get("plugins") {
            Some(Value::Array(a)) => a,
            _ => return Err(invalid("`plugins` (a list) is required".to_owned())),
        };
        let metadata = map.get("metadata");
        let plugin_root = metadata
            .and_then(|m| m.get("pluginRoot"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut warnings = Vec::new();
        let mut entries: Vec<MarketplaceEntry> = Vec::new();
        for (i, entry) in plugins.iter().enumerate() {
            let shown = entry
                .get("name")
                .and_then(Value::as_str)
                .map(|n| format!("`{n}`"))
                .unwrap_or_else(|| format!("#{}", i + 1));
            match read_entry(entry, path, &mut warnings) {
                Ok(e) if entries.iter().any(|x| x.manifest.name == e.manifest.name) => {
                    warnings.push(Diagnostic {
                        path: path.to_path_buf(),
                        line: None,
                        message: format!("plugin {shown} is listed twice; the first is used"),
                    });
                }
                Ok(e) => entries.push(e),
                Err(why) => warnings.push(Diagnostic {
                    path: path.to_path_buf(),
                    line: None,
                    message: format!("plugin {shown} skipped: {why}"),
                }),
            }
        }
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        Ok(Self {
            owner: match map.get("owner") {
                Some(Value::Object(o)) => text(o.get("name")),
                other => text(other),
            },
            description: text(map.get("description"))
                .or_else(|| text(metadata.and_then(|m| m.get("description")))),
            name,
            plugins: entries,
            warnings,
            root: root.to_path_buf(),
            plugin_root,
        })
    }

    /// The marketplace's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entry for plugin `name`.
    pub fn entry(&self, name: &str) -> Option<&MarketplaceEntry> {
        self.plugins.iter().find(|e| e.manifest.name == name)
    }

    /// The folder of a relative source, checked to be a real folder inside
    /// the marketplace (no `..`, no symbolic link out of it).
    pub fn resolve_relative(&self, plugin: &str, rel: &str) -> Result<PathBuf, MarketplaceError> {
        let outside = || MarketplaceError::Outside {
            plugin: plugin.to_owned(),
            source_path: rel.to_owned(),
        };
        let base = if rel.starts_with("./") || self.plugin_root.is_empty() {
            PathBuf::new()
        } else {
            lexical_relative(&self.plugin_root).ok_or_else(outside)?
        };
        let rel_path = lexical_relative(rel).ok_or_else(outside)?;
        let dir = self.root.join(base).join(rel_path);
        inside_real(&self.root, &dir).map_err(|missing| {
            if missing {
                MarketplaceError::MissingSource {
                    plugin: plugin.to_owned(),
                    source_path: rel.to_owned(),
                }
            } else {
                outside()
            }
        })?;
        Ok(dir)
    }
}

/// `rel` as a relative path without `..`, or `None`.
pub fn lexical_relative(rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    if p.is_absolute() || rel.contains('\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Checks that `dir` is a real folder inside `root`: `Err(true)` when it is
/// missing, `Err(false)` when it resolves outside `root`.
pub fn inside_real(root: &Path, dir: &Path) -> Result<(), bool> {
    let meta = std::fs::symlink_metadata(dir).map_err(|_| true)?;
    if !meta.is_dir() {
        // A link is refused as outside; anything else is missing.
        return Err(!meta.file_type().is_symlink());
    }
    let root = root.canonicalize().map_err(|_| true)?;
    let dir = dir.canonicalize().map_err(|_| true)?;
    if dir.starts_with(&root) {
        Ok(())
    } else {
        Err(false)
    }
}

fn read_entry(
    entry: &Value,
    path: &Path,
    warnings: &mut Vec<Diagnostic>,
) -> Result<MarketplaceEntry, String> {
    let mut w = Vec::new();
    let manifest = PluginManifest::from_json(entry, path, &mut w).map_err(|e| match e {
        crate::plugin::PluginError::Manifest { message, .. } => message,
        other => other.to_string(),
    })?;
    warnings.extend(w);
    let strict = match entry.get("strict") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("`strict` should be true or false".to_owned()),
    };
    let source = match entry.get("source") {
        Some(Value::String(s)) => {
            if crate::git::is_git_url(s) {
                PluginSource::Git {
                    url: s.clone(),
                    rev: Revision::Head,
                }
            } else {
                PluginSource::Relative(s.clone())
            }
        }
        Some(Value::Object(src)) => {
            let text = |k: &str| src.get(k).and_then(Value::as_str);
            let rev = Revision::from_ref_sha(text("ref"), text("sha"));
            match text("source") {
                Some("github") => {
                    let repo = text("repo").ok_or("a github source needs `repo`")?;
                    let valid = repo.split('/').count() == 2
                        && repo.split('/').all(|p| {
                            !p.is_empty()
                                && p != ".."
                                && p.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                        });
                    if !valid {
                        return Err(format!("`{repo}` is not a GitHub `owner/repo`"));
                    }
                    PluginSource::Github {
                        repo: repo.to_owned(),
                        rev,
                    }
                }
                Some("url") | Some("git") => PluginSource::Git {
                    url: text("url").ok_or("a url source needs `url`")?.to_owned(),
                    rev,
                },
                Some("git-subdir") => PluginSource::GitSubdir {
                    url: text("url")
                        .or(text("repo").map(|_| ""))
                        .filter(|u| !u.is_empty())
                        .map(str::to_owned)
                        .or_else(|| text("repo").map(|r| github_url_at(GITHUB_BASE, r)))
                        .ok_or("a git-subdir source needs `url`")?,
                    path: text("path")
                        .ok_or("a git-subdir source needs `path`")?
                        .to_owned(),
                    rev,
                },
                Some(other) => PluginSource::Unsupported(other.to_owned()),
                None => {
                    return Err("`source.source` (github, url, git-subdir) is required".to_owned());
                }
            }
        }
        Some(_) => return Err("`source` should be a path or an object".to_owned()),
        None => return Err("`source` is required".to_owned()),
    };
    Ok(MarketplaceEntry {
        manifest,
        source,
        strict,
    })
}
