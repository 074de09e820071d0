//! Measures discovery of 1,000 skills (cold: a fresh index; warm: the same
//! index again, nothing changed) and the catalog's size for 100 skills.
//! Prints figures; asserts nothing. Run with
//! `cargo bench -p cubicle-skills --bench discover`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use cubicle_skills::{SkillIndex, SkillRoots, estimate_tokens};

fn write_skills(root: &std::path::Path, n: usize) {
    for i in 0..n {
        let name = format!("skill-{i:04}");
        let dir = root.join(&name);
        std::fs::create_dir_all(dir.join("scripts")).unwrap();
        std::fs::write(
            dir.join("SKILL.md"),
            format!(
                "---\nname: {name}\ndescription: Turns the receipts in a folder into an expense report spreadsheet, \
                 one sheet per month, with totals per category. Use when the person asks for expenses.\n\
                 license: Apache-2.0\nallowed-tools: Bash(python3 *) Read Write\nmetadata:\n  author: acme\n  version: \"1.0\"\n---\n\
                 # {name}\n\n{}\n",
                "Step by step instructions for the model. ".repeat(40)
            ),
        )
        .unwrap();
        std::fs::write(dir.join("scripts/run.py"), "print('hi')\n").unwrap();
    }
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("skills");
    write_skills(&root, 1000);
    let roots = SkillRoots {
        user: vec![root.clone()],
        ..SkillRoots::default()
    };

    let mut index = SkillIndex::new();
    let t = Instant::now();
    let d = index.discover(&roots);
    let cold = t.elapsed();
    assert_eq!(d.catalog.len(), 1000);

    let runs = 10;
    let t = Instant::now();
    for _ in 0..runs {
        let d = index.discover(&roots);
        assert_eq!(d.catalog.len(), 1000);
    }
    let warm = t.elapsed() / runs;

    let t = Instant::now();
    let d = cubicle_skills::discover(&roots);
    let uncached = t.elapsed();
    assert_eq!(d.catalog.len(), 1000);

    println!(
        "discover 1000 skills: cold (new index) {cold:?}, warm (cached index) {warm:?}, no index (files in page cache) {uncached:?}; goal warm <= 50ms"
    );

    let small = tmp.path().join("small");
    write_skills(&small, 100);
    let d = cubicle_skills::discover(&SkillRoots {
        user: vec![small],
        ..SkillRoots::default()
    });
    let text = d.catalog.render(usize::MAX);
    println!(
        "catalog for 100 skills: {} chars, ~{} tokens (chars/4), ~{} tokens per skill",
        text.chars().count(),
        estimate_tokens(&text),
        estimate_tokens(&text) / 100
    );
}
