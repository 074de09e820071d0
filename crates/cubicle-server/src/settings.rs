//! The settings screen: which model provider, model and base URL new
//! sessions use, and the API key. The server does not know where settings
//! live (a config file, the OS keyring or Cubicle's secret store): a front end
//! gives it a [`SettingsStore`]. The key only ever goes one way — from the
//! page into the store; the page is told whether one is set, never what it is.

use serde::{Deserialize, Serialize};

/// The model settings as the page sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSettings {
    /// Provider (`anthropic`, `openai`, …); `None`: chosen from the environment.
    pub provider: Option<String>,
    /// Model name; `None`: the provider's default.
    pub model: Option<String>,
    /// API root; `None`: the provider's default.
    pub base_url: Option<String>,
    /// Whether an API key for the provider is stored.
    pub api_key_stored: bool,
    /// The environment variable that holds a key and overrides the stored
    /// one, if one is set (e.g. `ANTHROPIC_API_KEY`).
    pub api_key_env: Option<String>,
    /// The providers the person may choose from.
    pub providers: Vec<String>,
    /// Where the settings are kept, to tell the person.
    pub location: String,
}

/// A change the page asks for. Text fields replace the stored value; an
/// empty one clears it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    /// New provider (empty: none).
    pub provider: String,
    /// New model (empty: the provider's default).
    pub model: String,
    /// New base URL (empty: the provider's default).
    pub base_url: String,
    /// A new API key to store for the provider; `None` keeps the stored one.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Remove the stored API key for the provider.
    #[serde(default)]
    pub clear_api_key: bool,
}

impl std::fmt::Debug for SettingsUpdate {
    // The key is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsUpdate")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("clear_api_key", &self.clear_api_key)
            .finish()
    }
}

/// Why settings could not be read or saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The person asked for something that cannot be stored; says what to change.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Failed(String),
}

/// Reads and writes the model settings for the server. Calls do file I/O;
/// the server makes them off its async workers.
pub trait SettingsStore: Send + Sync {
    /// The current settings.
    fn load(&self) -> Result<ModelSettings, SettingsError>;

    /// Applies `update` (all of it or none of it) and returns the result.
    fn save(&self, update: SettingsUpdate) -> Result<ModelSettings, SettingsError>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_update_never_prints_its_key() {
        let u: SettingsUpdate = serde_json::from_value(serde_json::json!({
            "provider": "anthropic", "model": "", "base_url": "", "api_key": "sk-hidden",
        }))
        .unwrap();
        let shown = format!("{u:?}");
        assert!(!shown.contains("sk-hidden"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
