//! Chromium for the browser sub-agent, driven over the DevTools Protocol and
//! kept inside the session's policy.
//!
//! Cubicle starts Debian's `chromium` (or any Chrome) on the host with a
//! fresh profile in a temporary directory, headless unless asked otherwise,
//! and talks to it over `--remote-debugging-pipe` with a small hand-written
//! client ([`cdp`]): about thirty DevTools methods are all the tools need, and
//! a pipe leaves no debugging port open for other programs or pages.
//!
//! Every request the browser makes goes through the session's egress proxy
//! (loopback included); navigations the model asks for are also checked up
//! front by a [`NavigationGuard`] so that a refusal is explained, not shown
//! as an error page. Page text is data: it reaches the model framed as such,
//! and whatever it says, the browser can only reach what the policy allows.
//! Passwords and card details are never typed and purchase buttons never
//! clicked; such pages pause the sub-agent so that the person takes over.
//!
//! With the person's consent and a policy that allows it
//! (`browser.allow_attach`), [`Browser::attached`] drives the person's own
//! Chrome instead, over its loopback `--remote-debugging-port` ([`attach`]):
//! Cubicle works in tabs of its own (and tabs they open), never the
//! person's, closes only those at the end and leaves the browser running.
//! That browser is not behind the egress proxy, so the guard is enforced
//! inside it: every request of Cubicle's tabs, their frames and workers is
//! paused (`Fetch`) and failed unless the guard allows its host.
//!
//! [`Browser`] owns the process (started on first use, restarted after a
//! crash or hang); [`tools`] exposes it to the model.

pub mod attach;
pub mod browser;
pub mod cdp;
mod error;
pub mod guard;
mod keys;
pub mod launch;
mod state;
pub mod tools;

pub use browser::{
    Browser, FinishedDownload, Gate, PageInfo, PageText, ScrollPosition, Snapshot, SnapshotLimits,
    TabInfo,
};
pub use error::BrowserError;
pub use guard::{AllowAnyHost, NavigationGuard, check_url};
pub use keys::KeyPress;
pub use launch::{CHROMIUM_ENV, LaunchOptions, find_executable};
pub use state::{LogEntry, LogKind};
