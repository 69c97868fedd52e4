//! Where clients connect: `GET /route` and `POST /route/batch`.
//!
//! A single node answers every uid with its own configured external addresses; the uid is validated
//! but does not change the answer.

use serde::{Deserialize, Serialize};
use warp::{Filter, Rejection, Reply};

use super::message::check_id;
use crate::config::Config;
use crate::http::{json_body, with_state, ApiError, ApiState};

/// Most uids one `/route/batch` call may ask about.
const MAX_BATCH_UIDS: usize = 10_000;

/// The routing routes, each answering a JSON response or a rejection for the family's error rendering.
pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let one = warp::path!("route").and(warp::get()).and(with_state(state.clone())).and(warp::query::<RouteQuery>()).and_then(route);
    let batch = warp::path!("route" / "batch").and(warp::post()).and(with_state(state)).and(json_body()).and_then(route_batch);
    one.or(batch).unify()
}

/// `GET /route` query. Other parameters (`intranet`, `node_id`) are ignored: a single node has one
/// set of addresses.
#[derive(Debug, Deserialize)]
struct RouteQuery {
    uid: Option<String>,
}

/// The addresses a client may connect to.
#[derive(Debug, Clone, Serialize)]
struct Addresses {
    /// `host:port` of the WKProto TCP listener.
    tcp_addr: String,
    /// `ws://host:port` of the WebSocket listener.
    ws_addr: String,
    /// `wss://...` when TLS is terminated in front of the server, otherwise empty (the JS SDK uses
    /// `wss_addr` whenever it is non-empty).
    wss_addr: String,
}

/// One group of `/route/batch`: the addresses and the uids they serve.
#[derive(Debug, Serialize)]
struct BatchGroup {
    #[serde(flatten)]
    addresses: Addresses,
    uids: Vec<String>,
}

/// The configured external addresses, falling back to the listeners' own addresses.
fn addresses(config: &Config) -> Addresses {
    let given = |v: &Option<String>| v.as_ref().filter(|s| !s.is_empty()).cloned();
    Addresses {
        tcp_addr: given(&config.external_tcp_addr).unwrap_or_else(|| config.tcp_addr.to_string()),
        ws_addr: given(&config.external_ws_addr).unwrap_or_else(|| format!("ws://{}", config.ws_addr)),
        // With wss on the WebSocket listener itself, that is where clients go.
        wss_addr: given(&config.external_wss_addr).unwrap_or_else(|| if config.tls_ws { format!("wss://{}", config.ws_addr) } else { String::new() }),
    }
}

async fn route(state: ApiState, q: RouteQuery) -> Result<warp::reply::Response, Rejection> {
    let uid = q.uid.ok_or_else(|| ApiError::bad_request("uid is required"))?;
    check_id("uid", &uid)?;
    Ok(warp::reply::json(&addresses(&state.config)).into_response())
}

async fn route_batch(state: ApiState, uids: Vec<String>) -> Result<warp::reply::Response, Rejection> {
    if uids.len() > MAX_BATCH_UIDS {
        return Err(ApiError::bad_request(format!("at most {MAX_BATCH_UIDS} uids per request")).into());
    }
    for uid in &uids {
        check_id("uid", uid)?;
    }
    // One node serves everyone, so there is exactly one group (with no uids when none were asked).
    let groups = [BatchGroup { addresses: addresses(&state.config), uids }];
    Ok(warp::reply::json(&groups).into_response())
}
