//! Finding skills: which folders are searched, in what order, and what
//! happens when two skills share a name.
//!
//! Precedence on a clash is managed > user > project (plugin skills are
//! named `plugin:skill` and so never clash); within one level the
//! folder listed first wins (Cubicle's own folder before `~/.claude/skills`).
//! The losing skill is not dropped silently: it is reported as a
//! [`Notice::Shadowed`]. Project folders count only when the person trusts
//! them, since a repository's skills are written by whoever wrote the
//! repository. Skill folders that are symbolic links are followed in the
//! managed and user folders (people link their skills there) but not in
//! project folders. A [`SkillIndex`] keeps parsed skills between runs and
//! re-reads a `SKILL.md` only when its size or modification time changed.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::catalog::Catalog;
use crate::frontmatter::Diagnostic;
use crate::skill::{SKILL_FILE, Skill, SkillSource};

/// Project sub-folders searched for skills, in order.
pub const PROJECT_SKILL_DIRS: &[&str] = &[".cubicle/skills", ".claude/skills", ".agents/skills"];

/// A granted folder that may hold project skills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectFolder {
    /// The folder on the host.
    pub path: PathBuf,
    /// Whether the person trusts the folder's skills.
    pub trusted: bool,
}

/// The folders searched for skills, highest precedence first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkillRoots {
    /// Administrator-installed skill folders (normally `/etc/cubicle/skills`).
    pub managed: Vec<PathBuf>,
    /// The person's skill folders; imports go to the first.
    pub user: Vec<PathBuf>,
    /// Granted folders that may hold project skills.
    pub projects: Vec<ProjectFolder>,
    /// Installed plugins' skill folders; their skills are `plugin:skill`.
    pub plugins: Vec<PluginSkills>,
}

/// An installed plugin's skill folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSkills {
    /// The plugin's name.
    pub plugin: String,
    /// Folders holding its skill folders (`skills/` and the manifest's).
    pub dirs: Vec<PathBuf>,
}

impl PluginSkills {
    /// The skill folders of the plugins installed in `store` (those that
    /// load; the others are reported by `cubicle plugin list`).
    pub fn installed(store: &crate::plugin_store::PluginStore) -> Vec<PluginSkills> {
        let Ok(all) = store.load_installed() else {
            return Vec::new();
        };
        all.into_iter()
            .filter_map(|(record, loaded)| {
                let plugin = loaded.ok()?;
                Some(PluginSkills {
                    plugin: record.plugin,
                    dirs: plugin.skill_dirs(),
                })
            })
            .collect()
    }
}

impl SkillRoots {
    /// The standard folders: `managed_dir` (normally `/etc/cubicle`) +
    /// `skills`, `config_dir` (normally `~/.config/cubicle`) + `skills`,
    /// `home` + `.claude/skills`, and the project folders given.
    pub fn standard(
        managed_dir: &Path,
        config_dir: Option<&Path>,
        home: Option<&Path>,
        projects: &[(PathBuf, bool)],
    ) -> Self {
        Self {
            managed: vec![managed_dir.join("skills")],
            user: config_dir
                .map(|c| c.join("skills"))
                .into_iter()
                .chain(home.map(|h| h.join(".claude/skills")))
                .collect(),
            projects: projects
                .iter()
                .map(|(path, trusted)| ProjectFolder {
                    path: path.clone(),
                    trusted: *trusted,
                })
                .collect(),
            plugins: config_dir
                .map(|c| {
                    PluginSkills::installed(&crate::plugin_store::PluginStore::new(
                        crate::plugin_store::plugins_dir(c),
                    ))
                })
                .unwrap_or_default(),
        }
    }

    /// The standard folders for this process: `$CUBICLE_MANAGED_DIR` (else
    /// `/etc/cubicle`), `$XDG_CONFIG_HOME/cubicle` (else `~/.config/cubicle`)
    /// and `$HOME`.
    pub fn from_env(projects: &[(PathBuf, bool)]) -> Self {
        let managed = std::env::var_os("CUBICLE_MANAGED_DIR")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/cubicle"));
        let home = std::env::var_os("HOME")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        Self::standard(
            &managed,
            config_dir_from_env().as_deref(),
            home.as_deref(),
            projects,
        )
    }

    /// Where imported and new skills go: the first user folder.
    pub fn install_dir(&self) -> Option<&Path> {
        self.user.first().map(PathBuf::as_path)
    }
}

/// Cubicle's configuration folder: `$XDG_CONFIG_HOME/cubicle`, else
/// `~/.config/cubicle`.
pub fn config_dir_from_env() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|s| !s.is_empty()) {
        Some(d) => Some(PathBuf::from(d).join("cubicle")),
        None => std::env::var_os("HOME")
            .filter(|s| !s.is_empty())
            .map(|h| PathBuf::from(h).join(".config/cubicle")),
    }
}

/// Something a person should know about discovery.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A skill lost a name clash to one of higher precedence.
    Shadowed {
        /// The shared name.
        name: String,
        /// The skill that is used.
        winner: PathBuf,
        /// Where the winner came from.
        winner_source: SkillSource,
        /// The skill that is not used.
        shadowed: PathBuf,
        /// Where the loser came from.
        shadowed_source: SkillSource,
    },
    /// A skill could not be loaded and was skipped.
    Skipped {
        /// Its folder.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// A loaded skill has something wrong with it.
    Warning(Diagnostic),
    /// A granted folder has skills but is not trusted, so they were ignored.
    Untrusted {
        /// The skills folder that was not read.
        dir: PathBuf,
    },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Shadowed {
                name,
                winner,
                winner_source,
                shadowed,
                shadowed_source,
            } => write!(
                f,
                "skill `{name}` at {} ({shadowed_source}) is shadowed by {} ({winner_source})",
                shadowed.display(),
                winner.display()
            ),
            Notice::Skipped { dir, reason } => {
                write!(f, "skipped skill {}: {reason}", dir.display())
            }
            Notice::Warning(d) => write!(f, "warning: {d}"),
            Notice::Untrusted { dir } => write!(
                f,
                "ignored skills in {}: the folder is not trusted",
                dir.display()
            ),
        }
    }
}

/// The result of a discovery: the skills in use and what to tell the person.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The skills in use, one per name.
    pub catalog: Catalog,
    /// Shadowed, skipped and warned-about skills.
    pub notices: Vec<Notice>,
}

/// Parsed skills kept between discoveries, keyed by `SKILL.md` path and
/// invalidated by size and modification time.
#[derive(Debug, Default)]
pub struct SkillIndex {
    cache: HashMap<PathBuf, Cached>,
}

#[derive(Debug)]
struct Cached {
    stamp: (Option<SystemTime>, u64),
    source: SkillSource,
    result: Result<Skill, String>,
}

impl SkillIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Searches `roots` and returns the skills in use, reusing what is cached.
    pub fn discover(&mut self, roots: &SkillRoots) -> Discovery {
        let mut found: Vec<Skill> = Vec::new();
        let mut notices = Vec::new();
        let mut live = std::collections::HashSet::new();
        for dir in &roots.managed {
            self.scan_root(
                dir,
                &SkillSource::Managed,
                true,
                &mut found,
                &mut notices,
                &mut live,
            );
        }
        for dir in &roots.user {
            self.scan_root(
                dir,
                &SkillSource::User,
                true,
                &mut found,
                &mut notices,
                &mut live,
            );
        }
        for project in &roots.projects {
            for sub in PROJECT_SKILL_DIRS {
                let dir = project.path.join(sub);
                if !project.trusted {
                    if dir.is_dir() {
                        notices.push(Notice::Untrusted { dir });
                    }
                    continue;
                }
                let source = SkillSource::Project {
                    folder: project.path.clone(),
                };
                self.scan_root(&dir, &source, false, &mut found, &mut notices, &mut live);
            }
        }
        for plugin in &roots.plugins {
            let source = SkillSource::Plugin {
                name: plugin.plugin.clone(),
            };
            for dir in &plugin.dirs {
                self.scan_root(dir, &source, false, &mut found, &mut notices, &mut live);
            }
        }
        self.cache.retain(|k, _| live.contains(k));

        // `found` is in precedence order; the first of each name wins.
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut kept: Vec<Skill> = Vec::new();
        for skill in found {
            match by_name.get(&skill.name) {
                Some(&i) => {
                    let winner = &kept[i];
                    notices.push(Notice::Shadowed {
                        name: skill.name.clone(),
                        winner: winner.host_dir().to_path_buf(),
                        winner_source: winner.source.clone(),
                        shadowed: skill.host_dir().to_path_buf(),
                        shadowed_source: skill.source.clone(),
                    });
                }
                None => {
                    by_name.insert(skill.name.clone(), kept.len());
                    notices.extend(skill.warnings.iter().cloned().map(Notice::Warning));
                    kept.push(skill);
                }
            }
        }
        Discovery {
            catalog: Catalog::new(kept),
            notices,
        }
    }

    fn scan_root(
        &mut self,
        root: &Path,
        source: &SkillSource,
        follow_links: bool,
        found: &mut Vec<Skill>,
        notices: &mut Vec<Notice>,
        live: &mut std::collections::HashSet<PathBuf>,
    ) {
        let Ok(entries) = std::fs::read_dir(root) else {
            return;
        };
        let mut dirs: Vec<PathBuf> = Vec::new();
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            let path = entry.path();
            if ft.is_dir() {
                dirs.push(path);
            } else if ft.is_symlink() {
                if !follow_links {
                    if path.join(SKILL_FILE).exists() {
                        notices.push(Notice::Skipped {
                            dir: path,
                            reason: "symbolic links are not followed in project folders".to_owned(),
                        });
                    }
                } else if path.is_dir() {
                    dirs.push(path);
                }
            }
        }
        dirs.sort();
        for dir in dirs {
            if dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                // Hidden folders are import staging areas and editor litter.
                continue;
            }
            let file = dir.join(SKILL_FILE);
            let Ok(meta) = std::fs::metadata(&file) else {
                continue;
            };
            let stamp = (meta.modified().ok(), meta.len());
            live.insert(file.clone());
            let fresh = match self.cache.get(&file) {
                Some(c) => c.stamp != stamp || c.source != *source,
                None => true,
            };
            if fresh {
                let result = Skill::load(&dir, source.clone()).map_err(|e| e.to_string());
                self.cache.insert(
                    file.clone(),
                    Cached {
                        stamp,
                        source: source.clone(),
                        result,
                    },
                );
            }
            if let Some(cached) = self.cache.get(&file) {
                match &cached.result {
                    Ok(skill) => {
                        let mut skill = skill.clone();
                        if let SkillSource::Plugin { name } = source {
                            skill.name = format!("{name}:{}", skill.name);
                        }
                        found.push(skill);
                    }
                    Err(reason) => notices.push(Notice::Skipped {
                        dir,
                        reason: reason.clone(),
                    }),
                }
            }
        }
    }
}

/// Searches `roots` once, without a cache.
pub fn discover(roots: &SkillRoots) -> Discovery {
    SkillIndex::new().discover(roots)
}
