//! Plugins and marketplaces end to end through `cubicle plugin` (the CLI's
//! `plugin_cmd.rs`, compiled here from its source): real git repositories
//! made with the `git` program, fetched over `file://` URLs by `gix`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../../cubicle-cli/src/plugin_cmd.rs"]
#[allow(dead_code)]
mod plugin_cmd;

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use cubicle_skills::plugin::Plugin;
use cubicle_skills::plugin_store::{PluginStore, StoreError, allow_all};
use cubicle_skills::{PluginSkills, SkillRoots, discover};
use plugin_cmd::{PluginCommand, PluginEnv, run_in};
use pretty_assertions::assert_eq;

#[derive(clap::Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: PluginCommand,
}

fn have_git() -> bool {
    let ok = std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!(
            "skipped: the `git` program is needed to make test repositories (apt-get install git)"
        );
    }
    ok
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn commit_all(dir: &Path, msg: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", msg]);
    git(dir, &["rev-parse", "HEAD"])
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// A plugin with one of every component.
fn write_fmt_plugin(root: &Path, version: &str) {
    write(
        root,
        ".claude-plugin/plugin.json",
        &format!(
            r#"{{"name": "fmt", "version": "{version}", "description": "Formats things", "author": {{"name": "Acme"}}}}"#
        ),
    );
    write(
        root,
        "skills/format-code/SKILL.md",
        "---\nname: format-code\ndescription: Formats code in the house style.\nallowed-tools: Bash(prettier *) Read\n---\nRun ${CLAUDE_SKILL_DIR}/fmt.sh on $ARGUMENTS\n",
    );
    write(
        root,
        "commands/fmt.md",
        "---\ndescription: Format a file\nargument-hint: FILE\n---\nFormat $1 with ${CLAUDE_PLUGIN_ROOT}/bin/fmt\n",
    );
    write(
        root,
        "agents/reviewer.md",
        "---\nname: reviewer\ndescription: Reviews formatting\ntools: Read, Grep\nmodel: sonnet\n---\nYou review formatting.\n",
    );
    write(
        root,
        "hooks/hooks.json",
        r#"{"hooks": {"PostToolUse": [{"matcher": "Write|Edit", "hooks": [{"type": "command", "command": "${CLAUDE_PLUGIN_ROOT}/bin/after.sh", "timeout": 5}]}]}}"#,
    );
    write(
        root,
        ".mcp.json",
        r#"{"mcpServers": {"lint": {"command": "${CLAUDE_PLUGIN_ROOT}/bin/lint-server", "args": ["--root", "${CLAUDE_PLUGIN_ROOT}"]}}}"#,
    );
}

struct Fixture {
    _tmp: tempfile::TempDir,
    market: PathBuf,
    remote: PathBuf,
    remote_v1: String,
    config: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();

    // A plugin in its own repository, tagged v1, with a later commit.
    let remote = base.join("remote-plugin");
    std::fs::create_dir_all(&remote).unwrap();
    git(&remote, &["init", "-q"]);
    write(
        &remote,
        ".claude-plugin/plugin.json",
        r#"{"name": "remote", "version": "1.0.0"}"#,
    );
    write(
        &remote,
        "skills/hello/SKILL.md",
        "---\nname: hello\ndescription: Says hello v1.\n---\nHello.\n",
    );
    let remote_v1 = commit_all(&remote, "v1");
    git(&remote, &["tag", "v1"]);
    write(
        &remote,
        ".claude-plugin/plugin.json",
        r#"{"name": "remote", "version": "2.0.0"}"#,
    );
    commit_all(&remote, "v2");

    // A monorepo with a plugin in a sub-folder and no plugin.json.
    let mono = base.join("mono");
    std::fs::create_dir_all(&mono).unwrap();
    git(&mono, &["init", "-q"]);
    write(
        &mono,
        "plugins/sub/commands/hi.md",
        "Say hi to $ARGUMENTS\n",
    );
    write(&mono, "README.md", "mono\n");
    commit_all(&mono, "mono");

    // The marketplace.
    let market = base.join("market");
    std::fs::create_dir_all(&market).unwrap();
    git(&market, &["init", "-q"]);
    write_fmt_plugin(&market.join("plugins/fmt"), "1.0.0");
    write(
        &base,
        "outside/.claude-plugin/plugin.json",
        r#"{"name": "escape"}"#,
    );
    let manifest = serde_json::json!({
        "name": "acme",
        "owner": {"name": "Acme Tools"},
        "plugins": [
            {"name": "fmt", "source": "./plugins/fmt", "description": "Formats things"},
            {"name": "remote", "source": {"source": "url", "url": file_url(&remote), "ref": "v1"}},
            {"name": "sub", "source": {"source": "git-subdir", "url": file_url(&mono), "path": "plugins/sub"},
             "strict": false, "description": "A plugin from a monorepo"},
            {"name": "escape", "source": "../outside"},
            {"name": "npm-thing", "source": {"source": "npm", "package": "x"}},
            {"name": "broken"}
        ]
    });
    write(
        &market,
        ".claude-plugin/marketplace.json",
        &serde_json::to_string_pretty(&manifest).unwrap(),
    );
    commit_all(&market, "marketplace");

    let config = base.join("config");
    Fixture {
        _tmp: tmp,
        market,
        remote,
        remote_v1,
        config,
    }
}

fn env(config: &Path) -> PluginEnv {
    PluginEnv {
        store: PluginStore::new(config.join("plugins")),
        gate: Box::new(|_| Ok(())),
    }
}

fn run(env: &PluginEnv, args: &[&str]) -> String {
    let cli = Cli::try_parse_from(std::iter::once("plugin").chain(args.iter().copied())).unwrap();
    let mut out = Vec::new();
    let code = run_in(cli.cmd, env, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, ExitCode::SUCCESS, "{args:?}: {out}");
    out
}

fn run_err(env: &PluginEnv, args: &[&str]) -> String {
    let cli = Cli::try_parse_from(std::iter::once("plugin").chain(args.iter().copied())).unwrap();
    run_in(cli.cmd, env, &mut Vec::new())
        .unwrap_err()
        .to_string()
}

#[test]
fn marketplace_from_git_install_update_remove() {
    if !have_git() {
        return;
    }
    let f = fixture();
    let env = env(&f.config);
    let url = file_url(&f.market);
    let market_head = git(&f.market, &["rev-parse", "HEAD"]);

    let out = run(&env, &["marketplace", "add", &url]);
    assert!(out.contains("Added marketplace `acme`"), "{out}");
    assert!(
        out.contains(&market_head[..12]),
        "the commit is shown: {out}"
    );
    assert!(
        out.contains("plugin `broken` skipped: `source` is required"),
        "the broken entry is named: {out}"
    );
    assert!(run_err(&env, &["marketplace", "add", &url]).contains("already added"));

    let list = run(&env, &["marketplace", "list"]);
    assert!(list.contains("fmt@acme  Formats things"), "{list}");

    // A plugin from a folder in the marketplace, with every component.
    let out = run(&env, &["install", "fmt@acme"]);
    assert!(
        out.contains("Installed fmt@acme v1.0.0")
            && out.contains("1 skill(s), 1 command(s), 1 agent(s), 1 hook(s), 1 MCP server(s)"),
        "{out}"
    );
    let dir = f.config.join("plugins/installed/acme/fmt");
    let plugin = Plugin::load(&dir).unwrap();
    assert_eq!(plugin.skills[0].name, "fmt:format-code");
    assert_eq!(
        plugin.skills[0].frontmatter.allowed_tools,
        ["Bash(prettier *)", "Read"]
    );
    assert_eq!(plugin.commands[0].name, "fmt:fmt");
    assert_eq!(
        plugin.commands[0]
            .render("a.rs", &plugin.cubicle_root())
            .unwrap(),
        "Format a.rs with /mnt/.plugins/fmt/bin/fmt\n"
    );
    assert_eq!(plugin.agents[0].name, "fmt:reviewer");
    assert_eq!(plugin.agents[0].tools, ["Read", "Grep"]);
    assert_eq!(plugin.agents[0].model.as_deref(), Some("sonnet"));
    match &plugin.mcp_servers[0].transport {
        cubicle_skills::mcp::McpTransport::Stdio { command, args, .. } => {
            assert_eq!(plugin.mcp_servers[0].name, "plugin_fmt_lint");
            assert_eq!(command, "/mnt/.plugins/fmt/bin/lint-server");
            assert_eq!(args, &["--root", "/mnt/.plugins/fmt"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(plugin.warnings.is_empty(), "{:?}", plugin.warnings);
    let installed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(f.config.join("plugins/installed.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        installed["fmt@acme"]["commit"],
        market_head.as_str(),
        "the commit is pinned"
    );

    // Its skill is discovered, namespaced.
    let store = PluginStore::new(f.config.join("plugins"));
    let roots = SkillRoots {
        plugins: PluginSkills::installed(&store),
        ..SkillRoots::default()
    };
    let found = discover(&roots);
    let names: Vec<&str> = found
        .catalog
        .skills()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["fmt:format-code"]);
    assert_eq!(
        found.catalog.skills()[0].cubicle_dir(),
        "/mnt/.skills/fmt/format-code"
    );

    // A plugin in its own repository, pinned at a tag.
    let out = run(&env, &["install", "remote"]);
    assert!(out.contains("Installed remote@acme v1.0.0"), "{out}");
    assert!(out.contains(&f.remote_v1[..12]), "{out}");
    assert!(!f.config.join("plugins/installed/acme/remote/.git").exists());

    // A sub-folder of a monorepo, the entry standing in for the manifest.
    let out = run(&env, &["install", "sub@acme"]);
    assert!(
        out.contains("Installed sub@acme") && out.contains("1 command(s)"),
        "{out}"
    );
    assert!(
        f.config
            .join("plugins/installed/acme/sub/commands/hi.md")
            .is_file()
    );
    assert!(
        !f.config
            .join("plugins/installed/acme/sub/README.md")
            .exists()
    );

    // Refusals name the problem and install nothing.
    let e = run_err(&env, &["install", "escape@acme"]);
    assert!(e.contains("outside the marketplace"), "{e}");
    let e = run_err(&env, &["install", "npm-thing@acme"]);
    assert!(e.contains("npm source"), "{e}");
    let e = run_err(&env, &["install", "nope@acme"]);
    assert!(
        e.contains("has no plugin `nope`") && e.contains("fmt, remote, sub"),
        "{e}"
    );
    assert!(run_err(&env, &["install", "fmt@acme"]).contains("already installed"));
    let leftovers: Vec<String> = std::fs::read_dir(f.config.join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging folders left: {leftovers:?}");

    let list = run(&env, &["list"]);
    assert!(
        list.contains("fmt@acme v1.0.0") && list.contains("remote@acme v1.0.0"),
        "{list}"
    );
    // Each plugin's slash commands and agents are listed under it.
    assert!(list.contains("\n  /fmt:fmt "), "{list}");
    assert!(
        list.contains("\n  agent fmt:reviewer (the model calls it as `fmt__reviewer`)"),
        "{list}"
    );

    // Nothing changed upstream: up to date.
    assert!(run(&env, &["update", "fmt@acme"]).contains("up to date"));

    // A new version in the marketplace: update the marketplace, then the plugin.
    write_fmt_plugin(&f.market.join("plugins/fmt"), "1.1.0");
    let new_head = commit_all(&f.market, "fmt 1.1");
    let out = run(&env, &["marketplace", "update", "acme"]);
    assert!(out.contains(&new_head[..12]), "{out}");
    let out = run(&env, &["update"]);
    assert!(
        out.contains("Updated fmt@acme") && out.contains("remote@acme is up to date"),
        "{out}"
    );
    let installed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(f.config.join("plugins/installed.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(installed["fmt@acme"]["version"], "1.1.0");
    assert_eq!(
        installed["remote@acme"]["commit"],
        f.remote_v1.as_str(),
        "still pinned to v1"
    );

    assert!(run(&env, &["uninstall", "remote"]).contains("Uninstalled remote@acme"));
    assert!(!f.config.join("plugins/installed/acme/remote").exists());
    let out = run(&env, &["marketplace", "remove", "acme"]);
    assert!(
        out.contains("Uninstalled fmt@acme") && out.contains("Uninstalled sub@acme"),
        "{out}"
    );
    assert!(!f.config.join("plugins/marketplaces/acme").exists());
    assert!(run(&env, &["list"]).contains("No plugins installed"));
    let _ = &f.remote;
}

#[test]
fn local_marketplace_is_read_in_place() {
    if !have_git() {
        return;
    }
    let f = fixture();
    let env = env(&f.config);
    let out = run(&env, &["marketplace", "add", f.market.to_str().unwrap()]);
    assert!(out.contains("Added marketplace `acme`"), "{out}");
    assert!(
        !f.config.join("plugins/marketplaces/acme").exists(),
        "a local marketplace is not copied"
    );
    let out = run(&env, &["install", "fmt@acme"]);
    assert!(out.contains("Installed fmt@acme"), "{out}");
}

#[test]
fn policy_allow_and_block_lists_are_honoured() {
    if !have_git() {
        return;
    }
    let f = fixture();
    let policy = |toml: &str| {
        cubicle_policy::Policy::from_sources(&[cubicle_policy::SettingsSource {
            layer: cubicle_policy::Layer::Managed,
            file: Some(PathBuf::from("/etc/cubicle/managed.toml")),
            text: toml.to_owned(),
        }])
        .unwrap()
    };
    let url = file_url(&f.market);
    let blocked = PluginEnv {
        store: PluginStore::new(f.config.join("plugins")),
        gate: plugin_cmd::policy_gate(policy("[marketplaces]\nblock = [\"file://*\"]\n")),
    };
    let e = run_err(&blocked, &["marketplace", "add", &url]);
    assert!(e.contains("not allowed") && e.contains("blocked"), "{e}");
    let only_github = PluginEnv {
        store: PluginStore::new(f.config.join("plugins")),
        gate: plugin_cmd::policy_gate(policy("[marketplaces]\nallow = [\"github:acme/*\"]\n")),
    };
    let e = run_err(
        &only_github,
        &["marketplace", "add", f.market.to_str().unwrap()],
    );
    assert!(e.contains("path:") && e.contains("allows only"), "{e}");
    assert!(
        !f.config.join("plugins/marketplaces.json").exists(),
        "nothing recorded"
    );

    // Added while allowed, then blocked: installing from it is refused.
    let open = env(&f.config);
    run(&open, &["marketplace", "add", &url]);
    let e = run_err(&blocked, &["install", "fmt@acme"]);
    assert!(e.contains("blocked"), "{e}");
    assert!(!f.config.join("plugins/installed/acme/fmt").exists());
}

#[test]
fn bad_git_sources_are_clear_errors() {
    if !have_git() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = PluginStore::new(tmp.path().join("plugins"));
    let missing = format!("file://{}/nothing-here", tmp.path().display());
    match store.add_marketplace(&missing, &allow_all) {
        Err(StoreError::Git(e)) => assert!(e.to_string().contains("cannot fetch"), "{e}"),
        other => panic!("{other:?}"),
    }
    // A git repository that is not a marketplace.
    let repo = tmp.path().join("plain");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    write(&repo, "README.md", "hi\n");
    commit_all(&repo, "plain");
    match store.add_marketplace(&file_url(&repo), &allow_all) {
        Err(e) => assert!(e.to_string().contains("not a plugin marketplace"), "{e}"),
        Ok(_) => panic!("a repository without marketplace.json must be refused"),
    }
    assert!(
        StoreError::BadSource {
            source_arg: String::new()
        }
        .to_string()
        .contains("OWNER/REPO")
    );
    assert!(matches!(
        store.add_marketplace("not a source at all", &allow_all),
        Err(StoreError::BadSource { .. })
    ));
    let staging: Vec<_> = std::fs::read_dir(tmp.path().join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
}

#[test]
fn symlinks_in_a_fetched_plugin_are_not_installed() {
    if !have_git() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let market = tmp.path().join("market");
    std::fs::create_dir_all(&market).unwrap();
    git(&market, &["init", "-q"]);
    write(
        &market,
        ".claude-plugin/marketplace.json",
        r#"{"name": "m", "plugins": [{"name": "p", "source": "./p"}]}"#,
    );
    write(&market, "p/.claude-plugin/plugin.json", r#"{"name": "p"}"#);
    std::fs::create_dir_all(market.join("p/skills/leak")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", market.join("p/skills/leak/SKILL.md")).unwrap();
    commit_all(&market, "m");
    let store = PluginStore::new(tmp.path().join("plugins"));
    store
        .add_marketplace(&file_url(&market), &allow_all)
        .unwrap();
    let report = store.install("p@m", &allow_all).unwrap();
    assert!(report.plugin.skills.is_empty());
    assert!(
        std::fs::symlink_metadata(store.plugin_dir("m", "p").join("skills/leak/SKILL.md")).is_err()
    );
}

#[test]
fn slash_commands_expand_plugin_commands_and_person_invocable_skills() {
    use cubicle_skills::skill::{Skill, SkillSource};
    use cubicle_skills::{Catalog, CommandIndex, Preferences, SlashError};

    let dir = tempfile::tempdir().unwrap();
    let plugin_root = dir.path().join("greet");
    write(
        &plugin_root,
        ".claude-plugin/plugin.json",
        r#"{"name": "greet"}"#,
    );
    write(
        &plugin_root,
        "commands/hello.md",
        "---\ndescription: Greet someone\nargument-hint: NAME\nallowed-tools: Bash(echo *), Read\nmodel: haiku\n---\nGreet $1 with ${CUBICLE_PLUGIN_ROOT}/words.txt\n",
    );
    write(
        &plugin_root,
        "skills/card/SKILL.md",
        "---\nname: card\ndescription: Drafts a card.\n---\nDraft a card for $ARGUMENTS.\n",
    );
    let user = dir.path().join("user");
    write(
        &user,
        "memo/SKILL.md",
        "---\nname: memo\ndescription: Writes memos.\ndisable-model-invocation: true\n---\nWrite a memo.\n",
    );
    write(
        &user,
        "hidden/SKILL.md",
        "---\nname: hidden\ndescription: Only for the model.\nuser-invocable: false\n---\nSecret.\n",
    );
    let prefs = dir.path().join("prefs");
    Preferences::load(&prefs, "memo")
        .unwrap()
        .set("signature", "Ann")
        .unwrap();

    let plugin = Plugin::load(&plugin_root).unwrap();
    let mut skills = plugin.skills.clone();
    for name in ["memo", "hidden"] {
        skills.push(Skill::load(&user.join(name), SkillSource::User).unwrap());
    }
    let mut index = CommandIndex::new(Some(prefs));
    index.add_plugin(&plugin);
    index.add_skills(&Catalog::new(skills));
    let names: Vec<&str> = index.commands().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["greet:hello", "greet:card", "memo"]);
    assert_eq!(index.commands()[0].usage(), "/greet:hello NAME");

    let e = index.expand("/hello Ann").unwrap().unwrap();
    assert_eq!(e.command, "greet:hello");
    assert_eq!(
        e.prompt,
        "<command-name>/greet:hello</command-name>\n<command-args>Ann</command-args>\n\nGreet Ann with /mnt/.plugins/greet/words.txt"
    );
    assert_eq!(e.allowed_tools, vec!["Bash(echo *)", "Read"]);
    assert_eq!(e.model.as_deref(), Some("haiku"));

    // A plugin's skill by its short name, with its folder in the cubicle.
    let e = index.expand("/card Bob's birthday").unwrap().unwrap();
    assert_eq!(e.command, "greet:card");
    assert!(
        e.prompt.contains("Draft a card for Bob's birthday."),
        "{}",
        e.prompt
    );
    // A skill only the person may start, with their private preferences.
    let e = index.expand("/memo Q3").unwrap().unwrap();
    assert!(e.prompt.contains("Write a memo."), "{}", e.prompt);
    assert!(e.prompt.contains("ARGUMENTS: Q3"), "{}", e.prompt);
    assert!(
        e.prompt.contains("signature") && e.prompt.contains("Ann"),
        "{}",
        e.prompt
    );
    // A skill that is not user-invocable is not a command.
    assert!(matches!(
        index.expand("/hidden").unwrap_err(),
        SlashError::Unknown { .. }
    ));
}
