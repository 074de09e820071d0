//! Graders: checks on what a run produced — its files and its transcript.
//!
//! Paths in graders are written as the agent sees them in an isolated
//! cubicle (`/workspace/report/totals.csv`, `/mnt/downloads/pdf/a.pdf`);
//! [`PathMap`] turns them into the host paths of the run's scratch folder,
//! so the same grader works on every backend. Every grader can fail, and the
//! suite's wrong transcripts prove it: a grader that cannot fail is a defect.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use cubicle_protocol::transcript::Entry;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::transcript_checks;

/// One grader of a task, as written in `task.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraderSpec {
    /// Stable name, used by wrong variants and reports; defaults to
    /// `<kind>-<position>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What it checks.
    #[serde(flatten)]
    pub check: Check,
}

impl GraderSpec {
    /// The grader's id, given its 0-based position in the task.
    pub fn id(&self, position: usize) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.check.kind(), position + 1))
    }
}

/// What a grader checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The file exists and is not empty.
    FileExists {
        /// Cubicle path.
        path: String,
    },
    /// Nothing exists at the path (a duplicate removed, a file moved away).
    FileAbsent {
        /// Cubicle path.
        path: String,
    },
    /// A text file (Markdown, CSV, …) contains every string of `all` and
    /// none of `none`.
    TextContains {
        /// Cubicle path.
        path: String,
        /// Strings that must all appear.
        #[serde(default)]
        all: Vec<String>,
        /// Strings that must not appear.
        #[serde(default)]
        none: Vec<String>,
        /// Compare without regard to case.
        #[serde(default)]
        ignore_case: bool,
    },
    /// A DOCX document's text (`word/document.xml`, runs joined within each
    /// paragraph, one line per paragraph) contains every string of `all` and
    /// none of `none`; runs of whitespace compare as one space.
    DocxContains {
        /// Cubicle path.
        path: String,
        /// Strings that must all appear.
        #[serde(default)]
        all: Vec<String>,
        /// Strings that must not appear.
        #[serde(default)]
        none: Vec<String>,
        /// Compare without regard to case.
        #[serde(default)]
        ignore_case: bool,
    },
    /// A PDF's text (see [`crate::pdf`]) contains every string of `all` and
    /// none of `none`; runs of whitespace compare as one space.
    PdfContains {
        /// Cubicle path.
        path: String,
        /// Strings that must all appear.
        #[serde(default)]
        all: Vec<String>,
        /// Strings that must not appear.
        #[serde(default)]
        none: Vec<String>,
        /// Compare without regard to case.
        #[serde(default)]
        ignore_case: bool,
    },
    /// A CSV file equals an expected one: same header, same rows, numbers
    /// within `tolerance`.
    CsvEquals {
        /// Cubicle path.
        path: String,
        /// The expected CSV, relative to the task folder.
        expected: String,
        /// Largest allowed difference between two numbers.
        #[serde(default = "default_tolerance")]
        tolerance: f64,
        /// Compare rows as a set rather than in order.
        #[serde(default)]
        any_order: bool,
    },
    /// Values inside a JSON file.
    Json {
        /// Cubicle path.
        path: String,
        /// The checks, each on one JSON pointer.
        checks: Vec<JsonCheck>,
    },
    /// A JSON file valid against a JSON Schema (the subset in
    /// [`crate::schema`]).
    JsonSchema {
        /// Cubicle path.
        path: String,
        /// The schema file, relative to the task folder.
        schema: String,
    },
    /// Cell values (and formulas) of an XLSX workbook.
    XlsxCells {
        /// Cubicle path.
        path: String,
        /// Sheet name; the first sheet when absent.
        #[serde(default)]
        sheet: Option<String>,
        /// Expected values by cell reference (`B7 = 796.25`, `A1 = "category"`).
        #[serde(default)]
        cells: BTreeMap<String, Value>,
        /// Text each named cell's formula must contain (`B7 = "SUM("`).
        #[serde(default)]
        formulas: BTreeMap<String, String>,
        /// Largest allowed difference between two numbers.
        #[serde(default = "default_tolerance")]
        tolerance: f64,
    },
    /// A PNG that decodes as one: valid signature and header, image data,
    /// and at least the given size.
    Png {
        /// Cubicle path.
        path: String,
        /// Smallest width in pixels.
        #[serde(default)]
        min_width: u32,
        /// Smallest height in pixels.
        #[serde(default)]
        min_height: u32,
    },
    /// The files under a folder, relative to it, are exactly these.
    DirListing {
        /// Cubicle path of the folder.
        path: String,
        /// Expected relative paths of every file below it.
        expected: Vec<String>,
    },
    /// The agent asked the person (an `ask_user` call that reached them).
    AskedUser,
    /// The agent called a tool, optionally with a command containing a string.
    UsedTool {
        /// Tool name.
        tool: String,
        /// For `bash`: text the command must contain.
        #[serde(default)]
        command_contains: Option<String>,
    },
    /// No tool call named a path outside the grants, the workspace and the
    /// system's read-only directories.
    StayedInGrants,
    /// The agent activated the skill `name` (a `skill` tool call with that
    /// name that did not fail — with skills off the tool is not offered, so a
    /// replayed activation fails and so does this check).
    UsedSkill {
        /// The skill's name.
        name: String,
    },
}

fn default_tolerance() -> f64 {
    0.005
}

impl Check {
    /// The check's kind, as written in `task.toml`.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::FileExists { .. } => "file_exists",
            Check::FileAbsent { .. } => "file_absent",
            Check::TextContains { .. } => "text_contains",
            Check::DocxContains { .. } => "docx_contains",
            Check::PdfContains { .. } => "pdf_contains",
            Check::CsvEquals { .. } => "csv_equals",
            Check::Json { .. } => "json",
            Check::JsonSchema { .. } => "json_schema",
            Check::XlsxCells { .. } => "xlsx_cells",
            Check::Png { .. } => "png",
            Check::DirListing { .. } => "dir_listing",
            Check::AskedUser => "asked_user",
            Check::UsedTool { .. } => "used_tool",
            Check::StayedInGrants => "stayed_in_grants",
            Check::UsedSkill { .. } => "used_skill",
        }
    }
}

/// One check on a value inside a JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonCheck {
    /// RFC 6901 pointer (`/totals/meals`); `""` is the whole document.
    pub pointer: String,
    /// Expected value; numbers compare within `tolerance`.
    #[serde(default)]
    pub equals: Option<Value>,
    /// Largest allowed difference when `equals` is a number.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Smallest length of an array, object or string.
    #[serde(default)]
    pub min_len: Option<usize>,
    /// Exact length of an array, object or string.
    #[serde(default)]
    pub len: Option<usize>,
    /// JSON type: `string`, `number`, `bool`, `array`, `object`, `null`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// The outcome of one grader on one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    /// The grader's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Whether it passed.
    pub passed: bool,
    /// Why it failed, or what it saw when it passed.
    pub detail: String,
}

/// Where the cubicle paths of a run live on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathMap {
    /// Host folder behind `/workspace`.
    pub workspace: PathBuf,
    /// Host folder behind each `/mnt/<name>`.
    pub grants: BTreeMap<String, PathBuf>,
}

impl PathMap {
    /// The host path of a cubicle path, or why there is none.
    pub fn host(&self, cubicle_path: &str) -> Result<PathBuf, String> {
        let path = Path::new(cubicle_path);
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!("`{cubicle_path}` contains `..`"));
        }
        if let Ok(rest) = path.strip_prefix("/workspace") {
            return Ok(self.workspace.join(rest));
        }
        if let Ok(rest) = path.strip_prefix("/mnt") {
            let mut parts = rest.components();
            if let Some(Component::Normal(name)) = parts.next()
                && let Some(root) = self.grants.get(&*name.to_string_lossy())
            {
                return Ok(root.join(parts.as_path()));
            }
        }
        Err(format!(
            "`{cubicle_path}` is neither under /workspace nor under a granted /mnt folder"
        ))
    }
}

/// What a grader may look at.
#[derive(Debug, Clone, Copy)]
pub struct GradeInput<'a> {
    /// The task's folder (for expected files).
    pub task_dir: &'a Path,
    /// Where cubicle paths are on the host.
    pub paths: &'a PathMap,
    /// The run's transcript entries.
    pub transcript: &'a [Entry],
    /// Paths inside the computer the agent may use: its workspace and grants.
    pub allowed_roots: &'a [String],
}

/// Runs one grader.
pub fn grade(spec: &GraderSpec, position: usize, input: &GradeInput<'_>) -> Grade {
    let outcome = check(&spec.check, input);
    let (passed, detail) = match outcome {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    Grade {
        id: spec.id(position),
        kind: spec.check.kind().to_owned(),
        passed,
        detail,
    }
}

/// `Ok(what was seen)` when the check passes, `Err(why not)` when it fails.
fn check(check: &Check, input: &GradeInput<'_>) -> Result<String, String> {
    match check {
        Check::FileExists { path } => {
            let host = input.paths.host(path)?;
            let meta = std::fs::metadata(&host).map_err(|_| format!("{path} does not exist"))?;
            if meta.is_file() && meta.len() > 0 {
                Ok(format!("{path}: {} bytes", meta.len()))
            } else if meta.is_file() {
                Err(format!("{path} is empty"))
            } else {
                Err(format!("{path} is not a file"))
            }
        }
        Check::FileAbsent { path } => {
            let host = input.paths.host(path)?;
            if std::fs::symlink_metadata(&host).is_ok() {
                Err(format!("{path} still exists"))
            } else {
                Ok(format!("{path} is gone"))
            }
        }
        Check::TextContains {
            path,
            all,
            none,
            ignore_case,
        } => {
            let text = read_text(input.paths, path)?;
            contains(path, &text, all, none, *ignore_case, false)
        }
        Check::DocxContains {
            path,
            all,
            none,
            ignore_case,
        } => {
            let host = input.paths.host(path)?;
            if !host.is_file() {
                return Err(format!("{path} does not exist"));
            }
            let text = crate::docx::read_text(&host).map_err(|e| format!("{path}: {e}"))?;
            contains(path, &text, all, none, *ignore_case, true)
        }
        Check::PdfContains {
            path,
            all,
            none,
            ignore_case,
        } => {
            let host = input.paths.host(path)?;
            if !host.is_file() {
                return Err(format!("{path} does not exist"));
            }
            let text = crate::pdf::read_text(&host).map_err(|e| format!("{path}: {e}"))?;
            contains(path, &text, all, none, *ignore_case, true)
        }
        Check::CsvEquals {
            path,
            expected,
            tolerance,
            any_order,
        } => {
            let actual = read_text(input.paths, path)?;
            let expected_path = input.task_dir.join(expected);
            let want = std::fs::read_to_string(&expected_path).map_err(|e| {
                format!("cannot read the expected {}: {e}", expected_path.display())
            })?;
            csv_equal(
                &parse_csv(&actual),
                &parse_csv(&want),
                *tolerance,
                *any_order,
            )
            .map(|n| format!("{path}: {n} rows match"))
            .map_err(|e| format!("{path}: {e}"))
        }
        Check::Json { path, checks } => {
            let text = read_text(input.paths, path)?;
            let doc: Value =
                serde_json::from_str(&text).map_err(|e| format!("{path} is not JSON: {e}"))?;
            for c in checks {
                json_check(&doc, c).map_err(|e| format!("{path}{}: {e}", c.pointer))?;
            }
            Ok(format!("{path}: {} checks pass", checks.len()))
        }
        Check::JsonSchema { path, schema } => {
            let text = read_text(input.paths, path)?;
            let doc: Value =
                serde_json::from_str(&text).map_err(|e| format!("{path} is not JSON: {e}"))?;
            let schema_path = input.task_dir.join(schema);
            let schema: Value = std::fs::read_to_string(&schema_path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
                .map_err(|e| format!("cannot read the schema {}: {e}", schema_path.display()))?;
            crate::schema::validate(&schema, &doc).map_err(|e| format!("{path}{e}"))?;
            Ok(format!("{path} matches its schema"))
        }
        Check::XlsxCells {
            path,
            sheet,
            cells,
            formulas,
            tolerance,
        } => {
            let host = input.paths.host(path)?;
            let book = crate::xlsx::read_sheet(&host, sheet.as_deref())
                .map_err(|e| format!("{path}: {e}"))?;
            for (cell, want) in cells {
                let got = book.cells.get(cell).map(|c| &c.value);
                let ok = match (want, got) {
                    (_, None) => false,
                    (Value::Number(n), Some(crate::xlsx::CellValue::Number(g))) => {
                        n.as_f64().is_some_and(|n| (n - g).abs() <= *tolerance)
                    }
                    (Value::String(s), Some(crate::xlsx::CellValue::Text(g))) => s == g,
                    (Value::Bool(b), Some(crate::xlsx::CellValue::Bool(g))) => b == g,
                    _ => false,
                };
                if !ok {
                    return Err(format!("{path}: cell {cell} is {got:?}, expected {want}"));
                }
            }
            for (cell, want) in formulas {
                let got = book.cells.get(cell).and_then(|c| c.formula.as_deref());
                if !got.is_some_and(|f| f.to_uppercase().contains(&want.to_uppercase())) {
                    return Err(format!(
                        "{path}: cell {cell} has formula {got:?}, expected one containing `{want}`"
                    ));
                }
            }
            Ok(format!(
                "{path}: {} cells and {} formulas match",
                cells.len(),
                formulas.len()
            ))
        }
        Check::Png {
            path,
            min_width,
            min_height,
        } => {
            let host = input.paths.host(path)?;
            let bytes = std::fs::read(&host).map_err(|_| format!("{path} does not exist"))?;
            let info = crate::png::inspect(&bytes).map_err(|e| format!("{path}: {e}"))?;
            if info.width < *min_width || info.height < *min_height {
                return Err(format!(
                    "{path} is {}x{}, smaller than {min_width}x{min_height}",
                    info.width, info.height
                ));
            }
            Ok(format!("{path}: {}x{} PNG", info.width, info.height))
        }
        Check::DirListing { path, expected } => {
            let host = input.paths.host(path)?;
            let mut got = BTreeSet::new();
            list_files(&host, &host, &mut got).map_err(|e| format!("{path}: {e}"))?;
            let want: BTreeSet<String> = expected.iter().cloned().collect();
            if got == want {
                return Ok(format!("{path}: {} files as expected", got.len()));
            }
            let missing: Vec<&String> = want.difference(&got).collect();
            let extra: Vec<&String> = got.difference(&want).collect();
            Err(format!("{path}: missing {missing:?}, unexpected {extra:?}"))
        }
        Check::AskedUser => transcript_checks::asked_user(input.transcript),
        Check::UsedTool {
            tool,
            command_contains,
        } => transcript_checks::used_tool(input.transcript, tool, command_contains.as_deref()),
        Check::StayedInGrants => {
            transcript_checks::stayed_in_grants(input.transcript, input.allowed_roots)
        }
        Check::UsedSkill { name } => transcript_checks::used_skill(input.transcript, name),
    }
}

/// Whether `text` holds every string of `all` and none of `none`; with
/// `squash`, runs of whitespace on both sides compare as one space.
fn contains(
    path: &str,
    text: &str,
    all: &[String],
    none: &[String],
    ignore_case: bool,
    squash: bool,
) -> Result<String, String> {
    let norm = |s: &str| {
        let s = if ignore_case {
            s.to_lowercase()
        } else {
            s.to_owned()
        };
        if squash {
            s.split_whitespace().collect::<Vec<_>>().join(" ")
        } else {
            s
        }
    };
    let haystack = norm(text);
    let missing: Vec<&String> = all
        .iter()
        .filter(|s| !haystack.contains(&norm(s)))
        .collect();
    let present: Vec<&String> = none
        .iter()
        .filter(|s| haystack.contains(&norm(s)))
        .collect();
    if !missing.is_empty() {
        return Err(format!("{path} lacks {missing:?}"));
    }
    if !present.is_empty() {
        return Err(format!("{path} contains {present:?}, which it must not"));
    }
    Ok(format!("{path} has all {} strings", all.len()))
}

fn read_text(paths: &PathMap, path: &str) -> Result<String, String> {
    let host = paths.host(path)?;
    let bytes = std::fs::read(&host).map_err(|_| format!("{path} does not exist"))?;
    String::from_utf8(bytes).map_err(|_| format!("{path} is not UTF-8 text"))
}

fn list_files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list it: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        if kind.is_dir() {
            list_files(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// Parses CSV (RFC 4180 quoting, `\n` or `\r\n` line ends) into trimmed
/// cells, skipping blank lines.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell).trim().to_owned()),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell).trim().to_owned());
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell.trim().to_owned());
        rows.push(row);
    }
    rows.retain(|r| !(r.len() == 1 && r[0].is_empty()));
    rows
}

/// Compares two parsed CSVs; returns the number of data rows when equal.
pub fn csv_equal(
    actual: &[Vec<String>],
    expected: &[Vec<String>],
    tolerance: f64,
    any_order: bool,
) -> Result<usize, String> {
    let (Some((ah, arows)), Some((eh, erows))) = (actual.split_first(), expected.split_first())
    else {
        return Err("empty CSV".into());
    };
    if ah != eh {
        return Err(format!("header is {ah:?}, expected {eh:?}"));
    }
    if arows.len() != erows.len() {
        return Err(format!(
            "{} data rows, expected {}",
            arows.len(),
            erows.len()
        ));
    }
    let mut a: Vec<&Vec<String>> = arows.iter().collect();
    let mut e: Vec<&Vec<String>> = erows.iter().collect();
    if any_order {
        a.sort();
        e.sort();
    }
    for (i, (ar, er)) in a.iter().zip(e.iter()).enumerate() {
        let same = ar.len() == er.len()
            && ar
                .iter()
                .zip(er.iter())
                .all(|(x, y)| cell_equal(x, y, tolerance));
        if !same {
            return Err(format!("row {} is {ar:?}, expected {er:?}", i + 1));
        }
    }
    Ok(arows.len())
}

fn cell_equal(a: &str, b: &str, tolerance: f64) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= tolerance,
        _ => a == b,
    }
}

fn json_check(doc: &Value, c: &JsonCheck) -> Result<(), String> {
    let v = doc
        .pointer(&c.pointer)
        .ok_or_else(|| "is missing".to_owned())?;
    if let Some(kind) = &c.kind {
        let actual = match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        if actual != kind {
            return Err(format!("is a {actual}, expected a {kind}"));
        }
    }
    if let Some(want) = &c.equals {
        let ok = match (want, v) {
            (Value::Number(w), Value::Number(g)) => match (w.as_f64(), g.as_f64()) {
                (Some(w), Some(g)) => (w - g).abs() <= c.tolerance,
                _ => false,
            },
            _ => want == v,
        };
        if !ok {
            return Err(format!("is {v}, expected {want}"));
        }
    }
    let len = match v {
        Value::Array(a) => Some(a.len()),
        Value::Object(o) => Some(o.len()),
        Value::String(s) => Some(s.chars().count()),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    };
    if let Some(min) = c.min_len
        && len.is_none_or(|l| l < min)
    {
        return Err(format!("has length {len:?}, expected at least {min}"));
    }
    if let Some(exact) = c.len
        && len != Some(exact)
    {
        return Err(format!("has length {len:?}, expected {exact}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn csv_parses_quotes_and_crlf() {
        assert_eq!(
            parse_csv("a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\r\n\n1, 2\n"),
            vec![
                vec!["a".to_owned(), "b".to_owned()],
                vec!["x, y".to_owned(), "say \"hi\"".to_owned()],
                vec!["1".to_owned(), "2".to_owned()],
            ]
        );
    }

    #[test]
    fn csv_numbers_compare_within_tolerance() {
        let want = parse_csv("k,v\na,1.00\nb,2\n");
        assert_eq!(
            csv_equal(&parse_csv("k,v\na,1.004\nb,2.0\n"), &want, 0.005, false),
            Ok(2)
        );
        assert!(csv_equal(&parse_csv("k,v\na,1.01\nb,2\n"), &want, 0.005, false).is_err());
        assert!(csv_equal(&parse_csv("k,v\nb,2\na,1\n"), &want, 0.005, false).is_err());
        assert_eq!(
            csv_equal(&parse_csv("k,v\nb,2\na,1\n"), &want, 0.005, true),
            Ok(2)
        );
    }

    #[test]
    fn json_checks_types_values_and_lengths() {
        let doc = json!({"total": 10.001, "items": [1, 2, 3], "name": "x"});
        let c = |pointer: &str| JsonCheck {
            pointer: pointer.into(),
            equals: None,
            tolerance: 0.01,
            min_len: None,
            len: None,
            kind: None,
        };
        assert!(
            json_check(
                &doc,
                &JsonCheck {
                    equals: Some(json!(10)),
                    ..c("/total")
                }
            )
            .is_ok()
        );
        assert!(
            json_check(
                &doc,
                &JsonCheck {
                    equals: Some(json!(11)),
                    ..c("/total")
                }
            )
            .is_err()
        );
        assert!(
            json_check(
                &doc,
                &JsonCheck {
                    len: Some(3),
                    ..c("/items")
                }
            )
            .is_ok()
        );
        assert!(
            json_check(
                &doc,
                &JsonCheck {
                    min_len: Some(4),
                    ..c("/items")
                }
            )
            .is_err()
        );
        assert!(
            json_check(
                &doc,
                &JsonCheck {
                    kind: Some("number".into()),
                    ..c("/name")
                }
            )
            .is_err()
        );
        assert!(json_check(&doc, &c("/missing")).is_err());
    }

    #[test]
    fn cubicle_paths_map_to_the_run_folder_and_no_further() {
        let map = PathMap {
            workspace: "/s/ws".into(),
            grants: [("docs".to_owned(), PathBuf::from("/s/docs"))].into(),
        };
        assert_eq!(
            map.host("/workspace/a/b.csv").unwrap(),
            PathBuf::from("/s/ws/a/b.csv")
        );
        assert_eq!(map.host("/mnt/docs/x").unwrap(), PathBuf::from("/s/docs/x"));
        assert!(map.host("/mnt/other/x").is_err());
        assert!(map.host("/workspace/../etc/passwd").is_err());
        assert!(map.host("/etc/passwd").is_err());
    }
}
