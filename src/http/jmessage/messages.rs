//! Messages: `POST /v1/messages` (to a user or a group, through the server's one send path) and
//! `POST /v1/messages/{username}/{msg_id}/retract`.
//!
//! The stored payload is JSON a WuKongIM client also understands: `{"type": 1|2|4|0, "content"?: text,
//! "family": "jmessage", "msg_type", "body": msg_body, ...}` (text 1, image 2, voice 4, custom 0).
//! `msg_id` is the message's position in the event log (below 2^53, exact in any JSON reader), so a
//! retraction finds it with one read.

use rookery_events::{person_channel_id, tenant_group, ChannelKey, ChannelType, Uid};
use serde_json::{json, Map, Value};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::fields::{self, kind};
use super::users::find;
use super::{ctx, jm_json, no_content, Ctx, JmError, GROUP_NOT_FOUND, NOT_ALLOWED, USER_NOT_FOUND};
use crate::http::ApiState;
use crate::usecase::Outgoing;

/// Largest `msg_body`, as compact JSON, in bytes.
pub const MAX_BODY: usize = 4096;
/// How long after sending its sender may retract a message.
pub const RETRACT_WINDOW_MS: u64 = 3 * 60 * 1000;

/// `855001`: too late to retract.
const RETRACT_EXPIRED: u32 = 855_001;
/// `855003`: no such message to retract.
const RETRACT_NOT_FOUND: u32 = 855_003;
/// `855004`: retracted already.
const RETRACTED_ALREADY: u32 = 855_004;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let c = || ctx(state.clone());
    let send = warp::path!("v1" / "messages").and(warp::post()).and(c()).and(jm_json()).and_then(send);
    let retract = warp::path!("v1" / "messages" / String / String / "retract").and(warp::post()).and(c()).and_then(retract);
    send.or(retract).unify()
}

fn required<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a Value, JmError> {
    obj.get(field).filter(|v| !v.is_null()).ok_or_else(|| JmError::bad_request(format!("{field} is required")))
}

fn string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, JmError> {
    let v = required(obj, field)?;
    v.as_str().ok_or_else(|| JmError::bad_request(format!("{field} must be a string, got {}", kind(v))))
}

fn flag(obj: &Map<String, Value>, field: &str) -> Result<bool, JmError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(JmError::bad_request(format!("{field} must be true or false, got {}", kind(other)))),
    }
}

/// A whole number field of `body` within `max`.
fn whole(body: &Map<String, Value>, field: &str, max: u64) -> Result<u64, JmError> {
    match required(body, field)?.as_u64() {
        Some(n) if n <= max => Ok(n),
        _ => Err(JmError::bad_request(format!("msg_body.{field} must be a whole number up to {max}"))),
    }
}

/// Checks `msg_body` against its `msg_type`; answers the WuKongIM content type and, for text, the text.
fn body_of(msg_type: &str, body: &Map<String, Value>) -> Result<(u8, Option<String>), JmError> {
    let text_field = |field: &str| -> Result<(), JmError> {
        match required(body, field)? {
            Value::String(_) => Ok(()),
            other => Err(JmError::bad_request(format!("msg_body.{field} must be a string, got {}", kind(other)))),
        }
    };
    let optional_text = |field: &str| -> Result<(), JmError> {
        match body.get(field) {
            None | Some(Value::Null | Value::String(_)) => Ok(()),
            Some(other) => Err(JmError::bad_request(format!("msg_body.{field} must be a string, got {}", kind(other)))),
        }
    };
    match msg_type {
        "text" => {
            let text = match required(body, "text")? {
                Value::String(s) => s.clone(),
                other => return Err(JmError::bad_request(format!("msg_body.text must be a string, got {}", kind(other)))),
            };
            match body.get("extras") {
                None | Some(Value::Null | Value::Object(_)) => {}
                Some(other) => return Err(JmError::bad_request(format!("msg_body.extras must be a json object, got {}", kind(other)))),
            }
            Ok((1, Some(text)))
        }
        "image" => {
            text_field("media_id")?;
            text_field("format")?;
            whole(body, "media_crc32", u64::from(u32::MAX))?;
            whole(body, "width", u64::from(u32::MAX))?;
            whole(body, "height", u64::from(u32::MAX))?;
            whole(body, "fsize", u64::MAX)?;
            optional_text("hash")?;
            Ok((2, None))
        }
        "voice" => {
            text_field("media_id")?;
            whole(body, "media_crc32", u64::from(u32::MAX))?;
            whole(body, "duration", u64::from(u32::MAX))?;
            whole(body, "fsize", u64::MAX)?;
            optional_text("hash")?;
            Ok((4, None))
        }
        "custom" => Ok((0, None)),
        other => Err(JmError::bad_request(format!("msg_type must be text, image, voice or custom, got {other:?}"))),
    }
}

/// `POST /v1/messages`: 201 `{"msg_id","msg_ctime"}`.
async fn send(c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let obj = fields::object(&body, "the body")?;
    if required(obj, "version")?.as_u64() != Some(1) {
        return Err(JmError::bad_request("version must be 1").into());
    }
    let target_type = string(obj, "target_type")?;
    if string(obj, "from_type")? != "user" {
        return Err(JmError::bad_request("from_type must be user").into());
    }
    let msg_type = string(obj, "msg_type")?;
    if let Some(appkey) = obj.get("target_appkey").filter(|v| !v.is_null()) {
        if !appkey.as_str().is_some_and(|k| k.eq_ignore_ascii_case(&c.app.appkey)) {
            return Err(JmError::bad_request("target_appkey must be this app's appkey").into());
        }
    }
    let from_name = fields::text(obj, "from_name", fields::MAX_TEXT, false)?;
    let target_name = fields::text(obj, "target_name", fields::MAX_TEXT, false)?;
    let no_offline = flag(obj, "no_offline")?;
    let no_notification = flag(obj, "no_notification")?;
    let notification = match obj.get("notification") {
        None | Some(Value::Null) => None,
        Some(Value::Object(n)) => {
            let title = fields::text(n, "title", fields::MAX_TEXT, false)?;
            let alert = fields::text(n, "alert", fields::MAX_TEXT, false)?;
            Some(json!({"title": title, "alert": alert}))
        }
        Some(other) => return Err(JmError::bad_request(format!("notification must be a json object, got {}", kind(other))).into()),
    };
    let msg_body = match required(obj, "msg_body")? {
        Value::Object(b) => b,
        other => return Err(JmError::bad_request(format!("msg_body must be a json object, got {}", kind(other))).into()),
    };
    let compact = Value::Object(msg_body.clone()).to_string();
    if compact.len() > MAX_BODY {
        return Err(JmError::bad_request(format!("msg_body is longer than {MAX_BODY} bytes")).into());
    }
    let (content_type, text) = body_of(msg_type, msg_body)?;
    let target_raw = required(obj, "target_id")?;
    let from_name_given = fields::username_value(required(obj, "from_id")?)?;
    // The target first, from the body alone; then one read of the app for both users and the text.
    enum To {
        User(String),
        Circle(ChannelKey),
    }
    let to = match target_type {
        "single" => To::User(fields::username_value(target_raw)?),
        "group" => To::Circle(tenant_group(&c.app.tag, fields::body_number(target_raw, "target_id of a group message (its gid)")?)),
        "chatroom" => To::Circle(rookery_events::tenant_room(&c.app.tag, fields::body_number(target_raw, "target_id of a chatroom message (its room id)")?)),
        other => return Err(JmError::bad_request(format!("target_type must be single, group or chatroom, got {other:?}")).into()),
    };
    let mut names = vec![from_name_given.clone()];
    if let To::User(name) = &to {
        names.push(name.clone());
    }
    let (accounts, text) = c.state.usecases.resolve_for_send(&c.app.tag, names.clone(), text).await.map_err(JmError::from_usecase)?;
    let mut accounts = accounts
        .into_iter()
        .zip(names)
        .map(|(a, name)| a.ok_or_else(|| JmError::new(StatusCode::NOT_FOUND, USER_NOT_FOUND, format!("user {name:?} does not exist"))));
    let from = accounts.next().expect("the sender was asked for")?;
    let key = match to {
        To::User(_) => ChannelKey::new(person_channel_id(&from.uid, &accounts.next().expect("the addressee was asked for")?.uid), ChannelType::PERSON),
        To::Circle(key) => key,
    };
    let mut msg_body = msg_body.clone();
    let mut payload = json!({"type": content_type, "family": "jmessage", "msg_type": msg_type});
    if let Some(t) = text {
        // Stored as the app's sensitive-word rule leaves it.
        msg_body.insert("text".into(), json!(t));
        payload["content"] = json!(t);
    }
    payload["body"] = Value::Object(msg_body);
    for (k, v) in [("from_name", from_name.map(Value::from)), ("target_name", target_name.map(Value::from)), ("notification", notification)] {
        if let Some(v) = v {
            payload[k] = v;
        }
    }
    if no_offline {
        payload["no_offline"] = json!(true);
    }
    if no_notification {
        payload["no_notification"] = json!(true);
    }
    let out = Outgoing::business(&from.uid, &key, None, payload.to_string().into_bytes());
    let sent = c.state.usecases.send(out, c.origin, None).await.map_err(|e| match e {
        crate::usecase::Error::Core(rookery_actors::CoreError::Rejected(rookery_events::Rejection::ChannelNotFound | rookery_events::Rejection::Disbanded)) => {
            JmError::new(StatusCode::NOT_FOUND, GROUP_NOT_FOUND, "no such group or chatroom")
        }
        crate::usecase::Error::Core(rookery_actors::CoreError::Rejected(r)) => {
            JmError::new(StatusCode::FORBIDDEN, NOT_ALLOWED, format!("{} may not send this message: {r}", from.username))
        }
        e => JmError::from_usecase(e),
    })?;
    let (position, ctime) = match sent.stored_at {
        Some(stored) => stored,
        None => c.state.usecases.message_position(&key, sent.message_seq).await.map_err(JmError::from_usecase)?,
    };
    Ok(warp::reply::with_status(warp::reply::json(&json!({"msg_id": position, "msg_ctime": ctime.0})), StatusCode::CREATED).into_response())
}

/// `POST /v1/messages/{username}/{msg_id}/retract`: the sender retracts its message within three
/// minutes; 204.
async fn retract(username: String, msg_id: String, c: Ctx) -> Result<warp::reply::Response, Rejection> {
    let sender = find(&c, &username).await?;
    let position = msg_id.parse::<u64>().map_err(|_| JmError::bad_request(format!("msg_id must be a whole number, got {msg_id:?}")))?;
    let not_found = || JmError::new(StatusCode::NOT_FOUND, RETRACT_NOT_FOUND, format!("message {msg_id} does not exist"));
    let message = c.state.usecases.message_at(position).map_err(JmError::from_usecase)?.ok_or_else(not_found)?;
    // Only this app's conversations: a message elsewhere in the server does not exist here.
    let own = |u: &Uid| rookery_events::tenant_uid_parts(u).is_some_and(|(t, _)| t == c.app.tag);
    let in_app = match message.channel.ty {
        ChannelType::PERSON => rookery_events::person_channel_parties(&message.channel.id).is_some_and(|(a, b)| own(&a) && own(&b)),
        _ => rookery_events::tenant_group_parts(&message.channel.id)
            .or_else(|| rookery_events::tenant_room_parts(&message.channel.id))
            .is_some_and(|(t, _)| t == c.app.tag),
    };
    if !in_app {
        return Err(not_found().into());
    }
    c.state.usecases.retract(&message, &sender.uid, Some(RETRACT_WINDOW_MS), c.origin).await.map_err(|e| {
        use rookery_actors::CoreError::Rejected;
        use rookery_events::Rejection as R;
        match e {
            crate::usecase::Error::Core(Rejected(R::Expired(m))) => JmError::new(StatusCode::BAD_REQUEST, RETRACT_EXPIRED, m),
            crate::usecase::Error::Core(Rejected(R::Exists(m))) => JmError::new(StatusCode::CONFLICT, RETRACTED_ALREADY, format!("{m} exists already")),
            crate::usecase::Error::Core(Rejected(R::NotFound(_))) => not_found(),
            crate::usecase::Error::Core(Rejected(R::NotAllowed(m))) => JmError::new(StatusCode::FORBIDDEN, NOT_ALLOWED, m),
            e => JmError::from_usecase(e),
        }
    })?;
    Ok(no_content())
}
