//! The use cases every transport calls: sending a message (WKProto SEND, every REST family's send),
//! tokens and logins, channels and their lists, the command queue, conversation lists, and the checks of ids and lengths they share. A rule lives here once; the
//! transports only parse their own wire format into these calls and render the answer back.
//!
//! Dependencies point down: transports (`gateway`, `http`) -> use cases -> the actor core and
//! [`Presence`]. Nothing here names a transport, builds a frame or knows JSON.

mod accounts;
mod channels;
mod commands;
mod conversations;
mod error;
mod fanout;
mod friends;
mod groups;
mod history;
mod lookup;
mod media;
mod msgevents;
mod retract;
mod send;
mod users;
pub mod validate;
mod words;

use std::sync::Arc;

use rookery_actors::Core;

pub use accounts::{hash_password, password_matches, AccountView, Signup, PASSWORD_ITERATIONS};
pub use conversations::{Conversation, ConversationMark, ConversationQuery, RecentMessages, MAX_CONVERSATIONS};
pub use error::{Error, Field};
pub use groups::{Circle, GroupSpec, GroupView};
pub use history::Page;
pub use lookup::{Lookup, CLIENT_MSG_NO_REACH, MAX_LOOKUP};
pub use media::{MAX_MEDIA_BYTES, MEDIA_KINDS};
pub use msgevents::{AppendedEvent, EventPage, EventTarget, MAX_EVENT_PAGE};
pub use send::{BatchFailure, Outgoing, Sent, Target, MAX_BATCH_RECIPIENTS};
pub use users::{LoginRefused, PlatformGrant, PlatformTokenCheck, TokenSet};
pub use words::Switches;

use crate::config::Config;
use crate::presence::Presence;

/// What the use cases share: the actor core, the settings, who is online and the fan-out workers.
/// Cheap to clone.
#[derive(Clone)]
pub struct UseCases {
    core: Core,
    config: Arc<Config>,
    presence: Arc<Presence>,
    /// The largest payload a send may carry: `max_payload_bytes`, or less when the transports could
    /// not deliver that much in one packet.
    max_payload: usize,
    fanout: fanout::Fanout,
    commands: commands::Remembered,
}

impl UseCases {
    /// The use cases over `core`, delivering to the sessions in `presence`, refusing payloads over
    /// `max_payload` bytes (at most `config.max_payload_bytes`). Starts the fan-out workers, so it must
    /// run inside a tokio runtime.
    pub fn new(core: Core, config: Arc<Config>, presence: Arc<Presence>, max_payload: usize) -> UseCases {
        let fanout = fanout::Fanout::start(presence.clone());
        let max_payload = max_payload.min(config.max_payload_bytes);
        UseCases { core, config, presence, max_payload, fanout, commands: commands::Remembered::default() }
    }

    /// The actor core, for what has no use case of its own yet (reads of state).
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Who is online.
    pub fn presence(&self) -> &Arc<Presence> {
        &self.presence
    }

    /// The server settings.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }
}
