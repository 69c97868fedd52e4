//! Users and system accounts: `/user/token`, `/user/device_quit`, `/user/onlinestatus`,
//! `/user/systemuids_add|remove` (and the seed-000 paths `/systemuids_add|remove`) and
//! `GET /user/systemuids`.

use rookery_actors::Origin;
use rookery_events::{DeviceFlag, DeviceLevel, SystemCommand, Uid};
use serde::{Deserialize, Serialize};
use serde_json::json;
use warp::{Filter, Rejection, Reply};

use crate::http::{json_body, ok, origin, with_state, ApiError, ApiState};
use crate::usecase::TokenSet;

/// The protocol's reason code for a banned user, which v2 answers `/user/token` with.
const REASON_BAN: u16 = 19;

/// The user and system-uid routes, each answering a JSON response or a rejection for the family's error rendering.
pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let token = warp::path!("user" / "token").and(warp::post()).and(with_state(state.clone())).and(origin(state.clone())).and(json_body()).and_then(token);
    let quit =
        warp::path!("user" / "device_quit").and(warp::post()).and(with_state(state.clone())).and(origin(state.clone())).and(json_body()).and_then(device_quit);
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
    let list = warp::path!("user" / "systemuids").and(warp::get()).and(with_state(state.clone())).map(list_system_uids);
    let conn = |name: &'static str, tell: bool| {
        warp::path("conn")
            .and(warp::path(name))
            .and(warp::path::end())
            .and(warp::post())
            .and(with_state(state.clone()))
            .and(origin(state.clone()))
            .and(json_body())
            .and_then(move |s, o, d| end_connection(s, o, d, tell))
    };
    let conns = conn("kick", true).or(conn("remove", false)).unify();
    token.or(quit).unify().or(online).unify().or(add).unify().or(remove).unify().or(list).unify().or(conns).unify()
}

/// `POST /user/token` body.
#[derive(Debug, Deserialize)]
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

/// `POST /conn/kick` and `/conn/remove` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnDto {
    uid: Option<String>,
    conn_id: Option<i64>,
    /// The node the connection is on: this server's (or absent).
    #[serde(default)]
    node_id: Option<u64>,
    /// The node that asks (cluster bookkeeping in WuKongIM; ignored by a single node).
    #[serde(default)]
    op_node_id: Option<u64>,
}

/// `POST /user/device_quit` body.
#[derive(Debug, Deserialize)]
struct DeviceQuitDto {
    uid: Option<String>,
    /// 0 app, 1 web, 2 desktop, -1 every device.
    device_flag: Option<i64>,
}

/// Body of the system-uid mutations.
#[derive(Debug, Deserialize)]
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

/// A small non-negative code from a JSON integer, named in the error.
fn code(what: &str, raw: Option<i64>, default: u8, max: u8) -> Result<u8, ApiError> {
    match raw {
        None => Ok(default),
        Some(n) if (0..=i64::from(max)).contains(&n) => Ok(n as u8),
        Some(n) => Err(ApiError::bad_request(format!("{what} must be between 0 and {max}, got {n}"))),
    }
}

/// Checks a list of uids: present, non-empty unless `allow_empty`, at most 10,000, each a valid id.
pub(crate) fn uid_list(what: &str, raw: Option<Vec<String>>, allow_empty: bool) -> Result<Vec<Uid>, ApiError> {
    Ok(crate::usecase::validate::uids(what, raw.unwrap_or_default(), allow_empty)?)
}

async fn token(state: ApiState, origin: Origin, dto: TokenDto) -> Result<warp::reply::Response, Rejection> {
    let uid = dto.uid.ok_or_else(|| ApiError::bad_request("uid is required"))?;
    let token = dto.token.unwrap_or_default();
    let device_flag = DeviceFlag(code("device_flag", dto.device_flag, 0, 2)?);
    let device_level = DeviceLevel(code("device_level", dto.device_level, 0, 1)?);
    match state.usecases.set_token(&uid, &token, device_flag, device_level, origin).await? {
        TokenSet::Set => Ok(ok()),
        // v2's answer to a banned user: HTTP 200 with reason code 19, and the token is not stored.
        TokenSet::Banned => Ok(warp::reply::json(&json!({"status": REASON_BAN, "msg": "user is banned"})).into_response()),
    }
}

async fn device_quit(state: ApiState, origin: Origin, dto: DeviceQuitDto) -> Result<warp::reply::Response, Rejection> {
    let uid = dto.uid.ok_or_else(|| ApiError::bad_request("uid is required"))?;
    let flag = match dto.device_flag {
        None => return Err(ApiError::bad_request("device_flag is required (-1 for every device)").into()),
        Some(-1) => None,
        Some(n) => Some(DeviceFlag(code("device_flag", Some(n), 0, 2)?)),
    };
    state.usecases.quit_device(&uid, flag, origin).await?;
    Ok(ok())
}

/// `POST /conn/kick` (the client is told and stops reconnecting) and `POST /conn/remove` (closed; the
/// client reconnects): one connection of `uid` by its `conn_id`.
async fn end_connection(state: ApiState, origin: Origin, dto: ConnDto, tell: bool) -> Result<warp::reply::Response, Rejection> {
    let uid = dto.uid.ok_or_else(|| ApiError::bad_request("uid is required"))?;
    let conn_id = match dto.conn_id {
        Some(n) if n >= 0 => n as u64,
        Some(n) => return Err(ApiError::bad_request(format!("conn_id must not be negative, got {n}")).into()),
        None => return Err(ApiError::bad_request("conn_id is required").into()),
    };
    if let Some(node) = dto.node_id.filter(|n| *n != 0 && *n != crate::config::NODE_ID) {
        return Err(
            ApiError { status: warp::http::StatusCode::NOT_FOUND, msg: format!("node {node} is not this server (node {})", crate::config::NODE_ID) }.into()
        );
    }
    let _ = dto.op_node_id;
    if !state.usecases.end_connection(&uid, conn_id, tell)? {
        return Err(ApiError { status: warp::http::StatusCode::NOT_FOUND, msg: format!("{uid} has no connection {conn_id}") }.into());
    }
    tracing::info!(actor = ?origin.actor, uid, conn_id, kick = tell, "connection ended through the API");
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
