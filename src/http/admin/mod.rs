//! The server's own routes, beside the API families: `/healthz`, the audit trail (`/audit/events`,
//! `/audit/head`, `/audit/state`, `/audit/erase`) and online backups (`/backup`). Behind the same API
//! credentials as the WuKongIM family; errors are `{"status": <http status>, "msg": "..."}`, and
//! unknown body fields are refused, so a misspelt field never silently does nothing.

mod history;

use rookery_actors::Origin;
use warp::filters::BoxedFilter;
use warp::{Filter, Rejection, Reply};

use super::{authorized, json_body, origin, valid_request_id, with_state, ApiError, ApiState};

/// Whether `path` is one of this family's.
pub(super) fn owns(path: &str) -> bool {
    path == "/healthz" || path == "/health" || path == "/backup" || path == "/audit" || path.starts_with("/audit/") || path.starts_with("/webhook/")
}

/// This family's routes, behind the credential check, with its own errors.
pub(super) fn routes(state: ApiState) -> BoxedFilter<(warp::reply::Response,)> {
    // `/health` is WuKongIM's name for the same answer.
    let health = warp::path!("healthz")
        .or(warp::path!("health"))
        .unify()
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let core = state.core.clone();
    // The hash-chain head, to be anchored outside the server (see `rookery verify`).
    let chain_head = warp::path!("audit" / "head").and(warp::get()).map(move || {
        let (position, hash) = core.log().head();
        warp::reply::json(&serde_json::json!({"position": position.0, "hash": hash.to_hex()})).into_response()
    });
    let backup = warp::path!("backup").and(warp::post()).and(origin(state.clone())).and(with_state(state.clone())).and(json_body()).and_then(backup);
    let audit_events =
        warp::path!("audit" / "events").and(warp::get()).and(with_state(state.clone())).and(warp::query::<crate::audit::RawQuery>()).and_then(audit_events);
    let dead = warp::path!("webhook" / "deadletters").and(warp::get()).and(with_state(state.clone())).and_then(dead_letters);
    let replay = warp::path!("webhook" / "deadletters" / "replay")
        .and(warp::post())
        .and(origin(state.clone()))
        .and(with_state(state.clone()))
        .and(json_body())
        .and_then(replay_dead_letters);
    let api = health
        .or(chain_head)
        .unify()
        .or(audit_events)
        .unify()
        .or(backup)
        .unify()
        .or(dead)
        .unify()
        .or(replay)
        .unify()
        .or(history::routes(state.clone()))
        .unify();
    authorized(state).and(valid_request_id()).and(api).recover(super::error::recover).unify().boxed()
}

/// `GET /audit/events`: one page of the events matching the query (see `crate::audit`).
async fn audit_events(state: ApiState, raw: crate::audit::RawQuery) -> Result<warp::reply::Response, Rejection> {
    let query = raw.parse().map_err(|msg| warp::reject::custom(ApiError::bad_request(msg)))?;
    let log = state.core.log().clone();
    let page = tokio::task::spawn_blocking(move || crate::audit::run(&*log, &query))
        .await
        .map_err(|e| warp::reject::custom(ApiError { status: warp::http::StatusCode::INTERNAL_SERVER_ERROR, msg: format!("audit query failed: {e}") }))?
        .map_err(|e| {
            tracing::error!(error = %e, "audit query failed");
            warp::reject::custom(ApiError { status: warp::http::StatusCode::INTERNAL_SERVER_ERROR, msg: e.to_string() })
        })?;
    Ok(warp::reply::json(&crate::audit::page_json(&page)).into_response())
}

/// `GET /webhook/deadletters`: the webhook deliveries set aside after `webhook_max_attempts`.
async fn dead_letters(state: ApiState) -> Result<warp::reply::Response, Rejection> {
    let letters = crate::webhook::dead_letters(state.core.log())
        .await
        .map_err(|e| warp::reject::custom(ApiError { status: warp::http::StatusCode::INTERNAL_SERVER_ERROR, msg: format!("{e:#}") }))?;
    Ok(warp::reply::json(&serde_json::json!({"status": 200, "dead_letters": letters})).into_response())
}

/// `POST /webhook/deadletters/replay` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    /// Only these delivery ids; all when absent.
    #[serde(default)]
    deliveries: Option<Vec<String>>,
}

/// `POST /webhook/deadletters/replay`: delivers dead letters again, once each; those delivered are
/// removed. Admin credentials only.
async fn replay_dead_letters(origin: Origin, state: ApiState, request: ReplayRequest) -> Result<warp::reply::Response, Rejection> {
    let results = crate::webhook::replay_dead_letters(&state.config, &state.core, request.deliveries)
        .await
        .map_err(|e| warp::reject::custom(ApiError::bad_request(format!("{e:#}"))))?;
    tracing::info!(actor = ?origin.actor, replayed = results.len(), "webhook dead letters replayed");
    let results: Vec<serde_json::Value> = results
        .into_iter()
        .map(|(delivery, r)| match r {
            Ok(()) => serde_json::json!({"delivery": delivery, "delivered": true}),
            Err(e) => serde_json::json!({"delivery": delivery, "delivered": false, "error": e}),
        })
        .collect();
    Ok(warp::reply::json(&serde_json::json!({"status": 200, "results": results})).into_response())
}

/// `POST /backup` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    /// Where to write the backup, on the server's machine: absolute, new or empty.
    dir: String,
}

/// `POST /backup`: an online checkpoint of the event log into a directory on the server's machine
/// (what `rookery backup` asks for when a server holds the log). Admin credentials only.
async fn backup(origin: Origin, state: ApiState, request: BackupRequest) -> Result<warp::reply::Response, Rejection> {
    let internal = |msg: String| warp::reject::custom(ApiError { status: warp::http::StatusCode::INTERNAL_SERVER_ERROR, msg });
    let Some(rocks) = state.rocks.clone() else {
        return Err(internal("this server's event log cannot take checkpoints".into()));
    };
    let dir = std::path::PathBuf::from(request.dir.trim());
    if !dir.is_absolute() {
        return Err(ApiError::bad_request(format!("dir must be an absolute path on the server's machine, got {:?}", request.dir)).into());
    }
    crate::backup::target(&dir).map_err(|e| warp::reject::custom(ApiError::bad_request(format!("{e:#}"))))?;
    let (target, data_dir) = (dir.clone(), state.config.data_dir.clone());
    let manifest = tokio::task::spawn_blocking(move || crate::backup::create(&rocks, &data_dir, &target))
        .await
        .map_err(|e| internal(format!("backup task failed: {e}")))?
        .map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), dir = %dir.display(), "backup failed");
            internal(format!("{e:#}"))
        })?;
    tracing::info!(actor = ?origin.actor, dir = %dir.display(), position = manifest.position, chain_head = %manifest.chain_head, "backup written");
    Ok(warp::reply::json(&serde_json::json!({
        "status": 200,
        "dir": dir.display().to_string(),
        "position": manifest.position,
        "chain_head": manifest.chain_head,
        "created": manifest.created,
    }))
    .into_response())
}
