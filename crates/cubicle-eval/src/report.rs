//! What a run of a suite produced: one [`TaskReport`] per task and their
//! [`Aggregate`], serialised as the JSON that `cubicle eval compare` reads.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::grader::Grade;

/// Version of the report format this build writes.
pub const REPORT_VERSION: u32 = 1;

/// The result of one run of a suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    /// Format version ([`REPORT_VERSION`]).
    pub version: u32,
    /// Suite name.
    pub suite: String,
    /// `replay` or `live`.
    pub mode: String,
    /// `provider:model`, or what was replayed.
    pub model: String,
    /// Backend the tasks ran on.
    pub backend: String,
    /// When the run started, RFC 3339.
    pub started_at: String,
    /// The matrix cell this run was, when it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<crate::matrix::Cell>,
    /// One entry per task, sorted by id.
    pub tasks: Vec<TaskReport>,
    /// Totals over the tasks.
    pub aggregate: Aggregate,
}

/// The result of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// Task id.
    pub id: String,
    /// Area of work.
    pub category: String,
    /// Whether the task is deliberately ambiguous.
    pub ambiguous: bool,
    /// Whether every grader passed and the harness did not fail.
    pub passed: bool,
    /// Each grader's outcome.
    pub grades: Vec<Grade>,
    /// Why the run could not be completed, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How the agent's turn ended (`done`, `budget: …`, `error: …`).
    pub ended: String,
    /// `provider:model` that answered.
    pub model: String,
    /// Metrics of the run.
    pub metrics: Metrics,
    /// Host path of the run's transcript.
    pub transcript: String,
}

/// Numbers measured on one run (or summed over several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Wall time, milliseconds (computer start to grading).
    pub wall_ms: u64,
    /// Model calls.
    pub model_calls: u64,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: u64,
    /// Estimated cost in USD; `None` when the model's price is unknown.
    pub cost_usd: Option<f64>,
    /// Tool calls made.
    pub tool_calls: u64,
    /// Tool calls that failed.
    pub tool_errors: u64,
    /// Questions put to the person.
    pub questions: u64,
    /// Tool calls the permission gate refused.
    pub permission_denials: u64,
}

impl Metrics {
    /// Adds `other` into `self` (an unknown cost makes the sum unknown).
    pub fn add(&mut self, other: &Metrics) {
        self.wall_ms += other.wall_ms;
        self.model_calls += other.model_calls;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.cost_usd = match (self.cost_usd, other.cost_usd) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        self.tool_calls += other.tool_calls;
        self.tool_errors += other.tool_errors;
        self.questions += other.questions;
        self.permission_denials += other.permission_denials;
    }
}

/// Totals over a suite's tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Tasks run.
    pub tasks: u64,
    /// Tasks that passed.
    pub passed: u64,
    /// `passed / tasks`, 0 when there are none.
    pub success_rate: f64,
    /// Summed metrics.
    pub metrics: Metrics,
}

impl Aggregate {
    /// Sums the tasks' results.
    pub fn of(tasks: &[TaskReport]) -> Self {
        let mut metrics = Metrics {
            cost_usd: Some(0.0),
            ..Metrics::default()
        };
        for t in tasks {
            metrics.add(&t.metrics);
        }
        let passed = tasks.iter().filter(|t| t.passed).count() as u64;
        Self {
            tasks: tasks.len() as u64,
            passed,
            success_rate: if tasks.is_empty() {
                0.0
            } else {
                passed as f64 / tasks.len() as f64
            },
            metrics,
        }
    }
}

impl SuiteReport {
    /// Reads a report written by [`SuiteReport::save`].
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(EvalError::io(path))?;
        let report: Self = serde_json::from_str(&text).map_err(|e| EvalError::Report {
            path: path.to_owned(),
            message: format!("not an eval report: {e}"),
        })?;
        if report.version > REPORT_VERSION {
            return Err(EvalError::Report {
                path: path.to_owned(),
                message: format!(
                    "written by a newer cubicle (format {}); this one reads up to {REPORT_VERSION}",
                    report.version
                ),
            });
        }
        Ok(report)
    }

    /// Writes the report as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), EvalError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| EvalError::Report {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(EvalError::io(path))
    }

    /// The task with this id.
    pub fn task(&self, id: &str) -> Option<&TaskReport> {
        self.tasks.iter().find(|t| t.id == id)
    }
}
