//! Where sessions live on disk: transcripts under
//! `$XDG_DATA_HOME/cubicle/sessions/ID.jsonl`, each session's scratch folder
//! under `$XDG_DATA_HOME/cubicle/workspaces/ID/`.

use std::path::{Path, PathBuf};

use cubicle_protocol::transcript::Record;

use crate::transcript::{Transcript, TranscriptError};

/// The session store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// One line of `cubicle sessions list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// Session id.
    pub id: String,
    /// When it was created, RFC 3339.
    pub created_at: String,
    /// When it last recorded anything, RFC 3339.
    pub updated_at: String,
    /// The task, first line.
    pub task: String,
    /// `provider:model`.
    pub model: String,
    /// Backend name.
    pub backend: String,
    /// Model calls made.
    pub turns: usize,
}

/// Errors finding a session.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No session has that id.
    #[error("no session matches `{0}` — see `cubicle sessions list`")]
    NotFound(String),
    /// Several sessions start with that prefix.
    #[error("`{0}` matches several sessions ({1}); give more of the id")]
    Ambiguous(String, String),
    /// Neither `XDG_DATA_HOME` nor `HOME` is set.
    #[error("cannot find a data folder: set HOME or XDG_DATA_HOME")]
    NoHome,
    /// Reading the store failed.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A transcript could not be read.
    #[error(transparent)]
    Transcript(#[from] TranscriptError),
}

impl Store {
    /// The store at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The store in the XDG data folder of `env`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, StoreError> {
        let base = match env("XDG_DATA_HOME").filter(|s| !s.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(env("HOME").ok_or(StoreError::NoHome)?).join(".local/share"),
        };
        Ok(Self::at(base.join("cubicle")))
    }

    /// The store's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a session's transcript.
    pub fn transcript_path(&self, id: &str) -> PathBuf {
        self.root.join("sessions").join(format!("{id}.jsonl"))
    }

    /// Path of a session's scratch folder.
    pub fn workspace_path(&self, id: &str) -> PathBuf {
        self.root.join("workspaces").join(id)
    }

    /// A new session id: sortable by time, unique, and short enough to type
    /// a prefix of (`20261127-142501-3f9a`).
    pub fn new_session_id() -> String {
        let now = time::OffsetDateTime::now_utc();
        let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
        let stamp = now.format(&fmt).unwrap_or_else(|_| "session".into());
        let rand = uuid::Uuid::new_v4().simple().to_string();
        format!("{stamp}-{}", &rand[..4])
    }

    /// Finds a session by id or unique id prefix.
    pub fn resolve(&self, id: &str) -> Result<String, StoreError> {
        let exact = self.transcript_path(id);
        if exact.is_file() {
            return Ok(id.to_owned());
        }
        let ids = self.ids()?;
        let matches: Vec<&String> = ids.iter().filter(|s| s.starts_with(id)).collect();
        match matches.as_slice() {
            [] => Err(StoreError::NotFound(id.to_owned())),
            [one] => Ok((*one).clone()),
            many => Err(StoreError::Ambiguous(
                id.to_owned(),
                many.iter()
                    .take(5)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// Every session id, oldest first.
    pub fn ids(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("sessions");
        let read = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::Io(dir, e)),
        };
        let mut ids: Vec<String> = read
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".jsonl"))
                    .map(str::to_owned)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Summaries of every readable session, oldest first, and a warning for
    /// each unreadable one.
    pub fn list(&self) -> Result<(Vec<SessionSummary>, Vec<String>), StoreError> {
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        for id in self.ids()? {
            match Transcript::load(&self.transcript_path(&id)) {
                Ok(t) => out.push(summarise(&id, &t)),
                Err(e) => warnings.push(e.to_string()),
            }
        }
        Ok((out, warnings))
    }
}

/// A session's summary line.
pub fn summarise(id: &str, t: &Transcript) -> SessionSummary {
    SessionSummary {
        id: id.to_owned(),
        created_at: t.header.created_at.clone(),
        updated_at: t
            .entries
            .last()
            .map_or_else(|| t.header.created_at.clone(), |e| e.ts.clone()),
        task: t
            .header
            .task
            .as_deref()
            .and_then(|s| s.lines().next())
            .unwrap_or("(chat)")
            .to_owned(),
        model: t.header.model.clone(),
        backend: t.header.backend.clone(),
        turns: t
            .entries
            .iter()
            .filter(|e| matches!(e.record, Record::ModelResponse { .. }))
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_resolve_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        std::fs::create_dir_all(dir.path().join("sessions")).unwrap();
        for id in [
            "20260101-000000-aaaa",
            "20260101-000000-aabb",
            "20260102-000000-cccc",
        ] {
            std::fs::write(store.transcript_path(id), "").unwrap();
        }
        assert_eq!(store.resolve("20260102").unwrap(), "20260102-000000-cccc");
        assert!(matches!(
            store.resolve("20260101"),
            Err(StoreError::Ambiguous(..))
        ));
        assert!(matches!(store.resolve("zzz"), Err(StoreError::NotFound(_))));
        let id = Store::new_session_id();
        assert_eq!(id.len(), "20261127-142501-3f9a".len());
    }

    #[test]
    fn follows_xdg() {
        let s = Store::from_env(|k| (k == "HOME").then(|| "/home/u".to_owned())).unwrap();
        assert_eq!(s.root(), Path::new("/home/u/.local/share/cubicle"));
        let s = Store::from_env(|k| (k == "XDG_DATA_HOME").then(|| "/d".to_owned())).unwrap();
        assert_eq!(s.root(), Path::new("/d/cubicle"));
    }
}
