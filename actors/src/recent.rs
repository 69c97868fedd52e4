//! Recognising retried sends: the idempotency window of one channel.
//!
//! A send that carries a client_msg_no is a retry when the same sender already has a committed message
//! with that number among the channel's last `window` messages of the same kind (ordinary or
//! command). The window lives in the channel actor's memory: 8-byte hashes of (sender,
//! client_msg_no) with the message's seq and id, about 50 bytes per message, loaded from the log's
//! seq index the first time the actor needs it and slid forward by every committed send. A hash hit
//! is confirmed against the stored record before it is believed, so a hash collision cannot make a
//! new message look like a retry.
//!
//! Why a window rather than an index over every message ever sent: such an index is one random key
//! per message, and keeping it in RocksDB was the largest part of the event log's cost
//! (docs/BENCHMARKS.md). Retries come within seconds or minutes of the original; the window bounds
//! what is remembered by count, like the duplicate windows of message brokers.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use rookery_events::{ChannelEvent, ClientMsgNo, EnvelopeBody, Event, Message, MessageId, MessageSeq, Uid};
use rookery_storage::{EventLog, StoredRecord};

/// The two sequences of a channel, each with its own window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Ordinary messages (the channel's message_seq).
    Message,
    /// Command (sync-once) messages, numbered in their own sequence.
    Command,
}

impl Kind {
    /// The kind of a message with this `sync_once` header flag.
    pub(crate) fn of(sync_once: bool) -> Kind {
        if sync_once {
            Kind::Command
        } else {
            Kind::Message
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::Message => 0,
            Kind::Command => 1,
        }
    }
}

/// A committed send the window remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) kind: Kind,
    pub(crate) message_seq: MessageSeq,
    pub(crate) message_id: MessageId,
}

/// The message a record found through a channel's seq index holds.
pub(crate) fn message_of(record: &StoredRecord) -> Result<Box<Message>, String> {
    match EnvelopeBody::decode(&record.body) {
        Ok(EnvelopeBody { event: Event::Channel(ChannelEvent::MessageAppended(m)), .. }) => Ok(m),
        Ok(_) => Err(format!("the seq index points at a non-message record {}", record.position)),
        Err(e) => Err(format!("record {}: {e}", record.position)),
    }
}

/// The hash a send is remembered under.
pub(crate) fn key_hash(from: &Uid, cmn: &ClientMsgNo) -> u64 {
    // SipHash with fixed keys: the same input gives the same hash in every process, which keeps
    // tests reproducible; nothing outside this process ever sees the hashes.
    let mut h = std::hash::DefaultHasher::new();
    (from.0.as_str(), cmn.0.as_str()).hash(&mut h);
    h.finish()
}

/// The committed sends of one channel's last `window` messages of each kind.
pub(crate) struct RecentSends {
    window: u64,
    loaded: bool,
    by_hash: HashMap<u64, Sent>,
    /// Per kind, (seq, hash) in seq order: what slides out of the window first.
    order: [VecDeque<(u64, u64)>; 2],
}

impl RecentSends {
    /// An empty window, not loaded yet.
    pub(crate) fn new(window: u64) -> RecentSends {
        RecentSends { window, loaded: false, by_hash: HashMap::new(), order: [VecDeque::new(), VecDeque::new()] }
    }

    /// Whether [`RecentSends::load`] has filled the window from the log.
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Fills the window from the last messages of `streams` (ordinary, command) up to the committed
    /// `last` seqs of each, through the log's seq index: O(log n + window) per stream.
    pub(crate) fn load(&mut self, log: &dyn EventLog, streams: [&[u8]; 2], last: [MessageSeq; 2]) -> Result<(), String> {
        for kind in [Kind::Message, Kind::Command] {
            let to = last[kind.index()].0;
            if to == 0 || self.window == 0 {
                continue;
            }
            let from = to.saturating_sub(self.window - 1).max(1);
            let records = log.read_seq_range(streams[kind.index()], from, to, self.window as usize, false).map_err(|e| e.to_string())?;
            for (seq, record) in records {
                let m = message_of(&record)?;
                if !m.client_msg_no.0.is_empty() {
                    self.remember(key_hash(&m.from_uid, &m.client_msg_no), Sent { kind, message_seq: MessageSeq(seq), message_id: m.message_id });
                }
            }
        }
        self.loaded = true;
        Ok(())
    }

    /// Remembers a committed send, and forgets what its seq pushes out of the window of its kind.
    /// The same seq remembered twice (a load racing a commit) is kept once.
    pub(crate) fn remember(&mut self, hash: u64, sent: Sent) {
        let order = &mut self.order[sent.kind.index()];
        let seq = sent.message_seq.0;
        if order.back().is_some_and(|(s, _)| *s >= seq) {
            return;
        }
        if self.window == 0 {
            return;
        }
        order.push_back((seq, hash));
        self.by_hash.insert(hash, sent);
        while let Some(&(old, h)) = order.front() {
            if old + self.window > seq {
                break;
            }
            order.pop_front();
            // A newer send under the same hash stays.
            if self.by_hash.get(&h).is_some_and(|s| s.kind == sent.kind && s.message_seq.0 == old) {
                self.by_hash.remove(&h);
            }
        }
    }

    /// The remembered send under `hash`, still to be confirmed against its record.
    pub(crate) fn get(&self, hash: u64) -> Option<Sent> {
        self.by_hash.get(&hash).copied()
    }

    /// Sends remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_hash.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(kind: Kind, seq: u64) -> Sent {
        Sent { kind, message_seq: MessageSeq(seq), message_id: MessageId(1000 + seq as i64) }
    }

    #[test]
    fn the_window_keeps_the_last_messages_of_each_kind() {
        let mut w = RecentSends::new(3);
        for seq in 1..=5 {
            w.remember(seq * 10, sent(Kind::Message, seq));
        }
        w.remember(7, sent(Kind::Command, 1));
        assert_eq!((w.get(10), w.get(20)), (None, None), "seqs 1 and 2 slid out");
        assert_eq!(w.get(30), Some(sent(Kind::Message, 3)));
        assert_eq!(w.get(50), Some(sent(Kind::Message, 5)));
        assert_eq!(w.get(7), Some(sent(Kind::Command, 1)), "commands have their own window");
        assert_eq!(w.len(), 4);
    }

    #[test]
    fn gaps_in_the_keyed_seqs_count_toward_the_window() {
        // Messages without a client_msg_no take seqs too: the window is the last `window` seqs.
        let mut w = RecentSends::new(3);
        w.remember(1, sent(Kind::Message, 1));
        w.remember(4, sent(Kind::Message, 4));
        assert_eq!(w.get(1), None);
        assert_eq!(w.get(4), Some(sent(Kind::Message, 4)));
    }

    #[test]
    fn a_hash_taken_over_by_a_newer_send_survives_the_older_ones_eviction() {
        let mut w = RecentSends::new(2);
        w.remember(9, sent(Kind::Message, 1));
        w.remember(9, sent(Kind::Message, 2));
        w.remember(5, sent(Kind::Message, 3));
        assert_eq!(w.get(9), Some(sent(Kind::Message, 2)));
        w.remember(6, sent(Kind::Message, 4));
        assert_eq!(w.get(9), None);
    }

    #[test]
    fn a_seq_remembered_twice_is_kept_once_and_a_zero_window_remembers_nothing() {
        let mut w = RecentSends::new(2);
        w.remember(1, sent(Kind::Message, 1));
        w.remember(1, sent(Kind::Message, 1));
        assert_eq!(w.order[0].len(), 1);
        let mut none = RecentSends::new(0);
        none.remember(1, sent(Kind::Message, 1));
        assert_eq!(none.get(1), None);
    }

    #[test]
    fn hashes_tell_sender_and_number_apart() {
        let h = |u: &str, c: &str| key_hash(&Uid(u.into()), &ClientMsgNo(c.into()));
        assert_ne!(h("ab", "c"), h("a", "bc"));
        assert_eq!(h("a", "b"), h("a", "b"));
    }
}
