//! The REST listener: one port, several API families. A request goes to the family that owns its path
//! ([`Families::for_path`]), and each family owns its credential check, its error envelope and its 404:
//!
//! * `admin` — the server's own routes: `/healthz`, `/audit/...` (events, chain head, state as of any
//!   instant, erasure) and `/backup`;
//! * `jmessage` — the JMessage server API (seed 002) under `/v1/`, `/v2/`, `/groups/`, `/cross/`, with
//!   its own Basic credentials and `{"error":{"code","message"}}` envelope;
//! * `media` — `GET /media/<sha256>`: the bytes of uploads, for whoever has the URL;
//! * `popim` — the PopIM-style app API (seed 003) under `/api/` (and its SMS paths), acting for the
//!   `login_uid` an app's backend names, with `{"code","msg","data"}` envelopes;
//! * `openim` — the OpenIM server API (seed 004) at the document's twelve exact paths, with its
//!   `secret` and app-manager tokens and `{"errCode","errMsg"}` envelope;
//! * `wukongim` — the WuKongIM/LiMaoIM server API, and the family for every path no other family owns.
//!
//! Families parse their wire format into the use cases (`crate::usecase`) and render the answers; the
//! helpers here (JSON bodies, request ids, the `Origin` of a mutation, API credentials) are shared.
//! Request and response types are DTOs converted by hand to and from domain types.

mod admin;
mod error;
pub mod jmessage;
mod media;
pub mod openim;
pub mod popim;
pub mod serve;
mod wukongim;

use std::net::SocketAddr;
use std::sync::Arc;

use rookery_actors::{Core, Origin};
use rookery_events::{Actor, RequestId};
use serde::de::DeserializeOwned;
use warp::{Filter, Rejection, Reply};

pub use error::ApiError;

use crate::config::{Config, Scope, LOCAL_CREDENTIAL};
pub use serve::RequestContext;

/// The header that carries a request's id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Largest JSON body accepted, before base64 decoding of payloads.
const MAX_BODY_BYTES: u64 = 4 << 20;

/// What every handler gets.
#[derive(Clone)]
pub struct ApiState {
    /// The use cases (sending, tokens, logins) every family calls.
    pub usecases: crate::usecase::UseCases,
    /// The actor layer, for reads.
    pub core: Core,
    /// Server settings.
    pub config: Arc<Config>,
    /// Online WKProto sessions: read by `/user/onlinestatus`, and messages sent through the API are
    /// pushed to them.
    pub presence: Arc<crate::presence::Presence>,
    /// The per-credential request rate (shared with the gateway's limits).
    pub limits: Arc<crate::limits::Limits>,
    /// The RocksDB log itself, for `POST /backup` (`None` when the core runs on another engine).
    pub rocks: Option<Arc<rookery_storage::RocksLog>>,
}

/// Every family's routes, each behind its own credential check and rendering its own errors.
#[derive(Clone)]
pub struct Families {
    admin: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    jmessage: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    media: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    openim: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    popim: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    wukongim: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    /// `/varz` and `/connz`, when the server's summaries are mounted here too (WuKongIM serves them on
    /// its API port), behind the WuKongIM family's credential check.
    summaries: Option<warp::filters::BoxedFilter<(warp::reply::Response,)>>,
}

impl Families {
    /// Every family over `state`.
    pub fn new(state: ApiState) -> Families {
        Families {
            admin: admin::routes(state.clone()),
            jmessage: jmessage::routes(state.clone()),
            media: media::routes(state.clone()),
            openim: openim::routes(state.clone()),
            popim: popim::routes(state.clone()),
            wukongim: wukongim::routes(state.clone()),
            summaries: None,
        }
    }

    /// Serves `summaries` (`GET /varz`, `GET /connz`, made by whoever owns them) on this listener too,
    /// behind the API credential, with the WuKongIM family's errors.
    #[must_use]
    pub fn with_summaries(mut self, state: ApiState, summaries: warp::filters::BoxedFilter<(warp::reply::Response,)>) -> Families {
        self.summaries = Some(wukongim::guarded(state, summaries));
        self
    }

    /// The family that answers requests for `path`.
    pub fn for_path(&self, path: &str) -> &warp::filters::BoxedFilter<(warp::reply::Response,)> {
        if let (Some(s), "/varz" | "/connz") = (&self.summaries, path) {
            s
        } else if admin::owns(path) {
            &self.admin
        } else if jmessage::owns(path) {
            &self.jmessage
        } else if media::owns(path) {
            &self.media
        } else if openim::owns(path) {
            &self.openim
        } else if popim::owns(path) {
            &self.popim
        } else {
            &self.wukongim
        }
    }
}

/// The credential a request authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Its configured name (`local` when no credential is configured).
    pub name: String,
    /// What it may do.
    pub scope: Scope,
}

/// Which configured credential `given` (the `token` header) is. With no credential configured the
/// API is open (it then listens on loopback only, see `Config::validate`) and every request is
/// `local`, an admin. Secrets are compared as SHA-256 digests in constant time, against every
/// credential, so neither timing nor length tells how close a guess was.
///
/// # Errors
/// 401 when credentials are configured and `given` is none of their secrets.
pub fn credential(config: &Config, given: Option<&str>) -> Result<Credential, ApiError> {
    if config.credentials().is_empty() {
        return Ok(Credential { name: LOCAL_CREDENTIAL.into(), scope: Scope::Admin });
    }
    config
        .credential_for(given.unwrap_or_default())
        .map(|key| Credential { name: key.name, scope: key.scope })
        .ok_or_else(|| ApiError { status: warp::http::StatusCode::UNAUTHORIZED, msg: "missing or wrong token header".into() })
}

/// The request's credential, from its `token` header.
pub(crate) fn credential_of(state: ApiState) -> impl Filter<Extract = (Credential,), Error = Rejection> + Clone {
    warp::header::optional::<String>("token").and_then(move |given: Option<String>| {
        let found = credential(&state.config, given.as_deref()).map_err(warp::reject::custom);
        async move { found }
    })
}

/// Rejects requests without a configured credential (when any is configured), requests to an open API
/// under a host name that is not loopback, and requests past the credential's rate limit (429 with
/// `Retry-After`).
pub(crate) fn authorized(state: ApiState) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let limits = state.limits.clone();
    same_origin()
        .and(open_api_host(state.clone()))
        .and(credential_of(state))
        .and_then(move |credential: Credential| {
            let checked = limits.check_api(&credential.name).map_err(|wait| {
                warp::reject::custom(ApiError {
                    status: warp::http::StatusCode::TOO_MANY_REQUESTS,
                    msg: format!("rate limit of credential {:?} reached; retry in {} ms", credential.name, wait.as_millis().max(1)),
                })
            });
            async move { checked }
        })
        .untuple_one()
}

/// Refuses an `X-Request-Id` that cannot be kept (not a UUID, nor 1 to 128 visible ASCII characters) instead of silently recording another id.
pub(crate) fn valid_request_id() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>(REQUEST_ID_HEADER)
        .and_then(|given: Option<String>| async move {
            match given {
                Some(id) if serve::recorded_request_id(&id).is_none() => Err(warp::reject::custom(ApiError::bad_request(format!(
                    "x-request-id must be a uuid or 1 to {} visible ascii characters, got {:?}",
                    serve::MAX_REQUEST_ID,
                    truncated(&id, 64)
                )))),
                _ => Ok(()),
            }
        })
        .untuple_one()
}

fn truncated(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// Parses a JSON body of any content type (WuKongIM does; business servers send JSON under all sorts
/// of them, curl and PHP under a form's), with our own error text.
pub(crate) fn json_body<T: DeserializeOwned + Send>() -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_BODY_BYTES).and(warp::body::bytes()).and_then(|bytes: bytes::Bytes| async move {
        serde_json::from_slice::<T>(&bytes).map_err(|e| warp::reject::custom(ApiError::bad_request(format!("malformed json body: {e}"))))
    })
}

/// Refuses requests a web page of another origin made: a browser names the page's origin in `Origin` on
/// every cross-origin POST (forms and `text/plain` included, which it sends without asking first), and
/// in `Sec-Fetch-Site`. The API serves servers, which send neither, and same-origin pages. Without this a
/// page open in a browser on the server's machine could change state through an open loopback API, or
/// through a family whose credentials the browser keeps (HTTP Basic).
pub(crate) fn same_origin() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("origin")
        .and(warp::header::optional::<String>("host"))
        .and(warp::header::optional::<String>("sec-fetch-site"))
        .and_then(|origin: Option<String>, host: Option<String>, site: Option<String>| async move {
            let foreign_origin = origin.as_deref().is_some_and(|o| {
                let authority = o.split_once("://").map_or(o, |(_, rest)| rest).trim_end_matches('/');
                !host.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(authority))
            });
            let cross_site = site.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("cross-site") || s.eq_ignore_ascii_case("same-site"));
            if foreign_origin || cross_site {
                return Err(warp::reject::custom(ApiError {
                    status: warp::http::StatusCode::FORBIDDEN,
                    msg: format!(
                        "requests from web pages of another origin are refused (origin {:?})",
                        truncated(origin.as_deref().or(site.as_deref()).unwrap_or_default(), 64)
                    ),
                }));
            }
            Ok(())
        })
        .untuple_one()
}

/// With no credential configured (an open API, which only listens on loopback), refuses requests whose
/// `Host` is not a loopback address or `localhost`: a web page whose name was rebound to 127.0.0.1
/// (DNS rebinding) would otherwise reach the open API from the browser of anyone on this machine.
fn open_api_host(state: ApiState) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("host")
        .and_then(move |host: Option<String>| {
            let open = state.config.credentials().is_empty();
            async move {
                match host {
                    Some(h) if open && !is_loopback_host(&h) => Err(warp::reject::custom(ApiError {
                        status: warp::http::StatusCode::FORBIDDEN,
                        msg: format!(
                            "host {:?} is not a loopback address; the API has no credential configured and answers only to localhost (configure manager_token or api_keys to serve other names)",
                            truncated(&h, 64)
                        ),
                    })),
                    _ => Ok(()),
                }
            }
        })
        .untuple_one()
}

/// Whether a `Host` header names this machine's loopback interface (`localhost`, `127.x.y.z`, `[::1]`,
/// with or without a port).
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Who is asking: the credential used, the request id (kept from `X-Request-Id` when it is a UUID),
/// peer address and user agent.
///
/// Every route that changes state takes an `Origin` (the actors record one in each envelope), so this
/// is also where read-only credentials are stopped: it rejects them with 403 before the body is read
/// or anything is decided.
pub(crate) fn origin(state: ApiState) -> impl Filter<Extract = (Origin,), Error = Rejection> + Clone {
    credential_of(state)
        .and_then(|credential: Credential| async move {
            if credential.scope != Scope::Admin {
                return Err(warp::reject::custom(ApiError {
                    status: warp::http::StatusCode::FORBIDDEN,
                    msg: format!("the credential {:?} is read-only and this route changes state", credential.name),
                }));
            }
            Ok(Actor::Api { credential: credential.name })
        })
        .and(request_origin())
        .map(|actor: Actor, origin: Origin| Origin { actor, ..origin })
}

/// The request's id, peer address and user agent as an [`Origin`] (its actor still the server's,
/// for the family to set).
pub(crate) fn request_origin() -> impl Filter<Extract = (Origin,), Error = Rejection> + Clone {
    warp::ext::optional::<RequestContext>()
        .and(warp::addr::remote())
        .and(warp::header::optional::<String>("user-agent"))
        .and(warp::header::optional::<String>(REQUEST_ID_HEADER))
        .map(|context: Option<RequestContext>, addr: Option<SocketAddr>, agent: Option<String>, rid: Option<String>| {
            // The server loop (serve.rs) always sets the context; the fallback serves filters run
            // without it, such as warp's test harness.
            let (id, peer) = match context {
                Some(c) => (c.request_id, c.peer),
                None => (rid.and_then(|r| serve::recorded_request_id(&r)).unwrap_or_else(uuid::Uuid::new_v4), addr),
            };
            Origin { actor: Actor::System, request_id: RequestId(*id.as_bytes()), source: peer.map(|a| a.to_string()), user_agent: agent }
        })
}

/// A JSON value's kind, for the error messages of the families that check fields one by one.
pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the first file of a multipart form found in one of `fields`, at most `max` bytes, and the
/// texts of the form's other `texts` fields: (file name and bytes, texts by field).
///
/// # Errors
/// The family's error made by `bad` (a malformed form or an unreadable part), or by `too_large`.
pub(crate) async fn multipart_file<E>(
    form: warp::multipart::FormData,
    fields: &[&str],
    texts: &[&str],
    max: usize,
    bad: impl Fn(String) -> E,
    too_large: impl Fn() -> E,
) -> Result<(Option<(String, Vec<u8>)>, std::collections::BTreeMap<String, String>), E> {
    use bytes::Buf as _;
    use futures_util::TryStreamExt as _;
    let mut parts = form;
    let (mut file, mut found) = (None, std::collections::BTreeMap::new());
    while let Some(part) = parts.try_next().await.map_err(|e| bad(format!("malformed multipart form: {e}")))? {
        let field = part.name().to_owned();
        let is_file = fields.contains(&field.as_str()) && file.is_none();
        if !is_file && !texts.contains(&field.as_str()) {
            continue;
        }
        let name = part.filename().unwrap_or("upload").to_owned();
        let mut bytes = Vec::new();
        let mut stream = part.stream();
        while let Some(mut chunk) = stream.try_next().await.map_err(|e| bad(format!("reading the form: {e}")))? {
            if bytes.len() + chunk.remaining() > max {
                return Err(too_large());
            }
            while chunk.has_remaining() {
                let piece = chunk.chunk();
                bytes.extend_from_slice(piece);
                let n = piece.len();
                chunk.advance(n);
            }
        }
        if is_file {
            file = Some((name, bytes));
        } else {
            found.insert(field, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok((file, found))
}

/// Passes the state to handlers.
pub(crate) fn with_state(state: ApiState) -> impl Filter<Extract = (ApiState,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// `{"status":200}`, the answer of every successful mutation.
pub(crate) fn ok() -> warp::reply::Response {
    warp::reply::json(&serde_json::json!({"status": 200})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised_with_or_without_a_port() {
        for h in ["localhost", "LOCALHOST:5001", "127.0.0.1", "127.0.0.1:5001", "127.8.9.10:80", "[::1]", "[::1]:5001"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["evil.example", "evil.example:5001", "localhost.evil.example", "10.0.0.1:5001", "[2001:db8::1]:5001", ""] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
