//! Chooses the model client from what the person asked for (`--provider`,
//! `--model`, `--base-url`, `--replay`) and what the environment holds, the
//! way the official SDKs read it: an explicit provider wins; otherwise an
//! Anthropic key in the environment means Anthropic; otherwise there is no
//! model and the error says how to get one.

use std::path::PathBuf;
use std::sync::Arc;

use crate::anthropic::{AnthropicClient, AnthropicConfig, DEFAULT_MODEL};
use crate::openai::{OpenAiClient, OpenAiConfig};
use crate::replay::ReplayModel;
use crate::{ModelClient, ModelError};

/// Provider names `resolve` knows.
pub const PROVIDERS: [&str; 3] = ["anthropic", "openai", "replay"];

/// Model name sent to an OpenAI-compatible server when none is given;
/// llama.cpp serves whatever it loaded regardless.
pub const DEFAULT_OPENAI_MODEL: &str = "default";

/// What the person asked for; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderSpec {
    /// `anthropic`, `openai` or `replay`.
    pub provider: Option<String>,
    /// Model name, or `provider:model` (e.g. `anthropic:claude-opus-4-1`).
    pub model: Option<String>,
    /// API root, overriding the environment.
    pub base_url: Option<String>,
    /// API key, overriding the environment.
    pub api_key: Option<String>,
    /// Transcript to replay.
    pub replay: Option<PathBuf>,
}

/// Builds the client `spec` asks for, reading credentials and URLs through
/// `env` (a stand-in for the process environment).
pub fn resolve(
    spec: &ProviderSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ModelClient>, ModelError> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let (model_provider, model) = split_model(spec.model.as_deref());
    let explicit = spec
        .provider
        .as_deref()
        .map(|p| p.trim().to_ascii_lowercase());
    let provider = match (explicit, model_provider) {
        (Some(p), Some(m)) if p != m => {
            return Err(ModelError::Config(format!(
                "--provider {p} conflicts with the model `{}`",
                spec.model.as_deref().unwrap_or_default()
            )));
        }
        (Some(p), _) => p,
        (None, Some(m)) => m.to_owned(),
        (None, None) if spec.replay.is_some() => "replay".to_owned(),
        (None, None) => {
            if var("ANTHROPIC_API_KEY").is_some() || var("ANTHROPIC_AUTH_TOKEN").is_some() {
                "anthropic".to_owned()
            } else {
                return Err(ModelError::NoProvider);
            }
        }
    };
    match provider.as_str() {
        "anthropic" => {
            let mut config = AnthropicConfig::from_env(model.unwrap_or(DEFAULT_MODEL), env);
            if let Some(key) = &spec.api_key {
                config.api_key = Some(key.clone());
            }
            if let Some(url) = &spec.base_url {
                config.base_url = url.clone();
            }
            Ok(Arc::new(AnthropicClient::new(config)?))
        }
        "openai" => {
            let base_url = spec
                .base_url
                .clone()
                .or_else(|| var("OPENAI_BASE_URL"))
                .ok_or_else(|| {
                    ModelError::Config(
                        "the openai provider needs the server's address: pass --base-url URL \
                         (e.g. --base-url http://127.0.0.1:8080/v1 for llama.cpp)"
                            .into(),
                    )
                })?;
            let mut config = OpenAiConfig::new(base_url, model.unwrap_or(DEFAULT_OPENAI_MODEL));
            config.api_key = spec.api_key.clone().or_else(|| var("OPENAI_API_KEY"));
            Ok(Arc::new(OpenAiClient::new(config)?))
        }
        "replay" => {
            let path = spec.replay.as_ref().ok_or_else(|| {
                ModelError::Config(
                    "the replay provider needs a transcript: pass --replay FILE".into(),
                )
            })?;
            Ok(Arc::new(ReplayModel::open(path)?))
        }
        other => Err(ModelError::Config(format!(
            "unknown model provider `{other}`: use one of {}",
            PROVIDERS.join(", ")
        ))),
    }
}

/// Splits `provider:model`. Only a known provider counts as a prefix, since
/// local model names have colons of their own (`qwen2.5-coder:7b`).
fn split_model(model: Option<&str>) -> (Option<&'static str>, Option<&str>) {
    let Some(model) = model.map(str::trim).filter(|m| !m.is_empty()) else {
        return (None, None);
    };
    if let Some((prefix, rest)) = model.split_once(':') {
        let prefix = prefix.to_ascii_lowercase();
        if let Some(known) = PROVIDERS.iter().find(|p| **p == prefix) {
            let rest = rest.trim();
            return (Some(known), (!rest.is_empty()).then_some(rest));
        }
    }
    (None, Some(model))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn resolved(spec: ProviderSpec, vars: &[(&str, &str)]) -> Result<(String, String), String> {
        resolve(&spec, &env(vars))
            .map(|c| (c.provider().to_owned(), c.model().to_owned()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn nothing_configured_is_no_provider() {
        assert_eq!(
            resolved(ProviderSpec::default(), &[("ANTHROPIC_API_KEY", "  ")]),
            Err(ModelError::NoProvider.to_string())
        );
        assert_eq!(
            ModelError::NoProvider.to_string(),
            "no model provider is configured: set ANTHROPIC_API_KEY, or use --provider openai --base-url URL for a local server (llama.cpp, Ollama, vLLM)"
        );
    }

    #[test]
    fn an_anthropic_key_or_token_picks_anthropic() {
        let expected = Ok(("anthropic".to_owned(), "claude-sonnet-4-5".to_owned()));
        assert_eq!(
            resolved(ProviderSpec::default(), &[("ANTHROPIC_API_KEY", "k")]),
            expected
        );
        assert_eq!(
            resolved(ProviderSpec::default(), &[("ANTHROPIC_AUTH_TOKEN", "t")]),
            expected
        );
    }

    #[test]
    fn provider_prefix_in_the_model_is_understood() {
        let spec = ProviderSpec {
            model: Some("anthropic:claude-opus-4-1".into()),
            ..Default::default()
        };
        assert_eq!(
            resolved(spec, &[("ANTHROPIC_API_KEY", "k")]),
            Ok(("anthropic".into(), "claude-opus-4-1".into()))
        );
        // A colon that is not a provider prefix belongs to the model name.
        let spec = ProviderSpec {
            provider: Some("openai".into()),
            model: Some("qwen2.5-coder:7b".into()),
            base_url: Some("http://127.0.0.1:11434/v1".into()),
            ..Default::default()
        };
        assert_eq!(
            resolved(spec, &[]),
            Ok(("openai".into(), "qwen2.5-coder:7b".into()))
        );
        let spec = ProviderSpec {
            provider: Some("openai".into()),
            model: Some("anthropic:claude".into()),
            ..Default::default()
        };
        assert_eq!(
            resolved(spec, &[]),
            Err("--provider openai conflicts with the model `anthropic:claude`".into())
        );
    }

    #[test]
    fn explicit_provider_wins_over_the_environment() {
        let spec = ProviderSpec {
            provider: Some("openai".into()),
            base_url: Some("http://127.0.0.1:8080/v1".into()),
            ..Default::default()
        };
        assert_eq!(
            resolved(spec, &[("ANTHROPIC_API_KEY", "k")]),
            Ok(("openai".into(), "default".into()))
        );
    }

    #[test]
    fn openai_without_a_base_url_says_to_pass_one() {
        let spec = ProviderSpec {
            provider: Some("openai".into()),
            ..Default::default()
        };
        let err = resolved(spec, &[]).unwrap_err();
        assert!(err.contains("pass --base-url"), "{err}");
    }

    #[test]
    fn explicit_anthropic_without_credentials_is_a_config_error() {
        let spec = ProviderSpec {
            provider: Some("anthropic".into()),
            ..Default::default()
        };
        assert_eq!(
            resolved(spec.clone(), &[]),
            Err("no Anthropic credentials: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)".into())
        );
        let with_key = ProviderSpec {
            api_key: Some("k".into()),
            ..spec
        };
        assert!(resolved(with_key, &[]).is_ok());
    }

    #[test]
    fn replay_needs_a_file_and_unknown_providers_are_named() {
        let spec = ProviderSpec {
            provider: Some("replay".into()),
            ..Default::default()
        };
        assert_eq!(
            resolved(spec, &[]),
            Err("the replay provider needs a transcript: pass --replay FILE".into())
        );
        let spec = ProviderSpec {
            provider: Some("gemini".into()),
            ..Default::default()
        };
        assert_eq!(
            resolved(spec, &[]),
            Err("unknown model provider `gemini`: use one of anthropic, openai, replay".into())
        );
    }
}
