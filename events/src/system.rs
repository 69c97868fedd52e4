//! The server-wide aggregate: which uids are system accounts.

use std::collections::BTreeSet;

use bincode::{Decode, Encode};

use crate::aggregate::{Aggregate, Rejection};
use crate::chain::Position;
use crate::envelope::Event;
use crate::ids::{Timestamp, Uid, SYSTEM_UID};

/// Something that happened server-wide.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum SystemEvent {
    /// These uids became system accounts.
    SystemUidsAdded {
        /// Added uids.
        uids: Vec<Uid>,
    },
    /// These uids stopped being system accounts.
    SystemUidsRemoved {
        /// Removed uids.
        uids: Vec<Uid>,
    },
}

impl SystemEvent {
    /// Stable kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            SystemEvent::SystemUidsAdded { .. } => "system.uids_added",
            SystemEvent::SystemUidsRemoved { .. } => "system.uids_removed",
        }
    }
}

/// An instruction to the server-wide aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemCommand {
    /// Make these uids system accounts.
    AddSystemUids(Vec<Uid>),
    /// Stop treating these uids as system accounts.
    RemoveSystemUids(Vec<Uid>),
}

/// Server-wide state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct SystemState {
    /// Uids added as system accounts (the built-in [`SYSTEM_UID`] is always one and is not listed).
    pub system_uids: BTreeSet<Uid>,
    /// Log position of the last event applied.
    pub position: Position,
}

impl SystemState {
    /// Whether `uid` is a system account.
    pub fn is_system(&self, uid: &Uid) -> bool {
        uid.0 == SYSTEM_UID || self.system_uids.contains(uid)
    }
}

impl Aggregate for SystemState {
    type Key = ();
    type Command = SystemCommand;
    type Event = SystemEvent;

    fn decide(&self, _key: &(), cmd: &SystemCommand, _now: Timestamp) -> Result<Vec<SystemEvent>, Rejection> {
        let (uids, adding) = match cmd {
            SystemCommand::AddSystemUids(uids) => (uids, true),
            SystemCommand::RemoveSystemUids(uids) => (uids, false),
        };
        if uids.is_empty() {
            return Err(Rejection::Invalid("uids must not be empty".into()));
        }
        if uids.iter().any(|u| u.0.is_empty()) {
            return Err(Rejection::Invalid("uids must not contain an empty uid".into()));
        }
        let mut seen = BTreeSet::new();
        let changed: Vec<Uid> = uids.iter().filter(|u| seen.insert((*u).clone()) && self.system_uids.contains(u) != adding).cloned().collect();
        Ok(match (changed.is_empty(), adding) {
            (true, _) => Vec::new(),
            (false, true) => vec![SystemEvent::SystemUidsAdded { uids: changed }],
            (false, false) => vec![SystemEvent::SystemUidsRemoved { uids: changed }],
        })
    }

    fn apply(&mut self, position: Position, event: &SystemEvent) {
        self.position = self.position.max(position);
        match event {
            SystemEvent::SystemUidsAdded { uids } => self.system_uids.extend(uids.iter().cloned()),
            SystemEvent::SystemUidsRemoved { uids } => uids.iter().for_each(|u| {
                self.system_uids.remove(u);
            }),
        }
    }

    fn wrap(event: SystemEvent) -> Event {
        Event::System(event)
    }

    fn unwrap(event: &Event) -> Option<&SystemEvent> {
        match event {
            Event::System(e) => Some(e),
            _ => None,
        }
    }
}
