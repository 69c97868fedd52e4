//! The app's settings: sensitive words and their filter switch (`/v1/sensitiveword...`) and the SDK
//! registration switch (`/v1/sdkregister/status`).

use rookery_events::{TenantCommand, MAX_SENSITIVE_WORDS};
use serde_json::{json, Value};
use warp::{Filter, Rejection, Reply};

use super::fields::{self, kind};
use super::users::{page, PageQuery};
use super::{ctx, jm_json, no_content, Ctx, JmError};
use crate::http::ApiState;
use crate::timefmt::format_civil;

/// Most words one page of the list may hold.
pub const MAX_WORD_PAGE: usize = 2000;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let c = || ctx(state.clone());
    let words = || warp::path!("v1" / "sensitiveword");
    let add = words().and(warp::post()).and(c()).and(jm_json()).and_then(add);
    let rename = words().and(warp::put()).and(c()).and(jm_json()).and_then(rename);
    let remove = words().and(warp::delete()).and(c()).and(jm_json()).and_then(remove);
    let list = words().and(warp::get()).and(c()).and(warp::query::<PageQuery>()).and_then(list);
    let filter_set =
        warp::path!("v1" / "sensitiveword" / "status").and(warp::put()).and(c()).and(warp::query::<fields::StatusQuery>()).and_then(|c, q| switch(c, q, true));
    let filter_get = warp::path!("v1" / "sensitiveword" / "status").and(warp::get()).and(c()).and_then(|c| status(c, true));
    let sdk_set =
        warp::path!("v1" / "sdkregister" / "status").and(warp::put()).and(c()).and(warp::query::<fields::StatusQuery>()).and_then(|c, q| switch(c, q, false));
    let sdk_get = warp::path!("v1" / "sdkregister" / "status").and(warp::get()).and(c()).and_then(|c| status(c, false));
    add.or(rename).unify().or(remove).unify().or(list).unify().or(filter_set).unify().or(filter_get).unify().or(sdk_set).unify().or(sdk_get).unify()
}

fn word(obj: &serde_json::Map<String, Value>, field: &str) -> Result<String, JmError> {
    match obj.get(field) {
        Some(Value::String(w)) => Ok(w.clone()),
        None | Some(Value::Null) => Err(JmError::bad_request(format!("{field} is required"))),
        Some(other) => Err(JmError::bad_request(format!("{field} must be a string, got {}", kind(other)))),
    }
}

/// `POST /v1/sensitiveword` with an array of words (1 to 10 characters; at most 100 on the list); 204.
async fn add(c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let Value::Array(items) = &body else {
        return Err(JmError::bad_request(format!("the body must be a json array of words, got {}", kind(&body))).into());
    };
    if items.is_empty() || items.len() > MAX_SENSITIVE_WORDS {
        return Err(JmError::bad_request(format!("give 1 to {MAX_SENSITIVE_WORDS} words, got {}", items.len())).into());
    }
    let words = items
        .iter()
        .map(|w| w.as_str().map(str::to_owned).ok_or_else(|| JmError::bad_request(format!("each word must be a string, got {}", kind(w)))))
        .collect::<Result<Vec<_>, _>>()?;
    c.state.usecases.change_settings(&c.app.tag, TenantCommand::AddSensitiveWords(words), c.origin).await.map_err(JmError::from_usecase)?;
    Ok(no_content())
}

/// `PUT /v1/sensitiveword` with `old_word` and `new_word`; 204.
async fn rename(c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let obj = fields::object(&body, "the body")?;
    let cmd = TenantCommand::RenameSensitiveWord { old: word(obj, "old_word")?, new: word(obj, "new_word")? };
    c.state.usecases.change_settings(&c.app.tag, cmd, c.origin).await.map_err(JmError::from_usecase)?;
    Ok(no_content())
}

/// `DELETE /v1/sensitiveword` with `word`; 204.
async fn remove(c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let obj = fields::object(&body, "the body")?;
    let cmd = TenantCommand::RemoveSensitiveWord(word(obj, "word")?);
    c.state.usecases.change_settings(&c.app.tag, cmd, c.origin).await.map_err(JmError::from_usecase)?;
    Ok(no_content())
}

/// `GET /v1/sensitiveword?start=&count=` (`count` 1 to 2000): `{"start","count","words":[{"name","itime"}],"total"}`.
async fn list(c: Ctx, q: PageQuery) -> Result<warp::reply::Response, Rejection> {
    let (start, count) = page(q.start.as_deref(), q.count.as_deref(), MAX_WORD_PAGE)?;
    let (total, words) = c.state.usecases.sensitive_words(&c.app.tag, start, count).await.map_err(JmError::from_usecase)?;
    let words: Vec<Value> = words.iter().map(|(w, at)| json!({"name": w, "itime": format_civil(*at)})).collect();
    Ok(warp::reply::json(&json!({"start": start, "count": words.len(), "words": words, "total": total})).into_response())
}

/// `PUT /v1/sensitiveword/status?status=0|1` and `PUT /v1/sdkregister/status?status=0|1`; 204.
async fn switch(c: Ctx, q: fields::StatusQuery, filter: bool) -> Result<warp::reply::Response, Rejection> {
    let on = fields::switch(q.status.as_deref(), "status", "1", "0")?;
    let cmd = if filter { TenantCommand::SwitchSensitiveFilter(on) } else { TenantCommand::SwitchSdkRegistration(on) };
    c.state.usecases.change_settings(&c.app.tag, cmd, c.origin).await.map_err(JmError::from_usecase)?;
    Ok(no_content())
}

/// `GET /v1/sensitiveword/status` and `GET /v1/sdkregister/status`: `{"status": 0|1}`.
async fn status(c: Ctx, filter: bool) -> Result<warp::reply::Response, Rejection> {
    let s = c.state.usecases.switches(&c.app.tag).await.map_err(JmError::from_usecase)?;
    let on = if filter { s.sensitive_filter } else { s.sdk_registration };
    Ok(warp::reply::json(&json!({"status": u8::from(on)})).into_response())
}
