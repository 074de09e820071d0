//! The local server behind `cubicle serve`: a JSON API and a WebSocket event
//! stream over sessions, guarded by a per-run token, `Host` and `Origin`
//! checks, plus the web UI, embedded in the binary.
//!
//! The server does not know how to start a session (policy, audit, egress,
//! backend): a front end gives it a [`SessionStarter`]. It keeps the live
//! sessions, fans each one's events out to every connected browser (with a
//! replay for late joiners), and reads history from the transcripts in the
//! [`Store`](cubicle_agent::Store). The API is documented in `API.md`.

mod api;
mod files;
mod hub;
mod security;
mod server;
mod starter;
mod ui;

pub use server::{Server, ServerError};
pub use starter::{GrantRequest, OnEnd, SessionEnd, SessionStarter, StartRequest, StartedSession};
