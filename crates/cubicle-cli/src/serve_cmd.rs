//! `cubicle serve`: the local server and its web UI. It listens on
//! 127.0.0.1, prints the URL to open (which carries the run's secret token),
//! opens it in the browser unless told not to, and runs until Ctrl-C, when it
//! ends the running sessions cleanly. With `--remote`, and only when policy
//! sets `server.allow_remote = true`, it also listens for paired devices on
//! the network, over TLS.
//!
//! While it runs, `server.json` in the data folder (mode 0600) tells `cubicle
//! pair` where the server is and holds the owner token; it is removed on exit.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use cubicle_audit::AuditLog;
use cubicle_server::{
    MarketplaceGate, PluginAccess, PolicyReport, PolicySetting, RemoteConfig, Server, ServerConfig,
    SessionStarter, SettingsStore,
};
use serde::{Deserialize, Serialize};

/// The policy key that lets the server listen beyond loopback.
pub const ALLOW_REMOTE_KEY: &str = cubicle_policy::schema::SERVER_ALLOW_REMOTE;

/// Options of `cubicle serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Port to listen on, on 127.0.0.1 (0 or none: pick a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Print the URL but do not open it in a browser.
    #[arg(long)]
    pub no_open: bool,
    /// Also listen for paired devices (phones, other computers) on this
    /// address, over TLS, e.g. 0.0.0.0:8443. Needs `server.allow_remote =
    /// true` in policy. Pair a device with `cubicle pair` or in the web UI.
    #[arg(long, value_name = "IP:PORT")]
    pub remote: Option<SocketAddr>,
    /// The address devices should use to reach this computer (default: the
    /// listen address, or the interface that routes outwards).
    #[arg(long, value_name = "IP", requires = "remote")]
    pub advertise: Option<IpAddr>,
}

/// Opens the audit log in a data folder (the CLI passes `safety::open_audit`).
pub type OpenAudit = fn(&Path) -> anyhow::Result<Arc<AuditLog>>;

/// Whether the effective policy lets the server listen beyond loopback: the
/// key must be set to `true`; until the policy schema knows the key, no
/// settings file can set it, so remote access stays off.
pub fn remote_allowed(policy: &cubicle_policy::Policy) -> Result<(), String> {
    let setting = policy
        .effective()
        .into_iter()
        .find(|s| s.key == ALLOW_REMOTE_KEY);
    match setting {
        Some(s) if s.value.trim() == "true" => Ok(()),
        Some(s) => Err(format!(
            "policy does not allow remote control ({ALLOW_REMOTE_KEY} = {} — from {})",
            s.value,
            s.origin
                .as_ref()
                .map_or_else(|| "default".to_owned(), ToString::to_string)
        )),
        None => Err(format!(
            "policy does not allow remote control: set {ALLOW_REMOTE_KEY} = true in your settings"
        )),
    }
}

/// What `cubicle pair` reads to find the running server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeFile {
    /// The server's process id.
    pub pid: u32,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The owner token.
    pub token: String,
}

/// Where the runtime file lives in a data folder.
pub fn runtime_path(data_root: &Path) -> PathBuf {
    data_root.join("server.json")
}

fn write_runtime(path: &Path, rt: &RuntimeFile) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(rt)?;
    let tmp = path.with_extension("json.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).write(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(&json)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The policy screen's view of `policy`.
pub fn policy_report(policy: &cubicle_policy::Policy) -> PolicyReport {
    PolicyReport {
        settings: policy
            .effective()
            .into_iter()
            .map(|s| PolicySetting {
                origin: s
                    .origin
                    .as_ref()
                    .map_or_else(|| "default".to_owned(), ToString::to_string),
                key: s.key,
                value: s.value,
            })
            .collect(),
        notices: policy.notices().iter().map(ToString::to_string).collect(),
        digest: policy.digest(),
    }
}

/// The marketplace check of `policy`'s `marketplaces.allow` / `block` lists
/// (as `cubicle plugin` applies them).
pub fn marketplace_gate(policy: &cubicle_policy::Policy) -> MarketplaceGate {
    let policy = policy.clone();
    Arc::new(move |id: &str| policy.marketplace_allowed(id).map_err(|d| d.explain()))
}

/// `cubicle serve`: serves until Ctrl-C. Sessions started from the browser
/// are started by `starter`, the same code path as `cubicle run`; paired
/// devices' actions go to the audit log `open_audit` opens (sealed with
/// `audit_key`, if the person stored one); the settings screen reads and
/// writes `settings`.
pub async fn run(
    args: ServeArgs,
    starter: Arc<dyn SessionStarter>,
    policy: &cubicle_policy::Policy,
    open_audit: OpenAudit,
    audit_key: Option<Vec<u8>>,
    settings: Option<Arc<dyn SettingsStore>>,
) -> anyhow::Result<ExitCode> {
    let store = cubicle_agent::Store::from_env(|k| std::env::var(k).ok())?;
    let data_root = store.root().to_path_buf();
    let remote = match args.remote {
        None => None,
        Some(listen) => {
            if let Err(why) = remote_allowed(policy) {
                bail!("{why}; without --remote, `cubicle serve` listens on this computer only");
            }
            Some(RemoteConfig {
                listen,
                advertise: args.advertise,
            })
        }
    };
    let audit = match open_audit(&data_root) {
        Ok(log) => Some(log),
        Err(e) if remote.is_none() => {
            eprintln!("cubicle: note: paired devices are refused: {e:#}");
            None
        }
        Err(e) => return Err(e.context("remote control needs the audit log")),
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port.unwrap_or(0)));
    let config_dir = cubicle_skills::discover::config_dir_from_env();
    let plugins = config_dir.as_deref().map(|dir| PluginAccess {
        store: cubicle_skills::plugin_store::PluginStore::new(
            cubicle_skills::plugin_store::plugins_dir(dir),
        ),
        gate: marketplace_gate(policy),
    });
    let server = Server::start(ServerConfig {
        addr,
        starter,
        store,
        data_dir: data_root.clone(),
        audit,
        remote,
        policy: Some(policy_report(policy)),
        audit_key,
        skills: Some(cubicle_skills::SkillRoots::from_env(&[])),
        prefs_dir: config_dir.as_deref().map(cubicle_skills::prefs_dir),
        plugins,
        settings,
    })
    .await?;
    let url = server.url();
    let rt_path = runtime_path(&data_root);
    let runtime = RuntimeFile {
        pid: std::process::id(),
        base_url: format!("http://127.0.0.1:{}", server.addr().port()),
        token: server.token().to_owned(),
    };
    if let Err(e) = write_runtime(&rt_path, &runtime) {
        eprintln!("cubicle: note: `cubicle pair` will not find this server: {e:#}");
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Cubicle is running. Open this link (it is your key — do not share it):"
        )?;
        writeln!(out, "  {url}")?;
        if let Some(r) = server.remote() {
            writeln!(
                out,
                "Paired devices connect to {} (certificate SHA-256 {}).",
                r.base_url, r.fingerprint
            )?;
            writeln!(out, "Pair one with `cubicle pair` or in the web UI.")?;
        }
        writeln!(out, "Press Ctrl-C to stop.")?;
        out.flush()?;
    }
    if !args.no_open {
        open_browser(&url);
    }
    let waited = tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C");
    eprintln!("cubicle: stopping; ending running sessions…");
    // Only remove the file if it is still ours (another server may have started).
    if std::fs::read(&rt_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<RuntimeFile>(&b).ok())
        .is_some_and(|r| r == runtime)
    {
        let _ = std::fs::remove_file(&rt_path);
    }
    server.shutdown().await;
    waited?;
    Ok(ExitCode::SUCCESS)
}

/// Opens `url` in the person's browser; a failure only means they open it
/// by hand, so it is not an error.
fn open_browser(url: &str) {
    let mut cmd = if cfg!(target_os = "macos") {
        tokio::process::Command::new("open")
    } else if cfg!(windows) {
        let mut c = tokio::process::Command::new("rundll32");
        c.arg("url.dll,FileProtocolHandler");
        c
    } else {
        tokio::process::Command::new("xdg-open")
    };
    cmd.arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match cmd.spawn() {
        // Reap it in the background so it does not linger as a zombie.
        Ok(mut child) => {
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        Err(e) => tracing::debug!("could not open a browser: {e}"),
    }
}
