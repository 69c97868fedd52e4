//! JSON shapes of domain objects that more than one part of the server writes: a message as WuKongIM
//! shows it, in the WuKongIM REST family's reads and in its webhooks.

use base64::Engine;
use rookery_events::{person_channel_parties, ChannelType, Message, Uid, SYSTEM_UID};
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
