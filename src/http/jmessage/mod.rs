//! The JMessage server API (seed 002) under `/v1/`, `/v2/`, `/groups/` and `/cross/`.
//!
//! Credentials: HTTP Basic `base64(appkey:master_secret)` of one of the configured `jmessage_apps`
//! (the appkey without regard to case, the secret compared as SHA-256 digests in constant time); the
//! app names the tenant a request acts in. With no app configured every request is refused, with the
//! way to configure one. Errors: `{"error":{"code":<JMessage code>,"message":"..."}}` with a 4xx or
//! 5xx status, for every failure: 401 + 899008 for any credential problem, 400 + 899003 for a request
//! the document's rules refuse, 404 + 899003 for a path this family does not serve.

mod cross;
mod fields;
mod friends;
mod groups;
mod messages;
mod nodisturb;
mod resource;
mod rooms;
mod settings;
mod users;

use rookery_actors::{CoreError, Origin};
use rookery_events::{Actor, Rejection as Refusal};
use subtle::ConstantTimeEq;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{request_origin, same_origin, valid_request_id, with_state, ApiError, ApiState};
use crate::config::JmApp;

/// `899000`: the server failed.
pub const SERVER_ERROR: u32 = 899_000;
/// `899001`: the user exists already.
pub const USER_EXISTS: u32 = 899_001;
/// `899002`: the user does not exist.
pub const USER_NOT_FOUND: u32 = 899_002;
/// `899003`: the request does not meet the document's requirements.
pub const BAD_REQUEST: u32 = 899_003;
/// `899006`: the group (or chatroom) does not exist.
pub const GROUP_NOT_FOUND: u32 = 899_006;
/// `899008`: Basic authentication failed.
pub const AUTH_FAILED: u32 = 899_008;
/// `899011`: the user is a member of the group already.
pub const ALREADY_MEMBER: u32 = 899_011;
/// `899012`: the group has no room for more members.
pub const GROUP_FULL: u32 = 899_012;
/// `899014`: the user is not a member of the group.
pub const NOT_MEMBER: u32 = 899_014;
/// `899016`: the user may not do this (not a member, silenced, forbidden, blacklisted).
pub const NOT_ALLOWED: u32 = 899_016;

/// Largest request body, in bytes (a registration of 500 users with full profiles fits).
const MAX_BODY_BYTES: u64 = 2 << 20;

/// Whether `path` is one of this family's.
pub(super) fn owns(path: &str) -> bool {
    ["/v1", "/v2", "/groups", "/cross"].iter().any(|p| path == *p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')))
}

/// A failure in this family's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JmError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JMessage error code.
    pub code: u32,
    /// What went wrong, for humans.
    pub message: String,
}

impl warp::reject::Reject for JmError {}

impl JmError {
    /// An error with this status and code.
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> JmError {
        JmError { status, code, message: message.into() }
    }

    /// 400 + 899003.
    pub fn bad_request(message: impl Into<String>) -> JmError {
        JmError::new(StatusCode::BAD_REQUEST, BAD_REQUEST, message)
    }

    /// A use case's refusal: bad input 400 + 899003, an unknown user 404 + 899002, a rule of the
    /// domain 403 + 899016, a failing log 500 + 899000.
    pub fn from_usecase(e: crate::usecase::Error) -> JmError {
        use crate::usecase::Error;
        match e {
            Error::Invalid(_, m) | Error::TooLarge(_, m) => JmError::bad_request(m),
            Error::NotFound(m) => JmError::new(StatusCode::NOT_FOUND, USER_NOT_FOUND, format!("{m} does not exist")),
            Error::Core(CoreError::Rejected(Refusal::NotFound(m))) => JmError::new(StatusCode::NOT_FOUND, USER_NOT_FOUND, format!("{m} does not exist")),
            Error::Core(CoreError::Rejected(Refusal::Invalid(m))) => JmError::bad_request(m),
            Error::Core(CoreError::Rejected(r)) => JmError::new(StatusCode::FORBIDDEN, NOT_ALLOWED, r.to_string()),
            Error::Core(e) => JmError::new(super::error::server_status(&e), SERVER_ERROR, e.to_string()),
        }
    }
}

/// What every handler of this family gets: the state, the app the request authenticated as, and
/// the request's origin (acting as that app) for the events it causes.
#[derive(Clone)]
pub(crate) struct Ctx {
    state: ApiState,
    app: App,
    origin: Origin,
}

/// The request's [`Ctx`]. The family checked the credential before routing; this finds the app again.
fn ctx(state: ApiState) -> impl Filter<Extract = (Ctx,), Error = Rejection> + Clone {
    with_state(state.clone()).and(app(state)).and(request_origin()).map(|state: ApiState, app: App, origin: Origin| {
        let actor = Actor::Api { credential: format!("jmessage:{}", app.tag) };
        Ctx { state, app, origin: Origin { actor, ..origin } }
    })
}

/// A JSON body, as a value: each handler checks its fields, so that every wrong type is 899003 with
/// the field named.
fn jm_json() -> impl Filter<Extract = (serde_json::Value,), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_BODY_BYTES).and(warp::body::bytes()).and_then(|bytes: bytes::Bytes| async move {
        serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| warp::reject::custom(JmError::bad_request(format!("malformed json body: {e}"))))
    })
}

/// `204 No Content`.
fn no_content() -> warp::reply::Response {
    warp::reply::with_status(warp::reply::reply(), StatusCode::NO_CONTENT).into_response()
}

impl Reply for JmError {
    fn into_response(self) -> warp::reply::Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        warp::reply::with_status(warp::reply::json(&body), self.status).into_response()
    }
}

impl JmError {
    /// A group use case's refusal: an unknown group 404 + 899006, a member already there 409 +
    /// 899011, one that is not 400 + 899014, a full group 400 + 899012; the rest as
    /// [`JmError::from_usecase`].
    pub fn from_group(e: crate::usecase::Error) -> JmError {
        use crate::usecase::Error;
        match e {
            Error::NotFound(m) if m.starts_with("group") || m.starts_with("chatroom") => {
                JmError::new(StatusCode::NOT_FOUND, GROUP_NOT_FOUND, format!("{m} does not exist"))
            }
            Error::Core(CoreError::Rejected(Refusal::NotFound(m))) if m.starts_with("member") => {
                JmError::new(StatusCode::BAD_REQUEST, NOT_MEMBER, format!("{m} is not in the group"))
            }
            Error::Core(CoreError::Rejected(Refusal::Exists(m))) if m.starts_with("member") => {
                JmError::new(StatusCode::CONFLICT, ALREADY_MEMBER, format!("{m} is in the group already"))
            }
            Error::Core(CoreError::Rejected(Refusal::GroupFull)) => JmError::new(StatusCode::BAD_REQUEST, GROUP_FULL, "the group has no room for more members"),
            e => JmError::from_usecase(e),
        }
    }
}

impl From<ApiError> for JmError {
    fn from(e: ApiError) -> JmError {
        let code = match e.status {
            StatusCode::UNAUTHORIZED => AUTH_FAILED,
            s if s.is_server_error() => SERVER_ERROR,
            _ => BAD_REQUEST,
        };
        JmError { status: e.status, code, message: e.msg }
    }
}

/// The app a request authenticated as.
#[derive(Debug, Clone)]
pub struct App {
    /// The tenant's tag.
    pub tag: String,
    /// Its appkey, as configured.
    pub appkey: String,
    /// The other apps it may name in the cross-app routes: (appkey, tag).
    pub cross: Vec<(String, String)>,
}

impl App {
    /// The tag of the app named by `appkey` (this app's own, or one of its cross apps).
    pub fn tag_of(&self, appkey: &str) -> Option<&str> {
        let appkey = appkey.trim();
        if appkey.eq_ignore_ascii_case(&self.appkey) {
            return Some(&self.tag);
        }
        self.cross.iter().find(|(k, _)| k.eq_ignore_ascii_case(appkey)).map(|(_, t)| t.as_str())
    }

    /// The appkey of the app whose tag is `tag`, if this app may name it.
    pub fn appkey_of(&self, tag: &str) -> Option<&str> {
        if tag == self.tag {
            return Some(&self.appkey);
        }
        self.cross.iter().find(|(_, t)| t == tag).map(|(k, _)| k.as_str())
    }
}

/// The app whose `appkey:master_secret` the `Authorization: Basic` header `given` carries.
///
/// # Errors
/// 401 + 899008 when no app is configured, or the header is missing, not Basic, not base64, has no
/// colon, names no configured appkey or carries a wrong secret.
pub fn authenticate(apps: &[JmApp], given: Option<&str>) -> Result<App, JmError> {
    let refused = |message: &str| JmError { status: StatusCode::UNAUTHORIZED, code: AUTH_FAILED, message: message.to_owned() };
    if apps.is_empty() {
        return Err(refused(
            "Basic authentication failed: this server has no JMessage app; add one to its configuration ([[jmessage_apps]] with tag, appkey and master_secret)",
        ));
    }
    let encoded = given.and_then(|h| h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic "))).map(str::trim);
    let decoded = encoded.and_then(|e| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, e).ok()).and_then(|d| String::from_utf8(d).ok());
    let Some((appkey, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Err(refused("Basic authentication failed"));
    };
    let Some(app) = apps.iter().find(|a| a.appkey.eq_ignore_ascii_case(appkey)) else {
        return Err(refused("Basic authentication failed"));
    };
    let matches = rookery_events::sha256(app.master_secret.as_bytes()).0.ct_eq(&rookery_events::sha256(secret.as_bytes()).0);
    if !bool::from(matches) {
        return Err(refused("Basic authentication failed"));
    }
    let cross =
        app.cross_apps.iter().filter_map(|key| apps.iter().find(|a| a.appkey.eq_ignore_ascii_case(key)).map(|a| (a.appkey.clone(), a.tag.clone()))).collect();
    Ok(App { tag: app.tag.clone(), appkey: app.appkey.clone(), cross })
}

/// The request's app, from its `Authorization` header.
fn app(state: ApiState) -> impl Filter<Extract = (App,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization").and_then(move |given: Option<String>| {
        let found = authenticate(&state.config.jmessage_apps, given.as_deref()).map_err(warp::reject::custom);
        async move { found }
    })
}

/// The app, counted against its request rate: every app has its own bucket of the API rate limit.
fn admitted(state: ApiState) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let limits = state.limits.clone();
    app(state)
        .and_then(move |app: App| {
            let checked = limits.check_api(&format!("jmessage:{}", app.tag)).map_err(|wait| {
                warp::reject::custom(JmError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    SERVER_ERROR,
                    format!("request rate of this app reached; retry in {} ms", wait.as_millis().max(1)),
                ))
            });
            async move { checked }
        })
        .untuple_one()
}

/// This family's routes, behind its credential check, with its own errors.
pub(super) fn routes(state: ApiState) -> BoxedFilter<(warp::reply::Response,)> {
    // Each module's routes boxed: one type per module keeps the compiler's work linear.
    let api = users::routes(state.clone())
        .boxed()
        .or(groups::routes(state.clone()).boxed())
        .unify()
        .or(messages::routes(state.clone()).boxed())
        .unify()
        .or(friends::routes(state.clone()).boxed())
        .unify()
        .or(settings::routes(state.clone()).boxed())
        .unify()
        .or(nodisturb::routes(state.clone()).boxed())
        .unify()
        .or(rooms::routes(state.clone()).boxed())
        .unify()
        .or(resource::routes(state.clone()).boxed())
        .unify()
        .or(cross::routes(state.clone()).boxed())
        .unify();
    same_origin().and(admitted(state)).and(valid_request_id()).and(api).recover(recover).unify().boxed()
}

/// Every rejection of this family as a JMessage error.
async fn recover(rejection: Rejection) -> Result<warp::reply::Response, std::convert::Infallible> {
    let error = if let Some(e) = rejection.find::<JmError>() {
        e.clone()
    } else if rejection.is_not_found() {
        JmError { status: StatusCode::NOT_FOUND, code: BAD_REQUEST, message: "no such route".into() }
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        JmError { status: StatusCode::METHOD_NOT_ALLOWED, code: BAD_REQUEST, message: "this route does not take that method".into() }
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        JmError::bad_request(format!("malformed query string: {e}"))
    } else {
        // Everything else warp or a shared filter produced (malformed bodies, request ids), in this
        // family's envelope.
        JmError::from(super::error::error_of(&rejection))
    };
    Ok(error.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> Vec<JmApp> {
        vec![JmApp { tag: "a1".into(), appkey: "4f7aef34fb361292c566a1cd".into(), master_secret: "054d6103823a726fc12d0466".into(), cross_apps: vec![] }]
    }

    fn basic(s: &str) -> String {
        format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s))
    }

    #[test]
    fn the_app_is_found_by_appkey_without_regard_to_case_and_its_secret_must_match() {
        assert_eq!(authenticate(&apps(), Some(&basic("4f7aef34fb361292c566a1cd:054d6103823a726fc12d0466"))).unwrap().tag, "a1");
        assert_eq!(authenticate(&apps(), Some(&basic("4F7AEF34FB361292C566A1CD:054d6103823a726fc12d0466"))).unwrap().tag, "a1");
        for given in [
            None,
            Some("Bearer x".to_owned()),
            Some("Basic %%%".to_owned()),
            Some(basic("no-colon")),
            Some(basic("ffffffffffffffffffffffff:054d6103823a726fc12d0466")),
            Some(basic("4f7aef34fb361292c566a1cd:054D6103823A726FC12D0466")),
            Some(basic("4f7aef34fb361292c566a1cd:")),
        ] {
            let e = authenticate(&apps(), given.as_deref()).unwrap_err();
            assert_eq!((e.status, e.code), (StatusCode::UNAUTHORIZED, AUTH_FAILED), "{given:?}");
        }
    }

    #[test]
    fn without_an_app_every_request_is_refused_with_the_way_to_configure_one() {
        let e = authenticate(&[], Some(&basic("4f7aef34fb361292c566a1cd:054d6103823a726fc12d0466"))).unwrap_err();
        assert_eq!(e.code, AUTH_FAILED);
        assert!(e.message.contains("jmessage_apps"), "{}", e.message);
    }

    #[test]
    fn the_family_owns_its_prefixes_only() {
        for path in ["/v1/users/", "/v2/messages", "/groups/1/members", "/cross/users/x", "/v1"] {
            assert!(owns(path), "{path}");
        }
        for path in ["/v10/x", "/message/send", "/groupsx", "/api/user", "/"] {
            assert!(!owns(path), "{path}");
        }
    }
}
