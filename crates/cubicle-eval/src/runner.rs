//! Running tasks: each in a fresh scratch folder (its fixtures copied in)
//! and a fresh computer, with the model live or replayed, answering the
//! agent's questions from the task's `[answers]`, then grading the outputs.
//!
//! Replay plays the model's side of a transcript verbatim while every tool
//! call runs again for real, so a change to the tools, the system prompt or
//! the backend shows up as a change in the files a task produces.
//!
//! A task may ship skills (`skills/<name>/SKILL.md` and their files). With
//! skills on (the default; a matrix cell may turn them off) they are copied
//! into the run's folder, their catalog goes into the system prompt, the
//! `skill` tool is offered, and the computer shows their folders read-only
//! at `/mnt/.skills/<name>` (on `host`, which mounts nothing, the prompt
//! names their host folders instead). With skills off there is none of
//! that: a replayed activation fails as a call to an unknown tool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cubicle_agent::{AllowAll, SessionConfig, SessionParams, Transcript, TranscriptWriter};
use cubicle_models::ModelClient;
use cubicle_models::provider::ProviderSpec;
use cubicle_models::replay::ReplayModel;
use cubicle_protocol::conversation::ContentBlock;
use cubicle_protocol::events::{
    Answer, ApprovalDecision, Event, EventMsg, GrantInfo, Op, Question,
};
use cubicle_protocol::transcript::{Entry, Header, Record, TRANSCRIPT_FORMAT, TRANSCRIPT_VERSION};
use cubicle_sandbox::{Computer, Grant};
use cubicle_skills::{Catalog, Skill, SkillSource, SkillTool};
use futures::StreamExt;
use serde_json::Value;

use crate::error::EvalError;
use crate::grader::{self, Grade, PathMap};
use crate::matrix::Cell;
use crate::report::{Aggregate, Metrics, REPORT_VERSION, SuiteReport, TaskReport};
use crate::task::{Suite, TaskSpec};

/// Starts a fresh computer for each task, so the harness does not depend on
/// any one backend.
#[async_trait]
pub trait ComputerFactory: Send + Sync {
    /// Backend name, for the report.
    fn backend(&self) -> &str;

    /// Starts a computer with these grants and this workspace, showing each
    /// `(name, host folder)` of `skills` read-only at `/mnt/.skills/<name>`
    /// where the backend can (an isolated one); elsewhere the skills stay at
    /// their host folders.
    async fn start(
        &self,
        grants: Vec<Grant>,
        workspace: PathBuf,
        skills: Vec<(String, PathBuf)>,
    ) -> Result<Arc<dyn Computer>, String>;
}

/// Where replayed transcripts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaySource {
    /// Each task's own `reference.jsonl`.
    References,
    /// `<dir>/<task-id>.jsonl` (or `<dir>/<task-id>/reference.jsonl`).
    Dir(PathBuf),
    /// One transcript, for running a single task.
    File(PathBuf),
}

/// How the model's side is played.
#[derive(Debug, Clone)]
pub enum RunMode {
    /// From recordings.
    Replay(ReplaySource),
    /// A live model.
    Live(ProviderSpec),
}

impl RunMode {
    fn name(&self) -> &'static str {
        match self {
            RunMode::Replay(_) => "replay",
            RunMode::Live(_) => "live",
        }
    }
}

/// Told about a run's progress; every method does nothing by default.
pub trait Observer: Send + Sync {
    /// A task is starting.
    fn task_started(&self, _task: &TaskSpec) {}
    /// The computer a task runs on has started.
    fn computer_started(&self, _task: &TaskSpec, _info: &cubicle_sandbox::ComputerInfo) {}
    /// The session of a task emitted an event.
    fn event(&self, _task: &TaskSpec, _event: &EventMsg) {}
    /// A task is finished and graded.
    fn task_finished(&self, _report: &TaskReport) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;

impl Observer for Silent {}

/// One finished task: its report and the host folders of its run.
#[derive(Debug, Clone)]
pub struct TaskRun {
    /// The graded result.
    pub report: TaskReport,
    /// Host folder behind `/workspace` and each grant.
    pub paths: PathMap,
}

/// Reads an environment variable (a stand-in for the process environment).
pub type EnvReader = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Runs tasks and suites.
pub struct EvalRunner {
    factory: Arc<dyn ComputerFactory>,
    scratch: PathBuf,
    jobs: usize,
    observer: Arc<dyn Observer>,
    env: EnvReader,
    cell: Option<Cell>,
    audit: Option<Arc<cubicle_audit::AuditLog>>,
}

impl EvalRunner {
    /// A runner whose tasks run in computers from `factory`, each in its own
    /// folder under `scratch`.
    pub fn new(factory: Arc<dyn ComputerFactory>, scratch: impl Into<PathBuf>) -> Self {
        Self {
            factory,
            scratch: scratch.into(),
            jobs: 1,
            observer: Arc::new(Silent),
            env: Arc::new(|k| std::env::var(k).ok()),
            cell: None,
            audit: None,
        }
    }

    /// Runs every task under a matrix cell's changes (system prompt, tools,
    /// skills on or off); the cell is recorded in the report.
    pub fn cell(mut self, cell: Cell) -> Self {
        self.cell = Some(cell);
        self
    }

    /// Records each task's session in this audit log.
    pub fn audit(mut self, audit: Arc<cubicle_audit::AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Runs up to `jobs` tasks at a time (at least one).
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Reports progress to `observer`.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Reads credentials for live runs through `env` instead of the process
    /// environment.
    pub fn env(mut self, env: EnvReader) -> Self {
        self.env = env;
        self
    }

    /// Runs every task of `suite` and gathers the report.
    pub async fn run_suite(&self, suite: &Suite, mode: &RunMode) -> SuiteReport {
        let started_at = cubicle_agent::transcript::now_rfc3339();
        let mut tasks: Vec<TaskReport> = futures::stream::iter(suite.tasks.iter())
            .map(|task| async move {
                let source = self.transcript_for(task, mode);
                match self.run_task(task, &source).await {
                    Ok(run) => run.report,
                    Err(e) => {
                        let report = failed_report(task, e.to_string());
                        self.observer.task_finished(&report);
                        report
                    }
                }
            })
            .buffer_unordered(self.jobs)
            .collect()
            .await;
        tasks.sort_by(|a, b| a.id.cmp(&b.id));
        let model = match mode {
            RunMode::Replay(ReplaySource::References) => "reference transcripts".to_owned(),
            RunMode::Replay(ReplaySource::Dir(d) | ReplaySource::File(d)) => {
                format!("replay of {}", d.display())
            }
            RunMode::Live(spec) => spec.model.clone().unwrap_or_else(|| "default".into()),
        };
        SuiteReport {
            version: REPORT_VERSION,
            suite: suite.name.clone(),
            mode: mode.name().to_owned(),
            model,
            backend: self.factory.backend().to_owned(),
            started_at,
            cell: self.cell.clone(),
            aggregate: Aggregate::of(&tasks),
            tasks,
        }
    }

    fn transcript_for(&self, task: &TaskSpec, mode: &RunMode) -> RunMode {
        match mode {
            RunMode::Replay(ReplaySource::References) => {
                RunMode::Replay(ReplaySource::File(task.reference()))
            }
            RunMode::Replay(ReplaySource::Dir(dir)) => {
                let flat = dir.join(format!("{}.jsonl", task.id));
                let nested = dir.join(&task.id).join(crate::task::REFERENCE_FILE);
                RunMode::Replay(ReplaySource::File(if flat.is_file() {
                    flat
                } else {
                    nested
                }))
            }
            RunMode::Replay(ReplaySource::File(_)) | RunMode::Live(_) => mode.clone(),
        }
    }

    /// Runs one task; a replay must name its transcript (or use the task's
    /// reference).
    pub async fn run_task(&self, task: &TaskSpec, mode: &RunMode) -> Result<TaskRun, EvalError> {
        self.observer.task_started(task);
        let started = Instant::now();
        let dir = self.scratch.join(&task.id);
        prepare_dir(task, &dir)?;
        let workspace = dir.join("workspace");
        let mut grants = Vec::new();
        let mut paths = PathMap {
            workspace: workspace.clone(),
            ..PathMap::default()
        };
        for g in &task.grants {
            let host = dir.join("grants").join(&g.name);
            let host = std::fs::canonicalize(&host).map_err(EvalError::io(&host))?;
            paths.grants.insert(g.name.clone(), host.clone());
            grants.push(Grant {
                host_path: host,
                name: g.name.clone(),
                writable: g.writable,
            });
        }
        let skills = if self.skills_on() {
            load_skills(task, &dir)?
        } else {
            Vec::new()
        };
        let mounts = skills
            .iter()
            .map(|s| (s.name.clone(), s.host_dir().to_path_buf()))
            .collect();
        let computer = self
            .factory
            .start(grants, workspace.clone(), mounts)
            .await
            .map_err(|message| EvalError::Computer {
                task: task.id.clone(),
                message,
            })?;
        self.observer.computer_started(task, computer.info());
        let outcome = self.drive(task, mode, &computer, &dir, &skills).await;
        if let Err(e) = computer.stop().await {
            tracing::warn!(task = %task.id, "stopping the computer failed: {e}");
        }
        let (model, ended, transcript_path) = outcome?;
        let transcript = Transcript::load(&transcript_path).map_err(|e| EvalError::Transcript {
            path: transcript_path.clone(),
            message: e.to_string(),
        })?;
        let info = computer.info();
        let mut allowed = vec![info.workspace.clone()];
        allowed.extend(info.grants.iter().map(|g| g.path.clone()));
        allowed.extend(skills.iter().map(|s| skill_dir(s, info.isolated)));
        let input = grader::GradeInput {
            task_dir: &task.dir,
            paths: &paths,
            transcript: &transcript.entries,
            allowed_roots: &allowed,
        };
        let grades: Vec<Grade> = task
            .graders
            .iter()
            .enumerate()
            .map(|(i, g)| grader::grade(g, i, &input))
            .collect();
        let mut metrics = metrics_of(&model, &transcript.entries);
        metrics.wall_ms = started.elapsed().as_millis() as u64;
        if let Some(audit) = &self.audit
            && let Err(e) = audit.append(
                Some(&format!("eval-{}", task.id)),
                cubicle_audit::RecordKind::SessionEnd {
                    reason: ended.clone(),
                    usage: cubicle_audit::Usage {
                        input_tokens: metrics.input_tokens,
                        output_tokens: metrics.output_tokens,
                        cache_read: metrics.cache_read_tokens,
                        cache_write: metrics.cache_write_tokens,
                    },
                },
            )
        {
            tracing::error!(task = %task.id, "audit append failed: {e}");
        }
        let report = TaskReport {
            id: task.id.clone(),
            category: task.category.clone(),
            ambiguous: task.ambiguous,
            passed: grades.iter().all(|g| g.passed),
            grades,
            error: None,
            ended,
            model,
            metrics,
            transcript: transcript_path.display().to_string(),
        };
        self.observer.task_finished(&report);
        Ok(TaskRun { report, paths })
    }

    /// Whether tasks' skills are loaded: the cell's flag, on by default.
    fn skills_on(&self) -> bool {
        self.cell.as_ref().and_then(|c| c.skills).unwrap_or(true)
    }

    /// Runs the session; returns the model name, how the turn ended, and
    /// the run's transcript.
    async fn drive(
        &self,
        task: &TaskSpec,
        mode: &RunMode,
        computer: &Arc<dyn Computer>,
        dir: &Path,
        skills: &[Skill],
    ) -> Result<(String, String, PathBuf), EvalError> {
        let info = computer.info().clone();
        let model: Arc<dyn ModelClient> = match mode {
            RunMode::Replay(ReplaySource::File(path)) => {
                let recorded = Transcript::load(path).map_err(|e| EvalError::Transcript {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                let mut entries = recorded.entries;
                if !info.isolated {
                    let skill_dirs: Vec<(String, PathBuf)> = skills
                        .iter()
                        .map(|s| (s.name.clone(), s.host_dir().to_path_buf()))
                        .collect();
                    rewrite_paths(&mut entries, &info.workspace, &info.grants, &skill_dirs);
                }
                Arc::new(ReplayModel::from_entries(recorded.header.model, entries))
            }
            RunMode::Replay(ReplaySource::References | ReplaySource::Dir(_)) => {
                let mode = self.transcript_for(task, mode);
                return Box::pin(self.drive(task, &mode, computer, dir, skills)).await;
            }
            RunMode::Live(spec) => {
                let env = self.env.clone();
                cubicle_models::provider::resolve(spec, &move |k| env(k))
                    .map_err(|e| EvalError::Model(e.to_string()))?
            }
        };
        let model_name = format!("{}:{}", model.provider(), model.model());
        let model_name = model_name
            .strip_prefix("replay:")
            .map_or(model_name.clone(), str::to_owned);
        let transcript_path = dir.join("transcript.jsonl");
        let header = Header {
            format: TRANSCRIPT_FORMAT.to_owned(),
            version: TRANSCRIPT_VERSION,
            session_id: format!("eval-{}", task.id),
            created_at: cubicle_agent::transcript::now_rfc3339(),
            cubicle_version: env!("CARGO_PKG_VERSION").to_owned(),
            task: Some(task.prompt.clone()),
            model: model_name.clone(),
            backend: info.backend.clone(),
            grants: info.grants.clone(),
            workspace: info.workspace_host.clone(),
            label: None,
        };
        let writer = Arc::new(TranscriptWriter::create(&transcript_path, &header).map_err(
            |e| EvalError::Transcript {
                path: transcript_path.clone(),
                message: e.to_string(),
            },
        )?);
        if let Some(audit) = &self.audit {
            let grants = info
                .grants
                .iter()
                .map(|g| cubicle_audit::Grant {
                    path: g.path.clone(),
                    host_path: g.host_path.clone(),
                    writable: g.writable,
                })
                .collect();
            audit
                .append(
                    Some(&header.session_id),
                    cubicle_audit::RecordKind::SessionStart {
                        task: task.prompt.clone(),
                        model: model_name.clone(),
                        backend: info.backend.clone(),
                        grants,
                    },
                )
                .map_err(|e| EvalError::Model(format!("could not write to the audit log: {e}")))?;
        }
        let cell = self.cell.clone().unwrap_or_default();
        let mut tools: Vec<Arc<dyn cubicle_tools::Tool>> = cubicle_tools::computer_tools()
            .into_iter()
            .filter(|t| {
                task.tools
                    .as_ref()
                    .is_none_or(|names| names.iter().any(|n| n == t.name()))
                    && !cell.removes(t.name())
            })
            .collect();
        let mut appendix = cell.system_prompt_append.clone();
        if !skills.is_empty() && !cell.removes("skill") {
            let catalog = Catalog::new(skills.to_vec());
            let text = skills_prompt(&catalog, info.isolated);
            appendix = Some(match appendix {
                Some(a) => format!("{a}\n\n{text}"),
                None => text,
            });
            tools.push(Arc::new(SkillTool::new(
                Arc::new(RwLock::new(catalog)),
                None,
            )));
        }
        let mut handle = cubicle_agent::spawn(SessionParams {
            id: header.session_id.clone(),
            model,
            computer: computer.clone(),
            transcript: writer,
            tools,
            gate: Arc::new(AllowAll),
            config: SessionConfig {
                max_turns: task.budget.max_turns,
                max_wall: Some(Duration::from_secs(task.budget.time_secs)),
                interactive: !cell.removes("ask_user"),
                system_prompt: cell.system_prompt.clone(),
                prompt_appendix: appendix,
                ..SessionConfig::default()
            },
            history: Vec::new(),
            audit: self.audit.clone(),
        });
        let _ = handle.ops.send(Op::UserMessage {
            text: task.prompt.clone(),
        });
        let mut ended = "no end".to_owned();
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(task.budget.time_secs.saturating_add(30));
        loop {
            let next = tokio::time::timeout_at(deadline, handle.events.recv()).await;
            let Ok(next) = next else {
                ended = format!("budget: over {} s", task.budget.time_secs);
                let _ = handle.ops.send(Op::Shutdown);
                break;
            };
            let Some(msg) = next else { break };
            self.observer.event(task, &msg);
            match &msg.event {
                Event::Question { id, questions } => {
                    let _ = handle.ops.send(Op::Answer {
                        id: id.clone(),
                        answers: answer(task, questions),
                    });
                }
                Event::ApprovalRequest { id, .. } => {
                    let _ = handle.ops.send(Op::Approve {
                        id: id.clone(),
                        decision: ApprovalDecision::Deny,
                    });
                }
                Event::TurnEnded { reason, .. } if msg.agent.is_none() => {
                    ended = match reason {
                        cubicle_protocol::events::TurnEndReason::Done => "done".to_owned(),
                        cubicle_protocol::events::TurnEndReason::Interrupted => {
                            "interrupted".to_owned()
                        }
                        cubicle_protocol::events::TurnEndReason::Budget { detail } => {
                            format!("budget: {detail}")
                        }
                        cubicle_protocol::events::TurnEndReason::Error { message } => {
                            format!("error: {message}")
                        }
                    };
                    let _ = handle.ops.send(Op::Shutdown);
                }
                Event::SessionEnded => break,
                _ => {}
            }
        }
        drop(handle.ops);
        if let Err(e) = handle.done.await {
            tracing::warn!(task = %task.id, "the session task failed: {e}");
        }
        Ok((model_name, ended, transcript_path))
    }
}

/// Answers from the task's `[answers]`: by question header, else `*`; a
/// value naming an option selects it, anything else is free text.
pub fn answer(task: &TaskSpec, questions: &[Question]) -> Vec<Answer> {
    questions
        .iter()
        .map(|q| {
            let given = task
                .answers
                .get(&q.header)
                .or_else(|| task.answers.get("*"));
            match given {
                Some(v) => match q.options.iter().find(|o| o.label.eq_ignore_ascii_case(v)) {
                    Some(o) => Answer {
                        selected: vec![o.label.clone()],
                        text: None,
                    },
                    None => Answer {
                        selected: Vec::new(),
                        text: Some(v.clone()),
                    },
                },
                None => Answer {
                    selected: Vec::new(),
                    text: Some("No preference — use your best judgement.".to_owned()),
                },
            }
        })
        .collect()
}

/// Tokens of the system prompt a task's skill catalog may use.
pub const SKILL_CATALOG_BUDGET: usize = 2_000;

/// The system prompt's section on skills: how to use them and the catalog;
/// on a backend without isolation, where each skill's folder is.
fn skills_prompt(catalog: &Catalog, isolated: bool) -> String {
    let mut text = format!(
        "# Skills\nThese skills hold instructions and scripts for particular kinds of work. When one fits the task, activate it with the `skill` tool before starting; its files are read-only under /mnt/.skills/<name>.\n{}",
        catalog.render(SKILL_CATALOG_BUDGET)
    );
    if !isolated {
        text.push_str(
            "\nThis computer has no /mnt/.skills: each skill's files are in its folder here:\n",
        );
        for s in catalog.skills() {
            text.push_str(&format!("- {}: {}\n", s.name, s.host_dir().display()));
        }
    }
    text
}

/// Where the computer shows a skill's folder.
fn skill_dir(skill: &Skill, isolated: bool) -> String {
    if isolated {
        skill.cubicle_dir()
    } else {
        skill.host_dir().display().to_string()
    }
}

/// The task's skills (`<task>/skills/<name>/SKILL.md`), copied into the run
/// folder `dir` so the run never reads or changes the suite's own copy.
pub fn load_skills(task: &TaskSpec, dir: &Path) -> Result<Vec<Skill>, EvalError> {
    let from = task.dir.join(crate::task::SKILLS_DIR);
    if !from.is_dir() {
        return Ok(Vec::new());
    }
    let to = dir.join(crate::task::SKILLS_DIR);
    std::fs::create_dir_all(&to).map_err(EvalError::io(&to))?;
    copy_tree(&from, &to)?;
    let to = std::fs::canonicalize(&to).map_err(EvalError::io(&to))?;
    let mut skills = Vec::new();
    for entry in std::fs::read_dir(&to).map_err(EvalError::io(&to))? {
        let path = entry.map_err(EvalError::io(&to))?.path();
        if !path.join(cubicle_skills::skill::SKILL_FILE).is_file() {
            continue;
        }
        let skill = Skill::load(
            &path,
            SkillSource::Project {
                folder: task.dir.clone(),
            },
        )
        .map_err(|e| EvalError::Task {
            path: path.clone(),
            message: format!("skill: {e}"),
        })?;
        skills.push(skill);
    }
    skills.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(skills)
}

/// Replaces the isolated layout's paths (`/workspace`, `/mnt/<name>`,
/// `/mnt/.skills/<name>`) in recorded tool calls with the computer's own,
/// for backends such as `host` whose paths are the host's; `skills` holds
/// each skill's name and host folder.
pub fn rewrite_paths(
    entries: &mut [Entry],
    workspace: &str,
    grants: &[GrantInfo],
    skills: &[(String, PathBuf)],
) {
    let mut map: Vec<(String, String)> = skills
        .iter()
        .map(|(name, dir)| {
            (
                format!("{}/{name}", cubicle_skills::skill::CUBICLE_SKILLS_MOUNT),
                dir.display().to_string(),
            )
        })
        .collect();
    map.extend(grants.iter().filter_map(|g| {
        let name = Path::new(&g.host_path)
            .file_name()?
            .to_string_lossy()
            .into_owned();
        Some((format!("/mnt/{name}"), g.path.clone()))
    }));
    map.push(("/workspace".to_owned(), workspace.to_owned()));
    for entry in entries {
        if let Record::ModelResponse { message, .. } = &mut entry.record {
            for block in &mut message.content {
                if let ContentBlock::ToolUse { input, .. } = block {
                    rewrite_value(input, &map);
                }
            }
        }
    }
}

fn rewrite_value(v: &mut Value, map: &[(String, String)]) {
    match v {
        Value::String(s) => {
            for (from, to) in map {
                if s.contains(from.as_str()) {
                    *s = s.replace(from.as_str(), to);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_value(x, map)),
        Value::Object(o) => o.values_mut().for_each(|x| rewrite_value(x, map)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Metrics read from a run's transcript.
pub fn metrics_of(model: &str, entries: &[Entry]) -> Metrics {
    let mut m = Metrics::default();
    let mut usage = cubicle_protocol::conversation::Usage::default();
    for e in entries {
        match &e.record {
            Record::ModelResponse { usage: u, .. } => {
                m.model_calls += 1;
                usage.input_tokens += u.input_tokens;
                usage.output_tokens += u.output_tokens;
                usage.cache_read_input_tokens += u.cache_read_input_tokens;
                usage.cache_creation_input_tokens += u.cache_creation_input_tokens;
            }
            Record::ToolResult { is_error, .. } => {
                m.tool_calls += 1;
                m.tool_errors += u64::from(*is_error);
            }
            Record::Question { .. } => m.questions += 1,
            Record::Decision { allowed: false, .. } => m.permission_denials += 1,
            _ => {}
        }
    }
    m.input_tokens = usage.input_tokens;
    m.output_tokens = usage.output_tokens;
    m.cache_read_tokens = usage.cache_read_input_tokens;
    m.cache_write_tokens = usage.cache_creation_input_tokens;
    m.cost_usd = crate::pricing::estimate(model, &usage);
    m
}

/// A fresh run folder: `workspace/` empty, `grants/<name>/` holding a copy
/// of the fixtures.
fn prepare_dir(task: &TaskSpec, dir: &Path) -> Result<(), EvalError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(EvalError::io(dir))?;
    }
    let workspace = dir.join("workspace");
    std::fs::create_dir_all(&workspace).map_err(EvalError::io(&workspace))?;
    for g in &task.grants {
        let target = dir.join("grants").join(&g.name);
        std::fs::create_dir_all(&target).map_err(EvalError::io(&target))?;
        if let Some(f) = &g.fixtures {
            copy_tree(&task.dir.join(f), &target)?;
        }
    }
    Ok(())
}

/// Copies a folder's files, keeping modification times (tasks sort by date).
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), EvalError> {
    for entry in std::fs::read_dir(from).map_err(EvalError::io(from))? {
        let entry = entry.map_err(EvalError::io(from))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type().map_err(EvalError::io(&src))?;
        if kind.is_dir() {
            std::fs::create_dir_all(&dst).map_err(EvalError::io(&dst))?;
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(EvalError::io(&src))?;
        }
    }
    Ok(())
}

fn failed_report(task: &TaskSpec, error: String) -> TaskReport {
    TaskReport {
        id: task.id.clone(),
        category: task.category.clone(),
        ambiguous: task.ambiguous,
        passed: false,
        grades: Vec::new(),
        ended: "not run".to_owned(),
        error: Some(error),
        model: String::new(),
        metrics: Metrics::default(),
        transcript: String::new(),
    }
}
