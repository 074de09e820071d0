//! The `skill` tool's output and the preferences it carries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, RwLock};

use common::write_skill;
use cubicle_skills::{Preferences, SkillRoots, SkillTool, discover};
use cubicle_tools::Tool;
use pretty_assertions::assert_eq;
use serde_json::json;

fn setup() -> (tempfile::TempDir, SkillTool) {
    let tmp = tempfile::tempdir().unwrap();
    let skills = tmp.path().join("skills");
    let dir = write_skill(
        &skills,
        "expenses",
        "name: expenses\ndescription: Expense reports.\n",
        "Make a report for $ARGUMENTS.\nRun `python3 ${CUBICLE_SKILL_DIR}/scripts/total.py`\nor ${CLAUDE_SKILL_DIR}/ref.md.\n",
    );
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(dir.join("scripts/total.py"), "print(1)\n").unwrap();
    std::fs::write(dir.join("ref.md"), "ref\n").unwrap();
    write_skill(
        &skills,
        "plain",
        "name: plain\ndescription: Plain.\n",
        "No placeholders.",
    );
    write_skill(
        &skills,
        "deploy",
        "name: deploy\ndescription: Deploy.\ndisable-model-invocation: true\n",
        "x",
    );
    let roots = SkillRoots {
        user: vec![skills],
        ..SkillRoots::default()
    };
    let catalog = discover(&roots).catalog;
    let tool = SkillTool::new(
        Arc::new(RwLock::new(catalog)),
        Some(tmp.path().join("prefs")),
    );
    (tmp, tool)
}

#[test]
fn activation_substitutes_and_lists_files_and_appends_prefs() {
    let (tmp, tool) = setup();
    let mut prefs = Preferences::load(&tmp.path().join("prefs"), "expenses").unwrap();
    prefs.set("currency", "EUR").unwrap();
    prefs.set("company", "Acme GmbH").unwrap();
    let text = tool.activate("expenses", Some("March 2026")).unwrap();
    assert_eq!(
        text,
        "<skill name=\"expenses\" dir=\"/mnt/.skills/expenses\">\n\
         Make a report for March 2026.\n\
         Run `python3 /mnt/.skills/expenses/scripts/total.py`\n\
         or /mnt/.skills/expenses/ref.md.\n\
         </skill>\n\
         \n\
         Files bundled with this skill (read-only, under /mnt/.skills/expenses/):\n\
         - ref.md\n\
         - scripts/total.py\n\
         \n\
         <user_preferences skill=\"expenses\">\n\
         The person's own settings for this skill. Follow them unless the task says otherwise.\n\
         company: Acme GmbH\n\
         currency: EUR\n\
         </user_preferences>\n"
    );
}

#[test]
fn arguments_without_placeholder_are_appended() {
    let (_tmp, tool) = setup();
    let text = tool.activate("plain", Some("now")).unwrap();
    assert_eq!(
        text,
        "<skill name=\"plain\" dir=\"/mnt/.skills/plain\">\nNo placeholders.\n\nARGUMENTS: now\n</skill>\n"
    );
}

#[tokio::test]
async fn unknown_and_person_only_skills_are_errors() {
    let (_tmp, tool) = setup();
    let err = tool.activate("nope", None).unwrap_err().to_string();
    assert_eq!(
        err,
        "no skill named `nope`. Available skills: expenses, plain"
    );
    let err = tool.activate("deploy", None).unwrap_err().to_string();
    assert!(err.contains("only be started by the person"), "{err}");
    assert_eq!(tool.name(), "skill");
    let spec = tool.spec();
    assert_eq!(spec.input_schema["required"], json!(["name"]));
    assert_eq!(
        tool.summary(&json!({"name": "expenses", "arguments": "March"})),
        "Skill expenses March"
    );
}

#[test]
fn prefs_round_trip_and_unset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("preferences");
    let mut p = Preferences::load(&dir, "expenses").unwrap();
    assert!(p.is_empty());
    p.set("currency", "EUR").unwrap();
    p.set("reports.folder", "/mnt/Reports").unwrap();
    let again = Preferences::load(&dir, "expenses").unwrap();
    assert_eq!(
        again.entries(),
        vec![
            ("currency".to_owned(), "EUR".to_owned()),
            ("reports.folder".to_owned(), "/mnt/Reports".to_owned())
        ]
    );
    assert_eq!(again.path(), dir.join("expenses.toml"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(again.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let mut again = again;
    assert!(again.unset("currency").unwrap());
    assert!(!again.unset("currency").unwrap());
    assert_eq!(
        Preferences::load(&dir, "expenses").unwrap().get("currency"),
        None
    );
    assert!(again.set("bad key", "x").is_err());
    assert!(Preferences::load(&dir, "../escape").is_err());
}
