//! `cubicle browser snapshot URL`: opens a page in Cubicle's browser, under
//! the same network policy and egress proxy a session gets, and prints what
//! the browser sub-agent would read — for people debugging, and for tests.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cubicle_agent::Store;
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
pub async fn delegate(
    policy: &cubicle_policy::Policy,
    proxy: &cubicle_egress::EgressProxy,
) -> Option<cubicle_agent::Delegate> {
    if let Some(why) = policy.tool_disabled("browser") {
        tracing::info!("the browser sub-agent is disabled: {why}");
        return None;
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
    Some(cubicle_agent::Delegate {
        name: "browser".to_owned(),
        description: BROWSER_DELEGATE_DESCRIPTION.to_owned(),
        system_prompt: cubicle_browser::tools::BROWSER_AGENT_PROMPT.to_owned(),
        tools: cubicle_browser::tools::browser_tools(browser),
    })
}
