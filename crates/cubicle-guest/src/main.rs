//! The `cubicle-guest` binary: serves the guest protocol on its stdin and
//! stdout. Logs go to stderr only (filter with `CUBICLE_GUEST_LOG`), since
//! stdout is the protocol channel.

use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_env("CUBICLE_GUEST_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    cubicle_guest::run_stdio()
}
