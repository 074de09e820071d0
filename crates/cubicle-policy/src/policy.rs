//! The merged policy: every layer's settings combined, rules compiled, and
//! the questions the rest of Cubicle asks of it — may this tool call run, may
//! this backend, model or marketplace be used, which domains may be reached.

use std::collections::HashMap;
use std::fmt;

use globset::GlobMatcher;
use serde_json::Value;

use crate::call::{Call, Target};
use crate::domain::DomainPattern;
use crate::error::PolicyError;
use crate::origin::{Layer, Notice, Origin, RuleOrigin};
use crate::path::is_within;
use crate::rule::{Effect, Rule};
use crate::schema::{self, KeySpec, Merge, ValueKind};
use crate::settings_file::{Compiled, EntryValue, Item};
use crate::sources::{
    self, CommandLineSettings, LoadedSource, ParsedSource, PolicyPaths, ProjectFolder, RawSource,
    SettingsSource, sha256_hex,
};

/// The answer to "may this run?", with a reason a person can understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow, ask or deny.
    pub effect: Effect,
    /// One plain sentence saying why.
    pub reason: String,
    /// The rule or setting that decided; `None` when a default did.
    pub rule: Option<RuleOrigin>,
}

impl Decision {
    fn new(effect: Effect, reason: String, rule: Option<RuleOrigin>) -> Self {
        Decision {
            effect,
            reason,
            rule,
        }
    }
}

impl Decision {
    /// The reason and, when a rule decided, which: the sentence a refusal
    /// shows the person, e.g. `… is blocked (rule managed.toml: marketplaces.block)`.
    pub fn explain(&self) -> String {
        match &self.rule {
            Some(rule) => format!("{} (rule {rule})", self.reason),
            None => self.reason.clone(),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.effect, self.reason)?;
        if let Some(rule) = &self.rule {
            write!(f, " [{rule}]")?;
        }
        Ok(())
    }
}

/// One domain rule of the `[network]` lists, for the egress proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    /// The pattern, e.g. `*.wikipedia.org`.
    pub pattern: DomainPattern,
    /// Where it was set.
    pub origin: Origin,
}

/// The effective network rules: plain data the egress proxy consumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRules {
    /// Domains that may be reached, highest layer first.
    pub allow: Vec<DomainRule>,
    /// Domains that may never be reached, highest layer first; they win over `allow`.
    pub deny: Vec<DomainRule>,
}

impl NetworkRules {
    /// Decides a host: a deny rule refuses it, an allow rule lets it through,
    /// and with no rule the answer is Ask (the caller refuses when no one can be asked).
    pub fn check(&self, host: &str) -> Decision {
        let rule_origin = |rule: &DomainRule, key: &str| RuleOrigin {
            text: format!("{key} = \"{}\"", rule.pattern),
            layer: rule.origin.layer,
            file: rule.origin.file.clone(),
            line: rule.origin.line,
        };
        if let Some(rule) = self.deny.iter().find(|r| r.pattern.matches(host)) {
            return Decision::new(
                Effect::Deny,
                format!(
                    "Cubicle will not connect to {host}: {} blocks {}.",
                    rule.origin.layer.owner(),
                    rule.pattern
                ),
                Some(rule_origin(rule, "network.deny")),
            );
        }
        if let Some(rule) = self.allow.iter().find(|r| r.pattern.matches(host)) {
            return Decision::new(
                Effect::Allow,
                format!(
                    "Cubicle may connect to {host}: {} allows {}.",
                    rule.origin.layer.owner(),
                    rule.pattern
                ),
                Some(rule_origin(rule, "network.allow")),
            );
        }
        Decision::new(
            Effect::Ask,
            format!("The agent wants to connect to {host}, which no setting allows yet."),
            None,
        )
    }
}

/// One `[[credential]]` table, for the egress proxy: add `header` with the
/// host secret `secret_ref` to requests for `domain`. Holds where the secret
/// lives (`keyring:NAME` or `env:NAME`), never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSetting {
    /// The domain: a name or `*.name` (never `*`).
    pub domain: DomainPattern,
    /// The header name, e.g. `Authorization`.
    pub header: String,
    /// The header value with `{secret}` where the secret goes; `{secret}`
    /// when the file gives no `value`.
    pub value_template: String,
    /// Where the secret lives on the host: `keyring:NAME` or `env:NAME`.
    pub secret_ref: String,
    /// Where the table was set; `text` is the table as an inline TOML table.
    pub origin: RuleOrigin,
}

/// One line of `cubicle policy show --effective`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveSetting {
    /// The dotted key, e.g. `permissions.deny`.
    pub key: String,
    /// The value as TOML would write it (one entry per line for rule lists).
    pub value: String,
    /// Where it came from; `None` for the built-in default.
    pub origin: Option<Origin>,
}

impl fmt::Display for EffectiveSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {} — from ", self.key, self.value)?;
        match &self.origin {
            Some(origin) => write!(f, "{origin}"),
            None => f.write_str("default"),
        }
    }
}

/// A compiled permission rule with its origin.
#[derive(Debug, Clone)]
struct PolicyRule {
    rule: Rule,
    origin: RuleOrigin,
}

/// A name pattern (tool, model, marketplace) with its origin.
#[derive(Debug, Clone)]
struct NameRule {
    text: String,
    matcher: GlobMatcher,
    origin: Origin,
}

/// A list setting where the highest layer that sets it decides.
#[derive(Debug, Clone)]
struct ListSetting {
    items: Vec<NameRule>,
    origin: Origin,
}

impl ListSetting {
    fn find(&self, name: &str) -> Option<&NameRule> {
        self.items.iter().find(|item| item.matcher.is_match(name))
    }

    fn display(&self) -> String {
        list_display(self.items.iter().map(|i| i.text.as_str()))
    }
}

/// The merged, compiled policy. Cheap to share: every check takes `&self`.
#[derive(Debug, Clone)]
pub struct Policy {
    deny: Vec<PolicyRule>,
    ask: Vec<PolicyRule>,
    allow: Vec<PolicyRule>,
    ask_before_changing_granted_files: (bool, Option<Origin>),
    network: NetworkRules,
    network_managed_only: (bool, Option<Origin>),
    credentials: Vec<CredentialSetting>,
    allowed_backends: Option<ListSetting>,
    allowed_providers: Option<ListSetting>,
    allowed_models: Option<ListSetting>,
    marketplace_allow: Option<ListSetting>,
    marketplace_block: Vec<NameRule>,
    tools_disabled: Vec<NameRule>,
    effective: Vec<EffectiveSetting>,
    notices: Vec<Notice>,
    sources: Vec<LoadedSource>,
}

impl Default for Policy {
    /// The policy with no settings at all: the built-in defaults.
    fn default() -> Self {
        let mut notices = Vec::new();
        // No sources means nothing can be malformed.
        merge(Vec::new(), &mut notices)
    }
}

/// Backends allowed when no layer sets `sandbox.allowed_backends`: `host`
/// runs without isolation, so it must be named to be used.
const DEFAULT_BACKENDS: &[&str] = &["jail", "vm", "remote"];

impl Policy {
    /// Reads every layer's settings and merges them; any malformed file fails
    /// the whole load.
    pub fn load(
        paths: &PolicyPaths,
        command_line: &CommandLineSettings,
        projects: &[ProjectFolder],
    ) -> Result<Policy, PolicyError> {
        let mut notices = Vec::new();
        let texts = sources::read_all(paths, command_line, projects, &mut notices)?;
        let parsed = sources::parse_all(&texts)?;
        Ok(merge(parsed, &mut notices))
    }

    /// Merges settings already read, given lowest precedence first (user,
    /// projects, command line, managed files); within a layer a later source
    /// overrides an earlier one.
    pub fn from_sources(sources: &[SettingsSource]) -> Result<Policy, PolicyError> {
        let mut ordered = sources.to_vec();
        // A stable sort keeps the given order inside each layer.
        ordered.sort_by_key(|s| std::cmp::Reverse(s.layer));
        let raw: Vec<RawSource> = ordered.into_iter().map(RawSource::from).collect();
        let parsed = sources::parse_all(&raw)?;
        let mut notices = Vec::new();
        Ok(merge(parsed, &mut notices))
    }

    /// Decides one tool call: disabled tools are denied, then deny, ask and
    /// allow rules are tried in that order, then the defaults apply.
    pub fn check_tool(&self, tool: &str, input: &Value) -> Decision {
        if let Some(decision) = self.tool_disabled(tool) {
            return decision;
        }
        let call = Call::analyse(tool, input);
        for (effect, rules) in [
            (Effect::Deny, &self.deny),
            (Effect::Ask, &self.ask),
            (Effect::Allow, &self.allow),
        ] {
            if let Some(rule) = rules.iter().find(|r| r.rule.matches(&call, effect)) {
                return rule_decision(effect, &call, rule);
            }
        }
        self.default_decision(&call)
    }

    /// Decides a call written in rule syntax, as `cubicle policy check 'Bash(rm -rf /mnt/x)'` does.
    pub fn check_str(&self, call: &str) -> Result<Decision, PolicyError> {
        let (tool, input) =
            crate::call::parse_call(call).map_err(|message| PolicyError::BadCall {
                call: call.to_string(),
                message,
            })?;
        Ok(self.check_tool(&tool, &input))
    }

    /// The decision for a disabled tool, or `None` when the tool may be used.
    pub fn tool_disabled(&self, tool: &str) -> Option<Decision> {
        let entry = self
            .tools_disabled
            .iter()
            .find(|t| t.matcher.is_match(tool))?;
        let by = match entry.origin.layer {
            Layer::Managed => "by your administrator",
            Layer::CommandLine => "on the command line",
            Layer::Project => "by the project's settings",
            Layer::User => "by your settings",
        };
        Some(Decision::new(
            Effect::Deny,
            format!("The tool {tool} is disabled {by}."),
            Some(setting_rule("tools.disabled", &entry.text, &entry.origin)),
        ))
    }

    /// Whether a session may use the backend `name` (`jail`, `vm`, `remote`, `host`).
    pub fn backend_allowed(&self, name: &str) -> Result<(), Decision> {
        match &self.allowed_backends {
            Some(setting) => match setting.find(name) {
                Some(_) => Ok(()),
                None => Err(Decision::new(
                    Effect::Deny,
                    format!(
                        "The {name} backend is not allowed: {} allows only {}.",
                        setting.origin.layer.owner(),
                        setting.display()
                    ),
                    Some(setting_rule(
                        "sandbox.allowed_backends",
                        &setting.display(),
                        &setting.origin,
                    )),
                )),
            },
            None if DEFAULT_BACKENDS.contains(&name) => Ok(()),
            None => Err(Decision::new(
                Effect::Deny,
                format!(
                    "The {name} backend is not allowed unless a setting lists it in \
                     sandbox.allowed_backends, because it does not isolate the agent."
                ),
                None,
            )),
        }
    }

    /// Whether a session may call `model` from `provider`.
    pub fn provider_allowed(&self, provider: &str, model: &str) -> Result<(), Decision> {
        for (setting, key, what, name) in [
            (
                &self.allowed_providers,
                "models.allowed_providers",
                "provider",
                provider,
            ),
            (
                &self.allowed_models,
                "models.allowed_models",
                "model",
                model,
            ),
        ] {
            if let Some(setting) = setting
                && setting.find(name).is_none()
            {
                return Err(Decision::new(
                    Effect::Deny,
                    format!(
                        "The {what} {name} is not allowed: {} allows only {}.",
                        setting.origin.layer.owner(),
                        setting.display()
                    ),
                    Some(setting_rule(key, &setting.display(), &setting.origin)),
                ));
            }
        }
        Ok(())
    }

    /// Whether a plugin marketplace `source` (e.g. `github:acme/tools`) may be
    /// added: a block in any layer wins, then the allow list (if set) must name it.
    pub fn marketplace_allowed(&self, source: &str) -> Result<(), Decision> {
        if let Some(block) = self
            .marketplace_block
            .iter()
            .find(|b| b.matcher.is_match(source))
        {
            return Err(Decision::new(
                Effect::Deny,
                format!(
                    "The marketplace {source} is blocked by {}.",
                    block.origin.layer.owner()
                ),
                Some(setting_rule(
                    "marketplaces.block",
                    &block.text,
                    &block.origin,
                )),
            ));
        }
        if let Some(allow) = &self.marketplace_allow
            && allow.find(source).is_none()
        {
            return Err(Decision::new(
                Effect::Deny,
                format!(
                    "The marketplace {source} is not allowed: {} allows only {}.",
                    allow.origin.layer.owner(),
                    allow.display()
                ),
                Some(setting_rule(
                    "marketplaces.allow",
                    &allow.display(),
                    &allow.origin,
                )),
            ));
        }
        Ok(())
    }

    /// The effective domain rules, for the egress proxy.
    pub fn network_rules(&self) -> &NetworkRules {
        &self.network
    }

    /// Whether only the administrator's network rules apply.
    pub fn network_managed_only(&self) -> bool {
        self.network_managed_only.0
    }

    /// Every `[[credential]]` that applies, highest layer first (within a
    /// file, in file order). Project settings never contribute: files in a
    /// folder the agent can write must not be able to send the person's
    /// secrets to a site of their choosing.
    pub fn credentials(&self) -> &[CredentialSetting] {
        &self.credentials
    }

    /// The credential the egress proxy uses for `host`: the first that matches.
    pub fn credential_for(&self, host: &str) -> Option<&CredentialSetting> {
        self.credentials.iter().find(|c| c.domain.matches(host))
    }

    /// Whether edits outside `/workspace` and `/tmp` ask when no rule decides.
    pub fn asks_before_changing_granted_files(&self) -> bool {
        self.ask_before_changing_granted_files.0
    }

    /// Every setting's effective value and where it came from, in schema order.
    pub fn effective(&self) -> Vec<EffectiveSetting> {
        self.effective.clone()
    }

    /// What the person should know about loading: ignored settings, untrusted folders.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// The sources the policy was built from, lowest precedence first.
    pub fn sources(&self) -> &[LoadedSource] {
        &self.sources
    }

    /// Hex SHA-256 over the sources (layer, file and content hash of each), so
    /// the audit log can tell whether the policy changed between sessions.
    pub fn digest(&self) -> String {
        let mut text = String::new();
        for source in &self.sources {
            let file = source
                .file
                .as_ref()
                .map_or(String::new(), |f| f.display().to_string());
            text.push_str(&format!("{}\t{file}\t{}\n", source.layer, source.sha256));
        }
        sha256_hex(text.as_bytes())
    }

    fn default_decision(&self, call: &Call<'_>) -> Decision {
        if matches!(call.tool, "edit" | "write")
            && let Target::File { path } = &call.target
            && self.ask_before_changing_granted_files.0
        {
            let Some(path) = path else {
                return Decision::new(
                    Effect::Ask,
                    "The agent wants to change a file, but Cubicle cannot tell which one.".into(),
                    None,
                );
            };
            if !is_within(path, "/workspace") && !is_within(path, "/tmp") {
                let reason = match grant_folder(path) {
                    Some(folder) => {
                        format!("The agent wants to change {path} in your folder {folder}.")
                    }
                    None => format!("The agent wants to change {path}, outside its workspace."),
                };
                return Decision::new(Effect::Ask, reason, None);
            }
        }
        let reason = match &call.target {
            Target::Fetch { .. } => {
                "Allowed: the network proxy decides which sites the agent can reach.".to_string()
            }
            _ => "Allowed: it happens inside the cubicle, which keeps it away from the rest \
                  of your computer."
                .to_string(),
        };
        Decision::new(Effect::Allow, reason, None)
    }
}

/// `/mnt/<name>` for a path inside a granted folder.
fn grant_folder(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/mnt/")?;
    let name = rest.split('/').next().filter(|n| !n.is_empty())?;
    Some(format!("/mnt/{name}"))
}

fn rule_decision(effect: Effect, call: &Call<'_>, rule: &PolicyRule) -> Decision {
    let who = rule.origin.layer.owner();
    let text = rule.rule.text();
    let what = call.describe();
    let reason = match effect {
        Effect::Deny => format!("Cubicle will not {what}: {who} forbids it with the rule {text}."),
        Effect::Ask => format!(
            "The agent wants to {what}, and {who} asks to check with you first (rule {text})."
        ),
        Effect::Allow => format!("Cubicle may {what}: {who} allows it with the rule {text}."),
    };
    Decision::new(effect, reason, Some(rule.origin.clone()))
}

fn setting_rule(key: &str, value: &str, origin: &Origin) -> RuleOrigin {
    RuleOrigin {
        text: format!("{key} = {value}"),
        layer: origin.layer,
        file: origin.file.clone(),
        line: origin.line,
    }
}

fn list_display<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The values every key ends up with, before they are compiled into a `Policy`.
#[derive(Default)]
struct Resolved {
    /// `Merge::Highest` keys: the winning value.
    highest: HashMap<&'static str, (EntryValue, Origin)>,
    /// `Merge::Accumulate` keys: every item, highest precedence first.
    lists: HashMap<&'static str, Vec<(Item, Origin)>>,
}

/// Combines parsed sources (lowest precedence first) into a policy.
fn merge(parsed: Vec<ParsedSource>, notices: &mut Vec<Notice>) -> Policy {
    // Locks and managed_only come from the managed layer alone, and must be
    // known before any lower layer's entry is looked at.
    let mut locks: Vec<String> = Vec::new();
    let mut managed_only = false;
    for source in parsed.iter().filter(|s| s.layer == Layer::Managed) {
        for entry in &source.entries {
            match (entry.spec.key, &entry.value) {
                ("locks.keys", EntryValue::List(items)) => {
                    locks.extend(items.iter().map(|i| i.text.clone()));
                }
                ("network.managed_only", EntryValue::Bool(b)) => managed_only = *b,
                _ => {}
            }
        }
    }

    let mut resolved = Resolved::default();
    for source in &parsed {
        let origin_at = |line: usize| Origin {
            layer: source.layer,
            file: source.file.clone(),
            line: Some(line),
        };
        for entry in &source.entries {
            let key = entry.spec.key;
            if source.layer != Layer::Managed {
                let ignored = if entry.spec.managed_only {
                    Some("ignored: only your administrator's settings can set this")
                } else if locks.iter().any(|lock| schema::lock_covers(lock, key)) {
                    Some("ignored: locked by your administrator")
                } else if managed_only && key == "network.allow" {
                    Some("ignored: your administrator allows only their own network rules")
                } else if source.layer == Layer::Project && key == schema::CREDENTIAL {
                    Some(
                        "ignored: credentials are read only from your own, the command line's \
                         or your administrator's settings, so that files in a folder cannot \
                         send your secrets elsewhere",
                    )
                } else if source.layer == Layer::Project && key == schema::SERVER_ALLOW_REMOTE {
                    Some(
                        "ignored: only your own, the command line's or your administrator's \
                         settings can open the server to the network",
                    )
                } else if source.layer == Layer::Project && key == schema::BROWSER_ALLOW_ATTACH {
                    Some(
                        "ignored: only your own, the command line's or your administrator's \
                         settings can let the agent use your own browser",
                    )
                } else {
                    None
                };
                if let Some(message) = ignored {
                    // One notice per credential table, each at its own line.
                    let lines: Vec<usize> = match (&entry.value, entry.spec.kind) {
                        (EntryValue::List(items), ValueKind::Credentials) => {
                            items.iter().map(|i| i.line).collect()
                        }
                        _ => vec![entry.line],
                    };
                    for line in lines {
                        notices.push(Notice {
                            layer: source.layer,
                            file: source.file.clone(),
                            line: Some(line),
                            key: Some(key.to_string()),
                            message: message.into(),
                        });
                    }
                    continue;
                }
            }
            match (entry.spec.merge, &entry.value) {
                (Merge::Highest, value) => {
                    // Sources come lowest first, so a later one overrides.
                    resolved
                        .highest
                        .insert(key, (value.clone(), origin_at(entry.line)));
                }
                (Merge::Accumulate, EntryValue::List(items)) => {
                    let list = resolved.lists.entry(key).or_default();
                    // Highest precedence first: later sources go in front.
                    let mut fresh: Vec<(Item, Origin)> = items
                        .iter()
                        .map(|item| (item.clone(), origin_at(item.line)))
                        .collect();
                    fresh.append(list);
                    *list = fresh;
                }
                (Merge::Accumulate, EntryValue::Bool(_)) => {}
            }
        }
    }

    let rules = |key: &str| -> Vec<PolicyRule> {
        resolved
            .lists
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|(item, origin)| match &item.compiled {
                Compiled::Rule(rule) => Some(PolicyRule {
                    rule: (**rule).clone(),
                    origin: RuleOrigin {
                        text: rule.text().to_string(),
                        layer: origin.layer,
                        file: origin.file.clone(),
                        line: origin.line,
                    },
                }),
                _ => None,
            })
            .collect()
    };
    let domains = |key: &str| -> Vec<DomainRule> {
        resolved
            .lists
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|(item, origin)| match &item.compiled {
                Compiled::Domain(pattern) => Some(DomainRule {
                    pattern: pattern.clone(),
                    origin: origin.clone(),
                }),
                _ => None,
            })
            .collect()
    };
    let names = |key: &str| -> Vec<NameRule> {
        resolved
            .lists
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|(item, origin)| name_rule(item, origin))
            .collect()
    };
    let list_setting = |key: &str| -> Option<ListSetting> {
        let (EntryValue::List(items), origin) = resolved.highest.get(key)? else {
            return None;
        };
        Some(ListSetting {
            items: items
                .iter()
                .filter_map(|item| name_rule(item, origin))
                .collect(),
            origin: origin.clone(),
        })
    };
    let credentials: Vec<CredentialSetting> = resolved
        .lists
        .get(schema::CREDENTIAL)
        .into_iter()
        .flatten()
        .filter_map(|(item, origin)| match &item.compiled {
            Compiled::Credential(c) => Some(CredentialSetting {
                domain: c.domain.clone(),
                header: c.header.clone(),
                value_template: c.value_template.clone(),
                secret_ref: c.secret_ref.clone(),
                origin: RuleOrigin {
                    text: format!("{} = {}", schema::CREDENTIAL, item.text),
                    layer: origin.layer,
                    file: origin.file.clone(),
                    line: origin.line,
                },
            }),
            _ => None,
        })
        .collect();
    let flag = |key: &str, default: bool| -> (bool, Option<Origin>) {
        match resolved.highest.get(key) {
            Some((EntryValue::Bool(b), origin)) => (*b, Some(origin.clone())),
            _ => (default, None),
        }
    };

    Policy {
        deny: rules("permissions.deny"),
        ask: rules("permissions.ask"),
        allow: rules("permissions.allow"),
        ask_before_changing_granted_files: flag(
            "permissions.ask_before_changing_granted_files",
            true,
        ),
        network: NetworkRules {
            allow: domains("network.allow"),
            deny: domains("network.deny"),
        },
        network_managed_only: flag("network.managed_only", false),
        credentials,
        allowed_backends: list_setting("sandbox.allowed_backends"),
        allowed_providers: list_setting("models.allowed_providers"),
        allowed_models: list_setting("models.allowed_models"),
        marketplace_allow: list_setting("marketplaces.allow"),
        marketplace_block: names("marketplaces.block"),
        tools_disabled: names("tools.disabled"),
        effective: effective_settings(&resolved),
        notices: std::mem::take(notices),
        sources: parsed.into_iter().map(|p| p.loaded).collect(),
    }
}

fn name_rule(item: &Item, origin: &Origin) -> Option<NameRule> {
    let matcher = match &item.compiled {
        Compiled::Name(matcher) => matcher.clone(),
        // Backends are plain names; a glob of a plain name matches only itself.
        Compiled::Text => crate::settings_file::name_glob(&item.text).ok()?,
        Compiled::Rule(_) | Compiled::Domain(_) | Compiled::Credential(_) => return None,
    };
    Some(NameRule {
        text: item.text.clone(),
        matcher,
        origin: Origin {
            line: Some(item.line),
            ..origin.clone()
        },
    })
}

fn effective_settings(resolved: &Resolved) -> Vec<EffectiveSetting> {
    let mut out = Vec::new();
    for spec in schema::SCHEMA {
        push_effective(&mut out, spec, resolved);
    }
    out
}

fn push_effective(out: &mut Vec<EffectiveSetting>, spec: &KeySpec, resolved: &Resolved) {
    let default = |out: &mut Vec<EffectiveSetting>| {
        out.push(EffectiveSetting {
            key: spec.key.into(),
            value: spec.default.into(),
            origin: None,
        });
    };
    match spec.merge {
        Merge::Highest => match resolved.highest.get(spec.key) {
            Some((value, origin)) => out.push(EffectiveSetting {
                key: spec.key.into(),
                value: match value {
                    EntryValue::Bool(b) => b.to_string(),
                    EntryValue::List(items) => list_display(items.iter().map(|i| i.text.as_str())),
                },
                origin: Some(origin.clone()),
            }),
            None => default(out),
        },
        Merge::Accumulate => match resolved.lists.get(spec.key) {
            Some(items) if !items.is_empty() => {
                for (item, origin) in items {
                    out.push(EffectiveSetting {
                        key: spec.key.into(),
                        // A credential's text is already an inline table,
                        // naming its secret's reference, never its value.
                        value: if spec.kind == ValueKind::Credentials {
                            item.text.clone()
                        } else {
                            format!("{:?}", item.text)
                        },
                        origin: Some(origin.clone()),
                    });
                }
            }
            _ => default(out),
        },
    }
}
