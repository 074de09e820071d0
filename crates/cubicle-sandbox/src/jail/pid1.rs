//! The host's hold on a jail's PID 1 (the guest). The launcher makes PID 1
//! a child of the host process and exits (step 2 in [`super`]), so the
//! host itself waits for it, kills it and reaps it.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::sys::{self, Exit};

/// How often the wait polls where the kernel has no pidfds (before 5.3).
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// PID 1 of a jail, a child of this process until it is reaped.
#[derive(Debug)]
pub(super) struct Pid1 {
    pid: libc::pid_t,
    /// A pidfd on the reactor (it turns readable when PID 1 ends), where
    /// the kernel has pidfds.
    fd: Option<AsyncFd<OwnedFd>>,
    /// How it ended, once reaped. Reaping and signalling both hold this
    /// lock, so a signal never reaches a pid reused after the reaping.
    exit: Mutex<Option<Exit>>,
}

impl Pid1 {
    /// Takes charge of `pid`, which must be an unreaped child of this
    /// process (so that it cannot have been reused). Needs a tokio runtime.
    pub(super) fn adopt(pid: u32) -> io::Result<Self> {
        let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
        let fd = cubicle_guest::open_pidfd(pid).ok();
        Ok(Self {
            pid,
            fd,
            exit: Mutex::new(None),
        })
    }

    /// Its host pid.
    pub(super) fn pid(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// Sends it `SIGKILL`, unless it was reaped already. The kernel then
    /// kills every process of its PID namespace.
    pub(super) fn kill(&self) {
        let Ok(exit) = self.exit.lock() else {
            return;
        };
        if exit.is_none() {
            let _ = sys::kill(self.pid, libc::SIGKILL);
        }
    }

    /// Reaps it if it has ended; how it ended, or `None` while it runs.
    pub(super) fn try_reap(&self) -> io::Result<Option<Exit>> {
        let mut exit = self
            .exit
            .lock()
            .map_err(|_| io::Error::other("the PID 1 lock is poisoned"))?;
        if exit.is_none() {
            *exit = sys::try_waitpid(self.pid)?;
        }
        Ok(*exit)
    }

    /// Waits for it to end and reaps it.
    pub(super) async fn wait(&self) -> io::Result<Exit> {
        loop {
            // Checked before each wait: it may have ended before the pidfd
            // was registered.
            if let Some(exit) = self.try_reap()? {
                return Ok(exit);
            }
            match &self.fd {
                Some(fd) => fd.readable().await?.clear_ready(),
                None => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }

    /// Waits for it to end and reaps it, blocking the calling thread (for
    /// `Drop`, which may run where no runtime is left).
    pub(super) fn wait_blocking(&self) {
        while matches!(self.try_reap(), Ok(None)) {
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

#[cfg(test)]
mod tests {
    // The children are reaped by `Pid1`, which clippy cannot see.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

    use super::*;
    use pretty_assertions::assert_eq;

    #[tokio::test]
    async fn waits_kills_and_reaps_a_child_once() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid1 = Pid1::adopt(child.id()).unwrap();
        assert_eq!(pid1.pid(), child.id());
        assert_eq!(pid1.try_reap().unwrap(), None);
        pid1.kill();
        assert_eq!(pid1.wait().await.unwrap(), Exit::Signal(libc::SIGKILL));
        // Reaped once: the status is kept, and no signal goes out again.
        pid1.kill();
        assert_eq!(pid1.try_reap().unwrap(), Some(Exit::Signal(libc::SIGKILL)));
    }

    #[tokio::test]
    async fn reports_an_exit_code() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let pid1 = Pid1::adopt(child.id()).unwrap();
        assert_eq!(pid1.wait().await.unwrap(), Exit::Code(7));
    }
}
