//! `ChannelActor`: owns one channel — its settings, lists, subscribers and message sequence — and is
//! the only writer of that channel's streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rookery_events::{
    Aggregate, ChannelCommand, ChannelEvent, ChannelKey, ChannelState, ChannelType, ClientMsgNo, EnvelopeBody, Event, EventDecision, Message as StoredMessage,
    MessageEventRecord, MessageId, MessageSeq, MessageStream, Position, StreamId, Uid, UserEvent,
};
use rookery_storage::Committed;
use tokio::sync::oneshot;

use crate::error::CoreError;
use crate::messages::*;
use crate::pipeline::{record, Pipeline};
use crate::recent::{key_hash, message_of, Kind, RecentSends, Sent};
use crate::recovery;
use crate::registry::Core;

/// How often an actor checks whether it has been idle long enough to passivate.
const IDLE_CHECK: Duration = Duration::from_secs(5);

type Reply<T> = oneshot::Sender<Result<T, CoreError>>;

pub(crate) enum Plan {
    Ack {
        reply: Reply<ChannelReply>,
        foreign: Vec<(Uid, UserEvent)>,
        own: usize,
    },
    /// A send; `dedupe` when a retry of it is to be recognised.
    Sent {
        reply: Reply<ChannelReply>,
        message_id: MessageId,
        message_seq: MessageSeq,
        recipients: Arc<[Uid]>,
        dedupe: Option<Dedupe>,
        foreign: Vec<(Uid, UserEvent)>,
        own: usize,
        /// When it was decided: the stored message's time.
        at: rookery_events::Timestamp,
    },
    /// A retry that arrived while its original was in flight: answered from the committed original.
    Duplicate {
        reply: Reply<ChannelReply>,
        key: (Uid, ClientMsgNo),
    },
    /// An event of a stream message (`own`: records in the channel's own stream, 0 or 1).
    Event {
        reply: Reply<MessageEventReply>,
        answer: MessageEventReply,
        own: usize,
    },
}

/// Most message streams an actor keeps folded; beyond it, the ended ones are dropped when nothing is
/// in flight.
const MAX_CACHED_STREAMS: usize = 256;

/// The event stored in a message-events record.
fn event_of(record: &rookery_storage::StoredRecord) -> Result<Box<MessageEventRecord>, CoreError> {
    match EnvelopeBody::decode(&record.body) {
        Ok(EnvelopeBody { event: Event::Channel(ChannelEvent::MessageEvent(e)), .. }) => Ok(e),
        Ok(_) => Err(CoreError::Storage(format!("record {} in a message's event stream is not a message event", record.position))),
        Err(e) => Err(CoreError::Storage(format!("record {}: {e}", record.position))),
    }
}

/// What a send that may be retried carries from decision to commit.
pub(crate) struct Dedupe {
    /// Sender and client_msg_no.
    key: (Uid, ClientMsgNo),
    /// Its hash in the idempotency window.
    hash: u64,
    kind: Kind,
}

/// The actor serving one channel.
pub struct ChannelActor {
    key: ChannelKey,
    core: Core,
    pipe: Pipeline<ChannelState, Plan>,
    recent: RecentSends,
    in_flight: HashMap<(Uid, ClientMsgNo), usize>,
    /// Who receives a message decided now, shared with every send answered until membership changes
    /// (`None`: to be built from the projected state).
    recipients: Option<Arc<[Uid]>>,
    /// The user whose own person channel this is (its id is the plain uid): the actor publishes the
    /// user's bans to the core for senders to read without asking it.
    owner: Option<Uid>,
    snapshot_at: Position,
    /// Events of this channel committed since its last snapshot: the next one is written when this
    /// reaches `snapshot_every`, so a restart replays at most that many of its events.
    unsnapshotted: u64,
    last_active: Instant,
    retired: bool,
    broken: Option<String>,
    /// The stream messages this actor has folded (projected: events in flight included).
    streams: HashMap<ClientMsgNo, MessageStream>,
}

impl ChannelActor {
    /// Builds the actor from its snapshot and the tail of its streams: the only constructor.
    pub(crate) fn recover(core: Core, key: ChannelKey) -> ChannelActor {
        let streams = [StreamId::Channel(key.clone()), StreamId::ChannelCommands(key.clone())];
        let (state, broken, snapshot_at, unsnapshotted) = match recovery::recover::<ChannelState>(&*core.0.log, &streams) {
            Ok((state, _, replayed)) => {
                let at = state.position;
                (state, None, at, replayed)
            }
            Err(e) => {
                tracing::error!(channel = %key, error = %e, "channel cannot be loaded");
                (ChannelState::default(), Some(e.to_string()), Position::ZERO, 0)
            }
        };
        let window = core.0.config.dedupe_window;
        let owner = (key.ty == ChannelType::PERSON && rookery_events::person_channel_parties(&key.id).is_none()).then(|| Uid::from(key.id.0.as_str()));
        ChannelActor {
            key,
            core,
            pipe: Pipeline::new(state),
            recent: RecentSends::new(window),
            in_flight: HashMap::new(),
            recipients: None,
            owner,
            snapshot_at,
            unsnapshotted,
            last_active: Instant::now(),
            retired: false,
            broken,
            streams: HashMap::new(),
        }
    }

    /// Before a read: refuses when the actor cannot answer, else counts it as activity.
    fn serve_read(&mut self) -> Result<(), CoreError> {
        if let Some(e) = self.unavailable() {
            return Err(e);
        }
        self.last_active = Instant::now();
        Ok(())
    }

    fn unavailable(&self) -> Option<CoreError> {
        if self.retired {
            Some(CoreError::Unavailable)
        } else {
            self.broken.as_ref().map(|e| CoreError::Storage(e.clone()))
        }
    }

    fn stream_of(&self, m: &StoredMessage) -> StreamId {
        self.stream_for(Kind::of(m.header.sync_once))
    }

    /// The stream holding this channel's messages of `kind`.
    fn stream_for(&self, kind: Kind) -> StreamId {
        match kind {
            Kind::Message => StreamId::Channel(self.key.clone()),
            Kind::Command => StreamId::ChannelCommands(self.key.clone()),
        }
    }

    /// Who receives a message decided now: both parties of a person channel, otherwise the
    /// subscribers of the projected state. Built once per membership, then shared.
    fn recipients(&mut self) -> Arc<[Uid]> {
        let (key, pipe) = (&self.key, &self.pipe);
        let built = self.recipients.get_or_insert_with(|| {
            let uids: Vec<Uid> = if key.ty == ChannelType::PERSON {
                match rookery_events::person_channel_parties(&key.id) {
                    Some((a, b)) if a == b => vec![a],
                    Some((a, b)) => vec![a, b],
                    None => Vec::new(),
                }
            } else {
                pipe.projected().subscribers.iter().cloned().collect()
            };
            uids.into()
        });
        built.clone()
    }

    /// Whether the owner of this (own person) channel may not send.
    fn send_banned(&self) -> bool {
        let info = &self.pipe.committed().info;
        info.send_ban || info.ban
    }

    /// Users who get a command message in their write-spread queue.
    fn command_recipients(&mut self) -> Vec<Uid> {
        let system = self.core.system_view();
        self.recipients().iter().filter(|u| !system.is_system(u)).cloned().collect()
    }

    /// Conversation rows that follow from channel events: joining and leaving subscribers, and both
    /// parties of a person channel at its first message.
    fn membership_effects(&self, events: &[ChannelEvent]) -> Vec<(Uid, UserEvent)> {
        let mut out = Vec::new();
        if !ChannelState::has_conversations(self.key.ty) {
            return out;
        }
        let state = self.pipe.projected();
        let at = state.mark();
        let joined = |uid: &Uid| (uid.clone(), UserEvent::ConversationJoined { channel: self.key.clone(), at });
        let left = |uid: &Uid| (uid.clone(), UserEvent::ConversationLeft { channel: self.key.clone() });
        for e in events {
            match e {
                ChannelEvent::SubscribersAdded { uids } => out.extend(uids.iter().map(joined)),
                ChannelEvent::SubscribersRemoved { uids } => out.extend(uids.iter().map(left)),
                ChannelEvent::SubscribersReset { uids } => {
                    let new: std::collections::BTreeSet<&Uid> = uids.iter().collect();
                    out.extend(state.subscribers.iter().filter(|u| !new.contains(u)).map(left));
                    out.extend(uids.iter().filter(|u| !state.subscribers.contains(*u)).map(joined));
                }
                ChannelEvent::Deleted => out.extend(state.subscribers.iter().map(left)),
                ChannelEvent::MessageAppended(m) if self.key.ty == ChannelType::PERSON && !m.header.sync_once && m.message_seq == MessageSeq(1) => {
                    if let Some((a, b)) = rookery_events::person_channel_parties(&self.key.id) {
                        let start = rookery_events::ChannelMark::default();
                        out.push((a.clone(), UserEvent::ConversationJoined { channel: self.key.clone(), at: start }));
                        if b != a {
                            out.push((b, UserEvent::ConversationJoined { channel: self.key.clone(), at: start }));
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The committed original of a retried send (`key`, whose window hash is `hash`), from the
    /// channel's idempotency window (`recent.rs`), loaded from the log the first time it is needed.
    fn find_original(&mut self, key: &(Uid, ClientMsgNo), hash: u64) -> Result<Option<(MessageId, MessageSeq)>, CoreError> {
        if !self.recent.is_loaded() {
            let streams = [self.stream_for(Kind::Message).key(), self.stream_for(Kind::Command).key()];
            let state = self.pipe.committed();
            let last = [state.last_message_seq, state.last_command_seq];
            self.recent.load(&*self.core.0.log, [&streams[0], &streams[1]], last).map_err(CoreError::Storage)?;
        }
        let Some(sent) = self.recent.get(hash) else {
            return Ok(None);
        };
        // Confirm the hash against the stored message: a collision must not swallow a new message.
        let seq = sent.message_seq.0;
        let hits = self.core.0.log.read_seq_range(&self.stream_for(sent.kind).key(), seq, seq, 1, false).map_err(recovery::storage)?;
        let Some((_, record)) = hits.into_iter().next() else {
            return Err(CoreError::Storage(format!("message {seq} of {} is remembered but not in the log", self.key)));
        };
        let m = message_of(&record).map_err(CoreError::Storage)?;
        Ok((m.from_uid == key.0 && m.client_msg_no == key.1).then_some((m.message_id, m.message_seq)))
    }

    /// The fold of stream message `no`'s events: the open stream message of that client_msg_no, or the
    /// ended one its event stream holds. `None` when the channel has no stream message by that number.
    /// Includes the events in flight.
    fn message_stream(&mut self, no: &ClientMsgNo) -> Result<Option<&mut MessageStream>, CoreError> {
        if !self.streams.contains_key(no) {
            // Nothing of it can be in flight: whatever was decided for it is in the cache until idle.
            let Some(folded) = self.fold_stream(no)? else { return Ok(None) };
            self.streams.insert(no.clone(), folded);
        }
        Ok(self.streams.get_mut(no))
    }

    /// Folds the durable events of stream message `no` from the log.
    fn fold_stream(&self, no: &ClientMsgNo) -> Result<Option<MessageStream>, CoreError> {
        let open = self.pipe.committed().open_streams.get(no).map(|(seq, id, from)| MessageStream::new(*seq, *id, no.clone(), from.clone()));
        let stream = StreamId::MessageEvents(self.key.clone(), no.clone()).key();
        let mut folded = open;
        let mut after = Position::ZERO;
        loop {
            let batch = self.core.0.log.read_stream(&stream, after, 1024).map_err(recovery::storage)?;
            let Some(last) = batch.last() else { break };
            after = last.position;
            for r in &batch {
                let e = event_of(r)?;
                folded.get_or_insert_with(|| MessageStream::new(e.message_seq, e.message_id, e.client_msg_no.clone(), e.from_uid.clone())).apply(&e);
            }
        }
        Ok(folded)
    }

    fn append_event(&mut self, msg: AppendMessageEvent, reply: Reply<MessageEventReply>, ctx: &mut Context<Self>) {
        let now = self.core.now();
        let no = msg.event.client_msg_no.clone();
        let recipients = self.recipients();
        match self.message_stream(&no) {
            Ok(Some(_)) => {}
            // An edit or revoke of a message with no events yet: its fold starts now.
            Ok(None) if msg.message.is_some() && rookery_events::event_kinds::is_message_change(&msg.event.event_type) => {
                let (seq, id, from) = msg.message.clone().expect("checked above");
                self.streams.insert(no.clone(), MessageStream::new(seq, id, no.clone(), from));
            }
            Ok(None) => {
                let _ = reply.send(Err(CoreError::Rejected(rookery_events::Rejection::NotFound(format!("stream message {}", no.0)))));
                return;
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        }
        let change = rookery_events::event_kinds::is_message_change(&msg.event.event_type);
        let open = self.pipe.projected().open_streams.contains_key(&no);
        let Some(stream) = self.streams.get_mut(&no) else { return };
        // Stream parts only for stream messages: a message with edits alone is not one.
        if !change && !open && !stream.ended {
            let _ = reply.send(Err(CoreError::Rejected(rookery_events::Rejection::NotFound(format!("stream message {}", no.0)))));
            return;
        }
        let (from_uid, message_id) = (stream.from_uid.clone(), stream.message_id);
        match stream.decide(&msg.event, now.0 as i64) {
            Err(r) => {
                let _ = reply.send(Err(r.into()));
            }
            // Answered after everything before it is durable, like any other reply.
            Ok(EventDecision::Answered { event_key, event_seq, status }) => {
                let answer = MessageEventReply { stored: None, event_key, event_seq, status, from_uid, message_id, recipients: Arc::from([]) };
                self.persist(Vec::new(), Vec::new(), Vec::new(), Plan::Event { reply, answer, own: 0 }, ctx);
            }
            Ok(EventDecision::Append(event)) => {
                stream.apply(&event);
                let status = stream.status_of(&event.event_key);
                let meta = msg.origin.into_meta(now);
                let mut events = Vec::new();
                let mut records = Vec::new();
                // An edit or a revoke changes what readers of the channel see: the channel records it too.
                let change = match event.event_type.as_str() {
                    rookery_events::event_kinds::EDIT => Some(ChannelEvent::MessageEdited { seq: event.message_seq, by: from_uid.clone(), at: now }),
                    rookery_events::event_kinds::REVOKE if !self.pipe.projected().revoked.contains_key(&event.message_seq) => {
                        Some(ChannelEvent::MessageRevoked { seq: event.message_seq, by: from_uid.clone(), at: now })
                    }
                    _ => None,
                };
                if let Some(change) = change {
                    records.push(record(&StreamId::Channel(self.key.clone()), &meta, Event::Channel(change.clone())));
                    events.push(change);
                }
                if event.ended.is_some() {
                    let ended = ChannelEvent::MessageStreamEnded { client_msg_no: no.clone() };
                    records.push(record(&StreamId::Channel(self.key.clone()), &meta, Event::Channel(ended.clone())));
                    events.push(ended);
                }
                let own = records.len();
                let event: Arc<MessageEventRecord> = Arc::from(event);
                records.push(record(
                    &StreamId::MessageEvents(self.key.clone(), no),
                    &meta,
                    Event::Channel(ChannelEvent::MessageEvent(Box::new((*event).clone()))),
                ));
                let answer = MessageEventReply {
                    event_key: event.event_key.clone(),
                    event_seq: event.event_seq,
                    stored: Some(event),
                    status,
                    from_uid,
                    message_id,
                    recipients,
                };
                self.persist(events, records, Vec::new(), Plan::Event { reply, answer, own }, ctx);
            }
        }
    }

    /// A stream send may not reuse the client_msg_no of an earlier stream message of the channel: its
    /// events are named by it.
    fn stream_number_taken(&mut self, no: &ClientMsgNo) -> Result<bool, CoreError> {
        if self.streams.contains_key(no) {
            return Ok(true);
        }
        let stream = StreamId::MessageEvents(self.key.clone(), no.clone()).key();
        Ok(!self.core.0.log.read_stream(&stream, Position::ZERO, 1).map_err(recovery::storage)?.is_empty())
    }

    fn execute(&mut self, msg: ExecuteChannel, reply: Reply<ChannelReply>, ctx: &mut Context<Self>) {
        let now = self.core.now();
        let mut cmd = msg.cmd;
        let mut dedupe = None;
        if let ChannelCommand::Send(m) = &cmd {
            if m.setting & rookery_events::STREAM_SETTING != 0
                && !m.client_msg_no.0.is_empty()
                && !self.pipe.projected().open_streams.contains_key(&m.client_msg_no)
            {
                match self.stream_number_taken(&m.client_msg_no) {
                    Ok(false) => {}
                    Ok(true) => {
                        let _ = reply.send(Err(CoreError::Rejected(rookery_events::Rejection::Exists(format!("stream message {}", m.client_msg_no.0)))));
                        return;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
            }
        }
        if let ChannelCommand::Send(m) = &mut cmd {
            m.message_id = self.core.0.ids.next(now);
            if !m.client_msg_no.0.is_empty() && !m.header.no_persist {
                let key = (m.from_uid.clone(), m.client_msg_no.clone());
                if self.in_flight.contains_key(&key) {
                    self.persist(Vec::new(), Vec::new(), Vec::new(), Plan::Duplicate { reply, key }, ctx);
                    return;
                }
                let hash = key_hash(&key.0, &key.1);
                match self.find_original(&key, hash) {
                    Ok(Some((message_id, message_seq))) => {
                        let _ = reply.send(Ok(ChannelReply::Sent(SentMessage {
                            message_id,
                            message_seq,
                            duplicate: true,
                            recipients: Arc::from([]),
                            stored_at: None,
                        })));
                        return;
                    }
                    Ok(None) => dedupe = Some(Dedupe { key, hash, kind: Kind::of(m.header.sync_once) }),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
            }
        }
        let events = match self.pipe.projected().decide(&self.key, &cmd, now) {
            Ok(events) => events,
            Err(rejection) => {
                let _ = reply.send(Err(rejection.into()));
                return;
            }
        };
        if events.iter().any(|e| !matches!(e, ChannelEvent::MessageAppended(_))) {
            // Membership may change with these: the next send builds the list anew.
            self.recipients = None;
        }
        let meta = msg.origin.into_meta(now);
        let mut records = Vec::with_capacity(events.len());
        let mut foreign = self.membership_effects(&events);
        let mut sent = None;
        for e in &events {
            match e {
                ChannelEvent::MessageAppended(m) => {
                    records.push(record(&self.stream_of(m), &meta, Event::Channel(e.clone())));
                    if m.header.sync_once {
                        for uid in self.command_recipients() {
                            foreign.push((uid, UserEvent::CommandQueued { channel: self.key.clone(), message_seq: m.message_seq, message_id: m.message_id }));
                        }
                    }
                    sent = Some((m.message_id, m.message_seq));
                }
                _ => records.push(record(&StreamId::Channel(self.key.clone()), &meta, Event::Channel(e.clone()))),
            }
        }
        let own = records.len();
        for (uid, e) in &foreign {
            records.push(record(&StreamId::User(uid.clone()), &meta, Event::User(e.clone())));
        }
        let plan = match (&cmd, sent) {
            (ChannelCommand::Send(_), Some((message_id, message_seq))) => {
                if let Some(d) = &dedupe {
                    *self.in_flight.entry(d.key.clone()).or_default() += 1;
                }
                Plan::Sent { reply, message_id, message_seq, recipients: self.recipients(), dedupe, foreign, own, at: now }
            }
            // no_persist: checked, not stored; seq 0.
            (ChannelCommand::Send(m), None) => {
                Plan::Sent { reply, message_id: m.message_id, message_seq: MessageSeq(0), recipients: self.recipients(), dedupe: None, foreign, own, at: now }
            }
            _ => Plan::Ack { reply, foreign, own },
        };
        let rewrites = if matches!(cmd, ChannelCommand::ErasePayloads { .. }) { msg.rewrites } else { Vec::new() };
        self.persist(events, records, rewrites, plan, ctx);
    }

    fn persist(
        &mut self,
        events: Vec<ChannelEvent>,
        records: Vec<rookery_storage::NewRecord>,
        rewrites: Vec<rookery_storage::Rewrite>,
        plan: Plan,
        ctx: &mut Context<Self>,
    ) {
        match self.pipe.submit(&*self.core.0.log, events, records, rewrites, plan) {
            Some((ticket, commit)) => {
                ctx.spawn(commit.into_actor(self).map(move |res, act, ctx| {
                    act.pipe.complete(ticket, res);
                    act.finish(ctx);
                }));
            }
            None => self.finish(ctx),
        }
    }

    /// Publishes the owner's bans as committed now (before any reply that follows from a change).
    fn publish_bans(&self) {
        if let (Some(uid), None) = (&self.owner, &self.broken) {
            self.core.publish_send_ban(uid, self.send_banned());
        }
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        let finished = self.pipe.drain();
        self.publish_bans();
        for (plan, result) in finished {
            match plan {
                Plan::Ack { reply, foreign, own } => {
                    if let Ok(Some(c)) = &result {
                        self.unsnapshotted += own as u64;
                        self.notify_users(*c, own, foreign);
                    }
                    let _ = reply.send(result.map(|c| ChannelReply::Done { position: c.map(|c| c.last) }).map_err(CoreError::Storage));
                }
                Plan::Sent { reply, message_id, message_seq, recipients, dedupe, foreign, own, at } => {
                    if let Some(d) = &dedupe {
                        if let Some(n) = self.in_flight.get_mut(&d.key) {
                            *n -= 1;
                            if *n == 0 {
                                self.in_flight.remove(&d.key);
                            }
                        }
                    }
                    match result {
                        Ok(committed) => {
                            if let Some(d) = dedupe {
                                self.recent.remember(d.hash, Sent { kind: d.kind, message_seq, message_id });
                            }
                            if let Some(c) = committed {
                                self.unsnapshotted += own as u64;
                                self.notify_users(c, own, foreign);
                            }
                            let stored_at = committed.map(|c| (c.first, at));
                            let _ = reply.send(Ok(ChannelReply::Sent(SentMessage { message_id, message_seq, duplicate: false, recipients, stored_at })));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(CoreError::Storage(e)));
                        }
                    }
                }
                Plan::Event { reply, answer, own } => {
                    if let Ok(Some(c)) = &result {
                        self.unsnapshotted += own as u64;
                        let _ = c;
                    }
                    let _ = reply.send(result.map(|_| answer).map_err(CoreError::Storage));
                }
                Plan::Duplicate { reply, key } => {
                    let answer = match result.map_err(CoreError::Storage).and_then(|_| self.find_original(&key, key_hash(&key.0, &key.1))) {
                        Ok(Some((message_id, message_seq))) => {
                            Ok(ChannelReply::Sent(SentMessage { message_id, message_seq, duplicate: true, recipients: Arc::from([]), stored_at: None }))
                        }
                        // The original failed: the retry must be sent again by the client.
                        Ok(None) => Err(CoreError::Unavailable),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                }
            }
        }
        if self.pipe.has_failed() {
            tracing::error!(channel = %self.key, "event log append failed; channel actor stops and will be rebuilt from the log");
            self.retire(ctx, false);
            return;
        }
        if self.unsnapshotted >= self.core.0.config.snapshot_every {
            self.snapshot();
        }
        if self.streams.len() > MAX_CACHED_STREAMS && self.pipe.is_idle() {
            self.streams.retain(|_, s| !s.ended);
        }
    }

    /// Tells live user actors about write-spread entries that are now durable.
    fn notify_users(&self, c: Committed, own: usize, foreign: Vec<(Uid, UserEvent)>) {
        for (i, (uid, event)) in foreign.into_iter().enumerate() {
            if let Some(addr) = self.core.0.users.get(&uid) {
                addr.do_send(ForeignCommitted { events: vec![(Position(c.first.0 + (own + i) as u64), event)] });
            }
        }
    }

    fn snapshot(&mut self) {
        let state = self.pipe.committed();
        if state.position <= self.snapshot_at {
            return;
        }
        match recovery::save(&*self.core.0.log, &StreamId::Channel(self.key.clone()), state, state.position) {
            Ok(()) => {
                self.snapshot_at = state.position;
                self.unsnapshotted = 0;
            }
            Err(e) => tracing::warn!(channel = %self.key, error = %e, "snapshot not written"),
        }
    }

    fn retire(&mut self, ctx: &mut Context<Self>, snapshot: bool) {
        if snapshot {
            self.snapshot();
        }
        self.retired = true;
        if let Some(uid) = &self.owner {
            self.core.forget_send_ban(uid);
        }
        self.core.0.channels.remove_if(&self.key, &ctx.address());
        ctx.stop();
    }
}

impl Actor for ChannelActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.publish_bans();
        let idle = self.core.0.config.idle_timeout;
        ctx.run_interval(IDLE_CHECK.min(idle), move |act, ctx| {
            let stale = act.last_active.elapsed() >= idle;
            if (stale || act.broken.is_some()) && act.pipe.is_idle() && !act.retired {
                act.retire(ctx, act.broken.is_none());
            }
        });
    }
}

impl Handler<ExecuteChannel> for ChannelActor {
    type Result = ResponseFuture<Result<ChannelReply, CoreError>>;

    fn handle(&mut self, msg: ExecuteChannel, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(e) = self.unavailable() {
            return Box::pin(async move { Err(e) });
        }
        self.last_active = Instant::now();
        let (tx, rx) = oneshot::channel();
        self.execute(msg, tx, ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(CoreError::Unavailable)) })
    }
}

impl Handler<AppendMessageEvent> for ChannelActor {
    type Result = ResponseFuture<Result<MessageEventReply, CoreError>>;

    fn handle(&mut self, msg: AppendMessageEvent, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(e) = self.unavailable() {
            return Box::pin(async move { Err(e) });
        }
        self.last_active = Instant::now();
        let (tx, rx) = oneshot::channel();
        self.append_event(msg, tx, ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(CoreError::Unavailable)) })
    }
}

impl Handler<GetEdited> for ChannelActor {
    type Result = Result<Vec<(MessageSeq, rookery_events::Timestamp)>, CoreError>;

    fn handle(&mut self, msg: GetEdited, _: &mut Context<Self>) -> Self::Result {
        self.serve_read()?;
        if msg.from > msg.to {
            return Ok(Vec::new());
        }
        Ok(self.pipe.committed().edited.range(MessageSeq(msg.from)..=MessageSeq(msg.to)).map(|(s, t)| (*s, *t)).collect())
    }
}

impl Handler<GetMessageStream> for ChannelActor {
    type Result = Result<Option<MessageStream>, CoreError>;

    fn handle(&mut self, msg: GetMessageStream, _: &mut Context<Self>) -> Self::Result {
        self.serve_read()?;
        // Readers see durable events only: the cache is the committed fold only when nothing is in flight.
        match self.streams.get(&msg.client_msg_no) {
            Some(s) if self.pipe.is_idle() => Ok(Some(s.clone())),
            _ => self.fold_stream(&msg.client_msg_no),
        }
    }
}

impl Handler<GetChannel> for ChannelActor {
    type Result = Result<ChannelState, CoreError>;

    fn handle(&mut self, _: GetChannel, _: &mut Context<Self>) -> Self::Result {
        self.serve_read()?;
        Ok(self.pipe.committed().clone())
    }
}

impl Handler<GetChannelView> for ChannelActor {
    type Result = Result<ChannelView, CoreError>;

    fn handle(&mut self, msg: GetChannelView, _: &mut Context<Self>) -> Self::Result {
        self.serve_read()?;
        let state = self.pipe.committed();
        Ok(ChannelView { exists: state.exists, mark: state.mark(), own_last_sent: state.last_sent.get(&msg.uid).copied(), has_edits: !state.edited.is_empty() })
    }
}

impl Handler<GetPersonPolicy> for ChannelActor {
    type Result = Result<PersonPolicy, CoreError>;

    fn handle(&mut self, msg: GetPersonPolicy, _: &mut Context<Self>) -> Self::Result {
        self.serve_read()?;
        self.publish_bans();
        let state = self.pipe.committed();
        Ok(PersonPolicy { send_banned: self.send_banned(), blocks_sender: state.blacklist.contains(&msg.sender) })
    }
}

impl Handler<GetRecipients> for ChannelActor {
    type Result = Result<Arc<[Uid]>, CoreError>;

    fn handle(&mut self, _: GetRecipients, _: &mut Context<Self>) -> Self::Result {
        self.serve_read()?;
        Ok(self.recipients())
    }
}

impl Handler<GetRevoked> for ChannelActor {
    type Result = Result<Vec<(MessageSeq, Uid)>, CoreError>;

    fn handle(&mut self, msg: GetRevoked, _: &mut Context<Self>) -> Self::Result {
        self.serve_read()?;
        let state = self.pipe.committed();
        if msg.from > msg.to {
            return Ok(Vec::new());
        }
        // Messages deleted for everyone are, to readers, retracted ones too: no content.
        let range = MessageSeq(msg.from)..=MessageSeq(msg.to);
        let mut out: Vec<(MessageSeq, Uid)> =
            state.revoked.range(range.clone()).chain(state.deleted_messages.range(range)).map(|(s, u)| (*s, u.clone())).collect();
        out.sort_unstable_by_key(|(s, _)| *s);
        out.dedup_by_key(|(s, _)| *s);
        Ok(out)
    }
}
