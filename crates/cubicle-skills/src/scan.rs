//! The scan that runs before a skill is exported: secrets and personal data
//! that should not travel with a shared skill.
//!
//! It recognises private key blocks; AWS, GitHub, Slack, Anthropic, OpenAI
//! and Google API credentials; JSON Web Tokens; passwords inside URLs;
//! `.env` files (by name); e-mail addresses (except the reserved example
//! domains such as `example.com`); phone numbers written in international
//! (`+44 20 7946 0958`) or North-American (`(555) 123-4567`, `555-123-4567`)
//! form; IBANs (checked with their mod-97 check digits); and payment-card
//! numbers (checked with Luhn). A finding names the file, line and kind,
//! never the matched text, so that the report itself leaks nothing.
//! Patterns are a net, not a proof: the person can override with `force`.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// What kind of sensitive data a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// `-----BEGIN … PRIVATE KEY-----`.
    PrivateKey,
    /// An AWS access key id or secret access key.
    AwsKey,
    /// A GitHub token (`ghp_`, `github_pat_`, …).
    GitHubToken,
    /// A Slack token or webhook.
    SlackToken,
    /// An Anthropic API key (`sk-ant-…`).
    AnthropicKey,
    /// An OpenAI API key (`sk-…`, `sk-proj-…`).
    OpenAiKey,
    /// A Google API key (`AIza…`).
    GoogleApiKey,
    /// A JSON Web Token.
    Jwt,
    /// A URL with a password in it (`scheme://user:pass@host`).
    PasswordInUrl,
    /// A `.env` file.
    EnvFile,
    /// An e-mail address.
    Email,
    /// A phone number.
    PhoneNumber,
    /// An IBAN with valid check digits.
    Iban,
    /// A payment-card number that passes the Luhn check.
    CreditCard,
}

impl FindingKind {
    /// Whether this is a secret (as opposed to personal data).
    pub fn is_secret(self) -> bool {
        !matches!(
            self,
            FindingKind::Email
                | FindingKind::PhoneNumber
                | FindingKind::Iban
                | FindingKind::CreditCard
        )
    }

    /// A short human description.
    pub fn describe(self) -> &'static str {
        match self {
            FindingKind::PrivateKey => "private key",
            FindingKind::AwsKey => "AWS access key",
            FindingKind::GitHubToken => "GitHub token",
            FindingKind::SlackToken => "Slack token",
            FindingKind::AnthropicKey => "Anthropic API key",
            FindingKind::OpenAiKey => "OpenAI API key",
            FindingKind::GoogleApiKey => "Google API key",
            FindingKind::Jwt => "JSON Web Token",
            FindingKind::PasswordInUrl => "password in a URL",
            FindingKind::EnvFile => ".env file (environment secrets)",
            FindingKind::Email => "e-mail address",
            FindingKind::PhoneNumber => "phone number",
            FindingKind::Iban => "IBAN (bank account)",
            FindingKind::CreditCard => "payment card number",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// One thing found: where and what, never the text itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// Path relative to the skill folder, with `/` separators.
    pub file: String,
    /// 1-based line; 0 for findings about the whole file.
    pub line: usize,
    /// What it is.
    pub kind: FindingKind,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.kind)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.kind)
        }
    }
}

struct Pattern {
    kind: FindingKind,
    re: Regex,
    check: fn(&str) -> bool,
}

fn always(_: &str) -> bool {
    true
}

#[allow(clippy::expect_used)] // The patterns are constants checked by the tests.
static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let p = |kind, re: &str, check: fn(&str) -> bool| Pattern {
        kind,
        re: Regex::new(re).expect("valid pattern"),
        check,
    };
    vec![
        p(
            FindingKind::PrivateKey,
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
            always,
        ),
        p(
            FindingKind::AwsKey,
            r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
            always,
        ),
        p(
            FindingKind::AwsKey,
            r"(?i)aws_?secret_?access_?key\s*[=:]\s*.?[A-Za-z0-9/+=]{40}",
            always,
        ),
        p(
            FindingKind::GitHubToken,
            r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
            always,
        ),
        p(
            FindingKind::SlackToken,
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/services/[A-Za-z0-9/]+",
            always,
        ),
        p(
            FindingKind::AnthropicKey,
            r"\bsk-ant-[A-Za-z0-9_-]{20,}",
            always,
        ),
        p(FindingKind::OpenAiKey, r"\bsk-[A-Za-z0-9_-]{20,}", |m| {
            !m.starts_with("sk-ant-")
        }),
        p(
            FindingKind::GoogleApiKey,
            r"\bAIza[0-9A-Za-z_-]{35}",
            always,
        ),
        p(
            FindingKind::Jwt,
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            always,
        ),
        p(
            FindingKind::PasswordInUrl,
            r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]+:[^\s/@]+@[^\s/@]+",
            not_placeholder_password,
        ),
        p(
            FindingKind::Email,
            r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
            not_example_email,
        ),
        p(
            FindingKind::PhoneNumber,
            r"(?:\+[1-9][0-9]{0,2}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}(?:[ .-]?[0-9]{2,4}){2,4}\b|\([0-9]{3}\) ?[0-9]{3}-[0-9]{4}\b|\b[0-9]{3}-[0-9]{3}-[0-9]{4}\b)",
            phone_digits_ok,
        ),
        p(
            FindingKind::Iban,
            r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
            iban_ok,
        ),
        p(
            FindingKind::CreditCard,
            r"\b[0-9](?:[ -]?[0-9]){12,18}\b",
            card_ok,
        ),
    ]
});

/// Whether `file_name` is a `.env` file (`.env`, `.env.local`, …), not a
/// template (`.env.example`, `.env.sample`, `.env.template`).
pub fn is_env_file(file_name: &str) -> bool {
    if file_name == ".env" {
        return true;
    }
    match file_name.strip_prefix(".env.") {
        Some(rest) => !matches!(rest, "example" | "sample" | "template" | "dist"),
        None => false,
    }
}

/// Scans one file's contents; `rel` is its path relative to the skill.
pub fn scan_file(rel: &str, bytes: &[u8]) -> Vec<Finding> {
    let mut out = Vec::new();
    let file_name = rel.rsplit('/').next().unwrap_or(rel);
    if is_env_file(file_name) {
        out.push(Finding {
            file: rel.to_owned(),
            line: 0,
            kind: FindingKind::EnvFile,
        });
    }
    let text = String::from_utf8_lossy(bytes);
    for (i, line) in text.lines().enumerate() {
        let mut kinds: Vec<FindingKind> = Vec::new();
        // Text claimed by an earlier pattern is not matched again, so the
        // `user@host` inside `scheme://user:pass@host` is not also an e-mail.
        let mut taken: Vec<std::ops::Range<usize>> = Vec::new();
        for pat in PATTERNS.iter() {
            for m in pat.re.find_iter(line) {
                let overlaps = taken.iter().any(|t| t.start < m.end() && m.start() < t.end);
                if overlaps {
                    continue;
                }
                if !(pat.check)(m.as_str()) {
                    // `scheme://user:$PASSWORD@host` is a placeholder, and
                    // still not an e-mail address.
                    if pat.kind == FindingKind::PasswordInUrl {
                        taken.push(m.range());
                    }
                    continue;
                }
                taken.push(m.range());
                if !kinds.contains(&pat.kind) {
                    kinds.push(pat.kind);
                }
            }
        }
        out.extend(kinds.into_iter().map(|kind| Finding {
            file: rel.to_owned(),
            line: i + 1,
            kind,
        }));
    }
    out
}

fn not_placeholder_password(m: &str) -> bool {
    let Some((_, rest)) = m.split_once("://") else {
        return false;
    };
    let creds = rest.rsplit_once('@').map(|(c, _)| c).unwrap_or("");
    let password = creds.split_once(':').map(|(_, p)| p).unwrap_or("");
    let lower = password.to_ascii_lowercase();
    !(lower.is_empty()
        || lower.starts_with('$')
        || lower.starts_with('<')
        || lower.starts_with('{')
        || matches!(
            lower.as_str(),
            "password" | "pass" | "secret" | "xxx" | "****" | "..."
        ))
}

fn not_example_email(m: &str) -> bool {
    let domain = m
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    let reserved = ["example.com", "example.org", "example.net"];
    let reserved_tlds = [".example", ".test", ".invalid", ".localhost"];
    !(reserved
        .iter()
        .any(|r| domain == *r || domain.ends_with(&format!(".{r}")))
        || reserved_tlds.iter().any(|t| domain.ends_with(t)))
}

fn phone_digits_ok(m: &str) -> bool {
    let digits = m.chars().filter(char::is_ascii_digit).count();
    (10..=15).contains(&digits)
}

fn iban_ok(m: &str) -> bool {
    let s: String = m.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&s.len()) {
        return false;
    }
    let (head, tail) = s.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn card_ok(m: &str) -> bool {
    let digits: Vec<u32> = m.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    // Known issuer prefixes keep ids and timestamps that happen to pass Luhn
    // out of the report.
    let prefix2 = digits[0] * 10 + digits[1];
    let issuer = digits[0] == 4
        || (51..=55).contains(&prefix2)
        || (22..=27).contains(&prefix2)
        || prefix2 == 34
        || prefix2 == 37
        || digits[0] == 6
        || prefix2 == 36
        || prefix2 == 35;
    issuer && luhn(&digits)
}

/// The Luhn checksum used by payment cards.
pub fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn patterns_compile() {
        assert_eq!(PATTERNS.len(), 14);
    }

    #[test]
    fn check_digit_helpers() {
        assert!(luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        assert!(iban_ok("GB82 WEST 1234 5698 7654 32"));
        assert!(!iban_ok("GB83 WEST 1234 5698 7654 32"));
    }

    #[test]
    fn placeholders_are_not_findings() {
        let text = b"mail me at someone@example.com\nhttps://user:$PASSWORD@db.internal\nversion 1.2.3-4\n";
        assert_eq!(scan_file("SKILL.md", text), vec![]);
    }
}
