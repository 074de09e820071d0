//! What the browser may open, decided before any request is made.
//!
//! The egress proxy is the enforcement (every request the browser makes,
//! including those a page makes on its own, goes through it); this check
//! refuses the model's own navigations up front, with a reason it can act
//! on, instead of letting it read a proxy error page. It also keeps the
//! browser to `http` and `https`: a host-side browser must never open
//! `file:` URLs, which would show the person's own files.

use cubicle_policy::{Effect, NetworkRules, host_of_url};

/// Decides whether the model may open a URL.
pub trait NavigationGuard: Send + Sync {
    /// `Ok` to go ahead, or why not, in words the model can relay.
    fn check_host(&self, host: &str) -> Result<(), String>;
}

/// Lets everything through (for a person debugging at the command line, or tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAnyHost;

impl NavigationGuard for AllowAnyHost {
    fn check_host(&self, _host: &str) -> Result<(), String> {
        Ok(())
    }
}

impl NavigationGuard for NetworkRules {
    fn check_host(&self, host: &str) -> Result<(), String> {
        let decision = self.check(host);
        match decision.effect {
            Effect::Allow => Ok(()),
            Effect::Deny => Err(format!(
                "{} The page was not opened. Do not look for another way to reach it.",
                decision.reason
            )),
            Effect::Ask => Err(format!(
                "{host} is not in the network allow list, so the browser cannot open it. If the task needs it, stop and tell the person which site you need and why; they can allow it."
            )),
        }
    }
}

/// Checks the scheme and host of a URL the model wants to open.
pub fn check_url(guard: &dyn NavigationGuard, url: &str) -> Result<(), String> {
    let trimmed = url.trim();
    if trimmed == "about:blank" {
        return Ok(());
    }
    let scheme = trimmed
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "the browser opens only http:// and https:// addresses, not {url:?}. Files in the cubicle are read with the read tool, not the browser."
        ));
    }
    let Some(host) = host_of_url(trimmed) else {
        return Err(format!(
            "{url:?} has no host the browser can check against the network policy"
        ));
    };
    guard.check_host(&host)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Only(&'static str);
    impl NavigationGuard for Only {
        fn check_host(&self, host: &str) -> Result<(), String> {
            if host == self.0 {
                Ok(())
            } else {
                Err(format!("{host} denied"))
            }
        }
    }

    #[test]
    fn schemes_and_hosts() {
        let g = Only("shop.test");
        assert_eq!(check_url(&g, "http://shop.test:8080/a?b"), Ok(()));
        assert_eq!(check_url(&g, "about:blank"), Ok(()));
        assert_eq!(
            check_url(&g, "https://evil.test/steal"),
            Err("evil.test denied".into())
        );
        // The userinfo trick does not smuggle a host past the check.
        assert_eq!(
            check_url(&g, "https://shop.test@evil.test/"),
            Err("evil.test denied".into())
        );
        for bad in [
            "file:///etc/passwd",
            "chrome://settings",
            "javascript:alert(1)",
            "data:text/html,hi",
            "view-source:http://shop.test/",
        ] {
            let err = check_url(&g, bad).unwrap_err();
            assert!(err.contains("only http:// and https://"), "{bad}: {err}");
        }
    }
}
