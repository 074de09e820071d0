//! The engine: sessions, the agent loop, tool routing, the permission gate,
//! questions and plans, sub-agents, context compaction, and transcripts.
//!
//! A front end builds [`SessionParams`], calls [`spawn`], then sends
//! [`Op`](cubicle_protocol::events::Op)s and reads
//! [`EventMsg`](cubicle_protocol::events::EventMsg)s on the returned
//! [`SessionHandle`]. Everything that happens is appended to the session's
//! transcript as it happens, so a session killed at any point can resume.

mod approval;
mod builtin;
pub mod gate;
pub mod hooks;
pub mod prompt;
mod runner;
pub mod session;
pub mod store;
pub mod transcript;

pub use builtin::format_answers;
pub use gate::{AllowAll, GateDecision, PermissionGate, PolicyGate};
pub use hooks::{HookPermission, HookPoint, HookVerdict, SessionHooks};
pub use session::{Delegate, SessionConfig, SessionHandle, SessionParams, spawn};
pub use store::{SessionSummary, Store, StoreError};
pub use transcript::{Transcript, TranscriptError, TranscriptWriter};
