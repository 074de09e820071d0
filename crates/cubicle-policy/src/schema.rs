//! Every setting a settings file may hold, with its type, how layers combine
//! it, and what it means. One table, so that the parser, the merge, locks and
//! `cubicle policy show` cannot disagree about which keys exist.

/// What a setting's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A list of permission rules such as `Bash(git *)`.
    Rules,
    /// A list of domain patterns such as `*.wikipedia.org`.
    Domains,
    /// `true` or `false`.
    Bool,
    /// A list of backend names: `jail`, `vm`, `remote`, `host`.
    Backends,
    /// A list of names with `*` and `?` wildcards (providers, models, marketplaces).
    Names,
    /// A list of tool names with wildcards; Claude Code names are accepted too.
    Tools,
    /// A list of setting keys or section names.
    Keys,
    /// `[[credential]]` tables: a domain, a header, a secret reference
    /// (`keyring:NAME` or `env:NAME`) and an optional value template.
    Credentials,
}

/// How the values of several layers combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Every layer's entries count (rules, deny lists).
    Accumulate,
    /// The highest layer that sets the value decides.
    Highest,
}

/// One setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// Dotted key, e.g. `sandbox.allowed_backends`.
    pub key: &'static str,
    /// The type of its value.
    pub kind: ValueKind,
    /// How layers combine it.
    pub merge: Merge,
    /// Whether only the managed layer may set it (elsewhere it is ignored with a notice).
    pub managed_only: bool,
    /// The value when no layer sets it, as `cubicle policy show` prints it.
    pub default: &'static str,
    /// What it means, in one or two sentences.
    pub doc: &'static str,
}

impl KeySpec {
    /// The section part of the key (`sandbox` for `sandbox.allowed_backends`).
    pub fn section(&self) -> &'static str {
        self.key.split_once('.').map_or(self.key, |(s, _)| s)
    }
}

/// Backend names `sandbox.allowed_backends` accepts.
pub const BACKENDS: &[&str] = &["jail", "vm", "remote", "host"];

/// Every setting, in the order `cubicle policy show` prints them.
pub const SCHEMA: &[KeySpec] = &[
    KeySpec {
        key: "permissions.allow",
        kind: ValueKind::Rules,
        merge: Merge::Accumulate,
        managed_only: false,
        default: "[]",
        doc: "Rules for calls that run without asking, e.g. \"Bash(git *)\".",
    },
    KeySpec {
        key: "permissions.ask",
        kind: ValueKind::Rules,
        merge: Merge::Accumulate,
        managed_only: false,
        default: "[]",
        doc: "Rules for calls that need the person's yes first, e.g. \"Edit(/mnt/**/*.xlsx)\".",
    },
    KeySpec {
        key: "permissions.deny",
        kind: ValueKind::Rules,
        merge: Merge::Accumulate,
        managed_only: false,
        default: "[]",
        doc: "Rules for calls that are refused; a deny in any layer wins over every allow.",
    },
    KeySpec {
        key: "permissions.ask_before_changing_granted_files",
        kind: ValueKind::Bool,
        merge: Merge::Highest,
        managed_only: false,
        default: "true",
        doc: "Ask before `edit` or `write` changes a file outside /workspace and /tmp \
              (that is, in the person's own folders) when no rule decides.",
    },
    KeySpec {
        key: "network.allow",
        kind: ValueKind::Domains,
        merge: Merge::Accumulate,
        managed_only: false,
        default: "[]",
        doc: "Domains the egress proxy lets the cubicle reach; `*.x.org` is every subdomain of x.org but not x.org.",
    },
    KeySpec {
        key: "network.deny",
        kind: ValueKind::Domains,
        merge: Merge::Accumulate,
        managed_only: false,
        default: "[]",
        doc: "Domains the egress proxy always refuses, whatever allows them.",
    },
    KeySpec {
        key: "network.managed_only",
        kind: ValueKind::Bool,
        merge: Merge::Highest,
        managed_only: true,
        default: "false",
        doc: "Managed only: when true, network.allow entries from every other layer are ignored.",
    },
    KeySpec {
        key: "credential",
        kind: ValueKind::Credentials,
        merge: Merge::Accumulate,
        managed_only: false,
        default: "[]",
        doc: "[[credential]] tables: the egress proxy adds `header` with the host secret \
              `secret` (keyring:NAME or env:NAME, never the value itself) to requests for \
              `domain`, as `value` (default \"{secret}\"). Not read from project settings.",
    },
    KeySpec {
        key: "sandbox.allowed_backends",
        kind: ValueKind::Backends,
        merge: Merge::Highest,
        managed_only: false,
        default: "[\"jail\", \"vm\", \"remote\"]",
        doc: "Backends a session may use; the default leaves out \"host\", which runs without isolation.",
    },
    KeySpec {
        key: "models.allowed_providers",
        kind: ValueKind::Names,
        merge: Merge::Highest,
        managed_only: false,
        default: "[\"*\"]",
        doc: "Model providers a session may call, e.g. [\"anthropic\"]; wildcards allowed.",
    },
    KeySpec {
        key: "models.allowed_models",
        kind: ValueKind::Names,
        merge: Merge::Highest,
        managed_only: false,
        default: "[\"*\"]",
        doc: "Models a session may call, e.g. [\"claude-*\"]; wildcards allowed.",
    },
    KeySpec {
        key: "marketplaces.allow",
        kind: ValueKind::Names,
        merge: Merge::Highest,
        managed_only: false,
        default: "[\"*\"]",
        doc: "Plugin marketplaces that may be added, e.g. [\"github:acme/*\"].",
    },
    KeySpec {
        key: "marketplaces.block",
        kind: ValueKind::Names,
        merge: Merge::Accumulate,
        managed_only: false,
        default: "[]",
        doc: "Plugin marketplaces that may never be added; a block wins over an allow.",
    },
    KeySpec {
        key: SERVER_ALLOW_REMOTE,
        kind: ValueKind::Bool,
        merge: Merge::Highest,
        managed_only: false,
        default: "false",
        doc: "Let `cubicle serve --remote` listen beyond loopback for paired devices (over TLS \
              only). Not read from a project's settings.",
    },
    KeySpec {
        key: BROWSER_ALLOW_ATTACH,
        kind: ValueKind::Bool,
        merge: Merge::Highest,
        managed_only: false,
        default: "false",
        doc: "Let the browser sub-agent attach to the person's own Chrome over its \
              remote-debugging port (`--attach-browser`), with their logged-in sessions, once \
              they consent. Not read from a project's settings.",
    },
    KeySpec {
        key: "tools.disabled",
        kind: ValueKind::Tools,
        merge: Merge::Accumulate,
        managed_only: false,
        default: "[]",
        doc: "Tools the agent may not use at all, e.g. [\"task\", \"browser_*\"].",
    },
    KeySpec {
        key: "locks.keys",
        kind: ValueKind::Keys,
        merge: Merge::Accumulate,
        managed_only: true,
        default: "[]",
        doc: "Managed only: settings (or whole sections) no other layer may change.",
    },
];

/// Section names, in schema order.
pub const SECTIONS: &[&str] = &[
    "permissions",
    "network",
    "credential",
    "sandbox",
    "models",
    "marketplaces",
    "server",
    "browser",
    "tools",
    "locks",
];

/// Sections a settings file may hold that the policy does not read: the
/// hooks and MCP servers people configure, which `cubicle-skills` reads
/// from the same files (see `cubicle_skills::settings`).
pub const READ_ELSEWHERE: &[&str] = &["hooks", "mcp_servers"];

/// The key that lets the local server listen beyond loopback.
pub const SERVER_ALLOW_REMOTE: &str = "server.allow_remote";

/// The key that lets the browser sub-agent attach to the person's own Chrome.
pub const BROWSER_ALLOW_ATTACH: &str = "browser.allow_attach";

/// The spec of a dotted key, if it is one.
pub fn find(key: &str) -> Option<&'static KeySpec> {
    SCHEMA.iter().find(|spec| spec.key == key)
}

/// `[[credential]]` is a top-level array of tables rather than a section of
/// keys; its key is `credential`, and a lock may also say `credentials`.
pub const CREDENTIAL: &str = "credential";

/// The key a lock names, with `credentials` read as `credential`.
pub fn canonical_lock(lock: &str) -> &str {
    if lock == "credentials" {
        CREDENTIAL
    } else {
        lock
    }
}

/// Whether `lock` (a key or a section) covers `key`.
pub fn lock_covers(lock: &str, key: &str) -> bool {
    let lock = canonical_lock(lock);
    key == lock
        || key
            .strip_prefix(lock)
            .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn every_key_belongs_to_a_known_section() {
        for spec in SCHEMA {
            assert!(SECTIONS.contains(&spec.section()), "{}", spec.key);
            assert!(!spec.doc.is_empty());
        }
        for section in SECTIONS {
            assert!(SCHEMA.iter().any(|s| s.section() == *section));
        }
    }

    #[test]
    fn locks_cover_keys_and_sections() {
        assert!(lock_covers("network", "network.allow"));
        assert!(lock_covers("network.allow", "network.allow"));
        assert!(!lock_covers("network.allow", "network.deny"));
        assert!(!lock_covers("net", "network.allow"));
        assert!(lock_covers("credential", "credential"));
        assert!(lock_covers("credentials", "credential"));
        assert!(!lock_covers("credential", "credentials"));
    }
}
