//! Discovery, precedence, lenient parsing, hostile YAML and the catalog.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{simple_skill, write_skill};
use cubicle_skills::{
    Notice, ProjectFolder, SkillIndex, SkillRoots, SkillSource, discover, estimate_tokens,
};
use pretty_assertions::assert_eq;

struct Dirs {
    _tmp: tempfile::TempDir,
    managed: PathBuf,
    user: PathBuf,
    claude: PathBuf,
    project: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let d = Dirs {
        managed: tmp.path().join("etc/skills"),
        user: tmp.path().join("config/skills"),
        claude: tmp.path().join("home/.claude/skills"),
        project: tmp.path().join("work"),
        _tmp: tmp,
    };
    for p in [&d.managed, &d.user, &d.claude, &d.project] {
        std::fs::create_dir_all(p).unwrap();
    }
    d
}

fn roots(d: &Dirs, trusted: bool) -> SkillRoots {
    SkillRoots {
        managed: vec![d.managed.clone()],
        user: vec![d.user.clone(), d.claude.clone()],
        projects: vec![ProjectFolder {
            path: d.project.clone(),
            trusted,
        }],
        plugins: Vec::new(),
    }
}

#[test]
fn precedence_is_managed_then_user_then_project_and_shadows_are_reported() {
    let d = dirs();
    simple_skill(&d.managed, "report", "managed report");
    simple_skill(&d.user, "report", "user report");
    simple_skill(&d.user, "mine", "user mine");
    simple_skill(&d.claude, "mine", "claude mine");
    simple_skill(&d.project.join(".claude/skills"), "mine", "project mine");
    simple_skill(&d.project.join(".agents/skills"), "proj", "project only");

    let found = discover(&roots(&d, true));
    let got: Vec<(String, String, SkillSource)> = found
        .catalog
        .skills()
        .iter()
        .map(|s| (s.name.clone(), s.description.clone(), s.source.clone()))
        .collect();
    let project = SkillSource::Project {
        folder: d.project.clone(),
    };
    assert_eq!(
        got,
        vec![
            ("mine".into(), "user mine".into(), SkillSource::User),
            ("proj".into(), "project only".into(), project.clone()),
            (
                "report".into(),
                "managed report".into(),
                SkillSource::Managed
            ),
        ]
    );
    let shadows: Vec<(String, PathBuf, PathBuf)> = found
        .notices
        .iter()
        .filter_map(|n| match n {
            Notice::Shadowed {
                name,
                winner,
                shadowed,
                ..
            } => Some((name.clone(), winner.clone(), shadowed.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        shadows,
        vec![
            (
                "report".into(),
                d.managed.join("report"),
                d.user.join("report")
            ),
            ("mine".into(), d.user.join("mine"), d.claude.join("mine")),
            (
                "mine".into(),
                d.user.join("mine"),
                d.project.join(".claude/skills/mine")
            ),
        ]
    );
    let text = found.notices[0].to_string();
    assert!(text.contains("shadowed by"), "{text}");
}

#[test]
fn untrusted_project_skills_are_ignored_with_a_notice() {
    let d = dirs();
    simple_skill(&d.project.join(".cubicle/skills"), "proj", "project only");
    let found = discover(&roots(&d, false));
    assert!(found.catalog.is_empty());
    assert_eq!(
        found.notices,
        vec![Notice::Untrusted {
            dir: d.project.join(".cubicle/skills")
        }]
    );
}

#[test]
fn unknown_key_and_bad_value_are_warnings_with_lines() {
    let d = dirs();
    let dir = write_skill(
        &d.user,
        "lenient",
        "name: lenient\ndescription: ok\nfavourite-colour: blue\ndisable-model-invocation: maybe\nallowed-tools: Bash(git add *) Read\n",
        "body\n",
    );
    let found = discover(&roots(&d, true));
    let skill = found.catalog.get("lenient").expect("still loads");
    assert_eq!(
        skill.frontmatter.allowed_tools,
        vec!["Bash(git add *)", "Read"]
    );
    assert!(!skill.frontmatter.disable_model_invocation);
    let warnings: Vec<String> = skill.warnings.iter().map(ToString::to_string).collect();
    let file = dir.join("SKILL.md");
    assert_eq!(
        warnings,
        vec![
            format!(
                "{}:4: unknown key `favourite-colour`; ignored",
                file.display()
            ),
            format!(
                "{}:5: `disable-model-invocation` should be true or false; ignored",
                file.display()
            ),
        ]
    );
    assert!(
        found
            .notices
            .iter()
            .any(|n| matches!(n, Notice::Warning(_)))
    );
}

#[test]
fn name_mismatch_and_bad_name_warn() {
    let d = dirs();
    write_skill(&d.user, "folder", "name: Other_Name\ndescription: x\n", "");
    let found = discover(&roots(&d, true));
    let skill = found.catalog.get("Other_Name").unwrap();
    let msgs: Vec<&str> = skill.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs[0].contains("not allowed"));
    assert!(msgs[1].contains("does not match its folder `folder`"));
}

#[test]
fn malformed_yaml_skips_that_skill_only() {
    let d = dirs();
    write_skill(
        &d.user,
        "broken",
        "name: broken\ndescription: [unclosed\n",
        "",
    );
    write_skill(&d.user, "nofm", "", "");
    std::fs::write(d.user.join("nofm/SKILL.md"), "just text\n").unwrap();
    write_skill(&d.user, "list", "- a\n- b\n", "");
    simple_skill(&d.user, "fine", "works");
    let found = discover(&roots(&d, true));
    let names: Vec<&str> = found
        .catalog
        .skills()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, vec!["fine"]);
    let skipped: Vec<String> = found
        .notices
        .iter()
        .filter(|n| matches!(n, Notice::Skipped { .. }))
        .map(ToString::to_string)
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(
        skipped[0].contains("broken") && skipped[0].contains("invalid YAML"),
        "{}",
        skipped[0]
    );
    assert!(skipped[1].contains("must be a mapping"), "{}", skipped[1]);
    assert!(skipped[2].contains("no YAML frontmatter"), "{}", skipped[2]);
}

fn assert_hostile_is_refused(yaml: &str) {
    let start = Instant::now();
    let err = cubicle_skills::frontmatter::parse(yaml, Path::new("SKILL.md"), 2);
    assert!(err.is_err(), "hostile YAML was accepted");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn billion_laughs_is_bounded() {
    let mut yaml = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (prev, cur) in ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i", "j"])
    {
        yaml.push_str(&format!(
            "{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    yaml.push_str("name: lol\ndescription: *j\n");
    assert_hostile_is_refused(&yaml);
}

#[test]
fn deep_nesting_is_bounded() {
    let depth = 10_000;
    let yaml = format!("metadata: {}{}\n", "[".repeat(depth), "]".repeat(depth));
    assert_hostile_is_refused(&yaml);
    let mut block = String::from("metadata:\n");
    for i in 0..200 {
        block.push_str(&" ".repeat(i + 1));
        block.push_str("k:\n");
    }
    assert_hostile_is_refused(&block);
}

#[test]
fn huge_frontmatter_is_bounded() {
    let yaml = format!("name: big\ndescription: {}\n", "x".repeat(10 * 1024 * 1024));
    assert_hostile_is_refused(&yaml);
    let many: String = (0..50_000).map(|i| format!("k{i}: v\n")).collect();
    assert_hostile_is_refused(&many);
    let text = format!("---\n{yaml}---\nbody");
    assert!(matches!(
        cubicle_skills::frontmatter::split(&text),
        Err(cubicle_skills::FrontmatterError::TooLarge { .. })
    ));
}

#[test]
fn catalog_keeps_to_its_budget_and_leaves_out_person_only_skills() {
    let d = dirs();
    for i in 0..30 {
        simple_skill(
            &d.user,
            &format!("skill-{i:02}"),
            "Turns receipts into an expense report spreadsheet with totals per category.",
        );
    }
    write_skill(
        &d.user,
        "secret-deploy",
        "name: secret-deploy\ndescription: Deploys.\ndisable-model-invocation: true\n",
        "",
    );
    let found = discover(&roots(&d, true));
    assert_eq!(found.catalog.len(), 31);
    let full = found.catalog.render(100_000);
    assert!(!full.contains("secret-deploy"));
    assert_eq!(full.matches("\n- skill-").count(), 30);
    assert!(!full.contains("more skills"));

    let budget = 300;
    let small = found.catalog.render(budget);
    assert!(
        estimate_tokens(&small) <= budget,
        "{} > {budget}",
        estimate_tokens(&small)
    );
    let listed = small.matches("\n- skill-").count();
    assert!(listed > 0 && listed < 30, "{listed}");
    assert!(
        small.contains(&format!("({} more skills", 30 - listed)),
        "{small}"
    );
    assert_eq!(found.catalog.render(10), "");
}

#[test]
fn index_rereads_only_changed_skills() {
    let d = dirs();
    simple_skill(&d.user, "a", "first");
    let r = roots(&d, true);
    let mut index = SkillIndex::new();
    assert_eq!(
        index.discover(&r).catalog.get("a").unwrap().description,
        "first"
    );
    // A different size guarantees the stamp changes even on coarse clocks.
    simple_skill(&d.user, "a", "second, longer");
    assert_eq!(
        index.discover(&r).catalog.get("a").unwrap().description,
        "second, longer"
    );
    std::fs::remove_dir_all(d.user.join("a")).unwrap();
    assert!(index.discover(&r).catalog.is_empty());
}

#[test]
fn project_skill_links_are_not_followed_but_user_links_are() {
    let d = dirs();
    let elsewhere = d.project.parent().unwrap().join("elsewhere");
    simple_skill(&elsewhere, "linked", "Lives elsewhere.");
    let project_skills = d.project.join(".cubicle/skills");
    std::fs::create_dir_all(&project_skills).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("linked"), project_skills.join("linked")).unwrap();
    let found = discover(&roots(&d, true));
    assert!(found.catalog.is_empty());
    assert_eq!(
        found.notices,
        vec![Notice::Skipped {
            dir: project_skills.join("linked"),
            reason: "symbolic links are not followed in project folders".to_owned(),
        }]
    );
    std::os::unix::fs::symlink(elsewhere.join("linked"), d.user.join("linked")).unwrap();
    let found = discover(&roots(&d, true));
    assert_eq!(
        found.catalog.get("linked").unwrap().source,
        SkillSource::User
    );
}
