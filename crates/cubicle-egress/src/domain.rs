//! Domain rules: parsing the host a client asked for, parsing rule patterns,
//! and deciding allow or deny. Deny rules are checked first and win; with no
//! allow rule nothing matches, so a fresh install reaches nothing. Wildcards
//! never match an IP literal: only a rule naming the literal does.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::DomainRule;
use crate::error::ConfigError;

/// Longest DNS name accepted.
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label accepted.
const MAX_LABEL_LEN: usize = 63;

/// The host part of a request target, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lower-case, without a trailing dot.
    Name(String),
    /// An IP literal (IPv4-mapped IPv6 is kept as written).
    Ip(IpAddr),
}

impl Host {
    /// Parses and normalises a host as it appears in a request target.
    pub fn parse(raw: &str) -> Result<Host, HostError> {
        if raw.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(inner) = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(IpAddr::V6(ip)))
                .map_err(|_| HostError::BadIp(raw.to_owned()));
        }
        if let Ok(ip) = raw.parse::<Ipv4Addr>() {
            return Ok(Host::Ip(IpAddr::V4(ip)));
        }
        if let Ok(ip) = raw.parse::<Ipv6Addr>() {
            return Ok(Host::Ip(IpAddr::V6(ip)));
        }
        if !raw.is_ascii() {
            return Err(HostError::NonAscii);
        }
        let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(HostError::BadName(raw.to_owned()));
        }
        for label in name.split('.') {
            let ok_chars = label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let hyphen_edge = label.starts_with('-') || label.ends_with('-');
            if label.is_empty() || label.len() > MAX_LABEL_LEN || !ok_chars || hyphen_edge {
                return Err(HostError::BadName(raw.to_owned()));
            }
        }
        // A numeric last label is not a DNS name but an IP address in another
        // spelling (`2130706433`, `0x7f.1`) that the system resolver would
        // happily turn into 127.0.0.1.
        let last = name.rsplit('.').next().unwrap_or("");
        if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") {
            return Err(HostError::NumericName(raw.to_owned()));
        }
        Ok(Host::Name(name))
    }

    /// Whether this is an IP literal.
    pub fn is_ip(&self) -> bool {
        matches!(self, Host::Ip(_))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// Why a request's host is not a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// No host at all.
    #[error("the request names no host")]
    Empty,
    /// A bracketed literal that is not IPv6.
    #[error("{0} is not a valid IP address")]
    BadIp(String),
    /// Non-ASCII names must arrive in punycode.
    #[error("the host is not ASCII; use its punycode (xn--) form")]
    NonAscii,
    /// Not a valid DNS name.
    #[error("{0:?} is not a valid host name")]
    BadName(String),
    /// A number that a resolver would read as an IP address.
    #[error(
        "{0:?} looks like an IP address in an unusual spelling; write it as a plain IP address"
    )]
    NumericName(String),
}

/// A compiled domain pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DomainPattern {
    /// `*`: any DNS name.
    Any,
    /// `*.example.org`, stored as `.example.org`: any name strictly under it.
    Subdomains(String),
    /// One exact name.
    Exact(String),
    /// One exact IP literal.
    Ip(IpAddr),
}

impl DomainPattern {
    /// Parses a pattern in the syntax of [`DomainRule::pattern`].
    pub(crate) fn parse(pattern: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::BadDomainPattern {
            pattern: pattern.to_owned(),
            why: why.to_owned(),
        };
        let trimmed = pattern.trim();
        if trimmed == "*" {
            return Ok(DomainPattern::Any);
        }
        if let Some(rest) = trimmed.strip_prefix("*.") {
            if rest.contains('*') {
                return Err(bad("only one leading `*.` is allowed"));
            }
            return match Host::parse(rest) {
                Ok(Host::Name(n)) => Ok(DomainPattern::Subdomains(format!(".{n}"))),
                Ok(Host::Ip(_)) => Err(bad("an IP address has no subdomains")),
                Err(e) => Err(bad(&e.to_string())),
            };
        }
        if trimmed.contains('*') {
            return Err(bad(
                "a wildcard is only allowed as `*` or a leading `*.` (as in `*.example.org`)",
            ));
        }
        if trimmed.contains(['/', ':'])
            && !trimmed.starts_with('[')
            && trimmed.parse::<Ipv6Addr>().is_err()
        {
            return Err(bad("write a bare domain, without a scheme, port or path"));
        }
        match Host::parse(trimmed) {
            Ok(Host::Name(n)) => Ok(DomainPattern::Exact(n)),
            Ok(Host::Ip(ip)) => Ok(DomainPattern::Ip(ip.to_canonical())),
            Err(e) => Err(bad(&e.to_string())),
        }
    }

    /// Whether the pattern matches a host.
    pub(crate) fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (DomainPattern::Any, Host::Name(_)) => true,
            (DomainPattern::Subdomains(suffix), Host::Name(n)) => {
                n.len() > suffix.len() && n.ends_with(suffix.as_str())
            }
            (DomainPattern::Exact(e), Host::Name(n)) => e == n,
            (DomainPattern::Ip(p), Host::Ip(ip)) => *p == ip.to_canonical(),
            (DomainPattern::Any, Host::Ip(_))
            | (DomainPattern::Subdomains(_), Host::Ip(_))
            | (DomainPattern::Exact(_), Host::Ip(_))
            | (DomainPattern::Ip(_), Host::Name(_)) => false,
        }
    }
}

/// What the domain rules say about a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DomainDecision<'a> {
    /// An allow rule matched and no deny rule did.
    Allowed(&'a DomainRule),
    /// A deny rule matched.
    Denied(&'a DomainRule),
    /// No rule matched.
    NotListed,
}

/// Compiled allow and deny lists.
#[derive(Debug, Clone, Default)]
pub(crate) struct DomainRules {
    allow: Vec<(DomainPattern, DomainRule)>,
    deny: Vec<(DomainPattern, DomainRule)>,
}

impl DomainRules {
    /// Compiles both lists, failing on the first bad pattern.
    pub(crate) fn new(allow: &[DomainRule], deny: &[DomainRule]) -> Result<Self, ConfigError> {
        let compile = |rules: &[DomainRule]| {
            rules
                .iter()
                .map(|r| Ok((DomainPattern::parse(&r.pattern)?, r.clone())))
                .collect::<Result<Vec<_>, ConfigError>>()
        };
        Ok(Self {
            allow: compile(allow)?,
            deny: compile(deny)?,
        })
    }

    /// Deny first, then allow, else not listed.
    pub(crate) fn decide(&self, host: &Host) -> DomainDecision<'_> {
        if let Some((_, rule)) = self.deny.iter().find(|(p, _)| p.matches(host)) {
            return DomainDecision::Denied(rule);
        }
        match self.allow.iter().find(|(p, _)| p.matches(host)) {
            Some((_, rule)) => DomainDecision::Allowed(rule),
            None => DomainDecision::NotListed,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    fn name(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    fn rules(allow: &[&str], deny: &[&str]) -> DomainRules {
        let mk = |v: &[&str]| {
            v.iter()
                .map(|p| DomainRule::new(*p, "test"))
                .collect::<Vec<_>>()
        };
        DomainRules::new(&mk(allow), &mk(deny)).unwrap()
    }

    fn verdict(r: &DomainRules, host: &str) -> String {
        match r.decide(&name(host)) {
            DomainDecision::Allowed(rule) => format!("allow {}", rule.pattern),
            DomainDecision::Denied(rule) => format!("deny {}", rule.pattern),
            DomainDecision::NotListed => "not listed".to_owned(),
        }
    }

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(name("API.GitHub.com."), Host::Name("api.github.com".into()));
        assert_eq!(name("127.0.0.1"), Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(name("[::1]"), Host::Ip("::1".parse().unwrap()));
        assert_eq!(name("::1"), Host::Ip("::1".parse().unwrap()));
        assert_eq!(name("[::1]").to_string(), "[::1]");
    }

    #[test]
    fn hostile_hosts_are_rejected() {
        for bad in [
            "",
            "[127.0.0.1]",
            "a..b",
            "exa mple.org",
            "2130706433",
            "0x7f.1",
            "127.1",
            "bücher.de",
            "a/b",
            "a:b",
            "-",
            ".",
            "x.0x10",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Host::parse(&"a".repeat(64)).is_err());
        assert!(Host::parse(&format!("{}.org", "a.".repeat(130))).is_err());
    }

    #[test]
    fn nothing_is_allowed_without_rules() {
        let r = rules(&[], &[]);
        assert_eq!(verdict(&r, "example.org"), "not listed");
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let r = rules(&["*.example.test"], &[]);
        assert_eq!(verdict(&r, "a.example.test"), "allow *.example.test");
        assert_eq!(verdict(&r, "a.b.example.test"), "allow *.example.test");
        assert_eq!(verdict(&r, "example.test"), "not listed");
        assert_eq!(verdict(&r, "evilexample.test"), "not listed");
        assert_eq!(verdict(&r, "example.test.evil"), "not listed");
    }

    #[test]
    fn exact_rules_match_exactly() {
        let r = rules(&["api.github.com"], &[]);
        assert_eq!(verdict(&r, "API.github.com."), "allow api.github.com");
        assert_eq!(verdict(&r, "x.api.github.com"), "not listed");
        assert_eq!(verdict(&r, "github.com"), "not listed");
    }

    #[test]
    fn deny_wins_over_allow() {
        let r = rules(&["*"], &["*.pastebin.com", "evil.test"]);
        assert_eq!(verdict(&r, "x.pastebin.com"), "deny *.pastebin.com");
        assert_eq!(verdict(&r, "evil.test"), "deny evil.test");
        assert_eq!(verdict(&r, "fine.test"), "allow *");
    }

    #[test]
    fn wildcards_never_match_ip_literals() {
        let r = rules(&["*", "*.example.org"], &[]);
        assert_eq!(r.decide(&name("93.184.216.34")), DomainDecision::NotListed);
        let r = rules(&["93.184.216.34", "[2001:db8::1]"], &[]);
        assert!(matches!(
            r.decide(&name("93.184.216.34")),
            DomainDecision::Allowed(_)
        ));
        assert!(matches!(
            r.decide(&name("[2001:db8::1]")),
            DomainDecision::Allowed(_)
        ));
        assert!(matches!(
            r.decide(&name("[::ffff:93.184.216.34]")),
            DomainDecision::Allowed(_)
        ));
        assert_eq!(r.decide(&name("93.184.216.35")), DomainDecision::NotListed);
    }

    #[test]
    fn bad_patterns_are_config_errors() {
        for bad in [
            "*example.org",
            "a.*.org",
            "*.*.org",
            "http://x.org",
            "x.org:443",
            "*.1.2.3.4",
            "",
        ] {
            assert!(
                DomainPattern::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
