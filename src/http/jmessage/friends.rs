//! Friends: add, delete, notes and the list (`/v1/users/{username}/friends`).

use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::fields::{self, kind};
use super::users::{find, user_json};
use super::{ctx, jm_json, no_content, Ctx, JmError};
use crate::http::ApiState;

/// Most users one friend request may name.
pub const MAX_FRIENDS: usize = 500;
/// `899070`: the users are friends already.
const FRIENDS_ALREADY: u32 = 899_070;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let c = || ctx(state.clone());
    let path = || warp::path!("v1" / "users" / String / "friends");
    let add = path().and(warp::post()).and(c()).and(jm_json()).and_then(add);
    let remove = path().and(warp::delete()).and(c()).and(jm_json()).and_then(remove);
    let notes = path().and(warp::put()).and(c()).and(jm_json()).and_then(notes);
    let list = path().and(warp::get()).and(c()).and_then(list);
    add.or(remove).unify().or(notes).unify().or(list).unify()
}

fn friend_error(e: crate::usecase::Error) -> JmError {
    match e {
        crate::usecase::Error::Core(rookery_actors::CoreError::Rejected(rookery_events::Rejection::Exists(m))) => {
            JmError::new(StatusCode::CONFLICT, FRIENDS_ALREADY, format!("{m} exists already"))
        }
        e => JmError::from_usecase(e),
    }
}

/// `POST /v1/users/{username}/friends` with up to 500 usernames; 201. All or nothing: an unknown
/// user (899002) or an existing friendship (899070) refuses the request.
async fn add(username: String, c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let username = fields::username(&username)?;
    let peers = fields::usernames(&body, MAX_FRIENDS)?;
    c.state.usecases.add_friends(&c.app.tag, &username, peers, c.origin).await.map_err(friend_error)?;
    Ok(warp::reply::with_status(warp::reply::reply(), StatusCode::CREATED).into_response())
}

/// `DELETE /v1/users/{username}/friends` with up to 500 usernames; 204 (those that are not friends
/// are skipped; an unknown user is 899002).
async fn remove(username: String, c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let username = fields::username(&username)?;
    let peers = fields::usernames(&body, MAX_FRIENDS)?;
    c.state.usecases.remove_friends(&c.app.tag, &username, peers, c.origin).await.map_err(friend_error)?;
    Ok(no_content())
}

/// `PUT /v1/users/{username}/friends` with up to 500 `{username, note_name, others}`; 204.
async fn notes(username: String, c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let username = fields::username(&username)?;
    let Value::Array(items) = &body else {
        return Err(JmError::bad_request(format!("the body must be a json array of notes, got {}", kind(&body))).into());
    };
    if items.is_empty() || items.len() > MAX_FRIENDS {
        return Err(JmError::bad_request(format!("give 1 to {MAX_FRIENDS} notes, got {}", items.len())).into());
    }
    let mut notes = Vec::with_capacity(items.len());
    for item in items {
        let obj = fields::object(item, "each note")?;
        let friend = match obj.get("username") {
            None | Some(Value::Null) => return Err(JmError::bad_request("username is required in each note").into()),
            Some(v) => fields::username_value(v)?,
        };
        let note_name = fields::text(obj, "note_name", fields::MAX_SHORT_TEXT, true)?;
        let others = fields::text(obj, "others", fields::MAX_TEXT, false)?;
        if note_name.is_none() && others.is_none() {
            return Err(JmError::bad_request("each note needs note_name or others").into());
        }
        notes.push((friend, note_name, others));
    }
    c.state.usecases.set_friend_notes(&c.app.tag, &username, notes, c.origin).await.map_err(friend_error)?;
    Ok(no_content())
}

/// `GET /v1/users/{username}/friends`: user objects with `note_name`, `others` and `appkey`.
async fn list(username: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let user = find(&c, &username).await?;
    let friends = c.state.usecases.friends(&c.app.tag, &user.username).await.map_err(JmError::from_usecase)?;
    let out: Vec<Value> = friends
        .iter()
        .map(|(a, note)| {
            let mut u = user_json(a);
            u["note_name"] = json!(note.note_name);
            u["others"] = json!(note.others);
            u["appkey"] = json!(c.app.appkey);
            u
        })
        .collect();
    Ok(warp::reply::json(&out).into_response())
}
