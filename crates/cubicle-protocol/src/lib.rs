//! Wire types shared by every Cubicle crate, and nothing else: no I/O, no logic
//! beyond (de)serialisation helpers.
//!
//! - [`conversation`]: messages, content blocks, tool specs and usage, the
//!   provider-neutral shape of a model conversation.
//! - [`guest`]: the framed host⇄guest protocol spoken by `cubicle-guest` inside
//!   every cubicle.
//! - [`events`]: what a running session tells its front ends ([`events::Event`])
//!   and what they may ask of it ([`events::Op`]).
//! - [`transcript`]: the append-only JSONL record of a session.

pub mod bytes;
pub mod conversation;
pub mod events;
pub mod guest;
pub mod transcript;
