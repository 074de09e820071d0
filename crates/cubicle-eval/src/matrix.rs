//! Tweak matrices: one suite run once per *cell*, each cell changing how the
//! tasks run — the system prompt (a replacement or appended text), the tools
//! offered (e.g. without `ask_user`, without `bash`), skills on or off, the
//! backend. Replay plays the model's side verbatim, so a cell's change shows
//! up in the files and transcript checks: without `ask_user` the ambiguous
//! tasks' questions go unanswered and their `asked_user` graders fail; with
//! `skills = false` the tasks that ship skills cannot activate them, so their
//! `used_skill` graders fail.
//!
//! A matrix file is TOML:
//!
//! ```toml
//! [[cell]]
//! name = "baseline"
//!
//! [[cell]]
//! name = "no-ask"
//! without_tools = ["ask_user"]
//! system_prompt_append = "Never ask the person; decide yourself."
//! skills = false
//! backend = "host"
//! ```
//!
//! The report of a matrix run ([`MatrixReport`]) holds one [`SuiteReport`]
//! per cell; [`compare_matrix`] compares two of them cell by cell.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::compare::{Regression, Thresholds, compare};
use crate::error::EvalError;
use crate::report::{REPORT_VERSION, SuiteReport};

/// One cell of a matrix: a name and the changes it makes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// The cell's name, unique in its matrix (a plain folder name).
    pub name: String,
    /// Replaces the built-in system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Appended to the system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt_append: Option<String>,
    /// Tools not offered: computer tools (`bash`, `write`, …) are left out;
    /// `ask_user` makes the session one nobody answers questions in, so the
    /// agent's questions fail as they do under `--no-input`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without_tools: Vec<String>,
    /// Skills on or off (on when absent). On: the skills a task ships in its
    /// `skills/` folder are in the system prompt's catalog, the `skill` tool
    /// is offered, and their folders are at `/mnt/.skills/<name>`. Off: none
    /// of that, so in replay a recorded activation fails as an unknown tool,
    /// and `used_skill` graders (and whatever needed the skill) fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<bool>,
    /// Backend for this cell (`auto`, `jail`, `host`); the run's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

impl Cell {
    /// Whether the cell leaves out the tool `name`.
    pub fn removes(&self, name: &str) -> bool {
        self.without_tools.iter().any(|t| t == name)
    }

    /// The cell's changes in a few words, for reports.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.system_prompt {
            parts.push(format!(
                "system prompt replaced ({} chars)",
                p.chars().count()
            ));
        }
        if let Some(p) = &self.system_prompt_append {
            parts.push(format!("system prompt + {} chars", p.chars().count()));
        }
        if !self.without_tools.is_empty() {
            parts.push(format!("without {}", self.without_tools.join(", ")));
        }
        if let Some(s) = self.skills {
            parts.push(format!("skills {}", if s { "on" } else { "off" }));
        }
        if let Some(b) = &self.backend {
            parts.push(format!("backend {b}"));
        }
        if parts.is_empty() {
            "no changes".to_owned()
        } else {
            parts.join(" · ")
        }
    }
}

/// A matrix file: its cells, each a full run of the suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// The cells, in the order they run.
    #[serde(rename = "cell")]
    pub cells: Vec<Cell>,
}

impl Matrix {
    /// Reads and checks a matrix file.
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(EvalError::io(path))?;
        Self::parse(&text).map_err(|message| EvalError::Task {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses and checks a matrix.
    pub fn parse(text: &str) -> Result<Self, String> {
        let m: Matrix = toml::from_str(text).map_err(|e| e.to_string())?;
        if m.cells.is_empty() {
            return Err("a matrix needs at least one [[cell]]".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &m.cells {
            if c.name.is_empty() || c.name.starts_with('.') || c.name.contains(['/', '\\']) {
                return Err(format!("cell name `{}` is not a plain folder name", c.name));
            }
            if !names.insert(c.name.as_str()) {
                return Err(format!("two cells are named `{}`", c.name));
            }
            if c.system_prompt.is_some() && c.system_prompt_append.is_some() {
                return Err(format!(
                    "cell `{}` both replaces and appends to the system prompt; choose one",
                    c.name
                ));
            }
        }
        Ok(m)
    }
}

/// The result of a matrix run: one suite report per cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixReport {
    /// Format version ([`REPORT_VERSION`]).
    pub version: u32,
    /// Suite name.
    pub suite: String,
    /// One report per cell, in the matrix's order; each names its cell.
    pub cells: Vec<SuiteReport>,
}

impl MatrixReport {
    /// Gathers the cells' reports.
    pub fn new(suite: &str, cells: Vec<SuiteReport>) -> Self {
        Self {
            version: REPORT_VERSION,
            suite: suite.to_owned(),
            cells,
        }
    }

    /// The report of the cell named `name`.
    pub fn cell(&self, name: &str) -> Option<&SuiteReport> {
        self.cells.iter().find(|c| cell_name(c) == name)
    }

    /// Writes the report as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), EvalError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| EvalError::Report {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(EvalError::io(path))
    }

    /// Reads a report written by [`MatrixReport::save`].
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(EvalError::io(path))?;
        serde_json::from_str(&text).map_err(|e| EvalError::Report {
            path: path.to_owned(),
            message: format!("not a matrix report: {e}"),
        })
    }
}

/// A report as read from disk: one run, or a matrix of runs.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyReport {
    /// One run of a suite.
    Suite(Box<SuiteReport>),
    /// A matrix run.
    Matrix(MatrixReport),
}

impl AnyReport {
    /// Reads either kind of report.
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(EvalError::io(path))?;
        let is_matrix = serde_json::from_str::<serde_json::Value>(&text)
            .is_ok_and(|v| v.get("cells").is_some_and(serde_json::Value::is_array));
        if is_matrix {
            MatrixReport::load(path).map(AnyReport::Matrix)
        } else {
            SuiteReport::load(path).map(|r| AnyReport::Suite(Box::new(r)))
        }
    }
}

/// The name of the cell a report belongs to (`default` outside a matrix).
pub fn cell_name(r: &SuiteReport) -> &str {
    r.cell.as_ref().map_or("default", |c| c.name.as_str())
}

/// Regressions of `new` against `old`, cell by cell (matched by name); a
/// cell missing from `new` is a regression. Task names read `cell/task`.
pub fn compare_matrix(old: &MatrixReport, new: &MatrixReport, t: &Thresholds) -> Vec<Regression> {
    let mut out = Vec::new();
    for before in &old.cells {
        let name = cell_name(before);
        let Some(after) = new.cell(name) else {
            out.push(Regression {
                task: format!("{name}/*"),
                what: "the cell is missing from the new report".into(),
            });
            continue;
        };
        out.extend(compare(before, after, t).into_iter().map(|r| Regression {
            task: format!("{name}/{}", r.task),
            what: r.what,
        }));
    }
    out
}

/// The matrix report as Markdown: a summary table, then one section per cell.
pub fn markdown(m: &MatrixReport) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "# Eval matrix: {}\n\n| cell | changes | backend | passed | success |\n|---|---|---|---:|---:|\n",
        m.suite
    );
    for r in &m.cells {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {}/{} | {:.0} % |",
            cell_name(r),
            r.cell
                .as_ref()
                .map_or_else(|| "no changes".into(), Cell::describe),
            r.backend,
            r.aggregate.passed,
            r.aggregate.tasks,
            r.aggregate.success_rate * 100.0
        );
    }
    for r in &m.cells {
        let body = crate::render::markdown(r);
        let body = body.replacen(
            &format!("# Eval report: {}", r.suite),
            &format!("## Cell `{}`", cell_name(r)),
            1,
        );
        s.push('\n');
        s.push_str(&body);
    }
    s
}

/// The matrix report as one HTML page: one section per cell.
pub fn html(m: &MatrixReport) -> String {
    let esc = crate::render::escape;
    let mut s = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Eval matrix: {}</title><style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.pass{{color:#2e7d32}}.fail{{color:#c62828;font-weight:bold}}figure{{margin:1em 0}}figcaption{{font-weight:bold}}section{{border-top:2px solid #888;margin-top:2em}}</style></head><body>\n<h1>Eval matrix: {}</h1>\n",
        esc(&m.suite),
        esc(&m.suite)
    );
    for r in &m.cells {
        let page = crate::render::html(r);
        let body = page
            .split_once("<body>")
            .map_or(page.as_str(), |(_, b)| b)
            .rsplit_once("</body>")
            .map_or(page.as_str(), |(b, _)| b);
        let body = body
            .replacen("<h1>", "<h2>", 1)
            .replacen("</h1>", "</h2>", 1);
        s.push_str(&format!(
            "<section id=\"cell-{}\"><h2>Cell {} — {}</h2>{body}</section>\n",
            esc(cell_name(r)),
            esc(cell_name(r)),
            esc(&r
                .cell
                .as_ref()
                .map_or_else(|| "no changes".into(), Cell::describe))
        ));
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_cells_and_rejects_bad_ones() {
        let m = Matrix::parse(
            "[[cell]]\nname = \"base\"\n[[cell]]\nname = \"no-ask\"\nwithout_tools = [\"ask_user\"]\nsystem_prompt_append = \"x\"\nskills = false\nbackend = \"host\"\n",
        )
        .unwrap();
        assert_eq!(m.cells.len(), 2);
        assert!(m.cells[1].removes("ask_user"));
        assert_eq!(m.cells[0].describe(), "no changes");
        assert_eq!(
            m.cells[1].describe(),
            "system prompt + 1 chars · without ask_user · skills off · backend host"
        );
        for bad in [
            "",
            "[[cell]]\nname = \"a\"\n[[cell]]\nname = \"a\"\n",
            "[[cell]]\nname = \"../a\"\n",
            "[[cell]]\nname = \"a\"\nsystem_prompt = \"x\"\nsystem_prompt_append = \"y\"\n",
            "[[cell]]\nname = \"a\"\nunknown = 1\n",
        ] {
            assert!(Matrix::parse(bad).is_err(), "{bad}");
        }
    }
}
