//! Audit queries: which events match a filter, one page at a time, over any [`EventLog`].
//!
//! Both `GET /audit/events` and `rookery audit` parse their parameters into a [`RawQuery`], check it
//! with [`RawQuery::parse`] and answer with [`run`] and [`page_json`], so the two cannot drift apart.
//!
//! Where the events come from:
//! * **channel**: the stream index of the channel (messages and settings) and of its command stream;
//!   cost O(events of that channel in the range).
//! * **uid**: the stream index of the user's stream, plus the user's own sends over WKProto, which
//!   are stored in channel streams. A client can only connect with a token registered through
//!   `/user/token`, so those sends all lie after the user's first `user.token_set` event: the log is
//!   scanned from there only, and a user who never had a token costs only the index read.
//! * otherwise (actor, kind, time or position filters alone): a scan of the position range.
//!
//! Every page examines at most [`MAX_EXAMINED`] records; `next_cursor` says where the next page
//! starts, also when a page stopped early with fewer than `limit` events.

use std::collections::VecDeque;

use base64::Engine as _;
use rookery_events::{
    sha256, Actor, ChannelEvent, ChannelKey, ChannelType, Envelope, EnvelopeBody, Event, Position, Profile, StreamId, SystemEvent, TenantEvent, Timestamp, Uid,
    UserEvent,
};
use rookery_storage::{EventLog, StoredRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::timefmt::{format_time, parse_time};

/// Events per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 1000;
/// Records one page reads at most, matching or not; past that it returns what it found with a
/// cursor to continue from.
pub const MAX_EXAMINED: u64 = 100_000;
/// Records read from the log at a time.
const BATCH: usize = 256;

/// Every event kind, as `kind` accepts and results show them.
pub const KINDS: &[&str] = &[
    "channel.created",
    "channel.info_updated",
    "channel.deleted",
    "channel.subscribers_added",
    "channel.subscribers_removed",
    "channel.subscribers_reset",
    "channel.blacklist_added",
    "channel.blacklist_removed",
    "channel.blacklist_set",
    "channel.whitelist_added",
    "channel.whitelist_removed",
    "channel.whitelist_set",
    "channel.message_appended",
    "channel.payloads_erased",
    "user.token_set",
    "user.device_quit",
    "user.command_queued",
    "user.sync_acked",
    "user.unread_set",
    "user.conversation_deleted",
    "user.conversation_joined",
    "user.conversation_left",
    "system.uids_added",
    "system.uids_removed",
    "tenant.users_registered",
    "tenant.profile_updated",
    "tenant.password_changed",
    "tenant.users_unregistered",
    "channel.group_created",
    "channel.group_profile_updated",
    "channel.owner_transferred",
    "channel.members_muted",
    "tenant.group_opened",
    "tenant.group_closed",
    "channel.message_revoked",
    "tenant.friends_added",
    "tenant.friends_removed",
    "tenant.friend_notes_set",
    "tenant.sensitive_words_added",
    "tenant.sensitive_word_renamed",
    "tenant.sensitive_word_removed",
    "tenant.sensitive_filter_switched",
    "tenant.sdk_registration_switched",
    "tenant.no_disturb_changed",
    "tenant.groups_shielded",
    "channel.room_members_added",
    "tenant.room_opened",
    "tenant.room_closed",
    "tenant.media_stored",
    "user.platform_token_issued",
    "channel.group_notice_set",
    "tenant.friend_requested",
    "tenant.friend_request_answered",
    "tenant.reply_saved",
    "tenant.reply_removed",
    "channel.managers_changed",
    "channel.mute_all_set",
    "channel.message_deleted",
    "channel.message_event",
    "channel.message_stream_ended",
    "channel.message_edited",
    "user.messages_hidden",
    "user.conversation_settings_changed",
];

/// Query parameters as given, all text, so that every malformed value gets our own message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    /// Stored channel id (person chats: the internal `big@small` id); needs `channel_type`.
    pub channel_id: Option<String>,
    /// Channel type (1 to 12); needs `channel_id`.
    pub channel_type: Option<String>,
    /// A user: events of its stream and events it caused as a client.
    pub uid: Option<String>,
    /// `NAME` (a credential name or a client uid), `api:NAME` or `client:UID`.
    pub actor: Option<String>,
    /// One of [`KINDS`].
    pub kind: Option<String>,
    /// Earliest `recorded_at`, inclusive: RFC 3339 or Unix milliseconds.
    pub since: Option<String>,
    /// Latest `recorded_at`, inclusive: RFC 3339 or Unix milliseconds.
    pub until: Option<String>,
    /// Lowest position, inclusive.
    pub from: Option<String>,
    /// Highest position, inclusive.
    pub to: Option<String>,
    /// Events per page, 1 to [`MAX_LIMIT`].
    pub limit: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    pub order: Option<String>,
    /// Where this page starts (inclusive): a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Whose events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorFilter {
    /// A credential with this name, or a client with this uid.
    Any(String),
    /// A credential with this name.
    Api(String),
    /// A client with this uid.
    Client(String),
}

impl ActorFilter {
    fn matches(&self, actor: &Actor) -> bool {
        match (self, actor) {
            (ActorFilter::Any(n) | ActorFilter::Api(n), Actor::Api { credential }) => credential == n,
            (ActorFilter::Any(n) | ActorFilter::Client(n), Actor::Client { uid, .. }) => uid.as_str() == n,
            // A backend acting for a user matches either: its credential or the user.
            (ActorFilter::Any(n) | ActorFilter::Api(n), Actor::Delegated { credential, .. }) if credential == n => true,
            (ActorFilter::Any(n) | ActorFilter::Client(n), Actor::Delegated { uid, .. }) => uid.as_str() == n,
            _ => false,
        }
    }
}

/// Newest or oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Highest position first.
    #[default]
    Desc,
    /// Lowest position first.
    Asc,
}

/// A checked query. Every filter given must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Only this channel's events (its messages, settings and command messages).
    pub channel: Option<ChannelKey>,
    /// Only events of this user's stream or caused by this user as a client.
    pub uid: Option<Uid>,
    /// Only events caused by this actor.
    pub actor: Option<ActorFilter>,
    /// Only events of this kind.
    pub kind: Option<&'static str>,
    /// `recorded_at` at or after this.
    pub since: Option<Timestamp>,
    /// `recorded_at` at or before this.
    pub until: Option<Timestamp>,
    /// Positions at or above this.
    pub from: Position,
    /// Positions at or below this.
    pub to: Position,
    /// Events per page.
    pub limit: usize,
    /// Direction.
    pub order: Order,
    /// Where this page starts (inclusive).
    pub cursor: Option<Position>,
    /// Records one page reads at most ([`MAX_EXAMINED`]).
    pub max_examined: u64,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            channel: None,
            uid: None,
            actor: None,
            kind: None,
            since: None,
            until: None,
            from: Position(1),
            to: Position(u64::MAX),
            limit: DEFAULT_LIMIT,
            order: Order::Desc,
            cursor: None,
            max_examined: MAX_EXAMINED,
        }
    }
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim)
}

fn number(name: &str, value: &str) -> Result<u64, String> {
    value.parse::<u64>().map_err(|_| format!("{name} must be a non-negative integer, got {value:?}"))
}

fn position(name: &str, value: &str) -> Result<Position, String> {
    match number(name, value)? {
        0 => Err(format!("{name} must be a log position (1 or more), got 0")),
        p => Ok(Position(p)),
    }
}

impl RawQuery {
    /// Checks every parameter.
    ///
    /// # Errors
    /// A sentence naming the first bad parameter.
    pub fn parse(&self) -> Result<Query, String> {
        let channel = match (given(&self.channel_id), given(&self.channel_type)) {
            (None, None) => None,
            (Some(id), Some(ty)) => {
                if id.is_empty() {
                    return Err("channel_id must not be empty".into());
                }
                let ty = ty.parse::<u8>().ok().map(ChannelType).filter(|t| t.is_known()).ok_or_else(|| format!("channel_type must be 1 to 12, got {ty:?}"))?;
                Some(ChannelKey::new(id, ty))
            }
            (Some(_), None) => return Err("channel_id needs channel_type".into()),
            (None, Some(_)) => return Err("channel_type needs channel_id".into()),
        };
        let mut q = Query { channel, ..Query::default() };
        if let Some(uid) = given(&self.uid) {
            if uid.is_empty() {
                return Err("uid must not be empty".into());
            }
            q.uid = Some(Uid::from(uid));
        }
        if let Some(actor) = given(&self.actor) {
            let filter = if let Some(name) = actor.strip_prefix("api:") {
                ActorFilter::Api(name.into())
            } else if let Some(uid) = actor.strip_prefix("client:") {
                ActorFilter::Client(uid.into())
            } else {
                ActorFilter::Any(actor.into())
            };
            if matches!(&filter, ActorFilter::Any(n) | ActorFilter::Api(n) | ActorFilter::Client(n) if n.is_empty()) {
                return Err("actor must name a credential or a uid (NAME, api:NAME or client:UID)".into());
            }
            q.actor = Some(filter);
        }
        if let Some(kind) = given(&self.kind) {
            q.kind = Some(KINDS.iter().copied().find(|k| *k == kind).ok_or_else(|| format!("unknown kind {kind:?}; kinds are {}", KINDS.join(", ")))?);
        }
        q.since = given(&self.since).map(|v| parse_time("since", v)).transpose()?;
        q.until = given(&self.until).map(|v| parse_time("until", v)).transpose()?;
        if let (Some(s), Some(u)) = (q.since, q.until) {
            if s > u {
                return Err("since must not be after until".into());
            }
        }
        if let Some(from) = given(&self.from) {
            q.from = position("from", from)?;
        }
        if let Some(to) = given(&self.to) {
            q.to = position("to", to)?;
        }
        if q.from > q.to {
            return Err(format!("from ({}) must not be above to ({})", q.from, q.to));
        }
        if let Some(limit) = given(&self.limit) {
            q.limit = match limit.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(format!("limit must be 1 to {MAX_LIMIT}, got {limit:?}")),
            };
        }
        q.order = match given(&self.order) {
            None | Some("desc") => Order::Desc,
            Some("asc") => Order::Asc,
            Some(other) => return Err(format!("order must be asc or desc, got {other:?}")),
        };
        q.cursor = given(&self.cursor).map(|c| position("cursor", c)).transpose()?;
        Ok(q)
    }
}

/// One page of matching events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Matching events in the query's order.
    pub events: Vec<Envelope>,
    /// Where the next page starts (pass as `cursor`), or `None` when the range is exhausted.
    pub next_cursor: Option<Position>,
    /// Records this page read, matching or not.
    pub examined: u64,
}

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The log could not be read.
    #[error("reading the event log: {0}")]
    Storage(#[from] rookery_storage::StorageError),
    /// A record did not decode (see `rookery verify`).
    #[error("record at position {0} does not decode: {1}")]
    Corrupt(Position, rookery_events::DecodeError),
}

/// The records of one stream (through its index) or of every position (a scan), within `lo..=hi`,
/// in the query's order, read in batches.
struct Source {
    /// The stream's key, or `None` for a scan.
    stream: Option<Vec<u8>>,
    lo: Position,
    hi: Position,
    order: Order,
    /// The next position to read from (inclusive, in the direction of `order`).
    next: Position,
    done: bool,
    buf: VecDeque<StoredRecord>,
}

impl Source {
    fn new(stream: Option<&StreamId>, lo: Position, hi: Position, order: Order) -> Source {
        let next = if order == Order::Asc { lo } else { hi };
        Source { stream: stream.map(StreamId::key), lo, hi, order, next, done: lo > hi, buf: VecDeque::new() }
    }

    /// The position of the next record, or `None` when the source is exhausted.
    fn peek(&mut self, log: &dyn EventLog) -> Result<Option<Position>, QueryError> {
        while self.buf.is_empty() && !self.done {
            self.fill(log)?;
        }
        Ok(self.buf.front().map(|r| r.position))
    }

    fn pop(&mut self) -> Option<StoredRecord> {
        self.buf.pop_front()
    }

    fn fill(&mut self, log: &dyn EventLog) -> Result<(), QueryError> {
        let batch = match (&self.stream, self.order) {
            (Some(key), Order::Asc) => log.read_stream(key, Position(self.next.0 - 1), BATCH)?,
            (Some(key), Order::Desc) => log.read_stream_back(key, Position(self.next.0.saturating_add(1)), BATCH)?,
            (None, Order::Asc) => log.read_range(self.next, BATCH.min((self.hi.0 - self.next.0).saturating_add(1) as usize))?,
            (None, Order::Desc) => {
                let first = self.next.0.saturating_sub(BATCH as u64 - 1).max(self.lo.0);
                let mut records = log.read_range(Position(first), (self.next.0 - first + 1) as usize)?;
                records.reverse();
                records
            }
        };
        match batch.last().map(|r| r.position) {
            None => self.done = true,
            Some(last) => match self.order {
                Order::Asc if last >= self.hi => self.done = true,
                Order::Asc => self.next = last.next(),
                Order::Desc if last <= self.lo => self.done = true,
                Order::Desc => self.next = Position(last.0 - 1),
            },
        }
        let (lo, hi) = (self.lo, self.hi);
        self.buf.extend(batch.into_iter().filter(|r| r.position >= lo && r.position <= hi));
        Ok(())
    }
}

/// Position of the user's first `user.token_set` event, read through the stream index.
fn first_token(log: &dyn EventLog, uid: &Uid) -> Result<Option<Position>, QueryError> {
    let key = StreamId::User(uid.clone()).key();
    let mut after = Position::ZERO;
    loop {
        let batch = log.read_stream(&key, after, BATCH)?;
        let Some(last) = batch.last() else { return Ok(None) };
        after = last.position;
        for r in &batch {
            let body = EnvelopeBody::decode(&r.body).map_err(|e| QueryError::Corrupt(r.position, e))?;
            if matches!(body.event, Event::User(UserEvent::TokenSet { .. })) {
                return Ok(Some(r.position));
            }
        }
    }
}

impl Query {
    fn matches(&self, body: &EnvelopeBody) -> bool {
        if let Some(k) = &self.channel {
            if !matches!(&body.stream, StreamId::Channel(c) | StreamId::ChannelCommands(c) if c == k) {
                return false;
            }
        }
        if let Some(uid) = &self.uid {
            let own_stream = matches!(&body.stream, StreamId::User(u) if u == uid);
            let as_client = matches!(&body.meta.actor, Actor::Client { uid: u, .. } if u == uid);
            let account = match (&body.event, rookery_events::tenant_uid_parts(uid)) {
                (Event::Tenant(e), Some((tag, n))) => matches!(&body.stream, StreamId::Tenant(t) if t == tag) && tenant_event_concerns(e, n),
                _ => false,
            };
            if !own_stream && !as_client && !account {
                return false;
            }
        }
        if self.actor.as_ref().is_some_and(|a| !a.matches(&body.meta.actor)) {
            return false;
        }
        if self.kind.is_some_and(|k| body.event.kind() != k) {
            return false;
        }
        if self.since.is_some_and(|s| body.meta.recorded_at < s) || self.until.is_some_and(|u| body.meta.recorded_at > u) {
            return false;
        }
        true
    }
}

/// Answers one page of `query`.
///
/// # Errors
/// [`QueryError`] when the log cannot be read or a record does not decode.
pub fn run(log: &dyn EventLog, query: &Query) -> Result<Page, QueryError> {
    let head = log.head().0;
    let mut lo = query.from;
    let mut hi = query.to.min(head);
    match (query.cursor, query.order) {
        (Some(c), Order::Asc) => lo = lo.max(c),
        (Some(c), Order::Desc) => hi = hi.min(c),
        (None, _) => {}
    }
    if lo > hi {
        return Ok(Page { events: Vec::new(), next_cursor: None, examined: 0 });
    }
    let mut sources = if let Some(k) = &query.channel {
        let own = Source::new(Some(&StreamId::Channel(k.clone())), lo, hi, query.order);
        vec![own, Source::new(Some(&StreamId::ChannelCommands(k.clone())), lo, hi, query.order)]
    } else if let Some(uid) = &query.uid {
        let mut sources = vec![Source::new(Some(&StreamId::User(uid.clone())), lo, hi, query.order)];
        // A tenant's user: the account's own changes are in the tenant's stream.
        if let Some((tag, _)) = rookery_events::tenant_uid_parts(uid) {
            sources.push(Source::new(Some(&StreamId::Tenant(tag.to_owned())), lo, hi, query.order));
        }
        // The user's own sends as a client are in channel streams, and only possible once it had a token.
        if let Some(token) = first_token(log, uid)? {
            sources.push(Source::new(None, lo.max(token.next()), hi, query.order));
        }
        sources
    } else {
        vec![Source::new(None, lo, hi, query.order)]
    };

    // Walk the sources together, one record per position.
    let mut page = Page { events: Vec::new(), next_cursor: None, examined: 0 };
    loop {
        let mut best: Option<Position> = None;
        for s in &mut sources {
            if let Some(p) = s.peek(log)? {
                let better = match query.order {
                    Order::Asc => best.is_none_or(|b| p < b),
                    Order::Desc => best.is_none_or(|b| p > b),
                };
                if better {
                    best = Some(p);
                }
            }
        }
        let Some(position) = best else { break };
        if page.events.len() >= query.limit || page.examined >= query.max_examined {
            page.next_cursor = Some(position);
            break;
        }
        let mut record = None;
        for s in &mut sources {
            if s.peek(log)? == Some(position) {
                record = s.pop();
            }
        }
        let record = record.expect("a source holds the position it peeked");
        page.examined += 1;
        let body = EnvelopeBody::decode(&record.body).map_err(|e| QueryError::Corrupt(record.position, e))?;
        if query.matches(&body) {
            page.events.push(Envelope { position: record.position, prev_hash: record.prev_hash, body });
        }
    }
    Ok(page)
}

fn channel_json(k: &ChannelKey) -> Value {
    json!({"channel_id": k.id.as_str(), "channel_type": k.ty.0})
}

fn stream_json(s: &StreamId) -> Value {
    match s {
        StreamId::Channel(k) => json!({"type": "channel", "channel_id": k.id.as_str(), "channel_type": k.ty.0}),
        StreamId::ChannelCommands(k) => json!({"type": "channel_commands", "channel_id": k.id.as_str(), "channel_type": k.ty.0}),
        StreamId::User(uid) => json!({"type": "user", "uid": uid.as_str()}),
        StreamId::System => json!({"type": "system"}),
        StreamId::Tenant(tag) => json!({"type": "tenant", "tag": tag}),
        StreamId::MessageEvents(k, no) => json!({"type": "message_events", "channel_id": k.id.as_str(), "channel_type": k.ty.0, "client_msg_no": no.0}),
    }
}

fn actor_json(a: &Actor) -> Value {
    match a {
        Actor::System => json!({"type": "system"}),
        Actor::Api { credential } => json!({"type": "api", "credential": credential}),
        Actor::Client { uid, device_flag } => json!({"type": "client", "uid": uid.as_str(), "device_flag": device_flag.0}),
        Actor::Delegated { credential, uid } => json!({"type": "delegated", "credential": credential, "uid": uid.as_str()}),
    }
}

fn uids_json(uids: &[Uid]) -> Value {
    json!({"uids": uids.iter().map(Uid::as_str).collect::<Vec<_>>()})
}

/// The event's own fields. Payloads appear as base64 with their SHA-256 (an erased payload as
/// `null` with the SHA-256 it had).
// Exhaustive on purpose: a new event kind must be rendered here and listed in KINDS.
pub fn event_json(e: &Event) -> Value {
    match e {
        Event::Channel(c) => match c {
            ChannelEvent::Created { info } | ChannelEvent::InfoUpdated { info } => json!({"info": {
                "ban": info.ban, "disband": info.disband, "send_ban": info.send_ban, "large": info.large, "allow_stranger": info.allow_stranger,
            }}),
            ChannelEvent::Deleted => json!({}),
            ChannelEvent::SubscribersAdded { uids }
            | ChannelEvent::SubscribersRemoved { uids }
            | ChannelEvent::SubscribersReset { uids }
            | ChannelEvent::BlacklistAdded { uids }
            | ChannelEvent::BlacklistRemoved { uids }
            | ChannelEvent::BlacklistSet { uids }
            | ChannelEvent::WhitelistAdded { uids }
            | ChannelEvent::WhitelistRemoved { uids }
            | ChannelEvent::WhitelistSet { uids } => uids_json(uids),
            ChannelEvent::MessageAppended(m) => {
                let (payload, payload_sha256) = match &m.payload {
                    rookery_events::Payload::Inline(bytes) => (Value::from(base64::engine::general_purpose::STANDARD.encode(bytes)), sha256(bytes).to_hex()),
                    rookery_events::Payload::Erased(hash) => (Value::Null, hash.to_hex()),
                };
                json!({
                    "channel_id": m.channel.id.as_str(), "channel_type": m.channel.ty.0,
                    "message_seq": m.message_seq.0, "message_id": m.message_id.0, "client_msg_no": m.client_msg_no.as_str(),
                    "from_uid": m.from_uid.as_str(),
                    "header": {"no_persist": m.header.no_persist, "red_dot": m.header.red_dot, "sync_once": m.header.sync_once},
                    "setting": m.setting, "stream_no": m.stream_no.as_ref().map(|s| s.as_str()), "expire": m.expire, "topic": m.topic,
                    "timestamp": m.timestamp.0, "red_dot_ordinal": m.red_dot_ordinal,
                    "payload": payload, "payload_sha256": payload_sha256, "payload_erased": !m.payload.is_inline(),
                })
            }
            ChannelEvent::PayloadsErased { from_uid, commands, first_seq, last_seq, erased, reason } => json!({
                "from_uid": from_uid.as_str(), "commands": commands, "first_seq": first_seq.0, "last_seq": last_seq.0,
                "erased": erased, "reason": reason,
            }),
            ChannelEvent::GroupCreated { profile } => group_json(profile),
            ChannelEvent::GroupProfileUpdated { patch, at } => json!({"patch": {"name": patch.name, "desc": patch.desc, "avatar": patch.avatar}, "at": at.0}),
            ChannelEvent::OwnerTransferred { from, to, at } => json!({"from": from.as_str(), "to": to.as_str(), "at": at.0}),
            ChannelEvent::MessageRevoked { seq, by, at } => json!({"message_seq": seq.0, "by": by.as_str(), "at": at.0}),
            ChannelEvent::RoomMembersAdded { uids, at } => json!({"uids": uids.iter().map(Uid::as_str).collect::<Vec<_>>(), "at": at.0}),
            ChannelEvent::GroupNoticeSet { notice, at } => json!({"notice": notice, "at": at.0}),
            ChannelEvent::ManagersChanged { added, removed, at } => json!({
                "added": added.iter().map(Uid::as_str).collect::<Vec<_>>(), "removed": removed.iter().map(Uid::as_str).collect::<Vec<_>>(), "at": at.0,
            }),
            ChannelEvent::MuteAllSet { on, at } => json!({"on": on, "at": at.0}),
            ChannelEvent::MessageDeleted { seq, by, at } => json!({"message_seq": seq.0, "by": by.as_str(), "at": at.0}),
            ChannelEvent::MessageEvent(e) => {
                let mut v = crate::render::event_json(e);
                v["message_seq"] = json!(e.message_seq.0);
                v["client_msg_no"] = json!(e.client_msg_no.0);
                v["ends_stream"] = json!(e.ended.is_some());
                v
            }
            ChannelEvent::MessageStreamEnded { client_msg_no } => json!({"client_msg_no": client_msg_no.0}),
            ChannelEvent::MessageEdited { seq, by, at } => json!({"message_seq": seq.0, "by": by.as_str(), "at": at.0}),
            ChannelEvent::MembersMuted { uids, until, at } => {
                let until = match until.0 {
                    0 => Value::Null,
                    u64::MAX => json!("until lifted"),
                    t => json!(t),
                };
                json!({"uids": uids.iter().map(Uid::as_str).collect::<Vec<_>>(), "until": until, "lifted": until.is_null(), "at": at.0})
            }
        },
        Event::User(u) => match u {
            // The token's hash is a stand-in for the token (a weak one falls to a dictionary): never shown.
            UserEvent::TokenSet { device_flag, device_level, token_hash: _ } => json!({"device_flag": device_flag.0, "device_level": device_level.0}),
            UserEvent::DeviceQuit { device_flag } => json!({"device_flag": device_flag.map(|f| f.0)}),
            UserEvent::CommandQueued { channel, message_seq, message_id } => {
                json!({"channel": channel_json(channel), "message_seq": message_seq.0, "message_id": message_id.0})
            }
            UserEvent::SyncAcked { entries } => json!({"entries": entries.iter().map(|p| p.0).collect::<Vec<_>>()}),
            UserEvent::UnreadSet { channel, unread, at } => {
                json!({"channel": channel_json(channel), "unread": unread, "at": {"seq": at.seq.0, "red_dots": at.red_dots}})
            }
            UserEvent::ConversationDeleted { channel, at } | UserEvent::ConversationJoined { channel, at } => {
                json!({"channel": channel_json(channel), "at": {"seq": at.seq.0, "red_dots": at.red_dots}})
            }
            UserEvent::ConversationLeft { channel } => json!({"channel": channel_json(channel)}),
            UserEvent::PlatformTokenIssued { platform, token_hash: _, expires_at } => json!({"platform": platform, "expires_at": expires_at.0}),
            UserEvent::MessagesHidden { channel, seqs } => {
                json!({"channel": channel_json(channel), "message_seqs": seqs.iter().map(|q| q.0).collect::<Vec<_>>()})
            }
            UserEvent::ConversationSettingsChanged { channel, pinned, remark } => json!({"channel": channel_json(channel), "pinned": pinned, "remark": remark}),
        },
        Event::System(s) => match s {
            SystemEvent::SystemUidsAdded { uids } | SystemEvent::SystemUidsRemoved { uids } => uids_json(uids),
        },
        // Password hashes are never shown, only that one was set.
        Event::Tenant(t) => match t {
            TenantEvent::UsersRegistered { users, at } => json!({
                "users": users.iter().map(|r| json!({"n": r.n, "username": r.username, "profile": profile_json(&r.profile)})).collect::<Vec<_>>(),
                "at": at.0,
            }),
            TenantEvent::ProfileUpdated { n, patch, at } => json!({"n": n, "patch": profile_json(patch), "at": at.0}),
            TenantEvent::PasswordChanged { n, password: _, at } => json!({"n": n, "at": at.0}),
            TenantEvent::UsersUnregistered { ns } => json!({"ns": ns}),
            TenantEvent::GroupOpened { n } | TenantEvent::GroupClosed { n } | TenantEvent::RoomOpened { n } | TenantEvent::RoomClosed { n } => json!({"n": n}),
            TenantEvent::FriendRequested { nid, from, to, postscript, at } => json!({"nid": nid, "from": from, "to": to, "postscript": postscript, "at": at.0}),
            TenantEvent::FriendRequestAnswered { nid, agree, at } => json!({"nid": nid, "agree": agree, "at": at.0}),
            TenantEvent::ReplySaved { id, reply: r } => json!({
                "id": id, "type": r.kind, "title": r.title, "keyword": r.keyword, "content": r.content, "weights": r.weights, "is_default": r.is_default,
            }),
            TenantEvent::ReplyRemoved { id } => json!({"id": id}),
            TenantEvent::MediaStored { record: r } => json!({
                "kind": r.kind, "sha256": r.sha256, "size": r.size, "crc32": r.crc32, "format": r.format,
                "width": r.width, "height": r.height, "name": r.name, "at": r.at.0,
            }),
            TenantEvent::FriendsAdded { n, peers, at } => json!({"n": n, "peers": peers, "at": at.0}),
            TenantEvent::FriendsRemoved { n, peers } => json!({"n": n, "peers": peers}),
            TenantEvent::NoDisturbChanged { n, single_added, single_removed, groups_added, groups_removed, global } => json!({
                "n": n, "single_added": single_added, "single_removed": single_removed,
                "groups_added": groups_added, "groups_removed": groups_removed, "global": global,
            }),
            TenantEvent::GroupsShielded { n, added, removed } => json!({"n": n, "added": added, "removed": removed}),
            TenantEvent::SensitiveWordsAdded { words, at } => json!({"words": words, "at": at.0}),
            TenantEvent::SensitiveWordRenamed { old, new, at } => json!({"old": old, "new": new, "at": at.0}),
            TenantEvent::SensitiveWordRemoved { word } => json!({"word": word}),
            TenantEvent::SensitiveFilterSwitched { on } | TenantEvent::SdkRegistrationSwitched { on } => json!({"on": on}),
            TenantEvent::FriendNotesSet { n, notes } => json!({
                "n": n,
                "notes": notes.iter().map(|c| json!({"peer": c.peer, "note_name": c.note_name, "others": c.others})).collect::<Vec<_>>(),
            }),
        },
    }
}

/// The fields a profile (or a patch) sets, by name.
pub fn profile_json(p: &Profile) -> Value {
    let mut out = serde_json::Map::new();
    let mut text = |name: &str, v: &Option<String>| {
        if let Some(v) = v {
            out.insert(name.into(), Value::from(v.as_str()));
        }
    };
    text("nickname", &p.nickname);
    text("avatar", &p.avatar);
    text("birthday", &p.birthday);
    text("signature", &p.signature);
    text("region", &p.region);
    text("address", &p.address);
    text("mobile", &p.mobile);
    text("email", &p.email);
    text("extras", &p.extras);
    if let Some(g) = p.gender {
        out.insert("gender".into(), Value::from(g));
    }
    Value::Object(out)
}

/// Whether a tenant event is about user number `n` of that tenant.
fn tenant_event_concerns(e: &TenantEvent, who: u64) -> bool {
    match e {
        TenantEvent::UsersRegistered { users, .. } => users.iter().any(|r| r.n == who),
        TenantEvent::ProfileUpdated { n, .. } | TenantEvent::PasswordChanged { n, .. } => *n == who,
        TenantEvent::UsersUnregistered { ns } => ns.contains(&who),
        TenantEvent::GroupOpened { .. }
        | TenantEvent::GroupClosed { .. }
        | TenantEvent::RoomOpened { .. }
        | TenantEvent::RoomClosed { .. }
        | TenantEvent::MediaStored { .. }
        | TenantEvent::ReplySaved { .. }
        | TenantEvent::ReplyRemoved { .. }
        | TenantEvent::FriendRequestAnswered { .. } => false,
        TenantEvent::FriendRequested { from, to, .. } => *from == who || *to == who,
        TenantEvent::FriendsAdded { n, peers, .. } | TenantEvent::FriendsRemoved { n, peers } => *n == who || peers.contains(&who),
        TenantEvent::FriendNotesSet { n, .. } | TenantEvent::NoDisturbChanged { n, .. } | TenantEvent::GroupsShielded { n, .. } => *n == who,
        TenantEvent::SensitiveWordsAdded { .. }
        | TenantEvent::SensitiveWordRenamed { .. }
        | TenantEvent::SensitiveWordRemoved { .. }
        | TenantEvent::SensitiveFilterSwitched { .. }
        | TenantEvent::SdkRegistrationSwitched { .. } => false,
    }
}

/// A group's profile as the audit trail and time travel show it.
pub fn group_json(g: &rookery_events::GroupProfile) -> Value {
    let muted: serde_json::Map<String, Value> = g
        .muted
        .iter()
        .map(|(u, until)| (u.0.clone(), if *until == rookery_events::MUTED_UNTIL_LIFTED { json!("until lifted") } else { json!(until.0) }))
        .collect();
    json!({
        "tenant": g.tenant, "n": g.n, "name": g.name, "desc": g.desc, "avatar": g.avatar, "public": g.public,
        "owner": g.owner.as_str(), "max_members": g.max_members, "muted": muted,
        "managers": g.managers.iter().map(Uid::as_str).collect::<Vec<_>>(), "mute_all": g.mute_all,
        "ctime": g.ctime.0, "mtime": g.mtime.0,
    })
}

/// One envelope as the audit API and CLI show it.
pub fn envelope_json(e: &Envelope) -> Value {
    let meta = &e.body.meta;
    json!({
        "position": e.position.0,
        "recorded_at": format_time(meta.recorded_at),
        "recorded_at_ms": meta.recorded_at.0,
        "stream": stream_json(&e.body.stream),
        "actor": actor_json(&meta.actor),
        "request_id": uuid::Uuid::from_bytes(meta.request_id.0).hyphenated().to_string(),
        "source": meta.source,
        "user_agent": meta.user_agent,
        "kind": e.body.event.kind(),
        "event": event_json(&e.body.event),
    })
}

/// A page as the audit API answers it and `rookery audit --json` prints it.
pub fn page_json(page: &Page) -> Value {
    json!({
        "events": page.events.iter().map(envelope_json).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor.map(|p| p.0),
        "examined": page.examined,
    })
}

/// One line of `rookery audit` without `--json`.
pub fn envelope_line(e: &Envelope) -> String {
    let meta = &e.body.meta;
    let actor = match &meta.actor {
        Actor::System => "system".to_owned(),
        Actor::Api { credential } => format!("api:{credential}"),
        Actor::Client { uid, device_flag } => format!("client:{uid}/{}", device_flag.0),
        Actor::Delegated { credential, uid } => format!("api:{credential}/for:{uid}"),
    };
    format!(
        "{:>8}  {}  {:<26}  {:<24}  {:<18}  {}  {}",
        e.position.0,
        format_time(meta.recorded_at),
        e.body.event.kind(),
        e.body.stream.to_string(),
        actor,
        uuid::Uuid::from_bytes(meta.request_id.0).hyphenated(),
        meta.source.as_deref().unwrap_or("-"),
    )
}

#[cfg(test)]
mod tests {
    use rookery_events::{DeviceFlag, DeviceLevel, Meta, RequestId};
    use rookery_storage::{MemLog, NewRecord};

    use super::*;

    fn api(name: &str) -> Actor {
        Actor::Api { credential: name.into() }
    }

    fn client(uid: &str) -> Actor {
        Actor::Client { uid: uid.into(), device_flag: DeviceFlag::WEB }
    }

    fn g(id: &str) -> ChannelKey {
        ChannelKey::new(id, ChannelType::GROUP)
    }

    fn put(log: &MemLog, stream: StreamId, actor: Actor, at: u64, event: Event) -> Position {
        let body = EnvelopeBody {
            stream,
            meta: Meta { recorded_at: Timestamp(at), actor, request_id: RequestId([at as u8; 16]), source: Some("127.0.0.1:9".into()), user_agent: None },
            event,
        };
        let record = NewRecord { stream: body.stream.key(), body: body.encode(), digest: body.digest(), seq: None };
        log.append(vec![record]).unwrap().first
    }

    fn subs(uids: &[&str]) -> Event {
        Event::Channel(ChannelEvent::SubscribersAdded { uids: uids.iter().map(|u| Uid::from(*u)).collect() })
    }

    fn token_set() -> Event {
        Event::User(UserEvent::TokenSet { device_flag: DeviceFlag::WEB, device_level: DeviceLevel::MASTER, token_hash: sha256(b"t") })
    }

    fn message(channel: &ChannelKey, from: &str, payload: &[u8]) -> Event {
        Event::Channel(ChannelEvent::MessageAppended(Box::new(rookery_events::Message {
            channel: channel.clone(),
            message_seq: rookery_events::MessageSeq(1),
            message_id: rookery_events::MessageId(7),
            client_msg_no: "c1".into(),
            from_uid: from.into(),
            header: rookery_events::MessageHeader::default(),
            setting: 0,
            stream_no: None,
            expire: 0,
            topic: None,
            timestamp: Timestamp(5),
            red_dot_ordinal: 0,
            payload: rookery_events::Payload::Inline(payload.to_vec()),
        })))
    }

    /// A log with two groups, two users and mixed actors, recorded at 1000, 2000, ... ms.
    fn sample() -> MemLog {
        let log = MemLog::new();
        let mut at = 0;
        let mut next = || {
            at += 1000;
            at
        };
        put(&log, StreamId::Channel(g("g1")), api("deploy"), next(), subs(&["ann", "ben"])); // 1
        put(&log, StreamId::User("ann".into()), api("deploy"), next(), Event::User(UserEvent::ConversationLeft { channel: g("g1") })); // 2
        put(&log, StreamId::Channel(g("g2")), api("manager"), next(), subs(&["cid"])); // 3
        put(&log, StreamId::User("ben".into()), api("deploy"), next(), token_set()); // 4
        put(&log, StreamId::Channel(g("g1")), client("ben"), next(), message(&g("g1"), "ben", b"hi")); // 5
        put(&log, StreamId::ChannelCommands(g("g1")), api("manager"), next(), message(&g("g1"), "____system", b"cmd")); // 6
        put(&log, StreamId::System, api("ben"), next(), Event::System(SystemEvent::SystemUidsAdded { uids: vec!["bot".into()] })); // 7
        put(&log, StreamId::Channel(g("g2")), client("ben"), next(), message(&g("g2"), "ben", b"yo")); // 8
        put(&log, StreamId::User("ann".into()), api("manager"), next(), token_set()); // 9
        put(&log, StreamId::Channel(g("g10")), api("deploy"), next(), subs(&["dan"])); // 10
        log
    }

    fn positions(page: &Page) -> Vec<u64> {
        page.events.iter().map(|e| e.position.0).collect()
    }

    fn query(raw: RawQuery) -> Query {
        raw.parse().unwrap()
    }

    fn all_pages(log: &dyn EventLog, mut q: Query) -> (Vec<u64>, u64, usize) {
        let (mut got, mut examined, mut pages) = (Vec::new(), 0, 0);
        loop {
            let page = run(log, &q).unwrap();
            assert!(page.events.len() <= q.limit);
            got.extend(positions(&page));
            examined += page.examined;
            pages += 1;
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return (got, examined, pages),
            }
            assert!(pages < 1000, "paging terminates");
        }
    }

    #[test]
    fn channel_reads_both_of_its_streams_through_the_index() {
        let log = sample();
        let q = query(RawQuery { channel_id: Some("g1".into()), channel_type: Some("2".into()), ..RawQuery::default() });
        let page = run(&log, &q).unwrap();
        assert_eq!(positions(&page), [6, 5, 1], "newest first by default; the command stream too; not g10");
        assert_eq!(page.examined, 3, "only the channel's records were read");
        assert_eq!(page.next_cursor, None);
        let asc = Query { order: Order::Asc, ..q.clone() };
        assert_eq!(positions(&run(&log, &asc).unwrap()), [1, 5, 6]);
        let two = Query { limit: 2, ..q.clone() };
        let first = run(&log, &two).unwrap();
        assert_eq!((positions(&first), first.next_cursor), (vec![6, 5], Some(Position(1))));
        let rest = run(&log, &Query { cursor: first.next_cursor, ..two }).unwrap();
        assert_eq!((positions(&rest), rest.next_cursor), (vec![1], None));
        let ranged = Query { from: Position(2), to: Position(5), ..q };
        assert_eq!(positions(&run(&log, &ranged).unwrap()), [5]);
    }

    #[test]
    fn uid_is_its_stream_plus_its_sends_as_a_client() {
        let log = sample();
        let ben = query(RawQuery { uid: Some("ben".into()), order: Some("asc".into()), ..RawQuery::default() });
        let page = run(&log, &ben).unwrap();
        assert_eq!(positions(&page), [4, 5, 8], "token_set in ben's stream, then his two sends; not the api:ben event");
        assert_eq!(page.examined, 7, "the scan for sends starts after ben's first token (positions 5 to 10)");
        let ann = query(RawQuery { uid: Some("ann".into()), ..RawQuery::default() });
        assert_eq!(positions(&run(&log, &ann).unwrap()), [9, 2]);
        // A user who never had a token cannot have sent anything as a client: index only.
        let cid = query(RawQuery { uid: Some("cid".into()), ..RawQuery::default() });
        let page = run(&log, &cid).unwrap();
        assert_eq!((positions(&page), page.examined), (vec![], 0));
        // Combined with a channel: ben's sends in g2 only.
        let in_g2 = query(RawQuery { uid: Some("ben".into()), channel_id: Some("g2".into()), channel_type: Some("2".into()), ..RawQuery::default() });
        assert_eq!(positions(&run(&log, &in_g2).unwrap()), [8]);
    }

    #[test]
    fn actor_kind_and_time_filters() {
        let log = sample();
        let by = |actor: &str| positions(&run(&log, &query(RawQuery { actor: Some(actor.into()), order: Some("asc".into()), ..RawQuery::default() })).unwrap());
        assert_eq!(by("deploy"), [1, 2, 4, 10]);
        assert_eq!(by("ben"), [5, 7, 8], "a credential or a client of that name");
        assert_eq!(by("api:ben"), [7]);
        assert_eq!(by("client:ben"), [5, 8]);
        assert_eq!(by("nobody"), Vec::<u64>::new());
        let kind = query(RawQuery { kind: Some("channel.message_appended".into()), ..RawQuery::default() });
        assert_eq!(positions(&run(&log, &kind).unwrap()), [8, 6, 5]);
        let window = query(RawQuery { since: Some("3000".into()), until: Some("1970-01-01T00:00:05Z".into()), ..RawQuery::default() });
        assert_eq!(positions(&run(&log, &window).unwrap()), [5, 4, 3], "both ends inclusive, ms or RFC 3339");
        let offset = query(RawQuery { since: Some("1970-01-01T01:00:09+01:00".into()), ..RawQuery::default() });
        assert_eq!(positions(&run(&log, &offset).unwrap()), [10, 9]);
        let all = query(RawQuery {
            actor: Some("manager".into()),
            kind: Some("user.token_set".into()),
            from: Some("2".into()),
            to: Some("9".into()),
            ..RawQuery::default()
        });
        assert_eq!(positions(&run(&log, &all).unwrap()), [9]);
    }

    #[test]
    fn every_paging_of_every_filter_returns_exactly_the_matching_events() {
        let log = sample();
        let filters = [
            RawQuery::default(),
            RawQuery { channel_id: Some("g1".into()), channel_type: Some("2".into()), ..RawQuery::default() },
            RawQuery { channel_id: Some("g2".into()), channel_type: Some("2".into()), actor: Some("ben".into()), ..RawQuery::default() },
            RawQuery { uid: Some("ben".into()), ..RawQuery::default() },
            RawQuery { uid: Some("ann".into()), since: Some("5000".into()), ..RawQuery::default() },
            RawQuery { actor: Some("deploy".into()), from: Some("2".into()), to: Some("9".into()), ..RawQuery::default() },
            RawQuery { kind: Some("user.token_set".into()), ..RawQuery::default() },
        ];
        let everything: Vec<Envelope> = log
            .read_range(Position(1), 100)
            .unwrap()
            .into_iter()
            .map(|r| Envelope { position: r.position, prev_hash: r.prev_hash, body: EnvelopeBody::decode(&r.body).unwrap() })
            .collect();
        for raw in filters {
            let base = query(raw.clone());
            let mut expected: Vec<u64> =
                everything.iter().filter(|e| base.matches(&e.body) && e.position >= base.from && e.position <= base.to).map(|e| e.position.0).collect();
            for order in [Order::Asc, Order::Desc] {
                if order == Order::Desc {
                    expected.reverse();
                }
                for limit in [1, 2, 3, 100] {
                    for max_examined in [1, 2, 5, MAX_EXAMINED] {
                        let q = Query { order, limit, max_examined, ..base.clone() };
                        let (got, _, _) = all_pages(&log, q);
                        assert_eq!(got, expected, "{raw:?} {order:?} limit {limit} max_examined {max_examined}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_scan_stops_at_its_cap_and_says_where_to_go_on() {
        let log = sample();
        let q = Query { kind: Some("system.uids_removed"), max_examined: 4, ..Query::default() };
        let page = run(&log, &q).unwrap();
        assert_eq!((page.events.len(), page.examined, page.next_cursor), (0, 4, Some(Position(6))));
        let (got, examined, pages) = all_pages(&log, q);
        assert_eq!((got, examined, pages), (vec![], 10, 3), "every record read exactly once");
    }

    #[test]
    fn bad_parameters_are_refused_with_a_reason() {
        let bad = |raw: RawQuery, needle: &str| {
            let err = raw.parse().unwrap_err();
            assert!(err.contains(needle), "{err} should contain {needle}");
        };
        let r = RawQuery::default;
        bad(RawQuery { channel_id: Some("g1".into()), ..r() }, "channel_id needs channel_type");
        bad(RawQuery { channel_type: Some("2".into()), ..r() }, "channel_type needs channel_id");
        bad(RawQuery { channel_id: Some("g1".into()), channel_type: Some("99".into()), ..r() }, "channel_type must be 1 to 12");
        bad(RawQuery { channel_id: Some("".into()), channel_type: Some("2".into()), ..r() }, "channel_id must not be empty");
        bad(RawQuery { uid: Some(" ".into()), ..r() }, "uid must not be empty");
        bad(RawQuery { actor: Some("api:".into()), ..r() }, "actor must name");
        bad(RawQuery { kind: Some("channel.exploded".into()), ..r() }, "unknown kind");
        bad(RawQuery { since: Some("yesterday".into()), ..r() }, "since must be an RFC 3339 time");
        bad(RawQuery { until: Some("2025-13-01T00:00:00Z".into()), ..r() }, "until must be an RFC 3339 time");
        bad(RawQuery { since: Some("1969-12-31T23:59:59Z".into()), ..r() }, "before 1970");
        bad(RawQuery { since: Some("5000".into()), until: Some("4000".into()), ..r() }, "since must not be after until");
        bad(RawQuery { from: Some("0".into()), ..r() }, "from must be a log position");
        bad(RawQuery { to: Some("-3".into()), ..r() }, "to must be a non-negative integer");
        bad(RawQuery { from: Some("9".into()), to: Some("3".into()), ..r() }, "from (9) must not be above to (3)");
        bad(RawQuery { limit: Some("0".into()), ..r() }, "limit must be 1 to 1000");
        bad(RawQuery { limit: Some("1001".into()), ..r() }, "limit must be 1 to 1000");
        bad(RawQuery { limit: Some("ten".into()), ..r() }, "limit must be 1 to 1000");
        bad(RawQuery { order: Some("newest".into()), ..r() }, "order must be asc or desc");
        bad(RawQuery { cursor: Some("x".into()), ..r() }, "cursor must be a non-negative integer");
        let ok = RawQuery { limit: Some("1000".into()), order: Some("asc".into()), cursor: Some("7".into()), ..r() }.parse().unwrap();
        assert_eq!((ok.limit, ok.order, ok.cursor), (1000, Order::Asc, Some(Position(7))));
    }

    #[test]
    fn times_and_rendering() {
        let log = sample();
        let q = query(RawQuery { from: Some("5".into()), to: Some("5".into()), ..RawQuery::default() });
        let v = page_json(&run(&log, &q).unwrap());
        let e = &v["events"][0];
        assert_eq!(e["position"], 5);
        assert_eq!(e["recorded_at"], "1970-01-01T00:00:05.000Z");
        assert_eq!(e["kind"], "channel.message_appended");
        assert_eq!(e["actor"], json!({"type": "client", "uid": "ben", "device_flag": 1}));
        assert_eq!(e["stream"], json!({"type": "channel", "channel_id": "g1", "channel_type": 2}));
        assert_eq!(e["request_id"], uuid::Uuid::from_bytes([136; 16]).hyphenated().to_string());
        assert_eq!(e["event"]["payload"], "aGk=");
        assert_eq!(e["event"]["payload_sha256"], sha256(b"hi").to_hex());
        assert_eq!(v["next_cursor"], Value::Null);
        // Every kind in KINDS is one the events crate names, and no two are alike.
        let mut kinds = KINDS.to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), KINDS.len());
        for e in [subs(&["a"]), token_set(), message(&g("g"), "a", b"x"), Event::System(SystemEvent::SystemUidsRemoved { uids: vec![] })] {
            assert!(KINDS.contains(&e.kind()), "{}", e.kind());
        }
    }
}
