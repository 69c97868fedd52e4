//! Sending and reading messages: `/message/send`, `/message/sendbatch`, `/channel/messagesync`
//! (both forms), `/channel/max_message_seq`, and the write-spread command queue: `/message/sync` +
//! `/message/syncack`.

use base64::Engine;
use rookery_actors::Origin;
use rookery_events::{person_channel_parties, ChannelId, ChannelKey, ChannelType, MessageHeader, NewMessageEvent, Uid, STREAM_SETTING};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use warp::{Filter, Rejection, Reply};

use crate::render::{add_stream_fields, event_json, message_json};
use crate::usecase::{validate, EventTarget, Lookup, Outgoing, Target, MAX_EVENT_PAGE};

use crate::config::Scope;
use crate::http::{credential_of, json_body, ok, origin, with_state, ApiError, ApiState, Credential};

/// Largest page of `/channel/messagesync`.
const MAX_SYNC_LIMIT: i64 = 10_000;
/// Page size when `limit` is 0 or absent.
const DEFAULT_SYNC_LIMIT: i64 = 100;
/// Page size of `/message/sync` when `limit` is 0 or absent.
const DEFAULT_COMMAND_LIMIT: i64 = 200;

/// The message routes, each answering a JSON response or a rejection for the family's error rendering.
pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let send = warp::path!("message" / "send").and(warp::post()).and(with_state(state.clone())).and(origin(state.clone())).and(json_body()).and_then(send);
    let batch =
        warp::path!("message" / "sendbatch").and(warp::post()).and(with_state(state.clone())).and(origin(state.clone())).and(json_body()).and_then(send_batch);
    let sync = warp::path!("channel" / "messagesync").and(warp::post()).and(with_state(state.clone())).and(json_body()).and_then(message_sync);
    let max_seq =
        warp::path!("channel" / "max_message_seq").and(warp::get()).and(with_state(state.clone())).and(warp::query::<MaxSeqQuery>()).and_then(max_message_seq);
    let command_sync = warp::path!("message" / "sync")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(credential_of(state.clone()))
        .and(json_body())
        .and_then(command_sync);
    let command_ack =
        warp::path!("message" / "syncack").and(warp::post()).and(with_state(state.clone())).and(origin(state.clone())).and(json_body()).and_then(command_ack);
    let event =
        warp::path!("message" / "event").and(warp::post()).and(with_state(state.clone())).and(origin(state.clone())).and(json_body()).and_then(event_append);
    let event_sync = warp::path!("message" / "eventsync").and(warp::post()).and(with_state(state.clone())).and(json_body()).and_then(event_sync);
    let sync_batch = warp::path!("channel" / "messagesyncbatch").and(warp::post()).and(with_state(state.clone())).and(json_body()).and_then(message_sync_batch);
    let lookup_many = warp::path!("messages").and(warp::post()).and(with_state(state.clone())).and(json_body()).and_then(messages_lookup);
    let lookup_one = warp::path!("message").and(warp::post()).and(with_state(state.clone())).and(json_body()).and_then(message_lookup);
    let by_no = warp::path!("message" / "byclientmsgno")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(warp::query::<ByClientMsgNoQuery>())
        .and_then(message_by_client_msg_no);
    let last =
        warp::path!("channel" / "last_message").and(warp::get()).and(with_state(state)).and(warp::query::<LastMessageQuery>()).and_then(channel_last_message);
    let sends = send.or(batch).unify().or(command_sync).unify().or(command_ack).unify().boxed();
    let reads = sync.or(sync_batch).unify().or(max_seq).unify().or(lookup_many).unify().or(lookup_one).unify().or(by_no).unify().or(last).unify().boxed();
    sends.or(reads).unify().or(event).unify().or(event_sync).unify()
}

/// Header flags as 0/1 integers (booleans accepted too).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct HeaderDto {
    no_persist: Flag,
    red_dot: Flag,
    sync_once: Flag,
}

/// A JSON flag: 0/1 or false/true.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Flag, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(Flag(b)),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(Flag(false)),
            Value::Number(n) if n.as_u64() == Some(1) => Ok(Flag(true)),
            Value::Null => Ok(Flag(false)),
            other => Err(serde::de::Error::custom(format!("expected 0 or 1, got {other}"))),
        }
    }
}

#[derive(Debug, Deserialize)]
struct SendDto {
    #[serde(default)]
    header: HeaderDto,
    #[serde(default)]
    client_msg_no: Option<String>,
    #[serde(default, alias = "sender_uid")]
    from_uid: Option<String>,
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    channel_type: Option<u8>,
    #[serde(default)]
    expire: u32,
    payload: String,
    #[serde(default)]
    subscribers: Option<Vec<String>>,
    #[serde(default)]
    stream_no: Option<String>,
    #[serde(default)]
    is_stream: Flag,
    #[serde(default)]
    setting: u8,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    no_persist: Option<Flag>,
    #[serde(default)]
    sync_once: Option<Flag>,
    #[serde(default)]
    device_id: Option<String>,
}

/// Checks an id the API accepts (the use cases' rule: non-empty, at most 128 bytes, none of `@ # &`).
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    validate::uid(what, id)?;
    Ok(())
}

/// Parses a channel type code.
pub(crate) fn channel_type(raw: Option<u8>) -> Result<ChannelType, ApiError> {
    Ok(validate::channel_type(raw)?)
}

/// The stored channel a caller means: person channels are named by the peer uid plus the caller's uid.
pub(crate) fn resolve_channel(caller: &Uid, channel_id: &str, ty: ChannelType) -> Result<ChannelKey, ApiError> {
    Ok(validate::channel(caller, channel_id, ty)?)
}

/// Decodes a base64 payload (its size and emptiness are the send use case's to check).
fn decode_payload(raw: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD.decode(raw.as_bytes()).map_err(|e| ApiError::bad_request(format!("payload is not valid base64: {e}")))
}

async fn send(state: ApiState, origin: rookery_actors::Origin, dto: SendDto) -> Result<warp::reply::Response, Rejection> {
    let payload = decode_payload(&dto.payload)?;
    let _ = dto.device_id;
    // `is_stream`: a stream message, whose content its events (`/message/event`) deliver afterwards.
    let setting = if dto.is_stream.0 { dto.setting | STREAM_SETTING } else { dto.setting };
    let channel_id = dto.channel_id.filter(|c| !c.is_empty());
    let subscribers = dto.subscribers.filter(|s| !s.is_empty());
    // WuKongIM v2/v3: `subscribers` without a channel sends a command message to exactly those users.
    let target = match (channel_id, subscribers) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give channel_id or subscribers, not both").into()),
        (None, Some(uids)) => Target::Users(uids),
        (id, None) => Target::Channel { id: id.unwrap_or_default(), ty: dto.channel_type },
    };
    let out = Outgoing {
        from: dto.from_uid,
        target,
        client_msg_no: dto.client_msg_no,
        header: MessageHeader {
            no_persist: dto.no_persist.unwrap_or(dto.header.no_persist).0,
            red_dot: dto.header.red_dot.0,
            sync_once: dto.sync_once.unwrap_or(dto.header.sync_once).0,
        },
        setting,
        expire: dto.expire,
        topic: dto.topic,
        stream_no: dto.stream_no,
        payload,
    };
    let sent = state.usecases.send(out, origin, None).await?;
    let data = json!({
        "message_id": sent.message_id.0,
        "message_idstr": sent.message_id.0.to_string(),
        "message_seq": sent.message_seq.0,
        "client_msg_no": sent.client_msg_no,
    });
    let mut body = data.clone();
    body["status"] = json!(200);
    body["reason"] = json!(1);
    body["data"] = data;
    Ok(warp::reply::json(&body).into_response())
}

/// Both request forms of `/channel/messagesync`.
#[derive(Debug, Deserialize)]
struct SyncDto {
    #[serde(default)]
    login_uid: Option<String>,
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    channel_type: Option<u8>,
    #[serde(default)]
    start_message_seq: Option<i64>,
    #[serde(default)]
    end_message_seq: Option<i64>,
    #[serde(default)]
    pull_mode: Option<u8>,
    #[serde(default)]
    min_message_seq: Option<i64>,
    #[serde(default)]
    max_message_seq: Option<i64>,
    #[serde(default)]
    reverse: Option<Flag>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    event_summary_mode: Option<Value>,
}

#[derive(Debug, Serialize)]
struct SyncPage {
    #[serde(skip_serializing_if = "Option::is_none")]
    start_message_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_message_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_message_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_message_seq: Option<u64>,
    more: u8,
    messages: Vec<Value>,
}

fn non_negative(what: &str, v: Option<i64>) -> Result<u64, ApiError> {
    match v {
        None => Ok(0),
        Some(n) if n < 0 => Err(ApiError::bad_request(format!("{what} must not be negative"))),
        Some(n) => Ok(n as u64),
    }
}

/// Which seqs a page covers, inclusive, and from which end it is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqWindow {
    pub from: u64,
    pub to: u64,
    pub newest_first: bool,
}

/// The current form: `pull_mode` 1 = up: `[start, end)` lowest first; 0 = down: `(end, start]`
/// highest first; start = end = 0: the newest page.
pub(crate) fn window_new(start: u64, end: u64, pull_up: bool) -> Option<SeqWindow> {
    if start == 0 && end == 0 {
        return Some(SeqWindow { from: 1, to: u64::MAX, newest_first: true });
    }
    if pull_up {
        let to = if end == 0 { u64::MAX } else { end.checked_sub(1)? };
        let from = start.max(1);
        (from <= to).then_some(SeqWindow { from, to, newest_first: false })
    } else {
        let to = if start == 0 { u64::MAX } else { start };
        let from = end.saturating_add(1).max(1);
        (from <= to).then_some(SeqWindow { from, to, newest_first: true })
    }
}

/// The legacy form: both bounds exclusive, 0 = unbounded; `reverse` = take the lowest seqs.
pub(crate) fn window_legacy(min: u64, max: u64, reverse: bool) -> Option<SeqWindow> {
    let from = min.saturating_add(1).max(1);
    let to = if max == 0 { u64::MAX } else { max.checked_sub(1)? };
    (from <= to).then_some(SeqWindow { from, to, newest_first: !reverse })
}

async fn message_sync(state: ApiState, dto: SyncDto) -> Result<warp::reply::Response, Rejection> {
    Ok(warp::reply::json(&sync_page(&state, dto).await?).into_response())
}

/// One page of `/channel/messagesync` (either form).
async fn sync_page(state: &ApiState, dto: SyncDto) -> Result<SyncPage, ApiError> {
    let with_meta = dto.event_summary_mode.as_ref().is_some_and(|m| !m.is_null() && m.as_str() != Some(""));
    let login = dto.login_uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("login_uid is required"))?;
    let channel_id = dto.channel_id.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("channel_id is required"))?;
    let ty = channel_type(dto.channel_type)?;
    let login = Uid(login);
    let key = resolve_channel(&login, &channel_id, ty)?;
    let limit = match dto.limit {
        None | Some(0) => DEFAULT_SYNC_LIMIT,
        Some(n) if n < 0 => return Err(ApiError::bad_request("limit must not be negative")),
        Some(n) if n > MAX_SYNC_LIMIT => return Err(ApiError::bad_request(format!("limit must be at most {MAX_SYNC_LIMIT}"))),
        Some(n) => n,
    } as usize;
    let legacy = dto.min_message_seq.is_some() || dto.max_message_seq.is_some() || dto.reverse.is_some();
    let (window, mut page) = if legacy {
        let (min, max) = (non_negative("min_message_seq", dto.min_message_seq)?, non_negative("max_message_seq", dto.max_message_seq)?);
        let page =
            SyncPage { start_message_seq: None, end_message_seq: None, min_message_seq: Some(min), max_message_seq: Some(max), more: 0, messages: vec![] };
        (window_legacy(min, max, dto.reverse.unwrap_or_default().0), page)
    } else {
        let (start, end) = (non_negative("start_message_seq", dto.start_message_seq)?, non_negative("end_message_seq", dto.end_message_seq)?);
        let pull_up = match dto.pull_mode.unwrap_or(0) {
            0 => false,
            1 => true,
            other => return Err(ApiError::bad_request(format!("pull_mode must be 0 or 1, got {other}"))),
        };
        let page =
            SyncPage { start_message_seq: Some(start), end_message_seq: Some(end), min_message_seq: None, max_message_seq: None, more: 0, messages: vec![] };
        (window_new(start, end, pull_up), page)
    };
    if let Some(w) = window {
        let found = state.usecases.channel_page(&key, w.from, w.to, limit, w.newest_first).await?;
        page.more = u8::from(found.more);
        page.messages = rendered(state, &login, &found.messages, &found.revoked, with_meta).await?;
    }
    Ok(page)
}

/// `POST /channel/messagesyncbatch` body (WuKongIM v3): several `/channel/messagesync` requests of one user.
#[derive(Debug, Deserialize)]
struct SyncBatchDto {
    #[serde(default)]
    login_uid: Option<String>,
    #[serde(default)]
    items: Option<Vec<SyncBatchItem>>,
}

#[derive(Debug, Deserialize)]
struct SyncBatchItem {
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    channel_type: Option<u8>,
    #[serde(default)]
    start_message_seq: Option<i64>,
    #[serde(default)]
    end_message_seq: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    pull_mode: Option<u8>,
    #[serde(default)]
    event_summary_mode: Option<Value>,
    #[serde(default)]
    include_event_meta: Flag,
}

/// Most items of one `/channel/messagesyncbatch`.
const MAX_BATCH_ITEMS: usize = 100;

async fn message_sync_batch(state: ApiState, dto: SyncBatchDto) -> Result<warp::reply::Response, Rejection> {
    let login = dto.login_uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("login_uid is required"))?;
    let items = dto.items.filter(|i| !i.is_empty()).ok_or_else(|| ApiError::bad_request("items must not be empty"))?;
    if items.len() > MAX_BATCH_ITEMS {
        return Err(ApiError::bad_request(format!("items may hold at most {MAX_BATCH_ITEMS} channels")).into());
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (channel_id, channel_type) = (item.channel_id.clone().unwrap_or_default(), item.channel_type.unwrap_or(0));
        let (start, end) = (item.start_message_seq.unwrap_or(0), item.end_message_seq.unwrap_or(0));
        let summary = if item.include_event_meta.0 { Some(Value::String("full".into())) } else { item.event_summary_mode };
        let one = SyncDto {
            login_uid: Some(login.clone()),
            channel_id: item.channel_id,
            channel_type: item.channel_type,
            start_message_seq: item.start_message_seq,
            end_message_seq: item.end_message_seq,
            pull_mode: item.pull_mode,
            min_message_seq: None,
            max_message_seq: None,
            reverse: None,
            limit: item.limit,
            event_summary_mode: summary,
        };
        // One item's error is reported in that item; the others are answered.
        let mut v =
            json!({"channel_id": channel_id, "channel_type": channel_type, "start_message_seq": start, "end_message_seq": end, "more": 0, "messages": []});
        match sync_page(&state, one).await {
            Ok(page) => {
                v["more"] = json!(page.more);
                v["messages"] = Value::Array(page.messages);
            }
            Err(e) => v["error"] = json!(e.msg),
        }
        out.push(v);
    }
    Ok(warp::reply::json(&json!({"items": out})).into_response())
}

/// Messages as the read routes show them to `viewer`: retracted ones marked, stream messages with what
/// their events came to.
async fn rendered(
    state: &ApiState,
    viewer: &Uid,
    messages: &[rookery_events::Message],
    revoked: &std::collections::BTreeMap<u64, Uid>,
    with_meta: bool,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::with_capacity(messages.len());
    let edits = match messages.first() {
        Some(m) => state.usecases.edits(&m.channel, messages).await?,
        None => Default::default(),
    };
    for m in messages {
        let mut v = message_json(m, Some(viewer));
        if let Some(by) = revoked.get(&m.message_seq.0) {
            v["revoke"] = json!(1);
            v["revoker"] = json!(by.0);
        } else {
            with_stream(state, m, &mut v, with_meta).await?;
            if let Some((at, content)) = edits.get(&m.message_seq.0) {
                add_edit(&mut v, *at, content);
            }
        }
        out.push(v);
    }
    Ok(out)
}

/// `POST /messages` and `POST /message` body.
#[derive(Debug, Deserialize)]
struct LookupDto {
    #[serde(default)]
    login_uid: Option<String>,
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    channel_type: Option<u8>,
    #[serde(default)]
    message_seqs: Vec<u64>,
    #[serde(default)]
    message_ids: Vec<i64>,
    #[serde(default)]
    client_msg_nos: Vec<String>,
    #[serde(default)]
    message_id: Option<i64>,
    #[serde(default)]
    client_msg_no: Option<String>,
}

/// The channel a read names: a person channel by its internal `a@b` id, or by the peer's uid with
/// `login_uid`; any other by its id.
fn read_channel(login: Option<&str>, channel_id: Option<String>, ty: Option<u8>) -> Result<(ChannelKey, Uid), ApiError> {
    let channel_id = channel_id.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("channel_id is required"))?;
    let ty = channel_type(ty)?;
    let login = login.filter(|u| !u.is_empty());
    if ty == ChannelType::PERSON && person_channel_parties(&ChannelId(channel_id.clone())).is_some() && login.is_none() {
        return Ok((ChannelKey::new(channel_id, ty), Uid::default()));
    }
    if ty == ChannelType::PERSON && login.is_none() {
        return Err(ApiError::bad_request("login_uid is required for person channels"));
    }
    let login = Uid(login.unwrap_or_default().to_owned());
    Ok((resolve_channel(&login, &channel_id, ty)?, login))
}

async fn messages_lookup(state: ApiState, dto: LookupDto) -> Result<warp::reply::Response, Rejection> {
    let (key, viewer) = read_channel(dto.login_uid.as_deref(), dto.channel_id, dto.channel_type)?;
    let what = Lookup { seqs: dto.message_seqs, ids: dto.message_ids, client_msg_nos: dto.client_msg_nos };
    let (found, revoked) = state.usecases.find_messages(&key, &what).await?;
    let messages = rendered(&state, &viewer, &found, &revoked, false).await?;
    Ok(warp::reply::json(&json!({"start_message_seq": 0, "end_message_seq": 0, "more": 0, "messages": messages})).into_response())
}

/// One message, or 404.
async fn one_message(state: &ApiState, key: &ChannelKey, viewer: &Uid, what: Lookup) -> Result<warp::reply::Response, Rejection> {
    let (found, revoked) = state.usecases.find_messages(key, &what).await?;
    let mut shown = rendered(state, viewer, &found, &revoked, false).await?;
    match shown.pop() {
        Some(v) if found.len() == 1 => Ok(warp::reply::json(&v).into_response()),
        _ => Err(ApiError::not_found("no such message").into()),
    }
}

async fn message_lookup(state: ApiState, dto: LookupDto) -> Result<warp::reply::Response, Rejection> {
    let (key, viewer) = read_channel(dto.login_uid.as_deref(), dto.channel_id, dto.channel_type)?;
    let what = match (dto.message_id.filter(|id| *id != 0), dto.client_msg_no.filter(|c| !c.is_empty())) {
        (Some(id), _) => Lookup { ids: vec![id], ..Lookup::default() },
        (None, Some(no)) => Lookup { client_msg_nos: vec![no], ..Lookup::default() },
        (None, None) => return Err(ApiError::bad_request("give message_id or client_msg_no").into()),
    };
    one_message(&state, &key, &viewer, what).await
}

#[derive(Debug, Deserialize)]
struct ByClientMsgNoQuery {
    channel_id: Option<String>,
    channel_type: Option<u8>,
    client_msg_no: Option<String>,
    login_uid: Option<String>,
}

async fn message_by_client_msg_no(state: ApiState, q: ByClientMsgNoQuery) -> Result<warp::reply::Response, Rejection> {
    let no = q.client_msg_no.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("client_msg_no is required"))?;
    let (key, viewer) = read_channel(q.login_uid.as_deref(), q.channel_id, q.channel_type)?;
    one_message(&state, &key, &viewer, Lookup { client_msg_nos: vec![no], ..Lookup::default() }).await
}

#[derive(Debug, Deserialize)]
struct LastMessageQuery {
    channel_id: Option<String>,
    channel_type: Option<u8>,
    login_uid: Option<String>,
}

async fn channel_last_message(state: ApiState, q: LastMessageQuery) -> Result<warp::reply::Response, Rejection> {
    let (key, viewer) = read_channel(q.login_uid.as_deref(), q.channel_id, q.channel_type)?;
    let Some((m, revoked_by)) = state.usecases.last_message(&key).await? else {
        return Err(ApiError::not_found("the channel has no message").into());
    };
    let revoked = revoked_by.map(|by| (m.message_seq.0, by)).into_iter().collect();
    let mut shown = rendered(&state, &viewer, std::slice::from_ref(&m), &revoked, false).await?;
    Ok(warp::reply::json(&shown.remove(0)).into_response())
}

/// Marks an edited message: `edited` 1, `edited_at` (seconds) and `content_edit` (the new content).
pub(crate) fn add_edit(v: &mut Value, at: rookery_events::Timestamp, content: &[u8]) {
    v["edited"] = json!(1);
    v["edited_at"] = json!(at.as_secs());
    v["content_edit"] = serde_json::from_slice(content).unwrap_or(Value::Null);
}

/// Adds to a stream message's JSON what its events came to (`end`, `stream_data`, `event_meta`...).
pub(crate) async fn with_stream(state: &ApiState, m: &rookery_events::Message, v: &mut Value, with_meta: bool) -> Result<(), ApiError> {
    if m.setting & STREAM_SETTING != 0 {
        if let Some(stream) = state.usecases.message_stream(&m.channel, &m.client_msg_no.0).await? {
            add_stream_fields(v, &stream, with_meta);
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct MaxSeqQuery {
    channel_id: Option<String>,
    channel_type: Option<u8>,
    login_uid: Option<String>,
}

async fn max_message_seq(state: ApiState, q: MaxSeqQuery) -> Result<warp::reply::Response, Rejection> {
    let channel_id = q.channel_id.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("channel_id is required"))?;
    let ty = channel_type(q.channel_type)?;
    let key = if ty == ChannelType::PERSON && person_channel_parties(&ChannelId(channel_id.clone())).is_some() && q.login_uid.is_none() {
        ChannelKey::new(channel_id, ty)
    } else if ty == ChannelType::PERSON {
        let login = q.login_uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("login_uid is required for person channels"))?;
        resolve_channel(&Uid(login), &channel_id, ty)?
    } else {
        resolve_channel(&Uid::default(), &channel_id, ty)?
    };
    let state_now = state.core.channel_state(&key).await.map_err(ApiError::from)?;
    Ok(warp::reply::json(&json!({"message_seq": state_now.last_message_seq.0})).into_response())
}

/// `POST /message/event` body (WuKongIM v2.2.5).
#[derive(Debug, Deserialize)]
struct EventDto {
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    channel_type: Option<u8>,
    #[serde(default)]
    from_uid: Option<String>,
    /// Accepted and not needed: the message is found by client_msg_no.
    #[serde(default)]
    message_id: Option<Value>,
    #[serde(default)]
    client_msg_no: Option<String>,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    event_key: Option<String>,
    #[serde(default)]
    visibility: Option<String>,
    #[serde(default)]
    occurred_at: Option<i64>,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    headers: Option<std::collections::BTreeMap<String, String>>,
}

fn event_target(channel_id: Option<String>, channel_type: Option<u8>, from_uid: Option<String>) -> Result<EventTarget, ApiError> {
    let channel_id = channel_id.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("channel_id is required"))?;
    Ok(EventTarget { channel_id, channel_type, from_uid, message_id: None })
}

async fn event_append(state: ApiState, origin: Origin, dto: EventDto) -> Result<warp::reply::Response, Rejection> {
    let mut target = event_target(dto.channel_id, dto.channel_type, dto.from_uid)?;
    target.message_id = match dto.message_id {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.parse().map_err(|_| ApiError::bad_request("message_id must be a number"))?),
        Some(_) => return Err(ApiError::bad_request("message_id must be a number").into()),
    };
    let client_msg_no = dto.client_msg_no.unwrap_or_default();
    let event_id = dto.event_id.unwrap_or_default();
    let payload = match dto.payload {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => v.to_string().into_bytes(),
    };
    let event = NewMessageEvent {
        client_msg_no: rookery_events::ClientMsgNo(client_msg_no.clone()),
        event_id: event_id.clone(),
        event_type: dto.event_type.unwrap_or_default(),
        event_key: dto.event_key.unwrap_or_default(),
        visibility: dto.visibility.unwrap_or_default(),
        occurred_at: dto.occurred_at.unwrap_or(0),
        payload,
        headers: dto.headers.unwrap_or_default().into_iter().collect(),
    };
    let channel_id = target.channel_id.clone();
    let appended = state.usecases.append_message_event(target, event, origin).await?;
    let data = json!({
        "client_msg_no": client_msg_no,
        "event_key": appended.event_key,
        "event_id": event_id,
        "msg_event_seq": appended.event_seq,
        "stream_status": appended.status,
        "channel_id": channel_id,
        "channel_type": appended.channel.ty.0,
        "from_uid": appended.from_uid.0,
    });
    Ok(warp::reply::json(&json!({"status": 200, "data": data})).into_response())
}

/// `POST /message/eventsync` body.
#[derive(Debug, Deserialize)]
struct EventSyncDto {
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    channel_type: Option<u8>,
    #[serde(default)]
    from_uid: Option<String>,
    #[serde(default)]
    client_msg_no: Option<String>,
    #[serde(default)]
    event_key: Option<String>,
    #[serde(default)]
    from_msg_event_seq: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    include_private: Flag,
}

/// Page size of `/message/eventsync` when `limit` is 0 or absent.
const DEFAULT_EVENT_LIMIT: i64 = 200;

async fn event_sync(state: ApiState, dto: EventSyncDto) -> Result<warp::reply::Response, Rejection> {
    let target = event_target(dto.channel_id, dto.channel_type, dto.from_uid)?;
    let client_msg_no = dto.client_msg_no.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("client_msg_no is required"))?;
    let from = non_negative("from_msg_event_seq", dto.from_msg_event_seq)?;
    let limit = match dto.limit {
        None | Some(0) => DEFAULT_EVENT_LIMIT,
        Some(n) if n < 0 => return Err(ApiError::bad_request("limit must not be negative").into()),
        Some(n) => n.min(MAX_EVENT_PAGE as i64),
    } as usize;
    let key = dto.event_key.filter(|k| !k.is_empty());
    let (_, page) = state.usecases.message_events(&target, &client_msg_no, from, limit, key.as_deref(), dto.include_private.0).await?;
    let next = page.events.last().map_or(from, |e| e.event_seq);
    let data = json!({
        "client_msg_no": client_msg_no,
        "from_msg_event_seq": from,
        "next_msg_event_seq": next,
        "more": u8::from(page.more),
        "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
        "filtered_by_event_key": key.unwrap_or_default(),
    });
    Ok(warp::reply::json(&json!({"status": 200, "data": data})).into_response())
}

/// `POST /message/sendbatch` body: one person message from `from_uid` to each subscriber.
#[derive(Debug, Deserialize)]
struct SendBatchDto {
    #[serde(default)]
    header: HeaderDto,
    #[serde(default, alias = "sender_uid")]
    from_uid: Option<String>,
    #[serde(default)]
    subscribers: Option<Vec<String>>,
    #[serde(default)]
    payload: Option<String>,
}

/// `POST /message/sendbatch` answer: the recipients that failed, with one reason each.
#[derive(Debug, Serialize)]
struct SendBatchReply {
    fail_uids: Vec<String>,
    reason: Vec<String>,
}

async fn send_batch(state: ApiState, origin: Origin, dto: SendBatchDto) -> Result<warp::reply::Response, Rejection> {
    let from = dto.from_uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("from_uid is required"))?;
    let raw_payload = dto.payload.filter(|p| !p.is_empty()).ok_or_else(|| ApiError::bad_request("payload is required"))?;
    let payload = decode_payload(&raw_payload)?;
    let header = MessageHeader { no_persist: dto.header.no_persist.0, red_dot: dto.header.red_dot.0, sync_once: dto.header.sync_once.0 };
    let failures = state.usecases.send_batch(&from, dto.subscribers.unwrap_or_default(), header, payload, origin).await?;
    let reply = SendBatchReply { fail_uids: failures.iter().map(|f| f.uid.clone()).collect(), reason: failures.into_iter().map(|f| f.reason).collect() };
    Ok(warp::reply::json(&reply).into_response())
}

/// `POST /message/sync` body. `message_seq` is accepted and ignored, as in v2.
#[derive(Debug, Deserialize)]
struct CommandSyncDto {
    uid: Option<String>,
    #[serde(default)]
    message_seq: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

/// `POST /message/syncack` body.
#[derive(Debug, Deserialize)]
struct CommandAckDto {
    uid: Option<String>,
    #[serde(default)]
    last_message_seq: Option<i64>,
}

async fn command_sync(state: ApiState, credential: Credential, dto: CommandSyncDto) -> Result<warp::reply::Response, Rejection> {
    let uid = dto.uid.ok_or_else(|| ApiError::bad_request("uid is required"))?;
    non_negative("message_seq", dto.message_seq)?;
    let limit = match dto.limit {
        None | Some(0) => DEFAULT_COMMAND_LIMIT,
        Some(n) if n < 0 => return Err(ApiError::bad_request("limit must not be negative").into()),
        Some(n) if n > MAX_SYNC_LIMIT => return Err(ApiError::bad_request(format!("limit must be at most {MAX_SYNC_LIMIT}")).into()),
        Some(n) => n,
    } as usize;
    // What was read is remembered for the acknowledgement only for a credential that may acknowledge.
    let found = state.usecases.pending_commands(&uid, limit, credential.scope == Scope::Admin).await?;
    let viewer = Uid(uid);
    let messages: Vec<Value> = found.iter().map(|m| message_json(m, Some(&viewer))).collect();
    Ok(warp::reply::json(&messages).into_response())
}

async fn command_ack(state: ApiState, origin: Origin, dto: CommandAckDto) -> Result<warp::reply::Response, Rejection> {
    let uid = dto.uid.ok_or_else(|| ApiError::bad_request("uid is required"))?;
    match dto.last_message_seq {
        None | Some(0) => return Err(ApiError::bad_request("last_message_seq is required and must not be 0").into()),
        Some(n) if n < 0 => return Err(ApiError::bad_request("last_message_seq must not be negative").into()),
        Some(_) => {}
    }
    state.usecases.ack_commands(&uid, origin).await?;
    Ok(ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(w: Option<SeqWindow>, last: u64, limit: usize) -> Vec<u64> {
        let Some(w) = w else { return vec![] };
        let all: Vec<u64> = (w.from..=w.to.min(last)).collect();
        let mut page: Vec<u64> = if w.newest_first { all.iter().rev().take(limit).copied().collect() } else { all.iter().take(limit).copied().collect() };
        page.sort();
        page
    }

    #[test]
    fn current_form_matches_the_seed_examples() {
        assert_eq!(seqs(window_new(100, 200, true), 300, 10), (100..=109).collect::<Vec<_>>());
        assert_eq!(seqs(window_new(100, 105, true), 300, 10), (100..=104).collect::<Vec<_>>());
        assert_eq!(seqs(window_new(100, 50, false), 300, 10), (91..=100).collect::<Vec<_>>());
        assert_eq!(seqs(window_new(100, 95, false), 300, 10), (96..=100).collect::<Vec<_>>());
        assert_eq!(seqs(window_new(100, 0, false), 300, 10), (91..=100).collect::<Vec<_>>());
        assert_eq!(seqs(window_new(100, 0, true), 300, 10), (100..=109).collect::<Vec<_>>());
        assert_eq!(seqs(window_new(0, 0, true), 300, 10), (291..=300).collect::<Vec<_>>());
        assert_eq!(seqs(window_new(50, 100, false), 300, 10), Vec::<u64>::new());
    }

    #[test]
    fn legacy_form_matches_the_seed_example() {
        assert_eq!(seqs(window_legacy(0, 10, true), 300, 5), vec![1, 2, 3, 4, 5]);
        assert_eq!(seqs(window_legacy(0, 10, false), 300, 5), vec![5, 6, 7, 8, 9]);
    }
}
