//! `cubicle browser snapshot URL`: opens a page in Cubicle's browser, under
//! the same network policy and egress proxy a session gets, and prints what
//! the browser sub-agent would read — for people debugging, and for tests.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cubicle_agent::{GateDecision, PermissionGate, PolicyGate, Store};
use cubicle_browser::{Browser, LaunchOptions, SnapshotLimits, tools::render_snapshot};

use crate::safety::{self, PolicyArgs};

/// `cubicle browser …`.
#[derive(Debug, Subcommand)]
pub enum BrowserCommand {
    /// Print the snapshot of a page as the browser sub-agent reads it.
    Snapshot(SnapshotArgs),
}

/// Arguments of `cubicle browser snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The http:// or https:// address to open.
    pub url: String,
    /// Which page of a long snapshot, from 1.
    #[arg(long, default_value_t = 1)]
    pub page: u32,
    /// Also allow this domain for this run. Repeatable.
    #[arg(long = "allow-domain", value_name = "DOMAIN")]
    pub allow_domains: Vec<String>,
    /// Show the browser window instead of running headless.
    #[arg(long)]
    pub headed: bool,
}

/// Runs a `cubicle browser` command.
pub async fn run(cmd: BrowserCommand) -> Result<ExitCode> {
    match cmd {
        BrowserCommand::Snapshot(args) => snapshot(args).await,
    }
}

async fn snapshot(args: SnapshotArgs) -> Result<ExitCode> {
    let policy = safety::load_policy(
        &PolicyArgs {
            allow_domains: args.allow_domains.clone(),
            ..PolicyArgs::default()
        },
        &[],
    )?;
    let store = Store::from_env(|k| std::env::var(k).ok())?;
    let audit = safety::open_audit(store.root())?;
    let id = Store::new_session_id();
    let egress = safety::egress(&policy, &id, audit)?;
    let proxy = egress
        .proxy
        .listen("127.0.0.1:0".parse().context("loopback address")?)
        .await
        .context("starting the egress proxy for the browser")?;
    let browser = Browser::new(
        LaunchOptions {
            proxy: Some(proxy),
            headless: !args.headed,
            ..LaunchOptions::default()
        },
        Arc::new(policy.network_rules().clone()),
    );
    let result = async {
        browser.navigate(&args.url).await?;
        browser.snapshot(args.page, SnapshotLimits::default()).await
    }
    .await;
    browser.shutdown().await;
    egress.proxy.shutdown().await;
    let snap = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    #[allow(clippy::print_stdout)]
    {
        println!("{}", render_snapshot(&snap));
    }
    Ok(ExitCode::SUCCESS)
}

/// What the main agent is told the browser sub-agent is for.
const BROWSER_DELEGATE_DESCRIPTION: &str = "Hand a task on web pages to the browser sub-agent: it \
opens pages in a browser (under the same network policy as commands), reads them, clicks, fills \
in forms and downloads files into /workspace/downloads, then reports back in text. Use it for \
pages that need a real browser (scripts, logins the person completes, forms); for plain files \
and APIs, commands such as curl are quicker. It sees nothing of this conversation: say which \
page, what to do and what to report. It stops and reports when a page wants a login, a CAPTCHA \
or a payment.";

/// The browser sub-agent for a session, when a browser is installed and the
/// policy does not disable it. The browser starts on first use, behind the
/// session's egress proxy, with a profile of its own.
///
/// With `attach` (an address from [`attach_address`]), the sub-agent works
/// in tabs of its own in the person's Chrome instead, under the network
/// policy enforced inside that browser.
pub async fn delegate(
    policy: &cubicle_policy::Policy,
    proxy: &cubicle_egress::EgressProxy,
    attach: Option<&str>,
) -> Option<cubicle_agent::Delegate> {
    if let Some(why) = policy.tool_disabled("browser") {
        tracing::info!("the browser sub-agent is disabled: {why}");
        return None;
    }
    if let Some(address) = attach {
        let browser = match Browser::attached(
            address,
            LaunchOptions::default(),
            Arc::new(policy.network_rules().clone()),
        ) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                eprintln!("cubicle: warning: no browser sub-agent: {e}");
                return None;
            }
        };
        return Some(browser_delegate(browser));
    }
    if let Err(e) = cubicle_browser::find_executable(None) {
        tracing::info!("no browser sub-agent: {e}");
        return None;
    }
    let listen = match proxy
        .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
    {
        Ok(addr) => addr,
        Err(e) => {
            tracing::warn!("no browser sub-agent: cannot start the egress proxy for it: {e}");
            return None;
        }
    };
    let browser = Arc::new(Browser::new(
        LaunchOptions {
            proxy: Some(listen),
            ..LaunchOptions::default()
        },
        Arc::new(policy.network_rules().clone()),
    ));
    Some(browser_delegate(browser))
}

fn browser_delegate(browser: Arc<Browser>) -> cubicle_agent::Delegate {
    cubicle_agent::Delegate {
        name: BROWSER_DELEGATE.to_owned(),
        description: BROWSER_DELEGATE_DESCRIPTION.to_owned(),
        system_prompt: cubicle_browser::tools::BROWSER_AGENT_PROMPT.to_owned(),
        tools: cubicle_browser::tools::browser_tools(browser),
        model: None,
    }
}

/// The browser sub-agent's tool name.
const BROWSER_DELEGATE: &str = "browser";

/// The policy key that lets the sub-agent attach to the person's Chrome.
const ALLOW_ATTACH_KEY: &str = cubicle_policy::schema::BROWSER_ALLOW_ATTACH;

/// What the person is asked before the sub-agent uses their own Chrome.
pub const ATTACH_CONSENT: &str = "the browser sub-agent will use your own Chrome, with your logged-in sessions (in tabs of its own, and only sites the network policy allows)";

/// The address to attach the browser sub-agent to, when one was asked for
/// (`--attach-browser`, else `browser_attach` in config.toml) and the policy
/// allows it; otherwise `None`, with a warning when it was asked for.
pub fn attach_address(
    policy: &cubicle_policy::Policy,
    flag: Option<&str>,
    config: Option<&str>,
) -> Option<String> {
    let requested = flag.or(config)?.trim();
    if requested.is_empty() {
        return None;
    }
    match attach_allowed(policy) {
        Ok(()) => Some(requested.to_owned()),
        Err(why) => {
            eprintln!(
                "cubicle: warning: not attaching the browser to {requested}: {why}; the browser sub-agent uses a browser of its own"
            );
            None
        }
    }
}

/// Whether the effective policy lets the sub-agent attach to the person's Chrome.
fn attach_allowed(policy: &cubicle_policy::Policy) -> Result<(), String> {
    let setting = policy
        .effective()
        .into_iter()
        .find(|s| s.key == ALLOW_ATTACH_KEY);
    match setting {
        Some(s) if s.value.trim() == "true" => Ok(()),
        Some(s) => Err(format!(
            "policy does not allow it ({ALLOW_ATTACH_KEY} = {} — from {}); set {ALLOW_ATTACH_KEY} = true in your settings",
            s.value,
            s.origin
                .as_ref()
                .map_or_else(|| "default".to_owned(), ToString::to_string)
        )),
        None => Err(format!(
            "policy does not allow it: set {ALLOW_ATTACH_KEY} = true in your settings"
        )),
    }
}

/// The session's permission gate: the policy's, and, when the browser
/// sub-agent attaches to the person's Chrome, a question before each use of
/// it (the approval prompt offers allow-for-this-session).
pub fn session_gate(
    policy: &Arc<cubicle_policy::Policy>,
    attached: bool,
) -> Arc<dyn PermissionGate> {
    let gate = PolicyGate(policy.clone());
    if attached {
        Arc::new(AttachConsentGate(gate))
    } else {
        Arc::new(gate)
    }
}

/// Asks before the browser sub-agent runs in the person's own Chrome.
struct AttachConsentGate(PolicyGate);

impl PermissionGate for AttachConsentGate {
    fn check(&self, tool: &str, input: &serde_json::Value) -> GateDecision {
        let decision = self.0.check(tool, input);
        if tool != BROWSER_DELEGATE {
            return decision;
        }
        match decision {
            GateDecision::Deny { reason } => GateDecision::Deny { reason },
            GateDecision::Allow { .. } | GateDecision::Ask { .. } => GateDecision::Ask {
                reason: ATTACH_CONSENT.to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(user: &str) -> Arc<cubicle_policy::Policy> {
        Arc::new(
            cubicle_policy::Policy::from_sources(&[cubicle_policy::SettingsSource {
                layer: cubicle_policy::Layer::User,
                file: None,
                text: user.to_owned(),
            }])
            .unwrap(),
        )
    }

    #[test]
    fn attaching_needs_the_policy() {
        let addr = "http://127.0.0.1:9222";
        let off = policy("");
        assert_eq!(attach_address(&off, Some(addr), None), None);
        let err = attach_allowed(&off).unwrap_err();
        assert!(err.contains("browser.allow_attach = false"), "{err}");
        let on = policy("[browser]\nallow_attach = true\n");
        assert_eq!(attach_address(&on, None, Some(addr)).as_deref(), Some(addr));
        // The flag wins over config.toml.
        assert_eq!(
            attach_address(&on, Some("http://127.0.0.1:1"), Some(addr)).as_deref(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(attach_address(&on, None, None), None);
    }

    #[test]
    fn the_browser_asks_for_consent_when_attached() {
        let p = policy("[permissions]\nallow = [\"browser\"]\n");
        let input = json!({ "task": "check my orders" });
        let plain = session_gate(&p, false);
        assert!(
            matches!(plain.check("browser", &input), GateDecision::Allow { .. }),
            "{:?}",
            plain.check("browser", &input)
        );
        let attached = session_gate(&p, true);
        match attached.check("browser", &input) {
            GateDecision::Ask { reason } => {
                assert!(reason.contains("your own Chrome"), "{reason}");
                assert!(reason.contains("logged-in sessions"), "{reason}");
            }
            other => panic!("expected a question, got {other:?}"),
        }
        // Other tools keep the policy's word.
        assert_eq!(
            attached.check("read", &json!({ "path": "/mnt/a" })),
            plain.check("read", &json!({ "path": "/mnt/a" }))
        );
        // A denial stays a denial.
        let denied = policy("[permissions]\ndeny = [\"browser\"]\n");
        assert!(matches!(
            session_gate(&denied, true).check("browser", &input),
            GateDecision::Deny { .. }
        ));
    }
}
