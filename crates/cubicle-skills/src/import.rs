//! Installing a skill from a `.skill` file (a zip) or a folder into the
//! person's skills folder.
//!
//! Archives are hostile until proven otherwise. The steps, in order:
//!
//! 1. Read every entry into memory under limits: entry count, bytes per file,
//!    total bytes, and compression ratio (declared sizes are checked first,
//!    then the bytes actually inflated, since a zip can lie about sizes).
//! 2. Refuse an entry whose name is absolute, has `..`, `.`, a backslash, a
//!    drive letter or a NUL; refuse symbolic-link entries and encrypted ones;
//!    refuse duplicate names (also those differing only by case, which
//!    collide on macOS and Windows).
//! 3. Find `SKILL.md` at the root or under one top folder, and parse it.
//! 4. Decide the name (`--as`, else the frontmatter's, else the folder's),
//!    check it, and refuse a clash with an installed skill.
//! 5. Write the files into a hidden staging folder *inside* the install
//!    folder with `create_new` (nothing is ever written through a link),
//!    rewrite the `name` when installing under another name, then rename
//!    the staging folder into place. On any failure the staging folder is
//!    removed, so nothing is left behind and nothing lands outside.
//!
//! A git URL (`https://…`, `file://…`, optionally `#folder/in/repo`) is
//! fetched with `gix` into a temporary folder first, then imported like a
//! folder; its `.git` is never installed.

use std::collections::HashSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::frontmatter::{self, Diagnostic};
use crate::skill::{SKILL_FILE, Skill, SkillSource, validate_name};

/// Limits applied to every import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Most entries (files and folders) in an archive.
    pub max_entries: usize,
    /// Most bytes in one file.
    pub max_file_bytes: u64,
    /// Most bytes in all files together.
    pub max_total_bytes: u64,
    /// Highest uncompressed:compressed ratio for an entry larger than
    /// [`RATIO_FLOOR_BYTES`].
    pub max_ratio: u64,
}

/// Entries smaller than this are not ratio-checked: a small file of spaces
/// compresses 1000:1 and is harmless.
pub const RATIO_FLOOR_BYTES: u64 = 64 * 1024;

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            max_entries: 2_000,
            max_file_bytes: 16 * 1024 * 1024,
            max_total_bytes: 64 * 1024 * 1024,
            max_ratio: 100,
        }
    }
}

/// Why an import was refused or failed. Nothing is installed in any case.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The git repository could not be fetched.
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// The folder after `#` in a git URL is not in the repository.
    #[error("`{path}` is not a folder in {url}")]
    NoSuchFolder {
        /// The URL.
        url: String,
        /// The folder asked for.
        path: String,
    },
    /// The source does not exist.
    #[error("{path}: no such file or folder")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The file is not a readable zip.
    #[error("{path}: not a .skill archive (zip): {message}")]
    NotAnArchive {
        /// The file.
        path: PathBuf,
        /// What the zip reader said.
        message: String,
    },
    /// An entry's name would land outside the install folder.
    #[error("unsafe entry `{entry}`: absolute paths, `..` and backslashes are not allowed")]
    UnsafePath {
        /// The entry name (escaped).
        entry: String,
    },
    /// A symbolic link in the archive or folder.
    #[error("`{entry}` is a symbolic link; skills may not contain links")]
    Symlink {
        /// The entry.
        entry: String,
    },
    /// An encrypted entry.
    #[error("`{entry}` is encrypted; skills may not contain encrypted files")]
    Encrypted {
        /// The entry.
        entry: String,
    },
    /// Too many entries.
    #[error("too many entries: more than {limit}")]
    TooManyEntries {
        /// The limit.
        limit: usize,
    },
    /// One file is too large.
    #[error("`{entry}` is larger than {limit} bytes")]
    FileTooLarge {
        /// The entry.
        entry: String,
        /// The limit.
        limit: u64,
    },
    /// All files together are too large.
    #[error("the skill holds more than {limit} bytes")]
    TotalTooLarge {
        /// The limit.
        limit: u64,
    },
    /// An entry compresses suspiciously well (a zip bomb).
    #[error("`{entry}` expands {ratio}:1, more than {limit}:1 (a zip bomb?)")]
    CompressionRatio {
        /// The entry.
        entry: String,
        /// Its ratio.
        ratio: u64,
        /// The limit.
        limit: u64,
    },
    /// Two entries with the same name.
    #[error("`{entry}` appears more than once (names differing only by case count as the same)")]
    Duplicate {
        /// The entry.
        entry: String,
    },
    /// No `SKILL.md` at the root or under a single top folder.
    #[error("no SKILL.md at the top of the archive or folder (nor under a single top folder)")]
    NoSkillFile,
    /// The `SKILL.md` cannot be loaded.
    #[error("the skill cannot be loaded: {0}")]
    Invalid(#[from] crate::skill::LoadError),
    /// The name is not a valid skill name.
    #[error("invalid skill name `{name}`: {why}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        why: String,
    },
    /// `--as` cannot set the name in this `SKILL.md`'s frontmatter.
    #[error(
        "cannot rename the skill to `{name}`: {why}; set `name: {name}` in its SKILL.md by hand, then import the folder"
    )]
    CannotRename {
        /// The new name.
        name: String,
        /// Why.
        why: String,
    },
    /// A skill of that name is already installed.
    #[error(
        "a skill named `{name}` is already installed at {path}; remove it first or import under another name with --as NEW-NAME"
    )]
    NameClash {
        /// The name.
        name: String,
        /// The existing folder.
        path: PathBuf,
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

/// What an import installed.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    /// The installed name.
    pub name: String,
    /// The installed folder.
    pub dir: PathBuf,
    /// How many files.
    pub files: usize,
    /// Warnings about the skill.
    pub warnings: Vec<Diagnostic>,
}

/// Whether `s` looks like a git URL rather than a path.
pub fn is_git_url(s: &str) -> bool {
    crate::git::is_git_url(s)
}

/// Installs the skill at `source` (a `.skill`/`.zip` file or a folder) into
/// `install_dir`, optionally as `as_name`, with the default limits.
pub fn import(
    source: &str,
    install_dir: &Path,
    as_name: Option<&str>,
) -> Result<ImportReport, ImportError> {
    import_with_limits(source, install_dir, as_name, ImportLimits::default())
}

/// [`import`] with explicit limits.
pub fn import_with_limits(
    source: &str,
    install_dir: &Path,
    as_name: Option<&str>,
    limits: ImportLimits,
) -> Result<ImportReport, ImportError> {
    let path = Path::new(source);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) if is_git_url(source) => {
            return import_git(source, install_dir, as_name, limits);
        }
        Err(_) => {
            return Err(ImportError::NotFound {
                path: path.to_path_buf(),
            });
        }
    };
    let (files, fallback_name) = if meta.is_dir() {
        (read_dir_files(path, &limits)?, file_name(path))
    } else {
        let io = |source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Compressed data is no larger than what it expands to, plus headers.
        let cap = limits.max_total_bytes + ARCHIVE_OVERHEAD_BYTES;
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > cap {
            return Err(ImportError::TotalTooLarge {
                limit: limits.max_total_bytes,
            });
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        (read_archive(&bytes, path, &limits)?, name)
    };
    install(files, &fallback_name, install_dir, as_name)
}

/// Fetches `source` (`URL` or `URL#folder`) and installs the skill at the
/// repository's root or in that folder.
fn import_git(
    source: &str,
    install_dir: &Path,
    as_name: Option<&str>,
    limits: ImportLimits,
) -> Result<ImportReport, ImportError> {
    let (url, sub) = match source.split_once('#') {
        Some((u, p)) if !p.is_empty() => (u, Some(p)),
        Some((u, _)) => (u, None),
        None => (source, None),
    };
    let tmp = tempfile::tempdir().map_err(|source| ImportError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let repo = tmp.path().join("repo");
    crate::git::fetch(url, &crate::git::Revision::Head, &repo)?;
    let dir = match sub {
        None => repo.clone(),
        Some(p) => {
            let no_folder = || ImportError::NoSuchFolder {
                url: url.to_owned(),
                path: p.to_owned(),
            };
            let rel = crate::marketplace::lexical_relative(p).ok_or_else(no_folder)?;
            let dir = repo.join(rel);
            crate::marketplace::inside_real(&repo, &dir).map_err(|_| no_folder())?;
            dir
        }
    };
    let files = read_dir_files(&dir, &limits)?;
    let fallback = match sub {
        Some(p) => file_name(Path::new(p)),
        None => url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("skill")
            .trim_end_matches(".git")
            .to_owned(),
    };
    install(files, &fallback, install_dir, as_name)
}

/// Installs from zip bytes already in memory (the web UI's upload path, and
/// the fuzz target).
pub fn import_archive_bytes(
    bytes: &[u8],
    install_dir: &Path,
    as_name: Option<&str>,
    limits: ImportLimits,
) -> Result<ImportReport, ImportError> {
    let files = read_archive(bytes, Path::new("upload.skill"), &limits)?;
    install(files, "upload", install_dir, as_name)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A file to install: safe path components and contents.
struct Entry {
    parts: Vec<String>,
    data: Vec<u8>,
}

/// Splits an archive entry name into safe components, or refuses it.
/// Returns the components and whether the entry names a folder.
fn safe_parts(name: &str) -> Result<(Vec<String>, bool), ImportError> {
    let unsafe_path = || ImportError::UnsafePath {
        entry: name.escape_debug().to_string(),
    };
    if name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name.contains(':')
    {
        return Err(unsafe_path());
    }
    let is_dir = name.ends_with('/');
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.len() > 255 {
            return Err(unsafe_path());
        }
        parts.push(part.to_owned());
    }
    if parts.len() > 32 {
        return Err(unsafe_path());
    }
    Ok((parts, is_dir))
}

/// Entries that archivers add and nobody wants installed.
fn is_junk(parts: &[String]) -> bool {
    parts.first().is_some_and(|p| p == "__MACOSX") || parts.last().is_some_and(|p| p == ".DS_Store")
}

fn read_archive(
    bytes: &[u8],
    path: &Path,
    limits: &ImportLimits,
) -> Result<Vec<Entry>, ImportError> {
    let not_zip = |e: zip::result::ZipError| ImportError::NotAnArchive {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(not_zip)?;
    if archive.len() > limits.max_entries {
        return Err(ImportError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    // The zip reader keeps one entry per name, so a name that appears twice
    // would vanish silently: look at the central directory ourselves.
    if let Some(names) = central_directory_names(bytes) {
        let mut seen = HashSet::new();
        for n in &names {
            if !seen.insert(n.to_ascii_lowercase()) {
                return Err(ImportError::Duplicate {
                    entry: String::from_utf8_lossy(n).escape_debug().to_string(),
                });
            }
        }
        if names.len() != archive.len() {
            return Err(ImportError::Duplicate {
                entry: "(an entry)".to_owned(),
            });
        }
    }
    let mut seen = HashSet::new();
    let mut total: u64 = 0;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let shown = archive
            .name_for_index(i)
            .and_then(Result::ok)
            .map(|n| n.escape_debug().to_string())
            .unwrap_or_default();
        let mut file = match archive.by_index(i) {
            Ok(f) => f,
            Err(zip::result::ZipError::UnsupportedArchive(m)) if m.contains("ncrypt") => {
                return Err(ImportError::Encrypted { entry: shown });
            }
            Err(e) => return Err(not_zip(e)),
        };
        let name = match file.name() {
            Ok(n) => n.into_owned(),
            Err(_) => {
                return Err(ImportError::UnsafePath {
                    entry: String::from_utf8_lossy(file.name_raw())
                        .escape_debug()
                        .to_string(),
                });
            }
        };
        let (parts, is_dir) = safe_parts(&name)?;
        if file.encrypted() {
            return Err(ImportError::Encrypted { entry: name });
        }
        if file.is_symlink() {
            return Err(ImportError::Symlink { entry: name });
        }
        if !seen.insert(parts.join("/").to_lowercase()) {
            return Err(ImportError::Duplicate { entry: name });
        }
        if is_dir || file.is_dir() || is_junk(&parts) {
            continue;
        }
        let declared = file.size();
        let compressed = file.compressed_size();
        if declared > limits.max_file_bytes {
            return Err(ImportError::FileTooLarge {
                entry: name,
                limit: limits.max_file_bytes,
            });
        }
        check_ratio(&name, declared, compressed, limits)?;
        let mut data = Vec::new();
        (&mut file)
            .take(limits.max_file_bytes + 1)
            .read_to_end(&mut data)
            .map_err(|e| ImportError::NotAnArchive {
                path: path.to_path_buf(),
                message: format!("{name}: {e}"),
            })?;
        let actual = data.len() as u64;
        if actual > limits.max_file_bytes {
            return Err(ImportError::FileTooLarge {
                entry: name,
                limit: limits.max_file_bytes,
            });
        }
        check_ratio(&name, actual, compressed, limits)?;
        total += actual;
        if total > limits.max_total_bytes {
            return Err(ImportError::TotalTooLarge {
                limit: limits.max_total_bytes,
            });
        }
        out.push(Entry { parts, data });
    }
    Ok(out)
}

/// Headroom for headers when capping a `.skill` file's size.
const ARCHIVE_OVERHEAD_BYTES: u64 = 4 * 1024 * 1024;

/// The raw entry names in a zip's central directory, in order; `None` when
/// it cannot be walked simply (zip64, data before the archive), in which
/// case the zip reader's own checks are all there is.
fn central_directory_names(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    const EOCD: &[u8] = b"PK\x05\x06";
    const CDH: &[u8] = b"PK\x01\x02";
    let u16_at = |b: &[u8], i: usize| -> Option<usize> {
        Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]) as usize)
    };
    let u32_at = |b: &[u8], i: usize| -> Option<usize> {
        let s = b.get(i..i + 4)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    };
    let search_from = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (search_from..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| bytes.get(i..i + 4) == Some(EOCD))?;
    let count = u16_at(bytes, eocd + 10)?;
    let mut at = u32_at(bytes, eocd + 16)?;
    if count == 0xFFFF || at == 0xFFFF_FFFF {
        return None;
    }
    let mut names = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        if bytes.get(at..at + 4)? != CDH {
            return None;
        }
        let name_len = u16_at(bytes, at + 28)?;
        let extra_len = u16_at(bytes, at + 30)?;
        let comment_len = u16_at(bytes, at + 32)?;
        names.push(bytes.get(at + 46..at + 46 + name_len)?.to_vec());
        at += 46 + name_len + extra_len + comment_len;
    }
    Some(names)
}

fn check_ratio(
    entry: &str,
    size: u64,
    compressed: u64,
    limits: &ImportLimits,
) -> Result<(), ImportError> {
    if size <= RATIO_FLOOR_BYTES {
        return Ok(());
    }
    let ratio = size / compressed.max(1);
    if ratio > limits.max_ratio {
        return Err(ImportError::CompressionRatio {
            entry: entry.to_owned(),
            ratio,
            limit: limits.max_ratio,
        });
    }
    Ok(())
}

fn read_dir_files(root: &Path, limits: &ImportLimits) -> Result<Vec<Entry>, ImportError> {
    let mut out = Vec::new();
    let mut total = 0;
    walk(root, root, limits, &mut out, &mut total)?;
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    limits: &ImportLimits,
    out: &mut Vec<Entry>,
    total: &mut u64,
) -> Result<(), ImportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImportError::Io { path, source }
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let shown = parts.join("/");
        let ft = e.file_type().map_err(io(&path))?;
        if ft.is_symlink() {
            return Err(ImportError::Symlink { entry: shown });
        }
        if ft.is_dir() {
            if e.file_name() != ".git" {
                walk(root, &path, limits, out, total)?;
            }
            continue;
        }
        if !ft.is_file() || is_junk(&parts) {
            continue;
        }
        if out.len() >= limits.max_entries {
            return Err(ImportError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let mut data = Vec::new();
        std::fs::File::open(&path)
            .map_err(io(&path))?
            .take(limits.max_file_bytes + 1)
            .read_to_end(&mut data)
            .map_err(io(&path))?;
        if data.len() as u64 > limits.max_file_bytes {
            return Err(ImportError::FileTooLarge {
                entry: shown,
                limit: limits.max_file_bytes,
            });
        }
        *total += data.len() as u64;
        if *total > limits.max_total_bytes {
            return Err(ImportError::TotalTooLarge {
                limit: limits.max_total_bytes,
            });
        }
        out.push(Entry { parts, data });
    }
    Ok(())
}

/// Strips a single top folder when `SKILL.md` is under it; returns that
/// folder's name (if any).
fn find_root(files: &mut [Entry]) -> Result<Option<String>, ImportError> {
    if files.iter().any(|f| f.parts == [SKILL_FILE]) {
        return Ok(None);
    }
    let top = match files.first().and_then(|f| f.parts.first()) {
        Some(t) => t.clone(),
        None => return Err(ImportError::NoSkillFile),
    };
    let single_top = files.iter().all(|f| f.parts.len() > 1 && f.parts[0] == top);
    let has_skill = files.iter().any(|f| f.parts == [top.as_str(), SKILL_FILE]);
    if !(single_top && has_skill) {
        return Err(ImportError::NoSkillFile);
    }
    for f in files.iter_mut() {
        f.parts.remove(0);
    }
    Ok(Some(top))
}

fn install(
    mut files: Vec<Entry>,
    fallback_name: &str,
    install_dir: &Path,
    as_name: Option<&str>,
) -> Result<ImportReport, ImportError> {
    let top = find_root(&mut files)?;
    let skill_text = files
        .iter()
        .find(|f| f.parts == [SKILL_FILE])
        .map(|f| String::from_utf8(f.data.clone()))
        .ok_or(ImportError::NoSkillFile)?
        .map_err(|_| {
            ImportError::Invalid(crate::skill::LoadError::NotText {
                path: PathBuf::from(SKILL_FILE),
            })
        })?;
    let folder_name = top.unwrap_or_else(|| fallback_name.to_owned());
    let probe = Skill::from_text(
        &install_dir.join(&folder_name),
        SkillSource::User,
        &skill_text,
    )?;
    let name = match as_name {
        Some(n) => n.to_owned(),
        None => probe
            .frontmatter
            .name
            .clone()
            .unwrap_or_else(|| folder_name.clone()),
    };
    validate_name(&name).map_err(|why| ImportError::InvalidName {
        name: name.clone(),
        why,
    })?;
    let target = install_dir.join(&name);
    let clash = || ImportError::NameClash {
        name: name.clone(),
        path: target.clone(),
    };
    if std::fs::symlink_metadata(&target).is_ok() {
        return Err(clash());
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImportError::Io { path, source }
    };
    std::fs::create_dir_all(install_dir).map_err(io(install_dir))?;
    // The staging folder is removed when `staging` drops, on every error path.
    let staging = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(install_dir)
        .map_err(io(install_dir))?;
    let root = staging.path().join("skill");
    std::fs::create_dir(&root).map_err(io(&root))?;
    let rename_to = as_name.filter(|n| probe.frontmatter.name.as_deref() != Some(*n));
    for f in &files {
        let mut path = root.clone();
        path.extend(&f.parts);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let data = match (rename_to, f.parts == [SKILL_FILE]) {
            (Some(new), true) => rewrite_name(&skill_text, new)
                .map_err(|why| ImportError::CannotRename {
                    name: new.to_owned(),
                    why,
                })?
                .into_bytes(),
            _ => f.data.clone(),
        };
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        std::io::Write::write_all(&mut out, &data).map_err(io(&path))?;
    }
    let installed = Skill::load(&root, SkillSource::User)?;
    if let Some(new) = rename_to
        && installed.frontmatter.name.as_deref() != Some(new)
    {
        return Err(ImportError::CannotRename {
            name: new.to_owned(),
            why: "the rewritten SKILL.md still names another skill".to_owned(),
        });
    }
    if std::fs::symlink_metadata(&target).is_ok() {
        return Err(clash());
    }
    std::fs::rename(&root, &target).map_err(io(&target))?;
    let warnings = installed
        .warnings
        .into_iter()
        .filter(|w| !w.message.contains("does not match its folder"))
        .map(|mut w| {
            w.path = target.join(SKILL_FILE);
            w
        })
        .collect();
    Ok(ImportReport {
        name,
        dir: target,
        files: files.len(),
        warnings,
    })
}

/// Sets the frontmatter's top-level `name` to `new` in a `SKILL.md` text,
/// adding the key when it is missing. Every line that holds a `name` key
/// (repeated, quoted, or with its value continued on indented lines) is
/// replaced by one `name: NEW` at the top. The result is checked: when the
/// YAML is written so that lines cannot be rewritten (a flow mapping,
/// `{name: a}`), the error says so rather than leaving another name in.
pub fn rewrite_name(text: &str, new: &str) -> Result<String, String> {
    let Ok(split) = frontmatter::split(text) else {
        return Ok(format!("---\nname: {new}\n---\n{text}"));
    };
    let lines: Vec<&str> = split.yaml.split_inclusive('\n').collect();
    let is_name_key = |line: &str| {
        ["name:", "\"name\":", "'name':"]
            .iter()
            .any(|k| line.starts_with(k))
    };
    let parsed = frontmatter::fields(split.yaml, 1).ok();
    // Line numbers (from 1) where a `name` key starts.
    let starts: std::collections::BTreeSet<usize> = match &parsed {
        Some(fields) => fields
            .iter()
            .filter(|(key, _, _)| key == "name")
            .filter_map(|(_, line, _)| line.and_then(|l| usize::try_from(l).ok()))
            .collect(),
        None => (1..=lines.len())
            .filter(|n| is_name_key(lines[n - 1]))
            .collect(),
    };
    let eol = if split.yaml.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut yaml = format!("name: {new}{eol}");
    let mut skipping = false;
    for (n, line) in lines.iter().enumerate().map(|(i, l)| (i + 1, *l)) {
        let continued = line.starts_with([' ', '\t']) || line.trim().is_empty();
        if starts.contains(&n) || (skipping && continued) {
            skipping = true;
            continue;
        }
        skipping = false;
        yaml.push_str(line);
    }
    if !yaml.ends_with('\n') {
        yaml.push_str(eol);
    }
    // A frontmatter that parsed must still parse, with the new name only
    // and every other key as it was.
    if let Some(before) = &parsed {
        let after = frontmatter::fields(&yaml, 1)
            .map_err(|e| format!("its frontmatter no longer reads after the rewrite ({e})"))?;
        let others = |fields: &[(String, Option<u64>, serde_json::Value)]| {
            fields
                .iter()
                .filter(|(k, _, _)| k != "name")
                .map(|(k, _, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        let names: Vec<_> = after.iter().filter(|(k, _, _)| k == "name").collect();
        let renamed = matches!(names.as_slice(), [(_, _, v)] if v.as_str() == Some(new));
        if !renamed || others(before) != others(&after) {
            return Err("its frontmatter is not written one key per line".to_owned());
        }
    }
    Ok(format!("---\n{yaml}---\n{}", split.body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::rewrite_name;

    #[test]
    fn every_name_key_is_replaced_and_other_keys_kept() {
        let cases = [
            "---\nname: a\ndescription: d\nname: b\n---\nbody\n",
            "---\n'name': a\ndescription: d\n---\nbody\n",
            "---\nname: |\n  a\ndescription: d\n---\nbody\n",
            "---\nname: a\n  b\ndescription: d\n---\nbody\n",
            "---\ndescription: d\n---\nbody\n",
        ];
        for text in cases {
            assert_eq!(
                rewrite_name(text, "new").unwrap(),
                "---\nname: new\ndescription: d\n---\nbody\n",
                "{text}"
            );
        }
    }

    #[test]
    fn a_flow_mapping_is_refused_not_mangled() {
        let err = rewrite_name("---\n{name: a, description: d}\n---\n", "new").unwrap_err();
        assert!(err.contains("one key per line"), "{err}");
    }
}
