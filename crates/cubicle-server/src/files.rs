//! Output files in a session's workspace, listed and read without ever
//! leaving it: a requested path must be relative, plain components only (no
//! `..`, no hidden or empty parts), and the file actually opened is checked
//! to lie inside the workspace after symlinks resolve — the agent controls
//! the workspace and may plant a symlink to anything on the host.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

/// Most files a listing returns.
const MAX_LISTED: usize = 2_000;
/// Deepest folder a listing descends into.
const MAX_DEPTH: usize = 8;

/// One file in a listing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct FileEntry {
    /// Path relative to the workspace, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// Why a file cannot be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    /// The path is not a plain relative path.
    #[error("not a valid output path")]
    BadPath,
    /// Nothing there, or not a regular file inside the workspace.
    #[error("no such output file")]
    NotFound,
    /// Reading failed.
    #[error("could not read the file: {0}")]
    Io(#[from] std::io::Error),
}

/// Lists the regular files under `root` (symlinks are skipped, not followed).
pub(crate) fn list(root: &Path) -> Vec<FileEntry> {
    let mut out = Vec::new();
    walk(root, root, 0, &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<FileEntry>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.flatten() {
        if out.len() >= MAX_LISTED {
            return;
        }
        let Ok(ft) = entry.file_type() else { continue };
        let path = entry.path();
        if ft.is_dir() && depth < MAX_DEPTH {
            walk(root, &path, depth + 1, out);
        } else if ft.is_file() {
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(FileEntry {
                path: rel.to_string_lossy().replace('\\', "/"),
                size,
            });
        }
    }
}

/// Checks a requested path: relative, plain components, no hidden parts.
pub(crate) fn clean(rel: &str) -> Result<PathBuf, FileError> {
    if rel.is_empty() || rel.len() > 4096 || rel.contains('\0') || rel.contains('\\') {
        return Err(FileError::BadPath);
    }
    let mut out = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(part) if !part.to_string_lossy().starts_with('.') => out.push(part),
            _ => return Err(FileError::BadPath),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(FileError::BadPath);
    }
    Ok(out)
}

/// An output file, opened and checked to lie inside the workspace.
pub(crate) struct Opened {
    pub file: std::fs::File,
    /// Its name, for a download.
    pub name: String,
    /// A path that opens this very file (not whatever the name points at by then).
    pub same_file: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Opens one output file, refusing anything that resolves outside `root`.
pub(crate) fn open(root: &Path, rel: &str) -> Result<Opened, FileError> {
    let rel = clean(rel)?;
    let root = root.canonicalize().map_err(|_| FileError::NotFound)?;
    let path = root.join(&rel);
    let file = std::fs::File::open(&path).map_err(|_| FileError::NotFound)?;
    // Check where the open file really is, not where the path pointed a
    // moment ago: a symlink swapped in between would otherwise win.
    let real = real_path(&file, &path).ok_or(FileError::NotFound)?;
    if !real.starts_with(&root) {
        return Err(FileError::NotFound);
    }
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(FileError::NotFound);
    }
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Opened {
        same_file: same_file_path(&file, real),
        file,
        name,
        size: meta.len(),
    })
}

/// Reads one output file: the bytes and the file's name.
pub(crate) fn read(root: &Path, rel: &str) -> Result<(Vec<u8>, String), FileError> {
    let opened = open(root, rel)?;
    use std::io::Read;
    let mut bytes = Vec::with_capacity(usize::try_from(opened.size).unwrap_or(0));
    (&opened.file).read_to_end(&mut bytes)?;
    Ok((bytes, opened.name))
}

#[cfg(target_os = "linux")]
fn same_file_path(file: &std::fs::File, _real: PathBuf) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

#[cfg(not(target_os = "linux"))]
fn same_file_path(_file: &std::fs::File, real: PathBuf) -> PathBuf {
    real
}

#[cfg(target_os = "linux")]
fn real_path(file: &std::fs::File, _path: &Path) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

#[cfg(not(target_os = "linux"))]
fn real_path(_file: &std::fs::File, path: &Path) -> Option<PathBuf> {
    path.canonicalize().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_plain_relative_paths_pass() {
        assert!(clean("report.md").is_ok());
        assert!(clean("out/chart.png").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            ".env",
            "a/.git/config",
            "a\\b",
            "./a",
        ] {
            assert!(clean(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn symlinks_out_of_the_workspace_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::fs::write(ws.join("ok.txt"), "fine").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), ws.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path(), ws.join("up")).unwrap();
        assert_eq!(read(&ws, "ok.txt").unwrap().0, b"fine");
        assert!(matches!(read(&ws, "link"), Err(FileError::NotFound)));
        assert!(matches!(read(&ws, "up/secret"), Err(FileError::NotFound)));
        let listed: Vec<_> = list(&ws).into_iter().map(|f| f.path).collect();
        assert_eq!(listed, vec!["ok.txt"]);
    }
}
