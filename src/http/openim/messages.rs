//! `POST /manager/send_msg`: the app manager sends a single (`sessionType` 1) or group (2) message as
//! `sendID`, through the server's one send path. `operationID` is the message's `client_msg_no`, so a
//! retried request is answered with the first one's `msgID` and stored once.
//!
//! The stored payload is JSON a WuKongIM client also renders: `{"type": <WuKongIM content type>,
//! "content"?: text, "family": "openim", "contentType", "body": content, ...}`: text (101), @ (106) and
//! quote (114) are WuKongIM text (1, an @ with `mention.uids`), picture 102 an image (2, with `url`,
//! `width`, `height`), voice 103 (4), video 104 (5) and file 105 (8) with their `url`; the other types
//! (merger, card, location, custom, revoke, has-read) are WuKongIM type 0 with the OpenIM body.
//! `msgID` is the message's position in the event log (as a string), `sendTime` its time in ms.

use rookery_events::{person_channel_id, ChannelKey, ChannelType, Uid};
use serde_json::{json, Map, Value};
use warp::{Filter, Rejection};

use super::fields::{self, kind, Limit, MAX_TEXT, MAX_UIDS};
use super::groups::find_group;
use super::{body, manager, success, Ctx, OimError};
use crate::http::ApiState;
use crate::usecase::Outgoing;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("manager" / "send_msg").and(warp::post()).and(manager(state)).and(body()).and_then(send)
}

/// The content types of the document: 101 to 112, and 114.
fn known_content_type(t: i64) -> bool {
    (101..=112).contains(&t) || t == 114
}

/// The WuKongIM content type a WKProto client renders an OpenIM content type as.
fn wukongim_type(content_type: i64) -> u8 {
    match content_type {
        101 | 106 | 114 => 1,
        102 => 2,
        103 => 4,
        104 => 5,
        105 => 8,
        _ => 0,
    }
}

/// A string inside `content` (`content.field` named in errors): `None` when absent.
fn content_text<'a>(content: &'a Map<String, Value>, field: &str, required: bool) -> Result<Option<&'a str>, OimError> {
    match content.get(field) {
        None | Some(Value::Null) if required => Err(OimError::args(format!("content.{field} is required for this contentType"))),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(OimError::args(format!("content.{field} must be a string, got {}", kind(other)))),
    }
}

/// The first string among `paths` (each a list of keys into nested objects) of `content`.
fn first_string(content: &Map<String, Value>, paths: &[&[&str]]) -> Option<String> {
    paths.iter().find_map(|path| {
        let (last, inner) = path.split_last()?;
        let mut obj = content;
        for key in inner {
            obj = obj.get(*key)?.as_object()?;
        }
        obj.get(*last)?.as_str().map(str::to_owned)
    })
}

/// The first whole number among `paths` of `content`.
fn first_number(content: &Map<String, Value>, paths: &[&[&str]]) -> Option<u64> {
    paths.iter().find_map(|path| {
        let (last, inner) = path.split_last()?;
        let mut obj = content;
        for key in inner {
            obj = obj.get(*key)?.as_object()?;
        }
        obj.get(*last)?.as_u64()
    })
}

/// The fields a WuKongIM client reads for media types, taken from the OpenIM content.
fn media_fields(content_type: i64, content: &Map<String, Value>, payload: &mut Value) {
    let url = first_string(content, &[&["sourcePicture", "url"], &["sourceUrl"], &["videoUrl"], &["url"]]);
    if let Some(url) = url {
        payload["url"] = json!(url);
    }
    match content_type {
        102 => {
            for (field, key) in [("width", "width"), ("height", "height")] {
                if let Some(n) = first_number(content, &[&["sourcePicture", key], &[key]]) {
                    payload[field] = json!(n);
                }
            }
        }
        103 => {
            if let Some(d) = first_number(content, &[&["duration"]]) {
                payload["timeTrad"] = json!(d);
            }
        }
        104 => {
            if let Some(cover) = first_string(content, &[&["snapshotUrl"]]) {
                payload["cover"] = json!(cover);
            }
            if let Some(d) = first_number(content, &[&["duration"]]) {
                payload["second"] = json!(d);
            }
        }
        105 => {
            if let Some(name) = first_string(content, &[&["fileName"]]) {
                payload["name"] = json!(name);
            }
            if let Some(size) = first_number(content, &[&["fileSize"]]) {
                payload["size"] = json!(size);
            }
        }
        _ => {}
    }
}

/// `POST /manager/send_msg`: `{"sendTime": <ms>, "msgID": "<position>"}`.
async fn send(c: Ctx, obj: Map<String, Value>) -> Result<warp::reply::Response, Rejection> {
    let operation_id = fields::operation_id(&obj)?;
    let send_id = fields::uid(&obj, "sendID")?;
    let recv_id = fields::required(&obj, "recvID", Limit::Chars(fields::MAX_NAME))?;
    if recv_id.is_empty() {
        return Err(OimError::args("recvID must not be empty").into());
    }
    let nickname = fields::text(&obj, "senderNickName", false, Limit::Chars(MAX_TEXT))?;
    let face = fields::text(&obj, "senderFaceURL", false, Limit::Bytes(fields::MAX_ICON_BYTES))?;
    let force: Vec<String> = match obj.get("forceList") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_UIDS => {
            items.iter().enumerate().map(|(i, v)| fields::uid_value(v, &format!("forceList[{i}]"))).collect::<Result<_, _>>()?
        }
        Some(Value::Array(_)) => return Err(OimError::args(format!("forceList may name at most {MAX_UIDS} uids")).into()),
        Some(other) => return Err(OimError::args(format!("forceList must be an array of uids, got {}", kind(other))).into()),
    };
    let content_type = fields::int(&obj, "contentType", true, 101..=114)?.unwrap_or_default();
    if !known_content_type(content_type) {
        return Err(OimError::args(format!("contentType {content_type} is not one of 101 to 112 and 114")).into());
    }
    let session_type = fields::int(&obj, "sessionType", true, 1..=2)?.unwrap_or_default();
    let content = match obj.get("content") {
        None | Some(Value::Null) => return Err(OimError::args("content is required").into()),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(OimError::args(format!("content must be a json object, got {}", kind(other))).into()),
    };
    let text = match content_type {
        101 => content_text(content, "text", true)?,
        106 | 114 => content_text(content, "text", false)?,
        110 => {
            content_text(content, "data", true)?;
            content_text(content, "description", false)?;
            content_text(content, "extension", false)?;
            None
        }
        _ => None,
    };
    // One read of the app for the users named and the text as the app stores it (its sensitive words
    // masked while the filter is on).
    let mut names = vec![send_id.clone()];
    if session_type == 1 {
        names.push(recv_id.clone());
    }
    names.extend(force.iter().cloned());
    let (accounts, text) = c.state.usecases.resolve_for_send(&c.app.tag, names.clone(), text.map(str::to_owned)).await.map_err(OimError::from_usecase)?;
    let mut resolved = Vec::with_capacity(accounts.len());
    for (name, account) in names.iter().zip(accounts) {
        resolved.push(account.ok_or_else(|| OimError::unknown(format!("user {name:?}")))?.uid);
    }
    let from = resolved[0].clone();
    let (key, mentioned): (ChannelKey, Vec<Uid>) = if session_type == 1 {
        (ChannelKey::new(person_channel_id(&from, &resolved[1]), ChannelType::PERSON), resolved[2..].to_vec())
    } else {
        let mut by_id = Map::new();
        by_id.insert("groupID".into(), json!(recv_id));
        (find_group(&c, &by_id).await?.key, resolved[1..].to_vec())
    };
    let mut content = content.clone();
    let mut payload = json!({"type": wukongim_type(content_type), "family": "openim", "contentType": content_type});
    if let Some(t) = text {
        content.insert("text".into(), json!(t));
        payload["content"] = json!(t);
    }
    media_fields(content_type, &content, &mut payload);
    if !mentioned.is_empty() {
        payload["mention"] = json!({"uids": mentioned.iter().map(Uid::as_str).collect::<Vec<_>>()});
    }
    for (k, v) in [("senderNickName", nickname), ("senderFaceURL", face)] {
        if let Some(v) = v {
            payload[k] = json!(v);
        }
    }
    payload["body"] = Value::Object(content);
    let out = Outgoing::business(&from, &key, Some(operation_id), payload.to_string().into_bytes());
    let sent = c.state.usecases.send(out, c.origin, None).await.map_err(OimError::from_usecase)?;
    let (position, at) = match sent.stored_at {
        Some(stored) => stored,
        None => c.state.usecases.message_position(&key, sent.message_seq).await.map_err(OimError::from_usecase)?,
    };
    Ok(success(json!({"sendTime": at.0, "msgID": position.to_string()})))
}
