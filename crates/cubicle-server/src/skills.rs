//! The skills screen: the installed skills (managed, the person's, plugins'),
//! and importing a `.skill` file the person dropped on the page. The upload
//! is written to a private temporary folder and imported from there with the
//! skills crate's limits; a URL is never accepted from the page.

use std::path::PathBuf;

use cubicle_skills::{SkillRoots, SkillSource};
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
