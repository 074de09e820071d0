//! The command line: every subcommand and flag, with the help text people see.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Cubicle: hand it folders and an outcome; it does the work in an isolated
/// computer of its own.
#[derive(Debug, Parser)]
#[command(name = "cubicle", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More detail in logs (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a task to completion, non-interactively if asked, streaming progress.
    Run(RunArgs),
    /// An interactive session: type a message, watch the work, type the next.
    Chat(ChatArgs),
    /// Continue a session after a stop, a crash or `kill -9`.
    Resume(ResumeArgs),
    /// List and show past sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Debug a cubicle directly.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Measure Cubicle against a peer in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Debug Cubicle's browser: print a page's snapshot.
    #[command(subcommand)]
    Browser(crate::browser_cmd::BrowserCommand),
    /// Show and check the effective policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// See Cubicle do a real task with no API key: a recorded expense report.
    Demo(crate::demo_cmd::DemoArgs),
    /// Run and compare evaluation suites of knowledge-work tasks.
    #[command(subcommand)]
    Eval(crate::eval_cmd::EvalCommand),
    /// Build, list, verify and prune cubicle images (for the vm backend).
    #[command(subcommand)]
    Image(crate::image_cmd::ImageCommand),
    /// The local server and web UI (the app most people use).
    Serve(crate::serve_cmd::ServeArgs),
    /// Pair a phone or another computer with `cubicle serve` (QR code and a
    /// one-time code); list or revoke paired devices.
    Pair(crate::pair_cmd::PairArgs),
    /// Skills: list, show, create, validate, private preferences, export and import.
    #[command(subcommand)]
    Skill(crate::skill_cmd::SkillCommand),
    /// Claude Code plugins: add marketplaces, install, update and remove plugins.
    #[command(subcommand)]
    Plugin(crate::plugin_cmd::PluginCommand),
    /// Store secrets that credential rules refer to as keyring:NAME.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Read and verify the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check this machine: kernel features each backend needs, and with
    /// --escape-suite, a live attack scorecard against a backend.
    Doctor(DoctorArgs),
    /// Serve the guest protocol on stdin/stdout (used inside cubicles).
    #[command(hide = true, name = "__guest")]
    Guest,
    /// Build a jail around the guest (used by the jail backend).
    #[command(hide = true, name = "__jail-init")]
    JailInit,
}

/// Options shared by everything that starts a session.
#[derive(Debug, Clone, Args)]
pub struct SessionOpts {
    /// A folder the agent may see: DIR (read-only), DIR:ro or DIR:rw. Repeatable.
    #[arg(short, long = "grant", value_name = "DIR[:ro|:rw]")]
    pub grants: Vec<String>,
    /// Model provider: anthropic, openai (any OpenAI-compatible server) or replay.
    #[arg(long, env = "CUBICLE_PROVIDER")]
    pub provider: Option<String>,
    /// Model name, or PROVIDER:MODEL.
    #[arg(short, long, env = "CUBICLE_MODEL")]
    pub model: Option<String>,
    /// Base URL of the provider's API (e.g. http://127.0.0.1:8080/v1 for llama.cpp).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Transcript whose model side to play back (with --provider replay).
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Where commands run: auto (the best isolated backend here), jail, vm
    /// (needs `cubicle image build`), or host (no isolation).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Run the jail even where the kernel cannot enforce landlock (the
    /// mount namespace still confines it; landlock is the second wall).
    #[arg(long)]
    pub dangerously_allow_no_landlock: bool,
    /// Never ask the person anything; questions and approvals fail with a message.
    #[arg(long)]
    pub no_input: bool,
    /// Policy: allow calls matching a rule such as 'Bash(git *)'. Repeatable.
    #[arg(long, value_name = "RULE")]
    pub allow: Vec<String>,
    /// Policy: ask before calls matching a rule. Repeatable.
    #[arg(long, value_name = "RULE")]
    pub ask: Vec<String>,
    /// Policy: refuse calls matching a rule such as 'Edit(/mnt/**/*.xlsx)'. Repeatable.
    #[arg(long, value_name = "RULE")]
    pub deny: Vec<String>,
    /// Let the cubicle reach a domain (e.g. api.github.com or *.wikipedia.org)
    /// through the egress proxy. Repeatable. Anything allowed can receive data.
    #[arg(long, value_name = "DOMAIN")]
    pub allow_domain: Vec<String>,
    /// Any setting, as KEY=TOML-VALUE (see `cubicle policy show`). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// Let the browser sub-agent use your own Chrome, started with
    /// --remote-debugging-port, at this loopback address (e.g.
    /// http://127.0.0.1:9222), with your logged-in sessions. Needs
    /// `browser.allow_attach = true`; you are asked before it starts.
    #[arg(long, value_name = "URL")]
    pub attach_browser: Option<String>,
    /// Trust the granted folders: load their .cubicle/settings.toml.
    #[arg(long)]
    pub trust: bool,
    /// Stop after this many model calls.
    #[arg(long, value_name = "N")]
    pub max_turns: Option<u32>,
    /// Stop after this many tokens (input + output).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u64>,
    /// Stop after this long, e.g. 30m, 2h, 90s.
    #[arg(long, value_name = "DURATION")]
    pub time_limit: Option<String>,
    /// Print events as JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

impl SessionOpts {
    /// Options for a session started by a front end other than the command
    /// line (the web UI, the demo): these grants and this backend, every
    /// other option at its default.
    pub fn for_front_end(grants: Vec<String>, backend: String) -> Self {
        Self {
            grants,
            provider: None,
            model: None,
            base_url: None,
            replay: None,
            backend,
            dangerously_allow_no_landlock: false,
            no_input: false,
            allow: Vec::new(),
            ask: Vec::new(),
            deny: Vec::new(),
            allow_domain: Vec::new(),
            settings: Vec::new(),
            attach_browser: None,
            trust: false,
            max_turns: None,
            max_tokens: None,
            time_limit: None,
            json: false,
        }
    }
}

/// `cubicle run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The outcome you want, in your own words; or `/plugin:command ARGS`
    /// (`/command` when unambiguous) or `/skill ARGS` to start with a
    /// plugin's command or a skill (`//…` sends a leading slash as typed).
    pub task: String,
    /// Session options.
    #[command(flatten)]
    pub opts: SessionOpts,
}

/// `cubicle chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Session options.
    #[command(flatten)]
    pub opts: SessionOpts,
}

/// `cubicle resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Session id (or a unique prefix); see `cubicle sessions list`.
    pub id: String,
    /// A message to continue with; without one, unfinished work continues.
    pub message: Option<String>,
    /// Keep the session open for more messages afterwards.
    #[arg(long)]
    pub chat: bool,
    /// Never ask the person anything.
    #[arg(long)]
    pub no_input: bool,
    /// Model to continue with, instead of the session's own.
    #[arg(short, long)]
    pub model: Option<String>,
    /// Provider to continue with.
    #[arg(long)]
    pub provider: Option<String>,
    /// Base URL of the provider's API.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Print events as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// `cubicle sessions …`.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Every session, oldest first.
    List {
        /// As JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// One session's transcript, readable.
    Show {
        /// Session id or unique prefix.
        id: String,
        /// The raw JSONL transcript.
        #[arg(long)]
        json: bool,
    },
}

/// `cubicle sandbox …`.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Run one command in a fresh cubicle and exit with its status.
    Exec(ExecArgs),
}

/// `cubicle sandbox exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Where it runs: auto, jail, or host (no isolation).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Run the jail even where the kernel cannot enforce landlock.
    #[arg(long)]
    pub dangerously_allow_no_landlock: bool,
    /// A folder the command may see: DIR, DIR:ro or DIR:rw. Repeatable.
    #[arg(short, long = "grant", value_name = "DIR[:ro|:rw]")]
    pub grants: Vec<String>,
    /// Kill the command after this long (e.g. 30s).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Working directory inside the cubicle.
    #[arg(long)]
    pub cwd: Option<String>,
    /// The command and its arguments.
    #[arg(required = true, last = true)]
    pub command: Vec<String>,
}

/// `cubicle bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Agent overhead per tool call: a scripted model calling a tool N times,
    /// against the same tool calls made directly on the computer.
    Agent {
        /// Tool calls to make.
        #[arg(long, default_value_t = 1000)]
        calls: u32,
        /// Backend.
        #[arg(long, default_value = "host")]
        backend: String,
    },
    /// A live cubicle: warm command round trips (p50/p99) and idle memory.
    Warm {
        /// Round trips.
        #[arg(long, default_value_t = 1000)]
        runs: u32,
        /// Backend.
        #[arg(long, default_value = "jail")]
        backend: String,
    },
    /// `cubicle sandbox exec -- true` against `sh -c true`, as whole processes.
    Exec {
        /// Runs of each.
        #[arg(long, default_value_t = 50)]
        runs: u32,
        /// Backend.
        #[arg(long, default_value = "jail")]
        backend: String,
    },
}

/// `cubicle doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Run the escape suite against a live cubicle and print a scorecard.
    #[arg(long)]
    pub escape_suite: bool,
    /// Backend to attack with --escape-suite.
    #[arg(long, default_value = "jail")]
    pub backend: String,
}

/// `cubicle policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Each setting with the layer and file it came from.
    Show {
        /// Every effective value, defaults included.
        #[arg(long)]
        effective: bool,
    },
    /// The decision on a call written as a rule, and the rule that made it:
    /// cubicle policy check 'Bash(rm -rf /mnt/x)'.
    Check {
        /// The call, e.g. 'Read(/mnt/contracts/a.pdf)' or 'WebFetch(domain:example.org)'.
        call: String,
    },
    /// Allow the cubicle to reach a domain, in your settings file.
    AllowDomain {
        /// e.g. api.github.com or *.wikipedia.org.
        domain: String,
    },
}

/// `cubicle audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole chain; names the first edited, deleted, inserted or reordered record.
    Verify,
    /// The latest records.
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing records as they are appended.
        #[arg(short, long)]
        follow: bool,
    },
    /// Every record, as JSON lines or as an OpenTelemetry logs payload.
    Export {
        /// jsonl or otlp.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// With otlp: POST the payload to this OTLP/HTTP logs endpoint.
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
    },
}

/// `cubicle secret …`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret (read from stdin) for `secret = "keyring:NAME"` rules.
    /// It stays on this computer; the egress proxy adds it to requests for
    /// the rule's domain, and the cubicle never sees it.
    Set {
        /// The name the credential rule uses.
        name: String,
    },
}
