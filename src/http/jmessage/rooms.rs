//! Chatrooms: create, details, a user's rooms, the app's rooms, update, delete, forbidden members,
//! and members (`/v1/chatroom...`, `/v1/users/{username}/chatroom`).
//!
//! A chatroom is the live channel `<tag>#r<id>` (type 9): its members receive what is sent to it and
//! nobody gets a conversation for it. It has the group rules (owner always a member, strict member
//! changes), at most 10,000 members, and `forbidden` members who cannot send until released.

use rookery_events::{GroupCommand, GroupPatch, Uid, MUTED_UNTIL_LIFTED};
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::fields::{self, kind};
use super::users::{find, find_all, page, PageQuery};
use super::{ctx, jm_json, no_content, Ctx, JmError};
use crate::http::ApiState;
use crate::timefmt::format_civil;
use crate::usecase::{Circle, GroupSpec, GroupView};

/// Most members a chatroom may have.
pub const MAX_ROOM_MEMBERS: u32 = 10_000;
/// Most users one member change may name.
pub const MAX_CHANGE: usize = 3000;
/// Most rooms or members one page may hold.
pub const MAX_PAGE: usize = 500;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let c = || ctx(state.clone());
    let create = warp::path!("v1" / "chatroom").and(warp::post()).and(c()).and(jm_json()).and_then(create);
    let list = warp::path!("v1" / "chatroom").and(warp::get()).and(c()).and(warp::query::<PageQuery>()).and_then(list);
    let batch = warp::path!("v1" / "chatroom" / "batch").and(warp::post()).and(c()).and(jm_json()).and_then(batch);
    let of_user = warp::path!("v1" / "users" / String / "chatroom").and(warp::get()).and(c()).and_then(of_user);
    let update = warp::path!("v1" / "chatroom" / String).and(warp::put()).and(c()).and(jm_json()).and_then(update);
    let delete = warp::path!("v1" / "chatroom" / String).and(warp::delete()).and(c()).and_then(delete);
    let forbidden =
        warp::path!("v1" / "chatroom" / String / "forbidden" / String).and(warp::put()).and(c()).and(warp::query::<fields::StatusQuery>()).and_then(forbidden);
    let members = warp::path!("v1" / "chatroom" / String / "members").and(warp::get()).and(c()).and(warp::query::<PageQuery>()).and_then(members);
    let add = warp::path!("v1" / "chatroom" / String / "members").and(warp::put()).and(c()).and(jm_json()).and_then(|r, c, b| change(r, c, b, true));
    let remove = warp::path!("v1" / "chatroom" / String / "members").and(warp::delete()).and(c()).and(jm_json()).and_then(|r, c, b| change(r, c, b, false));
    create
        .or(list)
        .unify()
        .or(batch)
        .unify()
        .or(of_user)
        .unify()
        .or(update)
        .unify()
        .or(delete)
        .unify()
        .or(forbidden)
        .unify()
        .or(members)
        .unify()
        .or(add)
        .unify()
        .or(remove)
        .unify()
}

fn room_id(raw: &str) -> Result<u64, JmError> {
    fields::path_number(raw, "room_id")
}

async fn live_room(c: &Ctx, n: u64) -> Result<GroupView, JmError> {
    c.state.usecases.group(&c.app.tag, Circle::Room, n).await.map_err(JmError::from_group)
}

/// A room as the document shows it.
async fn room_json(c: &Ctx, g: &GroupView) -> Result<Value, JmError> {
    let owner =
        c.state.usecases.accounts_numbered(&c.app.tag, rookery_events::tenant_uid_parts(&g.profile.owner).map(|(_, n)| vec![n]).unwrap_or_default()).await;
    let owner = owner.map_err(JmError::from_usecase)?.into_iter().flatten().next().map(|a| a.username).unwrap_or_default();
    Ok(json!({
        "id": g.n, "owner_username": owner, "max_member_count": g.profile.max_members, "appkey": c.app.appkey,
        "name": g.profile.name, "description": g.profile.desc, "total_member_count": g.members.len(), "ctime": format_civil(g.profile.ctime),
    }))
}

/// `POST /v1/chatroom/` with `owner_username`, `name` (required), `description`, `members_username`:
/// 201 `{"chatroom_id"}`.
async fn create(c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let obj = fields::object(&body, "the body")?;
    let owner = match obj.get("owner_username") {
        None | Some(Value::Null) => return Err(JmError::bad_request("owner_username is required").into()),
        Some(v) => fields::username_value(v)?,
    };
    let name = fields::text(obj, "name", fields::MAX_SHORT_TEXT, true)?.ok_or_else(|| JmError::bad_request("name is required"))?;
    let desc = fields::text(obj, "description", fields::MAX_TEXT, false)?.unwrap_or_default();
    let member_names = match obj.get("members_username") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_CHANGE => items.iter().map(fields::username_value).collect::<Result<_, _>>()?,
        Some(Value::Array(_)) => return Err(JmError::bad_request(format!("members_username may name at most {MAX_CHANGE} users")).into()),
        Some(other) => return Err(JmError::bad_request(format!("members_username must be an array, got {}", kind(other))).into()),
    };
    let owner = find(&c, &owner).await?;
    let members = find_all(&c, member_names).await?.into_iter().map(|a| a.uid).collect();
    let spec = GroupSpec {
        owner: owner.uid,
        members,
        managers: Vec::new(),
        notice: String::new(),
        name,
        desc,
        avatar: String::new(),
        public: true,
        max_members: MAX_ROOM_MEMBERS,
    };
    let n = c.state.usecases.create_group(&c.app.tag, Circle::Room, spec, c.origin).await.map_err(JmError::from_group)?;
    Ok(warp::reply::with_status(warp::reply::json(&json!({"chatroom_id": n})), StatusCode::CREATED).into_response())
}

/// `POST /v1/chatroom/batch` with room ids: the details of those that exist.
async fn batch(c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let Value::Array(items) = &body else {
        return Err(JmError::bad_request(format!("the body must be a json array of room ids, got {}", kind(&body))).into());
    };
    if items.is_empty() || items.len() > MAX_PAGE {
        return Err(JmError::bad_request(format!("give 1 to {MAX_PAGE} room ids")).into());
    }
    let ids = items
        .iter()
        .map(|v| v.as_u64().filter(|n| *n > 0).ok_or_else(|| JmError::bad_request(format!("a room id must be a positive whole number, got {v}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for n in ids {
        match c.state.usecases.group(&c.app.tag, Circle::Room, n).await {
            Ok(g) => out.push(room_json(&c, &g).await?),
            Err(crate::usecase::Error::NotFound(_)) => {}
            Err(e) => return Err(JmError::from_group(e).into()),
        }
    }
    Ok(warp::reply::json(&out).into_response())
}

/// `GET /v1/users/{username}/chatroom`.
async fn of_user(username: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let user = find(&c, &username).await?;
    let rooms = c.state.usecases.rooms_of(&c.app.tag, &user.uid).await.map_err(JmError::from_group)?;
    let mut out = Vec::with_capacity(rooms.len());
    for g in &rooms {
        out.push(room_json(&c, g).await?);
    }
    Ok(warp::reply::json(&out).into_response())
}

/// `GET /v1/chatroom?start=&count=`: `{"total","rooms","start","count"}`.
async fn list(c: Ctx, q: PageQuery) -> Result<warp::reply::Response, Rejection> {
    let (start, count) = page(q.start.as_deref(), q.count.as_deref(), MAX_PAGE)?;
    let (total, rooms) = c.state.usecases.group_page(&c.app.tag, Circle::Room, start, count).await.map_err(JmError::from_group)?;
    let mut out = Vec::with_capacity(rooms.len());
    for g in &rooms {
        out.push(room_json(&c, g).await?);
    }
    Ok(warp::reply::json(&json!({"total": total, "rooms": out, "start": start, "count": rooms.len()})).into_response())
}

/// `PUT /v1/chatroom/{room_id}` with any of `owner_username` (a member, who becomes the owner),
/// `name`, `description`; 204.
async fn update(raw: String, c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let n = room_id(&raw)?;
    let obj = fields::object(&body, "the body")?;
    let patch = GroupPatch {
        name: fields::text(obj, "name", fields::MAX_SHORT_TEXT, true)?,
        desc: fields::text(obj, "description", fields::MAX_TEXT, false)?,
        avatar: None,
    };
    let owner = match obj.get("owner_username") {
        None | Some(Value::Null) => None,
        Some(v) => Some(fields::username_value(v)?),
    };
    if patch == GroupPatch::default() && owner.is_none() {
        return Err(JmError::bad_request("give owner_username, name or description").into());
    }
    live_room(&c, n).await?;
    let owner = match owner {
        Some(name) => Some(find(&c, &name).await?.uid),
        None => None,
    };
    if let Some(to) = owner {
        c.state.usecases.change_group(&c.app.tag, Circle::Room, n, GroupCommand::TransferOwner(to), c.origin.clone()).await.map_err(JmError::from_group)?;
    }
    if patch != GroupPatch::default() {
        c.state.usecases.update_group(&c.app.tag, Circle::Room, n, patch, c.origin).await.map_err(JmError::from_group)?;
    }
    Ok(no_content())
}

/// `DELETE /v1/chatroom/{room_id}`; 204.
async fn delete(raw: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let n = room_id(&raw)?;
    c.state.usecases.delete_group(&c.app.tag, Circle::Room, n, c.origin).await.map_err(JmError::from_group)?;
    Ok(no_content())
}

/// `PUT /v1/chatroom/{room_id}/forbidden/{username}?status=0|1`: a forbidden member cannot send to the
/// room until released; 204.
async fn forbidden(raw: String, username: String, c: Ctx, q: fields::StatusQuery) -> Result<warp::reply::Response, Rejection> {
    let n = room_id(&raw)?;
    let until = fields::switch(q.status.as_deref(), "status", "1", "0")?.then_some(MUTED_UNTIL_LIFTED);
    live_room(&c, n).await?;
    let user = find(&c, &username).await?;
    c.state
        .usecases
        .change_group(&c.app.tag, Circle::Room, n, GroupCommand::Mute { uids: vec![user.uid], until }, c.origin)
        .await
        .map_err(JmError::from_group)?;
    Ok(no_content())
}

/// `GET /v1/chatroom/{room_id}/members?start=&count=`: members by user number, with `flag` 1 when
/// forbidden and `room_ctime` when they joined.
async fn members(raw: String, c: Ctx, q: PageQuery) -> Result<warp::reply::Response, Rejection> {
    let n = room_id(&raw)?;
    let (start, count) = page(q.start.as_deref(), q.count.as_deref(), MAX_PAGE)?;
    let g = live_room(&c, n).await?;
    let mut ns: Vec<(u64, Uid)> =
        g.members.iter().filter_map(|u| rookery_events::tenant_uid_parts(u).filter(|(t, _)| *t == c.app.tag).map(|(_, n)| (n, u.clone()))).collect();
    ns.sort_unstable_by_key(|(n, _)| *n);
    let total = ns.len();
    let page: Vec<(u64, Uid)> = ns.into_iter().skip(start).take(count).collect();
    let accounts = c.state.usecases.accounts_numbered(&c.app.tag, page.iter().map(|(n, _)| *n).collect()).await.map_err(JmError::from_usecase)?;
    let users: Vec<Value> = page
        .iter()
        .zip(accounts)
        .filter_map(|((_, uid), a)| {
            let a = a?;
            let muted = g.profile.muted.contains_key(uid);
            let joined = g.joined_at.get(uid).copied().unwrap_or(g.profile.ctime);
            Some(json!({"username": a.username, "flag": u8::from(muted), "room_ctime": format_civil(joined), "mtime": format_civil(a.mtime), "ctime": format_civil(a.ctime)}))
        })
        .collect();
    Ok(warp::reply::json(&json!({"total": total, "users": users, "count": users.len(), "start": start})).into_response())
}

/// `PUT|DELETE /v1/chatroom/{room_id}/members` with up to 3000 usernames; 204.
async fn change(raw: String, c: Ctx, body: Value, add: bool) -> Result<warp::reply::Response, Rejection> {
    let n = room_id(&raw)?;
    let names = fields::usernames(&body, MAX_CHANGE)?;
    live_room(&c, n).await?;
    let uids: Vec<Uid> = find_all(&c, names).await?.into_iter().map(|a| a.uid).collect();
    let cmd = if add { GroupCommand::Members { add: uids, remove: Vec::new() } } else { GroupCommand::Members { add: Vec::new(), remove: uids } };
    c.state.usecases.change_group(&c.app.tag, Circle::Room, n, cmd, c.origin).await.map_err(JmError::from_group)?;
    Ok(no_content())
}
