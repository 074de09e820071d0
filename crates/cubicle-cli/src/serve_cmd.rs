//! `cubicle serve`: the local server and its web UI. It listens on
//! 127.0.0.1 only, prints the URL to open (which carries the run's secret
//! token), opens it in the browser unless told not to, and runs until
//! Ctrl-C, when it ends the running sessions cleanly.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use cubicle_server::{Server, SessionStarter};

/// Options of `cubicle serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Port to listen on, on 127.0.0.1 (0 or none: pick a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Print the URL but do not open it in a browser.
    #[arg(long)]
    pub no_open: bool,
}

/// `cubicle serve`: serves until Ctrl-C. Sessions started from the browser
/// are started by `starter`, the same code path as `cubicle run`.
pub async fn run(args: ServeArgs, starter: Arc<dyn SessionStarter>) -> anyhow::Result<ExitCode> {
    let store = cubicle_agent::Store::from_env(|k| std::env::var(k).ok())?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port.unwrap_or(0)));
    let server = Server::bind(addr, starter, store).await?;
    let url = server.url();
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Cubicle is running. Open this link (it is your key — do not share it):"
        )?;
        writeln!(out, "  {url}")?;
        writeln!(out, "Press Ctrl-C to stop.")?;
        out.flush()?;
    }
    if !args.no_open {
        open_browser(&url);
    }
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    eprintln!("cubicle: stopping; ending running sessions…");
    server.shutdown().await;
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
