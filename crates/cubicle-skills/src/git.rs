//! Fetching a git repository's files with `gix` (no `git` program needed for
//! HTTP; `file://` URLs use the `git-upload-pack` next to the repository, as
//! git itself does).
//!
//! Marketplaces, git-sourced plugins and skills imported from a git URL all
//! come through [`fetch`]: a shallow clone of one branch, tag or commit into
//! a fresh folder, whose commit is returned so the install record can pin
//! it. The `.git` folder is removed afterwards: what is installed is files,
//! and an update fetches again into a new folder and swaps it in, so a
//! half-finished update never leaves a broken install behind.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

/// Which revision of a repository to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Revision {
    /// The remote's default branch.
    #[default]
    Head,
    /// A branch or tag name, e.g. `main` or `v1.2.0`.
    Ref(String),
    /// A full 40-hex commit id.
    Commit(String),
}

impl Revision {
    /// The revision named by a manifest's `ref` and `sha` fields; `sha` wins.
    pub fn from_ref_sha(r#ref: Option<&str>, sha: Option<&str>) -> Self {
        match (sha, r#ref) {
            (Some(sha), _) => Revision::Commit(sha.to_ascii_lowercase()),
            (None, Some(r)) => Revision::Ref(r.to_owned()),
            (None, None) => Revision::Head,
        }
    }
}

/// Why a repository could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The URL is not one git understands.
    #[error("`{url}` is not a git URL: {message}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What the parser said.
        message: String,
    },
    /// A commit id that is not 40 hexadecimal digits.
    #[error("`{sha}` is not a full commit id (40 hexadecimal digits)")]
    BadCommit {
        /// The id given.
        sha: String,
    },
    /// Cloning failed (network, authentication, missing ref, …).
    #[error("cannot fetch {url}: {message}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong, with its causes.
        message: String,
    },
    /// The repository has no commits.
    #[error("{url} has no commits")]
    Empty {
        /// The URL.
        url: String,
    },
    /// The commit fetched is not the one asked for.
    #[error("{url}: asked for commit {wanted} but got {got}")]
    WrongCommit {
        /// The URL.
        url: String,
        /// The commit asked for.
        wanted: String,
        /// The commit checked out.
        got: String,
    },
    /// Writing the files failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Whether `s` looks like a git URL rather than a path on this machine.
pub fn is_git_url(s: &str) -> bool {
    [
        "https://", "http://", "git@", "ssh://", "git://", "git+", "file://",
    ]
    .iter()
    .any(|p| s.starts_with(p))
        || (s.ends_with(".git") && !Path::new(s).exists())
}

/// Clones revision `rev` of `url` into `dest` (which must not exist or be an
/// empty folder), removes its `.git` folder, and returns the commit id.
pub fn fetch(url: &str, rev: &Revision, dest: &Path) -> Result<String, GitError> {
    let fetch_err = |e: &dyn std::error::Error| GitError::Fetch {
        url: url.to_owned(),
        message: error_chain(e),
    };
    let parsed = gix::url::parse(gix::bstr::BStr::new(url)).map_err(|e| GitError::BadUrl {
        url: url.to_owned(),
        message: e.to_string(),
    })?;
    let mut prepare = gix::prepare_clone(parsed, dest).map_err(|e| fetch_err(&e))?;
    prepare = match rev {
        Revision::Head => prepare,
        Revision::Ref(name) => prepare
            .with_ref_name(Some(name.as_str()))
            .map_err(|e| fetch_err(&e))?,
        Revision::Commit(sha) => {
            if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(GitError::BadCommit { sha: sha.clone() });
            }
            prepare
                .with_revision(Some(sha.as_str()))
                .map_err(|e| fetch_err(&e))?
        }
    };
    if let Some(depth) = NonZeroU32::new(1) {
        prepare = prepare.with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(depth));
    }
    let interrupt = &gix::interrupt::IS_INTERRUPTED;
    let (mut checkout, _) = prepare
        .fetch_then_checkout(gix::progress::Discard, interrupt)
        .map_err(|e| fetch_err(&e))?;
    let (repo, _) = checkout
        .main_worktree(gix::progress::Discard, interrupt)
        .map_err(|e| fetch_err(&e))?;
    let commit = match repo.head_id() {
        Ok(id) => id.to_string(),
        Err(_) => {
            return Err(GitError::Empty {
                url: url.to_owned(),
            });
        }
    };
    if let Revision::Commit(sha) = rev
        && !commit.eq_ignore_ascii_case(sha)
    {
        return Err(GitError::WrongCommit {
            url: url.to_owned(),
            wanted: sha.clone(),
            got: commit,
        });
    }
    let git_dir = repo.git_dir().to_path_buf();
    drop(repo);
    std::fs::remove_dir_all(&git_dir).map_err(|source| GitError::Io {
        path: git_dir,
        source,
    })?;
    Ok(commit)
}

/// `e` and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
