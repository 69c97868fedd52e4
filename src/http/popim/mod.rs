//! The PopIM-style app API (seed 003) under `/api/` (and the document's SMS paths under `/web/` and
//! `/h5/`), called by an app's own backend on behalf of its signed-in user `login_uid`.
//!
//! Parameters: GET takes the query string, POST a form (`application/x-www-form-urlencoded`, arrays as
//! `name[]=` repeats) or a JSON object, and the query string too; ids may be numbers or strings.
//! Answers: `{"code":0,"msg":"ok","data":…}`; errors `{"code":…,"msg":"…"}` with a 4xx status (5xx only
//! for the server's own failures): 1 a missing or malformed parameter (400), 2 something unknown (404),
//! 3 not allowed (403), 4 exists already (409), 5 a disabled account (403), 6 a service this server does
//! not have (SMS, 501). Credentials: none by the document; the configured `popim.token`, when set, must
//! come in the `token` header (it must be set for an API beyond loopback). The audit trail records
//! each change as the app acting for `login_uid` (`Actor::Delegated`).

mod friends;
mod groups;
mod messages;
mod misc;
mod params;
mod users;

use rookery_actors::{CoreError, Origin};
use rookery_events::{tenant_uid, tenant_uid_parts, Actor, Rejection as Refusal, Uid};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::{Filter, Rejection, Reply};

pub use params::Params;

use super::{request_origin, same_origin, valid_request_id, with_state, ApiError, ApiState};
use crate::config::PopImApp;
use crate::usecase::AccountView;

/// `1`: a parameter is missing or malformed.
pub const PARAM: i64 = 1;
/// `2`: what the request names does not exist.
pub const NOT_FOUND: i64 = 2;
/// `3`: the caller may not do this.
pub const FORBIDDEN: i64 = 3;
/// `4`: it exists already.
pub const CONFLICT: i64 = 4;
/// `5`: the account is disabled.
pub const DISABLED: i64 = 5;
/// `6`: the request needs a service this server does not have.
pub const UNSUPPORTED: i64 = 6;
/// `500`: the server failed.
pub const SERVER: i64 = 500;

/// The document's paths outside `/api/`: its SMS routes.
const SMS_PATHS: [&str; 6] = [
    "/web/service/send_sms",
    "/h5/service/send_sms",
    "/web/user/send_sms_pass",
    "/h5/user/send_sms_pass",
    "/web/service/forget_pass",
    "/h5/service/forget_pass",
];

/// Whether `path` is one of this family's.
pub(super) fn owns(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || SMS_PATHS.contains(&path)
}

/// A failure in this family's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The family's code.
    pub code: i64,
    /// What went wrong, for humans.
    pub msg: String,
}

impl warp::reject::Reject for PopError {}

impl PopError {
    /// 400 + 1.
    pub fn param(msg: impl Into<String>) -> PopError {
        PopError { status: StatusCode::BAD_REQUEST, code: PARAM, msg: msg.into() }
    }

    /// 404 + 2.
    pub fn not_found(what: impl std::fmt::Display) -> PopError {
        PopError { status: StatusCode::NOT_FOUND, code: NOT_FOUND, msg: format!("{what} does not exist") }
    }

    /// 403 + 3.
    pub fn forbidden(msg: impl Into<String>) -> PopError {
        PopError { status: StatusCode::FORBIDDEN, code: FORBIDDEN, msg: msg.into() }
    }

    /// 409 + 4.
    pub fn conflict(msg: impl Into<String>) -> PopError {
        PopError { status: StatusCode::CONFLICT, code: CONFLICT, msg: msg.into() }
    }

    /// A use case's refusal in this family's codes.
    pub fn from_usecase(e: crate::usecase::Error) -> PopError {
        use crate::usecase::Error;
        match e {
            Error::Invalid(_, m) | Error::TooLarge(_, m) | Error::Core(CoreError::Rejected(Refusal::Invalid(m))) => PopError::param(m),
            Error::NotFound(m) | Error::Core(CoreError::Rejected(Refusal::NotFound(m))) => PopError::not_found(m),
            Error::Core(CoreError::Rejected(Refusal::ChannelNotFound | Refusal::Disbanded)) => PopError::not_found("the group"),
            Error::Core(CoreError::Rejected(Refusal::Exists(m))) => PopError::conflict(format!("{m} exists already")),
            Error::Core(CoreError::Rejected(Refusal::Banned | Refusal::SendBanned)) => {
                PopError { status: StatusCode::FORBIDDEN, code: DISABLED, msg: "the account is disabled".into() }
            }
            Error::Core(CoreError::Rejected(r)) => PopError::forbidden(r.to_string()),
            Error::Core(e) => PopError { status: super::error::server_status(&e), code: SERVER, msg: e.to_string() },
        }
    }
}

impl Reply for PopError {
    fn into_response(self) -> warp::reply::Response {
        let msg = if self.msg.is_empty() { "failed".to_owned() } else { self.msg };
        warp::reply::with_status(warp::reply::json(&json!({"code": self.code, "msg": msg})), self.status).into_response()
    }
}

impl From<ApiError> for PopError {
    fn from(e: ApiError) -> PopError {
        let code = if e.status.is_server_error() { SERVER } else { PARAM };
        PopError { status: e.status, code, msg: e.msg }
    }
}

/// `{"code":0,"msg":"ok","data":data}`.
fn ok(data: Value) -> warp::reply::Response {
    warp::reply::json(&json!({"code": 0, "msg": "ok", "data": data})).into_response()
}

/// `{"code":0,"msg":"ok","data":[]}`, the answer of a change.
fn done() -> Result<warp::reply::Response, PopError> {
    Ok(ok(json!([])))
}

/// What every handler gets: the state, the configured app and the request's origin (acting as the app).
#[derive(Clone)]
pub(crate) struct Ctx {
    state: ApiState,
    app: PopImApp,
    origin: Origin,
}

impl Ctx {
    fn credential(&self) -> String {
        format!("popim:{}", self.app.tag)
    }

    /// The origin of a change made for user `uid`.
    fn acting(&self, uid: &Uid) -> Origin {
        Origin { actor: Actor::Delegated { credential: self.credential(), uid: uid.clone() }, ..self.origin.clone() }
    }

    /// The internal uid of this app's user number `n`.
    fn uid(&self, n: u64) -> Uid {
        tenant_uid(&self.app.tag, n)
    }

    /// The user number of an internal uid of this app.
    fn number(&self, uid: &Uid) -> Option<u64> {
        tenant_uid_parts(uid).filter(|(t, _)| *t == self.app.tag).map(|(_, n)| n)
    }

    /// The live account number `n`.
    async fn account(&self, n: u64) -> Result<AccountView, PopError> {
        self.accounts(vec![n]).await?.pop().flatten().ok_or_else(|| PopError::not_found(format!("user {n}")))
    }

    /// The live accounts numbered `ns`, in order (`None` for unknown ones).
    async fn accounts(&self, ns: Vec<u64>) -> Result<Vec<Option<AccountView>>, PopError> {
        self.state.usecases.accounts_numbered(&self.app.tag, ns).await.map_err(PopError::from_usecase)
    }

    /// The account `login_uid` names: it must exist and be enabled, as it acts.
    async fn login(&self, p: &Params) -> Result<AccountView, PopError> {
        let account = self.account(p.id("login_uid")?).await?;
        if self.state.usecases.is_disabled(&account.uid).await.map_err(PopError::from_usecase)? {
            return Err(PopError { status: StatusCode::FORBIDDEN, code: DISABLED, msg: format!("user {} is disabled", account.n) });
        }
        Ok(account)
    }

    /// Whether switch `name` of the app's settings is on (every switch is on unless configured off).
    fn switched_on(&self, name: &str) -> bool {
        self.app.settings.get(name).is_none_or(|v| v != "off")
    }

    /// Refuses when switch `name` is off.
    fn require(&self, name: &str) -> Result<(), PopError> {
        if self.switched_on(name) {
            Ok(())
        } else {
            Err(PopError::forbidden(format!("{name} is switched off in this app's settings")))
        }
    }

    /// Whether `uid` has a session online.
    fn online(&self, uid: &Uid) -> bool {
        self.state.presence.count(uid) > 0
    }
}

/// The configured app, or the refusal saying how to configure one; with a `token` configured, the
/// request's `token` header must match it.
fn admitted(state: &ApiState, token: Option<&str>) -> Result<PopImApp, PopError> {
    let app = state.config.popim.clone().ok_or_else(|| PopError {
        status: StatusCode::UNAUTHORIZED,
        code: FORBIDDEN,
        msg: "this server has no PopIM app; add one to its configuration ([popim], with a token when the API listens beyond loopback)".into(),
    })?;
    if let Some(expected) = &app.token {
        let given = rookery_events::sha256(token.unwrap_or_default().as_bytes());
        if !bool::from(given.0.ct_eq(&rookery_events::sha256(expected.as_bytes()).0)) {
            return Err(PopError { status: StatusCode::UNAUTHORIZED, code: FORBIDDEN, msg: "missing or wrong token header".into() });
        }
    }
    Ok(app)
}

/// The request's [`Ctx`]: the app admitted and counted against its request rate.
fn ctx(state: ApiState) -> impl Filter<Extract = (Ctx,), Error = Rejection> + Clone {
    with_state(state).and(request_origin()).and(warp::header::optional::<String>("token")).and_then(
        |state: ApiState, origin: Origin, token: Option<String>| async move {
            let app = admitted(&state, token.as_deref()).map_err(warp::reject::custom)?;
            let credential = format!("popim:{}", app.tag);
            state.limits.check_api(&credential).map_err(|wait| {
                warp::reject::custom(PopError {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: SERVER,
                    msg: format!("request rate of this app reached; retry in {} ms", wait.as_millis().max(1)),
                })
            })?;
            Ok::<_, Rejection>(Ctx { state, app, origin: Origin { actor: Actor::Api { credential }, ..origin } })
        },
    )
}

/// This family's routes, with its own errors: uploads (multipart forms) have their own filter, every
/// other route is dispatched by path.
pub(super) fn routes(state: ApiState) -> BoxedFilter<(warp::reply::Response,)> {
    let uploads = misc::upload_routes(state.clone());
    let rest =
        warp::path::full().and(warp::method()).and(ctx(state)).and(params::params()).and_then(
            |path: warp::path::FullPath, method: Method, c: Ctx, p: Params| async move {
                dispatch(path.as_str(), &method, c, p).await.map_err(warp::reject::custom)
            },
        );
    same_origin().and(valid_request_id()).and(uploads.or(rest).unify()).recover(recover).unify().boxed()
}

/// The handler of `path`.
async fn dispatch(path: &str, method: &Method, c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    if method != Method::GET && method != Method::POST {
        return Err(PopError { status: StatusCode::METHOD_NOT_ALLOWED, code: PARAM, msg: "this family takes GET and POST".into() });
    }
    if SMS_PATHS.contains(&path) || path == "/api/login/join" {
        return Err(PopError {
            status: StatusCode::NOT_IMPLEMENTED,
            code: UNSUPPORTED,
            msg: "sms is not supported by this server: it has no SMS service, so phone codes can be neither sent nor checked".into(),
        });
    }
    let route = path.strip_prefix("/api/").unwrap_or_default();
    match route {
        "user/add" | "user/open_user" => users::add(c, p).await,
        "user/get" => users::get(c, p).await,
        "user/multiGet" => users::multi_get(c, p).await,
        "user/update" => users::update(c, p).await,
        "user/updatepassword" => users::update_password(c, p).await,
        "friend/apply" => friends::apply(c, p).await,
        "friend/agree" => friends::answer(c, p, true).await,
        "friend/refuse" => friends::answer(c, p, false).await,
        "friend/add" => friends::add(c, p).await,
        "friend/remark" => friends::remark(c, p).await,
        "friend/applylist" => friends::apply_list(c, p).await,
        "friend/applycount" => friends::apply_count(c, p).await,
        "friend/applydetail" => friends::apply_detail(c, p).await,
        "friend/getlist" => friends::list(c, p).await,
        "friend/get_temp_list" => friends::temp_list(c, p).await,
        "friend/delete" => friends::delete(c, p).await,
        "friend/update" => friends::update(c, p).await,
        "group/create" => groups::create(c, p).await,
        "group/delete" => groups::delete(c, p).await,
        "group/memberadd" => groups::member_add(c, p).await,
        "group/join" => groups::join(c, p).await,
        "group/members" => groups::members(c, p).await,
        "group/memberdel" => groups::member_del(c, p).await,
        "group/detail" => groups::detail(c, p).await,
        "group/remark" => groups::remark(c, p).await,
        "group/manager" => groups::manager(c, p).await,
        "group/ismanager" => groups::is_manager(c, p).await,
        "group/forbiddenuser" => groups::forbid_user(c, p).await,
        "group/forbiddenall" => groups::forbid_all(c, p).await,
        "group/leave" => groups::leave(c, p).await,
        "group/memberupdate" => groups::member_update(c, p).await,
        "message/send" => messages::send(c, p).await,
        "message/get" => messages::get(c, p).await,
        "message/revoke" => messages::revoke(c, p).await,
        "message/delete" => messages::delete(c, p).await,
        "message/unreadcount" => messages::unread_count(c, p).await,
        "message/updateLastReadTime" => messages::read(c, p).await,
        "qrcode/get" => misc::qrcode(p),
        "reply/get" => misc::replies(c).await,
        "reply/add" => misc::reply_save(c, p, false).await,
        "reply/update" => misc::reply_save(c, p, true).await,
        "reply/delete" => misc::reply_delete(c, p).await,
        "pop/get" => misc::home(c, p).await,
        "pop/delchat" => misc::delete_chat(c, p).await,
        "pop/getsetting" => Ok(ok(misc::settings(&c))),
        _ => Err(PopError::not_found(format!("route {path}"))),
    }
}

/// Every rejection of this family in its envelope.
async fn recover(rejection: Rejection) -> Result<warp::reply::Response, std::convert::Infallible> {
    let error = if let Some(e) = rejection.find::<PopError>() {
        e.clone()
    } else if rejection.is_not_found() {
        PopError::not_found("this route")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        PopError { status: StatusCode::METHOD_NOT_ALLOWED, code: PARAM, msg: "this route does not take that method".into() }
    } else {
        PopError::from(super::error::error_of(&rejection))
    };
    Ok(error.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_family_owns_api_and_the_sms_paths() {
        for path in ["/api/user/get", "/api/pop/get", "/api", "/web/service/send_sms", "/h5/service/forget_pass"] {
            assert!(owns(path), "{path}");
        }
        for path in ["/apis/x", "/web/other", "/user/token", "/auth/user_token"] {
            assert!(!owns(path), "{path}");
        }
    }
}
