//! `GET /audit/state`: a channel or a user as it was at a past instant or log position; and
//! `POST /audit/erase`: erasing one user's message payloads (see `rookery_actors::erasure`).
//!
//! The state is rebuilt from that one aggregate's streams (see `rookery_actors::history`), on a
//! blocking thread because it reads the log.

use rookery_actors::history::{self, At, PastUser};
use rookery_events::{ChannelId, ChannelKey, ChannelState, Position, Uid};
use serde::Deserialize;
use serde_json::{json, Value};
use warp::{Filter, Rejection, Reply};

use rookery_actors::Origin;

use crate::timefmt::{format_time, parse_time};

use crate::http::{json_body, origin, with_state, ApiError, ApiState};
use crate::usecase::validate;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let past = warp::path!("audit" / "state").and(warp::get()).and(with_state(state.clone())).and(warp::query::<StateQuery>()).and_then(past_state);
    let erase = warp::path!("audit" / "erase").and(warp::post()).and(with_state(state.clone())).and(origin(state)).and(json_body()).and_then(erase);
    past.or(erase).unify()
}

/// `POST /audit/erase`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseDto {
    uid: Option<String>,
    channel_id: Option<String>,
    channel_type: Option<u8>,
    reason: Option<String>,
}

/// Longest accepted erasure reason.
const MAX_REASON: usize = 1024;

async fn erase(state: ApiState, origin: Origin, dto: EraseDto) -> Result<warp::reply::Response, Rejection> {
    let uid = dto.uid.ok_or_else(|| ApiError::bad_request("uid is required"))?;
    let uid = validate::uid("uid", &uid).map_err(ApiError::from)?;
    let reason = dto.reason.filter(|r| !r.trim().is_empty()).ok_or_else(|| ApiError::bad_request("reason is required (who asked, a ticket number)"))?;
    if reason.len() > MAX_REASON {
        return Err(ApiError::bad_request(format!("reason is longer than {MAX_REASON} bytes")).into());
    }
    let channels = match (dto.channel_id, dto.channel_type) {
        (Some(id), ty) => {
            let ty = validate::channel_type(ty)?;
            vec![validate::channel(&uid, &id, ty).map_err(ApiError::from)?]
        }
        (None, Some(_)) => return Err(ApiError::bad_request("channel_type without channel_id").into()),
        (None, None) => {
            let log = state.core.log().clone();
            let who = uid.clone();
            let found = tokio::task::spawn_blocking(move || rookery_actors::erasure::channels_with_messages_from(&*log, &who))
                .await
                .map_err(|e| ApiError { status: warp::http::StatusCode::INTERNAL_SERVER_ERROR, msg: format!("erasure scan failed: {e}") })?
                .map_err(ApiError::from)?;
            found.into_iter().collect()
        }
    };
    let mut results = Vec::new();
    let mut total = 0;
    for key in channels {
        let done = state.core.erase_payloads(&key, &uid, &reason, origin.clone()).await.map_err(ApiError::from)?;
        total += done.erased;
        results.push(json!({
            "channel_id": key.id.0,
            "channel_type": key.ty.0,
            "examined": done.examined,
            "erased": done.erased,
            "events": done.events.iter().map(|p| p.0).collect::<Vec<_>>(),
        }));
    }
    Ok(warp::reply::json(&json!({"status": 200, "uid": uid.0, "erased": total, "channels": results})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateQuery {
    /// A log position (digits) or an RFC 3339 time; the head when absent.
    at: Option<String>,
    channel_id: Option<String>,
    channel_type: Option<u8>,
    uid: Option<String>,
}

/// What the caller asked about.
enum Subject {
    Channel(ChannelKey),
    User(Uid),
}

/// Parses `at`: digits are a log position, anything else must be an RFC 3339 time.
pub(crate) fn parse_at(raw: Option<&str>) -> Result<At, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(At::Position(Position(u64::MAX)));
    };
    if raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.parse().map(|p| At::Position(Position(p))).map_err(|_| ApiError::bad_request(format!("log position {raw} is too large")));
    }
    parse_time("at", raw).map(At::Time).map_err(|e| ApiError::bad_request(format!("at must be a log position or an RFC 3339 time (2026-11-23T14:00:00Z): {e}")))
}

fn subject(q: &StateQuery) -> Result<Subject, ApiError> {
    match (&q.channel_id, q.channel_type, &q.uid) {
        (Some(id), ty, None) => {
            if id.is_empty() || id.len() > 257 {
                return Err(ApiError::bad_request("channel_id must be 1 to 257 bytes"));
            }
            Ok(Subject::Channel(ChannelKey { id: ChannelId(id.clone()), ty: validate::channel_type(ty)? }))
        }
        (None, None, Some(uid)) => Ok(Subject::User(validate::uid("uid", uid).map_err(ApiError::from)?)),
        (None, None, None) => Err(ApiError::bad_request("give channel_id and channel_type, or uid")),
        _ => Err(ApiError::bad_request("give either channel_id and channel_type, or uid, not both")),
    }
}

async fn past_state(state: ApiState, q: StateQuery) -> Result<warp::reply::Response, Rejection> {
    let at = parse_at(q.at.as_deref())?;
    let subject = subject(&q)?;
    let log = state.core.log().clone();
    let started = std::time::Instant::now();
    let body = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let log = &*log;
        let position = history::resolve(log, at).map_err(ApiError::from)?;
        let recorded_at = match position {
            Position::ZERO => None,
            p => log
                .read_range(p, 1)
                .ok()
                .and_then(|r| r.into_iter().next())
                .and_then(|r| rookery_events::EnvelopeBody::decode(&r.body).ok())
                .map(|b| b.meta.recorded_at),
        };
        let at_json = json!({"position": position.0, "recorded_at": recorded_at.map(format_time)});
        Ok(match subject {
            Subject::Channel(key) => {
                let past = history::channel_at(log, &key, At::Position(position)).map_err(ApiError::from)?;
                json!({
                    "at": at_json,
                    "channel": channel_json(&key, &past.state),
                    "events_replayed": past.events_replayed,
                    "from_snapshot": past.from_snapshot,
                })
            }
            Subject::User(uid) => {
                let past = history::user_at(log, &uid, At::Position(position)).map_err(ApiError::from)?;
                let mut user = user_json(&uid, &past);
                // A tenant's user: the account as it was then (absent before it was registered and after it was deleted).
                if let Some((tag, n)) = rookery_events::tenant_uid_parts(&uid) {
                    let tenant = history::tenant_at(log, tag, At::Position(position)).map_err(ApiError::from)?;
                    user["account"] = tenant.state.users.get(&n).map_or(Value::Null, |a| {
                        json!({
                            "tenant": tag, "n": n, "username": a.username, "profile": crate::audit::profile_json(&a.profile),
                            "ctime": format_time(a.ctime), "mtime": format_time(a.mtime),
                        })
                    });
                }
                json!({
                    "at": at_json,
                    "user": user,
                    "events_replayed": past.user.events_replayed,
                    "from_snapshot": past.user.from_snapshot,
                })
            }
        })
    })
    .await
    .map_err(|e| ApiError { status: warp::http::StatusCode::INTERNAL_SERVER_ERROR, msg: format!("state rebuild failed: {e}") })??;
    let mut body = body;
    body["elapsed_ms"] = json!(started.elapsed().as_secs_f64() * 1000.0);
    Ok(warp::reply::json(&body).into_response())
}

fn uids(set: &std::collections::BTreeSet<Uid>) -> Vec<&str> {
    set.iter().map(|u| u.0.as_str()).collect()
}

fn channel_json(key: &ChannelKey, s: &ChannelState) -> Value {
    json!({
        "channel_id": key.id.0,
        "channel_type": key.ty.0,
        "exists": s.exists,
        "deleted": s.deleted,
        "ban": s.info.ban,
        "disband": s.info.disband,
        "send_ban": s.info.send_ban,
        "large": s.info.large,
        "allow_stranger": s.info.allow_stranger,
        "subscribers": uids(&s.subscribers),
        "blacklist": uids(&s.blacklist),
        "whitelist": uids(&s.whitelist),
        "last_message_seq": s.last_message_seq.0,
        "last_command_seq": s.last_command_seq.0,
        "last_message_at": (s.last_message_at.0 > 0).then(|| format_time(s.last_message_at)),
        "group": s.group.as_ref().map(crate::audit::group_json),
        "notice": s.group.as_ref().map(|_| s.notice.as_str()),
        "changed_at_position": s.position.0,
    })
}

fn user_json(uid: &Uid, past: &PastUser) -> Value {
    let s = &past.user.state;
    let devices: Vec<Value> = s.tokens.iter().map(|(flag, t)| json!({"device_flag": flag.0, "device_level": t.level.0})).collect();
    // OpenIM platform tokens: which platforms have one and until when (never the hash).
    let platforms: Vec<Value> = s.platform_tokens.iter().map(|(p, t)| json!({"platform": p, "expires_at": format_time(t.expires_at)})).collect();
    let conversations: Vec<Value> = past
        .conversations
        .iter()
        .map(|c| json!({"channel_id": c.channel.id.0, "channel_type": c.channel.ty.0, "last_message_seq": c.last_message_seq, "unread": c.unread}))
        .collect();
    json!({
        "uid": uid.0,
        "system_uid": past.is_system,
        "devices": devices,
        "platform_tokens": platforms,
        "conversations": conversations,
        "pending_commands": s.pending_commands.len(),
        "changed_at_position": s.position.0,
    })
}
