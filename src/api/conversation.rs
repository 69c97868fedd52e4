//! The server-kept conversation list: `/conversation/sync`, `/conversations/setUnread`,
//! `/conversations/clearUnread`, `/conversations/delete`.

use std::collections::HashMap;

use rookery_actors::Origin;
use rookery_events::{person_channel_parties, ChannelKey, ChannelState, ChannelType, ConversationMarks, Uid, UserCommand, SYSTEM_UID};
use serde::Deserialize;
use serde_json::{json, Value};
use warp::{Filter, Rejection, Reply};

use super::message::{channel_type, message_json, resolve_channel, Flag};
use super::{json_body, ok, origin, with_state, ApiError, ApiState};

/// Largest `msg_count` (recent messages per conversation).
const MAX_MSG_COUNT: i64 = 100;
/// Largest page of a paged sync.
const MAX_PAGE_SIZE: i64 = 500;
/// Most conversations one sync considers (newest first).
const MAX_CONVERSATIONS: usize = 1000;

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

/// The id the user knows a channel by: the peer for person channels.
fn client_id(key: &ChannelKey, uid: &Uid) -> String {
    match (key.ty, person_channel_parties(&key.id)) {
        (ChannelType::PERSON, Some((a, b))) => if a == *uid { b.0 } else { a.0 },
        _ => key.id.0.clone(),
    }
}

async fn sync(state: ApiState, dto: SyncDto) -> Result<warp::reply::Response, Rejection> {
    let _ = dto.larges;
    let uid = Uid(dto.uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("uid is required"))?);
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
    let client_seqs = parse_last_msg_seqs(dto.last_msg_seqs.as_deref().unwrap_or(""));
    let incremental = dto.version > 0 || dto.only_unread.0;
    let user = state.core.user_state(&uid).await.map_err(ApiError::from)?;
    let system = state.core.system_view();

    let mut candidates: Vec<(&ChannelKey, &ConversationMarks, Option<u64>)> = Vec::new();
    for (key, marks) in &user.conversations {
        if !marks.is_member() || !ChannelState::has_conversations(key.ty) {
            continue;
        }
        let cid = client_id(key, &uid);
        if key.ty == ChannelType::PERSON && (cid == SYSTEM_UID || system.is_system(&Uid(cid.clone()))) {
            continue;
        }
        let client_seq = client_seqs.get(&(cid, key.ty.0)).copied();
        if dto.exclude_channel_types.contains(&key.ty.0) && client_seq.is_none() {
            continue;
        }
        candidates.push((key, marks, client_seq));
    }

    let mut out = Vec::new();
    for (key, marks, client_seq) in candidates {
        let view = state.core.channel_view(key, &uid).await.map_err(ApiError::from)?;
        let last = view.mark;
        let read_base = marks.read_base(view.own_last_sent);
        let mut bound = match client_seq {
            Some(l) if l > 0 => l,
            _ if incremental => read_base.seq.0,
            _ => 0,
        };
        bound = bound.max(marks.deleted_at.seq.0);
        if last.seq.0 <= bound {
            continue;
        }
        let unread = marks.unread(last, view.own_last_sent);
        if dto.only_unread.0 && unread == 0 {
            continue;
        }
        let (core, k) = (state.core.clone(), key.clone());
        let (from, to, fetch) = (bound + 1, last.seq.0, msg_count.max(1));
        let recents = tokio::task::spawn_blocking(move || core.messages_at(&k, from, to, fetch, true, false))
            .await
            .map_err(|e| ApiError { status: warp::http::StatusCode::INTERNAL_SERVER_ERROR, msg: e.to_string() })?
            .map_err(ApiError::from)?;
        let Some((newest_position, newest)) = recents.first() else { continue };
        let version = newest_position.0.max(marks.changed_at.0);
        let shown: Vec<Value> = recents.iter().take(msg_count).map(|(_, m)| message_json(m, Some(&uid))).collect();
        out.push((
            version,
            json!({
                "channel_id": client_id(key, &uid),
                "channel_type": key.ty.0,
                "unread": unread,
                "timestamp": newest.timestamp.as_secs(),
                "last_msg_seq": newest.message_seq.0,
                "last_client_msg_no": newest.client_msg_no.0,
                "offset_msg_seq": 0,
                "readed_to_msg_seq": read_base.seq.0.min(last.seq.0),
                "version": version,
                "recents": shown,
            }),
        ));
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    out.truncate(MAX_CONVERSATIONS);
    let list: Vec<Value> = if page >= 1 { out.into_iter().skip((page - 1) * page_size).take(page_size).map(|(_, v)| v).collect() } else { out.into_iter().map(|(_, v)| v).collect() };
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
    let uid = Uid(dto.uid.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::bad_request("uid is required"))?);
    let channel_id = dto.channel_id.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("channel_id is required"))?;
    let ty = channel_type(dto.channel_type)?;
    let key = resolve_channel(&uid, &channel_id, ty)?;
    let unread = match (what, dto.unread) {
        (Mark::SetUnread, None) => return Err(ApiError::bad_request("unread is required").into()),
        (Mark::SetUnread, Some(n)) if n < 0 => return Err(ApiError::bad_request("unread must not be negative").into()),
        (_, n) => n.unwrap_or(0) as u64,
    };
    let view = state.core.channel_view(&key, &uid).await.map_err(ApiError::from)?;
    if !view.exists && view.mark.seq.0 == 0 {
        return Err(ApiError::not_found(format!("channel {channel_id} of type {} has no messages and does not exist", ty.0)).into());
    }
    let cmd = match what {
        Mark::SetUnread => UserCommand::SetUnread { channel: key, unread, at: view.mark },
        Mark::ClearUnread => UserCommand::SetUnread { channel: key, unread: 0, at: view.mark },
        Mark::Delete => UserCommand::DeleteConversation { channel: key, at: view.mark },
    };
    state.core.user(&uid, cmd, origin).await.map_err(ApiError::from)?;
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
