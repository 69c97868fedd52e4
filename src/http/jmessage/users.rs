//! Users: register, read, update, list, online state, password, delete, disable, and the user's
//! blacklist (`/v1/users/...`).

use rookery_events::{DeviceFlag, Uid};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::fields::{self, kind};
use super::{ctx, jm_json, no_content, Ctx, JmError, USER_EXISTS, USER_NOT_FOUND};
use crate::http::ApiState;
use crate::timefmt::format_civil;
use crate::usecase::{AccountView, Signup};

/// Most users one registration may carry.
pub const MAX_REGISTER: usize = 500;
/// Most users one batch delete may name.
pub const MAX_DELETE: usize = 100;
/// Most users one page of the user list may hold.
pub const MAX_PAGE: usize = 500;
/// Most users one online-state query or blacklist change may name.
pub const MAX_LIST: usize = 500;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let c = || ctx(state.clone());
    let register = warp::path!("v1" / "users").and(warp::post()).and(c()).and(jm_json()).and_then(register);
    let list = warp::path!("v1" / "users").and(warp::get()).and(c()).and(warp::query::<PageQuery>()).and_then(list);
    let delete_many = warp::path!("v1" / "users").and(warp::delete()).and(c()).and(jm_json()).and_then(delete_many);
    let stat_many = warp::path!("v1" / "users" / "userstat").and(warp::post()).and(c()).and(jm_json()).and_then(|c, b| users_stat(c, b, false));
    let stat_many_v2 = warp::path!("v2" / "users" / "statuser").and(warp::post()).and(c()).and(jm_json()).and_then(|c, b| users_stat(c, b, true));
    let get = warp::path!("v1" / "users" / String).and(warp::get()).and(c()).and_then(get);
    let update = warp::path!("v1" / "users" / String).and(warp::put()).and(c()).and(jm_json()).and_then(update);
    let delete = warp::path!("v1" / "users" / String).and(warp::delete()).and(c()).and_then(delete);
    let stat = warp::path!("v1" / "users" / String / "userstat").and(warp::get()).and(c()).and_then(stat);
    let password = warp::path!("v1" / "users" / String / "password").and(warp::put()).and(c()).and(jm_json()).and_then(password);
    let forbidden = warp::path!("v1" / "users" / String / "forbidden").and(warp::put()).and(c()).and(warp::query::<ForbiddenQuery>()).and_then(forbidden);
    let blacklist_add =
        warp::path!("v1" / "users" / String / "blacklist").and(warp::put()).and(c()).and(jm_json()).and_then(|u, c, b| blacklist_change(u, c, b, true));
    let blacklist_remove =
        warp::path!("v1" / "users" / String / "blacklist").and(warp::delete()).and(c()).and(jm_json()).and_then(|u, c, b| blacklist_change(u, c, b, false));
    let blacklist = warp::path!("v1" / "users" / String / "blacklist").and(warp::get()).and(c()).and_then(blacklist);
    register
        .or(list)
        .unify()
        .or(delete_many)
        .unify()
        .or(stat_many)
        .unify()
        .or(stat_many_v2)
        .unify()
        .or(get)
        .unify()
        .or(update)
        .unify()
        .or(delete)
        .unify()
        .or(stat)
        .unify()
        .or(password)
        .unify()
        .or(forbidden)
        .unify()
        .or(blacklist_add)
        .unify()
        .or(blacklist_remove)
        .unify()
        .or(blacklist)
        .unify()
}

/// A user as the document shows it: `username`, `ctime`, `mtime` always, the other fields only when
/// set. `uid` (not in the document) is the user's id on WKProto and the WuKongIM API.
pub(super) fn user_json(a: &AccountView) -> Value {
    let mut out = Map::new();
    out.insert("username".into(), json!(a.username));
    let p = &a.profile;
    for (name, value) in [("nickname", &p.nickname), ("avatar", &p.avatar), ("signature", &p.signature), ("region", &p.region), ("address", &p.address)] {
        if let Some(v) = value {
            out.insert(name.into(), json!(v));
        }
    }
    if let Some(b) = &p.birthday {
        out.insert("birthday".into(), json!(format!("{b} 00:00:00")));
    }
    if let Some(g) = p.gender {
        out.insert("gender".into(), json!(g));
    }
    if let Some(extras) = p.extras.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()) {
        out.insert("extras".into(), extras);
    }
    out.insert("mtime".into(), json!(format_civil(a.mtime)));
    out.insert("ctime".into(), json!(format_civil(a.ctime)));
    out.insert("uid".into(), json!(a.uid.0));
    Value::Object(out)
}

/// `POST /v1/users/`: each item is registered or answers its own error; 201.
async fn register(c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let Value::Array(items) = body else {
        return Err(JmError::bad_request(format!("the body must be a json array of users, got {}", kind(&body))).into());
    };
    if items.is_empty() || items.len() > MAX_REGISTER {
        return Err(JmError::bad_request(format!("register 1 to {MAX_REGISTER} users at a time, got {}", items.len())).into());
    }
    // Each item is checked on its own: a bad one answers its error, the good ones are registered.
    let checked: Vec<Result<Signup, (Option<String>, JmError)>> = items.iter().map(signup).collect();
    let valid: Vec<Signup> = checked.iter().filter_map(|c| c.as_ref().ok().cloned()).collect();
    let mut created =
        if valid.is_empty() { Vec::new() } else { c.state.usecases.register(&c.app.tag, valid, c.origin).await.map_err(JmError::from_usecase)? };
    created.reverse();
    let answers: Vec<Value> = checked
        .into_iter()
        .map(|item| match item {
            Ok(s) => {
                if created.pop().unwrap_or(false) {
                    json!({"username": s.username})
                } else {
                    json!({"username": s.username, "error": {"code": USER_EXISTS, "message": "user exist"}})
                }
            }
            Err((name, e)) => json!({"username": name, "error": {"code": e.code, "message": e.message}}),
        })
        .collect();
    Ok(warp::reply::with_status(warp::reply::json(&answers), StatusCode::CREATED).into_response())
}

fn signup(item: &Value) -> Result<Signup, (Option<String>, JmError)> {
    let name = item.get("username").and_then(Value::as_str).map(str::to_owned);
    let fail = |e: JmError| (name.clone(), e);
    let obj = fields::object(item, "each user").map_err(fail)?;
    let username = match obj.get("username") {
        None | Some(Value::Null) => return Err(fail(JmError::bad_request("username is required"))),
        Some(v) => fields::username_value(v).map_err(fail)?,
    };
    let password = fields::password("password", obj.get("password")).map_err(fail)?;
    let profile = fields::profile(obj).map_err(fail)?;
    Ok(Signup { username, password: Some(password), profile })
}

/// `GET /v1/users/{username}`.
async fn get(username: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let account = find(&c, &username).await?;
    Ok(warp::reply::json(&user_json(&account)).into_response())
}

/// The live account `username`: 899003 for a malformed name, 899002 for an unknown one.
pub(super) async fn find(c: &Ctx, username: &str) -> Result<AccountView, JmError> {
    let username = fields::username(username)?;
    c.state.usecases.account(&c.app.tag, &username).await.map_err(JmError::from_usecase)
}

/// Every named user, in order, or 899002 naming the first unknown one.
pub(super) async fn find_all(c: &Ctx, usernames: Vec<String>) -> Result<Vec<AccountView>, JmError> {
    find_all_in(c, &c.app.tag, usernames).await
}

/// As [`find_all`], among the users of the app tagged `tag` (this one or a cross app).
pub(super) async fn find_all_in(c: &Ctx, tag: &str, usernames: Vec<String>) -> Result<Vec<AccountView>, JmError> {
    let found = c.state.usecases.accounts(tag, usernames.clone()).await.map_err(JmError::from_usecase)?;
    found
        .into_iter()
        .zip(usernames)
        .map(|(a, name)| a.ok_or_else(|| JmError::new(StatusCode::NOT_FOUND, USER_NOT_FOUND, format!("user {name:?} does not exist"))))
        .collect()
}

/// `PUT /v1/users/{username}`: the fields given replace the stored ones; 204.
async fn update(username: String, c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let username = fields::username(&username)?;
    let patch = fields::profile(fields::object(&body, "the body")?)?;
    c.state.usecases.update_profile(&c.app.tag, &username, patch, c.origin).await.map_err(JmError::from_usecase)?;
    Ok(no_content())
}

/// `?start=&count=` of a list, as text so that each malformed value gets 899003.
#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    pub(super) start: Option<String>,
    pub(super) count: Option<String>,
}

/// A `start`/`count` page: `start` from 0, `count` from 1 to `max`.
pub(super) fn page(start: Option<&str>, count: Option<&str>, max: usize) -> Result<(usize, usize), JmError> {
    let start = match start {
        None => return Err(JmError::bad_request("start is required")),
        Some(s) => s.parse::<usize>().map_err(|_| JmError::bad_request(format!("start must be a whole number, got {s:?}")))?,
    };
    let count = match count {
        None => return Err(JmError::bad_request("count is required")),
        Some(s) => {
            s.parse::<usize>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| JmError::bad_request(format!("count must be 1 to {max}, got {s:?}")))?
        }
    };
    Ok((start, count))
}

/// `GET /v1/users/?start=&count=`: users in registration order.
async fn list(c: Ctx, q: PageQuery) -> Result<warp::reply::Response, Rejection> {
    let (start, count) = page(q.start.as_deref(), q.count.as_deref(), MAX_PAGE)?;
    let (total, users) = c.state.usecases.account_page(&c.app.tag, start, count).await.map_err(JmError::from_usecase)?;
    let users: Vec<Value> = users
        .iter()
        .map(|a| {
            let mut u = json!({"username": a.username, "mtime": format_civil(a.mtime), "ctime": format_civil(a.ctime)});
            if let Some(n) = &a.profile.nickname {
                u["nickname"] = json!(n);
            }
            u
        })
        .collect();
    Ok(warp::reply::json(&json!({"total": total, "start": start, "count": users.len(), "users": users})).into_response())
}

/// The platform letter of a device kind: WKProto apps are counted as Android (`a`), browsers as JS
/// (`j`), desktops as Windows (`w`).
fn platform(flag: u8) -> &'static str {
    match flag {
        0 => "a",
        1 => "j",
        _ => "w",
    }
}

/// Each device kind with a token (logged in) and whether a session of it is online.
async fn devices(c: &Ctx, uid: &Uid) -> Result<Vec<Value>, JmError> {
    let state = c.state.core.peek_user_state(uid).await.map_err(|e| JmError::from_usecase(e.into()))?;
    let online = c.state.presence.online_devices(std::slice::from_ref(uid));
    let mut flags: Vec<u8> = state.tokens.keys().map(|f: &DeviceFlag| f.0).collect();
    flags.extend(online.iter().map(|(_, f)| *f));
    flags.sort_unstable();
    flags.dedup();
    Ok(flags
        .into_iter()
        .map(|f| json!({"login": state.tokens.contains_key(&DeviceFlag(f)), "online": online.iter().any(|(_, o)| *o == f), "platform": platform(f)}))
        .collect())
}

/// `GET /v1/users/{username}/userstat`.
async fn stat(username: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let account = find(&c, &username).await?;
    let devices = devices(&c, &account.uid).await?;
    let any = |key: &str| devices.iter().any(|d| d[key] == json!(true));
    Ok(warp::reply::json(&json!({"login": any("login"), "online": any("online")})).into_response())
}

/// `POST /v1/users/userstat` (an unknown user fails the request) and `POST /v2/users/statuser` (an
/// unknown user is answered with `statuscode` 1).
async fn users_stat(c: Ctx, body: Value, v2: bool) -> Result<warp::reply::Response, Rejection> {
    let names = fields::usernames(&body, MAX_LIST)?;
    let found = c.state.usecases.accounts(&c.app.tag, names.clone()).await.map_err(JmError::from_usecase)?;
    let mut out = Vec::with_capacity(names.len());
    for (name, account) in names.iter().zip(found) {
        match (account, v2) {
            (Some(a), false) => out.push(json!({"username": name, "devices": devices(&c, &a.uid).await?})),
            (Some(a), true) => out.push(json!({"username": name, "devices": devices(&c, &a.uid).await?, "statuscode": 0})),
            (None, false) => return Err(JmError::new(StatusCode::NOT_FOUND, USER_NOT_FOUND, format!("user {name:?} does not exist")).into()),
            (None, true) => out.push(json!({"username": name, "devices": [], "statuscode": 1, "statusmsg": "no_exist"})),
        }
    }
    Ok(warp::reply::json(&out).into_response())
}

/// `PUT /v1/users/{username}/password` with `new_password`; 204.
async fn password(username: String, c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let username = fields::username(&username)?;
    let new = fields::password("new_password", fields::object(&body, "the body")?.get("new_password"))?;
    c.state.usecases.change_password(&c.app.tag, &username, new, c.origin).await.map_err(JmError::from_usecase)?;
    Ok(no_content())
}

/// `DELETE /v1/users/{username}`; 204.
async fn delete(username: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let username = fields::username(&username)?;
    c.state.usecases.unregister(&c.app.tag, vec![username], c.origin).await.map_err(JmError::from_usecase)?;
    Ok(no_content())
}

/// `DELETE /v1/users/` with up to 100 usernames: all are deleted, or (one unknown) none; 200.
async fn delete_many(c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let names = fields::usernames(&body, MAX_DELETE)?;
    c.state.usecases.unregister(&c.app.tag, names, c.origin).await.map_err(JmError::from_usecase)?;
    Ok(warp::reply::with_status(warp::reply::reply(), StatusCode::OK).into_response())
}

#[derive(Debug, Deserialize)]
struct ForbiddenQuery {
    disable: Option<String>,
}

/// `PUT /v1/users/{username}/forbidden?disable=true|false`; 204.
async fn forbidden(username: String, c: Ctx, q: ForbiddenQuery) -> Result<warp::reply::Response, Rejection> {
    let username = fields::username(&username)?;
    let disable = fields::switch(q.disable.as_deref(), "disable", "true", "false")?;
    c.state.usecases.set_disabled(&c.app.tag, &username, disable, c.origin).await.map_err(JmError::from_usecase)?;
    Ok(no_content())
}

/// `PUT|DELETE /v1/users/{username}/blacklist` with usernames: those users' single messages to this
/// user are refused (or no longer); every name must exist; 204.
async fn blacklist_change(username: String, c: Ctx, body: Value, add: bool) -> Result<warp::reply::Response, Rejection> {
    let owner = find(&c, &username).await?;
    let names = fields::usernames(&body, MAX_LIST)?;
    let listed: Vec<Uid> = find_all(&c, names).await?.into_iter().map(|a| a.uid).collect();
    c.state.usecases.change_blacklist(&owner.uid, listed, add, c.origin).await.map_err(JmError::from_usecase)?;
    Ok(no_content())
}

/// `GET /v1/users/{username}/blacklist`: the users on it (deleted accounts are left out).
async fn blacklist(username: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let owner = find(&c, &username).await?;
    let listed = c.state.usecases.blacklist_of(&owner.uid).await.map_err(JmError::from_usecase)?;
    let ns: Vec<u64> = listed.iter().filter_map(|u| rookery_events::tenant_uid_parts(u).filter(|(tag, _)| *tag == c.app.tag).map(|(_, n)| n)).collect();
    let found = c.state.usecases.accounts_numbered(&c.app.tag, ns).await.map_err(JmError::from_usecase)?;
    let users: Vec<Value> = found.iter().flatten().map(user_json).collect();
    Ok(warp::reply::json(&users).into_response())
}
