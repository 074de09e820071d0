//! Exporting a skill as one `.skill` file (a zip) that a person can mail or
//! drop into the web UI.
//!
//! The order is: walk the folder, refuse symbolic links (they are never
//! followed: a link could pull in a file from anywhere on the machine), scan
//! every file for secrets and personal data, refuse with the list of
//! findings unless `force`, then write the archive to a temporary file
//! beside the target and rename it into place. The person's preferences are
//! never in the folder and so never in the archive. `.git` folders are left
//! out. Entries are stored under `<name>/` so that unzipping gives a folder.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::scan::{Finding, scan_file};
use crate::skill::Skill;

/// Most bytes an exported skill may hold (uncompressed).
pub const MAX_EXPORT_BYTES: u64 = 64 * 1024 * 1024;

/// Why an export was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Secrets or personal data were found and `force` was not given.
    #[error("refusing to export `{name}`: it contains what looks like secrets or personal data:\n{}\nRemove them (keep personal settings in `cubicle skill prefs`), or export anyway with --force.", list(.findings))]
    Findings {
        /// The skill.
        name: String,
        /// What was found where.
        findings: Vec<Finding>,
    },
    /// The folder holds symbolic links, which are never followed.
    #[error("refusing to export `{name}`: symbolic links are not followed; replace them with the files themselves: {}", .links.join(", "))]
    Symlinks {
        /// The skill.
        name: String,
        /// The links, relative to the skill folder.
        links: Vec<String>,
    },
    /// The folder is larger than [`MAX_EXPORT_BYTES`].
    #[error("refusing to export `{name}`: it holds more than {MAX_EXPORT_BYTES} bytes")]
    TooLarge {
        /// The skill.
        name: String,
    },
    /// Reading the skill or writing the archive failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The zip writer failed.
    #[error("writing {path}: {message}")]
    Zip {
        /// The archive.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn list(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("  {f}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Files in the archive, relative to the skill folder.
    pub files: Vec<String>,
    /// Total uncompressed bytes.
    pub bytes: u64,
    /// Findings that `force` let through.
    pub forced_findings: Vec<Finding>,
}

/// The files of a skill folder, read into memory, with any symlinks found.
struct Collected {
    files: Vec<(String, Vec<u8>)>,
    links: Vec<String>,
}

fn collect(
    root: &Path,
    dir: &Path,
    out: &mut Collected,
    total: &mut u64,
) -> Result<(), ExportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io { path, source }
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let ft = e.file_type().map_err(io(&path))?;
        if ft.is_symlink() {
            out.links.push(rel);
        } else if ft.is_dir() {
            if e.file_name() != ".git" {
                collect(root, &path, out, total)?;
            }
        } else if ft.is_file() {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            *total += bytes.len() as u64;
            if *total > MAX_EXPORT_BYTES {
                return Err(ExportError::TooLarge {
                    name: String::new(),
                });
            }
            out.files.push((rel, bytes));
        }
    }
    Ok(())
}

/// Scans `skill`'s folder and returns what it found, without writing.
pub fn scan_skill(skill: &Skill) -> Result<Vec<Finding>, ExportError> {
    let collected = collect_skill(skill)?;
    Ok(findings_of(&collected))
}

fn collect_skill(skill: &Skill) -> Result<Collected, ExportError> {
    let mut c = Collected {
        files: Vec::new(),
        links: Vec::new(),
    };
    let mut total = 0;
    collect(skill.host_dir(), skill.host_dir(), &mut c, &mut total).map_err(|e| match e {
        ExportError::TooLarge { .. } => ExportError::TooLarge {
            name: skill.name.clone(),
        },
        other => other,
    })?;
    Ok(c)
}

fn findings_of(c: &Collected) -> Vec<Finding> {
    let mut findings: Vec<Finding> = c
        .files
        .iter()
        .flat_map(|(rel, bytes)| scan_file(rel, bytes))
        .collect();
    findings.sort();
    findings
}

/// Writes `skill` to `out` as a `.skill` zip after scanning it; refuses on
/// findings unless `force`, and always on symbolic links.
pub fn export(skill: &Skill, out: &Path, force: bool) -> Result<ExportReport, ExportError> {
    let collected = collect_skill(skill)?;
    if !collected.links.is_empty() {
        return Err(ExportError::Symlinks {
            name: skill.name.clone(),
            links: collected.links,
        });
    }
    let findings = findings_of(&collected);
    if !findings.is_empty() && !force {
        return Err(ExportError::Findings {
            name: skill.name.clone(),
            findings,
        });
    }
    let io = |source| ExportError::Io {
        path: out.to_path_buf(),
        source,
    };
    let zip_err = |e: zip::result::ZipError| ExportError::Zip {
        path: out.to_path_buf(),
        message: e.to_string(),
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(io)?;
    let mut zip = zip::ZipWriter::new(tmp);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let prefix = skill.name.replace(':', "-");
    let mut bytes = 0;
    let mut files = Vec::new();
    for (rel, data) in &collected.files {
        zip.start_file(format!("{prefix}/{rel}"), options)
            .map_err(zip_err)?;
        zip.write_all(data).map_err(io)?;
        bytes += data.len() as u64;
        files.push(rel.clone());
    }
    let tmp = zip.finish().map_err(zip_err)?;
    tmp.persist(out).map_err(|e| io(e.error))?;
    Ok(ExportReport {
        files,
        bytes,
        forced_findings: findings,
    })
}
