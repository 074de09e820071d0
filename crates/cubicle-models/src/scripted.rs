//! A model that follows a script, for tests and benchmarks of everything
//! above the model: canned answers, errors, answers computed from the
//! request, and a step that hangs until cancelled (for interrupt tests). It
//! records every request so tests can check what the agent sent.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use cubicle_protocol::conversation::{ContentBlock, Message, Role, StopReason, Usage};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::replay::stream_deltas;
use crate::{DeltaTx, ModelClient, ModelError, ModelRequest, ModelResponse};

/// Token counts the response constructors use: plausible for a short turn.
pub const SCRIPTED_USAGE: Usage = Usage {
    input_tokens: 1_200,
    output_tokens: 40,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
};

/// A step computed from the request.
pub type StepFn = Box<dyn Fn(&ModelRequest) -> Result<ModelResponse, ModelError> + Send + Sync>;

/// The stop reason that marks [`ScriptedModel::hang_marker`].
const HANG_MARKER: &str = "cubicle-scripted-hang";

type ScriptFn = Box<dyn Fn(&ModelRequest, usize) -> Step + Send + Sync>;

/// What the scripted model does on one call.
pub enum Step {
    /// Answer with this response.
    Respond(ModelResponse),
    /// Fail with this error.
    Fail(ModelError),
    /// Answer with whatever the function makes of the request.
    With(StepFn),
    /// Wait until the call is cancelled, then return [`ModelError::Cancelled`].
    Hang,
}

impl Step {
    /// A step computed from the request.
    pub fn with(
        f: impl Fn(&ModelRequest) -> Result<ModelResponse, ModelError> + Send + Sync + 'static,
    ) -> Self {
        Step::With(Box::new(f))
    }
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Respond(r) => f.debug_tuple("Respond").field(r).finish(),
            Step::Fail(e) => f.debug_tuple("Fail").field(e).finish(),
            Step::With(_) => f.write_str("With(..)"),
            Step::Hang => f.write_str("Hang"),
        }
    }
}

impl From<ModelResponse> for Step {
    fn from(r: ModelResponse) -> Self {
        if r.stop_reason == StopReason::Other(HANG_MARKER.into()) {
            Step::Hang
        } else {
            Step::Respond(r)
        }
    }
}

impl From<ModelError> for Step {
    fn from(e: ModelError) -> Self {
        Step::Fail(e)
    }
}

impl From<Result<ModelResponse, ModelError>> for Step {
    fn from(r: Result<ModelResponse, ModelError>) -> Self {
        match r {
            Ok(r) => r.into(),
            Err(e) => Step::Fail(e),
        }
    }
}

enum Script {
    Steps(Mutex<VecDeque<Step>>),
    Function(ScriptFn),
}

/// A model that follows a script.
pub struct ScriptedModel {
    script: Script,
    requests: Mutex<Vec<ModelRequest>>,
    calls: std::sync::atomic::AtomicUsize,
    record: bool,
    model: String,
    context_window: u64,
}

impl std::fmt::Debug for ScriptedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedModel")
            .field("model", &self.model)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl ScriptedModel {
    /// A model that takes `steps` in order, one per call, then is exhausted.
    /// Each may be a [`Step`], a response, an error or a `Result`.
    pub fn new<S: Into<Step>>(steps: impl IntoIterator<Item = S>) -> Self {
        Self::with_script(Script::Steps(Mutex::new(
            steps.into_iter().map(Into::into).collect(),
        )))
    }

    /// A model that answers with `responses` in order, then is exhausted.
    pub fn from_responses(responses: impl IntoIterator<Item = ModelResponse>) -> Self {
        Self::new(responses)
    }

    /// A model whose every call is answered by `f(request, call_index)`, the
    /// index counting from 0; `f` may return a [`Step`], a response, an error
    /// or a `Result`.
    pub fn from_fn<F, R>(f: F) -> Self
    where
        F: Fn(&ModelRequest, usize) -> R + Send + Sync + 'static,
        R: Into<Step>,
    {
        Self::with_script(Script::Function(Box::new(move |req, i| f(req, i).into())))
    }

    fn with_script(script: Script) -> Self {
        Self {
            script,
            requests: Mutex::new(Vec::new()),
            calls: std::sync::atomic::AtomicUsize::new(0),
            record: true,
            model: "scripted".into(),
            context_window: crate::anthropic::CONTEXT_WINDOW,
        }
    }

    /// Uses `model` as the model name.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Keeps no copy of the requests (for benchmarks: a copy of a growing
    /// conversation per call costs time quadratic in its length);
    /// [`ScriptedModel::requests`] is then empty.
    pub fn without_recording(mut self) -> Self {
        self.record = false;
        self
    }

    /// Reports `tokens` as the context window, e.g. to force compaction.
    pub fn with_context_window(mut self, tokens: u64) -> Self {
        self.context_window = tokens;
        self
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<ModelRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many calls were made.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A response that stands for [`Step::Hang`], for scripts written as a
    /// list of responses or results.
    pub fn hang_marker() -> ModelResponse {
        ModelResponse {
            message: Message {
                role: Role::Assistant,
                content: Vec::new(),
            },
            stop_reason: StopReason::Other(HANG_MARKER.into()),
            usage: Usage::default(),
        }
    }

    /// A response of one text block that ends the turn.
    pub fn text_response(text: impl Into<String>) -> ModelResponse {
        ModelResponse {
            message: Message::assistant_text(text),
            stop_reason: StopReason::EndTurn,
            usage: SCRIPTED_USAGE,
        }
    }

    /// A response that calls one tool.
    pub fn tool_use_response(
        id: impl Into<String>,
        name: impl Into<String>,
        input: Value,
    ) -> ModelResponse {
        Self::tool_uses_response("", [(id.into(), name.into(), input)])
    }

    /// A response with optional text followed by several tool calls, each
    /// given as `(id, name, input)`.
    pub fn tool_uses_response<I, N>(
        text: impl Into<String>,
        calls: impl IntoIterator<Item = (I, N, Value)>,
    ) -> ModelResponse
    where
        I: Into<String>,
        N: Into<String>,
    {
        let text = text.into();
        let mut content = Vec::new();
        if !text.is_empty() {
            content.push(ContentBlock::Text { text });
        }
        content.extend(
            calls
                .into_iter()
                .map(|(id, name, input)| ContentBlock::ToolUse {
                    id: id.into(),
                    name: name.into(),
                    input,
                }),
        );
        ModelResponse {
            message: Message {
                role: Role::Assistant,
                content,
            },
            stop_reason: StopReason::ToolUse,
            usage: SCRIPTED_USAGE,
        }
    }
}

impl ModelResponse {
    /// The same response with other token counts.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }
}

#[async_trait]
impl ModelClient for ScriptedModel {
    fn provider(&self) -> &str {
        "scripted"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn context_window(&self) -> u64 {
        self.context_window
    }

    async fn complete(
        &self,
        req: &ModelRequest,
        deltas: Option<&DeltaTx>,
        cancel: &CancellationToken,
    ) -> Result<ModelResponse, ModelError> {
        let index = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.record {
            self.requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(req.clone());
        }
        let step = match &self.script {
            Script::Steps(steps) => steps.lock().unwrap_or_else(|e| e.into_inner()).pop_front(),
            Script::Function(f) => Some(f(req, index)),
        };
        let Some(step) = step else {
            return Err(ModelError::Exhausted(format!(
                "the script has no step for call {}",
                index + 1
            )));
        };
        if cancel.is_cancelled() {
            return Err(ModelError::Cancelled);
        }
        // A hang marker may arrive inside `Step::Respond`, too.
        let step = match step {
            Step::Respond(response) => Step::from(response),
            other => other,
        };
        let response = match step {
            Step::Respond(response) => response,
            Step::Fail(e) => return Err(e),
            Step::With(f) => f(req)?,
            Step::Hang => {
                cancel.cancelled().await;
                return Err(ModelError::Cancelled);
            }
        };
        stream_deltas(&response, deltas);
        Ok(response)
    }
}
