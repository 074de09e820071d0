//! Plays back the model's side of a recorded transcript, so that a session
//! (or an eval) can be re-run without a model: each call returns the next
//! recorded answer of the agent that asks, streamed as the original was.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use cubicle_protocol::conversation::ContentBlock;
use cubicle_protocol::transcript::{Entry, Header, Record};
use tokio_util::sync::CancellationToken;

use crate::{DeltaTx, ModelClient, ModelDelta, ModelError, ModelRequest, ModelResponse};

/// A model that answers from a recording.
#[derive(Debug)]
pub struct ReplayModel {
    model: String,
    /// Remaining answers per agent (`None` is the main agent).
    queues: Mutex<HashMap<Option<String>, VecDeque<ModelResponse>>>,
    warnings: Vec<String>,
}

impl ReplayModel {
    /// Loads the transcript at `path`. A torn last line (a session killed
    /// mid-write) is skipped with a warning; a bad line anywhere else is an
    /// error naming its line number.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ModelError::Config(format!(
                "cannot read the transcript {}: {e}",
                path.display()
            ))
        })?;
        let (header, entries, warnings) = parse_transcript(&text).map_err(|e| {
            ModelError::Config(format!(
                "the transcript {} is not valid: {e}",
                path.display()
            ))
        })?;
        for warning in &warnings {
            tracing::warn!(path = %path.display(), "{warning}");
        }
        let mut model = Self::from_entries(header.model, entries);
        model.warnings = warnings;
        Ok(model)
    }

    /// Plays the model responses among `entries`, answering as `model`.
    pub fn from_entries(model: impl Into<String>, entries: Vec<Entry>) -> Self {
        let mut queues: HashMap<Option<String>, VecDeque<ModelResponse>> = HashMap::new();
        for entry in entries {
            if let Record::ModelResponse {
                message,
                usage,
                stop_reason,
                ..
            } = entry.record
            {
                queues
                    .entry(entry.agent)
                    .or_default()
                    .push_back(ModelResponse {
                        message,
                        stop_reason,
                        usage,
                    });
            }
        }
        Self {
            model: model.into(),
            queues: Mutex::new(queues),
            warnings: Vec::new(),
        }
    }

    /// What was skipped while loading (a torn last line).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// How many recorded answers remain for `agent`.
    pub fn remaining(&self, agent: Option<&str>) -> usize {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .get(&agent.map(str::to_owned))
            .map_or(0, VecDeque::len)
    }
}

/// Splits a transcript into its header and entries, plus warnings.
fn parse_transcript(text: &str) -> Result<(Header, Vec<Entry>, Vec<String>), String> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let Some(((header_no, header_line), rest)) = lines.split_first() else {
        return Err("it is empty".into());
    };
    let header: Header = serde_json::from_str(header_line)
        .map_err(|e| format!("line {header_no} is not a transcript header: {e}"))?;
    let mut entries = Vec::with_capacity(rest.len());
    let mut warnings = Vec::new();
    for (position, (number, line)) in rest.iter().enumerate() {
        match serde_json::from_str::<Entry>(line) {
            Ok(entry) => entries.push(entry),
            Err(e) if position + 1 == rest.len() => {
                warnings.push(format!("skipped the torn last line {number}: {e}"));
            }
            Err(e) => return Err(format!("line {number}: {e}")),
        }
    }
    Ok((header, entries, warnings))
}

#[async_trait]
impl ModelClient for ReplayModel {
    fn provider(&self) -> &str {
        "replay"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn context_window(&self) -> u64 {
        crate::anthropic::CONTEXT_WINDOW
    }

    async fn complete(
        &self,
        req: &ModelRequest,
        deltas: Option<&DeltaTx>,
        cancel: &CancellationToken,
    ) -> Result<ModelResponse, ModelError> {
        if cancel.is_cancelled() {
            return Err(ModelError::Cancelled);
        }
        let next = {
            let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            queues.get_mut(&req.agent).and_then(VecDeque::pop_front)
        };
        let Some(response) = next else {
            let who = match &req.agent {
                None => "the main agent".to_owned(),
                Some(id) => format!("sub-agent {id}"),
            };
            return Err(ModelError::Exhausted(format!(
                "the recording has no more model turns for {who}"
            )));
        };
        stream_deltas(&response, deltas);
        Ok(response)
    }
}

/// Sends a finished answer's content as the deltas a live model would have
/// streamed.
pub(crate) fn stream_deltas(response: &ModelResponse, deltas: Option<&DeltaTx>) {
    let Some(tx) = deltas else {
        return;
    };
    for block in &response.message.content {
        let delta = match block {
            ContentBlock::Text { text } if !text.is_empty() => ModelDelta::Text(text.clone()),
            ContentBlock::Thinking { thinking, .. } if !thinking.is_empty() => {
                ModelDelta::Thinking(thinking.clone())
            }
            ContentBlock::ToolUse { id, name, .. } => ModelDelta::ToolUseStart {
                id: id.clone(),
                name: name.clone(),
            },
            ContentBlock::Text { .. }
            | ContentBlock::Thinking { .. }
            | ContentBlock::Image { .. }
            | ContentBlock::ToolResult { .. }
            | ContentBlock::RedactedThinking { .. } => continue,
        };
        let _ = tx.send(delta);
    }
}
