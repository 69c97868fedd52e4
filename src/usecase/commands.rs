//! The write-spread command queue as an app server reads it: the commands waiting for a user, and
//! acknowledging those it was last given (WuKongIM's `/message/sync` and `/message/syncack`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rookery_actors::Origin;
use rookery_events::{Message, Position, Uid, UserCommand};

use super::{validate, Error, UseCases};

/// Uids whose last read of the queue is remembered; past this, an arbitrary entry is forgotten (its
/// commands are simply offered again by the next read).
const MAX_REMEMBERED: usize = 100_000;

/// What each uid's latest read of its queue returned (the queue positions of those commands), so the
/// following acknowledgement takes exactly them. Kept in memory like WuKongIM v2: after a restart an
/// acknowledgement finds nothing and the next read offers the same commands again.
#[derive(Debug, Clone, Default)]
pub(super) struct Remembered(Arc<Mutex<HashMap<Uid, Vec<Position>>>>);

impl Remembered {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uid, Vec<Position>>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, uid: Uid, positions: Vec<Position>) {
        let mut map = self.lock();
        if map.len() >= MAX_REMEMBERED && !map.contains_key(&uid) {
            if let Some(old) = map.keys().next().cloned() {
                map.remove(&old);
            }
        }
        map.insert(uid, positions);
    }

    fn take(&self, uid: &Uid) -> Vec<Position> {
        self.lock().remove(uid).unwrap_or_default()
    }

    fn restore(&self, uid: Uid, positions: Vec<Position>) {
        self.lock().entry(uid).or_insert(positions);
    }
}

impl UseCases {
    /// Up to `limit` of the commands waiting for `uid`, oldest first, remembered for
    /// [`UseCases::ack_commands`] when `remember` (a caller who may acknowledge; a read-only caller's
    /// read changes nothing).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed uid, [`Error::Core`] when the queue cannot be read.
    pub async fn pending_commands(&self, uid: &str, limit: usize, remember: bool) -> Result<Vec<Message>, Error> {
        validate::uid("uid", uid)?;
        let uid = Uid::from(uid);
        let user = self.core.user_state(&uid).await?;
        let pending: Vec<_> = user.pending_commands.into_iter().take(limit).collect();
        let core = self.core.clone();
        let found = tokio::task::spawn_blocking(move || {
            pending
                .into_iter()
                .map(|(position, queued)| {
                    let seq = queued.message_seq.0;
                    let message = core.messages(&queued.channel, seq, seq, 1, false, true)?.into_iter().next();
                    Ok((position, message))
                })
                .collect::<Result<Vec<_>, rookery_actors::CoreError>>()
        })
        .await
        .map_err(|e| rookery_actors::CoreError::Storage(format!("reading the command queue: {e}")))??;
        // An entry whose message cannot be read any more is still remembered, so the acknowledgement
        // clears it instead of leaving it in the queue for ever.
        if remember {
            self.commands.remember(uid, found.iter().map(|(p, _)| *p).collect());
        }
        Ok(found.into_iter().filter_map(|(_, m)| m).collect())
    }

    /// Takes the commands the last [`UseCases::pending_commands`] of `uid` returned off its queue.
    /// Nothing to acknowledge is not an error.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed uid, [`Error::Core`] when the log fails (the commands are
    /// kept, so the acknowledgement can be retried).
    pub async fn ack_commands(&self, uid: &str, origin: Origin) -> Result<(), Error> {
        validate::uid("uid", uid)?;
        let uid = Uid::from(uid);
        let positions = self.commands.take(&uid);
        if positions.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.core.user(&uid, UserCommand::AckSync(positions.clone()), origin).await {
            self.commands.restore(uid, positions);
            return Err(e.into());
        }
        Ok(())
    }
}
