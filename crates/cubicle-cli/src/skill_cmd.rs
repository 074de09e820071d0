//! `cubicle skill list|show|new|validate|prefs|export|import`: the person's
//! view of their skills, their private preferences for each, and sharing a
//! skill as one `.skill` file.
//!
//! Everything here is a thin layer over `cubicle-skills`; the only logic of
//! its own is wording, exit codes, and opening `$EDITOR`. It uses no other
//! module of this crate, so `cubicle-skills`' tests compile and drive it too.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cubicle_skills::discover::config_dir_from_env;
use cubicle_skills::{
    Discovery, Notice, Preferences, Skill, SkillIndex, SkillRoots, SkillSource, prefs_dir,
};

/// `cubicle skill …`
#[derive(Debug, clap::Subcommand)]
pub enum SkillCommand {
    /// List the skills in use, and those shadowed, skipped or warned about.
    List {
        /// A folder whose project skills (.cubicle/skills, .claude/skills,
        /// .agents/skills) to include; naming it vouches for it. Repeatable.
        #[arg(long = "project", value_name = "DIR")]
        projects: Vec<PathBuf>,
    },
    /// Show one skill: where it is, its frontmatter, warnings and instructions.
    Show {
        /// The skill's name.
        name: String,
    },
    /// Create a new skill folder with a valid SKILL.md in your skills folder.
    New {
        /// Lowercase letters, digits and hyphens, e.g. `expense-report`.
        name: String,
        /// What it does and when to use it.
        #[arg(long)]
        description: Option<String>,
    },
    /// Check a skill folder (or its SKILL.md) and report every problem.
    Validate {
        /// The skill folder or its SKILL.md.
        path: PathBuf,
    },
    /// Your private preferences for a skill (never exported).
    Prefs {
        /// The skill's name.
        name: String,
        /// What to do; `show` when omitted.
        #[command(subcommand)]
        action: Option<PrefsAction>,
    },
    /// Write a skill to one .skill file to share, after scanning it for
    /// secrets and personal data.
    Export {
        /// The skill's name.
        name: String,
        /// The file to write, e.g. `expense-report.skill`.
        #[arg(short = 'o', long = "output", value_name = "FILE.skill")]
        output: PathBuf,
        /// Export even though the scan found secrets or personal data.
        #[arg(long)]
        force: bool,
    },
    /// Install a skill from a .skill file, a folder or a git repository into
    /// your skills folder.
    Import {
        /// A .skill file, a skill folder, or a git URL (`URL#folder` for a
        /// skill in a sub-folder of the repository).
        #[arg(value_name = "FILE.skill|DIR|GIT-URL")]
        source: String,
        /// Install under another name (rewrites the skill's `name`).
        #[arg(long = "as", value_name = "NEW-NAME")]
        as_name: Option<String>,
    },
}

/// `cubicle skill prefs NAME …`
#[derive(Debug, clap::Subcommand)]
pub enum PrefsAction {
    /// Print the preferences and the file they are kept in.
    Show,
    /// Set KEY to VALUE.
    Set {
        /// e.g. `currency`.
        key: String,
        /// e.g. `EUR`.
        value: String,
    },
    /// Remove KEY.
    Unset {
        /// The key.
        key: String,
    },
    /// Open the preferences file in $VISUAL or $EDITOR.
    Edit,
}

/// Where skills and preferences are, for one run.
#[derive(Debug, Clone)]
pub struct SkillEnv {
    /// The folders searched for skills.
    pub roots: SkillRoots,
    /// The preferences folder.
    pub prefs_dir: PathBuf,
}

impl SkillEnv {
    /// The standard locations for this process.
    pub fn from_env(projects: &[PathBuf]) -> Result<Self> {
        let config = config_dir_from_env()
            .context("cannot find your config folder: set HOME or XDG_CONFIG_HOME")?;
        let projects: Vec<(PathBuf, bool)> = projects.iter().map(|p| (p.clone(), true)).collect();
        Ok(Self {
            roots: SkillRoots::from_env(&projects),
            prefs_dir: prefs_dir(&config),
        })
    }

    fn install_dir(&self) -> Result<&Path> {
        self.roots
            .install_dir()
            .context("no user skills folder: set HOME or XDG_CONFIG_HOME")
    }
}

/// Runs a `skill` subcommand.
pub async fn run(cmd: SkillCommand) -> Result<ExitCode> {
    let projects = match &cmd {
        SkillCommand::List { projects } => projects.clone(),
        _ => Vec::new(),
    };
    let env = SkillEnv::from_env(&projects)?;
    run_in(cmd, &env, &mut std::io::stdout().lock())
}

/// Runs a `skill` subcommand against `env`, writing to `out`.
pub fn run_in(cmd: SkillCommand, env: &SkillEnv, out: &mut dyn Write) -> Result<ExitCode> {
    match cmd {
        SkillCommand::List { .. } => list(env, out),
        SkillCommand::Show { name } => show(env, &name, out),
        SkillCommand::New { name, description } => new(env, &name, description.as_deref(), out),
        SkillCommand::Validate { path } => validate(&path, out),
        SkillCommand::Prefs { name, action } => {
            prefs(env, &name, action.unwrap_or(PrefsAction::Show), out)
        }
        SkillCommand::Export {
            name,
            output,
            force,
        } => export(env, &name, &output, force, out),
        SkillCommand::Import { source, as_name } => import(env, &source, as_name.as_deref(), out),
    }
}

fn discover(env: &SkillEnv) -> Discovery {
    SkillIndex::new().discover(&env.roots)
}

fn find(env: &SkillEnv, name: &str) -> Result<Skill> {
    let d = discover(env);
    match d.catalog.get(name) {
        Some(s) => Ok(s.clone()),
        None => {
            let names: Vec<&str> = d.catalog.skills().iter().map(|s| s.name.as_str()).collect();
            if names.is_empty() {
                bail!(
                    "no skill named `{name}`, and no skills are installed — create one with `cubicle skill new {name}`"
                )
            }
            bail!(
                "no skill named `{name}` — installed: {} (see `cubicle skill list`)",
                names.join(", ")
            )
        }
    }
}

fn list(env: &SkillEnv, out: &mut dyn Write) -> Result<ExitCode> {
    let d = discover(env);
    if d.catalog.is_empty() {
        writeln!(
            out,
            "No skills installed. Create one with `cubicle skill new NAME` or import one with `cubicle skill import FILE.skill`."
        )?;
    }
    for s in d.catalog.skills() {
        let mut flags = Vec::new();
        if s.frontmatter.disable_model_invocation {
            flags.push("person only");
        }
        if !s.frontmatter.user_invocable {
            flags.push("model only");
        }
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", flags.join(", "))
        };
        writeln!(
            out,
            "{:<24} {:<8}{flags} {}",
            s.name,
            source_word(&s.source),
            first_chars(&s.description, 80)
        )?;
    }
    if d.catalog
        .skills()
        .iter()
        .any(|s| s.frontmatter.user_invocable)
    {
        writeln!(
            out,
            "\nStart a skill yourself by typing `/NAME ARGUMENTS` as a prompt (in `cubicle chat`, or `cubicle run \"/NAME ARGUMENTS\"`)."
        )?;
    }
    if !d.notices.is_empty() {
        writeln!(out)?;
        for n in &d.notices {
            writeln!(out, "{n}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn source_word(s: &SkillSource) -> &'static str {
    match s {
        SkillSource::Managed => "managed",
        SkillSource::User => "user",
        SkillSource::Project { .. } => "project",
        SkillSource::Plugin { .. } => "plugin",
    }
}

fn first_chars(s: &str, n: usize) -> String {
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > n {
        let mut t: String = line.chars().take(n - 1).collect();
        t.push('…');
        t
    } else {
        line
    }
}

fn show(env: &SkillEnv, name: &str, out: &mut dyn Write) -> Result<ExitCode> {
    let s = find(env, name)?;
    let fm = &s.frontmatter;
    writeln!(out, "name:        {}", s.name)?;
    writeln!(out, "source:      {}", s.source)?;
    writeln!(out, "folder:      {}", s.host_dir().display())?;
    writeln!(out, "in cubicle:  {} (read-only)", s.cubicle_dir())?;
    writeln!(out, "description: {}", s.description)?;
    let optional = [
        ("when to use", fm.when_to_use.as_deref()),
        ("arguments", fm.argument_hint.as_deref()),
        ("license", fm.license.as_deref()),
        ("needs", fm.compatibility.as_deref()),
        ("model", fm.model.as_deref()),
        ("context", fm.context.as_deref()),
    ];
    for (label, value) in optional {
        if let Some(v) = value {
            writeln!(out, "{:<12} {v}", format!("{label}:"))?;
        }
    }
    if !fm.allowed_tools.is_empty() {
        writeln!(out, "tools:       {}", fm.allowed_tools.join(" "))?;
    }
    if fm.disable_model_invocation {
        writeln!(out, "only you can start it (disable-model-invocation)")?;
    }
    let prefs = Preferences::load(&env.prefs_dir, &s.name)?;
    writeln!(
        out,
        "preferences: {} ({} set)",
        prefs.path().display(),
        prefs.entries().len()
    )?;
    for w in &s.warnings {
        writeln!(out, "warning: {w}")?;
    }
    writeln!(out, "\n{}", s.load_body()?)?;
    Ok(ExitCode::SUCCESS)
}

fn new(
    env: &SkillEnv,
    name: &str,
    description: Option<&str>,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    if let Err(why) = cubicle_skills::validate_name(name) {
        bail!("invalid skill name `{name}`: {why} — e.g. `expense-report`");
    }
    let dir = env.install_dir()?.join(name);
    if dir.exists() {
        bail!("{} already exists — pick another name", dir.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(cubicle_skills::skill::SKILL_FILE);
    std::fs::write(&file, cubicle_skills::scaffold(name, description))
        .with_context(|| format!("writing {}", file.display()))?;
    writeln!(out, "Created {}", file.display())?;
    writeln!(
        out,
        "Edit its description and instructions; check it with `cubicle skill validate {}`.",
        dir.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn validate(path: &Path, out: &mut dyn Write) -> Result<ExitCode> {
    let dir = if path.file_name().is_some_and(|n| n == "SKILL.md") {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    };
    if !dir.join("SKILL.md").is_file() {
        bail!(
            "{} has no SKILL.md — a skill is a folder with a SKILL.md in it",
            dir.display()
        );
    }
    match Skill::load(&dir, SkillSource::User) {
        Ok(s) => {
            for w in &s.warnings {
                writeln!(out, "warning: {w}")?;
            }
            writeln!(
                out,
                "{}: skill `{}` is valid{}",
                dir.display(),
                s.name,
                if s.warnings.is_empty() {
                    String::new()
                } else {
                    format!(" with {} warning(s)", s.warnings.len())
                }
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            writeln!(out, "error: {e}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}

fn prefs(env: &SkillEnv, name: &str, action: PrefsAction, out: &mut dyn Write) -> Result<ExitCode> {
    let mut prefs = Preferences::load(&env.prefs_dir, name)?;
    let installed = discover(env).catalog.get(name).is_some();
    if !installed {
        writeln!(
            out,
            "note: no skill named `{name}` is installed; the preferences apply once it is"
        )?;
    }
    match action {
        PrefsAction::Show => {
            writeln!(out, "# {}", prefs.path().display())?;
            if prefs.is_empty() {
                writeln!(
                    out,
                    "# none set — add one with `cubicle skill prefs {name} set KEY VALUE`"
                )?;
            } else {
                write!(out, "{}", prefs.to_toml())?;
            }
            match prefs.notes() {
                Some(notes) => {
                    writeln!(out, "\n# {}", prefs.notes_path().display())?;
                    writeln!(out, "{}", notes.trim_end())?;
                }
                None => writeln!(
                    out,
                    "# free-form preferences (a signature, a house style) go in {}",
                    prefs.notes_path().display()
                )?,
            }
        }
        PrefsAction::Set { key, value } => {
            prefs.set(&key, &value)?;
            writeln!(
                out,
                "{name}: {key} = {value:?} ({})",
                prefs.path().display()
            )?;
        }
        PrefsAction::Unset { key } => {
            if prefs.unset(&key)? {
                writeln!(out, "{name}: removed {key}")?;
            } else {
                writeln!(out, "{name}: {key} was not set")?;
            }
        }
        PrefsAction::Edit => {
            let path = prefs.path().to_path_buf();
            if !path.exists() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(
                    &path,
                    format!(
                        "# Your private preferences for the skill `{name}`: key = \"value\" lines.\n\
                         # Given to the model when the skill starts; never exported.\n"
                    ),
                )?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
            }
            let editor = std::env::var("VISUAL")
                .ok()
                .filter(|s| !s.is_empty())
                .or_else(|| std::env::var("EDITOR").ok().filter(|s| !s.is_empty()))
                .unwrap_or_else(|| "vi".to_owned());
            let mut words = editor.split_whitespace();
            let program = words.next().unwrap_or("vi");
            let status = std::process::Command::new(program)
                .args(words)
                .arg(&path)
                .status()
                .with_context(|| format!("cannot start the editor `{editor}` — set $EDITOR"))?;
            if !status.success() {
                bail!("the editor `{editor}` exited with {status}");
            }
            // Catch a typo now, not when the skill next starts.
            Preferences::load(&env.prefs_dir, name)?;
            writeln!(out, "Saved {}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn export(
    env: &SkillEnv,
    name: &str,
    output: &Path,
    force: bool,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let skill = find(env, name)?;
    let report = cubicle_skills::export(&skill, output, force)?;
    for f in &report.forced_findings {
        writeln!(out, "warning (exported anyway, --force): {f}")?;
    }
    writeln!(
        out,
        "Wrote {} ({} files, {} bytes). Your preferences for `{name}` were not included.",
        output.display(),
        report.files.len(),
        report.bytes
    )?;
    Ok(ExitCode::SUCCESS)
}

fn import(
    env: &SkillEnv,
    source: &str,
    as_name: Option<&str>,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let report = cubicle_skills::import(source, env.install_dir()?, as_name)?;
    writeln!(
        out,
        "Installed `{}` at {} ({} files).",
        report.name,
        report.dir.display(),
        report.files
    )?;
    for w in &report.warnings {
        writeln!(out, "warning: {w}")?;
    }
    for n in discover(env).notices {
        if let Notice::Shadowed { name, .. } = &n
            && *name == report.name
        {
            writeln!(out, "note: {n}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
