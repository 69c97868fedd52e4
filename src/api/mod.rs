//! The REST API (WuKongIM/LiMaoIM compatible): one module per resource group, each exposing
//! `routes(state)`. JSON exists only here: request and response types are DTOs converted by hand to
//! and from domain types.

mod channel;
mod conversation;
mod error;
mod history;
mod message;
mod route;
mod user;

use std::net::SocketAddr;
use std::sync::Arc;

use rookery_actors::{Core, Origin};
use rookery_events::{Actor, RequestId};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;
use warp::{Filter, Rejection, Reply};

pub use error::{recover, ApiError};
pub use history::{format_time, parse_time};

use crate::config::Config;

/// Largest JSON body accepted, before base64 decoding of payloads.
const MAX_BODY_BYTES: u64 = 4 << 20;

/// What every handler gets.
#[derive(Clone)]
pub struct ApiState {
    /// The actor layer.
    pub core: Core,
    /// Server settings.
    pub config: Arc<Config>,
    /// Online WKProto sessions: read by `/user/onlinestatus`, and messages sent through the API are
    /// pushed to them.
    pub presence: Arc<crate::gateway::session::Presence>,
}

/// All routes, behind the manager-token check, with JSON errors for everything that fails.
pub fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let health = warp::path!("healthz").and(warp::get()).map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let core = state.core.clone();
    // The hash-chain head, to be anchored outside the server (see `rookery verify`).
    let chain_head = warp::path!("audit" / "head").and(warp::get()).map(move || {
        let (position, hash) = core.log().head();
        warp::reply::json(&serde_json::json!({"position": position.0, "hash": hash.to_hex()})).into_response()
    });
    let api = health
        .or(chain_head)
        .unify()
        .or(route::routes(state.clone()))
        .unify()
        .or(user::routes(state.clone()))
        .unify()
        .or(channel::routes(state.clone()))
        .unify()
        .or(message::routes(state.clone()))
        .unify()
        .or(conversation::routes(state.clone()))
        .unify()
        .or(history::routes(state.clone()))
        .unify();
    authorized(state).and(api).recover(recover).unify()
}

/// Rejects requests without the configured manager token (constant-time comparison).
fn authorized(state: ApiState) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("token")
        .and_then(move |given: Option<String>| {
            let expected = state.config.manager_token.clone().filter(|t| !t.is_empty());
            async move {
                match expected {
                    None => Ok(()),
                    Some(expected) => {
                        let given = given.unwrap_or_default();
                        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                            Ok(())
                        } else {
                            Err(warp::reject::custom(ApiError { status: warp::http::StatusCode::UNAUTHORIZED, msg: "missing or wrong token header".into() }))
                        }
                    }
                }
            }
        })
        .untuple_one()
}

/// Parses a JSON body of any content type, with our own error text.
pub(crate) fn json_body<T: DeserializeOwned + Send>() -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_BODY_BYTES).and(warp::body::bytes()).and_then(|bytes: bytes::Bytes| async move {
        serde_json::from_slice::<T>(&bytes).map_err(|e| warp::reject::custom(ApiError::bad_request(format!("malformed json body: {e}"))))
    })
}

/// Who is asking: the credential used, the request id (kept from `X-Request-Id` when it is a UUID),
/// peer address and user agent.
pub(crate) fn origin(state: ApiState) -> impl Filter<Extract = (Origin,), Error = Rejection> + Clone {
    warp::addr::remote()
        .and(warp::header::optional::<String>("user-agent"))
        .and(warp::header::optional::<String>("x-request-id"))
        .map(move |addr: Option<SocketAddr>, agent: Option<String>, rid: Option<String>| {
            let credential = if state.config.manager_token.as_deref().is_some_and(|t| !t.is_empty()) { "manager" } else { "local" };
            let id = rid.and_then(|r| uuid::Uuid::parse_str(&r).ok()).unwrap_or_else(uuid::Uuid::new_v4);
            Origin {
                actor: Actor::Api { credential: credential.into() },
                request_id: RequestId(*id.as_bytes()),
                source: addr.map(|a| a.to_string()),
                user_agent: agent,
            }
        })
}

/// Passes the state to handlers.
pub(crate) fn with_state(state: ApiState) -> impl Filter<Extract = (ApiState,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// `{"status":200}`, the answer of every successful mutation.
pub(crate) fn ok() -> warp::reply::Response {
    warp::reply::json(&serde_json::json!({"status": 200})).into_response()
}
