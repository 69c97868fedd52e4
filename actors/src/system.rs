//! `SystemActor`: owns the server-wide stream (system uids) and publishes its committed state to a
//! shared read-only view, because every send consults it.

use std::sync::Arc;

use actix::prelude::*;
use rookery_events::{Aggregate, Event, Position, StreamId, SystemState};
use tokio::sync::oneshot;

use crate::error::CoreError;
use crate::messages::*;
use crate::pipeline::{record, Pipeline};
use crate::recovery;
use crate::registry::Core;

type Reply = oneshot::Sender<Result<Option<Position>, CoreError>>;

/// The actor serving the server-wide aggregate.
pub struct SystemActor {
    core: Core,
    pipe: Pipeline<SystemState, Reply>,
    snapshot_at: Position,
}

impl SystemActor {
    pub(crate) fn new(core: Core, state: SystemState, _horizon: Position) -> SystemActor {
        let snapshot_at = state.position;
        SystemActor { core, pipe: Pipeline::new(state), snapshot_at }
    }

    fn finish(&mut self) {
        for (reply, result) in self.pipe.drain() {
            let _ = reply.send(result.map(|c| c.map(|c| c.last)).map_err(CoreError::Storage));
        }
        let state = self.pipe.committed().clone();
        if state.position > self.snapshot_at {
            if let Err(e) = recovery::save(&*self.core.0.log, &StreamId::System, &state, state.position) {
                tracing::warn!(error = %e, "system snapshot not written");
            } else {
                self.snapshot_at = state.position;
            }
        }
        *self.core.0.system_view.write().expect("system view lock") = Arc::new(state);
    }
}

impl Actor for SystemActor {
    type Context = Context<Self>;
}

impl Handler<ExecuteSystem> for SystemActor {
    type Result = ResponseFuture<Result<Option<Position>, CoreError>>;

    fn handle(&mut self, msg: ExecuteSystem, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if self.pipe.has_failed() {
            let _ = tx.send(Err(CoreError::Storage("event log failed earlier".into())));
            return Box::pin(async move { rx.await.unwrap_or(Err(CoreError::Unavailable)) });
        }
        let now = self.core.now();
        match self.pipe.projected().decide(&(), &msg.cmd, now) {
            Err(rejection) => {
                let _ = tx.send(Err(rejection.into()));
            }
            Ok(events) => {
                let meta = msg.origin.into_meta(now);
                let records = events.iter().map(|e| record(&StreamId::System, &meta, Event::System(e.clone()))).collect();
                match self.pipe.submit(&*self.core.0.log, events, records, Vec::new(), tx) {
                    Some((ticket, commit)) => {
                        ctx.spawn(commit.into_actor(self).map(move |res, act, _| {
                            act.pipe.complete(ticket, res);
                            act.finish();
                        }));
                    }
                    None => self.finish(),
                }
            }
        }
        Box::pin(async move { rx.await.unwrap_or(Err(CoreError::Unavailable)) })
    }
}

impl Handler<GetSystem> for SystemActor {
    type Result = Result<SystemState, CoreError>;

    fn handle(&mut self, _: GetSystem, _: &mut Context<Self>) -> Self::Result {
        Ok(self.pipe.committed().clone())
    }
}
