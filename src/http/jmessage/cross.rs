//! Cross-app routes (`/v1/cross/...`, `/cross/chatroom/...`): this app's groups, rooms and users'
//! blacklists naming users of the apps in its `cross_apps` (and its own). Uids are server-wide, so a
//! user of another app is a member or a blacklisted sender like any other.
//!
//! Friendships and no-disturb settings are kept by number inside one app; their cross-app routes are
//! refused with 899003 and say so.

use rookery_events::{tenant_uid_parts, GroupCommand, Uid};
use serde_json::{json, Value};
use warp::{Filter, Rejection, Reply};

use super::fields::{self, kind};
use super::users::{find, find_all_in, user_json};
use super::{ctx, jm_json, no_content, Ctx, JmError};
use crate::http::ApiState;
use crate::timefmt::format_civil;
use crate::usecase::{AccountView, Circle, GroupView};

/// Most users one cross-app item may name.
const MAX_NAMES: usize = 500;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let c = || ctx(state.clone());
    let group_members = warp::path!("v1" / "cross" / "groups" / String / "members")
        .and(warp::post())
        .and(c())
        .and(jm_json())
        .and_then(|g, c, b| members(g, c, b, Circle::Group));
    let room_members =
        warp::path!("cross" / "chatroom" / String / "members").and(warp::post()).and(c()).and(jm_json()).and_then(|g, c, b| members(g, c, b, Circle::Room));
    let group_list = warp::path!("v1" / "cross" / "groups" / String / "members").and(warp::get()).and(c()).and_then(member_list);
    let user_groups = warp::path!("v1" / "cross" / "users" / String / "groups").and(warp::get()).and(c()).and_then(user_groups);
    let bl_add = warp::path!("v1" / "cross" / "users" / String / "blacklist")
        .and(warp::put())
        .and(c())
        .and(jm_json())
        .and_then(|u, c, b| blacklist_change(u, c, b, true));
    let bl_remove = warp::path!("v1" / "cross" / "users" / String / "blacklist")
        .and(warp::delete())
        .and(c())
        .and(jm_json())
        .and_then(|u, c, b| blacklist_change(u, c, b, false));
    let bl_get = warp::path!("v1" / "cross" / "users" / String / "blacklist").and(warp::get()).and(c()).and_then(blacklist);
    let unsupported = warp::path!("v1" / "cross" / "users" / String / String).and(c()).and_then(|_u: String, what: String, _c: Ctx| async move {
        let message = match what.as_str() {
            "friends" => "cross-app friends are not kept by this server: friendships are within one app",
            "nodisturb" => "cross-app no-disturb is not kept by this server: no-disturb names users and groups of one app",
            _ => return Err(warp::reject::not_found()),
        };
        Err::<warp::reply::Response, Rejection>(JmError::bad_request(message).into())
    });
    group_members
        .or(room_members)
        .unify()
        .or(group_list)
        .unify()
        .or(user_groups)
        .unify()
        .or(bl_add)
        .unify()
        .or(bl_remove)
        .unify()
        .or(bl_get)
        .unify()
        .or(unsupported)
        .unify()
}

/// The tag of the app `appkey` names, which this app may name.
fn tag_of<'a>(c: &'a Ctx, item: &serde_json::Map<String, Value>) -> Result<&'a str, JmError> {
    let appkey = match item.get("appkey") {
        Some(Value::String(k)) => k,
        None | Some(Value::Null) => return Err(JmError::bad_request("appkey is required in each item")),
        Some(other) => return Err(JmError::bad_request(format!("appkey must be a string, got {}", kind(other)))),
    };
    c.app.tag_of(appkey).ok_or_else(|| JmError::bad_request(format!("appkey {:?} is not this app's nor one of its cross_apps", appkey.trim())))
}

/// The uids of `names` in the app `tag`, or 899002 naming the first unknown one.
async fn uids_in(c: &Ctx, tag: &str, names: Vec<String>) -> Result<Vec<Uid>, JmError> {
    Ok(find_all_in(c, tag, names).await?.into_iter().map(|a| a.uid).collect())
}

fn name_list(item: &serde_json::Map<String, Value>, field: &str) -> Result<Vec<String>, JmError> {
    match item.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= MAX_NAMES => items.iter().map(fields::username_value).collect(),
        Some(Value::Array(_)) => Err(JmError::bad_request(format!("{field} may name at most {MAX_NAMES} users"))),
        Some(other) => Err(JmError::bad_request(format!("{field} must be an array of usernames, got {}", kind(other)))),
    }
}

fn items(body: &Value) -> Result<&Vec<Value>, JmError> {
    match body {
        Value::Array(items) if !items.is_empty() && items.len() <= 16 => Ok(items),
        Value::Array(_) => Err(JmError::bad_request("give 1 to 16 items")),
        other => Err(JmError::bad_request(format!("the body must be a json array of items, got {}", kind(other)))),
    }
}

/// `POST /v1/cross/groups/{gid}/members` and `POST /cross/chatroom/{room_id}/members` with
/// `[{"appkey","add","remove"}]`; 204, all or nothing.
async fn members(raw: String, c: Ctx, body: Value, circle: Circle) -> Result<warp::reply::Response, Rejection> {
    let n = fields::path_number(&raw, "the id")?;
    let mut add = Vec::new();
    let mut remove = Vec::new();
    for item in items(&body)? {
        let item = fields::object(item, "each item")?;
        let tag = tag_of(&c, item)?.to_owned();
        let (a, r) = (name_list(item, "add")?, name_list(item, "remove")?);
        add.extend(uids_in(&c, &tag, a).await?);
        remove.extend(uids_in(&c, &tag, r).await?);
    }
    if add.is_empty() && remove.is_empty() {
        return Err(JmError::bad_request("give add or remove").into());
    }
    c.state.usecases.group(&c.app.tag, circle, n).await.map_err(JmError::from_group)?;
    c.state.usecases.change_group(&c.app.tag, circle, n, GroupCommand::Members { add, remove }, c.origin).await.map_err(JmError::from_group)?;
    Ok(no_content())
}

/// The accounts behind `uids`, of this app and its cross apps, each with its app's appkey.
async fn accounts_of(c: &Ctx, uids: &[Uid]) -> Result<Vec<(AccountView, String)>, JmError> {
    let mut out = Vec::new();
    let mut by_tag: std::collections::BTreeMap<String, Vec<u64>> = std::collections::BTreeMap::new();
    for u in uids {
        if let Some((tag, n)) = tenant_uid_parts(u) {
            if c.app.appkey_of(tag).is_some() {
                by_tag.entry(tag.to_owned()).or_default().push(n);
            }
        }
    }
    for (tag, ns) in by_tag {
        let appkey = c.app.appkey_of(&tag).unwrap_or_default().to_owned();
        let found = c.state.usecases.accounts_numbered(&tag, ns).await.map_err(JmError::from_usecase)?;
        out.extend(found.into_iter().flatten().map(|a| (a, appkey.clone())));
    }
    Ok(out)
}

/// `GET /v1/cross/groups/{gid}/members/`: members of every app this app may name, with `flag` and `appkey`.
async fn member_list(raw: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let n = fields::path_number(&raw, "gid")?;
    let g = c.state.usecases.group(&c.app.tag, Circle::Group, n).await.map_err(JmError::from_group)?;
    let mut accounts = accounts_of(&c, &g.members).await?;
    accounts.sort_by(|(a, _), (b, _)| (a.uid != g.profile.owner).cmp(&(b.uid != g.profile.owner)).then(a.uid.cmp(&b.uid)));
    let out: Vec<Value> = accounts
        .iter()
        .map(|(a, appkey)| {
            let mut u = user_json(a);
            u["flag"] = json!(u8::from(a.uid == g.profile.owner));
            u["appkey"] = json!(appkey);
            u
        })
        .collect();
    Ok(warp::reply::json(&out).into_response())
}

fn group_json(g: &GroupView, appkey: &str) -> Value {
    json!({
        "gid": g.n, "name": g.profile.name, "desc": g.profile.desc, "appkey": appkey, "max_member_count": g.profile.max_members,
        "MaxMemberCount": g.profile.max_members, "mtime": format_civil(g.profile.mtime), "ctime": format_civil(g.profile.ctime),
    })
}

/// `GET /v1/cross/users/{username}/groups`: the user's groups in this app and in its cross apps.
async fn user_groups(username: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let user = find(&c, &username).await?;
    let mut tags = vec![(c.app.tag.clone(), c.app.appkey.clone())];
    tags.extend(c.app.cross.iter().map(|(k, t)| (t.clone(), k.clone())));
    let mut out = Vec::new();
    for (tag, appkey) in tags {
        for g in c.state.usecases.groups_of(&tag, &user.uid).await.map_err(JmError::from_group)? {
            out.push(group_json(&g, &appkey));
        }
    }
    Ok(warp::reply::json(&out).into_response())
}

/// `PUT|DELETE /v1/cross/users/{username}/blacklist` with `[{"appkey","usernames"}]`; 204.
async fn blacklist_change(username: String, c: Ctx, body: Value, add: bool) -> Result<warp::reply::Response, Rejection> {
    let owner = find(&c, &username).await?;
    let mut listed = Vec::new();
    for item in items(&body)? {
        let item = fields::object(item, "each item")?;
        let tag = tag_of(&c, item)?.to_owned();
        let names = name_list(item, "usernames")?;
        if names.is_empty() {
            return Err(JmError::bad_request("usernames must name at least one user").into());
        }
        listed.extend(uids_in(&c, &tag, names).await?);
    }
    c.state.usecases.change_blacklist(&owner.uid, listed, add, c.origin).await.map_err(JmError::from_usecase)?;
    Ok(no_content())
}

/// `GET /v1/cross/users/{username}/blacklist`: listed users of every app this app may name, with `appkey`.
async fn blacklist(username: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let owner = find(&c, &username).await?;
    let listed: Vec<Uid> = c.state.usecases.blacklist_of(&owner.uid).await.map_err(JmError::from_usecase)?.into_iter().collect();
    let out: Vec<Value> = accounts_of(&c, &listed)
        .await?
        .iter()
        .map(|(a, appkey)| {
            let mut u = user_json(a);
            u["appkey"] = json!(appkey);
            u
        })
        .collect();
    Ok(warp::reply::json(&out).into_response())
}
