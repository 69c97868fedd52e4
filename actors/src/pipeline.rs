//! The one path every mutation takes: decide → append → wait for durability → apply → reply.
//!
//! An actor may have several appends in flight (so one busy channel still fills a commit group),
//! but replies and state changes happen strictly in submission order and only after the log said the
//! append is durable. Commands are decided against `projected` (committed state plus everything in
//! flight); reads are answered from `committed`, so nothing is visible before it is durable.

use std::collections::VecDeque;

use rookery_events::{Aggregate, ChannelEvent, EnvelopeBody, Meta, Position, StreamId};
use rookery_storage::{Commit, Committed, EventLog, NewRecord, Rewrite, StorageError};

/// Builds the log record for one event.
pub(crate) fn record(stream: &StreamId, meta: &Meta, event: rookery_events::Event) -> NewRecord {
    let mut body = EnvelopeBody { stream: stream.clone(), meta: meta.clone(), event };
    let (digest, encoded) = body.digest_and_encode();
    NewRecord { stream: body.stream.key(), digest, body: encoded, seq: indexed_seq(&body) }
}

/// The seq a record is indexed by: a stored message's message_seq.
fn indexed_seq(body: &EnvelopeBody) -> Option<u64> {
    match &body.event {
        rookery_events::Event::Channel(ChannelEvent::MessageAppended(m)) => Some(m.message_seq.0),
        rookery_events::Event::Channel(ChannelEvent::MessageEvent(e)) => Some(e.event_seq),
        _ => None,
    }
}

/// The log record of an envelope body with the index entry its event gets: a stored message is
/// indexed by its message_seq (which is also how a channel finds the retries it must recognise,
/// `recent.rs`). Live appends and imports both come through here, so an imported log is indexed
/// exactly like the original.
pub fn record_of(body: &EnvelopeBody) -> NewRecord {
    NewRecord { stream: body.stream.key(), digest: body.digest(), body: body.encode(), seq: indexed_seq(body) }
}

/// What the drain hands back for each finished slot.
pub(crate) type Finished<P> = (P, Result<Option<Committed>, String>);

struct Slot<A: Aggregate, P> {
    ticket: u64,
    events: Vec<A::Event>,
    plan: P,
    result: Option<Result<Option<Committed>, String>>,
}

/// Ordered persist-then-apply queue for one aggregate instance. `P` is the actor's reply plan.
pub(crate) struct Pipeline<A: Aggregate, P> {
    committed: A,
    projected: A,
    queue: VecDeque<Slot<A, P>>,
    /// Events committed since the pipeline last ran empty, with their positions: what `projected`
    /// applied at a placeholder position and `realign` fixes. Kept only for aggregates that use them,
    /// and at most `SETTLED_MAX`; `settled_overflow` says more were dropped.
    settled: Vec<(Position, A::Event)>,
    settled_overflow: bool,
    next_ticket: u64,
    failed: bool,
}

impl<A: Aggregate, P> Pipeline<A, P> {
    pub(crate) fn new(state: A) -> Self {
        Pipeline {
            projected: state.clone(),
            committed: state,
            queue: VecDeque::new(),
            settled: Vec::new(),
            settled_overflow: false,
            next_ticket: 0,
            failed: false,
        }
    }

    /// The durable state: what reads see.
    pub(crate) fn committed(&self) -> &A {
        &self.committed
    }

    /// Durable state plus everything in flight: what commands are decided against.
    pub(crate) fn projected(&self) -> &A {
        &self.projected
    }

    /// Applies an event that another actor made durable in this aggregate's stream.
    pub(crate) fn apply_foreign(&mut self, position: Position, event: &A::Event) {
        self.committed.apply(position, event);
        self.projected.apply(position, event);
    }

    /// Nothing in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// The log refused an append; the actor must stop and be rebuilt from the log.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed
    }

    /// Queues decided events. The first `events.len()` records must be those events (in order); more
    /// records may follow (events for other streams written atomically with them), and `rewrites` of
    /// stored records (payload erasure) are written in the same atomic append.
    /// Returns the ticket and commit to await, or `None` when there is nothing to write (the slot then
    /// completes as soon as everything before it has).
    pub(crate) fn submit(
        &mut self,
        log: &dyn EventLog,
        events: Vec<A::Event>,
        records: Vec<NewRecord>,
        rewrites: Vec<Rewrite>,
        plan: P,
    ) -> Option<(u64, Commit)> {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if self.failed {
            self.queue.push_back(Slot { ticket, events: Vec::new(), plan, result: Some(Err("event log failed earlier".into())) });
            return None;
        }
        if records.is_empty() {
            self.queue.push_back(Slot { ticket, events: Vec::new(), plan, result: Some(Ok(None)) });
            return None;
        }
        debug_assert!(records.len() >= events.len());
        for e in &events {
            self.projected.apply(Position::ZERO, e);
        }
        let commit = if rewrites.is_empty() { log.submit(records) } else { log.submit_with_rewrites(records, rewrites) };
        self.queue.push_back(Slot { ticket, events, plan, result: None });
        Some((ticket, commit))
    }

    /// Records the outcome of an append.
    pub(crate) fn complete(&mut self, ticket: u64, result: Result<Committed, StorageError>) {
        if let Some(slot) = self.queue.iter_mut().find(|s| s.ticket == ticket) {
            slot.result = Some(result.map(Some).map_err(|e| e.to_string()));
        }
    }

    /// Applies and hands back, in order, every slot whose append (and all before it) has finished.
    /// After a failed append, every remaining slot fails too: later appends were decided on state that
    /// never became durable.
    pub(crate) fn drain(&mut self) -> Vec<Finished<P>> {
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|s| s.result.is_some() || self.failed) {
            let Some(slot) = self.queue.pop_front() else { break };
            let result = if self.failed { Err("event log failed earlier".to_string()) } else { slot.result.unwrap_or(Ok(None)) };
            match &result {
                Ok(Some(c)) => {
                    for (i, e) in slot.events.into_iter().enumerate() {
                        let position = Position(c.first.0 + i as u64);
                        self.committed.apply(position, &e);
                        if A::REALIGN_USES_EVENTS {
                            if self.settled.len() < rookery_events::SETTLED_MAX {
                                self.settled.push((position, e));
                            } else {
                                self.settled_overflow = true;
                            }
                        }
                    }
                }
                Ok(None) => {}
                Err(_) => {
                    self.failed = true;
                    self.projected = self.committed.clone();
                    self.settled.clear();
                    self.settled_overflow = false;
                }
            }
            out.push((slot.plan, result));
        }
        if self.queue.is_empty() && !self.failed {
            // Positions in `projected` were placeholders; realign with the durable state.
            if self.settled_overflow {
                self.projected = self.committed.clone();
            } else {
                self.projected.realign(&self.committed, &self.settled);
            }
            self.settled.clear();
            self.settled_overflow = false;
        }
        out
    }
}
