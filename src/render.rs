//! JSON shapes of domain objects that more than one part of the server writes: a message as WuKongIM
//! shows it, in the WuKongIM REST family's reads and in its webhooks.

use base64::Engine;
use rookery_events::{
    person_channel_parties, ChannelKey, ChannelType, KeySummary, Message, MessageEventRecord, MessageStream, Uid, EVENT_KEY_FINISH, EVENT_KEY_MAIN, SYSTEM_UID,
};
use serde_json::{json, Value};

/// The message object of every read endpoint (and of webhooks). For person channels `channel_id` is the party that is
/// not `viewer` (the peer, as the caller sees the chat).
pub fn message_json(m: &Message, viewer: Option<&Uid>) -> Value {
    let channel_id = match (m.channel.ty, person_channel_parties(&m.channel.id)) {
        (ChannelType::PERSON, Some((a, b))) => {
            let me = viewer.unwrap_or(&m.from_uid);
            if a == *me {
                b.0
            } else {
                a.0
            }
        }
        _ => m.channel.id.0.clone(),
    };
    let from_uid = if m.from_uid.0 == SYSTEM_UID { String::new() } else { m.from_uid.0.clone() };
    let mut v = json!({
        "header": {"no_persist": m.header.no_persist as u8, "red_dot": m.header.red_dot as u8, "sync_once": m.header.sync_once as u8},
        "setting": m.setting,
        "message_id": m.message_id.0,
        "message_idstr": m.message_id.0.to_string(),
        "client_msg_no": m.client_msg_no.0,
        "message_seq": m.message_seq.0,
        "from_uid": from_uid,
        "channel_id": channel_id,
        "channel_type": m.channel.ty.0,
        "expire": m.expire,
        "timestamp": m.timestamp.as_secs(),
        "payload": base64::engine::general_purpose::STANDARD.encode(m.payload.bytes()),
    });
    if let Some(t) = &m.topic {
        v["topic"] = json!(t);
    }
    if let Some(s) = &m.stream_no {
        v["stream_no"] = json!(s.0);
    }
    v
}

/// The data of a message event as WuKongIM pushes it (the EVENT packet's data, JSON-RPC's `event`):
/// enough for a client to merge it into the message it belongs to. `channel_id` as the viewer names
/// the channel.
pub fn event_data(e: &MessageEventRecord, channel_id: &str, channel_type: u8, status: &str) -> Vec<u8> {
    let mut v = json!({
        "client_msg_no": e.client_msg_no.0,
        "channel_id": channel_id,
        "channel_type": channel_type,
        "from_uid": e.from_uid.0,
        "message_id": e.message_id.0,
        "message_seq": e.message_seq.0,
        "event_key": e.event_key,
        "msg_event_seq": e.event_seq,
        "stream_status": status,
    });
    if !e.visibility.is_empty() {
        v["visibility"] = json!(e.visibility);
    }
    if let Some(p) = event_payload(e) {
        v["payload"] = p;
    }
    v.to_string().into_bytes()
}

/// An event's payload as JSON (stored as JSON text; `None` when empty).
pub fn event_payload(e: &MessageEventRecord) -> Option<Value> {
    if e.payload.is_empty() {
        return None;
    }
    Some(serde_json::from_slice(&e.payload).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&e.payload).into_owned())))
}

/// The payload of a stream RECV for clients of protocol versions 2-4 (the npm SDK 1.0.4): its
/// stream content type 98, whose `data` is the event data in base64.
pub fn stream_chunk_payload(event_data: &[u8]) -> Vec<u8> {
    json!({"type": 98, "data": base64::engine::general_purpose::STANDARD.encode(event_data)}).to_string().into_bytes()
}

/// One stored event as `/message/eventsync` lists it.
pub fn event_json(e: &MessageEventRecord) -> Value {
    let mut v = json!({
        "msg_event_seq": e.event_seq,
        "event_id": e.event_id,
        "event_key": e.event_key,
        "event_type": e.event_type,
        "visibility": if e.visibility.is_empty() { "public" } else { e.visibility.as_str() },
        "occurred_at": e.occurred_at,
    });
    if let Some(p) = event_payload(e) {
        v["payload"] = p;
    }
    if !e.headers.is_empty() {
        v["headers"] = Value::Object(e.headers.iter().map(|(k, h)| (k.clone(), json!(h))).collect());
    }
    v
}

/// What the events of a stream message come to, as message reads show it: `end` (1 once it ended),
/// `end_reason`, `error`, `stream_data` (the main key's text, base64) and, when asked for,
/// `event_meta` with every key.
pub fn add_stream_fields(v: &mut Value, s: &MessageStream, with_meta: bool) {
    stream_fields(v, &s.summaries(), s.ended, s.last_event_seq, &s.client_msg_no.0, with_meta);
}

/// The `msg.stream` webhook's body: a stream message has ended; the message, its end and every key.
pub fn stream_end_json(channel: &ChannelKey, e: &MessageEventRecord) -> Value {
    let mut v = json!({
        "channel_id": channel.id.0,
        "channel_type": channel.ty.0,
        "client_msg_no": e.client_msg_no.0,
        "message_id": e.message_id.0,
        "message_idstr": e.message_id.0.to_string(),
        "message_seq": e.message_seq.0,
        "from_uid": e.from_uid.0,
        "msg_event_seq": e.event_seq,
        "event_type": e.event_type,
    });
    stream_fields(&mut v, e.ended.as_deref().unwrap_or_default(), true, e.event_seq, &e.client_msg_no.0, true);
    v
}

fn stream_fields(v: &mut Value, keys: &[KeySummary], ended: bool, last_event_seq: u64, client_msg_no: &str, with_meta: bool) {
    let main = keys.iter().find(|k| k.event_key == EVENT_KEY_MAIN).or_else(|| keys.iter().find(|k| k.event_key != EVENT_KEY_FINISH));
    if ended {
        v["end"] = json!(1);
    }
    if let Some(k) = main {
        if k.end_reason != 0 {
            v["end_reason"] = json!(k.end_reason);
        }
        if !k.error.is_empty() {
            v["error"] = json!(k.error);
        }
        let text = serde_json::from_slice::<Value>(&k.snapshot).ok().and_then(|j| j.get("text").and_then(|t| t.as_str()).map(str::to_owned));
        let data = text.map(String::into_bytes).unwrap_or_else(|| k.snapshot.clone());
        if !data.is_empty() {
            v["stream_data"] = json!(base64::engine::general_purpose::STANDARD.encode(data));
        }
    }
    if with_meta {
        let events: Vec<Value> = keys
            .iter()
            .map(|k| {
                let mut e = json!({"event_key": k.event_key, "status": k.status.as_str(), "last_msg_event_seq": k.last_event_seq});
                if let Ok(snapshot) = serde_json::from_slice::<Value>(&k.snapshot) {
                    e["snapshot"] = snapshot;
                }
                if k.end_reason != 0 {
                    e["end_reason"] = json!(k.end_reason);
                }
                if !k.error.is_empty() {
                    e["error"] = json!(k.error);
                }
                e
            })
            .collect();
        let open = keys.iter().filter(|k| !k.status.is_terminal()).count();
        v["event_meta"] = json!({
            "has_events": last_event_seq > 0,
            "completed": ended,
            "last_msg_event_seq": last_event_seq,
            "event_count": keys.len(),
            "open_event_count": open,
            "events": events,
        });
    }
    if !ended {
        v["event_sync_hint"] = json!({"client_msg_no": client_msg_no, "from_msg_event_seq": last_event_seq});
    }
}
