//! Rookery's actors: one [`ChannelActor`](channel::ChannelActor) per channel, one
//! [`UserActor`](user::UserActor) per user, one system actor, all found through [`Core`].
//!
//! **Invariant:** no handler replies before the log said its append is durable, and no state change
//! becomes visible before that either; every actor is built only by replaying its snapshot and log
//! tail (`recover`), in tests as in production.
#![warn(missing_docs)]

pub mod channel;
mod clock;
pub mod erasure;
mod error;
pub mod history;
mod messages;
mod pipeline;
mod recent;
mod recovery;
mod registry;
pub mod replay;
pub mod sample;
mod system;
pub mod tenant;
pub mod user;

#[cfg(test)]
mod tests;

pub use clock::{Clock, MessageIdGen, SystemClock};
pub use error::CoreError;
pub use messages::{ChannelReply, ChannelView, MessageEventReply, Origin, SentMessage};
pub use pipeline::record_of;
pub use recovery::scan_bodies;
pub use registry::{Core, CoreConfig, CoreStats};
