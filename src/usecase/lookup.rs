//! Finding stored messages of one channel by seq, by id or by client_msg_no (WuKongIM's `/messages`,
//! `/message`, `/message/byclientmsgno`, `/channel/last_message`).
//!
//! A seq is the index key: one O(log n) read. Ids grow with seqs inside a channel (the id generator
//! never goes back, and a channel's actor numbers its messages in the order it takes ids), so an id is
//! found by a binary search over the seqs: O(log² n) reads, no index of its own. A client_msg_no has
//! no index (one random key per message for ever, for a lookup that business servers make about recent
//! messages): it is looked for among the channel's newest [`CLIENT_MSG_NO_REACH`] messages.

use rookery_events::{ChannelKey, Message, MessageSeq, Uid};

use super::{Error, Field, UseCases};

/// Most seqs, ids and client_msg_nos one lookup may name together.
pub const MAX_LOOKUP: usize = 1000;
/// How far back (in messages) a client_msg_no is looked for.
pub const CLIENT_MSG_NO_REACH: u64 = 10_000;
/// Messages read at a time while looking for a client_msg_no.
const SCAN_CHUNK: usize = 256;

/// What a lookup names.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// Message seqs.
    pub seqs: Vec<u64>,
    /// Message ids.
    pub ids: Vec<i64>,
    /// Client message numbers.
    pub client_msg_nos: Vec<String>,
}

impl UseCases {
    /// The stored ordinary messages of channel `key` that `what` names, in the order named (seqs, then
    /// ids, then client_msg_nos), each once; names that match nothing are left out. Retracted messages
    /// come without payload, listed in the second part.
    ///
    /// # Errors
    /// [`Error::Invalid`] for more than [`MAX_LOOKUP`] names, [`Error::Core`] on read failures.
    pub async fn find_messages(&self, key: &ChannelKey, what: &Lookup) -> Result<(Vec<Message>, std::collections::BTreeMap<u64, Uid>), Error> {
        if what.seqs.len() + what.ids.len() + what.client_msg_nos.len() > MAX_LOOKUP {
            return Err(Error::invalid(Field::Recipients, format!("name at most {MAX_LOOKUP} messages at once")));
        }
        let last = self.core.channel_view(key, &Uid::default()).await?.mark.seq.0;
        let (core, k, what) = (self.core.clone(), key.clone(), what.clone());
        let found = tokio::task::spawn_blocking(move || {
            let at = |seq: u64| -> Result<Option<Message>, rookery_actors::CoreError> { Ok(core.messages(&k, seq, seq, 1, false, false)?.into_iter().next()) };
            let mut out: Vec<Message> = Vec::new();
            let push = |m: Message, out: &mut Vec<Message>| {
                if !out.iter().any(|o| o.message_seq == m.message_seq) {
                    out.push(m);
                }
            };
            for &seq in &what.seqs {
                if (1..=last).contains(&seq) {
                    if let Some(m) = at(seq)? {
                        push(m, &mut out);
                    }
                }
            }
            for &id in &what.ids {
                let (mut lo, mut hi) = (1u64, last);
                while lo <= hi {
                    let mid = lo + (hi - lo) / 2;
                    let Some(m) = at(mid)? else { break };
                    match m.message_id.0.cmp(&id) {
                        std::cmp::Ordering::Equal => {
                            push(m, &mut out);
                            break;
                        }
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid.saturating_sub(1),
                    }
                }
            }
            if !what.client_msg_nos.is_empty() {
                let floor = last.saturating_sub(CLIENT_MSG_NO_REACH - 1).max(1);
                let mut wanted: Vec<&str> = what.client_msg_nos.iter().map(String::as_str).collect();
                let mut hits: Vec<(usize, Message)> = Vec::new();
                let mut hi = last;
                // Newest first: the newest message of a number wins.
                while hi >= floor && hi > 0 && !wanted.is_empty() {
                    let chunk = core.messages(&k, floor, hi, SCAN_CHUNK, true, false)?;
                    let Some(oldest) = chunk.last().map(|m| m.message_seq.0) else { break };
                    for m in chunk {
                        if let Some(i) = wanted.iter().position(|n| *n == m.client_msg_no.0) {
                            let order = what.client_msg_nos.iter().position(|n| *n == m.client_msg_no.0).unwrap_or(usize::MAX);
                            wanted.remove(i);
                            hits.push((order, m));
                        }
                    }
                    hi = oldest.saturating_sub(1);
                }
                hits.sort_by_key(|(order, _)| *order);
                for (_, m) in hits {
                    push(m, &mut out);
                }
            }
            Ok::<_, rookery_actors::CoreError>(out)
        })
        .await
        .map_err(|e| rookery_actors::CoreError::Storage(format!("looking messages up: {e}")))??;
        let mut found = found;
        let mut revoked = std::collections::BTreeMap::new();
        self.hide_revoked(key, &mut found, &mut revoked).await?;
        Ok((found, revoked))
    }

    /// The newest ordinary message of channel `key`, if it has one.
    ///
    /// # Errors
    /// [`Error::Core`] on read failures.
    pub async fn last_message(&self, key: &ChannelKey) -> Result<Option<(Message, Option<Uid>)>, Error> {
        let last = self.core.channel_view(key, &Uid::default()).await?.mark.seq;
        if last == MessageSeq(0) {
            return Ok(None);
        }
        let (found, revoked) = self.find_messages(key, &Lookup { seqs: vec![last.0], ..Lookup::default() }).await?;
        Ok(found.into_iter().next().map(|m| {
            let by = revoked.get(&m.message_seq.0).cloned();
            (m, by)
        }))
    }
}
