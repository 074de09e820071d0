//! Marketplaces and plugins fetched over git smart HTTP: a real
//! `git http-backend` behind a small HTTP server on loopback, fetched by
//! `gix` (the `git` program only makes and serves the repositories).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "common/git_http.rs"]
mod git_http;

use std::path::{Path, PathBuf};

use cubicle_skills::git::GitError;
use cubicle_skills::plugin_store::{MarketplaceSource, PluginStore, StoreError, allow_all};
use git_http::{GitHttpServer, commit_all, git, have_git, init_repo, write};
use pretty_assertions::assert_eq;

/// Repositories under one served folder: a marketplace, a plugin in its own
/// repository, and one at the GitHub-like path `acme/gh.git`.
struct Served {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    server: GitHttpServer,
    market: PathBuf,
    remote: PathBuf,
    config: PathBuf,
}

fn plugin(root: &Path, name: &str, version: &str) {
    write(
        root,
        ".claude-plugin/plugin.json",
        &format!(r#"{{"name": "{name}", "version": "{version}"}}"#),
    );
    write(
        root,
        &format!("skills/{name}-skill/SKILL.md"),
        &format!("---\nname: {name}-skill\ndescription: Does {name}\n---\nDo {name}.\n"),
    );
}

fn served() -> Served {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("srv");
    let server = GitHttpServer::start(&root);

    let remote = init_repo(&root, "remote");
    plugin(&remote, "remote", "1.0.0");
    commit_all(&remote, "remote v1");

    let gh = init_repo(&root, "acme/gh.git");
    plugin(&gh, "gh", "0.1.0");
    plugin(&gh.join("sub"), "sub", "0.2.0");
    commit_all(&gh, "gh");

    let market = init_repo(&root, "market");
    plugin(&market.join("plugins/fmt"), "fmt", "1.0.0");
    let manifest = serde_json::json!({
        "name": "acme",
        "owner": {"name": "Acme"},
        "plugins": [
            {"name": "fmt", "source": "./plugins/fmt", "description": "Formats"},
            {"name": "remote", "source": {"source": "url", "url": server.url("remote")}},
            {"name": "gh", "source": {"source": "github", "repo": "acme/gh"}},
            {"name": "sub", "source": {"source": "git-subdir", "repo": "acme/gh", "path": "sub"}},
        ]
    });
    write(
        &market,
        ".claude-plugin/marketplace.json",
        &serde_json::to_string_pretty(&manifest).unwrap(),
    );
    commit_all(&market, "market");
    let config = tmp.path().join("config");
    Served {
        root,
        server,
        market,
        remote,
        config,
        _tmp: tmp,
    }
}

impl Served {
    fn store(&self) -> PluginStore {
        PluginStore::new(self.config.join("plugins")).with_github_base(&self.server.base())
    }
}

#[test]
fn marketplace_over_http_add_install_update() {
    if !have_git() {
        return;
    }
    let s = served();
    let store = s.store();
    let market_head = git(&s.market, &["rev-parse", "HEAD"]);
    let (record, market) = store
        .add_marketplace(&s.server.url("market"), &allow_all)
        .unwrap();
    assert_eq!(market.name, "acme");
    assert_eq!(record.commit.as_deref(), Some(market_head.as_str()));
    assert_eq!(
        record.source,
        MarketplaceSource::Git {
            url: s.server.url("market")
        }
    );
    assert!(market.warnings.is_empty(), "{:?}", market.warnings);

    // A folder in the marketplace: pinned at the marketplace's commit.
    let fmt = store.install("fmt@acme", &allow_all).unwrap();
    assert_eq!(fmt.record.commit.as_deref(), Some(market_head.as_str()));
    assert_eq!(fmt.plugin.skills[0].name, "fmt:fmt-skill");

    // A plugin in its own repository over HTTP: pinned at its commit.
    let remote_v1 = git(&s.remote, &["rev-parse", "HEAD"]);
    let remote = store.install("remote@acme", &allow_all).unwrap();
    assert_eq!(remote.record.commit.as_deref(), Some(remote_v1.as_str()));
    assert_eq!(remote.record.version.as_deref(), Some("1.0.0"));

    // A `github` source, fetched from the overridden GitHub base.
    let gh_head = git(&s.root.join("acme/gh.git"), &["rev-parse", "HEAD"]);
    let gh = store.install("gh@acme", &allow_all).unwrap();
    assert_eq!(gh.record.commit.as_deref(), Some(gh_head.as_str()));
    assert_eq!(gh.record.source, "github:acme/gh");
    // A folder of a GitHub repository (`git-subdir` with `repo`), likewise.
    let sub = store.install("sub@acme", &allow_all).unwrap();
    assert_eq!(sub.record.commit.as_deref(), Some(gh_head.as_str()));
    assert_eq!(sub.plugin.skills[0].name, "sub:sub-skill");

    let installed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.config.join("plugins/installed.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(installed["remote@acme"]["commit"], remote_v1.as_str());
    assert!(!store.plugin_dir("acme", "remote").join(".git").exists());

    // Nothing changed upstream: no update.
    assert!(store.update("remote@acme", &allow_all).unwrap().is_none());
    // A new commit upstream: the update fetches it and pins it.
    plugin(&s.remote, "remote", "1.1.0");
    let remote_v2 = commit_all(&s.remote, "remote v2");
    let report = store.update("remote@acme", &allow_all).unwrap().unwrap();
    assert_eq!(report.record.commit.as_deref(), Some(remote_v2.as_str()));
    assert_eq!(report.record.version.as_deref(), Some("1.1.0"));
    assert_eq!(
        report.previous.unwrap().commit.as_deref(),
        Some(remote_v1.as_str())
    );

    // The marketplace itself updates over HTTP too.
    write(&s.market, "README.md", "new\n");
    let market_v2 = commit_all(&s.market, "readme");
    let update = store.update_marketplace("acme", &allow_all).unwrap();
    assert_eq!(update.before.commit.as_deref(), Some(market_head.as_str()));
    assert_eq!(update.after.commit.as_deref(), Some(market_v2.as_str()));
}

/// A marketplace at the GitHub-like path `acme/tools.git`; returns its commit.
fn github_marketplace(s: &Served) -> String {
    let gh_market = init_repo(&s.root, "acme/tools.git");
    write(
        &gh_market,
        ".claude-plugin/marketplace.json",
        r#"{"name": "acme-tools", "plugins": [{"name": "t", "source": "./t"}]}"#,
    );
    plugin(&gh_market.join("t"), "t", "1.0.0");
    commit_all(&gh_market, "tools")
}

#[test]
fn owner_repo_marketplace_comes_from_the_github_base() {
    if !have_git() {
        return;
    }
    let s = served();
    let head = github_marketplace(&s);
    let store = s.store();
    let (record, _) = store.add_marketplace("acme/tools", &allow_all).unwrap();
    assert_eq!(
        record.source,
        MarketplaceSource::Github {
            repo: "acme/tools".to_owned()
        }
    );
    assert_eq!(record.commit.as_deref(), Some(head.as_str()));
    // A URL under the GitHub base is recorded as the same `github` source.
    assert_eq!(
        MarketplaceSource::parse_with(&s.server.url("acme/tools.git"), &s.server.base()).unwrap(),
        record.source
    );
    let t = store.install("t@acme-tools", &allow_all).unwrap();
    assert_eq!(t.record.commit.as_deref(), Some(head.as_str()));
}

/// The error of adding `url` to an empty store, checking that nothing was
/// written.
fn add_error(s: &Served, url: &str, gate: &dyn Fn(&str) -> Result<(), String>) -> StoreError {
    let store = s.store();
    let err = match store.add_marketplace(url, gate) {
        Ok(_) => panic!("{url} must not be added"),
        Err(e) => e,
    };
    assert!(store.marketplaces().unwrap().is_empty());
    let left: Vec<_> = std::fs::read_dir(store.root())
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{url}: left behind {left:?}");
    err
}

#[test]
fn http_failures_are_clear_errors() {
    if !have_git() {
        return;
    }
    let s = served();

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = add_error(&s, &format!("http://127.0.0.1:{port}/market"), &allow_all);
    assert!(
        matches!(e, StoreError::Git(GitError::Unreachable { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("cannot reach"), "{e}");

    // No repository of that name.
    let e = add_error(&s, &s.server.url("nothing-here"), &allow_all);
    assert!(
        matches!(e, StoreError::Git(GitError::NotFound { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("HTTP 404"), "{e}");

    // A web server that is not git.
    let e = add_error(&s, &s.server.url("html/market"), &allow_all);
    assert!(
        matches!(e, StoreError::Git(GitError::NotGit { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("text/html"), "{e}");

    // A redirect to another host is refused, naming it.
    let e = add_error(&s, &s.server.url("away/market"), &allow_all);
    let text = e.to_string();
    assert!(
        matches!(e, StoreError::Git(GitError::Redirect { .. })),
        "{e:?}"
    );
    assert!(
        text.contains("127.0.0.2") && text.contains("another host"),
        "{text}"
    );

    // A redirect on the same host is followed only if the policy allows
    // the new address too. (Under the test's GitHub base, `.../moved/market`
    // reads as `github:moved/market`.)
    let only_moved = |id: &str| {
        if id.contains("moved") {
            Ok(())
        } else {
            Err(format!("only moved/... is allowed, not {id}"))
        }
    };
    let e = add_error(&s, &s.server.url("moved/market"), &only_moved);
    assert!(
        matches!(e, StoreError::Git(GitError::Redirect { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("not allowed"), "{e}");
    // (A store with the default GitHub base, so that the URL stays a URL.)
    let store = PluginStore::new(s.config.join("plugins"));
    let (record, _) = store
        .add_marketplace(&s.server.url("moved/market"), &allow_all)
        .unwrap();
    assert_eq!(
        record.commit.unwrap(),
        git(&s.market, &["rev-parse", "HEAD"])
    );
}

#[test]
fn policy_lists_apply_to_http_marketplaces() {
    if !have_git() {
        return;
    }
    let s = served();
    let policy = |toml: &str| {
        cubicle_policy::Policy::from_sources(&[cubicle_policy::SettingsSource {
            layer: cubicle_policy::Layer::Managed,
            file: Some(PathBuf::from("/etc/cubicle/managed.toml")),
            text: toml.to_owned(),
        }])
        .unwrap()
    };
    let gate_of =
        |p: cubicle_policy::Policy| move |id: &str| p.marketplace_allowed(id).map_err(|d| d.reason);
    let block_http = gate_of(policy("[marketplaces]\nblock = [\"http://*\"]\n"));
    let e = add_error(&s, &s.server.url("market"), &block_http);
    assert!(
        matches!(&e, StoreError::Blocked { id, .. } if *id == s.server.url("market")),
        "{e:?}"
    );
    assert_eq!(
        s.server.requests(),
        0,
        "a blocked marketplace is not fetched"
    );

    let only_github = gate_of(policy("[marketplaces]\nallow = [\"github:acme/*\"]\n"));
    let e = add_error(&s, &s.server.url("market"), &only_github);
    assert!(e.to_string().contains("allows only"), "{e}");

    // Added while allowed, installing from it after the policy changed is
    // refused, and nothing is fetched or written.
    let store = s.store();
    store
        .add_marketplace(&s.server.url("market"), &allow_all)
        .unwrap();
    let before = s.server.requests();
    let e = store.install("remote@acme", &block_http).unwrap_err();
    assert!(matches!(e, StoreError::Blocked { .. }), "{e:?}");
    assert_eq!(s.server.requests(), before);
    assert!(!store.plugin_dir("acme", "remote").exists());
}

/// Set in the copy of this test binary that
/// `github_base_comes_from_the_environment` starts: the plugins folder.
const CHILD_PLUGINS_ENV: &str = "CUBICLE_TEST_CHILD_PLUGINS";

/// `CUBICLE_GITHUB_BASE` moves `OWNER/REPO` sources. The variable is set
/// for a fresh copy of this test binary (setting it here would race the
/// other tests' threads), which adds the marketplace; this test checks what
/// it recorded.
#[test]
fn github_base_comes_from_the_environment() {
    if let Some(dir) = std::env::var_os(CHILD_PLUGINS_ENV) {
        let store = PluginStore::new(PathBuf::from(dir));
        store.add_marketplace("acme/tools", &allow_all).unwrap();
        return;
    }
    if !have_git() {
        return;
    }
    let s = served();
    let head = github_marketplace(&s);
    let plugins = s.config.join("plugins");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "github_base_comes_from_the_environment",
            "--nocapture",
        ])
        .env(
            cubicle_skills::marketplace::GITHUB_BASE_ENV,
            s.server.base(),
        )
        .env(CHILD_PLUGINS_ENV, &plugins)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let records = PluginStore::new(&plugins).marketplaces().unwrap();
    let record = &records["acme-tools"];
    assert_eq!(
        record.source,
        MarketplaceSource::Github {
            repo: "acme/tools".to_owned()
        }
    );
    assert_eq!(record.commit.as_deref(), Some(head.as_str()));
}
