//! Fetching a git repository's files with `gix` (no `git` program needed for
//! HTTP; `file://` URLs use the `git-upload-pack` next to the repository, as
//! git itself does).
//!
//! An `http://` or `https://` URL is first probed with one request for its
//! smart-HTTP ref advertisement (`info/refs?service=git-upload-pack`), so
//! that an unreachable host, a missing repository, a web server that is not
//! git and a redirect each get an error of their own instead of a protocol
//! error. Redirects are never followed by `gix`: the probe follows one only
//! to the same scheme, host and port, and only after the caller's
//! `on_redirect` check (the marketplace policy) accepts the new URL; a
//! redirect to another host is refused, naming it.
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
    /// The host could not be reached (no such name, connection refused, timeout).
    #[error("cannot reach {url}: {message} — check the URL and the network")]
    Unreachable {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered 404: no repository there.
    #[error("there is no git repository at {url} (HTTP 404) — check the owner, name and spelling")]
    NotFound {
        /// The URL.
        url: String,
    },
    /// The server answered, but not as a git smart-HTTP server.
    #[error(
        "{url} is not a git repository: the server answered {what} instead of a git ref advertisement — give the repository's clone URL"
    )]
    NotGit {
        /// The URL.
        url: String,
        /// What it answered (status and content type).
        what: String,
    },
    /// The server redirected somewhere that is refused.
    #[error("{url} redirects to {to}; refused: {reason}")]
    Redirect {
        /// The URL asked for.
        url: String,
        /// Where the server sent the client.
        to: String,
        /// Why it is not followed.
        reason: String,
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

/// A check of the URL a server redirects to: `Err(reason)` refuses it.
pub type RedirectCheck<'a> = &'a dyn Fn(&str) -> Result<(), String>;

/// Clones revision `rev` of `url` into `dest` (which must not exist or be an
/// empty folder), removes its `.git` folder, and returns the commit id.
/// A same-host HTTP redirect is followed; see [`fetch_checked`].
pub fn fetch(url: &str, rev: &Revision, dest: &Path) -> Result<String, GitError> {
    fetch_checked(url, rev, dest, &|_| Ok(()))
}

/// Like [`fetch`], with `on_redirect` deciding whether a same-host HTTP
/// redirect may be followed (a redirect to another host never is).
pub fn fetch_checked(
    url: &str,
    rev: &Revision,
    dest: &Path,
    on_redirect: RedirectCheck<'_>,
) -> Result<String, GitError> {
    let is_http = url.starts_with("http://") || url.starts_with("https://");
    let fetch_url = if is_http {
        probe_http(url, on_redirect)?
    } else {
        url.to_owned()
    };
    let fetch_err = |e: &dyn std::error::Error| GitError::Fetch {
        url: url.to_owned(),
        message: error_chain(e),
    };
    let parsed =
        gix::url::parse(gix::bstr::BStr::new(&fetch_url)).map_err(|e| GitError::BadUrl {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
    let mut prepare = gix::prepare_clone(parsed, dest)
        .map_err(|e| fetch_err(&e))?
        // The probe decided where the repository is; a redirect now would
        // bypass it.
        .with_in_memory_config_overrides(["http.followRedirects=false"]);
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

/// The ref advertisement's path below a repository URL.
const ADVERTISEMENT: &str = "/info/refs?service=git-upload-pack";
/// Most redirects followed (all on one host).
const MAX_REDIRECTS: usize = 5;

/// Asks `url` for its smart-HTTP ref advertisement and returns the URL to
/// clone (`url`, or where a followed same-host redirect leads).
fn probe_http(url: &str, on_redirect: RedirectCheck<'_>) -> Result<String, GitError> {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(20))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| GitError::Fetch {
            url: url.to_owned(),
            message: error_chain(&e),
        })?;
    let mut base = url.trim_end_matches('/').to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let asked = format!("{base}{ADVERTISEMENT}");
        let response = client
            .get(&asked)
            .header("Git-Protocol", "version=2")
            .send()
            .map_err(|e| GitError::Unreachable {
                url: url.to_owned(),
                message: error_chain(&e),
            })?;
        let status = response.status();
        if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| response.url().join(l).ok())
                .ok_or_else(|| GitError::NotGit {
                    url: url.to_owned(),
                    what: format!("a redirect ({status}) without a usable Location"),
                })?;
            let refuse = |reason: String| GitError::Redirect {
                url: url.to_owned(),
                to: to.to_string(),
                reason,
            };
            let from = response.url();
            if to.scheme() != from.scheme()
                || to.host_str() != from.host_str()
                || to.port_or_known_default() != from.port_or_known_default()
            {
                return Err(refuse(
                    "it is another host (or scheme); add that URL instead if you trust it"
                        .to_owned(),
                ));
            }
            let Some(new_base) = to.as_str().strip_suffix(ADVERTISEMENT) else {
                return Err(refuse("it is not a git repository's address".to_owned()));
            };
            on_redirect(new_base).map_err(refuse)?;
            base = new_base.to_owned();
            continue;
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(GitError::NotFound {
                url: url.to_owned(),
            });
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(GitError::Fetch {
                url: url.to_owned(),
                message: format!(
                    "the server asks for credentials (HTTP {}); only public repositories can be fetched",
                    status.as_u16()
                ),
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !status.is_success() {
            return Err(GitError::Fetch {
                url: url.to_owned(),
                message: format!("the server answered HTTP {status}"),
            });
        }
        if !content_type.starts_with("application/x-git-upload-pack-advertisement") {
            let shown = if content_type.is_empty() {
                "no content type".to_owned()
            } else {
                format!("`{content_type}`")
            };
            return Err(GitError::NotGit {
                url: url.to_owned(),
                what: format!("HTTP {} with {shown}", status.as_u16()),
            });
        }
        return Ok(base);
    }
    Err(GitError::Fetch {
        url: url.to_owned(),
        message: format!("more than {MAX_REDIRECTS} redirects"),
    })
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
