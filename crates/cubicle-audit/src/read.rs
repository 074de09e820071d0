//! Reading the log without checking it: the last records (`audit tail`),
//! new records as they are written (`audit tail --follow`), and a copy of
//! every line (`audit export --format jsonl`). Use [`crate::verify`] to
//! check; these skip lines that are not records.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::AuditError;
use crate::files::{self, file_name};
use crate::record::{Record, parse_line};

/// The last `n` records of the log in `dir`, oldest first.
pub fn tail(dir: impl AsRef<Path>, n: usize) -> Result<Vec<Record>, AuditError> {
    let mut out: Vec<Record> = Vec::new();
    if n == 0 {
        return Ok(out);
    }
    for (_, path) in files::list(dir.as_ref())?.iter().rev() {
        let content = files::read(path)?;
        let mut records: Vec<Record> = files::lines(&content)
            .iter()
            .filter(|l| l.terminated)
            .filter_map(|l| parse_line(l.bytes).ok())
            .collect();
        let take = records.len().min(n - out.len());
        let mut newest = records.split_off(records.len() - take);
        newest.append(&mut out);
        out = newest;
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

/// Copies every complete line of the log, in order and byte for byte, to
/// `writer`; returns how many lines were copied.
pub fn export_jsonl(dir: impl AsRef<Path>, mut writer: impl Write) -> Result<u64, AuditError> {
    let mut count = 0;
    for (_, path) in files::list(dir.as_ref())? {
        let content = files::read(&path)?;
        for line in files::lines(&content).iter().filter(|l| l.terminated) {
            writer
                .write_all(line.bytes)
                .and_then(|()| writer.write_all(b"\n"))
                .map_err(AuditError::io("<export output>"))?;
            count += 1;
        }
    }
    writer.flush().map_err(AuditError::io("<export output>"))?;
    Ok(count)
}

/// Follows a log as it grows, by polling: [`Follower::poll`] returns the
/// records written since the last call, across rotations.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    /// The file being read, and how far.
    number: u32,
    offset: u64,
    /// How long the blocking iterator and `next_async` sleep between polls.
    interval: Duration,
    /// Records polled but not yet handed out by the iterator or `next_async`.
    pending: VecDeque<Record>,
}

/// Starts following the log in `dir` from its current end (only records
/// written from now on are returned).
pub fn follow(dir: impl AsRef<Path>) -> Result<Follower, AuditError> {
    let dir = dir.as_ref().to_path_buf();
    let (number, offset) = match files::list(&dir)?.last() {
        Some((number, path)) => (
            *number,
            std::fs::metadata(path).map_err(AuditError::io(path))?.len(),
        ),
        None => (1, 0),
    };
    Ok(Follower {
        dir,
        number,
        offset,
        interval: Duration::from_millis(200),
        pending: VecDeque::new(),
    })
}

impl Follower {
    /// Sets how long `next_async` and the iterator wait between polls.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The records completed since the last poll (a line still being written
    /// is left for the next poll). Records already polled by the iterator or
    /// `next_async` but not handed out are not returned again.
    pub fn poll(&mut self) -> Result<Vec<Record>, AuditError> {
        let mut out = Vec::new();
        loop {
            let path = self.dir.join(file_name(self.number));
            let content = match std::fs::read(&path) {
                Ok(content) => content,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(AuditError::io(path)(e)),
            };
            let start = usize::try_from(self.offset)
                .unwrap_or(usize::MAX)
                .min(content.len());
            let fresh = &content[start..];
            let complete = fresh.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            for line in files::lines(&fresh[..complete]) {
                if let Ok(record) = parse_line(line.bytes) {
                    out.push(record);
                }
            }
            self.offset += complete as u64;
            // Move on once the writer has: the next file exists, and this one
            // has no partial line left (rotation only happens between records).
            let next = self.dir.join(file_name(self.number + 1));
            if complete == fresh.len() && next.exists() {
                self.number += 1;
                self.offset = 0;
                continue;
            }
            return Ok(out);
        }
    }

    /// Waits for the next record, polling without blocking the async runtime.
    pub async fn next_async(&mut self) -> Result<Record, AuditError> {
        loop {
            if let Some(record) = self.pending.pop_front() {
                return Ok(record);
            }
            let records = self.poll()?;
            if records.is_empty() {
                tokio::time::sleep(self.interval).await;
            }
            self.pending.extend(records);
        }
    }
}

impl Iterator for Follower {
    type Item = Result<Record, AuditError>;

    /// Blocks until the next record is written; never returns `None`.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.pending.pop_front() {
                return Some(Ok(record));
            }
            match self.poll() {
                Ok(records) if records.is_empty() => std::thread::sleep(self.interval),
                Ok(records) => self.pending.extend(records),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
