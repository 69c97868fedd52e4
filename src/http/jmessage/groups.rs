//! Groups: create, read, update, delete, members (v1 and v2), a user's groups, the app's groups,
//! silence and owner transfer (`/v1/groups/...`, `/v2/groups/...`, `/groups/...`).

use rookery_events::{GroupCommand, GroupPatch, Uid, MUTED_UNTIL_LIFTED};
use serde_json::{json, Map, Value};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::fields::{self, kind};
use super::users::{find, find_all, page, user_json, PageQuery};
use super::{ctx, jm_json, no_content, Ctx, JmError};
use crate::http::ApiState;
use crate::timefmt::format_civil;
use crate::usecase::{Circle, GroupSpec, GroupView};

/// Most members a group created here may have (the document's `MaxMemberCount`).
pub const MAX_MEMBERS: u32 = 500;
/// Most groups one page of the group list may hold.
pub const MAX_PAGE: usize = 500;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let c = || ctx(state.clone());
    let create = warp::path!("v1" / "groups").and(warp::post()).and(c()).and(jm_json()).and_then(create);
    let list = warp::path!("v1" / "groups").and(warp::get()).and(c()).and(warp::query::<PageQuery>()).and_then(list);
    let get = warp::path!("v1" / "groups" / String).and(warp::get()).and(c()).and_then(get);
    let update = warp::path!("v1" / "groups" / String).and(warp::put()).and(c()).and(jm_json()).and_then(update);
    let delete = warp::path!("v1" / "groups" / String).and(warp::delete()).and(c()).and_then(delete);
    let members = warp::path!("v1" / "groups" / String / "members").and(warp::post()).and(c()).and(jm_json()).and_then(members_v1);
    let add = warp::path!("v2" / "groups" / String / "addMembers").and(warp::post()).and(c()).and(jm_json()).and_then(|g, c, b| members_v2(g, c, b, true));
    let remove = warp::path!("v2" / "groups" / String / "delMembers").and(warp::post()).and(c()).and(jm_json()).and_then(|g, c, b| members_v2(g, c, b, false));
    let member_list = warp::path!("v1" / "groups" / String / "members").and(warp::get()).and(c()).and_then(member_list);
    let of_user = warp::path!("v1" / "users" / String / "groups").and(warp::get()).and(c()).and_then(of_user);
    let silence = warp::path!("groups" / "messages" / String / "silence")
        .and(warp::put())
        .and(c())
        .and(warp::query::<fields::StatusQuery>())
        .and(jm_json())
        .and_then(silence);
    let owner = warp::path!("groups" / "owner" / String).and(warp::put()).and(c()).and(jm_json()).and_then(owner);
    create
        .or(list)
        .unify()
        .or(get)
        .unify()
        .or(update)
        .unify()
        .or(delete)
        .unify()
        .or(members)
        .unify()
        .or(add)
        .unify()
        .or(remove)
        .unify()
        .or(member_list)
        .unify()
        .or(of_user)
        .unify()
        .or(silence)
        .unify()
        .or(owner)
        .unify()
}

/// A gid from the path.
fn gid(raw: &str) -> Result<u64, JmError> {
    fields::path_number(raw, "gid")
}

/// A group as the document shows it.
fn group_json(c: &Ctx, g: &GroupView) -> Value {
    let p = &g.profile;
    let mut out = json!({
        "gid": g.n,
        "name": p.name,
        "desc": p.desc,
        "appkey": c.app.appkey,
        "MaxMemberCount": p.max_members,
        "mtime": format_civil(p.mtime),
        "ctime": format_civil(p.ctime),
        "flag": if p.public { 2 } else { 1 },
    });
    if !p.avatar.is_empty() {
        out["avatar"] = json!(p.avatar);
    }
    out
}

async fn live_group(c: &Ctx, raw: &str) -> Result<GroupView, JmError> {
    c.state.usecases.group(&c.app.tag, Circle::Group, gid(raw)?).await.map_err(JmError::from_group)
}

/// The usernames of `uids` that are users of this app (others, such as uids added through the
/// WuKongIM API, have no username here), with their accounts.
async fn usernames_of(c: &Ctx, uids: &[Uid]) -> Result<Vec<crate::usecase::AccountView>, JmError> {
    let ns: Vec<u64> = uids.iter().filter_map(|u| rookery_events::tenant_uid_parts(u).filter(|(t, _)| *t == c.app.tag).map(|(_, n)| n)).collect();
    let found = c.state.usecases.accounts_numbered(&c.app.tag, ns).await.map_err(JmError::from_usecase)?;
    Ok(found.into_iter().flatten().collect())
}

/// A list of usernames inside an object (`members_username`, `add`, `remove`): absent is empty.
fn name_list(obj: &Map<String, Value>, field: &str, max: usize) -> Result<Vec<String>, JmError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= max => items.iter().map(fields::username_value).collect(),
        Some(Value::Array(_)) => Err(JmError::bad_request(format!("{field} may name at most {max} users"))),
        Some(other) => Err(JmError::bad_request(format!("{field} must be an array of usernames, got {}", kind(other)))),
    }
}

/// `POST /v1/groups/`: 201 with the new group.
async fn create(c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let obj = fields::object(&body, "the body")?;
    let owner_name = match obj.get("owner_username") {
        None | Some(Value::Null) => return Err(JmError::bad_request("owner_username is required").into()),
        Some(v) => fields::username_value(v)?,
    };
    let name = fields::text(obj, "name", fields::MAX_SHORT_TEXT, true)?.ok_or_else(|| JmError::bad_request("name is required"))?;
    let desc = fields::text(obj, "desc", fields::MAX_TEXT, false)?.unwrap_or_default();
    let avatar = fields::text(obj, "avatar", fields::MAX_TEXT, false)?.unwrap_or_default();
    let public = match fields::small_int(obj, "flag", 1..=2)? {
        None | Some(1) => false,
        Some(_) => true,
    };
    let member_names = name_list(obj, "members_username", MAX_MEMBERS as usize)?;
    let owner = find(&c, &owner_name).await?;
    let members = find_all(&c, member_names.clone()).await?;
    let spec = GroupSpec {
        owner: owner.uid.clone(),
        members: members.iter().map(|a| a.uid.clone()).collect(),
        managers: Vec::new(),
        notice: String::new(),
        name: name.clone(),
        desc: desc.clone(),
        avatar: avatar.clone(),
        public,
        max_members: MAX_MEMBERS,
    };
    let n = c.state.usecases.create_group(&c.app.tag, Circle::Group, spec, c.origin.clone()).await.map_err(JmError::from_group)?;
    let mut out = json!({
        "gid": n, "owner_username": owner_name, "name": name, "members_username": member_names, "desc": desc,
        "MaxMemberCount": MAX_MEMBERS, "flag": if public { 2 } else { 1 },
    });
    if !avatar.is_empty() {
        out["avatar"] = json!(avatar);
    }
    Ok(warp::reply::with_status(warp::reply::json(&out), StatusCode::CREATED).into_response())
}

/// `GET /v1/groups/{gid}`.
async fn get(raw: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let g = live_group(&c, &raw).await?;
    Ok(warp::reply::json(&group_json(&c, &g)).into_response())
}

/// `PUT /v1/groups/{gid}` with any of `name`, `desc`, `avatar`; 204.
async fn update(raw: String, c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let n = gid(&raw)?;
    let obj = fields::object(&body, "the body")?;
    let patch = GroupPatch {
        name: fields::text(obj, "name", fields::MAX_SHORT_TEXT, true)?,
        desc: fields::text(obj, "desc", fields::MAX_TEXT, false)?,
        avatar: fields::text(obj, "avatar", fields::MAX_TEXT, false)?,
    };
    if patch == GroupPatch::default() {
        return Err(JmError::bad_request("give name, desc or avatar").into());
    }
    c.state.usecases.update_group(&c.app.tag, Circle::Group, n, patch, c.origin).await.map_err(JmError::from_group)?;
    Ok(no_content())
}

/// `DELETE /v1/groups/{gid}`; 204.
async fn delete(raw: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let n = gid(&raw)?;
    c.state.usecases.delete_group(&c.app.tag, Circle::Group, n, c.origin).await.map_err(JmError::from_group)?;
    Ok(no_content())
}

async fn change_members(c: Ctx, n: u64, add: Vec<String>, remove: Vec<String>) -> Result<warp::reply::Response, Rejection> {
    if add.is_empty() && remove.is_empty() {
        return Err(JmError::bad_request("give add or remove").into());
    }
    // The group first (899006), then the users (899002), then the group's own rules.
    c.state.usecases.group(&c.app.tag, Circle::Group, n).await.map_err(JmError::from_group)?;
    let add: Vec<Uid> = find_all(&c, add).await?.into_iter().map(|a| a.uid).collect();
    let remove: Vec<Uid> = find_all(&c, remove).await?.into_iter().map(|a| a.uid).collect();
    c.state.usecases.change_group(&c.app.tag, Circle::Group, n, GroupCommand::Members { add, remove }, c.origin).await.map_err(JmError::from_group)?;
    Ok(no_content())
}

/// `POST /v1/groups/{gid}/members` with `add` and/or `remove`; 204.
async fn members_v1(raw: String, c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let n = gid(&raw)?;
    let obj = fields::object(&body, "the body")?;
    let add = name_list(obj, "add", MAX_MEMBERS as usize)?;
    let remove = name_list(obj, "remove", MAX_MEMBERS as usize)?;
    change_members(c, n, add, remove).await
}

/// `POST /v2/groups/{gid}/addMembers` and `/delMembers` with an array of usernames; 204.
async fn members_v2(raw: String, c: Ctx, body: Value, add: bool) -> Result<warp::reply::Response, Rejection> {
    let n = gid(&raw)?;
    let names = fields::usernames(&body, MAX_MEMBERS as usize)?;
    if add {
        change_members(c, n, names, Vec::new()).await
    } else {
        change_members(c, n, Vec::new(), names).await
    }
}

/// `GET /v1/groups/{gid}/members/`: user objects with `flag` 1 for the owner, 0 for the others.
async fn member_list(raw: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let g = live_group(&c, &raw).await?;
    let mut accounts = usernames_of(&c, &g.members).await?;
    accounts.sort_by_key(|a| (a.uid != g.profile.owner, a.n));
    let out: Vec<Value> = accounts
        .iter()
        .map(|a| {
            let mut u = user_json(a);
            u["flag"] = json!(u8::from(a.uid == g.profile.owner));
            u
        })
        .collect();
    Ok(warp::reply::json(&out).into_response())
}

/// `GET /v1/users/{username}/groups/`.
async fn of_user(username: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let user = find(&c, &username).await?;
    let groups = c.state.usecases.groups_of(&c.app.tag, &user.uid).await.map_err(JmError::from_group)?;
    Ok(warp::reply::json(&groups.iter().map(|g| group_json(&c, g)).collect::<Vec<_>>()).into_response())
}

/// `GET /v1/groups/?start=&count=`: the app's groups by number.
async fn list(c: Ctx, q: PageQuery) -> Result<warp::reply::Response, Rejection> {
    let (start, count) = page(q.start.as_deref(), q.count.as_deref(), MAX_PAGE)?;
    let (total, groups) = c.state.usecases.group_page(&c.app.tag, Circle::Group, start, count).await.map_err(JmError::from_group)?;
    let groups: Vec<Value> = groups.iter().map(|g| group_json(&c, g)).collect();
    Ok(warp::reply::json(&json!({"total": total, "start": start, "count": groups.len(), "groups": groups})).into_response())
}

/// `PUT /groups/messages/{gid}/silence?status=true|false` with usernames: silenced members cannot send
/// to the group until the silence is lifted; 204.
async fn silence(raw: String, c: Ctx, q: fields::StatusQuery, body: Value) -> Result<warp::reply::Response, Rejection> {
    let n = gid(&raw)?;
    let on = fields::switch(q.status.as_deref(), "status", "true", "false")?;
    let names = fields::usernames(&body, MAX_MEMBERS as usize)?;
    c.state.usecases.group(&c.app.tag, Circle::Group, n).await.map_err(JmError::from_group)?;
    let uids = find_all(&c, names).await?.into_iter().map(|a| a.uid).collect();
    let until = on.then_some(MUTED_UNTIL_LIFTED);
    c.state.usecases.change_group(&c.app.tag, Circle::Group, n, GroupCommand::Mute { uids, until }, c.origin).await.map_err(JmError::from_group)?;
    Ok(no_content())
}

/// `PUT /groups/owner/{gid}` with `username` (and optionally this app's own `appkey`): the member
/// becomes the owner, the old owner stays a member; 204.
async fn owner(raw: String, c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let n = gid(&raw)?;
    let obj = fields::object(&body, "the body")?;
    if let Some(appkey) = obj.get("appkey").filter(|v| !v.is_null()) {
        match appkey.as_str() {
            Some(k) if k.eq_ignore_ascii_case(&c.app.appkey) => {}
            Some(_) => return Err(JmError::bad_request("the new owner must be a user of this app").into()),
            None => return Err(JmError::bad_request(format!("appkey must be a string, got {}", kind(appkey))).into()),
        }
    }
    let name = match obj.get("username") {
        None | Some(Value::Null) => return Err(JmError::bad_request("username is required").into()),
        Some(v) => fields::username_value(v)?,
    };
    c.state.usecases.group(&c.app.tag, Circle::Group, n).await.map_err(JmError::from_group)?;
    let to = find(&c, &name).await?;
    c.state.usecases.change_group(&c.app.tag, Circle::Group, n, GroupCommand::TransferOwner(to.uid), c.origin).await.map_err(JmError::from_group)?;
    Ok(no_content())
}
