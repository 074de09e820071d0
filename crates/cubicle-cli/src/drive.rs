//! `cubicle run`, `chat` and `resume`: start (or reopen) a session, feed it
//! the person's messages, answers and approvals, and render what it does.
//!
//! A session brings in what installed plugins and settings files add (see
//! `cubicle_skills::settings`): hooks and MCP servers, run inside the
//! cubicle; plugins' agents as delegates; and slash commands: a message
//! typed as `/plugin:command ARGS`, `/command ARGS` or `/skill ARGS` is
//! sent as the command's expanded prompt, and an approval the command's
//! `allowed-tools` covers is answered without asking for that turn.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cubicle_agent::{
    SessionConfig, SessionHandle, SessionParams, Store, Transcript, TranscriptWriter,
};
use cubicle_models::ModelClient;
use cubicle_models::provider::{ProviderSpec, resolve as resolve_provider};
use cubicle_protocol::conversation::Role;
use cubicle_protocol::events::{Answer, Event, Op, TurnEndReason};
use cubicle_protocol::transcript::{Header, Record, TRANSCRIPT_FORMAT, TRANSCRIPT_VERSION};
use cubicle_sandbox::{Computer, Grant};

use crate::backend;
use crate::cli::{ChatArgs, ResumeArgs, RunArgs, SessionOpts};
use crate::config::{Config, parse_duration};
use crate::interact::{self, Input};
use crate::render::Renderer;
use crate::safety::{self, PolicyArgs};

/// `cubicle run "TASK"` (or `cubicle run "/plugin:command ARGS"`).
pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let started = start(&args.opts, Some(&args.task)).await?;
    drive_to_end(started, None, false, args.opts.json).await
}

/// `cubicle chat`.
pub async fn chat(args: ChatArgs) -> Result<ExitCode> {
    let started = start(&args.opts, None).await?;
    drive_to_end(started, None, true, args.opts.json).await
}

/// Drives a started session from the terminal until it ends, then records
/// its end and stops its computer.
async fn drive_to_end(
    started: Started,
    first: Option<Op>,
    chat: bool,
    json: bool,
) -> Result<ExitCode> {
    let first = match (first, started.first.clone()) {
        (Some(op), _) => Some(First::Op(op)),
        (None, Some(prompt)) => Some(First::Prompt(prompt)),
        (None, None) => None,
    };
    let outcome = drive(started.handle, first, &started.commands, chat, json).await;
    finish(
        &*started.computer,
        &started.store,
        &started.id,
        &started.audit,
        &outcome,
    )
    .await;
    outcome.map(|o| o.code)
}

/// `cubicle resume ID [MESSAGE]`.
pub async fn resume(args: ResumeArgs) -> Result<ExitCode> {
    let store = store()?;
    let id = store.resolve(&args.id)?;
    let transcript = Transcript::load(&store.transcript_path(&id))?;
    for w in &transcript.warnings {
        eprintln!("cubicle: warning: {w}");
    }
    let unfinished = transcript
        .history()
        .last()
        .is_some_and(|m| m.role == Role::User);
    let first = match (&args.message, unfinished) {
        // Expanded once the session's commands are known.
        (Some(_), _) => None,
        (None, true) => Some(Op::Continue),
        (None, false) if args.chat => None,
        (None, false) => bail!(
            "session {id} finished its last turn; give a message to continue it: cubicle resume {id} \"…\""
        ),
    };
    let started = reopen(
        store,
        id,
        transcript,
        ProviderSpec {
            provider: args.provider.clone(),
            model: args.model.clone(),
            base_url: args.base_url.clone(),
            api_key: None,
            replay: None,
        },
        !args.no_input,
    )
    .await?;
    let mut started = started;
    if let Some(text) = &args.message {
        match interact::prepare(&started.commands, text) {
            Ok(prompt) => started.first = Some(prompt),
            Err(e) => {
                let _ = started.computer.stop().await;
                bail!("{e}");
            }
        }
    }
    drive_to_end(started, first, args.chat, args.json).await
}

/// Brings session `id` back from its `transcript`: its grants, backend and
/// history, with the policy in force now and the model of `spec` (the
/// transcript's own where `spec` names none). Sends it nothing.
async fn reopen(
    store: Store,
    id: String,
    transcript: Transcript,
    spec: ProviderSpec,
    interactive: bool,
) -> Result<Started> {
    let path = store.transcript_path(&id);
    let header = &transcript.header;
    let (provider, model) = match (&spec.provider, &spec.model) {
        (None, None) => match header.model.split_once(':') {
            Some((p, m)) => (Some(p.to_owned()), Some(m.to_owned())),
            None => (None, Some(header.model.clone())),
        },
        (p, m) => (p.clone(), m.clone()),
    };
    let base_url = spec.base_url.clone();
    let model = model_client(&ProviderSpec {
        provider,
        model,
        ..spec
    })?;
    let grants = header
        .grants
        .iter()
        .map(|g| {
            let mode = if g.writable { "rw" } else { "ro" };
            let mut grant = Grant::parse(&format!("{}:{mode}", g.host_path))
                .with_context(|| "a folder this session was granted is gone")?;
            if let Some(name) = g.path.strip_prefix("/mnt/") {
                grant.name = name.to_owned();
            }
            Ok(grant)
        })
        .collect::<Result<Vec<_>>>()?;
    // The policy in force now applies, not the one the session started under.
    let policy = Arc::new(safety::load_policy(
        &PolicyArgs {
            explicit_backend: Some(header.backend.clone()),
            ..PolicyArgs::default()
        },
        &grants,
    )?);
    safety::check_allowed(&policy, &header.backend, model.provider(), model.model())?;
    let audit = safety::open_audit(store.root())?;
    safety::audit_policy(&audit, &id, &policy)?;
    let egress = safety::egress(&policy, &id, audit.clone())?;
    // Whether the person trusted the folders is not recorded: their
    // `.mcp.json` servers are not started again.
    let plugins = load_plugins(&grants, false);
    let options = backend::BackendOptions {
        plugins: plugins.mounts.clone(),
        egress: Some(Arc::new(safety::ProxyConnector(egress.proxy.clone()))),
        env: if egress.ca_pem.is_some() {
            safety::ca_env()
        } else {
            Default::default()
        },
        ..Default::default()
    };
    let computer = backend::start(
        &header.backend,
        grants,
        header.workspace.clone().into(),
        &options,
    )
    .await?;
    if let Some(pem) = &egress.ca_pem {
        safety::install_ca(&*computer, pem).await?;
    }
    let writer = Arc::new(TranscriptWriter::append_to(&path, transcript.last_seq())?);
    writer.append(
        None,
        Record::Resumed {
            model: format!("{}:{}", model.provider(), model.model()),
        },
    )?;
    let commands = Arc::new(command_index(&plugins, None));
    let agents = plugins.agents.clone();
    let (hooks, mcp) = start_plugins(plugins, &computer, &id, &path, &policy, &egress.proxy).await;
    let mut tools = tools_for(&policy);
    tools.extend(mcp);
    let attach = crate::browser_cmd::attach_address(
        &policy,
        None,
        Config::load()?.browser_attach.as_deref(),
    );
    let delegates = session_delegates(
        &policy,
        &egress.proxy,
        attach.as_deref(),
        &agents,
        &tools,
        &*computer,
        &agent_models(&model, base_url.clone(), &policy, &header.backend),
    )
    .await;
    let config = SessionConfig {
        interactive,
        delegates,
        hooks,
        ..SessionConfig::default()
    };
    let handle = cubicle_agent::spawn(SessionParams {
        id: id.clone(),
        model,
        computer: computer.clone(),
        transcript: writer,
        tools,
        gate: crate::browser_cmd::session_gate(&policy, attach.is_some()),
        config,
        history: transcript.history(),
        audit: Some(audit.clone()),
    });
    Ok(Started {
        id,
        store,
        computer,
        handle,
        audit,
        commands,
        first: None,
    })
}

struct Started {
    id: String,
    store: Store,
    computer: Arc<dyn Computer>,
    handle: SessionHandle,
    audit: Arc<cubicle_audit::AuditLog>,
    /// The slash commands the person may type.
    commands: Arc<cubicle_skills::CommandIndex>,
    /// The first message, already expanded (`cubicle run`'s task).
    first: Option<interact::Prompt>,
}

fn store() -> Result<Store> {
    Ok(Store::from_env(|k| std::env::var(k).ok())?)
}

/// The model client `spec` asks for. A provider's key comes from its
/// environment variable or, when that is not set, from the key stored in the
/// settings screen of `cubicle serve`.
fn model_client(spec: &ProviderSpec) -> Result<Arc<dyn ModelClient>> {
    let env = crate::model_settings::session_env()?;
    resolve_provider(spec, &env).map_err(|e| match e {
        cubicle_models::ModelError::NoProvider => anyhow::anyhow!(
            "no model is configured — set ANTHROPIC_API_KEY or store a key in the settings of `cubicle serve`, or use --provider openai --base-url URL for a local server (llama.cpp, Ollama, vLLM); to see Cubicle work without one, run `cubicle demo`"
        ),
        other => other.into(),
    })
}

async fn start(opts: &SessionOpts, task: Option<&str>) -> Result<Started> {
    let config = Config::load()?;
    // Check what the person typed before anything slower or networked.
    let grants = backend::parse_grants(&opts.grants)?;
    let backend_name = if opts.backend == "auto" {
        config.backend.clone().unwrap_or_else(|| "auto".into())
    } else {
        opts.backend.clone()
    };
    let time_limit = opts.time_limit.as_deref().map(parse_duration).transpose()?;
    // A slash command the person typed is checked with the rest: an
    // unknown one fails before anything starts.
    let skills = discover_skills(&grants, opts.trust);
    let plugins = load_plugins(&grants, opts.trust);
    let commands = Arc::new(command_index(&plugins, skills.catalog.as_ref()));
    let first = task
        .map(|t| interact::prepare(&commands, t))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy = Arc::new(safety::load_policy(
        &PolicyArgs {
            allow: opts.allow.clone(),
            ask: opts.ask.clone(),
            deny: opts.deny.clone(),
            allow_domains: opts.allow_domain.clone(),
            settings: opts.settings.clone(),
            trust_grants: opts.trust,
            explicit_backend: (backend_name != "auto").then(|| backend_name.clone()),
        },
        &grants,
    )?);
    let backend_name = backend::resolve(&backend_name)?;
    let base_url = opts.base_url.clone().or(config.base_url.clone());
    let model = model_client(&ProviderSpec {
        provider: opts.provider.clone().or(config.provider.clone()),
        model: opts.model.clone().or(config.model.clone()),
        base_url: base_url.clone(),
        api_key: None,
        replay: opts.replay.clone(),
    })?;
    safety::check_allowed(&policy, backend_name, model.provider(), model.model())?;
    let store = store()?;
    let id = Store::new_session_id();
    let audit = safety::open_audit(store.root())?;
    safety::audit_policy(&audit, &id, &policy)?;
    let egress = safety::egress(&policy, &id, audit.clone())?;
    let workspace = store.workspace_path(&id);
    let options = backend::BackendOptions {
        skills: skills.mounts.clone(),
        plugins: plugins.mounts.clone(),
        dangerously_allow_no_landlock: opts.dangerously_allow_no_landlock,
        egress: Some(Arc::new(safety::ProxyConnector(egress.proxy.clone()))),
        env: if egress.ca_pem.is_some() {
            safety::ca_env()
        } else {
            Default::default()
        },
    };
    let computer = backend::start(backend_name, grants, workspace, &options).await?;
    if let Some(pem) = &egress.ca_pem {
        safety::install_ca(&*computer, pem).await?;
    }
    let info = computer.info().clone();
    let model_name = format!("{}:{}", model.provider(), model.model());
    audit.append(
        Some(&id),
        cubicle_audit::RecordKind::SessionStart {
            task: task.unwrap_or("(chat)").to_owned(),
            model: model_name.clone(),
            backend: info.backend.clone(),
            grants: audit_grants(&info.grants),
        },
    )?;
    let header = Header {
        format: TRANSCRIPT_FORMAT.into(),
        version: TRANSCRIPT_VERSION,
        session_id: id.clone(),
        created_at: cubicle_agent::transcript::now_rfc3339(),
        cubicle_version: env!("CARGO_PKG_VERSION").into(),
        task: task.map(str::to_owned),
        model: model_name,
        backend: info.backend.clone(),
        grants: info.grants.clone(),
        workspace: info.workspace_host.clone(),
        label: None,
    };
    let writer = Arc::new(TranscriptWriter::create(
        &store.transcript_path(&id),
        &header,
    )?);
    let mut tools = tools_for(&policy);
    if let Some(tool) = skills.tool.clone() {
        tools.push(tool);
    }
    let agents = plugins.agents.clone();
    let (hooks, mcp) = start_plugins(
        plugins,
        &computer,
        &id,
        &store.transcript_path(&id),
        &policy,
        &egress.proxy,
    )
    .await;
    tools.extend(mcp);
    let attach = crate::browser_cmd::attach_address(
        &policy,
        opts.attach_browser.as_deref(),
        config.browser_attach.as_deref(),
    );
    let delegates = session_delegates(
        &policy,
        &egress.proxy,
        attach.as_deref(),
        &agents,
        &tools,
        &*computer,
        &agent_models(&model, base_url, &policy, backend_name),
    )
    .await;
    let session_config = SessionConfig {
        interactive: !opts.no_input,
        prompt_appendix: skills.prompt.clone(),
        max_turns: opts.max_turns.or(config.max_turns).unwrap_or(200),
        max_total_tokens: opts.max_tokens,
        max_wall: time_limit,
        delegates,
        hooks,
        ..SessionConfig::default()
    };
    let handle = cubicle_agent::spawn(SessionParams {
        id: id.clone(),
        model,
        computer: computer.clone(),
        transcript: writer,
        tools,
        gate: crate::browser_cmd::session_gate(&policy, attach.is_some()),
        config: session_config,
        history: Vec::new(),
        audit: Some(audit.clone()),
    });
    Ok(Started {
        id,
        store,
        computer,
        handle,
        audit,
        commands,
        first,
    })
}

/// The slash commands of a session: installed plugins' commands first,
/// then the skills a person may invoke.
fn command_index(
    plugins: &SessionPlugins,
    skills: Option<&cubicle_skills::Catalog>,
) -> cubicle_skills::CommandIndex {
    let prefs = crate::config::config_dir().map(|d| cubicle_skills::prefs_dir(&d));
    let mut index = cubicle_skills::CommandIndex::new(prefs);
    for p in &plugins.loaded {
        index.add_plugin(p);
    }
    if let Some(catalog) = skills {
        index.add_skills(catalog);
    }
    index
}

/// The session's delegates: the browser sub-agent (when Chromium is there
/// and the policy allows it), then the installed plugins' agents.
async fn session_delegates(
    policy: &cubicle_policy::Policy,
    egress: &cubicle_egress::EgressProxy,
    attach: Option<&str>,
    agents: &[cubicle_skills::plugin::AgentDefinition],
    tools: &[Arc<dyn cubicle_tools::Tool>],
    computer: &dyn Computer,
    models: &ModelFor<'_>,
) -> Vec<cubicle_agent::Delegate> {
    let mut delegates: Vec<cubicle_agent::Delegate> =
        crate::browser_cmd::delegate(policy, egress, attach)
            .await
            .into_iter()
            .collect();
    delegates.extend(plugin_delegates(agents, tools, computer, models));
    delegates
}

/// Installed plugins' agent definitions as delegates the model can call
/// (`plugin__agent`), each with the tools its definition lists.
fn plugin_delegates(
    agents: &[cubicle_skills::plugin::AgentDefinition],
    tools: &[Arc<dyn cubicle_tools::Tool>],
    computer: &dyn Computer,
    models: &ModelFor<'_>,
) -> Vec<cubicle_agent::Delegate> {
    let environment = cubicle_agent::prompt::subagent_prompt(computer.info());
    agents
        .iter()
        .map(|def| {
            let (mut d, warnings) = cubicle_skills::agents::delegate(
                def,
                tools,
                &cubicle_policy::rule::cubicle_tool_name,
                &environment,
            );
            for w in warnings {
                tracing::info!("plugins: {w}");
            }
            if let Some(wanted) = def.model.as_deref().filter(|m| *m != "inherit") {
                match models(wanted) {
                    Ok(model) => d.model = Some(model),
                    Err(why) => eprintln!(
                        "cubicle: warning: agent `{}` asks for the model `{wanted}`: {why}; it runs on the session's model",
                        def.name
                    ),
                }
            }
            d
        })
        .collect()
}

/// Builds the model client a name asks for, or says why it cannot.
type ModelFor<'a> = dyn Fn(&str) -> Result<Arc<dyn ModelClient>, String> + Send + Sync + 'a;

/// Resolves the model a plugin agent names, on the session's provider and
/// API root: Claude Code's aliases (`sonnet`, `opus`, `haiku`) name
/// Anthropic's models, anything else is a model id. The policy's allowed
/// providers and models apply as to the session's own model.
fn agent_models<'a>(
    session: &'a Arc<dyn ModelClient>,
    base_url: Option<String>,
    policy: &'a cubicle_policy::Policy,
    backend: &'a str,
) -> impl Fn(&str) -> Result<Arc<dyn ModelClient>, String> + Send + Sync + 'a {
    move |wanted: &str| {
        let provider = session.provider();
        let id = match (provider, cubicle_models::anthropic::alias(wanted)) {
            ("anthropic", Some(id)) => id.to_owned(),
            (_, Some(_)) => {
                return Err(format!(
                    "`{wanted}` names an Anthropic model and the session runs on {provider}"
                ));
            }
            _ => wanted.to_owned(),
        };
        if provider == "replay" {
            return Err("a replayed session has only its recorded model".to_owned());
        }
        if id == session.model() {
            return Ok(session.clone());
        }
        safety::check_allowed(policy, backend, provider, &id).map_err(|e| e.to_string())?;
        model_client(&ProviderSpec {
            provider: Some(provider.to_owned()),
            model: Some(id),
            base_url: base_url.clone(),
            api_key: None,
            replay: None,
        })
        .map_err(|e| e.to_string())
    }
}

/// The skills a session can use: their catalog for the system prompt, the
/// `skill` tool, and their folders to show read-only in the cubicle.
struct SessionSkills {
    prompt: Option<String>,
    catalog: Option<cubicle_skills::Catalog>,
    tool: Option<Arc<dyn cubicle_tools::Tool>>,
    mounts: Vec<(String, std::path::PathBuf)>,
}

/// Tokens of the system prompt the skill catalog may use.
const SKILL_CATALOG_BUDGET: usize = 2_000;

fn discover_skills(grants: &[Grant], trust: bool) -> SessionSkills {
    let folders: Vec<(std::path::PathBuf, bool)> = grants
        .iter()
        .map(|g| (g.host_path.clone(), trust))
        .collect();
    let roots = cubicle_skills::SkillRoots::from_env(&folders);
    let found = cubicle_skills::discover(&roots);
    for n in &found.notices {
        tracing::info!("skills: {n}");
    }
    if found.catalog.is_empty() {
        return SessionSkills {
            prompt: None,
            catalog: None,
            tool: None,
            mounts: Vec::new(),
        };
    }
    // Each skill shows where its own instructions say it is
    // (`${CLAUDE_SKILL_DIR}`): `plugin:skill` is `/mnt/.skills/plugin/skill`.
    let mounts = found
        .catalog
        .skills()
        .iter()
        .filter_map(|s| {
            let dir = s.cubicle_dir();
            let below = dir
                .strip_prefix(cubicle_skills::skill::CUBICLE_SKILLS_MOUNT)?
                .trim_start_matches('/')
                .to_owned();
            Some((below, s.host_dir().to_path_buf()))
        })
        .collect();
    let catalog = found.catalog.render(SKILL_CATALOG_BUDGET);
    let prompt = (!catalog.is_empty()).then(|| {
        format!(
            "# Skills\nThese skills hold instructions and scripts for particular kinds of work. When one fits the task, activate it with the `skill` tool before starting; its files are read-only under /mnt/.skills/<name> (a plugin's `plugin:skill` under /mnt/.skills/plugin/skill).\n{catalog}"
        )
    });
    let prefs = crate::config::config_dir().map(|d| cubicle_skills::prefs_dir(&d));
    let catalog = found.catalog.clone();
    let tool: Arc<dyn cubicle_tools::Tool> = Arc::new(cubicle_skills::SkillTool::new(
        Arc::new(std::sync::RwLock::new(found.catalog)),
        prefs,
    ));
    SessionSkills {
        prompt,
        catalog: Some(catalog),
        tool: Some(tool),
        mounts,
    }
}

/// What installed plugins and settings files bring to a session: folders
/// to show, commands, agents, hooks to run, MCP servers to start.
struct SessionPlugins {
    mounts: Vec<(String, std::path::PathBuf)>,
    loaded: Vec<cubicle_skills::plugin::Plugin>,
    agents: Vec<cubicle_skills::plugin::AgentDefinition>,
    hooks: cubicle_skills::hooks::HookSet,
    servers: Vec<cubicle_skills::mcp::McpServerConfig>,
    /// Names of the servers that came with a plugin rather than from the
    /// person's or the administrator's settings.
    plugin_servers: std::collections::BTreeSet<String>,
}

/// Loads the installed plugins, then the hooks and MCP servers of the
/// settings files (see `cubicle_skills::settings`); one that fails to load
/// is a warning and the others still work. A granted folder's files count
/// only when the person trusts the folder: they name programs to run.
fn load_plugins(grants: &[Grant], trust: bool) -> SessionPlugins {
    let mut out = SessionPlugins {
        mounts: Vec::new(),
        loaded: Vec::new(),
        agents: Vec::new(),
        hooks: cubicle_skills::hooks::HookSet::new(),
        servers: Vec::new(),
        plugin_servers: Default::default(),
    };
    let config = crate::config::config_dir();
    if let Some(config) = &config {
        let store = cubicle_skills::plugin_store::PluginStore::new(
            cubicle_skills::plugin_store::plugins_dir(config),
        );
        match store.load_installed() {
            Ok(loaded) => {
                for (record, plugin) in loaded {
                    match plugin {
                        Ok(mut p) => {
                            out.mounts.push((p.name().to_owned(), p.root.clone()));
                            out.agents.append(&mut p.agents);
                            out.hooks.extend(std::mem::take(&mut p.hooks));
                            out.plugin_servers
                                .extend(p.mcp_servers.iter().map(|s| s.name.clone()));
                            out.servers.append(&mut p.mcp_servers);
                            out.loaded.push(p);
                        }
                        Err(e) => eprintln!(
                            "cubicle: warning: plugin {} is not loaded: {e}",
                            record.spec()
                        ),
                    }
                }
            }
            Err(e) => eprintln!("cubicle: warning: installed plugins are not loaded: {e}"),
        }
    }
    let managed_dir = std::env::var_os("CUBICLE_MANAGED_DIR")
        .map_or_else(|| std::path::PathBuf::from("/etc/cubicle"), Into::into);
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let projects = grants
        .iter()
        .map(|g| cubicle_skills::settings::ProjectSettings {
            host_path: g.host_path.clone(),
            cubicle_path: format!("/mnt/{}", g.name),
            trusted: trust,
        })
        .collect();
    let settings =
        cubicle_skills::settings::load(&cubicle_skills::settings::SettingsPaths::standard(
            &managed_dir,
            config.as_deref(),
            home.as_deref(),
            projects,
        ));
    for w in &settings.warnings {
        eprintln!("cubicle: warning: {w}");
    }
    for f in &settings.untrusted {
        tracing::info!(
            "settings: {} is not read: its folder is not trusted (--trust)",
            f.display()
        );
    }
    // Managed hooks first; a user's or project's `disable_all` turns off
    // every other hook, a managed one every hook.
    let mut others = settings.hooks;
    others.extend(std::mem::take(&mut out.hooks));
    let mut off = 0;
    let mut hooks = if settings.managed_disabled {
        off += settings.managed_hooks.len();
        cubicle_skills::hooks::HookSet::new()
    } else {
        settings.managed_hooks
    };
    if settings.hooks_disabled || settings.managed_disabled {
        off += others.len();
    } else {
        hooks.extend(others);
    }
    if off > 0 {
        eprintln!(
            "cubicle: {off} hook(s) are not run: a settings file turns hooks off (disable_all / disableAllHooks)"
        );
    }
    out.hooks = hooks;
    let mut servers = settings.servers;
    servers.append(&mut out.servers);
    out.servers = servers;
    out
}

/// Starts the plugins' MCP stdio servers inside the cubicle and sets up
/// their hooks there. A server that fails to start is a warning; the
/// session goes on without it. Its tools obey the policy like any other.
/// HTTP servers are reached from the host through the session's egress
/// proxy, so the policy's domain rules apply to them.
async fn start_plugins(
    plugins: SessionPlugins,
    computer: &Arc<dyn Computer>,
    id: &str,
    transcript: &Path,
    policy: &cubicle_policy::Policy,
    egress: &cubicle_egress::EgressProxy,
) -> (
    Option<Arc<dyn cubicle_agent::SessionHooks>>,
    Vec<Arc<dyn cubicle_tools::Tool>>,
) {
    let hooks = (!plugins.hooks.is_empty()).then(|| {
        let executor = Arc::new(cubicle_skills::in_cubicle::CubicleHookExecutor::new(
            computer.clone(),
            None,
        ));
        let runner = cubicle_skills::hooks::HookRunner::new(plugins.hooks, executor);
        Arc::new(cubicle_skills::in_cubicle::PluginHooks::new(
            runner,
            id,
            &transcript.display().to_string(),
            &computer.info().workspace,
        )) as Arc<dyn cubicle_agent::SessionHooks>
    });
    let needs_proxy = plugins
        .servers
        .iter()
        .any(|s| matches!(s.transport, cubicle_skills::mcp::McpTransport::Http { .. }));
    let proxy = if needs_proxy {
        egress
            .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| e.to_string())
    } else {
        Err("no HTTP server is configured".to_owned())
    };
    let proxy = &proxy;
    let plugin_servers = &plugins.plugin_servers;
    let starts = plugins.servers.iter().map(|server| async move {
        let client = match &server.transport {
            cubicle_skills::mcp::McpTransport::Stdio { .. } => {
                cubicle_skills::in_cubicle::connect_stdio(computer.clone(), server).await
            }
            cubicle_skills::mcp::McpTransport::Http { url, headers } => match proxy {
                // A plugin is someone else's code: it does not get to send
                // the person's host variables (API keys) to a server of its
                // choosing. Servers the person configures in settings may.
                _ if plugin_servers.contains(&server.name)
                    && std::iter::once(url)
                        .chain(headers.values())
                        .any(|v| v.contains("${")) =>
                {
                    return Err(format!(
                        "MCP server `{}` ({}) asks for host environment variables (`${{…}}`); only servers configured in your settings get them — copy it into `[mcp_servers]` of ~/.config/cubicle/settings.toml to allow that",
                        server.name, server.origin
                    ));
                }
                Ok(addr) => {
                    cubicle_skills::mcp::connect_http(server, *addr, &|k| std::env::var(k).ok())
                        .await
                }
                Err(e) => {
                    return Err(format!(
                        "MCP server `{}` ({}): cannot start the egress proxy for it: {e}",
                        server.name, server.origin
                    ));
                }
            },
        };
        let client: Arc<dyn cubicle_skills::mcp::McpClient> =
            Arc::new(client.map_err(|e| format!("{e} ({})", server.origin))?);
        cubicle_skills::mcp::mcp_tools(client)
            .await
            .map_err(|e| format!("{e} ({})", server.origin))
    });
    let mut tools: Vec<Arc<dyn cubicle_tools::Tool>> = Vec::new();
    for result in futures::future::join_all(starts).await {
        match result {
            Ok(found) => tools.extend(
                found
                    .into_iter()
                    .filter(|t| policy.tool_disabled(cubicle_tools::Tool::name(t)).is_none())
                    .map(|t| Arc::new(t) as Arc<dyn cubicle_tools::Tool>),
            ),
            Err(e) => eprintln!("cubicle: warning: {e}; the session goes on without it"),
        }
    }
    (hooks, tools)
}

/// The computer tools the policy does not disable.
fn tools_for(policy: &cubicle_policy::Policy) -> Vec<Arc<dyn cubicle_tools::Tool>> {
    cubicle_tools::computer_tools()
        .into_iter()
        .filter(|t| policy.tool_disabled(t.name()).is_none())
        .collect()
}

fn audit_grants(grants: &[cubicle_protocol::events::GrantInfo]) -> Vec<cubicle_audit::Grant> {
    grants
        .iter()
        .map(|g| cubicle_audit::Grant {
            path: g.path.clone(),
            host_path: g.host_path.clone(),
            writable: g.writable,
        })
        .collect()
}

async fn finish(
    computer: &dyn Computer,
    store: &Store,
    id: &str,
    audit: &cubicle_audit::AuditLog,
    outcome: &Result<Outcome>,
) {
    let (reason, usage) = match outcome {
        Ok(o) => (
            match &o.reason {
                Some(TurnEndReason::Done) | None => "completed".to_owned(),
                Some(TurnEndReason::Interrupted) => "interrupted".to_owned(),
                Some(TurnEndReason::Budget { detail }) => format!("budget: {detail}"),
                Some(TurnEndReason::Error { message }) => format!("error: {message}"),
            },
            o.usage,
        ),
        Err(e) => (format!("error: {e}"), Default::default()),
    };
    if let Err(e) = audit.append(
        Some(id),
        cubicle_audit::RecordKind::SessionEnd {
            reason,
            usage: cubicle_audit::Usage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cache_read: usage.cache_read_input_tokens,
                cache_write: usage.cache_creation_input_tokens,
            },
        },
    ) {
        eprintln!("cubicle: warning: could not write to the audit log: {e}");
    }
    if let Err(e) = computer.stop().await {
        eprintln!("cubicle: warning: stopping the cubicle: {e}");
    }
    eprintln!(
        "cubicle: session {id} — transcript {}, files in {}",
        store.transcript_path(id).display(),
        shown(&store.workspace_path(id))
    );
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// How a driven session ended.
struct Outcome {
    code: ExitCode,
    reason: Option<TurnEndReason>,
    usage: cubicle_protocol::conversation::Usage,
}

/// What a driven session starts with.
enum First {
    /// An op as it is (`Continue` after a resume).
    Op(Op),
    /// A message, already expanded.
    Prompt(interact::Prompt),
}

/// Runs the session's event loop until it ends.
async fn drive(
    mut handle: SessionHandle,
    first: Option<First>,
    commands: &cubicle_skills::CommandIndex,
    chat: bool,
    json: bool,
) -> Result<Outcome> {
    let mut renderer = Renderer::new(json);
    let mut input = Input::stdin();
    let send = |op: Op| {
        let _ = handle.ops.send(op);
    };
    // The running turn's slash command and its `allowed-tools`.
    let mut turn_command: Option<interact::Prompt> = None;
    let send_prompt = |prompt: interact::Prompt, turn: &mut Option<interact::Prompt>| {
        send(Op::UserMessage {
            text: prompt.text.clone(),
        });
        *turn = prompt.command.is_some().then_some(prompt);
    };
    match first {
        Some(First::Op(op)) => send(op),
        Some(First::Prompt(p)) => send_prompt(p, &mut turn_command),
        None => match next_message(&mut input, commands).await {
            Some(p) => send_prompt(p, &mut turn_command),
            None => send(Op::Shutdown),
        },
    }
    let mut last_reason = None;
    let mut last_interrupt: Option<Instant> = None;
    loop {
        tokio::select! {
            ev = handle.events.recv() => {
                let Some(ev) = ev else { break };
                renderer.event(&ev);
                match ev.event {
                    Event::Question { id, questions } => {
                        let answers = tokio::select! {
                            a = interact::ask(&mut input, &questions) => a,
                            _ = tokio::signal::ctrl_c() => { send(Op::Interrupt); continue; }
                        };
                        let answers = answers.unwrap_or_else(|| {
                            vec![Answer { selected: vec![], text: Some("(no answer: input ended)".into()) }; questions.len()]
                        });
                        send(Op::Answer { id, answers });
                    }
                    Event::ApprovalRequest { id, tool, summary, reason } => {
                        if let Some(cmd) = turn_command.as_ref().filter(|c| interact::pre_approved(&c.allowed_tools, &tool)) {
                            eprintln!(
                                "cubicle: allowed without asking, by the allowed-tools of /{}: {summary}",
                                cmd.command.as_deref().unwrap_or_default()
                            );
                            send(Op::Approve { id, decision: cubicle_protocol::events::ApprovalDecision::AllowOnce });
                            continue;
                        }
                        let decision = tokio::select! {
                            d = interact::approve(&mut input, &summary, &reason) => d,
                            _ = tokio::signal::ctrl_c() => { send(Op::Interrupt); continue; }
                        };
                        send(Op::Approve { id, decision });
                    }
                    Event::TurnEnded { reason, .. } => {
                        last_reason = Some(reason);
                        turn_command = None;
                        if chat {
                            let next = tokio::select! {
                                m = next_message(&mut input, commands) => m,
                                _ = tokio::signal::ctrl_c() => None,
                            };
                            match next {
                                Some(p) => send_prompt(p, &mut turn_command),
                                None => send(Op::Shutdown),
                            }
                        } else {
                            send(Op::Shutdown);
                        }
                    }
                    Event::SessionEnded => break,
                    _ => {}
                }
            }
            _ = tokio::signal::ctrl_c() => {
                if last_interrupt.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
                    eprintln!("\ncubicle: quitting; everything so far is in the transcript");
                    return Ok(Outcome {
                        code: ExitCode::from(130),
                        reason: Some(TurnEndReason::Interrupted),
                        usage: Default::default(),
                    });
                }
                last_interrupt = Some(Instant::now());
                eprintln!("\ncubicle: interrupting… (Ctrl-C again within 2 s to quit)");
                send(Op::Interrupt);
            }
        }
    }
    let usage = handle.done.await.unwrap_or_default();
    let code = match last_reason {
        Some(TurnEndReason::Done) | None => ExitCode::SUCCESS,
        Some(TurnEndReason::Interrupted) => ExitCode::from(130),
        Some(TurnEndReason::Budget { .. }) => ExitCode::from(3),
        Some(TurnEndReason::Error { .. }) => ExitCode::FAILURE,
    };
    Ok(Outcome {
        code,
        reason: last_reason,
        usage,
    })
}

/// The person's next chat message, slash commands expanded; `None` ends
/// the session. A command that cannot run is explained and the person
/// types again.
async fn next_message(
    input: &mut Input,
    commands: &cubicle_skills::CommandIndex,
) -> Option<interact::Prompt> {
    loop {
        let line = input.line("\n> ").await?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => return None,
            "/help" | "/commands" => {
                print_commands(commands);
                continue;
            }
            text => match interact::prepare(commands, text) {
                Ok(p) => return Some(p),
                Err(e) => eprintln!("cubicle: {e}"),
            },
        }
    }
}

/// `/help` in a chat: the slash commands there are.
#[allow(clippy::print_stdout)]
fn print_commands(commands: &cubicle_skills::CommandIndex) {
    println!("/exit, /quit  end the session");
    for c in commands.commands() {
        let kind = if c.is_skill { "skill" } else { "command" };
        println!("{}  {} ({kind})", c.usage(), c.description);
    }
}

/// Starts sessions for the web UI the way `cubicle run` does: same policy,
/// audit, egress and backend; the browser answers questions and approvals.
pub struct CliStarter;

#[async_trait::async_trait]
impl cubicle_server::SessionStarter for CliStarter {
    async fn start(
        &self,
        req: cubicle_server::StartRequest,
    ) -> Result<cubicle_server::StartedSession, String> {
        let mut opts = SessionOpts::for_front_end(
            req.grants
                .iter()
                .map(|g| format!("{}:{}", g.path, if g.writable { "rw" } else { "ro" }))
                .collect(),
            req.backend.clone().unwrap_or_else(|| "auto".into()),
        );
        opts.model = req.model.clone();
        start_for_server(&opts, &req.task).await
    }

    async fn resume(&self, id: &str) -> Result<cubicle_server::StartedSession, String> {
        let reopened = async {
            let store = store()?;
            let id = store.resolve(id)?;
            let transcript = Transcript::load(&store.transcript_path(&id))?;
            reopen(store, id, transcript, ProviderSpec::default(), true).await
        }
        .await
        .map_err(|e| format!("{e:#}"))?;
        Ok(for_server(reopened))
    }
}

/// Starts a session whose front end is the web UI: the server sends the
/// task; this returns the handle and what to do when the session ends.
pub async fn start_for_server(
    opts: &SessionOpts,
    task: &str,
) -> Result<cubicle_server::StartedSession, String> {
    let started = start(opts, Some(task))
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(for_server(started))
}

/// A started session handed to the server, which finishes it (records its
/// end, stops its computer) when its event stream ends.
fn for_server(started: Started) -> cubicle_server::StartedSession {
    let Started {
        id,
        store,
        computer,
        handle,
        audit,
        commands,
        ..
    } = started;
    let workspace = store.workspace_path(&id);
    // Slash commands typed in the browser expand as in a terminal. A
    // command's `allowed-tools` is not applied there: the browser answers
    // every approval itself.
    let prepare: cubicle_server::PrepareMessage = Arc::new(move |typed: &str| {
        interact::prepare(&commands, typed)
            .map(|p| p.text)
            .map_err(|e| e.to_string())
    });
    let end_id = id.clone();
    let on_end: cubicle_server::OnEnd = Box::new(move |end: cubicle_server::SessionEnd| {
        Box::pin(async move {
            let outcome = Ok(Outcome {
                code: ExitCode::SUCCESS,
                reason: end.reason,
                usage: end.usage,
            });
            finish(&*computer, &store, &end_id, &audit, &outcome).await;
        })
    });
    cubicle_server::StartedSession {
        id,
        handle,
        workspace,
        on_end: Some(on_end),
        prepare: Some(prepare),
    }
}
