//! What can go wrong driving the browser, each variant worded so that the
//! model (or the person at the command line) knows what to do next.

use std::time::Duration;

/// A browser failure.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// No Chromium or Chrome executable was found.
    #[error(
        "Chromium is not installed: install the `chromium` package (Debian/Ubuntu: `apt-get install chromium`) or set {env} to a Chrome or Chromium executable (looked for {looked})"
    )]
    NotInstalled {
        /// The environment variable that names the executable.
        env: &'static str,
        /// The names and paths tried.
        looked: String,
    },
    /// The browser could not be started.
    #[error("could not start the browser ({program}): {detail}")]
    Launch {
        /// The executable.
        program: String,
        /// What happened, with the tail of the browser's own output.
        detail: String,
    },
    /// The person's own browser could not be attached to.
    #[error("could not attach to your browser at {address}: {detail}")]
    Attach {
        /// The DevTools address given.
        address: String,
        /// What went wrong and what to do about it.
        detail: String,
    },
    /// The browser process went away; it is restarted on the next call.
    #[error(
        "the browser crashed ({detail}); it has been restarted with fresh tabs, so open the page again with browser_navigate"
    )]
    Crashed {
        /// What was seen: exit status or the closed connection.
        detail: String,
    },
    /// A DevTools call got no answer in time; the tab or browser was reset.
    #[error(
        "the browser did not answer `{method}` within {} s ({recovery}); open the page again with browser_navigate",
        .after.as_secs()
    )]
    Hung {
        /// The DevTools method that got no answer.
        method: String,
        /// How long it waited.
        after: Duration,
        /// What was done about it.
        recovery: String,
    },
    /// The DevTools Protocol answered with an error.
    #[error("the browser refused `{method}`: {message}")]
    Protocol {
        /// The DevTools method.
        method: String,
        /// The browser's message.
        message: String,
    },
    /// Navigation refused before any request was made.
    #[error("{0}")]
    Refused(String),
    /// The page did not finish loading in time.
    #[error(
        "{url} did not finish loading within {} s; what has loaded so far may still be usable: call browser_snapshot to see it, or try again later",
        .after.as_secs()
    )]
    NavigationTimeout {
        /// The URL asked for.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// The page could not be loaded at all.
    #[error("could not load {url}: {reason}")]
    Navigation {
        /// The URL asked for.
        url: String,
        /// Chromium's error text, e.g. `net::ERR_CONNECTION_REFUSED`, explained.
        reason: String,
    },
    /// An element ref that does not name an element on the current page.
    #[error("{0}")]
    Element(String),
    /// Bad arguments or an operation that does not apply (a tab that does not exist, say).
    #[error("{0}")]
    Invalid(String),
    /// Host I/O around the browser (profile directory, downloads).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl BrowserError {
    /// Whether the browser was lost (crashed or hung) and has been or will be restarted.
    pub fn browser_lost(&self) -> bool {
        matches!(
            self,
            BrowserError::Crashed { .. } | BrowserError::Hung { .. }
        )
    }
}
