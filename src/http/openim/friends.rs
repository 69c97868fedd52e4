//! `POST /friend/import_friend` (two users become friends) and `POST /friend/add_blacklist` (`uid`'s
//! person messages to `ownerUid` are refused from then on; `ownerUid` can still write to `uid`).

use serde_json::{Map, Value};
use warp::{Filter, Rejection};

use super::fields;
use super::{body, manager, success, Ctx, OimError};
use crate::http::ApiState;
use crate::usecase::AccountView;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let import = warp::path!("friend" / "import_friend").and(warp::post()).and(manager(state.clone())).and(body()).and_then(import);
    let blacklist = warp::path!("friend" / "add_blacklist").and(warp::post()).and(manager(state)).and(body()).and_then(blacklist);
    import.or(blacklist).unify()
}

/// `uid` and `ownerUid`: two different registered users.
async fn pair(c: &Ctx, obj: &Map<String, Value>) -> Result<(AccountView, AccountView), OimError> {
    fields::operation_id(obj)?;
    let uid = fields::uid(obj, "uid")?;
    let owner = fields::uid(obj, "ownerUid")?;
    if uid == owner {
        return Err(OimError::args("uid and ownerUid must be different users"));
    }
    let mut found = c.accounts(vec![owner.clone(), uid.clone()]).await?.into_iter();
    let owner_account = found.next().flatten().ok_or_else(|| OimError::unknown(format!("user {owner:?}")))?;
    let uid_account = found.next().flatten().ok_or_else(|| OimError::unknown(format!("user {uid:?}")))?;
    Ok((owner_account, uid_account))
}

/// `POST /friend/import_friend`: friends from now on (friends already: nothing changes).
async fn import(c: Ctx, obj: Map<String, Value>) -> Result<warp::reply::Response, Rejection> {
    let (owner, uid) = pair(&c, &obj).await?;
    let friends = c.state.usecases.friends(&c.app.tag, &owner.username).await.map_err(OimError::from_usecase)?;
    if !friends.iter().any(|(f, _)| f.n == uid.n) {
        c.state.usecases.add_friends(&c.app.tag, &owner.username, vec![uid.username], c.origin).await.map_err(OimError::from_usecase)?;
    }
    Ok(success(Value::Null))
}

/// `POST /friend/add_blacklist`: `uid` goes on `ownerUid`'s blacklist.
async fn blacklist(c: Ctx, obj: Map<String, Value>) -> Result<warp::reply::Response, Rejection> {
    let (owner, uid) = pair(&c, &obj).await?;
    c.state.usecases.change_blacklist(&owner.uid, vec![uid.uid], true, c.origin).await.map_err(OimError::from_usecase)?;
    Ok(success(Value::Null))
}
