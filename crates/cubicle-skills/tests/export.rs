//! Export: the secret and personal-data scan (one test per kind), `force`,
//! symbolic links, and preferences never travelling with the skill.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read as _;
use std::path::Path;

use common::simple_skill;
use cubicle_skills::{ExportError, Finding, FindingKind, Preferences, Skill, SkillSource, export};
use pretty_assertions::assert_eq;

fn skill_with(tmp: &Path, file: &str, content: &str) -> Skill {
    let dir = simple_skill(tmp, "shared", "A skill to share.");
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    Skill::load(&dir, SkillSource::User).unwrap()
}

fn refused(file: &str, content: &str) -> Vec<Finding> {
    let tmp = tempfile::tempdir().unwrap();
    let skill = skill_with(tmp.path(), file, content);
    let out = tmp.path().join("shared.skill");
    match export(&skill, &out, false) {
        Err(ExportError::Findings { findings, .. }) => {
            assert!(!out.exists(), "nothing is written when refused");
            findings
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Asserts that `content` in `file` is refused with exactly one finding of
/// `kind` on `line`, and that the message never shows the secret.
fn assert_refuses(file: &str, content: &str, secret: &str, line: usize, kind: FindingKind) {
    let findings = refused(file, content);
    assert_eq!(
        findings,
        vec![Finding {
            file: file.to_owned(),
            line,
            kind
        }]
    );
    let tmp = tempfile::tempdir().unwrap();
    let skill = skill_with(tmp.path(), file, content);
    let msg = export(&skill, &tmp.path().join("x.skill"), false)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&format!("{file}:")), "{msg}");
    assert!(!msg.contains(secret), "the report leaks the secret: {msg}");
}

#[test]
fn refuses_private_key() {
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----";
    assert_refuses(
        "keys/id",
        &format!("x\n{key}\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n"),
        key,
        2,
        FindingKind::PrivateKey,
    );
}

#[test]
fn refuses_aws_key() {
    let s = "AKIAIOSFODNN7EXAMPLE";
    assert_refuses(
        "config.ini",
        &format!("key = {s}\n"),
        s,
        1,
        FindingKind::AwsKey,
    );
}

#[test]
fn refuses_github_token() {
    let s = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
    assert_refuses(
        "run.sh",
        &format!("export GH={s}\n"),
        s,
        1,
        FindingKind::GitHubToken,
    );
}

#[test]
fn refuses_slack_token() {
    let s = "xoxb-1234567890-abcdefghijkl";
    assert_refuses(
        "notes.md",
        &format!("a\nb\nslack: {s}\n"),
        s,
        3,
        FindingKind::SlackToken,
    );
}

#[test]
fn refuses_anthropic_key() {
    let s = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345";
    assert_refuses(
        "call.py",
        &format!("KEY = \"{s}\"\n"),
        s,
        1,
        FindingKind::AnthropicKey,
    );
}

#[test]
fn refuses_openai_key() {
    let s = "sk-proj-abcdefghijklmnopqrstuvwx0123456789";
    assert_refuses(
        "call.py",
        &format!("KEY = \"{s}\"\n"),
        s,
        1,
        FindingKind::OpenAiKey,
    );
}

#[test]
fn refuses_google_api_key() {
    let s = "AIzaSyA1234567890abcdefghijklmnopqrstuv";
    assert_refuses(
        "maps.js",
        &format!("const k = '{s}';\n"),
        s,
        1,
        FindingKind::GoogleApiKey,
    );
}

#[test]
fn refuses_jwt() {
    let s = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    assert_refuses("token.txt", &format!("{s}\n"), s, 1, FindingKind::Jwt);
}

#[test]
fn refuses_password_in_url() {
    assert_refuses(
        "db.md",
        "connect to postgres://admin:hunter2@db.acme.internal/prod\n",
        "hunter2",
        1,
        FindingKind::PasswordInUrl,
    );
}

#[test]
fn refuses_env_file() {
    assert_refuses(".env", "DEBUG=1\n", "DEBUG=1", 0, FindingKind::EnvFile);
}

#[test]
fn refuses_email() {
    let s = "jane.doe@acme-corp.de";
    assert_refuses(
        "SIGNATURE.md",
        &format!("Regards, {s}\n"),
        s,
        1,
        FindingKind::Email,
    );
}

#[test]
fn refuses_phone_number() {
    let s = "+44 20 7946 0958";
    assert_refuses(
        "contacts.md",
        &format!("call {s} today\n"),
        s,
        1,
        FindingKind::PhoneNumber,
    );
}

#[test]
fn refuses_iban() {
    let s = "DE89 3704 0044 0532 0130 00";
    assert_refuses("bank.md", &format!("pay to {s}\n"), s, 1, FindingKind::Iban);
}

#[test]
fn refuses_credit_card() {
    let s = "4111 1111 1111 1111";
    assert_refuses(
        "card.txt",
        &format!("card {s}\n"),
        s,
        1,
        FindingKind::CreditCard,
    );
    // The same digits with a bad check digit are not a card.
    let tmp = tempfile::tempdir().unwrap();
    let skill = skill_with(tmp.path(), "card.txt", "card 4111 1111 1111 1112\n");
    assert!(export(&skill, &tmp.path().join("x.skill"), false).is_ok());
}

#[test]
fn force_exports_anyway_and_reports_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let skill = skill_with(tmp.path(), "card.txt", "card 4111 1111 1111 1111\n");
    let out = tmp.path().join("shared.skill");
    let report = export(&skill, &out, true).unwrap();
    assert_eq!(report.files, vec!["SKILL.md", "card.txt"]);
    assert_eq!(report.forced_findings.len(), 1);
    assert!(out.exists());
}

#[test]
fn symlinks_are_refused_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = simple_skill(tmp.path(), "linked", "Has a link.");
    std::fs::write(tmp.path().join("outside.txt"), "private").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside.txt"), dir.join("leak.txt")).unwrap();
    let skill = Skill::load(&dir, SkillSource::User).unwrap();
    let err = export(&skill, &tmp.path().join("x.skill"), true).unwrap_err();
    assert!(
        matches!(&err, ExportError::Symlinks { links, .. } if links == &vec!["leak.txt".to_owned()]),
        "{err}"
    );
}

#[test]
fn preferences_are_never_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    let skills = config.join("skills");
    let dir = simple_skill(&skills, "expenses", "Expense reports.");
    let mut prefs = Preferences::load(&config.join("preferences"), "expenses").unwrap();
    prefs.set("company", "Very Private Holdings").unwrap();
    assert!(
        !prefs.path().starts_with(&dir),
        "preferences live outside the skill"
    );
    let skill = Skill::load(&dir, SkillSource::User).unwrap();
    let out = tmp.path().join("expenses.skill");
    let report = export(&skill, &out, false).unwrap();
    assert_eq!(report.files, vec!["SKILL.md"]);
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let mut all = String::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        assert_eq!(f.name().unwrap(), "expenses/SKILL.md");
        f.read_to_string(&mut all).unwrap();
    }
    assert!(!all.contains("Very Private"));
}
