//! Loading and merging the four layers from real files in a temporary folder:
//! precedence, deny-wins, locks, managed_only, trust, drop-in order, errors
//! and the origins `cubicle policy show --effective` prints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use cubicle_policy::{
    CommandLineSettings, CredentialSetting, Effect, EffectiveSetting, Layer, Notice, Origin,
    Policy, PolicyError, PolicyPaths, ProjectFolder, RuleOrigin,
};
use pretty_assertions::assert_eq;
use serde_json::json;

/// A temporary machine: /etc/cubicle, a home and granted folders.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        Machine {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn paths(&self) -> PolicyPaths {
        PolicyPaths {
            managed_file: self.path("etc/managed.toml"),
            managed_dir: self.path("etc/managed.d"),
            user_file: Some(self.path("home/settings.toml")),
        }
    }

    fn managed(&self, text: &str) -> PathBuf {
        self.write("etc/managed.toml", text)
    }

    fn user(&self, text: &str) -> PathBuf {
        self.write("home/settings.toml", text)
    }

    fn project(&self, name: &str, text: &str) -> (PathBuf, ProjectFolder) {
        let file = self.write(&format!("grants/{name}/.cubicle/settings.toml"), text);
        (
            file,
            ProjectFolder {
                path: self.path(&format!("grants/{name}")),
                trusted: true,
            },
        )
    }

    fn load(&self) -> Policy {
        self.load_with(&CommandLineSettings::default(), &[])
    }

    fn load_with(&self, cli: &CommandLineSettings, projects: &[ProjectFolder]) -> Policy {
        Policy::load(&self.paths(), cli, projects).unwrap_or_else(|e| panic!("{e}"))
    }

    fn load_err(&self) -> PolicyError {
        Policy::load(&self.paths(), &CommandLineSettings::default(), &[]).unwrap_err()
    }
}

fn origin(layer: Layer, file: &Path, line: usize) -> Option<Origin> {
    Some(Origin {
        layer,
        file: Some(file.to_path_buf()),
        line: Some(line),
    })
}

fn setting(policy: &Policy, key: &str) -> Vec<EffectiveSetting> {
    policy
        .effective()
        .into_iter()
        .filter(|s| s.key == key)
        .collect()
}

fn bash(policy: &Policy, command: &str) -> Effect {
    policy
        .check_tool("bash", &json!({ "command": command }))
        .effect
}

#[test]
fn no_files_at_all_gives_the_defaults() {
    let machine = Machine::new();
    let policy = machine.load();
    assert_eq!(policy.notices(), &[] as &[Notice]);
    assert_eq!(policy.sources(), &[]);
    assert!(policy.asks_before_changing_granted_files());
    assert!(!policy.network_managed_only());
    assert_eq!(policy.credentials(), &[] as &[CredentialSetting]);
    let rendered: Vec<String> = policy.effective().iter().map(|s| s.to_string()).collect();
    assert_eq!(
        rendered,
        vec![
            "permissions.allow = [] — from default",
            "permissions.ask = [] — from default",
            "permissions.deny = [] — from default",
            "permissions.ask_before_changing_granted_files = true — from default",
            "network.allow = [] — from default",
            "network.deny = [] — from default",
            "network.managed_only = false — from default",
            "credential = [] — from default",
            "sandbox.allowed_backends = [\"jail\", \"vm\", \"remote\"] — from default",
            "models.allowed_providers = [\"*\"] — from default",
            "models.allowed_models = [\"*\"] — from default",
            "marketplaces.allow = [\"*\"] — from default",
            "marketplaces.block = [] — from default",
            "server.allow_remote = false — from default",
            "browser.allow_attach = false — from default",
            "tools.disabled = [] — from default",
            "locks.keys = [] — from default",
        ]
    );
}

#[test]
fn the_example_file_loads_as_managed_settings() {
    let machine = Machine::new();
    let text = include_str!("../examples/settings.toml");
    let file = machine.managed(text);
    let policy = machine.load();
    assert_eq!(policy.notices(), &[] as &[Notice]);
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert_eq!(
        setting(&policy, "sandbox.allowed_backends"),
        vec![EffectiveSetting {
            key: "sandbox.allowed_backends".into(),
            value: "[\"jail\", \"vm\"]".into(),
            origin: origin(Layer::Managed, &file, line_of("allowed_backends =")),
        }]
    );
    assert_eq!(
        setting(&policy, "permissions.deny")
            .iter()
            .map(|s| s.value.as_str())
            .collect::<Vec<_>>(),
        vec!["\"Bash(rm -rf *)\"", "\"WebFetch(domain:*.example.com)\""]
    );
    assert_eq!(
        setting(&policy, "permissions.deny")[0].to_string(),
        format!(
            "permissions.deny = \"Bash(rm -rf *)\" — from managed ({}:{})",
            file.display(),
            line_of("deny = [\"Bash")
        )
    );
    assert_eq!(bash(&policy, "git status"), Effect::Allow);
    assert_eq!(bash(&policy, "rm -rf /mnt/x"), Effect::Deny);
    assert!(policy.tool_disabled("task").is_some());
    assert!(policy.backend_allowed("host").is_err());
    assert!(
        policy
            .provider_allowed("anthropic", "claude-sonnet-4")
            .is_ok()
    );
    assert!(policy.marketplace_allowed("github:evil/x").is_err());
    let github = policy.credential_for("api.github.com").unwrap();
    assert_eq!(
        (
            github.header.as_str(),
            github.value_template.as_str(),
            github.secret_ref.as_str()
        ),
        ("Authorization", "Bearer {secret}", "keyring:github-token")
    );
    assert_eq!(github.origin.line, Some(line_of("[[credential]]")));
    assert_eq!(policy.credentials().len(), 2);
    assert_eq!(policy.credentials()[1].secret_ref, "env:WIKI_KEY");
}

#[test]
fn the_highest_layer_that_sets_a_value_wins() {
    let machine = Machine::new();
    let user = machine.user("[sandbox]\nallowed_backends = [\"host\"]\n");
    let policy = machine.load();
    assert_eq!(
        setting(&policy, "sandbox.allowed_backends")[0].origin,
        origin(Layer::User, &user, 2)
    );
    assert!(policy.backend_allowed("host").is_ok());
    assert!(policy.backend_allowed("jail").is_err());

    let (project_file, project) =
        machine.project("Reports", "[sandbox]\nallowed_backends = [\"vm\"]\n");
    let policy = machine.load_with(
        &CommandLineSettings::default(),
        std::slice::from_ref(&project),
    );
    assert_eq!(
        setting(&policy, "sandbox.allowed_backends")[0].origin,
        origin(Layer::Project, &project_file, 2)
    );

    let cli = CommandLineSettings {
        settings: vec!["sandbox.allowed_backends=[\"remote\"]".into()],
        ..Default::default()
    };
    let policy = machine.load_with(&cli, std::slice::from_ref(&project));
    assert_eq!(
        setting(&policy, "sandbox.allowed_backends")[0].to_string(),
        "sandbox.allowed_backends = [\"remote\"] — from command line (setting 1)"
    );

    let managed = machine.managed("\n[sandbox]\nallowed_backends = [\"jail\"]\n");
    let policy = machine.load_with(&cli, &[project]);
    assert_eq!(
        setting(&policy, "sandbox.allowed_backends")[0].origin,
        origin(Layer::Managed, &managed, 3)
    );
    assert!(policy.backend_allowed("jail").is_ok());
    assert!(policy.backend_allowed("remote").is_err());
    // Not locked, so no notice: being outranked is normal.
    assert_eq!(policy.notices(), &[] as &[Notice]);
}

#[test]
fn a_deny_in_any_layer_beats_an_allow_in_any_layer() {
    let machine = Machine::new();
    machine.managed("[permissions]\nallow = [\"Bash(rm *)\"]\n");
    let user = machine.user("[permissions]\ndeny = [\"Bash(rm -rf *)\"]\n");
    let policy = machine.load();
    let decision = policy.check_tool("bash", &json!({"command": "rm -rf /mnt/x"}));
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(
        decision.rule,
        Some(RuleOrigin {
            text: "Bash(rm -rf *)".into(),
            layer: Layer::User,
            file: Some(user),
            line: Some(2),
        })
    );
    assert_eq!(
        decision.reason,
        "Cubicle will not run the command `rm -rf /mnt/x`: your settings forbids it with the \
         rule Bash(rm -rf *)."
    );
    // The managed allow still applies where no deny matches.
    assert_eq!(bash(&policy, "rm x"), Effect::Allow);
}

#[test]
fn rules_accumulate_and_report_the_highest_layer_first() {
    let machine = Machine::new();
    let managed = machine.managed("[permissions]\ndeny = [\"Bash(rm *)\"]\n");
    machine.user("[permissions]\ndeny = [\"Bash(rm *)\", \"Bash(curl *)\"]\n");
    let policy = machine.load();
    let decision = policy.check_tool("bash", &json!({"command": "rm x"}));
    assert_eq!(decision.rule.unwrap().file, Some(managed));
    assert_eq!(bash(&policy, "curl x"), Effect::Deny);
    assert_eq!(setting(&policy, "permissions.deny").len(), 3);
}

#[test]
fn a_locked_key_cannot_be_changed_below_managed() {
    let machine = Machine::new();
    machine.managed(
        "[sandbox]\nallowed_backends = [\"jail\"]\n[locks]\nkeys = [\"sandbox.allowed_backends\", \"permissions.allow\", \"tools\"]\n",
    );
    let user = machine.user(
        "[sandbox]\nallowed_backends = [\"host\"]\n[permissions]\nallow = [\"Bash\"]\ndeny = [\"Bash(rm *)\"]\n[tools]\ndisabled = [\"bash\"]\n",
    );
    let policy = machine.load();
    assert!(policy.backend_allowed("host").is_err());
    let notice = |line: usize, key: &str| Notice {
        layer: Layer::User,
        file: Some(user.clone()),
        line: Some(line),
        key: Some(key.into()),
        message: "ignored: locked by your administrator".into(),
    };
    let mut notices = policy.notices().to_vec();
    notices.sort_by_key(|n| n.line);
    assert_eq!(
        notices,
        vec![
            notice(2, "sandbox.allowed_backends"),
            notice(4, "permissions.allow"),
            notice(7, "tools.disabled"),
        ]
    );
    assert_eq!(
        notices[0].to_string(),
        format!(
            "{}:2: sandbox.allowed_backends: ignored: locked by your administrator",
            user.display()
        )
    );
    // The unlocked deny still counts; the locked allow does not.
    assert_eq!(bash(&policy, "rm x"), Effect::Deny);
    assert_eq!(
        policy.check_tool("bash", &json!({"command": "ls"})).rule,
        None
    );
    assert!(policy.tool_disabled("bash").is_none());
}

#[test]
fn locking_a_section_locks_every_key_in_it_even_unset_ones() {
    let machine = Machine::new();
    machine.managed("[locks]\nkeys = [\"network\"]\n");
    machine.user("[network]\nallow = [\"example.com\"]\ndeny = [\"x.org\"]\n");
    let policy = machine.load();
    assert_eq!(policy.network_rules().allow, vec![]);
    assert_eq!(policy.network_rules().deny, vec![]);
    assert_eq!(policy.notices().len(), 2);
    assert_eq!(
        policy.network_rules().check("example.com").effect,
        Effect::Ask
    );
}

#[test]
fn managed_only_network_ignores_lower_allows_but_keeps_their_denies() {
    let machine = Machine::new();
    let managed = machine.managed("[network]\nmanaged_only = true\nallow = [\"*.corp.example\"]\n");
    let user =
        machine.user("[network]\nallow = [\"pastebin.com\"]\ndeny = [\"evil.corp.example\"]\n");
    let policy = machine.load();
    assert!(policy.network_managed_only());
    assert_eq!(
        policy.notices(),
        &[Notice {
            layer: Layer::User,
            file: Some(user.clone()),
            line: Some(2),
            key: Some("network.allow".into()),
            message: "ignored: your administrator allows only their own network rules".into(),
        }]
    );
    let rules = policy.network_rules();
    assert_eq!(rules.allow.len(), 1);
    assert_eq!(
        rules.allow[0].origin,
        origin(Layer::Managed, &managed, 3).unwrap()
    );
    assert_eq!(rules.check("pastebin.com").effect, Effect::Ask);
    assert_eq!(rules.check("wiki.corp.example").effect, Effect::Allow);
    let denied = rules.check("evil.corp.example");
    assert_eq!(denied.effect, Effect::Deny);
    assert_eq!(
        denied.reason,
        "Cubicle will not connect to evil.corp.example: your settings blocks evil.corp.example."
    );
    assert_eq!(
        denied.rule.unwrap().text,
        "network.deny = \"evil.corp.example\""
    );
}

#[test]
fn managed_only_keys_in_lower_layers_are_ignored_with_a_notice() {
    let machine = Machine::new();
    let user = machine.user("[network]\nmanaged_only = true\n[locks]\nkeys = [\"network\"]\n");
    let policy = machine.load();
    assert!(!policy.network_managed_only());
    let messages: Vec<String> = policy.notices().iter().map(|n| n.to_string()).collect();
    assert_eq!(
        messages,
        vec![
            format!(
                "{}:2: network.managed_only: ignored: only your administrator's settings can set this",
                user.display()
            ),
            format!(
                "{}:4: locks.keys: ignored: only your administrator's settings can set this",
                user.display()
            ),
        ]
    );
}

#[test]
fn untrusted_project_folders_are_not_loaded() {
    let machine = Machine::new();
    // Malformed too: an untrusted file must not even be able to fail the load.
    let (file, mut folder) = machine.project("Downloads", "[permissions]\nallow = [\"Bash\"\n");
    folder.trusted = false;
    let empty = ProjectFolder {
        path: machine.path("grants/Empty"),
        trusted: false,
    };
    let policy = machine.load_with(&CommandLineSettings::default(), &[folder, empty]);
    assert_eq!(
        policy.notices(),
        &[Notice {
            layer: Layer::Project,
            file: Some(file.clone()),
            line: None,
            key: None,
            message: "not loaded: folder not trusted".into(),
        }]
    );
    assert_eq!(
        policy.notices()[0].to_string(),
        format!("{}: not loaded: folder not trusted", file.display())
    );
    assert_eq!(policy.sources(), &[]);
}

#[test]
fn trusted_project_folders_load_in_order() {
    let machine = Machine::new();
    let (_, a) = machine.project("A", "[models]\nallowed_models = [\"a-*\"]\n");
    let (b_file, b) = machine.project("B", "[models]\nallowed_models = [\"b-*\"]\n");
    let policy = machine.load_with(&CommandLineSettings::default(), &[a, b]);
    assert_eq!(
        setting(&policy, "models.allowed_models")[0].origin,
        origin(Layer::Project, &b_file, 2)
    );
    assert_eq!(policy.sources().len(), 2);
}

#[test]
fn managed_drop_ins_merge_in_name_order() {
    let machine = Machine::new();
    machine.managed("[models]\nallowed_models = [\"base\"]\n[permissions]\ndeny = [\"Bash(a)\"]\n");
    machine.write(
        "etc/managed.d/20-b.toml",
        "[models]\nallowed_models = [\"twenty\"]\n",
    );
    let ten = machine.write(
        "etc/managed.d/10-a.toml",
        "[models]\nallowed_models = [\"ten\"]\n[permissions]\ndeny = [\"Bash(b)\"]\n",
    );
    let twenty = machine.path("etc/managed.d/20-b.toml");
    machine.write("etc/managed.d/30-c.toml.disabled", "garbage = [");
    machine.write("etc/managed.d/README", "not toml");
    let policy = machine.load();
    assert_eq!(
        setting(&policy, "models.allowed_models")[0].origin,
        origin(Layer::Managed, &twenty, 2)
    );
    assert_eq!(
        policy
            .sources()
            .iter()
            .map(|s| s.file.clone().unwrap())
            .collect::<Vec<_>>(),
        vec![machine.path("etc/managed.toml"), ten.clone(), twenty]
    );
    // Rules from every drop-in accumulate, later files first.
    let denies: Vec<Option<Origin>> = setting(&policy, "permissions.deny")
        .into_iter()
        .map(|s| s.origin)
        .collect();
    assert_eq!(
        denies,
        vec![
            origin(Layer::Managed, &ten, 4),
            origin(Layer::Managed, &machine.path("etc/managed.toml"), 4)
        ]
    );
}

#[test]
fn a_malformed_file_fails_the_whole_load_naming_file_line_and_key() {
    let machine = Machine::new();
    machine.managed("[permissions]\ndeny = [\"Bash(rm *)\"]\n");
    let user = machine.user(
        "# my settings\n[permissions]\nallow = [\n  \"Read\",\n  \"Bash(ls)\",\n\n  \"Bash(git *\",\n]\n",
    );
    let err = machine.load_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:7: permissions.allow[2]: \"Bash(git *\" is not a valid rule: missing \")\"",
            user.display()
        )
    );
    match err {
        PolicyError::Invalid {
            file, line, key, ..
        } => assert_eq!(
            (file, line, key.as_str()),
            (user, 7, "permissions.allow[2]")
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_keys_and_sections_are_errors() {
    let machine = Machine::new();
    let managed = machine.managed("[sandbox]\nallowed_backend = [\"jail\"]\n");
    assert_eq!(
        machine.load_err().to_string(),
        format!(
            "{}:2: sandbox.allowed_backend: unknown setting; [sandbox] has sandbox.allowed_backends",
            managed.display()
        )
    );
    machine.managed("[sandbox]\nallowed_backends = [\"jail\"]\n\n[netwrok]\nallow = []\n");
    assert!(machine.load_err().to_string().starts_with(&format!(
        "{}:4: netwrok: unknown section",
        managed.display()
    )));
}

#[test]
fn invalid_toml_is_an_error_with_a_line() {
    let machine = Machine::new();
    let user = machine.user("[permissions]\nallow = [\"Read\"]\nask = \n");
    let e = machine.load_err().to_string();
    assert!(
        e.starts_with(&format!("{}:3: not valid TOML", user.display())),
        "{e}"
    );
}

#[test]
fn an_unreadable_file_is_an_error() {
    let machine = Machine::new();
    // A folder where the file should be cannot be read as text.
    fs::create_dir_all(machine.path("home/settings.toml")).unwrap();
    assert!(matches!(machine.load_err(), PolicyError::Read { .. }));
    // Invalid UTF-8 is refused too.
    fs::remove_dir(machine.path("home/settings.toml")).unwrap();
    machine.write("home/settings.toml", "");
    fs::write(machine.path("home/settings.toml"), [0xff, 0xfe]).unwrap();
    assert!(matches!(machine.load_err(), PolicyError::Read { .. }));
}

#[test]
fn command_line_settings_and_rules_form_their_own_layer() {
    let machine = Machine::new();
    machine.user("[permissions]\nallow = [\"Bash(rm *)\"]\n");
    let cli = CommandLineSettings {
        settings: vec![
            "permissions.ask_before_changing_granted_files=false".into(),
            "models.allowed_models=claude-*".into(),
        ],
        allow: vec!["Bash(git *)".into()],
        ask: vec!["Bash(curl *)".into()],
        deny: vec!["Bash(rm *)".into()],
    };
    let policy = machine.load_with(&cli, &[]);
    assert!(!policy.asks_before_changing_granted_files());
    assert_eq!(bash(&policy, "rm x"), Effect::Deny);
    assert_eq!(bash(&policy, "curl x"), Effect::Ask);
    let decision = policy.check_tool("bash", &json!({"command": "git log"}));
    assert_eq!(
        decision.rule.unwrap().origin().to_string(),
        "command line (setting 3)"
    );
    assert!(
        machine
            .load_with(&cli, &[])
            .provider_allowed("x", "gpt-5")
            .is_err()
    );
}

#[test]
fn bad_command_line_settings_name_their_position() {
    let machine = Machine::new();
    let cli = CommandLineSettings {
        settings: vec![
            "sandbox.allowed_backends=[\"jail\"]".into(),
            "sandbox.bogus=1".into(),
        ],
        ..Default::default()
    };
    let err = Policy::load(&machine.paths(), &cli, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "<command line>:2: sandbox.bogus: unknown setting; [sandbox] has sandbox.allowed_backends"
    );
    let cli = CommandLineSettings {
        deny: vec!["Bash(rm".into()],
        ..Default::default()
    };
    let err = Policy::load(&machine.paths(), &cli, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "<command line>:1: permissions.deny[0]: \"Bash(rm\" is not a valid rule: missing \")\""
    );
}

#[test]
fn the_digest_changes_when_a_file_changes() {
    let machine = Machine::new();
    machine.user("[tools]\ndisabled = [\"task\"]\n");
    let first = machine.load().digest();
    assert_eq!(first, machine.load().digest());
    machine.user("[tools]\ndisabled = [\"grep\"]\n");
    assert_ne!(first, machine.load().digest());
    assert_eq!(first.len(), 64);
}

#[test]
fn standard_paths_are_the_documented_ones() {
    let paths = PolicyPaths::standard(Some(Path::new("/home/u/.config")));
    assert_eq!(
        paths,
        PolicyPaths {
            managed_file: "/etc/cubicle/managed.toml".into(),
            managed_dir: "/etc/cubicle/managed.d".into(),
            user_file: Some("/home/u/.config/cubicle/settings.toml".into()),
        }
    );
}

const TOKEN_CREDENTIAL: &str = "[[credential]]\ndomain = \"api.example.com\"\nheader = \"Authorization\"\nsecret = \"keyring:example-token\"\nvalue = \"Bearer {secret}\"\n";

fn credential_summary(
    policy: &Policy,
) -> Vec<(String, String, String, String, Layer, Option<usize>)> {
    policy
        .credentials()
        .iter()
        .map(|c| {
            (
                c.domain.to_string(),
                c.header.clone(),
                c.value_template.clone(),
                c.secret_ref.clone(),
                c.origin.layer,
                c.origin.line,
            )
        })
        .collect()
}

#[test]
fn credentials_accumulate_highest_layer_first_with_their_origins() {
    let machine = Machine::new();
    let managed = machine.managed(&format!(
        "[network]\nallow = [\"api.example.com\"]\n\n{TOKEN_CREDENTIAL}"
    ));
    let user = machine.user(
        "[[credential]]\ndomain = \"*.corp.example\"\nheader = \"X-Api-Key\"\nsecret = \"env:CORP_KEY\"\n\n[[credential]]\ndomain = \"api.example.com\"\nheader = \"Authorization\"\nsecret = \"env:MINE\"\n",
    );
    let cli = CommandLineSettings {
        settings: vec![
            "credential=[{ domain = \"cli.example\", header = \"Authorization\", secret = \"env:CLI\" }]".into(),
        ],
        ..Default::default()
    };
    let policy = machine.load_with(&cli, &[]);
    assert_eq!(policy.notices(), &[] as &[Notice]);
    let row = |d: &str, h: &str, v: &str, s: &str, l: Layer, line: usize| {
        (
            d.to_owned(),
            h.to_owned(),
            v.to_owned(),
            s.to_owned(),
            l,
            Some(line),
        )
    };
    assert_eq!(
        credential_summary(&policy),
        vec![
            row(
                "api.example.com",
                "Authorization",
                "Bearer {secret}",
                "keyring:example-token",
                Layer::Managed,
                4
            ),
            row(
                "cli.example",
                "Authorization",
                "{secret}",
                "env:CLI",
                Layer::CommandLine,
                1
            ),
            row(
                "*.corp.example",
                "X-Api-Key",
                "{secret}",
                "env:CORP_KEY",
                Layer::User,
                1
            ),
            row(
                "api.example.com",
                "Authorization",
                "{secret}",
                "env:MINE",
                Layer::User,
                6
            ),
        ]
    );
    let first = &policy.credentials()[0];
    assert_eq!(first.origin.file.as_deref(), Some(managed.as_path()));
    assert_eq!(
        first.origin.text,
        "credential = { domain = \"api.example.com\", header = \"Authorization\", \
         value = \"Bearer {secret}\", secret = \"keyring:example-token\" }"
    );
    assert_eq!(
        policy.credentials()[2].origin.file.as_deref(),
        Some(user.as_path())
    );
    // The highest layer's credential is the one used for a host.
    assert_eq!(
        policy
            .credential_for("API.example.com.")
            .unwrap()
            .secret_ref,
        "keyring:example-token"
    );
    assert_eq!(
        policy.credential_for("a.corp.example").unwrap().header,
        "X-Api-Key"
    );
    assert!(policy.credential_for("corp.example").is_none());

    // `policy show --effective` names the reference, in the same order.
    let shown: Vec<String> = setting(&policy, "credential")
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(shown.len(), 4);
    assert_eq!(
        shown[0],
        format!(
            "credential = {{ domain = \"api.example.com\", header = \"Authorization\", \
             value = \"Bearer {{secret}}\", secret = \"keyring:example-token\" }} — from managed ({}:4)",
            managed.display()
        )
    );
    assert_eq!(
        shown[1],
        "credential = { domain = \"cli.example\", header = \"Authorization\", value = \"{secret}\", \
         secret = \"env:CLI\" } — from command line (setting 1)"
    );
}

#[test]
fn a_credential_lock_ignores_lower_layers_credentials_with_a_notice() {
    for lock in ["credential", "credentials"] {
        let machine = Machine::new();
        machine.managed(&format!(
            "[locks]\nkeys = [\"{lock}\"]\n\n{TOKEN_CREDENTIAL}"
        ));
        let user = machine.user(&format!(
            "[permissions]\nallow = [\"Read\"]\n{TOKEN_CREDENTIAL}\n[[credential]]\ndomain = \"b.example\"\nheader = \"X-Key\"\nsecret = \"env:B\"\n"
        ));
        let policy = machine.load();
        assert_eq!(
            credential_summary(&policy),
            vec![(
                "api.example.com".into(),
                "Authorization".into(),
                "Bearer {secret}".into(),
                "keyring:example-token".into(),
                Layer::Managed,
                Some(4)
            )],
            "{lock}"
        );
        let messages: Vec<String> = policy.notices().iter().map(|n| n.to_string()).collect();
        assert_eq!(
            messages,
            vec![
                format!(
                    "{}:3: credential: ignored: locked by your administrator",
                    user.display()
                ),
                format!(
                    "{}:9: credential: ignored: locked by your administrator",
                    user.display()
                ),
            ],
            "{lock}"
        );
    }
}

#[test]
fn a_lock_on_credentials_in_a_lower_layer_is_itself_ignored() {
    let machine = Machine::new();
    machine.managed(TOKEN_CREDENTIAL);
    machine.user(&format!(
        "[locks]\nkeys = [\"credentials\"]\n{TOKEN_CREDENTIAL}"
    ));
    let policy = machine.load();
    assert_eq!(policy.credentials().len(), 2);
    assert_eq!(policy.notices().len(), 1);
    assert!(
        policy.notices()[0]
            .to_string()
            .contains("locks.keys: ignored")
    );
}

#[test]
fn project_settings_cannot_add_credentials() {
    let machine = Machine::new();
    machine.user(TOKEN_CREDENTIAL);
    let (file, project) = machine.project(
        "Shared",
        "[[credential]]\ndomain = \"collector.evil.example\"\nheader = \"Authorization\"\nsecret = \"keyring:example-token\"\n",
    );
    let policy = machine.load_with(&CommandLineSettings::default(), &[project]);
    assert_eq!(policy.credentials().len(), 1);
    assert_eq!(policy.credentials()[0].origin.layer, Layer::User);
    assert!(policy.credential_for("collector.evil.example").is_none());
    assert_eq!(
        policy.notices(),
        &[Notice {
            layer: Layer::Project,
            file: Some(file),
            line: Some(1),
            key: Some("credential".into()),
            message: "ignored: credentials are read only from your own, the command line's or \
                      your administrator's settings, so that files in a folder cannot send your \
                      secrets elsewhere"
                .into(),
        }]
    );
}

#[test]
fn a_malformed_credential_fails_the_whole_load() {
    let machine = Machine::new();
    let user = machine.user(
        "[permissions]\nallow = [\"Read\"]\n\n[[credential]]\ndomain = \"api.example.com\"\nheader = \"Authorization\"\nsecret = \"ghp_pasted_token_value\"\n",
    );
    let e = machine.load_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}:7: credential[0].secret: must say where the secret lives",
            user.display()
        )),
        "{e}"
    );
    assert!(!e.contains("ghp_pasted_token_value"), "{e}");
}

#[test]
fn a_project_cannot_open_the_server_to_the_network() {
    let machine = Machine::new();
    machine.user("[server]\nallow_remote = false\n");
    let (_, project) = machine.project("Shared", "[server]\nallow_remote = true\n");
    let policy = machine.load_with(
        &CommandLineSettings::default(),
        std::slice::from_ref(&project),
    );
    let remote = setting(&policy, "server.allow_remote");
    assert_eq!(remote.len(), 1);
    assert!(
        remote[0]
            .to_string()
            .starts_with("server.allow_remote = false"),
        "{}",
        remote[0]
    );
    assert!(
        policy
            .notices()
            .iter()
            .any(|n| n.key.as_deref() == Some("server.allow_remote")
                && n.message.contains("open the server to the network"))
    );
}

#[test]
fn a_project_cannot_let_the_agent_use_the_persons_browser() {
    let machine = Machine::new();
    let (_, project) = machine.project("Shared", "[browser]\nallow_attach = true\n");
    let policy = machine.load_with(
        &CommandLineSettings::default(),
        std::slice::from_ref(&project),
    );
    let attach = setting(&policy, "browser.allow_attach");
    assert_eq!(attach.len(), 1);
    assert!(
        attach[0]
            .to_string()
            .starts_with("browser.allow_attach = false"),
        "{}",
        attach[0]
    );
    assert!(
        policy
            .notices()
            .iter()
            .any(|n| n.key.as_deref() == Some("browser.allow_attach")
                && n.message.contains("use your own browser"))
    );
}

#[test]
fn the_person_can_allow_attaching_to_their_browser() {
    let machine = Machine::new();
    machine.user("[browser]\nallow_attach = true\n");
    let policy = machine.load();
    let attach = setting(&policy, "browser.allow_attach");
    assert_eq!(attach.len(), 1);
    assert!(
        attach[0]
            .to_string()
            .starts_with("browser.allow_attach = true"),
        "{}",
        attach[0]
    );
}
