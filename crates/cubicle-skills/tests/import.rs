//! Import: round trips, name clashes, `--as`, and hostile archives, each
//! checked to leave nothing behind, inside or outside the install folder.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{ZipItem, make_zip, simple_skill, tree};
use cubicle_skills::import::import_archive_bytes;
use cubicle_skills::{
    ImportError, ImportLimits, Skill, SkillSource, export, import, import_with_limits,
};
use pretty_assertions::assert_eq;

const SKILL_MD: &[u8] = b"---\nname: hostile\ndescription: Looks harmless.\n---\nbody\n";

struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn root(&self) -> &Path {
        self.tmp.path()
    }
    fn install_dir(&self) -> PathBuf {
        self.root().join("home/skills")
    }
    fn write_archive(&self, bytes: &[u8]) -> String {
        let p = self.root().join("in/upload.skill");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p.to_string_lossy().into_owned()
    }
    /// Imports `bytes` expecting a refusal; checks nothing was left anywhere.
    fn refuse(&self, bytes: &[u8], limits: ImportLimits) -> ImportError {
        let src = self.write_archive(bytes);
        std::fs::create_dir_all(self.install_dir()).unwrap();
        let before = tree(self.root());
        let err = import_with_limits(&src, &self.install_dir(), None, limits).unwrap_err();
        assert_eq!(tree(self.root()), before, "the import left files behind");
        err
    }
}

#[test]
fn export_then_import_round_trips() {
    let sb = Sandbox::new();
    let dir = simple_skill(&sb.root().join("src"), "expenses", "Expense reports.");
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(dir.join("scripts/total.py"), "print(1)\n").unwrap();
    let skill = Skill::load(&dir, SkillSource::User).unwrap();
    let file = sb.root().join("expenses.skill");
    export(&skill, &file, false).unwrap();

    let report = import(file.to_str().unwrap(), &sb.install_dir(), None).unwrap();
    assert_eq!(report.name, "expenses");
    assert_eq!(report.files, 2);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(
        tree(&sb.install_dir()),
        vec![
            "expenses",
            "expenses/SKILL.md",
            "expenses/scripts",
            "expenses/scripts/total.py"
        ]
    );
    assert_eq!(
        std::fs::read(sb.install_dir().join("expenses/SKILL.md")).unwrap(),
        std::fs::read(dir.join("SKILL.md")).unwrap()
    );
}

#[test]
fn folder_import_and_name_clash_and_as() {
    let sb = Sandbox::new();
    let dir = simple_skill(&sb.root().join("src"), "expenses", "Expense reports.");
    let src = dir.to_str().unwrap();
    import(src, &sb.install_dir(), None).unwrap();

    let err = import(src, &sb.install_dir(), None).unwrap_err();
    assert!(matches!(err, ImportError::NameClash { ref name, .. } if name == "expenses"));
    assert!(err.to_string().contains("--as NEW-NAME"), "{err}");

    let report = import(src, &sb.install_dir(), Some("expenses-2")).unwrap();
    assert_eq!(report.name, "expenses-2");
    let copy = Skill::load(&sb.install_dir().join("expenses-2"), SkillSource::User).unwrap();
    assert_eq!(copy.name, "expenses-2");
    assert!(copy.warnings.is_empty(), "{:?}", copy.warnings);
    assert_eq!(copy.description, "Expense reports.");

    let err = import(src, &sb.install_dir(), Some("Bad Name")).unwrap_err();
    assert!(matches!(err, ImportError::InvalidName { .. }), "{err}");
    // No staging folders are left behind.
    assert_eq!(
        tree(&sb.install_dir())
            .iter()
            .filter(|p| p.starts_with('.'))
            .count(),
        0
    );
}

#[test]
fn imports_from_a_git_repository() {
    let git_ok = std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !git_ok {
        println!(
            "skipped: the `git` program is needed to make a test repository (apt-get install git)"
        );
        return;
    }
    let sb = Sandbox::new();
    let repo = sb.root().join("skills-repo");
    common::write_skill(
        &repo.join("skills"),
        "sorter",
        "name: sorter\ndescription: Sorts lists.\n",
        "Sort.\n",
    );
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=T",
                "-c",
                "user.email=t@example.com",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "skills"]);
    let url = format!("file://{}", repo.display());

    // The repository's root has no SKILL.md: a clear error.
    let err = import(&url, &sb.install_dir(), None).unwrap_err();
    assert!(matches!(err, ImportError::NoSkillFile), "{err}");
    let err = import(&format!("{url}#../etc"), &sb.install_dir(), None).unwrap_err();
    assert!(matches!(err, ImportError::NoSuchFolder { .. }), "{err}");

    let report = import(
        &format!("{url}#skills/sorter"),
        &sb.install_dir(),
        Some("list-sorter"),
    )
    .unwrap();
    assert_eq!(report.name, "list-sorter");
    assert_eq!(tree(&report.dir), ["SKILL.md"], "no .git is installed");

    let err = import(
        &format!("file://{}/missing", sb.root().display()),
        &sb.install_dir(),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("cannot fetch"), "{err}");
    let err = import("/no/such/thing.skill", &sb.install_dir(), None).unwrap_err();
    assert!(matches!(err, ImportError::NotFound { .. }));
}

#[test]
fn rejects_parent_traversal() {
    let sb = Sandbox::new();
    let zip = make_zip(&[
        ZipItem::File("SKILL.md", SKILL_MD),
        ZipItem::File("../evil.txt", b"x"),
    ]);
    let err = sb.refuse(&zip, ImportLimits::default());
    assert!(matches!(err, ImportError::UnsafePath { .. }), "{err}");
    let zip = make_zip(&[
        ZipItem::File("SKILL.md", SKILL_MD),
        ZipItem::File("a/../../evil.txt", b"x"),
    ]);
    assert!(matches!(
        sb.refuse(&zip, ImportLimits::default()),
        ImportError::UnsafePath { .. }
    ));
}

#[test]
fn rejects_absolute_paths() {
    let sb = Sandbox::new();
    let target = sb.root().join("abs-evil.txt");
    let zip = make_zip(&[
        ZipItem::File("SKILL.md", SKILL_MD),
        ZipItem::File(target.to_str().unwrap(), b"x"),
    ]);
    let err = sb.refuse(&zip, ImportLimits::default());
    assert!(matches!(err, ImportError::UnsafePath { .. }), "{err}");
    assert!(!target.exists());
    let zip = make_zip(&[
        ZipItem::File("SKILL.md", SKILL_MD),
        ZipItem::File("C:\\evil.txt", b"x"),
    ]);
    assert!(matches!(
        sb.refuse(&zip, ImportLimits::default()),
        ImportError::UnsafePath { .. }
    ));
}

#[test]
fn rejects_symlink_entries() {
    let sb = Sandbox::new();
    let zip = make_zip(&[
        ZipItem::File("SKILL.md", SKILL_MD),
        ZipItem::Link("passwd", "/etc/passwd"),
    ]);
    let err = sb.refuse(&zip, ImportLimits::default());
    assert!(
        matches!(err, ImportError::Symlink { ref entry } if entry == "passwd"),
        "{err}"
    );
}

#[test]
fn rejects_symlinks_in_folders() {
    let sb = Sandbox::new();
    let dir = simple_skill(&sb.root().join("src"), "linked", "x");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd")).unwrap();
    let err = import(dir.to_str().unwrap(), &sb.install_dir(), None).unwrap_err();
    assert!(matches!(err, ImportError::Symlink { .. }), "{err}");
    assert!(!sb.install_dir().join("linked").exists());
}

#[test]
fn rejects_zip_bomb_by_ratio() {
    let sb = Sandbox::new();
    let zeros = vec![0u8; 8 * 1024 * 1024];
    let zip = make_zip(&[
        ZipItem::File("SKILL.md", SKILL_MD),
        ZipItem::File("bomb.bin", &zeros),
    ]);
    assert!(zip.len() < 100 * 1024, "the bomb is small: {}", zip.len());
    let err = sb.refuse(&zip, ImportLimits::default());
    assert!(matches!(err, ImportError::CompressionRatio { .. }), "{err}");
}

#[test]
fn rejects_oversized_file_total_and_entry_count() {
    let sb = Sandbox::new();
    let limits = ImportLimits {
        max_entries: 5,
        max_file_bytes: 1000,
        max_total_bytes: 1500,
        max_ratio: 100,
    };
    let big = vec![b'a'; 1001];
    let zip = make_zip(&[
        ZipItem::File("SKILL.md", SKILL_MD),
        ZipItem::File("big", &big),
    ]);
    assert!(matches!(
        sb.refuse(&zip, limits),
        ImportError::FileTooLarge { .. }
    ));

    let part = vec![b'a'; 900];
    let zip = make_zip(&[
        ZipItem::File("SKILL.md", SKILL_MD),
        ZipItem::File("p1", &part),
        ZipItem::File("p2", &part),
    ]);
    assert!(matches!(
        sb.refuse(&zip, limits),
        ImportError::TotalTooLarge { .. }
    ));

    let names: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    let mut items = vec![ZipItem::File("SKILL.md", SKILL_MD)];
    items.extend(names.iter().map(|n| ZipItem::File(n, b"x")));
    let zip = make_zip(&items);
    assert!(matches!(
        sb.refuse(&zip, limits),
        ImportError::TooManyEntries { limit: 5 }
    ));
}

#[test]
fn rejects_duplicate_names() {
    let sb = Sandbox::new();
    // Same name differing by case: one file on macOS and Windows.
    let zip = make_zip(&[
        ZipItem::File("SKILL.md", SKILL_MD),
        ZipItem::File("notes.md", b"a"),
        ZipItem::File("NOTES.md", b"b"),
    ]);
    let err = sb.refuse(&zip, ImportLimits::default());
    assert!(matches!(err, ImportError::Duplicate { .. }), "{err}");

    // The exact same name twice: the zip writer refuses that, so rename an
    // entry in the bytes (names are not covered by the CRC).
    let zip = make_zip(&[
        ZipItem::File("SKILL.md", SKILL_MD),
        ZipItem::File("aaaa.md", b"first"),
        ZipItem::File("bbbb.md", b"second"),
    ]);
    let patched = replace_all(&zip, b"bbbb.md", b"aaaa.md");
    let err = sb.refuse(&patched, ImportLimits::default());
    assert!(
        matches!(err, ImportError::Duplicate { ref entry } if entry == "aaaa.md"),
        "{err}"
    );
}

#[test]
fn rejects_archives_without_skill_md_and_garbage() {
    let sb = Sandbox::new();
    let zip = make_zip(&[ZipItem::File("README.md", b"hi")]);
    assert!(matches!(
        sb.refuse(&zip, ImportLimits::default()),
        ImportError::NoSkillFile
    ));
    let err = sb.refuse(b"PK\x03\x04 definitely not a zip", ImportLimits::default());
    assert!(matches!(err, ImportError::NotAnArchive { .. }), "{err}");
    let bad_yaml = make_zip(&[ZipItem::File("s/SKILL.md", b"---\nname: [oops\n---\n")]);
    assert!(matches!(
        sb.refuse(&bad_yaml, ImportLimits::default()),
        ImportError::Invalid(_)
    ));
}

#[test]
fn in_memory_upload_uses_top_folder() {
    let sb = Sandbox::new();
    let zip = make_zip(&[
        ZipItem::Dir("hostile/"),
        ZipItem::File("hostile/SKILL.md", SKILL_MD),
        ZipItem::File("__MACOSX/hostile/._SKILL.md", b"junk"),
    ]);
    // `__MACOSX` sits beside the top folder; it is junk and skipped.
    let report =
        import_archive_bytes(&zip, &sb.install_dir(), None, ImportLimits::default()).unwrap();
    assert_eq!(report.name, "hostile");
    assert_eq!(tree(&sb.install_dir()), vec!["hostile", "hostile/SKILL.md"]);
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = haystack.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}
