//! Paths inside the cubicle: lexical normalisation of the paths tools are
//! called with, and the gitignore-style patterns of `Read(...)`, `Edit(...)`
//! and `Write(...)` rules.
//!
//! Normalisation is lexical (no file system is consulted: the policy is pure),
//! so `/mnt/x/../secret/a` is `/mnt/secret/a` before any rule sees it. A
//! symbolic link inside the cubicle can still give a file a second name; the
//! mounts, not these rules, are what keeps the person's other files out.

use globset::{Glob, GlobBuilder, GlobMatcher};

/// The session's scratch folder inside the cubicle; relative paths start here.
pub const WORKSPACE: &str = "/workspace";

/// Normalises a path as a tool would resolve it: relative paths are under
/// `/workspace`, `.` and empty segments vanish, `..` removes one segment (and
/// stops at `/`).
pub fn normalize(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let joined;
    let full = if path.starts_with('/') {
        path
    } else {
        joined = format!("{WORKSPACE}/{path}");
        &joined
    };
    for segment in full.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(full.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Whether normalised `path` is `dir` or inside it.
pub fn is_within(path: &str, dir: &str) -> bool {
    path == dir
        || (path.starts_with(dir)
            && (dir.ends_with('/') || path.as_bytes().get(dir.len()) == Some(&b'/')))
}

/// A compiled gitignore-style path pattern.
///
/// - `/mnt/contracts/**` — absolute: anchored at `/`.
/// - `//mnt/x` — Claude Code's spelling of an absolute path: same as `/mnt/x`.
/// - `*.xlsx` — no slash: matches that file name in any folder.
/// - `reports/*.md` — a slash inside: relative to `/workspace`.
/// - `/mnt/secret` or `/mnt/secret/` — also matches everything inside the
///   folder, as in `.gitignore`.
/// - `*` stays within one path segment; `**` crosses segments; `?` and `[...]`
///   work as in globs.
/// - `~/...` is refused: the cubicle has no home folder of the person's.
#[derive(Debug, Clone)]
pub struct PathPattern {
    /// Matches the path itself.
    exact: GlobMatcher,
    /// Matches anything inside a folder the pattern names.
    inside: GlobMatcher,
    /// For `dir/**`: matches `dir` itself, so a search of `dir` is covered.
    folder: Option<GlobMatcher>,
    /// The part before the first wildcard, when the pattern is anchored;
    /// used to tell whether a search starting higher up reaches it.
    literal_prefix: Option<String>,
}

impl PathPattern {
    /// Compiles a pattern, or says in words what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("the path pattern is empty".into());
        }
        if pattern == "~" || pattern.starts_with("~/") {
            return Err(
                "\"~\" means nothing inside the cubicle: write the folder's path under /mnt".into(),
            );
        }
        if pattern.contains('\0') {
            return Err("the path pattern contains a NUL character".into());
        }
        let trimmed = pattern.strip_prefix('/').unwrap_or(pattern);
        let anchored_text = if pattern.starts_with('/') {
            // `//x` (Claude Code's absolute form) and `/x` are both `/x`.
            format!("/{}", trimmed.trim_start_matches('/'))
        } else if trimmed.trim_end_matches('/').contains('/') {
            format!("{WORKSPACE}/{trimmed}")
        } else {
            format!("**/{trimmed}")
        };
        let base = anchored_text.trim_end_matches('/');
        let base = if base.is_empty() { "/" } else { base };
        let base = if base.starts_with('/') {
            normalize_pattern(base)
        } else {
            base.to_string()
        };
        let exact = compile(&base)?;
        let inside_text = if base.ends_with('/') {
            format!("{base}**")
        } else {
            format!("{base}/**")
        };
        let inside = compile(&inside_text)?;
        let folder = match base.strip_suffix("/**") {
            Some("") => None,
            Some(dir) => Some(compile(dir)?.compile_matcher()),
            None => None,
        };
        let literal_prefix = if base.starts_with('/') {
            let end = base.find(['*', '?', '[', '{']).unwrap_or(base.len());
            let prefix = &base[..end];
            // Cut back to a whole segment: `/mnt/sec*` reaches into `/mnt`.
            let prefix = if end < base.len() {
                prefix
                    .rsplit_once('/')
                    .map_or("/", |(head, _)| if head.is_empty() { "/" } else { head })
            } else {
                prefix
            };
            Some(prefix.to_string())
        } else {
            None
        };
        Ok(PathPattern {
            exact: exact.compile_matcher(),
            inside: inside.compile_matcher(),
            folder,
            literal_prefix,
        })
    }

    /// Whether normalised `path` is matched by the pattern (itself or inside a matched folder).
    pub fn matches(&self, path: &str) -> bool {
        self.exact.is_match(path)
            || self.inside.is_match(path)
            || self.folder.as_ref().is_some_and(|f| f.is_match(path))
    }

    /// Whether a search of the folder `root` (normalised) could read files the
    /// pattern names: the root is matched, or the pattern's fixed part lies inside it.
    pub fn reached_from(&self, root: &str) -> bool {
        self.matches(root)
            || self
                .literal_prefix
                .as_deref()
                .is_some_and(|prefix| is_within(prefix, root))
    }
}

/// Resolves `.` and `..` in an anchored pattern's literal segments, so that
/// `/mnt/x/../secret/**` means what it says.
fn normalize_pattern(pattern: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in pattern.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    if segments.is_empty() {
        return "/".into();
    }
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        out.push_str(segment);
    }
    out
}

fn compile(pattern: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("{pattern:?} is not a valid path pattern: {}", e.kind()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn normalize_resolves_dots_and_relative_paths() {
        let cases = [
            ("/mnt/x/../secret/a", "/mnt/secret/a"),
            ("/mnt/./x//y/", "/mnt/x/y"),
            ("report.xlsx", "/workspace/report.xlsx"),
            ("./a/../b", "/workspace/b"),
            ("../mnt/secret", "/mnt/secret"),
            ("../../../../etc/passwd", "/etc/passwd"),
            ("/..", "/"),
            ("/", "/"),
            ("", "/workspace"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "normalize({input:?})");
        }
    }

    #[test]
    fn is_within_respects_segment_boundaries() {
        assert!(is_within("/mnt/a/b", "/mnt/a"));
        assert!(is_within("/mnt/a", "/mnt/a"));
        assert!(!is_within("/mnt/ab", "/mnt/a"));
        assert!(is_within("/anything", "/"));
    }

    fn m(pattern: &str, path: &str) -> bool {
        PathPattern::parse(pattern).unwrap().matches(path)
    }

    #[test]
    fn absolute_patterns_anchor_at_root() {
        assert!(m("/mnt/contracts/**", "/mnt/contracts/a/b.pdf"));
        assert!(m("/mnt/contracts/**", "/mnt/contracts"));
        assert!(!m("/mnt/contracts/**", "/mnt/contracts-old/a"));
        assert!(!m("/mnt/contracts/**", "/workspace/mnt/contracts/a"));
        assert!(m("//mnt/contracts/*.pdf", "/mnt/contracts/a.pdf"));
    }

    #[test]
    fn single_star_stays_in_one_segment() {
        assert!(m("/mnt/*/a.txt", "/mnt/x/a.txt"));
        assert!(!m("/mnt/*.txt", "/mnt/x/a.txt"));
        assert!(m("/mnt/**/*.xlsx", "/mnt/Reports/2024/q3.xlsx"));
        assert!(m("/mnt/**/*.xlsx", "/mnt/q3.xlsx"));
        assert!(m("/mnt/file?.txt", "/mnt/file1.txt"));
        assert!(m("/mnt/file[0-9].txt", "/mnt/file7.txt"));
        assert!(!m("/mnt/file[0-9].txt", "/mnt/fileA.txt"));
    }

    #[test]
    fn a_bare_name_matches_anywhere() {
        assert!(m("*.xlsx", "/mnt/Reports/q3.xlsx"));
        assert!(m("*.xlsx", "/workspace/q3.xlsx"));
        assert!(m(".env", "/mnt/app/.env"));
        assert!(!m("*.xlsx", "/mnt/Reports/q3.xlsx.bak"));
    }

    #[test]
    fn a_relative_path_is_under_the_workspace() {
        assert!(m("reports/*.md", "/workspace/reports/a.md"));
        assert!(!m("reports/*.md", "/mnt/reports/a.md"));
    }

    #[test]
    fn a_folder_pattern_covers_its_contents() {
        assert!(m("/mnt/secret", "/mnt/secret/a/b"));
        assert!(m("/mnt/secret/", "/mnt/secret/a"));
        assert!(m("secret", "/mnt/x/secret/a"));
        assert!(!m("/mnt/secret", "/mnt/secretive"));
        assert!(m("/", "/anything/at/all"));
    }

    #[test]
    fn pattern_dots_are_resolved() {
        assert!(m("/mnt/x/../secret/**", "/mnt/secret/a"));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        assert!(PathPattern::parse("~/x").unwrap_err().contains("~"));
        assert!(PathPattern::parse("").unwrap_err().contains("empty"));
        assert!(
            PathPattern::parse("/mnt/[a")
                .unwrap_err()
                .contains("not a valid path pattern")
        );
    }

    #[test]
    fn a_search_reaches_patterns_below_its_root() {
        let p = PathPattern::parse("/mnt/secret/**").unwrap();
        assert!(p.reached_from("/mnt"));
        assert!(p.reached_from("/"));
        assert!(p.reached_from("/mnt/secret/sub"));
        assert!(!p.reached_from("/mnt/other"));
        assert!(!p.reached_from("/workspace"));
        let wild = PathPattern::parse("/mnt/sec*/**").unwrap();
        assert!(wild.reached_from("/mnt"));
        let unanchored = PathPattern::parse("*.env").unwrap();
        assert!(!unanchored.reached_from("/mnt"));
    }
}
