//! `TenantActor`: owns one tenant's stream (accounts, profiles, password hashes).
//!
//! A tenant's state grows with its users, so it is neither copied to readers nor snapshotted after
//! every commit: a read runs a function on the committed state inside the actor and sends back only
//! its answer ([`QueryTenant`]), and a snapshot is written every `snapshot_every` events.

use actix::prelude::*;
use rookery_events::{Aggregate, Event, Position, StreamId, TenantEvent, TenantState};
use tokio::sync::oneshot;

use crate::error::CoreError;
use crate::messages::*;
use crate::pipeline::{record, Pipeline};
use crate::recovery;
use crate::registry::Core;

/// What an accepted tenant command answers: where its last event landed and the events decided.
pub type TenantReply = (Option<Position>, Vec<TenantEvent>);

type Reply = (oneshot::Sender<Result<TenantReply, CoreError>>, Vec<TenantEvent>);

/// The actor serving one tenant.
pub struct TenantActor {
    tag: String,
    core: Core,
    pipe: Pipeline<TenantState, Reply>,
    snapshot_at: Position,
    unsnapshotted: u64,
    broken: Option<String>,
}

impl TenantActor {
    /// Builds the actor from its snapshot and the tail of its stream: the only constructor.
    pub(crate) fn recover(core: Core, tag: String) -> TenantActor {
        let (state, broken, unsnapshotted) = match recovery::recover::<TenantState>(&*core.0.log, &[StreamId::Tenant(tag.clone())]) {
            Ok((state, _, replayed)) => (state, None, replayed),
            Err(e) => {
                tracing::error!(%tag, error = %e, "tenant cannot be loaded");
                (TenantState::default(), Some(e.to_string()), 0)
            }
        };
        let snapshot_at = state.position;
        TenantActor { tag, core, pipe: Pipeline::new(state), snapshot_at, unsnapshotted, broken }
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        for ((reply, events), result) in self.pipe.drain() {
            if let Ok(Some(c)) = &result {
                self.unsnapshotted += c.last.0 - c.first.0 + 1;
            }
            let _ = reply.send(result.map(|c| (c.map(|c| c.last), events)).map_err(CoreError::Storage));
        }
        if self.pipe.has_failed() {
            // The state may be ahead of what is durable: stop, and let the next request rebuild it from the log.
            tracing::error!(tag = %self.tag, "event log append failed; tenant actor stops and will be rebuilt from the log");
            self.core.0.tenants.remove_if(&self.tag, &ctx.address());
            ctx.stop();
            return;
        }
        if self.unsnapshotted >= self.core.0.config.snapshot_every && self.pipe.is_idle() {
            let state = self.pipe.committed();
            match recovery::save(&*self.core.0.log, &StreamId::Tenant(self.tag.clone()), state, state.position) {
                Ok(()) => {
                    self.snapshot_at = state.position;
                    self.unsnapshotted = 0;
                }
                Err(e) => tracing::warn!(tag = %self.tag, error = %e, "tenant snapshot not written"),
            }
        }
    }
}

impl Actor for TenantActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        let state = self.pipe.committed();
        if self.broken.is_none() && !self.pipe.has_failed() && state.position > self.snapshot_at {
            let _ = recovery::save(&*self.core.0.log, &StreamId::Tenant(self.tag.clone()), state, state.position);
        }
        Running::Stop
    }
}

impl Handler<ExecuteTenant> for TenantActor {
    type Result = ResponseFuture<Result<TenantReply, CoreError>>;

    fn handle(&mut self, msg: ExecuteTenant, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(e) = &self.broken {
            let e = CoreError::Storage(e.clone());
            return Box::pin(async move { Err(e) });
        }
        let (tx, rx) = oneshot::channel();
        let now = self.core.now();
        match self.pipe.projected().decide(&self.tag, &msg.cmd, now) {
            Err(rejection) => {
                let _ = tx.send(Err(rejection.into()));
            }
            Ok(events) => {
                let meta = msg.origin.into_meta(now);
                let stream = StreamId::Tenant(self.tag.clone());
                let records = events.iter().map(|e| record(&stream, &meta, Event::Tenant(e.clone()))).collect();
                let decided = events.clone();
                match self.pipe.submit(&*self.core.0.log, events, records, Vec::new(), (tx, decided)) {
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

impl Handler<QueryTenant> for TenantActor {
    type Result = Result<(), CoreError>;

    fn handle(&mut self, msg: QueryTenant, _: &mut Context<Self>) -> Self::Result {
        if let Some(e) = &self.broken {
            return Err(CoreError::Storage(e.clone()));
        }
        (msg.read)(self.pipe.committed());
        Ok(())
    }
}
