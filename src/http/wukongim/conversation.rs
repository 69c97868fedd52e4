//! The server-kept conversation list: `/conversation/sync`, `/conversation/channels`,
//! `/conversation/syncByChannels`, `/conversation/syncMessages`, v3's `/conversation/list`,
//! `/conversations/setUnread`, `/conversations/clearUnread`, `/conversations/delete`.

use std::collections::HashMap;

use rookery_actors::Origin;
use rookery_events::Uid;
use serde::Deserialize;
use serde_json::{json, Value};
use warp::{Filter, Rejection, Reply};

use super::message::Flag;
use crate::http::{json_body, ok, origin, with_state, ApiError, ApiState};
use crate::render::message_json;
use crate::usecase::{Conversation, ConversationMark, ConversationQuery};

/// Largest `msg_count` (recent messages per conversation).
const MAX_MSG_COUNT: i64 = 100;
/// Largest page of a paged sync.
const MAX_PAGE_SIZE: i64 = 500;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let sync = warp::path!("conversation" / "sync").and(warp::post()).and(with_state(state.clone())).and(json_body()).and_then(sync);
    let set_unread = warp::path!("conversations" / "setUnread")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(origin(state.clone()))
        .and(json_body())
        .and_then(|s, o, d: MarkDto| mark(s, o, d, Mark::SetUnread));
    let clear_unread = warp::path!("conversations" / "clearUnread")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(origin(state.clone()))
        .and(json_body())
        .and_then(|s, o, d: MarkDto| mark(s, o, d, Mark::ClearUnread));
    let delete = warp::path!("conversations" / "delete")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(origin(state.clone()))
        .and(json_body())
        .and_then(|s, o, d: MarkDto| mark(s, o, d, Mark::Delete));
    let channels = warp::path!("conversation" / "channels").and(warp::post()).and(with_state(state.clone())).and(json_body()).and_then(channels);
    let by_channels =
        warp::path!("conversation" / "syncByChannels").and(warp::post()).and(with_state(state.clone())).and(json_body()).and_then(sync_by_channels);
    let messages = warp::path!("conversation" / "syncMessages").and(warp::post()).and(with_state(state.clone())).and(json_body()).and_then(sync_messages);
    let list = warp::path!("conversation" / "list").and(warp::post()).and(with_state(state)).and(json_body()).and_then(list);
    let marks = set_unread.or(clear_unread).unify().or(delete).unify().boxed();
    let reads = sync.or(channels).unify().or(by_channels).unify().or(messages).unify().or(list).unify().boxed();
    marks.or(reads).unify()
}

#[derive(Debug, Deserialize)]
struct SyncDto {
    uid: Option<String>,
    #[serde(default)]
    version: i64,
    #[serde(default)]
    last_msg_seqs: Option<String>,
    #[serde(default)]
    msg_count: Option<i64>,
    #[serde(default)]
    only_unread: Flag,
    #[serde(default)]
    exclude_channel_types: Vec<u8>,
    #[serde(default)]
    page: Option<i64>,
    #[serde(default)]
    page_size: Option<i64>,
    #[serde(default)]
    larges: Option<Value>,
}

/// `channel_id:channel_type:last_msg_seq` items joined by `|`; malformed items are ignored, as the
/// format cannot express ids containing `:`.
fn parse_last_msg_seqs(raw: &str) -> HashMap<(String, u8), u64> {
    raw.split('|')
        .filter_map(|item| {
            let parts: Vec<&str> = item.split(':').collect();
            match parts.as_slice() {
                [id, ty, seq] if !id.is_empty() => Some(((id.to_string(), ty.parse().ok()?), seq.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

async fn sync(state: ApiState, dto: SyncDto) -> Result<warp::reply::Response, Rejection> {
    let _ = dto.larges;
    let uid = dto.uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("uid is required"))?;
    let msg_count = match dto.msg_count.unwrap_or(1) {
        n if n < 0 => return Err(ApiError::bad_request("msg_count must not be negative").into()),
        n if n > MAX_MSG_COUNT => return Err(ApiError::bad_request(format!("msg_count must be at most {MAX_MSG_COUNT}")).into()),
        n => n as usize,
    };
    let page = match dto.page.unwrap_or(0) {
        n if n < 0 => return Err(ApiError::bad_request("page must not be negative").into()),
        n => n as usize,
    };
    let page_size = match dto.page_size.unwrap_or(100) {
        n if n <= 0 => 100,
        n if n > MAX_PAGE_SIZE => return Err(ApiError::bad_request(format!("page_size must be at most {MAX_PAGE_SIZE}")).into()),
        n => n as usize,
    };
    let query = ConversationQuery {
        uid: uid.clone(),
        incremental: dto.version > 0 || dto.only_unread.0,
        client_seqs: parse_last_msg_seqs(dto.last_msg_seqs.as_deref().unwrap_or("")),
        recent: msg_count,
        only_unread: dto.only_unread.0,
        exclude_types: dto.exclude_channel_types,
        only: None,
    };
    let found = state.usecases.conversations(&query).await?;
    let chosen: Vec<Conversation> = if page >= 1 { found.into_iter().skip((page - 1) * page_size).take(page_size).collect() } else { found };
    let list = shown(&state, &Uid(uid), &chosen, msg_count).await?;
    Ok(warp::reply::json(&list).into_response())
}

/// Conversations as `/conversation/sync` shows them, with up to `msg_count` recent messages each.
async fn shown(state: &ApiState, viewer: &Uid, list: &[Conversation], msg_count: usize) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let mut recents = Vec::new();
        let shown_recent: Vec<rookery_events::Message> = c.recent.iter().take(msg_count).cloned().collect();
        // Only a channel with edits costs the actor another read.
        let edits = match shown_recent.first() {
            Some(m) if c.has_edits => state.usecases.edits(&m.channel, &shown_recent).await?,
            _ => Default::default(),
        };
        for m in &shown_recent {
            let mut v = message_json(m, Some(viewer));
            super::message::with_stream(state, m, &mut v, false).await?;
            if let Some((at, content)) = edits.get(&m.message_seq.0) {
                super::message::add_edit(&mut v, *at, content);
            }
            recents.push(v);
        }
        let newest = &c.recent[0];
        out.push(json!({
            "channel_id": c.channel_id,
            "channel_type": c.channel_type.0,
            "unread": c.unread,
            "timestamp": newest.timestamp.as_secs(),
            "last_msg_seq": newest.message_seq.0,
            "last_client_msg_no": newest.client_msg_no.0,
            "offset_msg_seq": 0,
            "readed_to_msg_seq": c.read_to_seq,
            "version": c.version,
            "recents": recents,
        }));
    }
    Ok(out)
}

/// A channel as these routes name it.
#[derive(Debug, Deserialize)]
struct ChannelRef {
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    channel_type: Option<u8>,
    #[serde(default)]
    last_msg_seq: Option<u64>,
}

/// Most channels one request may name.
const MAX_CHANNELS: usize = 1000;

fn channel_refs(raw: Option<Vec<ChannelRef>>) -> Result<Vec<(String, u8, u64)>, ApiError> {
    let raw = raw.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("channels must not be empty"))?;
    if raw.len() > MAX_CHANNELS {
        return Err(ApiError::bad_request(format!("channels may name at most {MAX_CHANNELS} channels")));
    }
    raw.into_iter()
        .map(|c| {
            let id = c.channel_id.filter(|i| !i.is_empty()).ok_or_else(|| ApiError::bad_request("every channel needs a channel_id"))?;
            let ty = crate::usecase::validate::channel_type(c.channel_type)?;
            Ok((id, ty.0, c.last_msg_seq.unwrap_or(0)))
        })
        .collect()
}

fn msg_count_of(raw: Option<i64>, default: usize) -> Result<usize, ApiError> {
    match raw {
        None | Some(0) => Ok(default),
        Some(n) if n < 0 => Err(ApiError::bad_request("msg_count must not be negative")),
        Some(n) if n > MAX_MSG_COUNT => Err(ApiError::bad_request(format!("msg_count must be at most {MAX_MSG_COUNT}"))),
        Some(n) => Ok(n as usize),
    }
}

#[derive(Debug, Deserialize)]
struct UidDto {
    uid: Option<String>,
}

/// `POST /conversation/channels` (`{uid}`): the channels of the user's conversations, newest first.
async fn channels(state: ApiState, dto: UidDto) -> Result<warp::reply::Response, Rejection> {
    let uid = dto.uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("uid is required"))?;
    let found = state.usecases.conversations(&ConversationQuery { uid, recent: 1, ..ConversationQuery::default() }).await?;
    let list: Vec<Value> = found.iter().map(|c| json!({"channel_id": c.channel_id, "channel_type": c.channel_type.0})).collect();
    Ok(warp::reply::json(&list).into_response())
}

#[derive(Debug, Deserialize)]
struct ByChannelsDto {
    uid: Option<String>,
    #[serde(default)]
    channels: Option<Vec<ChannelRef>>,
    #[serde(default)]
    msg_count: Option<i64>,
}

/// `POST /conversation/syncByChannels`: the named conversations as `/conversation/sync` shows them.
async fn sync_by_channels(state: ApiState, dto: ByChannelsDto) -> Result<warp::reply::Response, Rejection> {
    let uid = dto.uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("uid is required"))?;
    let named = channel_refs(dto.channels)?;
    let msg_count = msg_count_of(dto.msg_count, 15)?;
    let query = ConversationQuery {
        uid: uid.clone(),
        recent: msg_count,
        only: Some(named.into_iter().map(|(id, ty, _)| (id, ty)).collect()),
        ..ConversationQuery::default()
    };
    let found = state.usecases.conversations(&query).await?;
    Ok(warp::reply::json(&shown(&state, &Uid(uid), &found, msg_count).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct SyncMessagesDto {
    uid: Option<String>,
    #[serde(default)]
    channels: Option<Vec<ChannelRef>>,
    #[serde(default)]
    msg_count: Option<i64>,
    #[serde(default)]
    order_by_last: Flag,
}

/// `POST /conversation/syncMessages`: per named channel, its newest `msg_count` messages after
/// `last_msg_seq`, and the user's own last message seq there.
async fn sync_messages(state: ApiState, dto: SyncMessagesDto) -> Result<warp::reply::Response, Rejection> {
    let uid = dto.uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("uid is required"))?;
    crate::usecase::validate::uid("uid", &uid)?;
    let viewer = Uid(uid);
    let named = channel_refs(dto.channels)?;
    let msg_count = msg_count_of(dto.msg_count, 15)?;
    let mut out = Vec::with_capacity(named.len());
    for (id, ty, after) in named {
        let key = super::message::resolve_channel(&viewer, &id, rookery_events::ChannelType(ty))?;
        let recent = state.usecases.recent_messages(&viewer, &key, after, msg_count).await?;
        let mut messages = Vec::with_capacity(recent.messages.len());
        for m in &recent.messages {
            let mut v = message_json(m, Some(&viewer));
            if let Some(by) = recent.revoked.get(&m.message_seq.0) {
                v["revoke"] = json!(1);
                v["revoker"] = json!(by.0);
            } else {
                super::message::with_stream(&state, m, &mut v, false).await?;
            }
            messages.push(v);
        }
        if dto.order_by_last.0 {
            messages.reverse();
        }
        out.push(json!({"channel_id": id, "channel_type": ty, "messages": messages, "user_last_msg_seq": recent.own_last_seq}));
    }
    Ok(warp::reply::json(&out).into_response())
}

#[derive(Debug, Deserialize)]
struct ListDto {
    uid: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    completed_coverage: Option<i64>,
}

/// Page size of `/conversation/list` when `limit` is 0 or absent, and its largest.
const LIST_DEFAULT: i64 = 100;
const LIST_MAX: i64 = 1000;

/// Where a `/conversation/list` page ends: the last conversation's version, type and id.
fn encode_cursor(c: &Conversation) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}:{}", c.version, c.channel_type.0, c.channel_id))
}

fn decode_cursor(raw: &str) -> Result<(u64, u8, String), ApiError> {
    use base64::Engine as _;
    let bad = || ApiError::bad_request("cursor is not one this server gave");
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.as_bytes()).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let version = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let ty = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let id = parts.next().ok_or_else(bad)?.to_owned();
    Ok((version, ty, id))
}

/// `POST /conversation/list` (WuKongIM v3): the user's conversations, most recently changed first, a page
/// at a time behind an opaque cursor.
async fn list(state: ApiState, dto: ListDto) -> Result<warp::reply::Response, Rejection> {
    use base64::Engine as _;
    let _ = dto.completed_coverage;
    let uid = dto.uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("uid is required"))?;
    let limit = match dto.limit {
        None | Some(0) => LIST_DEFAULT,
        Some(n) if n < 0 => return Err(ApiError::bad_request("limit must not be negative").into()),
        Some(n) => n.min(LIST_MAX),
    } as usize;
    let after = dto.cursor.filter(|c| !c.is_empty()).map(|c| decode_cursor(&c)).transpose()?;
    let found = state.usecases.conversations(&ConversationQuery { uid, recent: 1, ..ConversationQuery::default() }).await?;
    // The list is ordered by version, newest first, then type and id: a page starts after the cursor.
    let order = |c: &Conversation| (std::cmp::Reverse(c.version), c.channel_type.0, c.channel_id.clone());
    let mut sorted = found;
    sorted.sort_by_key(order);
    let rest: Vec<Conversation> = match &after {
        None => sorted,
        Some((v, ty, id)) => {
            let key = (std::cmp::Reverse(*v), *ty, id.clone());
            sorted.into_iter().filter(|c| order(c) > key).collect()
        }
    };
    let done = rest.len() <= limit;
    let page: Vec<Conversation> = rest.into_iter().take(limit).collect();
    let items: Vec<Value> = page
        .iter()
        .map(|c| {
            let m = &c.recent[0];
            json!({
                "channel_id": c.channel_id,
                "channel_type": c.channel_type.0,
                "active_at": m.timestamp.0,
                "read_seq": c.read_to_seq,
                "deleted_to_seq": c.deleted_to_seq,
                "unread": c.unread,
                "last_message": {
                    "message_id": m.message_id.0,
                    "message_idstr": m.message_id.0.to_string(),
                    "message_seq": m.message_seq.0,
                    "from_uid": m.from_uid.0,
                    "client_msg_no": m.client_msg_no.0,
                    "server_timestamp_ms": m.timestamp.0,
                    "payload": base64::engine::general_purpose::STANDARD.encode(m.payload.bytes()),
                },
            })
        })
        .collect();
    let mut body = json!({
        "conversations": items,
        "deletes": [],
        "unresolved": [],
        "done": done,
        "coverage": 0,
        "tombstones_retained_since": 0,
        "reset_required": false,
    });
    if let (false, Some(last)) = (done, page.last()) {
        body["next_cursor"] = json!(encode_cursor(last));
    }
    Ok(warp::reply::json(&body).into_response())
}

#[derive(Debug, Deserialize)]
struct MarkDto {
    uid: Option<String>,
    channel_id: Option<String>,
    channel_type: Option<u8>,
    #[serde(default)]
    unread: Option<i64>,
    #[serde(default)]
    message_seq: Option<i64>,
}

#[derive(Clone, Copy)]
enum Mark {
    SetUnread,
    ClearUnread,
    Delete,
}

async fn mark(state: ApiState, origin: Origin, dto: MarkDto, what: Mark) -> Result<warp::reply::Response, Rejection> {
    let _ = dto.message_seq;
    let uid = dto.uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("uid is required"))?;
    let channel_id = dto.channel_id.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("channel_id is required"))?;
    let mark = match (what, dto.unread) {
        (Mark::SetUnread, None) => return Err(ApiError::bad_request("unread is required").into()),
        (Mark::SetUnread, Some(n)) if n < 0 => return Err(ApiError::bad_request("unread must not be negative").into()),
        (Mark::SetUnread, Some(n)) => ConversationMark::Unread(n as u64),
        (Mark::ClearUnread, _) => ConversationMark::Unread(0),
        (Mark::Delete, _) => ConversationMark::Delete,
    };
    state.usecases.mark_conversation(&uid, &channel_id, dto.channel_type, mark, origin).await?;
    Ok(ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_msg_seqs_ignores_malformed_items() {
        let m = parse_last_msg_seqs("u2:1:15|g1:2:230|bad|a:b:c|x:2");
        assert_eq!(m.len(), 2);
        assert_eq!(m[&("u2".to_string(), 1)], 15);
        assert_eq!(m[&("g1".to_string(), 2)], 230);
    }
}
