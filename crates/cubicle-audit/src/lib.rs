//! Cubicle's audit log: an append-only, hash-chained, fsynced JSONL record
//! of everything a session did — its start and end, model calls (tokens,
//! never prompts), tool calls with their permission decisions, files
//! written, network requests, policy loads and changes, approvals.
//!
//! - [`AuditLog`] writes records into `audit-000001.jsonl`,
//!   `audit-000002.jsonl`, … in one folder, rotating by size, one `write` and
//!   one `fdatasync` per record; the chain runs on across files.
//! - The record format is in [`record`]; the chain (SHA-256, or HMAC-SHA256
//!   with a key from the OS keyring) in [`chain`].
//! - [`verify`] finds an edited, deleted, inserted or reordered record, a
//!   missing or swapped file, a cut-short file or a wrong key, and names the
//!   first bad record in a sentence.
//! - [`tail`], [`follow`], [`export_jsonl`], [`export_otlp`] and
//!   [`send_otlp`] read and ship the log.
//!
//! Threat model: without a key the chain shows accidents and edits by anyone
//! who does not rewrite every later record; with a key, only the key's
//! holder can write records that verify. Removing records from the very end
//! is visible only against a copy of [`VerifyReport::last`] kept elsewhere.

pub mod chain;
mod error;
pub mod files;
mod log;
mod otlp;
mod read;
pub mod record;
mod verify;

pub use error::AuditError;
pub use log::{AuditLog, AuditOptions, DEFAULT_MAX_FILE_BYTES, Recovery};
pub use otlp::{export_otlp, send_otlp};
pub use read::{Follower, export_jsonl, follow, tail};
pub use record::{ApprovalChoice, Grant, PolicySource, Record, RecordKind, ToolDecision, Usage};
pub use verify::{BadRecord, Problem, TornLine, VerifyReport, verify};
