//! The server-kept conversation list: `/conversation/sync`, `/conversations/setUnread`,
//! `/conversations/clearUnread`, `/conversations/delete`.

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
        .and(origin(state))
        .and(json_body())
        .and_then(|s, o, d: MarkDto| mark(s, o, d, Mark::Delete));
    sync.or(set_unread).unify().or(clear_unread).unify().or(delete).unify()
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
    };
    let found = state.usecases.conversations(&query).await?;
    let viewer = Uid(uid);
    let shown = |c: Conversation| {
        let newest = &c.recent[0];
        json!({
            "channel_id": c.channel_id,
            "channel_type": c.channel_type.0,
            "unread": c.unread,
            "timestamp": newest.timestamp.as_secs(),
            "last_msg_seq": newest.message_seq.0,
            "last_client_msg_no": newest.client_msg_no.0,
            "offset_msg_seq": 0,
            "readed_to_msg_seq": c.read_to_seq,
            "version": c.version,
            "recents": c.recent.iter().take(msg_count).map(|m| message_json(m, Some(&viewer))).collect::<Vec<_>>(),
        })
    };
    let list: Vec<Value> =
        if page >= 1 { found.into_iter().skip((page - 1) * page_size).take(page_size).map(shown).collect() } else { found.into_iter().map(shown).collect() };
    Ok(warp::reply::json(&list).into_response())
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
