//! Domain patterns, shared by `WebFetch(domain:...)` rules and the
//! `[network]` allow and deny lists that the egress proxy enforces.
//!
//! `example.com` matches that name only; `*.example.com` matches every name
//! below it (`a.example.com`, `a.b.example.com`) but not `example.com` itself,
//! which must be listed too if meant; `*` alone matches every name. Matching
//! ignores case and a trailing dot.

/// A checked domain pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainPattern {
    /// Lowercase, without a trailing dot; for a wildcard, the part after `*.`.
    name: String,
    kind: DomainKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DomainKind {
    Exact,
    Subdomains,
    Any,
}

impl DomainPattern {
    /// Checks a pattern, or says in words what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let p = pattern.trim();
        if p.is_empty() {
            return Err("the domain is empty".into());
        }
        if p.contains("://") || p.contains('/') {
            return Err(format!(
                "{pattern:?} is not a domain: write the name alone, without https:// or a path"
            ));
        }
        if p == "*" {
            return Ok(DomainPattern {
                name: String::new(),
                kind: DomainKind::Any,
            });
        }
        let (kind, rest) = match p.strip_prefix("*.") {
            Some(rest) => (DomainKind::Subdomains, rest),
            None => (DomainKind::Exact, p),
        };
        let name = rest.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return Err(format!("{pattern:?} names no domain"));
        }
        if name.contains('*') {
            return Err(format!(
                "{pattern:?}: a wildcard may only start the name, as in *.example.com"
            ));
        }
        let valid_label = |label: &str| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        let is_ipv6 = name.starts_with('[') && name.ends_with(']') && name.len() > 2;
        if !is_ipv6 && !name.split('.').all(valid_label) {
            return Err(format!(
                "{pattern:?} is not a valid domain (letters, digits, '-' and dots only; no port)"
            ));
        }
        if is_ipv6 && kind == DomainKind::Subdomains {
            return Err(format!("{pattern:?}: an IP address has no subdomains"));
        }
        Ok(DomainPattern { name, kind })
    }

    /// Whether the pattern matches `host` (any case, with or without a trailing dot).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        match self.kind {
            DomainKind::Any => !host.is_empty(),
            DomainKind::Exact => host.eq_ignore_ascii_case(&self.name),
            DomainKind::Subdomains => {
                host.len() > self.name.len() + 1
                    && host.as_bytes()[host.len() - self.name.len() - 1] == b'.'
                    && host[host.len() - self.name.len()..].eq_ignore_ascii_case(&self.name)
            }
        }
    }
}

impl std::fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            DomainKind::Any => f.write_str("*"),
            DomainKind::Exact => f.write_str(&self.name),
            DomainKind::Subdomains => write!(f, "*.{}", self.name),
        }
    }
}

/// Whether domain `pattern` matches `host`; an invalid pattern matches nothing.
///
/// For the egress proxy, which checks the names it is asked to connect to.
pub fn domain_matches(pattern: &str, host: &str) -> bool {
    DomainPattern::parse(pattern).is_ok_and(|p| p.matches(host))
}

/// The lowercase host of a URL, or `None` when the URL has none Cubicle can trust.
///
/// Follows the WHATWG URL rules where they matter for deciding a host: a
/// backslash ends the authority like a slash, the last `@` ends the user
/// information, brackets enclose an IPv6 address. Percent-encoded or empty
/// hosts give `None`, so allow rules do not match them.
pub fn host_of_url(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once(':')?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let rest = rest.trim_start_matches(['/', '\\']);
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        let close = v6.find(']')?;
        &host_port[..close + 2]
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.contains(['%', ' ', '*']) {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn exact_names_match_only_themselves() {
        assert!(domain_matches("example.com", "example.com"));
        assert!(domain_matches("example.com", "EXAMPLE.com."));
        assert!(!domain_matches("example.com", "www.example.com"));
        assert!(!domain_matches("example.com", "badexample.com"));
    }

    #[test]
    fn wildcards_match_subdomains_but_not_the_apex() {
        assert!(domain_matches("*.example.com", "a.example.com"));
        assert!(domain_matches("*.example.com", "a.b.example.com"));
        assert!(domain_matches("*.Example.com", "A.EXAMPLE.COM"));
        assert!(!domain_matches("*.example.com", "example.com"));
        assert!(!domain_matches("*.example.com", "badexample.com"));
        assert!(!domain_matches("*.example.com", ".example.com"));
        assert!(!domain_matches("*.example.com", "example.com.evil.net"));
    }

    #[test]
    fn a_lone_star_matches_everything() {
        assert!(domain_matches("*", "anything.at.all"));
        assert!(!domain_matches("*", ""));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "",
            "https://example.com",
            "example.com/path",
            "ex*ample.com",
            "*.",
            "a..b",
            "example.com:443",
            "*.*.example.com",
            "exa mple.com",
        ] {
            assert!(
                DomainPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
            assert!(!domain_matches(bad, "example.com"));
        }
        assert_eq!(
            DomainPattern::parse("*.Example.COM.").unwrap().to_string(),
            "*.example.com"
        );
    }

    #[test]
    fn hosts_are_taken_from_urls() {
        let cases = [
            ("https://Example.com/a?b", Some("example.com")),
            (
                "http://user:pw@api.github.com:8080/x",
                Some("api.github.com"),
            ),
            ("https://good.com\\@evil.com/", Some("good.com")),
            ("https://evil.com#@good.com", Some("evil.com")),
            ("https://a@b@evil.com/", Some("evil.com")),
            ("http://[::1]:80/", Some("[::1]")),
            ("https://example.com./", Some("example.com")),
            ("example.com", None),
            // As in WHATWG URLs, extra slashes before the host are skipped.
            ("https:///path", Some("path")),
            ("https://", None),
            ("https://:80/", None),
            ("https://%65vil.com/", None),
            ("", None),
        ];
        for (url, want) in cases {
            assert_eq!(host_of_url(url).as_deref(), want, "host_of_url({url:?})");
        }
    }
}
