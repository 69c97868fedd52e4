//! Users: `POST /user/update_user_info` (checked as a whole before anything changes),
//! `POST /user/get_user_info` (unknown and deleted uids are left out), `POST /manager/delete_user`
//! (unknown uids listed in `failedUidList`) and `POST /manager/get_all_users_uid`.

use serde_json::{json, Map, Value};
use warp::{Filter, Rejection};

use super::fields;
use super::{body, manager, success, Ctx, OimError};
use crate::http::ApiState;
use crate::usecase::AccountView;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let update = warp::path!("user" / "update_user_info").and(warp::post()).and(manager(state.clone())).and(body()).and_then(update);
    let info = warp::path!("user" / "get_user_info").and(warp::post()).and(manager(state.clone())).and(body()).and_then(info);
    let delete = warp::path!("manager" / "delete_user").and(warp::post()).and(manager(state.clone())).and(body()).and_then(delete);
    let all = warp::path!("manager" / "get_all_users_uid").and(warp::post()).and(manager(state)).and(body()).and_then(all);
    update.or(info).unify().or(delete).unify().or(all).unify()
}

/// A user as `get_user_info` shows it: every documented field, empty when unset.
fn user_json(a: &AccountView) -> Value {
    let p = &a.profile;
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    json!({
        "uid": a.username,
        "name": s(&p.nickname),
        "icon": s(&p.avatar),
        "gender": p.gender.unwrap_or(0),
        "mobile": s(&p.mobile),
        "birth": s(&p.birthday),
        "email": s(&p.email),
        "ex": s(&p.extras),
        "imUid": a.uid.as_str(),
    })
}

/// `POST /user/update_user_info`: the fields given replace the old ones.
async fn update(c: Ctx, obj: Map<String, Value>) -> Result<warp::reply::Response, Rejection> {
    fields::operation_id(&obj)?;
    let uid = fields::uid(&obj, "uid")?;
    let patch = fields::profile(&obj, false)?;
    c.account(&uid).await?;
    c.state.usecases.update_profile(&c.app.tag, &uid, patch, c.origin).await.map_err(OimError::from_usecase)?;
    Ok(success(Value::Null))
}

/// `POST /user/get_user_info`: the registered users among `uidList`, in its order.
async fn info(c: Ctx, obj: Map<String, Value>) -> Result<warp::reply::Response, Rejection> {
    fields::operation_id(&obj)?;
    let uids = fields::uid_list(&obj, "uidList")?;
    let found = c.accounts(uids).await?;
    let data: Vec<Value> = found.iter().flatten().map(user_json).collect();
    Ok(success(json!({"data": data})))
}

/// `POST /manager/delete_user`: the registered users among `deleteUidList` are deleted (logged out,
/// out of their groups, their friendships ended); the others are listed in `failedUidList`.
async fn delete(c: Ctx, obj: Map<String, Value>) -> Result<warp::reply::Response, Rejection> {
    fields::operation_id(&obj)?;
    let uids = fields::uid_list(&obj, "deleteUidList")?;
    let found = c.accounts(uids.clone()).await?;
    let (known, failed): (Vec<_>, Vec<_>) = uids.into_iter().zip(found).partition(|(_, a)| a.is_some());
    let known: Vec<String> = known.into_iter().map(|(u, _)| u).collect();
    if !known.is_empty() {
        c.state.usecases.unregister(&c.app.tag, known, c.origin).await.map_err(OimError::from_usecase)?;
    }
    let failed: Vec<String> = failed.into_iter().map(|(u, _)| u).collect();
    Ok(success(json!({"failedUidList": failed})))
}

/// `POST /manager/get_all_users_uid`: every registered user's uid, in registration order.
async fn all(c: Ctx, obj: Map<String, Value>) -> Result<warp::reply::Response, Rejection> {
    fields::operation_id(&obj)?;
    let (_, users) = c.state.usecases.account_page(&c.app.tag, 0, usize::MAX).await.map_err(OimError::from_usecase)?;
    let uids: Vec<&str> = users.iter().map(|a| a.username.as_str()).collect();
    Ok(success(json!({"uidList": uids})))
}
