//! Users and system accounts: `/user/token`, `/user/device_quit`, `/user/onlinestatus`,
//! `/user/systemuids_add|remove` (and the seed-000 paths `/systemuids_add|remove`) and
//! `GET /user/systemuids`.

use rookery_actors::Origin;
use rookery_events::{ChannelKey, ChannelType, DeviceFlag, DeviceLevel, SystemCommand, Uid, UserCommand, SYSTEM_UID};
use serde::{Deserialize, Serialize};
use serde_json::json;
use warp::{Filter, Rejection, Reply};

use super::message::check_id;
use crate::gateway::packet::ReasonCode;
use crate::gateway::session::Kick;
use super::{json_body, ok, origin, with_state, ApiError, ApiState};

/// Most uids one request may name.
const MAX_UIDS: usize = 10_000;
/// The protocol's reason code for a banned user, which v2 answers `/user/token` with.
const REASON_BAN: u16 = 19;

/// The user and system-uid routes, each answering a JSON response or a rejection for [`super::recover`].
pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let token = warp::path!("user" / "token").and(warp::post()).and(with_state(state.clone())).and(origin(state.clone())).and(json_body()).and_then(token);
    let quit = warp::path!("user" / "device_quit")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(origin(state.clone()))
        .and(json_body())
        .and_then(device_quit);
    let online = warp::path!("user" / "onlinestatus").and(warp::post()).and(with_state(state.clone())).and(json_body()).and_then(online_status);
    let add_path = warp::path!("user" / "systemuids_add").or(warp::path!("systemuids_add")).unify();
    let add = add_path
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(origin(state.clone()))
        .and(json_body())
        .and_then(|s, o, d: SystemUidsDto| system_uids(s, o, d, true));
    let remove_path = warp::path!("user" / "systemuids_remove").or(warp::path!("systemuids_remove")).unify();
    let remove = remove_path
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(origin(state.clone()))
        .and(json_body())
        .and_then(|s, o, d: SystemUidsDto| system_uids(s, o, d, false));
    let list = warp::path!("user" / "systemuids").and(warp::get()).and(with_state(state)).map(list_system_uids);
    token.or(quit).unify().or(online).unify().or(add).unify().or(remove).unify().or(list).unify()
}

/// `POST /user/token` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenDto {
    uid: Option<String>,
    token: Option<String>,
    /// 0 app, 1 web, 2 desktop.
    #[serde(default)]
    device_flag: Option<i64>,
    /// 0 slave, 1 master.
    #[serde(default)]
    device_level: Option<i64>,
}

/// `POST /user/device_quit` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceQuitDto {
    uid: Option<String>,
    /// 0 app, 1 web, 2 desktop, -1 every device.
    device_flag: Option<i64>,
}

/// Body of the system-uid mutations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemUidsDto {
    uids: Option<Vec<String>>,
}

/// One online session in `/user/onlinestatus`.
#[derive(Debug, Serialize)]
struct OnlineSession {
    uid: String,
    device_flag: u8,
    online: u8,
}

/// A uid a client may own: a valid id that is not the built-in system account.
fn client_uid(raw: Option<String>) -> Result<Uid, ApiError> {
    let uid = raw.ok_or_else(|| ApiError::bad_request("uid is required"))?;
    check_id("uid", &uid)?;
    if uid == SYSTEM_UID {
        return Err(ApiError::bad_request("uid must not be the system uid"));
    }
    Ok(Uid(uid))
}

/// A small non-negative code from a JSON integer, named in the error.
fn code(what: &str, raw: Option<i64>, default: u8, max: u8) -> Result<u8, ApiError> {
    match raw {
        None => Ok(default),
        Some(n) if (0..=i64::from(max)).contains(&n) => Ok(n as u8),
        Some(n) => Err(ApiError::bad_request(format!("{what} must be between 0 and {max}, got {n}"))),
    }
}

/// Checks a list of uids: present, non-empty, at most [`MAX_UIDS`], each a valid id.
pub(crate) fn uid_list(what: &str, raw: Option<Vec<String>>, allow_empty: bool) -> Result<Vec<Uid>, ApiError> {
    let uids = raw.unwrap_or_default();
    if uids.is_empty() && !allow_empty {
        return Err(ApiError::bad_request(format!("{what} must not be empty")));
    }
    if uids.len() > MAX_UIDS {
        return Err(ApiError::bad_request(format!("{what} may name at most {MAX_UIDS} uids")));
    }
    for uid in &uids {
        check_id(what, uid)?;
    }
    Ok(uids.into_iter().map(Uid).collect())
}

async fn token(state: ApiState, origin: Origin, dto: TokenDto) -> Result<warp::reply::Response, Rejection> {
    let uid = client_uid(dto.uid)?;
    let token = dto.token.filter(|t| !t.is_empty()).ok_or_else(|| ApiError::bad_request("token is required"))?;
    if token.len() > 1024 {
        return Err(ApiError::bad_request("token is longer than 1024 bytes").into());
    }
    let device_flag = DeviceFlag(code("device_flag", dto.device_flag, 0, 2)?);
    let device_level = DeviceLevel(code("device_level", dto.device_level, 0, 1)?);
    // A banned user (its person channel has `ban`) gets v2's answer: HTTP 200 with reason code 19,
    // and the token is not stored.
    let own = state.core.channel_state(&ChannelKey::new(uid.0.clone(), ChannelType::PERSON)).await.map_err(ApiError::from)?;
    if own.info.ban {
        return Ok(warp::reply::json(&json!({"status": REASON_BAN, "msg": "user is banned"})).into_response());
    }
    state.core.user(&uid, UserCommand::SetToken { device_flag, device_level, token }, origin).await.map_err(ApiError::from)?;
    // WuKongIM v2: a master token replaces the device's current sessions (DISCONNECT 12).
    if device_level == DeviceLevel::MASTER {
        let n = state.presence.kick_device(&uid, Some(device_flag.0), &Kick::replaced());
        tracing::debug!(uid = %uid, device_flag = device_flag.0, kicked = n, "master token set");
    }
    Ok(ok())
}

async fn device_quit(state: ApiState, origin: Origin, dto: DeviceQuitDto) -> Result<warp::reply::Response, Rejection> {
    let uid = client_uid(dto.uid)?;
    let flag = match dto.device_flag {
        None => return Err(ApiError::bad_request("device_flag is required (-1 for every device)").into()),
        Some(-1) => None,
        Some(n) => Some(DeviceFlag(code("device_flag", Some(n), 0, 2)?)),
    };
    state.core.user(&uid, UserCommand::QuitDevice(flag), origin).await.map_err(ApiError::from)?;
    // The token is gone; its sessions go too, with DISCONNECT 12 so that SDKs stop reconnecting.
    let quit = Kick::Disconnect { reason_code: ReasonCode::CONNECT_KICK, reason: "device quit".into() };
    let n = state.presence.kick_device(&uid, flag.map(|f| f.0), &quit);
    tracing::debug!(uid = %uid, kicked = n, "device quit");
    Ok(ok())
}

/// Online sessions of the given uids: one element per authenticated WKProto session.
async fn online_status(state: ApiState, uids: Vec<String>) -> Result<warp::reply::Response, Rejection> {
    let uids = uid_list("uids", Some(uids), true)?;
    let sessions: Vec<OnlineSession> =
        state.presence.online_devices(&uids).into_iter().map(|(uid, device_flag)| OnlineSession { uid: uid.0, device_flag, online: 1 }).collect();
    Ok(warp::reply::json(&sessions).into_response())
}

async fn system_uids(state: ApiState, origin: Origin, dto: SystemUidsDto, add: bool) -> Result<warp::reply::Response, Rejection> {
    let uids = uid_list("uids", dto.uids, false)?;
    let cmd = if add { SystemCommand::AddSystemUids(uids) } else { SystemCommand::RemoveSystemUids(uids) };
    state.core.system(cmd, origin).await.map_err(ApiError::from)?;
    Ok(ok())
}

/// The added system uids (the built-in `____system` is always one and is not listed).
fn list_system_uids(state: ApiState) -> warp::reply::Response {
    let view = state.core.system_view();
    let uids: Vec<&str> = view.system_uids.iter().map(Uid::as_str).collect();
    warp::reply::json(&uids).into_response()
}
