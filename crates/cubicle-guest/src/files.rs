//! File operations: read, atomic write, stat, list, make and remove. Each
//! runs on a blocking thread and resolves its path through [`Confinement`]
//! first.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use cubicle_protocol::guest::{DirEntry, ErrorCode, FileKind, FileStat, MAX_FILE_CHUNK, OpResult};

use crate::confine::{Access, Confinement};
use crate::error::OpError;

/// Mode of a newly created file when the request names none.
const DEFAULT_FILE_MODE: u32 = 0o644;

/// Reads up to `limit` bytes (capped at [`MAX_FILE_CHUNK`]) at `offset`.
pub fn read_file(
    c: &Confinement,
    path: &str,
    offset: u64,
    limit: Option<u64>,
) -> Result<OpResult, OpError> {
    let real = c.resolve(path, Access::Read)?;
    let mut file = File::open(&real).map_err(|e| OpError::io(&real, &e))?;
    let meta = file.metadata().map_err(|e| OpError::io(&real, &e))?;
    if meta.is_dir() {
        return Err(OpError::new(
            ErrorCode::IsDirectory,
            format!("{}: is a directory", real.display()),
        ));
    }
    let limit = limit.unwrap_or(MAX_FILE_CHUNK).min(MAX_FILE_CHUNK);
    let mut data = Vec::new();
    if offset < meta.len() {
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| OpError::io(&real, &e))?;
        file.take(limit)
            .read_to_end(&mut data)
            .map_err(|e| OpError::io(&real, &e))?;
    }
    Ok(OpResult::FileData {
        data: data.into(),
        size: meta.len(),
    })
}

/// Options of a write, straight from the request.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Append instead of replacing.
    pub append: bool,
    /// Create missing parent directories.
    pub create_parents: bool,
    /// Permission bits for a new file.
    pub mode: Option<u32>,
}

/// Writes a file: appends in place, or replaces it atomically.
pub fn write_file(
    c: &Confinement,
    path: &str,
    data: &[u8],
    opts: WriteOptions,
) -> Result<OpResult, OpError> {
    if data.len() as u64 > MAX_FILE_CHUNK {
        return Err(OpError::new(
            ErrorCode::InvalidInput,
            format!(
                "write of {} bytes exceeds the {MAX_FILE_CHUNK}-byte limit per request",
                data.len()
            ),
        ));
    }
    let real = c.resolve(path, Access::Write)?;
    let parent = real
        .parent()
        .ok_or_else(|| OpError::new(ErrorCode::InvalidInput, format!("{path}: not a file path")))?;
    if opts.create_parents {
        fs::create_dir_all(parent).map_err(|e| OpError::io(parent, &e))?;
    }
    let existing = match fs::metadata(&real) {
        Ok(m) if m.is_dir() => {
            return Err(OpError::new(
                ErrorCode::IsDirectory,
                format!("{}: is a directory", real.display()),
            ));
        }
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(OpError::io(&real, &e)),
    };
    if opts.append {
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(opts.mode.unwrap_or(DEFAULT_FILE_MODE))
            .open(&real)
            .map_err(|e| OpError::io(&real, &e))?;
        file.write_all(data).map_err(|e| OpError::io(&real, &e))?;
        file.sync_all().map_err(|e| OpError::io(&real, &e))?;
        return Ok(OpResult::Done);
    }
    // Keep the mode of a file being replaced: an edit should not make a
    // script lose its execute bit.
    let mode = existing
        .map(|m| m.permissions().mode() & 0o7777)
        .or(opts.mode)
        .unwrap_or(DEFAULT_FILE_MODE);
    atomic_replace(&real, parent, data, mode)?;
    Ok(OpResult::Done)
}

/// Writes `data` to a temporary file beside `target`, fsyncs it and renames
/// it over `target`, so readers see the old or the new contents, never a mix.
fn atomic_replace(target: &Path, dir: &Path, data: &[u8], mode: u32) -> Result<(), OpError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.cubicle-{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(data)?;
        // Set the mode explicitly: `open`'s mode is filtered by the umask.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&tmp, target)?;
        // Persist the rename itself; a failure here does not undo the write.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        OpError::io(target, &e)
    })
}

/// Metadata of a path, symlinks followed.
pub fn stat(c: &Confinement, path: &str) -> Result<OpResult, OpError> {
    let real = c.resolve(path, Access::Read)?;
    let meta = fs::metadata(&real).map_err(|e| OpError::io(&real, &e))?;
    let mode = meta.permissions().mode() & 0o7777;
    Ok(OpResult::Stat {
        stat: FileStat {
            kind: kind_of(&meta.file_type()),
            size: meta.len(),
            mode,
            modified_ms: modified_ms(&meta),
            // Judged from the mode bits and the root; the guest does not probe
            // with access(2), which would ignore the roots anyway.
            writable: c.is_writable(&real) && mode & 0o222 != 0,
        },
    })
}

/// Entries of a directory sorted by name; symlinks are reported, not followed.
pub fn list_dir(c: &Confinement, path: &str) -> Result<OpResult, OpError> {
    let real = c.resolve(path, Access::Read)?;
    let read = fs::read_dir(&real).map_err(|e| OpError::io(&real, &e))?;
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| OpError::io(&real, &e))?;
        // An entry removed while listing is simply left out.
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        entries.push(DirEntry {
            name: entry.file_name().to_string_lossy().into_owned(),
            kind: kind_of(&meta.file_type()),
            size: meta.len(),
            modified_ms: modified_ms(&meta),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(OpResult::Entries { entries })
}

/// Creates a directory and its parents.
pub fn make_dir(c: &Confinement, path: &str) -> Result<OpResult, OpError> {
    let real = c.resolve(path, Access::Write)?;
    fs::create_dir_all(&real).map_err(|e| OpError::io(&real, &e))?;
    Ok(OpResult::Done)
}

/// Removes a file or symlink, or a directory (with everything in it when
/// `recursive`).
pub fn remove(c: &Confinement, path: &str, recursive: bool) -> Result<OpResult, OpError> {
    let real = c.resolve_nofollow(path, Access::Write)?;
    if c.is_confined() && c.is_root(&real) {
        return Err(OpError::new(
            ErrorCode::InvalidInput,
            format!("{path} is one of the session's folders and cannot be removed"),
        ));
    }
    let meta = fs::symlink_metadata(&real).map_err(|e| OpError::io(&real, &e))?;
    let res = if meta.is_dir() {
        if recursive {
            fs::remove_dir_all(&real)
        } else {
            fs::remove_dir(&real)
        }
    } else {
        fs::remove_file(&real)
    };
    res.map_err(|e| {
        if e.kind() == std::io::ErrorKind::DirectoryNotEmpty {
            OpError::new(
                ErrorCode::Io,
                format!(
                    "{}: directory not empty (remove it recursively)",
                    real.display()
                ),
            )
        } else {
            OpError::io(&real, &e)
        }
    })?;
    Ok(OpResult::Done)
}

/// The protocol's kind for a file type.
pub fn kind_of(ft: &fs::FileType) -> FileKind {
    if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

/// Modification time in milliseconds since the epoch (negative before it).
pub fn modified_ms(meta: &fs::Metadata) -> i64 {
    match meta.modified() {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        },
        Err(_) => meta.mtime().saturating_mul(1000),
    }
}
