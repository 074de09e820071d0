//! `glob` and `grep`: walking a directory tree for names or contents.
//!
//! The walk never follows symlinks (so it cannot loop or leave a root) and
//! skips `.git` directories, whose contents are never what a person means.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use cubicle_protocol::guest::{ErrorCode, GrepMatch, GrepRequest, OpResult};
use globset::{GlobBuilder, GlobMatcher};

use crate::confine::{Access, Confinement};
use crate::error::OpError;
use crate::files::modified_ms;

/// Files larger than this are not searched by `grep`.
const GREP_MAX_FILE: u64 = 10 * 1024 * 1024;
/// How much of a file is checked for a NUL byte to call it binary.
const BINARY_PROBE: usize = 8 * 1024;
/// Longest line `grep` returns, in characters.
const GREP_MAX_LINE_CHARS: usize = 500;

/// Paths under `root` matching `pattern`, newest first.
pub fn glob(c: &Confinement, root: &str, pattern: &str, limit: u32) -> Result<OpResult, OpError> {
    let real = c.resolve(root, Access::Read)?;
    let matcher = compile_glob(pattern)?;
    let mut found: Vec<(i64, PathBuf)> = Vec::new();
    walk(&real, &mut |path, meta| {
        if let Ok(rel) = path.strip_prefix(&real)
            && matcher.is_match(rel)
        {
            found.push((modified_ms(meta), path.to_path_buf()));
        }
    })?;
    // Newest first; ties by path so the order is stable.
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let limit = limit as usize;
    let truncated = found.len() > limit;
    found.truncate(limit);
    Ok(OpResult::Paths {
        paths: found
            .into_iter()
            .map(|(_, p)| p.to_string_lossy().into_owned())
            .collect(),
        truncated,
    })
}

/// Lines matching a regular expression in the files under a path.
pub fn grep(c: &Confinement, req: &GrepRequest) -> Result<OpResult, OpError> {
    let real = c.resolve(&req.path, Access::Read)?;
    let regex = regex::bytes::RegexBuilder::new(&req.pattern)
        .case_insensitive(req.case_insensitive)
        .build()
        .map_err(|e| OpError::new(ErrorCode::InvalidInput, format!("bad pattern: {e}")))?;
    let filter = req.glob.as_deref().map(compile_glob).transpose()?;
    let meta = fs::metadata(&real).map_err(|e| OpError::io(&real, &e))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        walk(&real, &mut |path, meta| {
            if !meta.is_file() {
                return;
            }
            let rel = path.strip_prefix(&real).unwrap_or(path);
            if filter.as_ref().is_none_or(|g| g.is_match(rel)) {
                files.push(path.to_path_buf());
            }
        })?;
    } else {
        let name = real.file_name().map(Path::new).unwrap_or(&real);
        if filter.as_ref().is_none_or(|g| g.is_match(name)) {
            files.push(real.clone());
        }
    }
    let limit = req.limit as usize;
    let mut matches = Vec::new();
    let mut truncated = false;
    'files: for file in files {
        let Some(content) = read_text(&file) else {
            continue;
        };
        for (i, line) in content.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !regex.is_match(line) {
                continue;
            }
            if matches.len() == limit {
                truncated = true;
                break 'files;
            }
            let text: String = String::from_utf8_lossy(line)
                .chars()
                .take(GREP_MAX_LINE_CHARS)
                .collect();
            matches.push(GrepMatch {
                path: file.to_string_lossy().into_owned(),
                line_number: i as u64 + 1,
                line: text,
            });
        }
    }
    Ok(OpResult::Matches { matches, truncated })
}

/// A file's contents, or `None` when it is too large, binary or unreadable.
fn read_text(path: &Path) -> Option<Vec<u8>> {
    let file = fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if meta.len() > GREP_MAX_FILE {
        return None;
    }
    let mut content = Vec::with_capacity(meta.len() as usize);
    // `take` bounds the read even if the file grows after the size check.
    file.take(GREP_MAX_FILE).read_to_end(&mut content).ok()?;
    if content[..content.len().min(BINARY_PROBE)].contains(&0) {
        return None;
    }
    Some(content)
}

fn compile_glob(pattern: &str) -> Result<GlobMatcher, OpError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| OpError::new(ErrorCode::InvalidInput, format!("bad glob: {e}")))
}

/// Visits every entry under `root` (not `root` itself) in name order,
/// depth first, without following symlinks. Unreadable subdirectories are
/// skipped; an unreadable `root` is an error.
fn walk(root: &Path, visit: &mut dyn FnMut(&Path, &fs::Metadata)) -> Result<(), OpError> {
    let mut stack = vec![root.to_path_buf()];
    let mut first = true;
    while let Some(dir) = stack.pop() {
        let read = match fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if first => return Err(OpError::io(&dir, &e)),
            Err(_) => continue,
        };
        first = false;
        let mut entries: Vec<_> = read.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let path = entry.path();
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                if entry.file_name() == ".git" {
                    continue;
                }
                subdirs.push(path.clone());
            }
            visit(&path, &meta);
        }
        // Reverse so the stack pops subdirectories in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}
