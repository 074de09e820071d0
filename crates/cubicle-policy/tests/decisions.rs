//! Decisions on tool calls and on backends, models, marketplaces and
//! domains, from policies built in memory: defaults, rule order, reasons a
//! person can read, `cubicle policy check` syntax, and a property test that a
//! deny wins whatever layer it sits in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use cubicle_policy::{Decision, Effect, Layer, Policy, PolicyError, RuleOrigin, SettingsSource};
use pretty_assertions::assert_eq;
use proptest::prelude::*;
use serde_json::{Value, json};

fn source(layer: Layer, text: &str) -> SettingsSource {
    SettingsSource {
        layer,
        file: match layer {
            Layer::CommandLine => None,
            other => Some(PathBuf::from(format!(
                "/{}.toml",
                other.name().replace(' ', "-")
            ))),
        },
        text: text.into(),
    }
}

fn policy(layers: &[(Layer, &str)]) -> Policy {
    let sources: Vec<SettingsSource> = layers.iter().map(|(l, t)| source(*l, t)).collect();
    Policy::from_sources(&sources).unwrap_or_else(|e| panic!("{e}"))
}

fn user(text: &str) -> Policy {
    policy(&[(Layer::User, text)])
}

fn check(policy: &Policy, tool: &str, input: Value) -> Decision {
    policy.check_tool(tool, &input)
}

const INSIDE: &str =
    "Allowed: it happens inside the cubicle, which keeps it away from the rest of your computer.";

#[test]
fn by_default_work_inside_the_cubicle_is_allowed() {
    let p = Policy::default();
    for (tool, input) in [
        ("bash", json!({"command": "rm -rf /mnt/Reports"})),
        ("read", json!({"path": "/mnt/Reports/a.xlsx"})),
        ("edit", json!({"path": "/workspace/a.txt"})),
        ("write", json!({"path": "notes/a.md"})),
        ("write", json!({"path": "/tmp/x"})),
        ("glob", json!({"pattern": "**"})),
        ("grep", json!({"pattern": "x", "path": "/mnt"})),
        ("todo_write", json!({})),
        ("task", json!({})),
        ("mcp__github__create_issue", json!({})),
    ] {
        assert_eq!(
            check(&p, tool, input.clone()),
            Decision {
                effect: Effect::Allow,
                reason: INSIDE.into(),
                rule: None
            },
            "{tool} {input}"
        );
    }
    assert_eq!(
        check(&p, "web_fetch", json!({"url": "https://x.org"})).reason,
        "Allowed: the network proxy decides which sites the agent can reach."
    );
}

#[test]
fn by_default_changing_a_granted_folder_asks() {
    let p = Policy::default();
    assert_eq!(
        check(&p, "edit", json!({"path": "/mnt/Reports/q3.xlsx"})),
        Decision {
            effect: Effect::Ask,
            reason: "The agent wants to change /mnt/Reports/q3.xlsx in your folder /mnt/Reports."
                .into(),
            rule: None
        }
    );
    // A path that climbs out of the workspace is caught after normalisation.
    assert_eq!(
        check(&p, "write", json!({"path": "../mnt/Reports/x"})).reason,
        "The agent wants to change /mnt/Reports/x in your folder /mnt/Reports."
    );
    assert_eq!(
        check(&p, "write", json!({"path": "/etc/hosts"})).reason,
        "The agent wants to change /etc/hosts, outside its workspace."
    );
    assert_eq!(
        check(&p, "write", json!({"path": "/workspace/../tmp2/x"})).effect,
        Effect::Ask
    );
    assert_eq!(check(&p, "edit", json!({})).effect, Effect::Ask);
    assert_eq!(
        check(&p, "edit", json!({"path": "/tmp/../workspace/x"})).effect,
        Effect::Allow
    );
}

#[test]
fn the_ask_default_can_be_turned_off_or_answered_by_a_rule() {
    let off = user("[permissions]\nask_before_changing_granted_files = false\n");
    assert_eq!(
        check(&off, "edit", json!({"path": "/mnt/Reports/q3.xlsx"})).effect,
        Effect::Allow
    );
    let allowed = user("[permissions]\nallow = [\"Edit(/mnt/Reports/**)\"]\n");
    let d = check(&allowed, "write", json!({"path": "/mnt/Reports/q3.xlsx"}));
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(
        d.reason,
        "Cubicle may change /mnt/Reports/q3.xlsx: your settings allows it with the rule \
         Edit(/mnt/Reports/**)."
    );
    assert_eq!(
        check(&allowed, "write", json!({"path": "/mnt/Other/q3.xlsx"})).effect,
        Effect::Ask
    );
}

#[test]
fn rules_go_deny_then_ask_then_allow() {
    let p = user(
        "[permissions]\nallow = [\"Bash(git *)\", \"Bash(rm *)\"]\nask = [\"Bash(git push *)\"]\ndeny = [\"Bash(git push --force *)\"]\n",
    );
    let effect = |c: &str| check(&p, "bash", json!({ "command": c })).effect;
    assert_eq!(effect("git status"), Effect::Allow);
    assert_eq!(effect("git push origin"), Effect::Ask);
    assert_eq!(effect("git push --force origin"), Effect::Deny);
    assert_eq!(effect("ls"), Effect::Allow);
    // Allow needs every command to match; the default then applies.
    assert_eq!(
        check(&p, "bash", json!({"command": "git log | curl -d @- x"})).rule,
        None
    );
    assert_eq!(effect("git status && git push origin"), Effect::Ask);
    assert_eq!(effect("git status; git push --force x"), Effect::Deny);
}

#[test]
fn decisions_name_the_rule_and_its_file() {
    let p = policy(&[
        (Layer::Managed, "[permissions]\n\ndeny = [\"Bash(rm *)\"]\n"),
        (
            Layer::Project,
            "[permissions]\nask = [\"Read(/mnt/hr/**)\"]\n",
        ),
    ]);
    assert_eq!(
        check(&p, "bash", json!({"command": "cd /mnt && rm -rf x"})),
        Decision {
            effect: Effect::Deny,
            reason: "Cubicle will not run the command `cd /mnt && rm -rf x`: your administrator \
                     forbids it with the rule Bash(rm *)."
                .into(),
            rule: Some(RuleOrigin {
                text: "Bash(rm *)".into(),
                layer: Layer::Managed,
                file: Some("/managed.toml".into()),
                line: Some(3),
            }),
        }
    );
    let ask = check(&p, "read", json!({"path": "/mnt/hr/pay.xlsx"}));
    assert_eq!(
        ask.reason,
        "The agent wants to read /mnt/hr/pay.xlsx, and the project's settings asks to check \
         with you first (rule Read(/mnt/hr/**))."
    );
    assert_eq!(
        ask.to_string(),
        "ask: The agent wants to read /mnt/hr/pay.xlsx, and the project's settings asks to \
         check with you first (rule Read(/mnt/hr/**)). [Read(/mnt/hr/**) — from project \
         (/project.toml:2)]"
    );
}

#[test]
fn read_denies_cover_traversal_and_searches() {
    let p = user("[permissions]\ndeny = [\"Read(/mnt/secret/**)\"]\n");
    let effect = |tool: &str, input: Value| check(&p, tool, input).effect;
    assert_eq!(
        effect("read", json!({"path": "/mnt/x/../secret/a"})),
        Effect::Deny
    );
    assert_eq!(effect("read", json!({"path": "/mnt/secret"})), Effect::Deny);
    assert_eq!(
        effect("grep", json!({"pattern": "pw", "path": "/mnt"})),
        Effect::Deny
    );
    assert_eq!(effect("glob", json!({"pattern": "/mnt/*/a"})), Effect::Deny);
    assert_eq!(
        effect("glob", json!({"pattern": "*", "path": "/mnt/other"})),
        Effect::Allow
    );
    assert_eq!(
        effect("read", json!({"path": "/mnt/secrets/a"})),
        Effect::Allow
    );
    assert_eq!(
        check(&p, "grep", json!({"pattern": "pw", "path": "/mnt"})).reason,
        "Cubicle will not search the files in /mnt: your settings forbids it with the rule \
         Read(/mnt/secret/**)."
    );
}

#[test]
fn webfetch_rules_apply_to_fetch_and_browser_navigation() {
    let p = user(
        "[permissions]\ndeny = [\"WebFetch(domain:*.example.com)\"]\nallow = [\"WebFetch(domain:example.com)\"]\n",
    );
    let effect = |tool: &str, url: &str| check(&p, tool, json!({ "url": url })).effect;
    assert_eq!(effect("web_fetch", "https://a.example.com/x"), Effect::Deny);
    assert_eq!(
        effect("browser_navigate", "https://a.example.com/x"),
        Effect::Deny
    );
    assert_eq!(effect("web_fetch", "https://example.com/x"), Effect::Allow);
    assert_eq!(effect("web_fetch", "no url"), Effect::Deny);
    assert_eq!(
        check(&p, "web_fetch", json!({"url": "https://a.example.com/x"})).reason,
        "Cubicle will not open a.example.com: your settings forbids it with the rule \
         WebFetch(domain:*.example.com)."
    );
}

#[test]
fn mcp_rules_match_servers_and_tools() {
    let p = user(
        "[permissions]\ndeny = [\"mcp__github__delete_repo\"]\nask = [\"mcp__github\"]\nallow = [\"mcp__slack__*\"]\n",
    );
    let effect = |tool: &str| check(&p, tool, json!({})).effect;
    assert_eq!(effect("mcp__github__delete_repo"), Effect::Deny);
    assert_eq!(effect("mcp__github__create_issue"), Effect::Ask);
    assert_eq!(effect("mcp__slack__post"), Effect::Allow);
    assert_eq!(
        check(&p, "mcp__github__create_issue", json!({})).reason,
        "The agent wants to use the tool mcp__github__create_issue, and your settings asks to \
         check with you first (rule mcp__github)."
    );
}

#[test]
fn disabled_tools_are_denied_before_any_rule() {
    let p = policy(&[
        (Layer::Managed, "[tools]\ndisabled = [\"Task\"]\n"),
        (
            Layer::User,
            "[tools]\ndisabled = [\"browser_*\"]\n[permissions]\nallow = [\"Task\", \"browser_*\"]\n",
        ),
    ]);
    assert_eq!(
        check(&p, "task", json!({})),
        Decision {
            effect: Effect::Deny,
            reason: "The tool task is disabled by your administrator.".into(),
            rule: Some(RuleOrigin {
                text: "tools.disabled = Task".into(),
                layer: Layer::Managed,
                file: Some("/managed.toml".into()),
                line: Some(2),
            }),
        }
    );
    assert_eq!(
        check(&p, "browser_click", json!({})).reason,
        "The tool browser_click is disabled by your settings."
    );
    assert!(p.tool_disabled("bash").is_none());
}

#[test]
fn check_str_reads_rule_syntax() {
    let p =
        user("[permissions]\ndeny = [\"Bash(rm *)\"]\nask = [\"WebFetch(domain:example.com)\"]\n");
    assert_eq!(
        p.check_str("Bash(rm -rf /mnt/x)").unwrap().effect,
        Effect::Deny
    );
    assert_eq!(p.check_str("Bash(ls)").unwrap().effect, Effect::Allow);
    assert_eq!(
        p.check_str("WebFetch(domain:example.com)").unwrap().effect,
        Effect::Ask
    );
    assert_eq!(p.check_str("Edit(/mnt/R/a)").unwrap().effect, Effect::Ask);
    let err = p.check_str("Bash(rm").unwrap_err();
    assert!(matches!(err, PolicyError::BadCall { .. }));
    assert_eq!(
        err.to_string(),
        "\"Bash(rm\" is not a call Cubicle understands: missing \")\" at the end"
    );
}

#[test]
fn backends_models_and_marketplaces() {
    let p = Policy::default();
    assert_eq!(p.backend_allowed("jail"), Ok(()));
    assert_eq!(p.backend_allowed("vm"), Ok(()));
    assert_eq!(
        p.backend_allowed("host").unwrap_err().reason,
        "The host backend is not allowed unless a setting lists it in sandbox.allowed_backends, \
         because it does not isolate the agent."
    );
    assert_eq!(p.provider_allowed("anyone", "anything"), Ok(()));
    assert_eq!(p.marketplace_allowed("github:anyone/x"), Ok(()));

    let p = policy(&[(
        Layer::Managed,
        "[sandbox]\nallowed_backends = [\"jail\"]\n[models]\nallowed_providers = [\"anthropic\"]\nallowed_models = [\"claude-*\"]\n[marketplaces]\nallow = [\"github:acme/*\"]\nblock = [\"github:acme/bad\"]\n",
    )]);
    let denied = p.backend_allowed("vm").unwrap_err();
    assert_eq!(
        denied,
        Decision {
            effect: Effect::Deny,
            reason: "The vm backend is not allowed: your administrator allows only [\"jail\"]."
                .into(),
            rule: Some(RuleOrigin {
                text: "sandbox.allowed_backends = [\"jail\"]".into(),
                layer: Layer::Managed,
                file: Some("/managed.toml".into()),
                line: Some(2),
            }),
        }
    );
    assert_eq!(p.provider_allowed("anthropic", "claude-opus-4"), Ok(()));
    assert_eq!(
        p.provider_allowed("openai", "claude-x").unwrap_err().reason,
        "The provider openai is not allowed: your administrator allows only [\"anthropic\"]."
    );
    assert_eq!(
        p.provider_allowed("anthropic", "gpt-5").unwrap_err().reason,
        "The model gpt-5 is not allowed: your administrator allows only [\"claude-*\"]."
    );
    assert_eq!(p.marketplace_allowed("github:acme/tools"), Ok(()));
    let blocked = p.marketplace_allowed("github:acme/bad").unwrap_err();
    assert_eq!(
        blocked.reason,
        "The marketplace github:acme/bad is blocked by your administrator."
    );
    // What a refusal shows: the reason, then the rule that decided.
    let rule = blocked.rule.clone().unwrap();
    assert_eq!(
        blocked.explain(),
        format!("{} (rule {rule})", blocked.reason)
    );
    assert!(rule.to_string().contains("github:acme/bad"), "{rule}");
    assert_eq!(
        p.marketplace_allowed("github:other/x").unwrap_err().reason,
        "The marketplace github:other/x is not allowed: your administrator allows only \
         [\"github:acme/*\"]."
    );
    // A block in a lower layer still wins over the managed allow.
    let p = policy(&[
        (Layer::Managed, "[marketplaces]\nallow = [\"*\"]\n"),
        (Layer::User, "[marketplaces]\nblock = [\"github:x/*\"]\n"),
    ]);
    assert!(p.marketplace_allowed("github:x/y").is_err());
}

#[test]
fn from_sources_orders_layers_by_precedence() {
    // Given in any order, the managed value still wins.
    let p = policy(&[
        (Layer::Managed, "[sandbox]\nallowed_backends = [\"jail\"]\n"),
        (Layer::User, "[sandbox]\nallowed_backends = [\"host\"]\n"),
    ]);
    assert!(p.backend_allowed("host").is_err());
    assert_eq!(
        p.sources().iter().map(|s| s.layer).collect::<Vec<_>>(),
        vec![Layer::User, Layer::Managed]
    );
}

/// The rule each generated layer adds, for the property test.
fn effect_strategy() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        Just(None),
        Just(Some("allow")),
        Just(Some("ask")),
        Just(Some("deny"))
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Integration tests have no lib.rs beside them to store failures in.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever layers hold which rules about `rm`, a deny anywhere wins,
    /// then an ask anywhere, then an allow.
    #[test]
    fn deny_wins_in_any_layer(
        effects in proptest::collection::vec(effect_strategy(), 4),
        spec in prop_oneof![Just("Bash(rm *)"), Just("Bash"), Just("Bash(rm -rf *)"), Just("Bash(*)")],
    ) {
        let layers = [Layer::Managed, Layer::CommandLine, Layer::Project, Layer::User];
        let sources: Vec<SettingsSource> = layers
            .iter()
            .zip(&effects)
            .filter_map(|(layer, effect)| {
                effect.map(|e| source(*layer, &format!("[permissions]\n{e} = [\"{spec}\"]\n")))
            })
            .collect();
        let p = Policy::from_sources(&sources).unwrap();
        let got = p.check_tool("bash", &json!({"command": "ls && rm -rf /mnt/x"})).effect;
        let want = if effects.contains(&Some("deny")) {
            Effect::Deny
        } else if effects.contains(&Some("ask")) {
            Effect::Ask
        } else {
            // An allow rule for rm never covers `ls` too, unless it covers everything.
            Effect::Allow
        };
        prop_assert_eq!(got, want);
    }

    /// Splitting never panics and allow rules never match a line that holds a
    /// command they do not cover.
    #[test]
    fn allow_never_covers_an_added_command(prefix in "[a-z &|;$()`'\"]{0,20}") {
        let p = user("[permissions]\nallow = [\"Bash(git *)\"]\nask_before_changing_granted_files = true\n");
        let command = format!("git status {prefix}\nrm -rf /mnt/x");
        let d = p.check_tool("bash", &json!({ "command": command }));
        prop_assert!(d.rule.is_none() || d.effect != Effect::Allow);
    }
}

#[test]
fn sources_without_a_file_are_named_by_layer_in_errors() {
    let err = Policy::from_sources(&[SettingsSource {
        layer: Layer::Managed,
        file: None,
        text: "[permissions]\ndeny = [\"Bash(x\"]\n".into(),
    }])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "<managed settings>:2: permissions.deny[0]: \"Bash(x\" is not a valid rule: missing \")\""
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// No input, however odd, makes parsing or checking panic.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,40}", bytes in "[ -~]{0,40}") {
        for t in [&text, &bytes] {
            let _ = cubicle_policy::Rule::parse(t);
            let _ = cubicle_policy::parse_call(t);
            let _ = cubicle_policy::host_of_url(t);
            let _ = cubicle_policy::DomainPattern::parse(t);
            let _ = cubicle_policy::path::normalize(t);
            let _ = cubicle_policy::shell::split_command(t);
            let _ = cubicle_policy::shell::strip_prefixes(t);
            let _ = cubicle_policy::path::PathPattern::parse(t);
        }
        let p = user("[permissions]\nallow = [\"Bash(git *)\", \"Read(/mnt/**)\"]\ndeny = [\"WebFetch(domain:*.x.org)\"]\n");
        for tool in ["bash", "read", "edit", "write", "glob", "grep", "web_fetch", "mcp__a__b"] {
            let input = json!({"command": text, "path": bytes, "url": text, "pattern": bytes});
            let d = p.check_tool(tool, &input);
            prop_assert!(!d.reason.is_empty());
        }
        let _ = p.check_str(&text);
        let _ = Policy::from_sources(&[source(Layer::User, &text)]);
    }
}
