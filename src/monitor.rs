//! The monitor listener: liveness and a few numbers about the log and the actors.

use std::sync::Arc;

use rookery_actors::Core;
use rookery_storage::{EventLog, RocksLog};
use warp::{Filter, Reply};

pub(crate) fn routes(core: Core, log: Arc<dyn EventLog>, rocks: Arc<RocksLog>) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let health = warp::path!("healthz").map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let varz = warp::path!("varz").map(move || {
        let (position, hash) = log.head();
        let stats = core.stats();
        // Commit groups and fsyncs since start: `log_records / log_groups` is the mean group size.
        let log_stats = rocks.stats();
        warp::reply::json(&serde_json::json!({
            "log_position": position.0,
            "chain_head": hash.to_hex(),
            "log_groups": log_stats.groups,
            "log_records": log_stats.records,
            "log_syncs": log_stats.syncs,
            "channel_actors": stats.channel_actors,
            "user_actors": stats.user_actors,
        }))
        .into_response()
    });
    let not_found = warp::any().map(|| warp::reply::with_status(warp::reply::json(&serde_json::json!({"status": 404, "msg": "no such route"})), warp::http::StatusCode::NOT_FOUND).into_response());
    warp::get().and(health.or(varz).unify()).or(not_found).unify()
}
