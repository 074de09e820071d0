//! One skill: a folder with a `SKILL.md`, loaded from disk into its name,
//! description and frontmatter, with the warnings found on the way.
//!
//! Only the frontmatter is kept in memory; the body is read again when the
//! skill is activated (progressive disclosure: a catalog of a thousand skills
//! costs their descriptions, not their instructions), so an edit made during
//! a session takes effect at the next activation.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::frontmatter::{self, Diagnostic, Frontmatter, FrontmatterError};

/// The file that makes a folder a skill.
pub const SKILL_FILE: &str = "SKILL.md";
/// Most bytes a `SKILL.md` may have.
pub const MAX_SKILL_FILE_BYTES: u64 = 1024 * 1024;
/// Longest name the Agent Skills specification allows.
pub const MAX_NAME_LEN: usize = 64;
/// Longest description the Agent Skills specification allows.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Where a skill's folder appears, read-only, inside the cubicle.
pub const CUBICLE_SKILLS_MOUNT: &str = "/mnt/.skills";

/// Where a skill was found, in order of precedence on a name clash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SkillSource {
    /// Installed by the administrator (`/etc/cubicle/skills`).
    Managed,
    /// The person's own (`~/.config/cubicle/skills`, `~/.claude/skills`).
    User,
    /// A trusted granted folder's `.cubicle/skills`, `.claude/skills` or
    /// `.agents/skills`.
    Project {
        /// The granted folder.
        folder: PathBuf,
    },
    /// A plugin's `skills/` folder; its skills are named `plugin:skill` and
    /// so never clash with the others.
    Plugin {
        /// The plugin's name.
        name: String,
    },
}

impl SkillSource {
    /// Lower wins a name clash.
    pub fn rank(&self) -> u8 {
        match self {
            SkillSource::Managed => 0,
            SkillSource::User => 1,
            SkillSource::Project { .. } => 2,
            SkillSource::Plugin { .. } => 3,
        }
    }
}

impl fmt::Display for SkillSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkillSource::Managed => f.write_str("managed"),
            SkillSource::User => f.write_str("user"),
            SkillSource::Project { folder } => write!(f, "project {}", folder.display()),
            SkillSource::Plugin { name } => write!(f, "plugin {name}"),
        }
    }
}

/// Why a skill could not be loaded (it is skipped; the others load).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The `SKILL.md` could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `SKILL.md` is larger than [`MAX_SKILL_FILE_BYTES`].
    #[error("{path} is {size} bytes, more than the {MAX_SKILL_FILE_BYTES} allowed")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The `SKILL.md` is not UTF-8 text.
    #[error("{path} is not UTF-8 text")]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// The frontmatter could not be read.
    #[error("{path}: {source}")]
    Frontmatter {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: FrontmatterError,
    },
    /// No description in the frontmatter nor a paragraph in the body.
    #[error("{path}: no `description`: the model needs one to know when to use the skill")]
    NoDescription {
        /// The file.
        path: PathBuf,
    },
}

/// A loaded skill: what the catalog shows and where its files are.
#[derive(Debug, Clone, PartialEq)]
pub struct Skill {
    /// The name it is invoked by (the frontmatter's, else the folder's).
    pub name: String,
    /// What it does and when to use it.
    pub description: String,
    /// Everything the frontmatter said.
    pub frontmatter: Frontmatter,
    /// Where it was found.
    pub source: SkillSource,
    /// Warnings found while loading it.
    pub warnings: Vec<Diagnostic>,
    dir: PathBuf,
}

impl Skill {
    /// Loads the skill in folder `dir`. Problems that leave it usable are
    /// [`Skill::warnings`]; the rest are errors.
    pub fn load(dir: &Path, source: SkillSource) -> Result<Skill, LoadError> {
        let path = dir.join(SKILL_FILE);
        let text = read_skill_file(&path)?;
        Self::from_text(dir, source, &text)
    }

    /// Builds the skill from the text of its `SKILL.md`, as if at `dir`.
    pub fn from_text(dir: &Path, source: SkillSource, text: &str) -> Result<Skill, LoadError> {
        let path = dir.join(SKILL_FILE);
        let fm_err = |source| LoadError::Frontmatter {
            path: path.clone(),
            source,
        };
        let split = frontmatter::split(text).map_err(fm_err)?;
        let (fm, mut warnings) =
            frontmatter::parse(split.yaml, &path, split.yaml_first_line).map_err(fm_err)?;
        let folder = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let warn = |warnings: &mut Vec<Diagnostic>, message: String| {
            warnings.push(Diagnostic {
                path: path.clone(),
                line: None,
                message,
            });
        };
        let name = match &fm.name {
            Some(n) => {
                if let Err(why) = validate_name(n) {
                    warn(&mut warnings, format!("name `{n}`: {why}"));
                }
                if !folder.is_empty() && *n != folder {
                    warn(
                        &mut warnings,
                        format!("name `{n}` does not match its folder `{folder}`"),
                    );
                }
                n.clone()
            }
            None => {
                warn(
                    &mut warnings,
                    format!("no `name`; using the folder's name `{folder}`"),
                );
                folder.clone()
            }
        };
        let description = match &fm.description {
            Some(d) if !d.trim().is_empty() => d.trim().to_owned(),
            _ => match first_paragraph(split.body) {
                Some(p) => {
                    warn(
                        &mut warnings,
                        "no `description`; using the body's first paragraph".to_owned(),
                    );
                    p
                }
                None => return Err(LoadError::NoDescription { path }),
            },
        };
        if description.chars().count() > MAX_DESCRIPTION_LEN {
            warn(
                &mut warnings,
                format!("the description is longer than {MAX_DESCRIPTION_LEN} characters"),
            );
        }
        Ok(Skill {
            name,
            description,
            frontmatter: fm,
            source,
            warnings,
            dir: dir.to_path_buf(),
        })
    }

    /// The skill's folder on the host: the sandbox mounts it read-only at
    /// [`Skill::cubicle_dir`].
    pub fn host_dir(&self) -> &Path {
        &self.dir
    }

    /// The skill's folder as seen inside the cubicle: `/mnt/.skills/<name>`
    /// (a plugin skill's `plugin:skill` becomes `plugin/skill`).
    pub fn cubicle_dir(&self) -> String {
        format!("{CUBICLE_SKILLS_MOUNT}/{}", self.name.replace(':', "/"))
    }

    /// The path of its `SKILL.md` on the host.
    pub fn skill_file(&self) -> PathBuf {
        self.dir.join(SKILL_FILE)
    }

    /// Reads the Markdown body (the instructions) fresh from disk.
    pub fn load_body(&self) -> Result<String, LoadError> {
        let path = self.skill_file();
        let text = read_skill_file(&path)?;
        let split = frontmatter::split(&text).map_err(|source| LoadError::Frontmatter {
            path: path.clone(),
            source,
        })?;
        Ok(split.body.trim_start_matches(['\r', '\n']).to_owned())
    }

    /// The files bundled with the skill, relative to its folder, sorted; at
    /// most `limit` of them. Symbolic links are listed but never followed.
    pub fn bundled_files(&self, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        walk_files(&self.dir, &self.dir, &mut out, limit);
        out.retain(|f| f != SKILL_FILE);
        out.sort();
        out
    }
}

fn walk_files(root: &Path, dir: &Path, out: &mut Vec<String>, limit: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if out.len() >= limit {
            return;
        }
        let Ok(ft) = e.file_type() else { continue };
        let path = e.path();
        if ft.is_dir() {
            if e.file_name() == ".git" {
                continue;
            }
            walk_files(root, &path, out, limit);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn read_skill_file(path: &Path) -> Result<String, LoadError> {
    use std::io::Read as _;
    let read_err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_SKILL_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_SKILL_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    String::from_utf8(bytes).map_err(|_| LoadError::NotText {
        path: path.to_path_buf(),
    })
}

fn first_paragraph(body: &str) -> Option<String> {
    let para: Vec<&str> = body
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty() || l.starts_with('#'))
        .take_while(|l| !l.is_empty())
        .collect();
    let p = para.join(" ");
    (!p.is_empty()).then(|| p.chars().take(MAX_DESCRIPTION_LEN).collect())
}

/// Checks a name against the Agent Skills specification: 1 to 64 lowercase
/// letters, digits and hyphens, no leading, trailing or doubled hyphen.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name cannot be empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("longer than {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "`{}` is not allowed: use lowercase letters, digits and hyphens",
            c.escape_default()
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("cannot start or end with a hyphen".to_owned());
    }
    if name.contains("--") {
        return Err("cannot contain two hyphens in a row".to_owned());
    }
    Ok(())
}

/// The `SKILL.md` that `cubicle skill new` writes: valid, with every part a
/// newcomer needs to see.
pub fn scaffold(name: &str, description: Option<&str>) -> String {
    let description = description
        .map(|d| d.replace(['\n', '\r'], " "))
        .unwrap_or_else(|| {
            format!(
                "Describe what {name} does and when to use it, so the model knows when to load it."
            )
        });
    format!(
        "---\nname: {name}\ndescription: {}\n---\n\n# {name}\n\n\
         Write the instructions the model follows when this skill is active.\n\n\
         - `$ARGUMENTS` is replaced by what the skill was invoked with.\n\
         - Files bundled in this folder are read-only inside the cubicle at\n  \
         `${{CUBICLE_SKILL_DIR}}`, e.g. `python3 ${{CUBICLE_SKILL_DIR}}/scripts/run.py`.\n\
         - Your own settings for this skill (company name, currency, …) belong in\n  \
         `cubicle skill prefs {name} set KEY VALUE`, not here: they are never exported.\n",
        yaml_string(&description)
    )
}

/// Quotes a string for YAML when plain style would be misread.
pub(crate) fn yaml_string(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && !s.starts_with(|c: char| "!&*-?{}[],#|>@`\"'%: ".contains(c))
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with([':', ' ']);
    if plain_ok {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        assert!(validate_name("pdf-forms2").is_ok());
        for bad in ["", "PDF", "a_b", "-a", "a-", "a--b", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scaffold_loads_without_warnings() {
        let text = scaffold("my-skill", Some("Does: things # really"));
        let skill = Skill::from_text(Path::new("/x/my-skill"), SkillSource::User, &text).unwrap();
        assert_eq!(skill.description, "Does: things # really");
        assert!(skill.warnings.is_empty(), "{:?}", skill.warnings);
    }
}
