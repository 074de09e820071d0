//! Writing the log: [`AuditLog`] appends sealed records, one `write` and one
//! `fdatasync` each, rotating to a new file when the current one would grow
//! past the size limit, and picks up the chain where it left off on open.
//!
//! # After a crash
//!
//! A crash in the middle of a `write` can leave the last line cut short. On
//! open, Cubicle never truncates or rewrites anything: it finds the last
//! complete record, ends the damaged line with a newline, and appends a
//! [`RecordKind::TornTail`] record naming the damaged line, chained to the
//! last complete record. `verify` accepts a damaged line only when such a
//! record follows it directly (and, with a key, the record's MAC proves
//! Cubicle wrote it); anywhere else a damaged line is tampering. The same
//! happens within a running log if a write fails: the next append first
//! recovers as open would.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::chain::{GENESIS, sealed_line, sha256_hex, split_sealed};
use crate::error::AuditError;
use crate::files::{self, file_name};
use crate::record::{Record, RecordKind, parse_line, unsigned_json};

/// Default size at which a new file is started: 16 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// How a log is written.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditOptions {
    /// A file is rotated before a record would take it past this many bytes
    /// (a single larger record still gets a file of its own).
    pub max_file_bytes: u64,
    /// HMAC-SHA256 key; without it records are sealed with plain SHA-256,
    /// which shows accidental damage and naive edits but not an attacker who
    /// recomputes the whole chain.
    pub key: Option<Vec<u8>>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            key: None,
        }
    }
}

impl std::fmt::Debug for AuditOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("AuditOptions")
            .field("max_file_bytes", &self.max_file_bytes)
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// A damaged line found and recorded on open (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The file holding the damaged line.
    pub file: PathBuf,
    /// Its 1-based line number.
    pub line: u64,
    /// How many bytes the damaged stretch holds, not counting newlines.
    pub bytes: u64,
}

/// An open audit log; `append` takes `&self` and may be called from many threads.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    options: AuditOptions,
    state: Mutex<State>,
    recovered: Mutex<Vec<Recovery>>,
}

#[derive(Debug)]
struct State {
    file: File,
    number: u32,
    len: u64,
    next_seq: u64,
    prev: String,
    /// A write failed: the file may end in a partial line.
    damaged: bool,
}

/// What the end of an existing log looks like.
struct Tail {
    /// Seq of the last complete record, and the SHA-256 of its line.
    last: Option<(u64, String)>,
    /// A damaged stretch after it: first line number and byte count.
    damage: Option<(u64, u64)>,
    /// The file does not end with a newline.
    needs_newline: bool,
}

impl AuditLog {
    /// Opens (creating if needed) the log in `dir` and continues its chain.
    pub fn open(dir: impl AsRef<Path>, options: AuditOptions) -> Result<AuditLog, AuditError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(AuditError::io(&dir))?;
        let log = AuditLog {
            state: Mutex::new(open_state(&dir)?.0),
            dir,
            options,
            recovered: Mutex::new(Vec::new()),
        };
        {
            let mut state = log.lock();
            // The state was just read; re-reading gives the damage too.
            log.recover(&mut state)?;
        }
        Ok(log)
    }

    /// The folder the log is in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Damaged lines found and recorded since the log was opened.
    pub fn recoveries(&self) -> Vec<Recovery> {
        self.recovered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The seq the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// Appends one record, durably: it is on disk when this returns.
    pub fn append(&self, session: Option<&str>, kind: RecordKind) -> Result<Record, AuditError> {
        let mut state = self.lock();
        if state.damaged {
            self.recover(&mut state)?;
        }
        self.append_locked(&mut state, session, kind)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Appends do not panic while holding the lock; if one ever did, the
        // `damaged` flag and recovery still keep the file consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append_locked(
        &self,
        state: &mut State,
        session: Option<&str>,
        kind: RecordKind,
    ) -> Result<Record, AuditError> {
        let ts = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .map_err(|e| AuditError::BadRecord(format!("cannot format the time: {e}")))?;
        let unsigned = unsigned_json(state.next_seq, &ts, session, &kind, &state.prev)
            .map_err(AuditError::BadRecord)?;
        let line = sealed_line(&unsigned, self.options.key.as_deref());
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        if state.len > 0 && state.len + bytes.len() as u64 > self.options.max_file_bytes {
            self.rotate(state)?;
        }
        let path = self.dir.join(file_name(state.number));
        // One write call for the whole line, then fdatasync: a crash leaves
        // either the whole record or a torn last line that open recovers.
        let written = state
            .file
            .write_all(&bytes)
            .and_then(|()| state.file.sync_data());
        if let Err(e) = written {
            state.damaged = true;
            return Err(AuditError::io(path)(e));
        }
        state.len += bytes.len() as u64;
        let record = Record {
            seq: state.next_seq,
            ts,
            session: session.map(str::to_string),
            kind,
            prev: std::mem::replace(&mut state.prev, sha256_hex(line.as_bytes())),
            hash: split_sealed(line.as_bytes())
                .map(|(_, hash)| hash.to_string())
                .unwrap_or_default(),
        };
        state.next_seq += 1;
        Ok(record)
    }

    fn rotate(&self, state: &mut State) -> Result<(), AuditError> {
        let number = state.number + 1;
        let path = self.dir.join(file_name(number));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(AuditError::io(&path))?;
        sync_dir(&self.dir)?;
        state.file = file;
        state.number = number;
        state.len = 0;
        Ok(())
    }

    /// Re-reads the end of the log and, if the last line is damaged, ends
    /// it and appends a `torn_tail` record.
    fn recover(&self, state: &mut State) -> Result<(), AuditError> {
        let (fresh, tail) = open_state(&self.dir)?;
        *state = fresh;
        let path = self.dir.join(file_name(state.number));
        if tail.needs_newline {
            state
                .file
                .write_all(b"\n")
                .and_then(|()| state.file.sync_data())
                .map_err(AuditError::io(&path))?;
            state.len += 1;
        }
        if let Some((line, bytes)) = tail.damage {
            self.append_locked(
                state,
                None,
                RecordKind::TornTail {
                    file: file_name(state.number),
                    line,
                    bytes,
                },
            )?;
            self.recovered
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(Recovery {
                    file: path,
                    line,
                    bytes,
                });
        }
        Ok(())
    }
}

/// Opens the newest file for appending (creating file 1 in an empty folder)
/// and works out the next seq and prev from the newest complete record.
fn open_state(dir: &Path) -> Result<(State, Tail), AuditError> {
    let existing = files::list(dir)?;
    let Some((number, path)) = existing.last().cloned() else {
        let path = dir.join(file_name(1));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(AuditError::io(&path))?;
        sync_dir(dir)?;
        let state = State {
            file,
            number: 1,
            len: 0,
            next_seq: 1,
            prev: GENESIS.into(),
            damaged: false,
        };
        let tail = Tail {
            last: None,
            damage: None,
            needs_newline: false,
        };
        return Ok((state, tail));
    };
    let content = files::read(&path)?;
    let tail = scan_tail(&content);
    // An empty newest file (rotated just before a crash) continues the
    // chain of the file before it.
    let mut last = tail.last.clone();
    for (_, older) in existing.iter().rev().skip(1) {
        if last.is_some() {
            break;
        }
        last = scan_tail(&files::read(older)?).last;
    }
    let (next_seq, prev) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(AuditError::io(&path))?;
    let state = State {
        file,
        number,
        len: content.len() as u64,
        next_seq,
        prev,
        damaged: false,
    };
    Ok((state, tail))
}

/// Finds the last complete record of a file and any damage after it.
fn scan_tail(content: &[u8]) -> Tail {
    let lines = files::lines(content);
    let needs_newline = content.last().is_some_and(|b| *b != b'\n');
    for (i, line) in lines.iter().enumerate().rev() {
        let parsed = split_sealed(line.bytes).and_then(|_| parse_line(line.bytes).ok());
        if let Some(record) = parsed {
            let damaged = &lines[i + 1..];
            let damage = damaged.first().map(|first| {
                // Newlines are not counted: recovery adds one after the damage.
                let bytes: usize = damaged.iter().map(|l| l.bytes.len()).sum();
                (first.number as u64, bytes as u64)
            });
            return Tail {
                last: Some((record.seq, sha256_hex(line.bytes))),
                damage,
                needs_newline,
            };
        }
    }
    let damage = lines
        .first()
        .map(|_| (1, lines.iter().map(|l| l.bytes.len() as u64).sum()));
    Tail {
        last: None,
        damage,
        needs_newline,
    }
}

/// Makes a new file's directory entry durable.
fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(AuditError::io(dir))
}
