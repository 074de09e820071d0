//! The provider-neutral conversation: what the agent sends to a model and gets
//! back. Model clients translate these to and from each provider's wire format;
//! transcripts store them verbatim.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person, or the agent speaking for tool results.
    User,
    /// The model.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    /// Author of the message.
    pub role: Role,
    /// Ordered content blocks.
    pub content: Vec<ContentBlock>,
}

impl Message {
    /// A user message holding one text block.
    pub fn user_text(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    /// An assistant message holding one text block.
    pub fn assistant_text(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    /// The concatenated text blocks of the message.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for block in &self.content {
            if let ContentBlock::Text { text } = block {
                out.push_str(text);
            }
        }
        out
    }

    /// The tool calls the message makes, in order.
    pub fn tool_uses(&self) -> impl Iterator<Item = ToolUse<'_>> {
        self.content.iter().filter_map(|b| match b {
            ContentBlock::ToolUse { id, name, input } => Some(ToolUse { id, name, input }),
            _ => None,
        })
    }
}

/// A borrowed view of one `tool_use` block.
#[derive(Debug, Clone, Copy)]
pub struct ToolUse<'a> {
    /// The model's id for the call, echoed in the result.
    pub id: &'a str,
    /// Tool name.
    pub name: &'a str,
    /// Arguments as the model wrote them.
    pub input: &'a Value,
}

/// One block of message content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image (user messages only).
    Image {
        /// The encoded image.
        source: ImageSource,
    },
    /// The model asks for a tool to be run.
    ToolUse {
        /// Call id, unique within the conversation.
        id: String,
        /// Name of the tool.
        name: String,
        /// Arguments; usually an object, but whatever the model produced is kept.
        input: Value,
    },
    /// The result of a tool call, sent back in a user message.
    ToolResult {
        /// The `id` of the matching `tool_use`.
        tool_use_id: String,
        /// What the tool produced.
        content: Vec<ToolResultContent>,
        /// Whether the call failed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    /// Extended thinking, kept so it can be sent back unchanged.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// Provider signature that must accompany it.
        #[serde(default)]
        signature: String,
    },
    /// Thinking the provider returned encrypted.
    RedactedThinking {
        /// Opaque payload.
        data: String,
    },
}

/// Content of a tool result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolResultContent {
    /// Text output.
    Text {
        /// The text.
        text: String,
    },
    /// An image, e.g. a screenshot or a PNG the agent read.
    Image {
        /// The encoded image.
        source: ImageSource,
    },
}

impl ToolResultContent {
    /// A text result.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }
}

/// An inline, base64-encoded image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageSource {
    /// MIME type: `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
    pub media_type: String,
    /// Standard base64 of the image bytes.
    pub data: String,
}

/// A tool as offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolSpec {
    /// Name the model calls it by.
    pub name: String,
    /// What it does and when to use it, for the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub input_schema: Value,
}

/// Token counts of one model call (or a sum of calls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    /// Uncached input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: u64,
}

impl Usage {
    /// Every input token, cached or not: the size of the prompt.
    pub fn total_input(&self) -> u64 {
        self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }

    /// Adds another call's counts to this one.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
    }
}

/// Why the model stopped producing output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its turn.
    EndTurn,
    /// The model wants tool results before going on.
    ToolUse,
    /// The output hit `max_tokens`.
    MaxTokens,
    /// A stop sequence was produced.
    StopSequence,
    /// A long-running server turn was paused; send the conversation back to continue.
    PauseTurn,
    /// The model declined to answer.
    Refusal,
    /// The prompt plus output exceeded the model's context window.
    ModelContextWindowExceeded,
    /// A reason this version does not know.
    #[serde(untagged)]
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn content_blocks_use_tagged_snake_case() {
        let m = Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Text { text: "hi".into() },
                ContentBlock::ToolUse {
                    id: "t1".into(),
                    name: "bash".into(),
                    input: json!({"command": "ls"}),
                },
            ],
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"role": "assistant", "content": [
                {"type": "text", "text": "hi"},
                {"type": "tool_use", "id": "t1", "name": "bash", "input": {"command": "ls"}}
            ]})
        );
        let uses: Vec<_> = m.tool_uses().map(|u| u.name.to_string()).collect();
        assert_eq!(uses, vec!["bash"]);
    }

    #[test]
    fn unknown_stop_reason_is_kept() {
        let r: StopReason = serde_json::from_str("\"something_new\"").unwrap();
        assert_eq!(r, StopReason::Other("something_new".into()));
        let r: StopReason = serde_json::from_str("\"end_turn\"").unwrap();
        assert_eq!(r, StopReason::EndTurn);
    }
}
