//! The eval harness: task suites graded on the files an agent produces, run
//! live against a model or replayed from transcripts in a fresh cubicle.
//!
//! A suite is a folder of tasks (`evals/<suite>/<task>/task.toml`, see
//! [`task`]); each task names its fixtures, its prompt, its budgets and its
//! [`grader`]s. [`runner::EvalRunner`] runs a suite (each task in a fresh
//! scratch folder and a fresh computer from a [`runner::ComputerFactory`]),
//! [`report`] gathers metrics into a JSON report, [`compare`] finds
//! regressions between two reports, and [`render`] writes Markdown and a
//! self-contained HTML page.

pub mod backends;
pub mod compare;
pub mod docx;
pub mod error;
pub mod grader;
pub mod matrix;
pub mod pdf;
pub mod png;
pub mod pricing;
pub mod render;
pub mod report;
pub mod runner;
pub mod schema;
pub mod task;
pub mod transcript_checks;
pub mod xlsx;
pub mod zipped;

pub use compare::{Regression, compare};
pub use error::EvalError;
pub use report::{SuiteReport, TaskReport};
pub use runner::{ComputerFactory, EvalRunner, ReplaySource, RunMode, TaskRun};
pub use task::{Suite, TaskSpec};
