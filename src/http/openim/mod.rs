//! The OpenIM server API (seed 004) at the document's twelve paths: `/auth/user_register`,
//! `/auth/user_token`, `/group/{create_group,invite_user_to_group,kick_group}`,
//! `/friend/{import_friend,add_blacklist}`, `/user/{update_user_info,get_user_info}` and
//! `/manager/{delete_user,get_all_users_uid,send_msg}`.
//!
//! Credentials: `/auth/*` carries the configured `secret` in its body (compared as SHA-256 digests in
//! constant time); every other route needs, in its `token` header, an unexpired token issued to the
//! configured `admin_uid`. With no `[openim]` configured every request is refused with the way to
//! configure it. Answers: `{"errCode":0,"errMsg":"",...}` with the results at the top level; errors
//! `{"errCode":<OpenIM code>,"errMsg":"..."}` with a 4xx or 5xx status: 803 for arguments the document
//! refuses (400) or that name nothing (404), 801 for a wrong secret (401) or a rule of the domain
//! (403), 701 for an expired manager token and 702 for any other token problem (401), 500 for the
//! server.

mod auth;
mod fields;
mod friends;
mod groups;
mod messages;
mod users;

use rookery_actors::{CoreError, Origin};
use rookery_events::{Actor, Rejection as Refusal};
use serde_json::{json, Map, Value};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{request_origin, same_origin, valid_request_id, with_state, ApiError, ApiState};
use crate::config::OpenImApp;
use crate::usecase::{AccountView, PlatformTokenCheck};

/// `500`: the server failed.
pub const SERVER_ERROR: i64 = 500;
/// `701`: the token has expired.
pub const TOKEN_EXPIRED: i64 = 701;
/// `702`: the token is not (or no longer) a valid token of the app manager.
pub const TOKEN_INVALID: i64 = 702;
/// `801`: no access (a wrong secret, or a rule of the domain).
pub const ACCESS: i64 = 801;
/// `803`: the arguments are wrong.
pub const ARGS: i64 = 803;

/// Largest request body, in bytes.
const MAX_BODY_BYTES: u64 = 2 << 20;

/// The document's paths, each owned by this family whatever its method.
const PATHS: [&str; 12] = [
    "/auth/user_register",
    "/auth/user_token",
    "/group/create_group",
    "/group/invite_user_to_group",
    "/group/kick_group",
    "/friend/import_friend",
    "/friend/add_blacklist",
    "/user/update_user_info",
    "/user/get_user_info",
    "/manager/delete_user",
    "/manager/get_all_users_uid",
    "/manager/send_msg",
];

/// Whether `path` is one of this family's.
pub(super) fn owns(path: &str) -> bool {
    PATHS.contains(&path)
}

/// A failure in this family's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OimError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The OpenIM error code.
    pub code: i64,
    /// What went wrong, for humans.
    pub msg: String,
}

impl warp::reject::Reject for OimError {}

impl OimError {
    /// An error with this status and code.
    pub fn new(status: StatusCode, code: i64, msg: impl Into<String>) -> OimError {
        OimError { status, code, msg: msg.into() }
    }

    /// 400 + 803: the arguments are wrong.
    pub fn args(msg: impl Into<String>) -> OimError {
        OimError::new(StatusCode::BAD_REQUEST, ARGS, msg)
    }

    /// 404 + 803: an argument names nothing.
    pub fn unknown(what: impl std::fmt::Display) -> OimError {
        OimError::new(StatusCode::NOT_FOUND, ARGS, format!("{what} does not exist"))
    }

    /// A use case's refusal: bad input 400 + 803, something unknown 404 + 803, something that exists
    /// already 409 + 803, a rule of the domain 403 + 801, a failing log 500.
    pub fn from_usecase(e: crate::usecase::Error) -> OimError {
        use crate::usecase::Error;
        match e {
            Error::Invalid(_, m) | Error::TooLarge(_, m) => OimError::args(m),
            Error::NotFound(m) | Error::Core(CoreError::Rejected(Refusal::NotFound(m))) => OimError::unknown(m),
            Error::Core(CoreError::Rejected(Refusal::ChannelNotFound | Refusal::Disbanded)) => OimError::unknown("the group"),
            Error::Core(CoreError::Rejected(Refusal::Invalid(m))) => OimError::args(m),
            Error::Core(CoreError::Rejected(Refusal::Exists(m))) => OimError::new(StatusCode::CONFLICT, ARGS, format!("{m} exists already")),
            Error::Core(CoreError::Rejected(r)) => OimError::new(StatusCode::FORBIDDEN, ACCESS, r.to_string()),
            Error::Core(e) => OimError::new(super::error::server_status(&e), SERVER_ERROR, e.to_string()),
        }
    }
}

impl Reply for OimError {
    fn into_response(self) -> warp::reply::Response {
        let msg = if self.msg.is_empty() { "failed".to_owned() } else { self.msg };
        warp::reply::with_status(warp::reply::json(&json!({"errCode": self.code, "errMsg": msg})), self.status).into_response()
    }
}

impl From<ApiError> for OimError {
    fn from(e: ApiError) -> OimError {
        let code = if e.status.is_server_error() { SERVER_ERROR } else { ARGS };
        OimError { status: e.status, code, msg: e.msg }
    }
}

/// `{"errCode":0,"errMsg":""}` plus `extra`'s fields.
fn success(extra: Value) -> warp::reply::Response {
    let mut body = json!({"errCode": 0, "errMsg": ""});
    if let (Value::Object(out), Value::Object(more)) = (&mut body, extra) {
        out.extend(more);
    }
    warp::reply::json(&body).into_response()
}

/// What every handler gets: the state, the configured app and the request's origin (acting as the
/// app) for the events it causes.
#[derive(Clone)]
pub(crate) struct Ctx {
    state: ApiState,
    app: OpenImApp,
    origin: Origin,
}

impl Ctx {
    /// The live account whose OpenIM uid is `uid`.
    async fn account(&self, uid: &str) -> Result<AccountView, OimError> {
        match self.state.usecases.account(&self.app.tag, uid).await {
            Ok(a) => Ok(a),
            Err(crate::usecase::Error::NotFound(_)) => Err(OimError::unknown(format!("user {uid:?}"))),
            Err(e) => Err(OimError::from_usecase(e)),
        }
    }

    /// The live accounts of `uids`, in order (`None` for unknown ones).
    async fn accounts(&self, uids: Vec<String>) -> Result<Vec<Option<AccountView>>, OimError> {
        self.state.usecases.accounts(&self.app.tag, uids).await.map_err(OimError::from_usecase)
    }
}

/// The configured app, or the refusal saying how to configure one.
fn configured(state: &ApiState) -> Result<OpenImApp, OimError> {
    state.config.openim.clone().ok_or_else(|| {
        OimError::new(StatusCode::UNAUTHORIZED, ACCESS, "this server has no OpenIM app; add one to its configuration ([openim] with secret and admin_uid)")
    })
}

/// The request's [`Ctx`], counted against the app's request rate.
fn ctx(state: ApiState) -> impl Filter<Extract = (Ctx,), Error = Rejection> + Clone {
    with_state(state).and(request_origin()).and_then(|state: ApiState, origin: Origin| async move {
        let app = configured(&state).map_err(warp::reject::custom)?;
        let credential = format!("openim:{}", app.tag);
        state.limits.check_api(&credential).map_err(|wait| {
            warp::reject::custom(OimError::new(
                StatusCode::TOO_MANY_REQUESTS,
                SERVER_ERROR,
                format!("request rate of this app reached; retry in {} ms", wait.as_millis().max(1)),
            ))
        })?;
        Ok::<_, Rejection>(Ctx { state, app, origin: Origin { actor: Actor::Api { credential }, ..origin } })
    })
}

/// A [`Ctx`] for the manager routes: the `token` header must be an unexpired token of the app
/// manager. Checked before the body is read, so a refused request changes nothing.
fn manager(state: ApiState) -> impl Filter<Extract = (Ctx,), Error = Rejection> + Clone {
    ctx(state).and(warp::header::optional::<String>("token")).and_then(|c: Ctx, token: Option<String>| async move {
        let invalid = || OimError::new(StatusCode::UNAUTHORIZED, TOKEN_INVALID, "the token header is not a valid token of the app manager");
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| warp::reject::custom(invalid()))?;
        let admin = match c.state.usecases.account(&c.app.tag, &c.app.admin_uid).await {
            Ok(a) => a,
            Err(crate::usecase::Error::NotFound(_)) => return Err(warp::reject::custom(invalid())),
            Err(e) => return Err(warp::reject::custom(OimError::from_usecase(e))),
        };
        match c.state.usecases.check_platform_token(&admin.uid, &token).await.map_err(|e| warp::reject::custom(OimError::from_usecase(e)))? {
            PlatformTokenCheck::Valid => Ok(c),
            PlatformTokenCheck::Expired => {
                Err(warp::reject::custom(OimError::new(StatusCode::UNAUTHORIZED, TOKEN_EXPIRED, "the token has expired; get a new one from /auth/user_token")))
            }
            PlatformTokenCheck::Unknown => Err(warp::reject::custom(invalid())),
        }
    })
}

/// A JSON object body: each handler checks its fields, so that every wrong type is 803 with the field
/// named.
fn body() -> impl Filter<Extract = (Map<String, Value>,), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_BODY_BYTES).and(warp::body::bytes()).and_then(|bytes: bytes::Bytes| async move {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(other) => Err(warp::reject::custom(OimError::args(format!("the body must be a json object, got {}", fields::kind(&other))))),
            Err(e) => Err(warp::reject::custom(OimError::args(format!("malformed json body: {e}")))),
        }
    })
}

/// This family's routes, with its own errors.
pub(super) fn routes(state: ApiState) -> BoxedFilter<(warp::reply::Response,)> {
    let api = auth::routes(state.clone())
        .boxed()
        .or(groups::routes(state.clone()).boxed())
        .unify()
        .or(friends::routes(state.clone()).boxed())
        .unify()
        .or(users::routes(state.clone()).boxed())
        .unify()
        .or(messages::routes(state).boxed())
        .unify();
    same_origin().and(valid_request_id()).and(api).recover(recover).unify().boxed()
}

/// Every rejection of this family as an OpenIM error.
async fn recover(rejection: Rejection) -> Result<warp::reply::Response, std::convert::Infallible> {
    let error = if let Some(e) = rejection.find::<OimError>() {
        e.clone()
    } else if rejection.is_not_found() {
        OimError::new(StatusCode::NOT_FOUND, ARGS, "no such route")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        OimError::new(StatusCode::METHOD_NOT_ALLOWED, ARGS, "this route takes POST")
    } else {
        OimError::from(super::error::error_of(&rejection))
    };
    Ok(error.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_family_owns_the_documents_twelve_paths_only() {
        for path in PATHS {
            assert!(owns(path), "{path}");
        }
        for path in ["/auth", "/auth/user_register/", "/group/create", "/user/token", "/manager/send", "/friend/list"] {
            assert!(!owns(path), "{path}");
        }
    }
}
