//! Server-sent events over a streaming HTTP response, with the two ways a
//! stream can go wrong told apart: a dropped connection is worth a retry, a
//! stream that is not valid SSE is not.

use std::pin::Pin;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};

use crate::ModelError;
use crate::retry::{Failure, Transient, TransientKind, error_chain};

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// The events of one response, read one at a time.
pub(crate) struct SseStream {
    events: Events,
}

impl SseStream {
    /// POSTs `body` as JSON to `url` and opens the answer as an event
    /// stream; an HTTP error status becomes the matching failure.
    pub async fn post(
        http: &reqwest::Client,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<Self, Failure> {
        let response = http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| crate::retry::from_send_error(&e))?;
        if !response.status().is_success() {
            return Err(crate::retry::from_error_response(response).await);
        }
        Self::open(response).await
    }

    /// Checks that `response` is an event stream and starts reading it.
    pub async fn open(response: reqwest::Response) -> Result<Self, Failure> {
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        // A missing content type is tolerated: some local servers omit it.
        if !content_type.is_empty() && !content_type.starts_with("text/event-stream") {
            let body = response.text().await.unwrap_or_default();
            let excerpt: String = body.chars().take(500).collect();
            return Err(Failure::Fatal(ModelError::Stream(format!(
                "expected an event stream but got `{content_type}`: {excerpt}"
            ))));
        }
        Ok(Self {
            events: Box::pin(response.bytes_stream().eventsource()),
        })
    }

    /// The next event, `None` once the server has closed the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, Failure> {
        match self.events.next().await {
            None => Ok(None),
            Some(Ok(event)) => Ok(Some(event)),
            Some(Err(EventStreamError::Transport(e))) => Err(Failure::Transient(Transient::new(
                TransientKind::Network,
                format!("the connection dropped mid-response: {}", error_chain(&e)),
            ))),
            Some(Err(EventStreamError::Utf8(e))) => Err(Failure::Fatal(ModelError::Stream(
                format!("the event stream is not UTF-8: {e}"),
            ))),
            Some(Err(EventStreamError::Parser(e))) => Err(Failure::Fatal(ModelError::Stream(
                format!("the event stream is not valid SSE: {e}"),
            ))),
        }
    }
}
