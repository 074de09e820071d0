//! Retry rules shared by the HTTP clients: which failures deserve another
//! attempt, how long to wait before it, how an HTTP error becomes a typed
//! [`ModelError`], and staying responsive to cancellation throughout.
//!
//! Rate limits, overload, 408/409/5xx, dropped connections and streams cut
//! short are transient; everything else (bad credentials, a rejected request,
//! a malformed stream) is returned at once, because trying again would only
//! fail the same way.

use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio_util::sync::CancellationToken;

use crate::{DeltaTx, ModelDelta, ModelError, ModelResponse};

/// Longest server-requested wait we honour; a longer `retry-after` is clamped
/// so that one header cannot stall a session for an hour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Longest error body kept in a message; error pages can be megabytes of HTML.
const MAX_MESSAGE_CHARS: usize = 2_000;

/// How many times to retry and how long to wait between attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts in all).
    pub max_retries: u32,
    /// Backoff before the first retry; doubles for each later one.
    pub base_delay: Duration,
    /// Upper bound of the backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry), with
    /// jitter so that many clients hit by the same outage do not retry in step.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(20);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        // "Equal jitter": at least half the backoff, so waits still grow.
        let half = full / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// How one attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth another attempt.
    Transient(Transient),
    /// Final: returned to the caller as is.
    Fatal(ModelError),
}

impl From<ModelError> for Failure {
    fn from(e: ModelError) -> Self {
        Failure::Fatal(e)
    }
}

/// A failure that another attempt may not repeat.
#[derive(Debug)]
pub(crate) struct Transient {
    /// What kind, which decides the error returned once retries run out.
    pub kind: TransientKind,
    /// Why, for the person and the log.
    pub message: String,
    /// The server's `retry-after`, if it sent one.
    pub retry_after: Option<Duration>,
}

/// Kinds of transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransientKind {
    /// Rate-limited or overloaded.
    Busy,
    /// A server error with this HTTP status.
    Server(u16),
    /// The connection failed, timed out or closed early.
    Network,
}

impl Transient {
    /// A transient failure without a server-requested wait.
    pub fn new(kind: TransientKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    fn reason(&self) -> String {
        match self.kind {
            TransientKind::Busy => format!("the provider is busy: {}", self.message),
            TransientKind::Server(status) => format!("HTTP {status}: {}", self.message),
            TransientKind::Network => self.message.clone(),
        }
    }

    fn into_error(self, attempts: u32) -> ModelError {
        match self.kind {
            TransientKind::Busy => ModelError::Busy {
                attempts,
                message: self.message,
            },
            TransientKind::Server(status) => ModelError::Server {
                status,
                message: self.message,
            },
            TransientKind::Network => ModelError::Network(self.message),
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or retries run out;
/// returns [`ModelError::Cancelled`] as soon as `cancel` fires, whether an
/// attempt or a backoff wait is in progress.
pub(crate) async fn with_retries<F, Fut>(
    policy: &RetryPolicy,
    deltas: Option<&DeltaTx>,
    cancel: &CancellationToken,
    mut attempt: F,
) -> Result<ModelResponse, ModelError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<ModelResponse, Failure>>,
{
    let mut number = 1;
    loop {
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(ModelError::Cancelled),
            outcome = attempt() => outcome,
        };
        let transient = match outcome {
            Ok(response) => return Ok(response),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient(t)) => t,
        };
        if number > policy.max_retries {
            return Err(transient.into_error(number));
        }
        let wait = transient
            .retry_after
            .map_or_else(|| policy.backoff(number), |w| w.min(MAX_RETRY_AFTER));
        number += 1;
        let reason = transient.reason();
        tracing::warn!(attempt = number, ?wait, %reason, "model call failed; retrying");
        if let Some(tx) = deltas {
            // A dropped receiver only means nobody is watching.
            let _ = tx.send(ModelDelta::Retrying {
                attempt: number,
                wait,
                reason,
            });
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(ModelError::Cancelled),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Turns a failed `send` into a failure: not reaching the server at all is
/// transient, a request we could not even build is not.
pub(crate) fn from_send_error(err: &reqwest::Error) -> Failure {
    if err.is_builder() {
        return Failure::Fatal(ModelError::Config(error_chain(err)));
    }
    Failure::Transient(Transient::new(TransientKind::Network, error_chain(err)))
}

/// An error with its sources, because reqwest's own message ("error sending
/// request") leaves out the part that says what went wrong.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Reads a non-success response and classifies it.
pub(crate) async fn from_error_response(response: reqwest::Response) -> Failure {
    let status = response.status();
    let headers = response.headers().clone();
    let body = match response.text().await {
        Ok(body) => body,
        Err(e) => format!("(could not read the error body: {})", error_chain(&e)),
    };
    classify_status(status, &headers, &body)
}

/// Classifies an HTTP error from its status, headers and body.
pub(crate) fn classify_status(status: StatusCode, headers: &HeaderMap, body: &str) -> Failure {
    let (kind, message) = error_fields(body);
    let message = message.unwrap_or_else(|| {
        let reason = status.canonical_reason().unwrap_or("error");
        format!("{} {reason}", status.as_u16())
    });
    let code = status.as_u16();
    let retryable = match header_str(headers, "x-should-retry") {
        // The Anthropic API says explicitly when a retry would help.
        Some("true") => true,
        Some("false") => false,
        _ => matches!(code, 408 | 409 | 429 | 500 | 502 | 503 | 504 | 529),
    };
    if retryable {
        let kind = if matches!(code, 429 | 529) || kind.as_deref().is_some_and(is_busy_type) {
            TransientKind::Busy
        } else {
            TransientKind::Server(code)
        };
        return Failure::Transient(Transient {
            kind,
            message,
            retry_after: retry_after(headers),
        });
    }
    Failure::Fatal(match code {
        401 | 403 => ModelError::Auth(message),
        400 | 413 if is_context_too_long(&message) => ModelError::ContextTooLong(message),
        429 | 529 => ModelError::Busy {
            attempts: 1,
            message,
        },
        400..=499 => ModelError::InvalidRequest(format!("{message} (HTTP {code})")),
        _ => ModelError::Server {
            status: code,
            message,
        },
    })
}

/// Classifies an error the server reported inside a stream, after the 200:
/// `kind` is the provider's error type (`overloaded_error`), `status` an HTTP
/// status if the provider gave one.
pub(crate) fn classify_stream_error(
    kind: Option<&str>,
    status: Option<u16>,
    message: String,
) -> Failure {
    match (kind, status) {
        (Some(k), _) if is_busy_type(k) => {
            Failure::Transient(Transient::new(TransientKind::Busy, message))
        }
        (Some("api_error" | "server_error"), _) => {
            Failure::Transient(Transient::new(TransientKind::Server(500), message))
        }
        (Some("authentication_error" | "permission_error"), _) => {
            Failure::Fatal(ModelError::Auth(message))
        }
        (_, Some(code)) => classify_status(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &HeaderMap::new(),
            &serde_json::json!({"error": {"type": kind, "message": message}}).to_string(),
        ),
        (Some("invalid_request_error" | "request_too_large"), None) => {
            if is_context_too_long(&message) {
                Failure::Fatal(ModelError::ContextTooLong(message))
            } else {
                Failure::Fatal(ModelError::InvalidRequest(message))
            }
        }
        _ if is_context_too_long(&message) => Failure::Fatal(ModelError::ContextTooLong(message)),
        // An unknown error mid-stream is most likely the server's trouble.
        _ => Failure::Transient(Transient::new(TransientKind::Server(500), message)),
    }
}

fn is_busy_type(kind: &str) -> bool {
    matches!(kind, "overloaded_error" | "rate_limit_error")
}

/// Whether a provider's message says the prompt does not fit the context
/// window. Each server words it differently.
pub(crate) fn is_context_too_long(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "prompt is too long",                 // Anthropic
        "exceed context limit",               // Anthropic, prompt plus max_tokens
        "context_length_exceeded",            // OpenAI code
        "maximum context length",             // OpenAI, vLLM
        "exceeds the available context size", // llama.cpp
        "exceed_context_size",                // llama.cpp error type
        "context window",                     // generic
        "input is too long",                  // TGI and others
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// The error type and message of an error body, in the shapes providers use:
/// `{"error":{"type","message"}}` (Anthropic, OpenAI, llama.cpp),
/// `{"error":"..."}` (Ollama), `{"message":"..."}` (vLLM).
fn error_fields(body: &str) -> (Option<String>, Option<String>) {
    let trimmed = body.trim();
    let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed) else {
        return (None, (!trimmed.is_empty()).then(|| truncate(trimmed)));
    };
    let error = value.get("error");
    let kind = error
        .and_then(|e| e.get("type"))
        .or_else(|| value.get("type").filter(|_| error.is_none()))
        .and_then(|t| t.as_str())
        .map(str::to_owned);
    let message = error
        .and_then(|e| {
            e.get("message")
                .and_then(|m| m.as_str())
                .or_else(|| e.as_str())
        })
        .or_else(|| value.get("message").and_then(|m| m.as_str()))
        .map(truncate)
        .or_else(|| Some(truncate(trimmed)));
    (kind, message)
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The server's requested wait: `retry-after-ms` (Anthropic, OpenAI) first,
/// then `retry-after` in seconds. The HTTP-date form is ignored.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = |text: &str, scale: f64| {
        text.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| Duration::from_secs_f64((v / scale).min(MAX_RETRY_AFTER.as_secs_f64())))
    };
    header_str(headers, "retry-after-ms")
        .and_then(|v| seconds(v, 1000.0))
        .or_else(|| header_str(headers, "retry-after").and_then(|v| seconds(v, 1.0)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let policy = RetryPolicy::default();
        for retry in 1..=10 {
            let full = Duration::from_millis(500)
                .saturating_mul(1 << (retry - 1).min(20))
                .min(Duration::from_secs(8));
            let wait = policy.backoff(retry);
            assert!(wait >= full / 2 && wait <= full, "retry {retry}: {wait:?}");
        }
    }

    #[test]
    fn retry_after_prefers_milliseconds_and_clamps() {
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250"), ("retry-after", "3")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0")])),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3600")])),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            None
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
    }

    #[test]
    fn statuses_are_classified() {
        let anthropic = |kind: &str, msg: &str| {
            serde_json::json!({"type": "error", "error": {"type": kind, "message": msg}})
                .to_string()
        };
        let none = HeaderMap::new();
        let fatal = |status: u16, body: &str| match classify_status(
            StatusCode::from_u16(status).unwrap(),
            &none,
            body,
        ) {
            Failure::Fatal(e) => e.to_string(),
            Failure::Transient(t) => panic!("{status} should be fatal, got {t:?}"),
        };
        assert_eq!(
            fatal(401, &anthropic("authentication_error", "invalid x-api-key")),
            "authentication failed: invalid x-api-key"
        );
        assert_eq!(
            fatal(
                400,
                &anthropic(
                    "invalid_request_error",
                    "prompt is too long: 210000 tokens > 200000 maximum"
                )
            ),
            "the conversation is too long for the model: prompt is too long: 210000 tokens > 200000 maximum"
        );
        let limit = "input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000, decrease input length or `max_tokens` and try again";
        assert_eq!(
            fatal(400, &anthropic("invalid_request_error", limit)),
            format!("the conversation is too long for the model: {limit}")
        );
        assert_eq!(
            fatal(
                404,
                r#"{"error":"model \"qwen\" not found, try pulling it first"}"#
            ),
            "the model provider rejected the request: model \"qwen\" not found, try pulling it first (HTTP 404)"
        );
        assert_eq!(
            fatal(422, ""),
            "the model provider rejected the request: 422 Unprocessable Entity (HTTP 422)"
        );
        assert_eq!(
            fatal(501, "<html>nope</html>"),
            "the model provider failed (HTTP 501): <html>nope</html>"
        );
        for (status, busy) in [
            (408, false),
            (409, false),
            (429, true),
            (500, false),
            (502, false),
            (503, false),
            (504, false),
            (529, true),
        ] {
            match classify_status(StatusCode::from_u16(status).unwrap(), &none, "{}") {
                Failure::Transient(t) => {
                    assert_eq!(t.kind == TransientKind::Busy, busy, "{status}")
                }
                Failure::Fatal(e) => panic!("{status} should be transient, got {e}"),
            }
        }
        // The server's explicit word overrides the status table.
        assert!(matches!(
            classify_status(
                StatusCode::BAD_GATEWAY,
                &headers(&[("x-should-retry", "false")]),
                "{}"
            ),
            Failure::Fatal(ModelError::Server { status: 502, .. })
        ));
    }

    #[test]
    fn stream_errors_are_classified() {
        assert!(matches!(
            classify_stream_error(Some("overloaded_error"), None, "Overloaded".into()),
            Failure::Transient(Transient {
                kind: TransientKind::Busy,
                ..
            })
        ));
        assert!(matches!(
            classify_stream_error(Some("api_error"), None, "oops".into()),
            Failure::Transient(Transient {
                kind: TransientKind::Server(500),
                ..
            })
        ));
        assert!(matches!(
            classify_stream_error(Some("invalid_request_error"), None, "bad".into()),
            Failure::Fatal(ModelError::InvalidRequest(_))
        ));
        assert!(matches!(
            classify_stream_error(
                None,
                Some(400),
                "the request exceeds the available context size".into()
            ),
            Failure::Fatal(ModelError::ContextTooLong(_))
        ));
        assert!(matches!(
            classify_stream_error(None, Some(503), "loading model".into()),
            Failure::Transient(Transient {
                kind: TransientKind::Server(503),
                ..
            })
        ));
    }

    #[tokio::test]
    async fn cancel_interrupts_a_backoff_wait() {
        let policy = RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_secs(3600),
            max_delay: Duration::from_secs(3600),
        };
        let cancel = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let canceller = cancel.clone();
        tokio::spawn(async move {
            // Cancel once the client announces its (hour-long) wait.
            if rx.recv().await.is_some() {
                canceller.cancel();
            }
        });
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            with_retries(&policy, Some(&tx), &cancel, || async {
                Err(Failure::Transient(Transient::new(
                    TransientKind::Network,
                    "reset",
                )))
            }),
        )
        .await
        .expect("cancellation should end the wait");
        assert!(matches!(result, Err(ModelError::Cancelled)), "{result:?}");
    }

    #[tokio::test]
    async fn exhausted_retries_report_the_last_failure() {
        let policy = RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut calls = 0;
        let result = with_retries(&policy, Some(&tx), &CancellationToken::new(), || {
            calls += 1;
            async {
                Err(Failure::Transient(Transient::new(
                    TransientKind::Server(502),
                    "bad gateway",
                )))
            }
        })
        .await;
        assert_eq!(calls, 3);
        assert_eq!(
            result.unwrap_err().to_string(),
            "the model provider failed (HTTP 502): bad gateway"
        );
        let mut attempts = Vec::new();
        while let Ok(ModelDelta::Retrying {
            attempt, reason, ..
        }) = rx.try_recv()
        {
            attempts.push((attempt, reason));
        }
        assert_eq!(
            attempts,
            vec![
                (2, "HTTP 502: bad gateway".to_owned()),
                (3, "HTTP 502: bad gateway".to_owned())
            ]
        );
    }
}
