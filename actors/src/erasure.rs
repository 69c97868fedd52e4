//! Payload erasure: removing one sender's message contents from the log (a legal erasure request)
//! while the log stays a verifiable hash chain.
//!
//! The digest of an envelope covers a payload only through its SHA-256, so a stored message can be
//! rewritten with `Payload::Erased(sha256)` in place of its bytes and keep its digest, its chain link
//! and every index entry. Each rewrite travels with a `PayloadsErased` event of the channel in one
//! atomic append, decided by the channel's own actor like any other mutation: either the event and
//! its rewrites are durable together, or neither is. Work is cut into chunks of [`CHUNK`] message
//! seqs, each its own event, so one erasure never builds an unbounded write.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use rookery_events::{ChannelCommand, ChannelEvent, ChannelKey, EnvelopeBody, Event, MessageSeq, Position, StreamId, Uid};
use rookery_storage::{EventLog, Rewrite};

use crate::error::CoreError;
use crate::messages::{ChannelReply, ExecuteChannel, Origin};
use crate::recovery::{scan_bodies, storage};
use crate::registry::{ask, Core};

/// Message seqs examined per event.
pub const CHUNK: u64 = 1024;

/// What one erasure did in one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The channel.
    pub channel: ChannelKey,
    /// Stored messages examined (ordinary and command sequences).
    pub examined: u64,
    /// Payloads erased now (already erased ones are not counted again).
    pub erased: u64,
    /// Positions of the `PayloadsErased` events recorded.
    pub events: Vec<Position>,
}

/// Every channel (with whether in its command sequence) holding a stored message from `uid`.
/// A whole-log scan: there is no index by sender, and erasure is rare.
///
/// # Errors
/// [`CoreError::Storage`] when the log cannot be read.
pub fn channels_with_messages_from(log: &dyn EventLog, uid: &Uid) -> Result<BTreeSet<ChannelKey>, CoreError> {
    let mut found = BTreeSet::new();
    scan_bodies(log, Position(1), &mut |_, body| {
        if let Event::Channel(ChannelEvent::MessageAppended(m)) = &body.event {
            if m.from_uid == *uid {
                found.insert(m.channel.clone());
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(found)
}

/// The rewrites that erase `uid`'s inline payloads among the stored messages of one sequence in
/// `from..=to`, and how many messages were examined.
fn plan(log: &dyn EventLog, key: &ChannelKey, commands: bool, uid: &Uid, from: u64, to: u64) -> Result<(Vec<Rewrite>, u64), CoreError> {
    let stream = if commands { StreamId::ChannelCommands(key.clone()) } else { StreamId::Channel(key.clone()) };
    let records = log.read_seq_range(&stream.key(), from, to, usize::MAX, false).map_err(storage)?;
    let examined = records.len() as u64;
    let mut rewrites = Vec::new();
    for (_, r) in records {
        let mut body = EnvelopeBody::decode(&r.body).map_err(|e| CoreError::Storage(format!("record {}: {e}", r.position)))?;
        let Event::Channel(ChannelEvent::MessageAppended(m)) = &mut body.event else {
            return Err(CoreError::Storage(format!("seq index points at a non-message record {}", r.position)));
        };
        if m.from_uid != *uid || !m.payload.is_inline() {
            continue;
        }
        m.payload = m.payload.erased();
        if body.digest() != r.digest {
            return Err(CoreError::Storage(format!("record {} would change its digest when erased", r.position)));
        }
        rewrites.push(Rewrite { position: r.position, digest: r.digest, body: body.encode() });
    }
    Ok((rewrites, examined))
}

impl Core {
    /// Erases the payloads of every stored message `uid` sent in `key` up to now, recording who asked
    /// and why, then asks the log to drop the superseded bytes from disk.
    ///
    /// # Errors
    /// [`CoreError::Rejected`] for an empty uid or reason, [`CoreError::Storage`] when the log fails;
    /// chunks recorded before a failure stay erased (repeating the request finishes the job).
    pub async fn erase_payloads(&self, key: &ChannelKey, uid: &Uid, reason: &str, origin: Origin) -> Result<Erasure, CoreError> {
        let state = self.channel_state(key).await?;
        let mut out = Erasure { channel: key.clone(), examined: 0, erased: 0, events: Vec::new() };
        let mut touched: Option<(Position, Position)> = None;
        for (commands, last) in [(false, state.last_message_seq.0), (true, state.last_command_seq.0)] {
            let mut from = 1;
            let mut recorded_any = false;
            while from <= last {
                let to = from.saturating_add(CHUNK - 1).min(last);
                let log = self.log().clone();
                let (k, u) = (key.clone(), uid.clone());
                let (rewrites, examined) = tokio::task::spawn_blocking(move || plan(&*log, &k, commands, &u, from, to))
                    .await
                    .map_err(|e| CoreError::Storage(format!("erasure task failed: {e}")))??;
                out.examined += examined;
                // A chunk without anything to erase is not recorded, except that each sequence that
                // has messages gets at least one event, so the request itself is always audited.
                let last_chunk = to == last;
                if !rewrites.is_empty() || (last_chunk && !recorded_any) {
                    let erased = rewrites.len() as u64;
                    for w in &rewrites {
                        touched = Some(touched.map_or((w.position, w.position), |(a, b)| (a.min(w.position), b.max(w.position))));
                    }
                    let (first_seq, last_seq) = if rewrites.is_empty() && !recorded_any { (1, last) } else { (from, to) };
                    let cmd = ChannelCommand::ErasePayloads {
                        from_uid: uid.clone(),
                        commands,
                        first_seq: MessageSeq(first_seq),
                        last_seq: MessageSeq(last_seq),
                        erased,
                        reason: reason.to_owned(),
                    };
                    let msg = || ExecuteChannel { cmd: cmd.clone(), origin: origin.clone(), rewrites: rewrites.clone() };
                    match ask(|| self.channel_addr(key), msg, |a| self.0.channels.remove_if(key, a)).await? {
                        ChannelReply::Done { position: Some(p) } => out.events.push(p),
                        other => return Err(CoreError::Storage(format!("erasure was not recorded: {other:?}"))),
                    }
                    out.erased += erased;
                    recorded_any = true;
                }
                from = to + 1;
            }
        }
        if out.events.is_empty() {
            return Err(CoreError::Rejected(rookery_events::Rejection::Invalid(format!("channel {key} has no stored messages"))));
        }
        if let Some((a, b)) = touched {
            let log = self.log().clone();
            let purged = match tokio::task::spawn_blocking(move || log.purge_superseded(a, b)).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = purged {
                // The erasure is recorded and the readable log no longer holds the payloads; only the
                // physical clean-up failed, and RocksDB's own compactions finish it later.
                tracing::warn!(error = %e, "purging superseded payload bytes failed");
            }
        }
        Ok(out)
    }
}
