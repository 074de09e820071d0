//! Suites and tasks as they sit on disk: `evals/<suite>/<task>/task.toml`.
//!
//! A task names what the person asks (`prompt`), the folders it is given
//! (`[[grants]]`, copied from the task's fixtures into a fresh scratch folder
//! per run so a read-write grant never changes the suite), its budgets, the
//! answers a replayed or live run gets when the agent asks (`[answers]`),
//! its graders (`[[graders]]`, see [`crate::grader`]), and the wrong
//! transcripts that must fail named graders (`[[wrong]]`). Skills it ships
//! sit in its `skills/` folder ([`SKILLS_DIR`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::grader::GraderSpec;

/// File name of a task's definition.
pub const TASK_FILE: &str = "task.toml";

/// Folder of a task's skills: `skills/<name>/SKILL.md` and their files,
/// offered to the agent when the run's skills are on.
pub const SKILLS_DIR: &str = "skills";

/// File name of a task's hand-written reference transcript.
pub const REFERENCE_FILE: &str = "reference.jsonl";

/// A suite: a folder of task folders.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The suite's name (its folder's name).
    pub name: String,
    /// The suite's folder.
    pub dir: PathBuf,
    /// Its tasks, sorted by id.
    pub tasks: Vec<TaskSpec>,
}

impl Suite {
    /// Loads every `*/task.toml` under `dir`.
    pub fn load(dir: &Path) -> Result<Self, EvalError> {
        let entries = std::fs::read_dir(dir).map_err(EvalError::io(dir))?;
        let mut tasks = Vec::new();
        for entry in entries {
            let entry = entry.map_err(EvalError::io(dir))?;
            let path = entry.path();
            if path.join(TASK_FILE).is_file() {
                tasks.push(TaskSpec::load(&path)?);
            }
        }
        if tasks.is_empty() {
            return Err(EvalError::Task {
                path: dir.to_owned(),
                message: format!("no tasks here — a suite holds folders with a {TASK_FILE} each"),
            });
        }
        tasks.sort_by(|a, b| a.id.cmp(&b.id));
        let name = dir
            .file_name()
            .map_or_else(|| "suite".to_owned(), |n| n.to_string_lossy().into_owned());
        Ok(Self {
            name,
            dir: dir.to_owned(),
            tasks,
        })
    }
}

/// One task of a suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Task id; defaults to the folder's name.
    #[serde(default)]
    pub id: String,
    /// Area of work: `finance`, `legal`, `operations`, `research`, `data`, …
    #[serde(default)]
    pub category: String,
    /// What the person asks, sent as the first user message.
    pub prompt: String,
    /// Whether the task is deliberately ambiguous, so that asking is right.
    #[serde(default)]
    pub ambiguous: bool,
    /// Folders the cubicle is given.
    #[serde(default)]
    pub grants: Vec<GrantSpec>,
    /// Limits of a run.
    #[serde(default)]
    pub budget: Budget,
    /// Names of the computer tools offered (`bash`, `read`, `write`, `edit`,
    /// `glob`, `grep`); all of them when absent. Session tools (`ask_user`,
    /// `todo_write`, `task`) are always offered.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// Answers given when the agent asks, keyed by the question's header
    /// (`"*"` answers any other question). A value that names one of the
    /// question's options selects it; anything else is sent as free text.
    #[serde(default)]
    pub answers: BTreeMap<String, String>,
    /// What a correct result must satisfy.
    pub graders: Vec<GraderSpec>,
    /// Wrong transcripts and the graders each must fail.
    #[serde(default)]
    pub wrong: Vec<WrongVariant>,
    /// The task's folder (set on load).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// A folder the task grants, filled from the task's fixtures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// Name inside the cubicle: the grant appears at `/mnt/<name>`.
    pub name: String,
    /// Folder of fixtures, relative to the task folder, copied in before the
    /// run; an empty folder when absent.
    #[serde(default)]
    pub fixtures: Option<String>,
    /// Whether the agent may change the folder.
    #[serde(default)]
    pub writable: bool,
}

/// Limits of one run of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Most model calls.
    pub max_turns: u32,
    /// Longest the run may take, in seconds.
    pub time_secs: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_turns: 40,
            time_secs: 600,
        }
    }
}

/// A transcript that is wrong on purpose, and the graders it must fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrongVariant {
    /// Transcript file, relative to the task folder.
    pub transcript: String,
    /// Ids of the graders that must fail on it.
    pub fails: Vec<String>,
    /// What is wrong with it, in words.
    #[serde(default)]
    pub why: String,
}

impl TaskSpec {
    /// Loads `dir/task.toml` and checks that what it names exists.
    pub fn load(dir: &Path) -> Result<Self, EvalError> {
        let file = dir.join(TASK_FILE);
        let text = std::fs::read_to_string(&file).map_err(EvalError::io(&file))?;
        let mut spec: TaskSpec = toml::from_str(&text).map_err(|e| EvalError::Task {
            path: file.clone(),
            message: e.to_string(),
        })?;
        spec.dir = dir.to_owned();
        if spec.id.is_empty() {
            spec.id = dir
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        }
        spec.validate(&file)?;
        Ok(spec)
    }

    fn validate(&self, file: &Path) -> Result<(), EvalError> {
        let bad = |message: String| EvalError::Task {
            path: file.to_owned(),
            message,
        };
        for g in &self.grants {
            if g.name.is_empty() || g.name.contains('/') || g.name.starts_with('.') {
                return Err(bad(format!(
                    "grant name `{}` is not a plain folder name",
                    g.name
                )));
            }
            if let Some(f) = &g.fixtures
                && !self.dir.join(f).is_dir()
            {
                return Err(bad(format!("fixtures folder `{f}` does not exist")));
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, g) in self.graders.iter().enumerate() {
            if !ids.insert(g.id(i)) {
                return Err(bad(format!("two graders have the id `{}`", g.id(i))));
            }
        }
        for w in &self.wrong {
            if !self.dir.join(&w.transcript).is_file() {
                return Err(bad(format!(
                    "wrong variant `{}` does not exist",
                    w.transcript
                )));
            }
            for id in &w.fails {
                if !ids.contains(id) {
                    return Err(bad(format!(
                        "wrong variant `{}` names the grader `{id}`, which this task does not have",
                        w.transcript
                    )));
                }
            }
        }
        Ok(())
    }

    /// Path of the task's reference transcript.
    pub fn reference(&self) -> PathBuf {
        self.dir.join(REFERENCE_FILE)
    }

    /// Ids of the task's graders, in order.
    pub fn grader_ids(&self) -> Vec<String> {
        self.graders
            .iter()
            .enumerate()
            .map(|(i, g)| g.id(i))
            .collect()
    }
}
