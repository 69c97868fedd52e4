//! `UserActor`: owns one user's stream — device tokens, conversation marks, the write-spread queue.
//!
//! Channels write `CommandQueued` events into user streams atomically with the command message, then
//! tell the live user actor. The actor keeps a `horizon`: every event of its stream at or below it is
//! in the state. Notices at or below the horizon are duplicates of what recovery already read; before
//! a snapshot the actor re-reads its stream above the horizon so no notice still in the mail is missed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rookery_events::{Aggregate, Event, Position, StreamId, Uid, UserEvent, UserState};
use tokio::sync::oneshot;

use crate::error::CoreError;
use crate::messages::*;
use crate::pipeline::{record, Pipeline};
use crate::recovery;
use crate::registry::Core;

const IDLE_CHECK: Duration = Duration::from_secs(5);

type Reply = oneshot::Sender<Result<Option<Position>, CoreError>>;

/// The actor serving one user.
pub struct UserActor {
    uid: Uid,
    core: Core,
    pipe: Pipeline<UserState, Reply>,
    horizon: Position,
    seen_foreign: BTreeSet<Position>,
    snapshot_at: Position,
    /// Events of this user applied (own commits and channel-written ones) since the last snapshot:
    /// the next one is written when this reaches `snapshot_every`.
    unsnapshotted: u64,
    last_active: Instant,
    retired: bool,
    broken: Option<String>,
}

impl UserActor {
    /// Builds the actor from its snapshot and the tail of its stream: the only constructor.
    pub(crate) fn recover(core: Core, uid: Uid) -> UserActor {
        let (state, horizon, broken, unsnapshotted) = match recovery::recover::<UserState>(&*core.0.log, &[StreamId::User(uid.clone())]) {
            Ok((state, horizon, replayed)) => (state, horizon, None, replayed),
            Err(e) => {
                tracing::error!(%uid, error = %e, "user cannot be loaded");
                (UserState::default(), Position::ZERO, Some(e.to_string()), 0)
            }
        };
        let snapshot_at = state.position;
        UserActor {
            uid,
            core,
            pipe: Pipeline::new(state),
            horizon,
            seen_foreign: BTreeSet::new(),
            snapshot_at,
            unsnapshotted,
            last_active: Instant::now(),
            retired: false,
            broken,
        }
    }

    fn unavailable(&self) -> Option<CoreError> {
        if self.retired {
            Some(CoreError::Unavailable)
        } else {
            self.broken.as_ref().map(|e| CoreError::Storage(e.clone()))
        }
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        for (reply, result) in self.pipe.drain() {
            if let Ok(Some(c)) = &result {
                self.unsnapshotted += c.last.0 - c.first.0 + 1;
            }
            let _ = reply.send(result.map(|c| c.map(|c| c.last)).map_err(CoreError::Storage));
        }
        if self.pipe.has_failed() {
            tracing::error!(uid = %self.uid, "event log append failed; user actor stops and will be rebuilt from the log");
            self.retire(ctx, false);
            return;
        }
        if self.unsnapshotted >= self.core.0.config.snapshot_every {
            self.snapshot();
        }
    }

    fn apply_foreign(&mut self, position: Position, event: &UserEvent) {
        if position <= self.horizon || !self.seen_foreign.insert(position) {
            return;
        }
        self.pipe.apply_foreign(position, event);
        self.unsnapshotted += 1;
    }

    /// Brings the state up to everything committed in the stream, then stores it.
    fn snapshot(&mut self) {
        if !self.pipe.is_idle() {
            return;
        }
        let head = self.core.0.log.head().0;
        let mut tail = Vec::new();
        if let Err(e) = recovery::read_tail(&*self.core.0.log, &StreamId::User(self.uid.clone()), self.horizon, head, &mut tail) {
            tracing::warn!(uid = %self.uid, error = %e, "snapshot not written");
            return;
        }
        for (position, body) in tail {
            if let Event::User(e) = &body.event {
                if e.is_written_by_channel() {
                    self.apply_foreign(position, e);
                }
            }
        }
        self.horizon = head;
        self.seen_foreign = self.seen_foreign.split_off(&head.next());
        let state = self.pipe.committed();
        match recovery::save(&*self.core.0.log, &StreamId::User(self.uid.clone()), state, head) {
            Ok(()) => {
                self.snapshot_at = state.position.max(head);
                self.unsnapshotted = 0;
            }
            Err(e) => tracing::warn!(uid = %self.uid, error = %e, "snapshot not written"),
        }
    }

    fn retire(&mut self, ctx: &mut Context<Self>, snapshot: bool) {
        if snapshot && self.pipe.committed().position > self.snapshot_at {
            self.snapshot();
        }
        self.retired = true;
        self.core.0.users.remove_if(&self.uid, &ctx.address());
        ctx.stop();
    }
}

impl Actor for UserActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        let idle = self.core.0.config.idle_timeout;
        ctx.run_interval(IDLE_CHECK.min(idle), move |act, ctx| {
            let stale = act.last_active.elapsed() >= idle;
            if (stale || act.broken.is_some()) && act.pipe.is_idle() && !act.retired {
                act.retire(ctx, act.broken.is_none());
            }
        });
    }
}

impl Handler<ExecuteUser> for UserActor {
    type Result = ResponseFuture<Result<Option<Position>, CoreError>>;

    fn handle(&mut self, msg: ExecuteUser, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(e) = self.unavailable() {
            return Box::pin(async move { Err(e) });
        }
        self.last_active = Instant::now();
        let (tx, rx) = oneshot::channel();
        let now = self.core.now();
        match self.pipe.projected().decide(&self.uid, &msg.cmd, now) {
            Err(rejection) => {
                let _ = tx.send(Err(rejection.into()));
            }
            Ok(events) => {
                let meta = msg.origin.into_meta(now);
                let stream = StreamId::User(self.uid.clone());
                let records = events.iter().map(|e| record(&stream, &meta, Event::User(e.clone()))).collect();
                match self.pipe.submit(&*self.core.0.log, events, records, Vec::new(), tx) {
                    Some((ticket, commit)) => {
                        ctx.spawn(commit.into_actor(self).map(move |res, act, ctx| {
                            act.pipe.complete(ticket, res);
                            act.finish(ctx);
                        }));
                    }
                    None => self.finish(ctx),
                }
            }
        }
        Box::pin(async move { rx.await.unwrap_or(Err(CoreError::Unavailable)) })
    }
}

impl Handler<GetUser> for UserActor {
    type Result = Result<UserState, CoreError>;

    fn handle(&mut self, _: GetUser, _: &mut Context<Self>) -> Self::Result {
        if let Some(e) = self.unavailable() {
            return Err(e);
        }
        self.last_active = Instant::now();
        Ok(self.pipe.committed().clone())
    }
}

impl Handler<ForeignCommitted> for UserActor {
    type Result = ();

    fn handle(&mut self, msg: ForeignCommitted, _: &mut Context<Self>) {
        for (position, event) in &msg.events {
            self.apply_foreign(*position, event);
        }
    }
}
