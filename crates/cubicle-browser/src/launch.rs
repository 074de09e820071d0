//! Starting Chromium: finding the executable, the command line, and the two
//! pipes of `--remote-debugging-pipe` on the child's fds 3 and 4.
//!
//! The browser always gets a fresh profile in a temporary directory (never
//! the person's own), and, when the session has an egress proxy, sends every
//! request through it — loopback included, so that a page cannot reach
//! services on this machine behind the policy's back.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use crate::error::BrowserError;

/// Environment variable naming the browser executable explicitly.
pub const CHROMIUM_ENV: &str = "CUBICLE_CHROMIUM";

/// Executable names tried on `PATH`, in order.
const CANDIDATES: &[&str] = &[
    "chromium",
    "chromium-browser",
    "google-chrome-stable",
    "google-chrome",
];

/// How to start the browser.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The executable; `None` finds one ([`CHROMIUM_ENV`], then `PATH`).
    pub executable: Option<PathBuf>,
    /// Run without a window (the default); `false` shows the browser.
    pub headless: bool,
    /// The session's egress proxy (an address from `EgressProxy::listen`).
    /// `None` lets the browser connect directly: only for tools run by a
    /// person, such as a debugging command, never for an agent's session.
    pub proxy: Option<SocketAddr>,
    /// Viewport size in CSS pixels.
    pub window: (u32, u32),
    /// How long a page may take to load before navigation gives up.
    pub navigation_timeout: Duration,
    /// How long any one DevTools call may go unanswered before the browser
    /// counts as hung.
    pub call_timeout: Duration,
    /// Extra command-line switches, after Cubicle's own.
    pub extra_args: Vec<String>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            executable: None,
            headless: true,
            proxy: None,
            window: (1280, 800),
            navigation_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(20),
            extra_args: Vec::new(),
        }
    }
}

/// Finds the browser executable.
pub fn find_executable(explicit: Option<&Path>) -> Result<PathBuf, BrowserError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(BrowserError::NotInstalled {
                env: CHROMIUM_ENV,
                looked: p.display().to_string(),
            })
        };
    }
    find_in(std::env::var_os(CHROMIUM_ENV), std::env::var_os("PATH"))
}

fn find_in(env: Option<OsString>, path: Option<OsString>) -> Result<PathBuf, BrowserError> {
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(BrowserError::NotInstalled {
                env: CHROMIUM_ENV,
                looked: format!("{CHROMIUM_ENV}={}", p.display()),
            })
        };
    }
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for name in CANDIDATES {
        for dir in &dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(BrowserError::NotInstalled {
        env: CHROMIUM_ENV,
        looked: format!("{} on PATH", CANDIDATES.join(", ")),
    })
}

/// A started browser process and its DevTools pipes.
pub(crate) struct Launched {
    pub child: Child,
    pub reader: pipe::Receiver,
    pub writer: pipe::Sender,
}

/// The command-line switches for a launch.
pub(crate) fn arguments(options: &LaunchOptions, profile: &Path) -> Vec<String> {
    let mut args = vec![
        "--remote-debugging-pipe".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-default-apps".into(),
        "--disable-extensions".into(),
        "--disable-breakpad".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--mute-audio".into(),
        "--password-store=basic".into(),
        "--disable-features=BackForwardCache,Translate,MediaRouter,OptimizationHints,AutofillServerCommunication,InterestFeedContentSuggestions".into(),
        // WebRTC would otherwise send UDP around the proxy.
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp".into(),
        format!("--window-size={},{}", options.window.0, options.window.1),
    ];
    if options.headless {
        args.push("--headless=new".into());
    }
    // Chromium cannot use its sandbox as root; elsewhere it keeps it.
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        args.push("--no-sandbox".into());
    }
    if let Some(proxy) = options.proxy {
        args.push(format!("--proxy-server=http://{proxy}"));
        // Chromium skips the proxy for loopback unless told otherwise.
        args.push("--proxy-bypass-list=<-loopback>".into());
    }
    args.extend(options.extra_args.iter().cloned());
    args.push("about:blank".into());
    args
}

/// Starts the browser with its DevTools pipes on fds 3 (commands in) and 4
/// (answers and events out).
pub(crate) fn spawn(program: &Path, args: &[String]) -> Result<Launched, BrowserError> {
    let failed = |detail: String| BrowserError::Launch {
        program: program.display().to_string(),
        detail,
    };
    let (cmd_read, cmd_write) =
        std::io::pipe().map_err(|e| failed(format!("cannot create a pipe: {e}")))?;
    let (out_read, out_write) =
        std::io::pipe().map_err(|e| failed(format!("cannot create a pipe: {e}")))?;
    // Move the child's ends above 4 so that placing them on 3 and 4 cannot
    // clobber one with the other.
    let child_in = high_fd(&OwnedFd::from(cmd_read)).map_err(|e| failed(e.to_string()))?;
    let child_out = high_fd(&OwnedFd::from(out_write)).map_err(|e| failed(e.to_string()))?;
    let (in_fd, out_fd) = (child_in.as_raw_fd(), child_out.as_raw_fd());

    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls (dup2, prctl) between fork and
    // exec; the fds are open in the parent until `spawn` returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(in_fd, 3) < 0 || libc::dup2(out_fd, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The browser dies with Cubicle, even after `kill -9` of it (the
            // spawning thread is a runtime worker, which lives as long as
            // the process); its renderers follow when their parent goes.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| failed(e.to_string()))?;
    drop(child_in);
    drop(child_out);
    let reader = pipe::Receiver::from_owned_fd(OwnedFd::from(out_read))
        .map_err(|e| failed(format!("cannot read the DevTools pipe: {e}")))?;
    let writer = pipe::Sender::from_owned_fd(OwnedFd::from(cmd_write))
        .map_err(|e| failed(format!("cannot write the DevTools pipe: {e}")))?;
    Ok(Launched {
        child,
        reader,
        writer,
    })
}

/// A close-on-exec duplicate of `fd` numbered 10 or above.
fn high_fd(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl on an fd we own; the result is a new fd we then own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `new` is a freshly created descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_browser_names_the_package() {
        let err = find_in(None, Some(OsString::from("/nonexistent"))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`chromium` package"), "{text}");
        assert!(text.contains(CHROMIUM_ENV), "{text}");
        let err = find_in(Some(OsString::from("/no/such/chrome")), None).unwrap_err();
        assert!(err.to_string().contains("/no/such/chrome"), "{err}");
    }

    #[test]
    fn proxy_covers_loopback_and_profile_is_ours() {
        let options = LaunchOptions {
            proxy: Some("127.0.0.1:3128".parse().unwrap()),
            ..LaunchOptions::default()
        };
        let args = arguments(&options, Path::new("/tmp/profile-x"));
        assert!(args.contains(&"--proxy-server=http://127.0.0.1:3128".to_owned()));
        assert!(args.contains(&"--proxy-bypass-list=<-loopback>".to_owned()));
        assert!(args.contains(&"--user-data-dir=/tmp/profile-x".to_owned()));
        assert!(args.contains(&"--headless=new".to_owned()));
        let headed = arguments(
            &LaunchOptions {
                headless: false,
                ..LaunchOptions::default()
            },
            Path::new("/p"),
        );
        assert!(!headed.iter().any(|a| a.starts_with("--headless")));
        assert!(!headed.iter().any(|a| a.starts_with("--proxy-server")));
    }
}
