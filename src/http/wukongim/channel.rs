//! Channels: `/channel` (create or update), `/channel/info`, `/channel/delete`,
//! `/channel/subscriber_add|remove`, `/channel/blacklist_add|remove|set`,
//! `/channel/whitelist_add|remove|set` and `GET /channel/whitelist`.
//!
//! A person-type key (`channel_type` 1) names one user's own settings, not a conversation: its
//! `channel_id` is that user's uid, so `blacklist_add {channel_id: "b", channel_type: 1, uids: ["a"]}`
//! means "b blocks a".

use rookery_actors::Origin;
use rookery_events::{ChannelCommand, ChannelInfo, ChannelKey, ChannelType, ListKind, ListOp};
use serde::Deserialize;
use warp::{Filter, Rejection, Reply};

use super::message::Flag;
use super::user::uid_list;
use crate::http::{json_body, ok, origin, with_state, ApiError, ApiState};
use crate::usecase::{validate, UseCases};

/// The channel routes, each answering a JSON response or a rejection for the family's error rendering.
pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let post = |s: &ApiState| warp::post().and(with_state(s.clone())).and(origin(s.clone()));
    let upsert = warp::path!("channel").and(post(&state)).and(json_body()).and_then(upsert);
    let info = warp::path!("channel" / "info").and(post(&state)).and(json_body()).and_then(set_info);
    let delete = warp::path!("channel" / "delete").and(post(&state)).and(json_body()).and_then(delete);
    let sub_add = warp::path!("channel" / "subscriber_add").and(post(&state)).and(json_body()).and_then(subscriber_add);
    let sub_remove = warp::path!("channel" / "subscriber_remove").and(post(&state)).and(json_body()).and_then(subscriber_remove);
    let sub_remove_all = warp::path!("channel" / "subscriber_remove_all").and(post(&state)).and(json_body()).and_then(subscriber_remove_all);
    let tmp_set = warp::path!("tmpchannel" / "subscriber_set").and(post(&state)).and(json_body()).and_then(tmp_subscriber_set);
    let clear = |name: &'static str, kind: ListKind| {
        warp::path("channel").and(warp::path(name)).and(warp::path::end()).and(post(&state)).and(json_body()).and_then(move |s, o, d| list_clear(s, o, d, kind))
    };
    let clears = clear("blacklist_remove_all", ListKind::Blacklist).or(clear("whitelist_remove_all", ListKind::Whitelist)).unify();
    let list = |name: &'static str, kind: ListKind, op: ListOpKind| {
        warp::path("channel")
            .and(warp::path(name))
            .and(warp::path::end())
            .and(post(&state))
            .and(json_body())
            .and_then(move |s, o, d| list_change(s, o, d, kind, op))
    };
    let lists = list("blacklist_add", ListKind::Blacklist, ListOpKind::Add)
        .or(list("blacklist_remove", ListKind::Blacklist, ListOpKind::Remove))
        .unify()
        .or(list("blacklist_set", ListKind::Blacklist, ListOpKind::Set))
        .unify()
        .or(list("whitelist_add", ListKind::Whitelist, ListOpKind::Add))
        .unify()
        .or(list("whitelist_remove", ListKind::Whitelist, ListOpKind::Remove))
        .unify()
        .or(list("whitelist_set", ListKind::Whitelist, ListOpKind::Set))
        .unify();
    let whitelist = warp::path!("channel" / "whitelist").and(warp::get()).and(with_state(state)).and(warp::query::<ListQuery>()).and_then(whitelist);
    upsert
        .or(info)
        .unify()
        .or(delete)
        .unify()
        .or(sub_add)
        .unify()
        .or(sub_remove)
        .unify()
        .or(sub_remove_all)
        .unify()
        .or(tmp_set)
        .unify()
        .or(lists)
        .unify()
        .or(clears)
        .unify()
        .or(whitelist)
        .unify()
}

/// `POST /channel` and `POST /channel/info` body (`/channel/info` takes no subscribers or reset).
#[derive(Debug, Deserialize)]
struct ChannelDto {
    channel_id: Option<String>,
    channel_type: Option<i64>,
    #[serde(default)]
    subscribers: Option<Vec<String>>,
    #[serde(default)]
    reset: Flag,
    #[serde(default)]
    large: Flag,
    #[serde(default)]
    ban: Flag,
    #[serde(default)]
    disband: Flag,
    #[serde(default)]
    send_ban: Flag,
    #[serde(default)]
    allow_stranger: Flag,
}

/// `POST /channel/delete` body.
#[derive(Debug, Deserialize)]
struct KeyDto {
    channel_id: Option<String>,
    channel_type: Option<i64>,
}

/// Subscriber changes.
#[derive(Debug, Deserialize)]
struct SubscribersDto {
    channel_id: Option<String>,
    channel_type: Option<i64>,
    #[serde(default)]
    reset: Flag,
    /// Temporary subscribers are no longer supported (v2 answers 400 too).
    #[serde(default)]
    temp_subscriber: Flag,
    subscribers: Option<Vec<String>>,
}

/// Deny/allow list changes.
#[derive(Debug, Deserialize)]
struct ListDto {
    channel_id: Option<String>,
    channel_type: Option<i64>,
    uids: Option<Vec<String>>,
}

/// `GET /channel/whitelist` query.
#[derive(Debug, Deserialize)]
struct ListQuery {
    channel_id: Option<String>,
    channel_type: Option<i64>,
}

/// The channel a request names: a valid id and a known type (no `a@b` ids: person-type keys name a
/// user).
fn channel_key(id: Option<String>, ty: Option<i64>) -> Result<ChannelKey, ApiError> {
    let id = id.ok_or_else(|| ApiError::bad_request("channel_id is required"))?;
    Ok(UseCases::channel_key(&id, ty)?)
}

impl ChannelDto {
    fn info(&self) -> ChannelInfo {
        ChannelInfo { ban: self.ban.0, disband: self.disband.0, send_ban: self.send_ban.0, large: self.large.0, allow_stranger: self.allow_stranger.0 }
    }
}

async fn upsert(state: ApiState, origin: Origin, dto: ChannelDto) -> Result<warp::reply::Response, Rejection> {
    let info = dto.info();
    let key = channel_key(dto.channel_id, dto.channel_type)?;
    let subscribers = uid_list("subscribers", dto.subscribers, true)?;
    state.usecases.change_channel(&key, ChannelCommand::Upsert { info, subscribers, reset: dto.reset.0 }, origin).await?;
    Ok(ok())
}

async fn set_info(state: ApiState, origin: Origin, dto: ChannelDto) -> Result<warp::reply::Response, Rejection> {
    if dto.subscribers.is_some() || dto.reset.0 {
        return Err(ApiError::bad_request("/channel/info takes no subscribers or reset; use /channel or /channel/subscriber_add").into());
    }
    let info = dto.info();
    let key = channel_key(dto.channel_id, dto.channel_type)?;
    state.usecases.change_channel(&key, ChannelCommand::SetInfo(info), origin).await?;
    Ok(ok())
}

async fn delete(state: ApiState, origin: Origin, dto: KeyDto) -> Result<warp::reply::Response, Rejection> {
    let key = channel_key(dto.channel_id, dto.channel_type)?;
    state.usecases.change_channel(&key, ChannelCommand::Delete, origin).await?;
    Ok(ok())
}

async fn subscriber_add(state: ApiState, origin: Origin, dto: SubscribersDto) -> Result<warp::reply::Response, Rejection> {
    // v2 treats a missing or zero channel_type as a group here.
    let ty = dto.channel_type.filter(|t| *t != 0).or(Some(i64::from(ChannelType::GROUP.0)));
    let key = channel_key(dto.channel_id, ty)?;
    if dto.temp_subscriber.0 {
        return Err(ApiError::bad_request("temp_subscriber is no longer supported").into());
    }
    validate::may_have_subscribers(key.ty)?;
    let uids = uid_list("subscribers", dto.subscribers, false)?;
    state.usecases.change_channel(&key, ChannelCommand::AddSubscribers { uids, reset: dto.reset.0 }, origin).await?;
    Ok(ok())
}

/// `POST /tmpchannel/subscriber_set` body (WuKongIM v2).
#[derive(Debug, Deserialize)]
struct TmpSubscribersDto {
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    uids: Option<Vec<String>>,
}

/// `POST /tmpchannel/subscriber_set` (`{channel_id, uids}`): the temp channel (type 8) of that id has
/// exactly these subscribers from now on (made if it is new).
async fn tmp_subscriber_set(state: ApiState, origin: Origin, dto: TmpSubscribersDto) -> Result<warp::reply::Response, Rejection> {
    let key = channel_key(dto.channel_id, Some(i64::from(ChannelType::TEMP.0)))?;
    let uids = uid_list("uids", dto.uids, false)?;
    state.usecases.change_channel(&key, ChannelCommand::AddSubscribers { uids, reset: true }, origin).await?;
    Ok(ok())
}

async fn subscriber_remove(state: ApiState, origin: Origin, dto: SubscribersDto) -> Result<warp::reply::Response, Rejection> {
    let key = channel_key(dto.channel_id, dto.channel_type)?;
    if dto.reset.0 {
        return Err(ApiError::bad_request("reset is not accepted by /channel/subscriber_remove").into());
    }
    validate::may_have_subscribers(key.ty)?;
    let uids = uid_list("subscribers", dto.subscribers, false)?;
    state.usecases.change_channel(&key, ChannelCommand::RemoveSubscribers(uids), origin).await?;
    Ok(ok())
}

/// `POST /channel/subscriber_remove_all` (`{channel_id, channel_type}`): every subscriber leaves; the
/// channel stays (an unknown channel is 404, a person channel 400).
async fn subscriber_remove_all(state: ApiState, origin: Origin, dto: KeyDto) -> Result<warp::reply::Response, Rejection> {
    let key = channel_key(dto.channel_id, dto.channel_type)?;
    validate::may_have_subscribers(key.ty)?;
    state.usecases.remove_all_subscribers(&key, origin).await?;
    Ok(ok())
}

/// `POST /channel/blacklist_remove_all`, `/channel/whitelist_remove_all` (`{channel_id, channel_type}`):
/// the list emptied.
async fn list_clear(state: ApiState, origin: Origin, dto: KeyDto, kind: ListKind) -> Result<warp::reply::Response, Rejection> {
    let key = channel_key(dto.channel_id, dto.channel_type)?;
    state.usecases.change_channel(&key, ChannelCommand::List(kind, ListOp::Set(Vec::new())), origin).await?;
    Ok(ok())
}

/// The three list operations a path can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListOpKind {
    Add,
    Remove,
    Set,
}

async fn list_change(state: ApiState, origin: Origin, dto: ListDto, kind: ListKind, op: ListOpKind) -> Result<warp::reply::Response, Rejection> {
    let key = channel_key(dto.channel_id, dto.channel_type)?;
    // `*_set` with no uids clears the list; add and remove need at least one.
    let uids = uid_list("uids", dto.uids, op == ListOpKind::Set)?;
    let op = match op {
        ListOpKind::Add => ListOp::Add(uids),
        ListOpKind::Remove => ListOp::Remove(uids),
        ListOpKind::Set => ListOp::Set(uids),
    };
    state.usecases.change_channel(&key, ChannelCommand::List(kind, op), origin).await?;
    Ok(ok())
}

/// The allowlist as a plain array of uids, sorted (a channel that does not exist has none).
async fn whitelist(state: ApiState, q: ListQuery) -> Result<warp::reply::Response, Rejection> {
    let key = channel_key(q.channel_id, q.channel_type)?;
    let found = state.usecases.whitelist(&key).await?;
    let uids: Vec<&str> = found.iter().map(|u| u.as_str()).collect();
    Ok(warp::reply::json(&uids).into_response())
}
