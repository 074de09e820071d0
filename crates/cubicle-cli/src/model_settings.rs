//! The model settings the web UI's settings screen edits: provider, model
//! and base URL in `config.toml` (other keys in the file are kept), and the
//! provider's API key in Cubicle's secret store — the owner-only file that
//! `cubicle secret set` writes — as `anthropic-api-key` or `openai-api-key`.
//! Sessions use the stored key when the provider's environment variable
//! (`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`) is not set.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cubicle_egress::{FileSecrets, SecretError, SecretRef, SecretStore};
use cubicle_server::{ModelSettings, SettingsError, SettingsStore, SettingsUpdate};

use crate::config::{Config, config_dir};

/// The providers the settings screen offers.
const OFFERED: [&str; 2] = ["anthropic", "openai"];

/// The environment variable that holds `provider`'s key and the secret
/// name the key is stored under. No provider means the default, Anthropic.
fn key_names(provider: Option<&str>) -> Option<(&'static str, &'static str)> {
    match provider.unwrap_or("anthropic") {
        "anthropic" => Some(("ANTHROPIC_API_KEY", "anthropic-api-key")),
        "openai" => Some(("OPENAI_API_KEY", "openai-api-key")),
        _ => None,
    }
}

/// The environment sessions choose their model with: this process's
/// variables, where a key stored in the settings screen stands in for
/// `ANTHROPIC_API_KEY` or `OPENAI_API_KEY` when that variable is not set. A
/// secret store that cannot be trusted (one others can read) is an error
/// rather than silently ignored.
pub fn session_env() -> Result<impl Fn(&str) -> Option<String>> {
    let secrets = config_dir().map(|dir| FileSecrets::in_dir(&dir));
    with_stored_keys(|k| std::env::var(k).ok(), secrets.as_ref())
}

fn with_stored_keys<E: Fn(&str) -> Option<String>>(
    env: E,
    secrets: Option<&FileSecrets>,
) -> Result<impl Fn(&str) -> Option<String> + use<E>> {
    let unset = |v: &Option<String>| v.as_deref().is_none_or(|v| v.trim().is_empty());
    let mut stored = Vec::new();
    if let Some(secrets) = secrets {
        for (var, secret) in OFFERED.iter().filter_map(|p| key_names(Some(p))) {
            if unset(&env(var))
                && let Some(key) = read_key(secrets, secret).map_err(anyhow::Error::msg)?
            {
                stored.push((var, key));
            }
        }
    }
    Ok(move |k: &str| {
        let value = env(k);
        if !unset(&value) {
            return value;
        }
        stored
            .iter()
            .find(|(var, _)| *var == k)
            .map(|(_, key)| key.clone())
            .or(value)
    })
}

fn read_key(secrets: &FileSecrets, name: &str) -> Result<Option<String>, String> {
    match secrets.get(&SecretRef::Keyring(name.to_owned())) {
        Ok(s) => Ok(Some(s.expose().to_owned())),
        Err(SecretError::Missing(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads an environment variable (a stand-in for the process environment).
pub type Env = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The settings in the person's config folder.
pub struct ConfigSettings {
    config_file: PathBuf,
    secrets: FileSecrets,
    secrets_file: PathBuf,
    env: Env,
}

impl ConfigSettings {
    /// The settings under `dir` (normally `~/.config/cubicle`), reading
    /// environment variables through `env`.
    pub fn in_dir(dir: &Path, env: Env) -> Self {
        Self {
            config_file: dir.join("config.toml"),
            secrets: FileSecrets::in_dir(dir),
            secrets_file: dir.join("secrets"),
            env,
        }
    }

    /// The settings of this process's user.
    pub fn from_env() -> Result<Self> {
        let dir = config_dir().context("cannot find your config folder: set HOME")?;
        Ok(Self::in_dir(&dir, Box::new(|k| std::env::var(k).ok())))
    }

    fn read_table(&self) -> Result<toml::Table, SettingsError> {
        let text = match std::fs::read_to_string(&self.config_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(toml::Table::new()),
            Err(e) => {
                return Err(SettingsError::Failed(format!(
                    "cannot read {}: {e}",
                    self.config_file.display()
                )));
            }
        };
        toml::from_str(&text).map_err(|e| {
            SettingsError::Invalid(format!(
                "{} is not valid TOML ({}); fix it by hand first",
                self.config_file.display(),
                e.message()
            ))
        })
    }

    fn write_table(&self, table: &toml::Table) -> Result<(), SettingsError> {
        let text = toml::to_string(table)
            .map_err(|e| SettingsError::Failed(format!("cannot write the settings: {e}")))?;
        write_atomic(&self.config_file, text.as_bytes()).map_err(|e| {
            SettingsError::Failed(format!("cannot write {}: {e}", self.config_file.display()))
        })
    }
}

/// Replaces `path` with `bytes` through a temporary file in the same folder,
/// so a reader sees the old file or the new one, never half of one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".config.toml.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A setting's new value: trimmed, empty meaning none; refuses control
/// characters and absurd lengths.
fn field(what: &str, value: &str) -> Result<Option<String>, SettingsError> {
    let value = value.trim();
    if value.chars().any(char::is_control) || value.len() > 2048 {
        return Err(SettingsError::Invalid(format!(
            "the {what} must be one short line of text"
        )));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

fn set_or_remove(table: &mut toml::Table, key: &str, value: Option<String>) {
    match value {
        Some(v) => {
            table.insert(key.to_owned(), toml::Value::String(v));
        }
        None => {
            table.remove(key);
        }
    }
}

impl SettingsStore for ConfigSettings {
    fn load(&self) -> Result<ModelSettings, SettingsError> {
        let config = Config::load_from(&self.config_file)
            .map_err(|e| SettingsError::Failed(format!("{e:#}")))?;
        let names = key_names(config.provider.as_deref());
        let api_key_stored = match names {
            Some((_, secret)) => read_key(&self.secrets, secret)
                .map_err(SettingsError::Failed)?
                .is_some(),
            None => false,
        };
        let api_key_env = names
            .map(|(var, _)| var)
            .filter(|var| (self.env)(var).is_some_and(|v| !v.trim().is_empty()))
            .map(str::to_owned);
        let mut providers: Vec<String> = OFFERED.iter().map(|p| (*p).to_owned()).collect();
        if let Some(p) = &config.provider
            && !providers.contains(p)
        {
            providers.push(p.clone());
        }
        Ok(ModelSettings {
            provider: config.provider,
            model: config.model,
            base_url: config.base_url,
            api_key_stored,
            api_key_env,
            providers,
            location: format!(
                "{} (API key in {})",
                self.config_file.display(),
                self.secrets_file.display()
            ),
        })
    }

    fn save(&self, update: SettingsUpdate) -> Result<ModelSettings, SettingsError> {
        let provider = field("provider", &update.provider)?.map(|p| p.to_ascii_lowercase());
        if let Some(p) = &provider
            && !cubicle_models::provider::PROVIDERS.contains(&p.as_str())
        {
            return Err(SettingsError::Invalid(format!(
                "unknown provider `{p}`: choose {}",
                OFFERED.join(" or ")
            )));
        }
        let model = field("model", &update.model)?;
        let base_url = field("base URL", &update.base_url)?;
        if let Some(url) = &base_url {
            let ok = reqwest::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(SettingsError::Invalid(format!(
                    "`{url}` is not a web address; write it like http://127.0.0.1:8080/v1"
                )));
            }
        }
        let key = update
            .api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        if key.is_some_and(|k| k.chars().any(|c| c.is_control() || c.is_whitespace())) {
            return Err(SettingsError::Invalid(
                "an API key is one word without spaces; paste it again".into(),
            ));
        }
        let secret = key_names(provider.as_deref()).map(|(_, s)| s);
        if (key.is_some() || update.clear_api_key) && secret.is_none() {
            return Err(SettingsError::Invalid(format!(
                "the {} provider takes no API key",
                provider.as_deref().unwrap_or("chosen")
            )));
        }

        // Everything is checked; write the config, then the key, putting
        // the config back if the key cannot be stored.
        let before = std::fs::read(&self.config_file).ok();
        let mut table = self.read_table()?;
        set_or_remove(&mut table, "provider", provider);
        set_or_remove(&mut table, "model", model);
        set_or_remove(&mut table, "base_url", base_url);
        self.write_table(&table)?;
        let stored = match (secret, key) {
            (Some(name), Some(key)) => self.secrets.set(name, key),
            (Some(name), None) if update.clear_api_key => self.secrets.set(name, ""),
            _ => Ok(()),
        };
        if let Err(e) = stored {
            let _ = match before {
                Some(bytes) => write_atomic(&self.config_file, &bytes),
                None => std::fs::remove_file(&self.config_file),
            };
            return Err(SettingsError::Failed(format!(
                "cannot store the API key, so nothing was changed: {e}"
            )));
        }
        self.load()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn update(provider: &str, model: &str, base_url: &str) -> SettingsUpdate {
        SettingsUpdate {
            provider: provider.into(),
            model: model.into(),
            base_url: base_url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn saves_settings_keeps_other_keys_and_never_shows_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "backend = \"jail\"\nmax_turns = 7\nmodel = \"old\"\n",
        )
        .unwrap();
        let s = ConfigSettings::in_dir(dir.path(), Box::new(|_| None));
        let mut u = update("anthropic", "claude-opus-4-1", "");
        u.api_key = Some("sk-test-123".into());
        let got = s.save(u).unwrap();
        assert_eq!(got.provider.as_deref(), Some("anthropic"));
        assert_eq!(got.model.as_deref(), Some("claude-opus-4-1"));
        assert!(got.api_key_stored);
        assert!(!serde_json::to_string(&got).unwrap().contains("sk-test-123"));
        let config = Config::load_from(&dir.path().join("config.toml")).unwrap();
        assert_eq!(config.backend.as_deref(), Some("jail"));
        assert_eq!(config.max_turns, Some(7));
        assert_eq!(
            read_key(&FileSecrets::in_dir(dir.path()), "anthropic-api-key").unwrap(),
            Some("sk-test-123".into())
        );

        // Clearing the key and the model.
        let mut u = update("anthropic", "", "");
        u.clear_api_key = true;
        let got = s.save(u).unwrap();
        assert!(!got.api_key_stored);
        assert_eq!(got.model, None);
    }

    #[test]
    fn refuses_bad_input_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = ConfigSettings::in_dir(dir.path(), Box::new(|_| None));
        for bad in [
            update("gpt", "", ""),
            update("openai", "", "ftp://x"),
            update("openai", "a\nb", ""),
        ] {
            let err = s.save(bad).unwrap_err();
            assert!(matches!(err, SettingsError::Invalid(_)), "{err}");
        }
        let mut u = update("openai", "", "http://127.0.0.1:8080/v1");
        u.api_key = Some("two words".into());
        assert!(s.save(u).is_err());
        let mut u = update("replay", "", "");
        u.api_key = Some("k".into());
        assert!(s.save(u).is_err());
        assert!(!dir.path().join("config.toml").exists());
    }

    #[test]
    fn sessions_use_the_stored_key_when_the_variable_is_not_set() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = FileSecrets::in_dir(dir.path());
        let none = |_: &str| None;
        // No key anywhere: no model.
        let env = with_stored_keys(none, Some(&secrets)).unwrap();
        let spec = cubicle_models::provider::ProviderSpec::default();
        assert!(cubicle_models::provider::resolve(&spec, &env).is_err());

        secrets.set("anthropic-api-key", "sk-stored").unwrap();
        let env = with_stored_keys(none, Some(&secrets)).unwrap();
        assert_eq!(env("ANTHROPIC_API_KEY").as_deref(), Some("sk-stored"));
        assert_eq!(env("OPENAI_API_KEY"), None);
        let client = cubicle_models::provider::resolve(&spec, &env).unwrap();
        assert_eq!(client.provider(), "anthropic");

        // The variable, when set, wins.
        let from_env = |k: &str| (k == "ANTHROPIC_API_KEY").then(|| "sk-env".to_owned());
        let env = with_stored_keys(from_env, Some(&secrets)).unwrap();
        assert_eq!(env("ANTHROPIC_API_KEY").as_deref(), Some("sk-env"));
    }

    #[test]
    fn reports_an_environment_key_that_wins() {
        let dir = tempfile::tempdir().unwrap();
        let s = ConfigSettings::in_dir(
            dir.path(),
            Box::new(|k| (k == "OPENAI_API_KEY").then(|| "from-env".to_owned())),
        );
        let got = s
            .save(update("openai", "qwen", "http://127.0.0.1:8080/v1"))
            .unwrap();
        assert_eq!(got.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert!(!got.api_key_stored);
    }
}
