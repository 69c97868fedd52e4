//! `POST /auth/user_register` and `POST /auth/user_token`: the app server, holding the shared
//! secret, registers users and gets their tokens (one per platform, replacing the platform's previous
//! one). A token works as the `token` header of the manager routes when it is the app manager's, and
//! as the WKProto CONNECT token of the user's internal uid (`imUid` in the answer) on a device kind
//! of its platform.

use rookery_events::Uid;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use super::fields::{self, Limit};
use super::{body, ctx, success, Ctx, OimError, ACCESS};
use crate::http::ApiState;
use crate::usecase::Signup;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let register = warp::path!("auth" / "user_register").and(warp::post()).and(ctx(state.clone())).and(body()).and_then(register);
    let token = warp::path!("auth" / "user_token").and(warp::post()).and(ctx(state)).and(body()).and_then(token);
    register.or(token).unify()
}

/// Checks `secret` (at most 32 characters) against the configured one in constant time.
fn check_secret(c: &Ctx, obj: &Map<String, Value>) -> Result<(), OimError> {
    let given = fields::required(obj, "secret", Limit::Chars(32))?;
    let matches = rookery_events::sha256(given.as_bytes()).0.ct_eq(&rookery_events::sha256(c.app.secret.as_bytes()).0);
    if bool::from(matches) {
        Ok(())
    } else {
        Err(OimError::new(StatusCode::UNAUTHORIZED, ACCESS, "secret does not match the server's"))
    }
}

/// A token for `uid` on `platform`, as both routes answer it.
async fn grant(c: &Ctx, uid: &Uid, external: &str, platform: u8) -> Result<warp::reply::Response, OimError> {
    let ttl = std::time::Duration::from_secs(c.app.token_ttl_secs);
    let granted = c.state.usecases.issue_platform_token(uid, platform, ttl, c.origin.clone()).await.map_err(OimError::from_usecase)?;
    Ok(success(json!({"data": {
        "uid": external,
        "token": granted.token,
        "expiredTime": granted.expires_at.as_secs(),
        "imUid": uid.as_str(),
    }})))
}

/// `POST /auth/user_register`: a new user with its profile, and its first token.
async fn register(c: Ctx, obj: Map<String, Value>) -> Result<warp::reply::Response, Rejection> {
    check_secret(&c, &obj)?;
    let platform = fields::platform(&obj)?;
    let uid = fields::uid(&obj, "uid")?;
    let profile = fields::profile(&obj, true)?;
    let created = c.state.usecases.register(&c.app.tag, vec![Signup { username: uid.clone(), password: None, profile }], c.origin.clone()).await;
    if !created.map_err(OimError::from_usecase)?.first().copied().unwrap_or(false) {
        return Err(OimError::new(StatusCode::CONFLICT, super::ARGS, format!("user {uid:?} is registered already")).into());
    }
    let account = c.account(&uid).await?;
    Ok(grant(&c, &account.uid, &uid, platform).await?)
}

/// `POST /auth/user_token`: a new token of a registered, enabled user for one platform.
async fn token(c: Ctx, obj: Map<String, Value>) -> Result<warp::reply::Response, Rejection> {
    check_secret(&c, &obj)?;
    let platform = fields::platform(&obj)?;
    let uid = fields::uid(&obj, "uid")?;
    let account = c.account(&uid).await?;
    Ok(grant(&c, &account.uid, &uid, platform).await?)
}
