//! Isolation: the [`Computer`] trait every backend implements, the client side
//! of the guest protocol ([`guest_client`]), and the backends themselves.
//!
//! Every backend runs the same `cubicle-guest` and talks to it with the same
//! framed protocol, so a test that passes on one backend passes on all.

pub mod computer;
pub mod grants;
pub mod guest_client;
pub mod host;
pub mod jail;
pub mod locate;
mod spawn;
pub mod vm;

pub use computer::{
    Computer, ComputerInfo, ExecOutput, LIVE_OUTPUT_CHUNKS, OutputChunk, SandboxError,
};
pub use grants::Grant;
