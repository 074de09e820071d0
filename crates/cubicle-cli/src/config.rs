//! The user's settings file, `$XDG_CONFIG_HOME/cubicle/config.toml`
//! (`~/.config/cubicle/config.toml`), and small parsers for flag values.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Settings a person may keep instead of repeating flags. Flags win.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Default provider.
    pub provider: Option<String>,
    /// Default model.
    pub model: Option<String>,
    /// Default base URL for the provider.
    pub base_url: Option<String>,
    /// Default backend.
    pub backend: Option<String>,
    /// Default model-call limit per session.
    pub max_turns: Option<u32>,
    /// The DevTools address of the person's own Chrome for the browser
    /// sub-agent, e.g. `http://127.0.0.1:9222` (needs
    /// `browser.allow_attach = true` in the policy).
    pub browser_attach: Option<String>,
}

/// The config folder: `$XDG_CONFIG_HOME/cubicle` or `~/.config/cubicle`.
pub fn config_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|s| !s.is_empty()) {
        Some(d) => Some(PathBuf::from(d).join("cubicle")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/cubicle")),
    }
}

impl Config {
    /// Loads the config file if it exists; a malformed file is an error that
    /// names the file, line and key.
    pub fn load() -> Result<Self> {
        match config_dir() {
            Some(dir) => Self::load_from(&dir.join("config.toml")),
            None => Ok(Self::default()),
        }
    }

    /// Loads a config file if it exists.
    pub fn load_from(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let at = line.map_or(String::new(), |l| format!(":{l}"));
            anyhow::anyhow!(
                "{}{at}: {} — fix or remove the setting",
                path.display(),
                e.message()
            )
        })
    }
}

/// Parses `90s`, `30m`, `2h`, `1h30m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let bad = || anyhow::anyhow!("`{s}` is not a duration like 500ms, 90s, 30m or 2h");
    let mut total_ms = 0u64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit_ms = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1000,
            'm' => 60_000,
            'h' => 3_600_000,
            _ => return Err(bad()),
        };
        total_ms = n
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(bad)?;
    }
    if !num.is_empty() {
        bail!("`{s}` is not a duration like 500ms, 90s, 30m or 2h (a unit is missing)");
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("99999999999999999h").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("1h30").is_err());
    }

    #[test]
    fn browser_attach_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "browser_attach = \"http://127.0.0.1:9222\"\n").unwrap();
        assert_eq!(
            Config::load_from(&p).unwrap().browser_attach.as_deref(),
            Some("http://127.0.0.1:9222")
        );
    }

    #[test]
    fn malformed_config_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "model = \"m\"\nmax_turns = \"many\"\n").unwrap();
        let err = Config::load_from(&p).unwrap_err().to_string();
        assert!(err.contains("config.toml:2:"), "{err}");
        std::fs::write(&p, "modle = \"m\"\n").unwrap();
        let err = Config::load_from(&p).unwrap_err().to_string();
        assert!(err.contains("unknown field `modle`"), "{err}");
        assert_eq!(
            Config::load_from(&dir.path().join("none.toml")).unwrap(),
            Config::default()
        );
    }
}
