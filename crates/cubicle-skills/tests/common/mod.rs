//! Helpers shared by the integration tests: skill folders and zips made to
//! order.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Writes `root/<folder>/SKILL.md` with `frontmatter` (without fences) and `body`.
pub fn write_skill(root: &Path, folder: &str, frontmatter: &str, body: &str) -> PathBuf {
    let dir = root.join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("SKILL.md"),
        format!("---\n{frontmatter}---\n{body}"),
    )
    .unwrap();
    dir
}

/// A minimal valid skill called `name`.
pub fn simple_skill(root: &Path, name: &str, description: &str) -> PathBuf {
    write_skill(
        root,
        name,
        &format!("name: {name}\ndescription: {description}\n"),
        &format!("# {name}\n\nDo the {name} thing.\n"),
    )
}

/// What a zip entry is.
pub enum ZipItem<'a> {
    /// A file with contents.
    File(&'a str, &'a [u8]),
    /// A folder.
    Dir(&'a str),
    /// A symbolic link to a target.
    Link(&'a str, &'a str),
}

/// Builds a zip from `items` (deflated).
pub fn make_zip(items: &[ZipItem<'_>]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for item in items {
        match item {
            ZipItem::File(name, data) => {
                zip.start_file(*name, opts).unwrap();
                zip.write_all(data).unwrap();
            }
            ZipItem::Dir(name) => zip.add_directory(*name, opts).unwrap(),
            ZipItem::Link(name, target) => zip.add_symlink(*name, *target, opts).unwrap(),
        }
    }
    zip.finish().unwrap().into_inner()
}

/// Every path under `root`, relative, sorted.
pub fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}
