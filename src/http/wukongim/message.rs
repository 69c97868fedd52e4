//! Sending and reading messages: `/message/send`, `/message/sendbatch`, `/channel/messagesync`
//! (both forms), `/channel/max_message_seq`, and the write-spread command queue: `/message/sync` +
//! `/message/syncack`.

use base64::Engine;
use rookery_actors::Origin;
use rookery_events::{person_channel_parties, ChannelId, ChannelKey, ChannelType, MessageHeader, Uid};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use warp::{Filter, Rejection, Reply};

use crate::render::message_json;
use crate::usecase::{validate, Outgoing, Target};

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
        warp::path!("message" / "syncack").and(warp::post()).and(with_state(state.clone())).and(origin(state)).and(json_body()).and_then(command_ack);
    send.or(batch).unify().or(sync).unify().or(max_seq).unify().or(command_sync).unify().or(command_ack).unify()
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
    if dto.is_stream.0 {
        return Err(ApiError::bad_request("stream messages (is_stream) are not supported").into());
    }
    let _ = dto.device_id;
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
        setting: dto.setting,
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
    let _ = dto.event_summary_mode;
    let login = dto.login_uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("login_uid is required"))?;
    let channel_id = dto.channel_id.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("channel_id is required"))?;
    let ty = channel_type(dto.channel_type)?;
    let login = Uid(login);
    let key = resolve_channel(&login, &channel_id, ty)?;
    let limit = match dto.limit {
        None | Some(0) => DEFAULT_SYNC_LIMIT,
        Some(n) if n < 0 => return Err(ApiError::bad_request("limit must not be negative").into()),
        Some(n) if n > MAX_SYNC_LIMIT => return Err(ApiError::bad_request(format!("limit must be at most {MAX_SYNC_LIMIT}")).into()),
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
            other => return Err(ApiError::bad_request(format!("pull_mode must be 0 or 1, got {other}")).into()),
        };
        let page =
            SyncPage { start_message_seq: Some(start), end_message_seq: Some(end), min_message_seq: None, max_message_seq: None, more: 0, messages: vec![] };
        (window_new(start, end, pull_up), page)
    };
    if let Some(w) = window {
        let found = state.usecases.channel_page(&key, w.from, w.to, limit, w.newest_first).await?;
        page.more = u8::from(found.more);
        page.messages = found
            .messages
            .iter()
            .map(|m| {
                let mut v = message_json(m, Some(&login));
                if let Some(by) = found.revoked.get(&m.message_seq.0) {
                    v["revoke"] = json!(1);
                    v["revoker"] = json!(by.0);
                }
                v
            })
            .collect();
    }
    Ok(warp::reply::json(&page).into_response())
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
