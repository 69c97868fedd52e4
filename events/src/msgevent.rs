//! Events of one message: the deltas and ends of a stream message (an AI reply arriving piece by
//! piece), numbered per message (`msg_event_seq`), grouped by an event key ("main" by default).
//!
//! A stream message is an ordinary message stored with the stream setting bit; its events live in a
//! stream of their own (`StreamId::MessageEvents`, keyed by channel and client_msg_no) and are
//! indexed by their event seq, so a late reader pages through them in O(log n + k) and a channel's
//! state never grows with them. The channel keeps only the stream messages still open
//! (`ChannelState::open_streams`); what a message's events come to ([`MessageStream`]) is folded from
//! its own stream by the channel actor when it is needed.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

use crate::aggregate::Rejection;
use crate::ids::{ClientMsgNo, MessageId, MessageSeq, Uid};

/// The default event key.
pub const EVENT_KEY_MAIN: &str = "main";
/// The key a `stream.finish` event always has: the end of the whole message.
pub const EVENT_KEY_FINISH: &str = "__finish__";
/// The key of the changes to a message itself (`message.edit`, `message.revoke`).
pub const EVENT_KEY_MESSAGE: &str = "__message__";
/// Longest event id, key, type or visibility, in bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 128;
/// Largest payload of one event, in bytes.
pub const MAX_EVENT_PAYLOAD_BYTES: usize = 64 * 1024;
/// Largest text one event key of a message accumulates from its deltas, in bytes.
pub const MAX_STREAM_TEXT_BYTES: usize = 4 * 1024 * 1024;
/// Most headers on one event.
pub const MAX_EVENT_HEADERS: usize = 16;
/// Most stream messages one channel may have open at once.
pub const MAX_OPEN_STREAMS: usize = 1024;

/// The kinds of stream events; any other type is a custom event, stored and relayed as given.
pub mod kinds {
    /// A piece of the content.
    pub const DELTA: &str = "stream.delta";
    /// The whole content so far, replacing what the deltas built.
    pub const SNAPSHOT: &str = "stream.snapshot";
    /// The key's content is complete.
    pub const CLOSE: &str = "stream.close";
    /// The key ended in an error.
    pub const ERROR: &str = "stream.error";
    /// The key was abandoned.
    pub const CANCEL: &str = "stream.cancel";
    /// The whole message is complete, whatever its keys say.
    pub const FINISH: &str = "stream.finish";
    /// The message's content is replaced (the payload is the new content).
    pub const EDIT: &str = "message.edit";
    /// The message is retracted: readers see it without content.
    pub const REVOKE: &str = "message.revoke";

    /// A change to the message itself rather than a part of a stream.
    pub fn is_message_change(event_type: &str) -> bool {
        let t = event_type.trim();
        t.eq_ignore_ascii_case(EDIT) || t.eq_ignore_ascii_case(REVOKE)
    }
}

/// Where one event key of a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Encode, Decode)]
pub enum KeyStatus {
    /// Still receiving events.
    #[default]
    Open,
    /// Complete.
    Closed,
    /// Ended in an error.
    Error,
    /// Abandoned.
    Cancelled,
}

impl KeyStatus {
    /// The name the API uses ("open", "closed", "error", "cancelled").
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Open => "open",
            KeyStatus::Closed => "closed",
            KeyStatus::Error => "error",
            KeyStatus::Cancelled => "cancelled",
        }
    }

    /// No more events change it.
    pub fn is_terminal(self) -> bool {
        self != KeyStatus::Open
    }
}

/// One stored event of a message.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct MessageEventRecord {
    /// The message's seq in its channel.
    pub message_seq: MessageSeq,
    /// The message's id.
    pub message_id: MessageId,
    /// The message's client_msg_no (its events' stream is named by it).
    pub client_msg_no: ClientMsgNo,
    /// Who sent the message.
    pub from_uid: Uid,
    /// This event's number within the message: 1, 2, 3, ...
    pub event_seq: u64,
    /// The caller's id for the event (a retry with the same id is answered, not stored again).
    pub event_id: String,
    /// Which part of the message it belongs to ("main" unless the caller says otherwise).
    pub event_key: String,
    /// `stream.delta`, `stream.close`, ... or a custom type.
    pub event_type: String,
    /// "public" (or empty), "private" or "restricted": only public events reach clients.
    pub visibility: String,
    /// When it happened, as the caller says (milliseconds), or the server's time.
    pub occurred_at: i64,
    /// JSON text as given (may be empty).
    pub payload: Vec<u8>,
    /// Opaque headers, as given.
    pub headers: Vec<(String, String)>,
    /// On the event that ends the whole message: the state of every key at that moment, so a reader of
    /// a finished message needs this one record.
    pub ended: Option<Vec<KeySummary>>,
}

impl MessageEventRecord {
    /// Clients may see it (public visibility).
    pub fn is_public(&self) -> bool {
        self.visibility.is_empty() || self.visibility == "public"
    }
}

/// What one event key of a message came to.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct KeySummary {
    /// The key.
    pub event_key: String,
    /// Its status.
    pub status: KeyStatus,
    /// Its last event seq.
    pub last_event_seq: u64,
    /// Its content: JSON text (`{"kind":"text","text":...}` for text deltas), empty when none.
    pub snapshot: Vec<u8>,
    /// `end_reason` of its close.
    pub end_reason: u8,
    /// `error` of its error event.
    pub error: String,
}

/// An event a caller asks to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessageEvent {
    /// The message (by client_msg_no in its channel).
    pub client_msg_no: ClientMsgNo,
    /// Caller's event id (required).
    pub event_id: String,
    /// Event type (required; lower-cased).
    pub event_type: String,
    /// Event key (empty: "main").
    pub event_key: String,
    /// Visibility.
    pub visibility: String,
    /// Occurrence time in ms (0: now).
    pub occurred_at: i64,
    /// JSON payload (may be empty).
    pub payload: Vec<u8>,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

impl NewMessageEvent {
    /// The checks that need no state: required fields, lengths, the visibility names.
    ///
    /// # Errors
    /// [`Rejection::Invalid`] naming the field.
    pub fn check(&self) -> Result<(), Rejection> {
        let name = |what: &str, v: &str, required: bool| {
            if required && v.trim().is_empty() {
                return Err(Rejection::Invalid(format!("{what} must not be empty")));
            }
            if v.len() > MAX_EVENT_NAME_BYTES {
                return Err(Rejection::Invalid(format!("{what} must be at most {MAX_EVENT_NAME_BYTES} bytes")));
            }
            Ok(())
        };
        name("client_msg_no", &self.client_msg_no.0, true)?;
        name("event_id", &self.event_id, true)?;
        name("event_type", &self.event_type, true)?;
        name("event_key", &self.event_key, false)?;
        if !matches!(self.visibility.as_str(), "" | "public" | "private" | "restricted") {
            return Err(Rejection::Invalid("visibility must be public, private or restricted".into()));
        }
        if self.payload.len() > MAX_EVENT_PAYLOAD_BYTES {
            return Err(Rejection::Invalid(format!("payload must be at most {MAX_EVENT_PAYLOAD_BYTES} bytes")));
        }
        if self.headers.len() > MAX_EVENT_HEADERS || self.headers.iter().any(|(k, v)| k.len() > MAX_EVENT_NAME_BYTES || v.len() > MAX_EVENT_NAME_BYTES * 8) {
            return Err(Rejection::Invalid(format!("at most {MAX_EVENT_HEADERS} headers, names up to {MAX_EVENT_NAME_BYTES} bytes")));
        }
        Ok(())
    }

    /// The key the event goes to: `__finish__` for `stream.finish`, "main" when none is given.
    pub fn key(&self) -> String {
        if kinds::is_message_change(&self.event_type) {
            EVENT_KEY_MESSAGE.to_owned()
        } else if self.event_type.trim().eq_ignore_ascii_case(kinds::FINISH) {
            EVENT_KEY_FINISH.to_owned()
        } else if self.event_key.trim().is_empty() {
            EVENT_KEY_MAIN.to_owned()
        } else {
            self.event_key.trim().to_owned()
        }
    }
}

/// The content an event key has built: text from text deltas, or the last JSON snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Content {
    #[default]
    Empty,
    Text(String),
    Json(Vec<u8>),
}

impl Content {
    fn snapshot(&self) -> Vec<u8> {
        match self {
            Content::Empty => Vec::new(),
            Content::Text(t) => serde_json::json!({"kind": "text", "text": t}).to_string().into_bytes(),
            Content::Json(j) => j.clone(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Content::Empty => 0,
            Content::Text(t) => t.len(),
            Content::Json(j) => j.len(),
        }
    }

    /// A snapshot payload: `{"kind":"text","text":...}` becomes text again, anything else is kept.
    fn from_snapshot(raw: &[u8]) -> Content {
        match serde_json::from_slice::<serde_json::Value>(raw) {
            Ok(v) if v.get("kind").and_then(|k| k.as_str()) == Some("text") => Content::Text(v.get("text").and_then(|t| t.as_str()).unwrap_or("").to_owned()),
            _ if raw.is_empty() => Content::Empty,
            _ => Content::Json(raw.to_vec()),
        }
    }
}

/// One key's progress.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct KeyProgress {
    status: KeyStatus,
    last_event_seq: u64,
    last_event_id: String,
    content: Content,
    end_reason: u8,
    error: String,
}

/// What the events of one message come to: the fold of its event stream. The channel actor keeps it
/// for the stream messages it serves and decides appends against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageStream {
    /// The message's seq.
    pub message_seq: MessageSeq,
    /// The message's id.
    pub message_id: MessageId,
    /// Its client_msg_no.
    pub client_msg_no: ClientMsgNo,
    /// Its sender.
    pub from_uid: Uid,
    /// The last event seq given out.
    pub last_event_seq: u64,
    /// The whole message has ended (finish, or its last open key ended).
    pub ended: bool,
    /// The message was retracted (`message.revoke`).
    pub revoked: bool,
    keys: BTreeMap<String, KeyProgress>,
}

/// The outcome of deciding an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventDecision {
    /// Store this event (its `ended` is set when it ends the whole message).
    Append(Box<MessageEventRecord>),
    /// Nothing to store: a retry of the key's last event, or an event for a key that has ended; the
    /// answer is the key's last event seq and status.
    Answered {
        /// The key.
        event_key: String,
        /// Its last event seq.
        event_seq: u64,
        /// Its status.
        status: KeyStatus,
    },
}

fn json_field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v.as_object().and_then(|o| o.get(name))
}

impl MessageStream {
    /// A stream message with no events yet.
    pub fn new(message_seq: MessageSeq, message_id: MessageId, client_msg_no: ClientMsgNo, from_uid: Uid) -> MessageStream {
        MessageStream { message_seq, message_id, client_msg_no, from_uid, last_event_seq: 0, ended: false, revoked: false, keys: BTreeMap::new() }
    }

    /// The status of `key` (open when it has no events yet).
    pub fn status_of(&self, key: &str) -> KeyStatus {
        self.keys.get(key).map(|k| k.status).unwrap_or_default()
    }

    /// Decides an append at `now` (ms).
    ///
    /// # Errors
    /// [`Rejection::Invalid`] for a bad event, [`Rejection::TooLate`]-like `NotAllowed` when the
    /// message has ended and the event names a new key, or its text would grow past the limit.
    pub fn decide(&self, e: &NewMessageEvent, now_ms: i64) -> Result<EventDecision, Rejection> {
        e.check()?;
        let event_type = e.event_type.trim().to_ascii_lowercase();
        let key = e.key();
        if let Some(k) = self.keys.get(&key) {
            if k.last_event_id == e.event_id || k.status.is_terminal() {
                return Ok(EventDecision::Answered { event_key: key, event_seq: k.last_event_seq, status: k.status });
            }
        }
        let change = kinds::is_message_change(&event_type);
        if self.revoked {
            if event_type == kinds::REVOKE {
                let k = self.keys.get(&key).map_or(0, |k| k.last_event_seq);
                return Ok(EventDecision::Answered { event_key: key, event_seq: k, status: KeyStatus::Open });
            }
            return Err(Rejection::NotAllowed(format!("message {} was revoked", self.client_msg_no.0)));
        }
        // Edits and revokes apply to any message, ended streams included; stream parts do not reopen.
        if self.ended && !change {
            return Err(Rejection::NotAllowed(format!("the stream of message {} has ended", self.client_msg_no.0)));
        }
        let payload = if e.payload.iter().all(u8::is_ascii_whitespace) { Vec::new() } else { e.payload.clone() };
        if !payload.is_empty() && serde_json::from_slice::<serde_json::Value>(&payload).is_err() {
            return Err(Rejection::Invalid("payload must be JSON".into()));
        }
        if event_type == kinds::EDIT && payload.is_empty() {
            return Err(Rejection::Invalid("message.edit needs the new content as its payload".into()));
        }
        let mut record = MessageEventRecord {
            message_seq: self.message_seq,
            message_id: self.message_id,
            client_msg_no: self.client_msg_no.clone(),
            from_uid: self.from_uid.clone(),
            event_seq: self.last_event_seq + 1,
            event_id: e.event_id.trim().to_owned(),
            event_key: key,
            event_type,
            visibility: e.visibility.clone(),
            occurred_at: if e.occurred_at > 0 { e.occurred_at } else { now_ms },
            payload,
            headers: e.headers.clone(),
            ended: None,
        };
        // What the message looks like with it, to check the size and see whether it ends the message.
        let mut after = self.clone();
        after.apply(&record);
        if after.keys.get(&record.event_key).is_some_and(|k| k.content.len() > MAX_STREAM_TEXT_BYTES) {
            return Err(Rejection::NotAllowed(format!("a stream key's content may be at most {MAX_STREAM_TEXT_BYTES} bytes")));
        }
        // Edits and revokes are not parts of the stream: they neither end it nor keep it open.
        let parts_ended = after.keys.iter().filter(|(key, _)| key.as_str() != EVENT_KEY_MESSAGE).all(|(_, k)| k.status.is_terminal());
        let ends = record.event_type == kinds::FINISH || (!change && parts_ended && after.status_of(&record.event_key).is_terminal());
        if ends {
            record.ended = Some(after.summaries());
        }
        Ok(EventDecision::Append(Box::new(record)))
    }

    /// Folds one stored event in.
    pub fn apply(&mut self, r: &MessageEventRecord) {
        self.last_event_seq = self.last_event_seq.max(r.event_seq);
        let k = self.keys.entry(r.event_key.clone()).or_default();
        k.last_event_seq = r.event_seq;
        k.last_event_id = r.event_id.clone();
        if !k.status.is_terminal() {
            let payload: Option<serde_json::Value> = serde_json::from_slice(&r.payload).ok();
            let snapshot_in = || payload.as_ref().and_then(|p| json_field(p, "snapshot")).map(|s| Content::from_snapshot(s.to_string().as_bytes()));
            match r.event_type.as_str() {
                kinds::DELTA => match (payload.as_ref(), &mut k.content) {
                    (Some(p), content) if json_field(p, "kind").and_then(|v| v.as_str()) == Some("text") => {
                        let delta = json_field(p, "delta").and_then(|v| v.as_str()).unwrap_or("");
                        match content {
                            Content::Text(t) => t.push_str(delta),
                            other => *other = Content::Text(delta.to_owned()),
                        }
                    }
                    (_, content) if !r.payload.is_empty() => *content = Content::Json(r.payload.clone()),
                    _ => {}
                },
                kinds::SNAPSHOT => k.content = Content::from_snapshot(&r.payload),
                kinds::CLOSE | kinds::FINISH => {
                    if let Some(s) = snapshot_in() {
                        k.content = s;
                    }
                    k.end_reason = payload
                        .as_ref()
                        .and_then(|p| json_field(p, "end_reason"))
                        .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
                        .map_or(0, |n| n.min(255) as u8);
                    k.status = KeyStatus::Closed;
                }
                kinds::ERROR => {
                    if let Some(s) = snapshot_in() {
                        k.content = s;
                    }
                    k.error = payload.as_ref().and_then(|p| json_field(p, "error")).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                    k.status = KeyStatus::Error;
                }
                kinds::CANCEL => {
                    if let Some(s) = snapshot_in() {
                        k.content = s;
                    }
                    k.status = KeyStatus::Cancelled;
                }
                kinds::EDIT => k.content = Content::Json(r.payload.clone()),
                kinds::REVOKE => self.revoked = true,
                _ => {}
            }
        }
        if r.ended.is_some() {
            self.ended = true;
        }
    }

    /// The content of the message's last edit (JSON), if it was edited.
    pub fn edited_content(&self) -> Option<Vec<u8>> {
        self.keys.get(EVENT_KEY_MESSAGE).and_then(|k| match &k.content {
            Content::Json(j) => Some(j.clone()),
            _ => None,
        })
    }

    /// Every stream key's state, in key order (edits and revokes are not stream parts).
    pub fn summaries(&self) -> Vec<KeySummary> {
        self.keys
            .iter()
            .filter(|(key, _)| key.as_str() != EVENT_KEY_MESSAGE)
            .map(|(key, k)| KeySummary {
                event_key: key.clone(),
                status: k.status,
                last_event_seq: k.last_event_seq,
                snapshot: k.content.snapshot(),
                end_reason: k.end_reason,
                error: k.error.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> MessageStream {
        MessageStream::new(MessageSeq(7), MessageId(70), ClientMsgNo("reply-1".into()), Uid::from("bot"))
    }

    fn ev(id: &str, ty: &str, key: &str, payload: &str) -> NewMessageEvent {
        NewMessageEvent {
            client_msg_no: ClientMsgNo("reply-1".into()),
            event_id: id.into(),
            event_type: ty.into(),
            event_key: key.into(),
            visibility: String::new(),
            occurred_at: 0,
            payload: payload.as_bytes().to_vec(),
            headers: vec![],
        }
    }

    fn append(s: &mut MessageStream, e: &NewMessageEvent) -> EventDecision {
        let d = s.decide(e, 1_000).expect("accepted");
        if let EventDecision::Append(r) = &d {
            s.apply(r);
        }
        d
    }

    #[test]
    fn text_deltas_build_the_text_and_close_ends_the_message() {
        let mut s = stream();
        for (i, piece) in ["Hel", "lo, ", "world"].iter().enumerate() {
            let d = append(&mut s, &ev(&format!("e{i}"), "stream.delta", "", &format!(r#"{{"kind":"text","delta":"{piece}"}}"#)));
            let EventDecision::Append(r) = d else { panic!("stored") };
            assert_eq!((r.event_seq, r.event_key.as_str(), r.ended.is_none()), (i as u64 + 1, "main", true));
        }
        let EventDecision::Append(close) = append(&mut s, &ev("end", "stream.close", "", r#"{"end_reason":1}"#)) else { panic!() };
        let summary = close.ended.expect("the last open key closed: the message ends");
        assert_eq!(summary[0].snapshot, br#"{"kind":"text","text":"Hello, world"}"#.to_vec());
        assert_eq!((summary[0].status, summary[0].end_reason, summary[0].last_event_seq), (KeyStatus::Closed, 1, 4));
        assert!(s.ended);
        // Late events: a retry of the key's last event and any event for the ended key are answered.
        assert_eq!(
            s.decide(&ev("end", "stream.close", "", ""), 0),
            Ok(EventDecision::Answered { event_key: "main".into(), event_seq: 4, status: KeyStatus::Closed })
        );
        assert!(matches!(s.decide(&ev("x", "stream.delta", "", ""), 0), Ok(EventDecision::Answered { .. })));
        // A new key after the end is refused.
        assert!(matches!(s.decide(&ev("y", "stream.delta", "tools", ""), 0), Err(Rejection::NotAllowed(_))));
    }

    #[test]
    fn retried_event_ids_are_answered_not_stored() {
        let mut s = stream();
        append(&mut s, &ev("a", "stream.delta", "", r#"{"kind":"text","delta":"x"}"#));
        assert_eq!(
            s.decide(&ev("a", "stream.delta", "", r#"{"kind":"text","delta":"x"}"#), 0),
            Ok(EventDecision::Answered { event_key: "main".into(), event_seq: 1, status: KeyStatus::Open })
        );
    }

    #[test]
    fn two_keys_end_the_message_only_when_both_have_ended_or_on_finish() {
        let mut s = stream();
        append(&mut s, &ev("a", "stream.delta", "reasoning", r#"{"kind":"text","delta":"think"}"#));
        append(&mut s, &ev("b", "stream.delta", "", r#"{"kind":"text","delta":"say"}"#));
        let EventDecision::Append(r) = append(&mut s, &ev("c", "stream.close", "reasoning", "")) else { panic!() };
        assert!(r.ended.is_none(), "main is still open");
        let EventDecision::Append(r) = append(&mut s, &ev("d", "stream.error", "", r#"{"error":"model overloaded"}"#)) else { panic!() };
        let ended = r.ended.expect("ended");
        assert_eq!(
            ended.iter().map(|k| (k.event_key.as_str(), k.status)).collect::<Vec<_>>(),
            vec![("main", KeyStatus::Error), ("reasoning", KeyStatus::Closed)]
        );
        assert_eq!(ended[0].error, "model overloaded");

        let mut s = stream();
        append(&mut s, &ev("a", "stream.delta", "", r#"{"kind":"text","delta":"half"}"#));
        let EventDecision::Append(r) = append(&mut s, &ev("f", "Stream.Finish", "", "")) else { panic!() };
        assert_eq!(r.event_key, EVENT_KEY_FINISH);
        assert!(r.ended.is_some(), "finish ends the message with main still open");
    }

    #[test]
    fn edits_and_revokes_apply_to_any_message_once() {
        let mut s = stream();
        append(&mut s, &ev("a", "stream.delta", "", r#"{"kind":"text","delta":"x"}"#));
        append(&mut s, &ev("b", "stream.close", "", ""));
        assert!(s.ended);
        let EventDecision::Append(r) = append(&mut s, &ev("e1", "message.edit", "", r#"{"type":1,"content":"fixed"}"#)) else { panic!() };
        assert_eq!((r.event_key.as_str(), r.ended.is_none()), (EVENT_KEY_MESSAGE, true), "an edit after the end is stored and ends nothing");
        assert_eq!(s.edited_content(), Some(br#"{"type":1,"content":"fixed"}"#.to_vec()));
        assert!(matches!(s.decide(&ev("e2", "message.edit", "", ""), 0), Err(Rejection::Invalid(_))), "an edit needs content");
        append(&mut s, &ev("r1", "message.revoke", "", ""));
        assert!(s.revoked);
        assert!(matches!(s.decide(&ev("r2", "message.revoke", "", ""), 0), Ok(EventDecision::Answered { .. })), "revoked once");
        assert!(matches!(s.decide(&ev("e3", "message.edit", "", r#"{"a":1}"#), 0), Err(Rejection::NotAllowed(_))), "no edit after a revoke");

        // A reply revoked while it streams takes no more parts.
        let mut s = stream();
        append(&mut s, &ev("a", "stream.delta", "", r#"{"kind":"text","delta":"x"}"#));
        append(&mut s, &ev("r", "message.revoke", "", ""));
        assert!(matches!(s.decide(&ev("b", "stream.delta", "", r#"{"kind":"text","delta":"y"}"#), 0), Err(Rejection::NotAllowed(_))));
    }

    #[test]
    fn an_edit_while_streaming_does_not_keep_the_stream_open() {
        let mut s = stream();
        append(&mut s, &ev("a", "stream.delta", "", r#"{"kind":"text","delta":"x"}"#));
        append(&mut s, &ev("e", "message.edit", "", r#"{"type":1,"content":"title"}"#));
        let EventDecision::Append(r) = append(&mut s, &ev("b", "stream.close", "", "")) else { panic!() };
        let ended = r.ended.expect("closing the last stream key ends the message");
        assert_eq!(ended.iter().map(|k| k.event_key.as_str()).collect::<Vec<_>>(), vec!["main"], "the edit is no stream part");
    }

    #[test]
    fn snapshots_replace_and_bad_input_is_refused() {
        let mut s = stream();
        append(&mut s, &ev("a", "stream.delta", "", r#"{"kind":"text","delta":"abc"}"#));
        append(&mut s, &ev("b", "stream.snapshot", "", r#"{"kind":"text","text":"xyz"}"#));
        append(&mut s, &ev("c", "stream.delta", "", r#"{"kind":"text","delta":"!"}"#));
        assert_eq!(s.summaries()[0].snapshot, br#"{"kind":"text","text":"xyz!"}"#.to_vec());
        assert!(matches!(s.decide(&ev("d", "stream.delta", "", "not json"), 0), Err(Rejection::Invalid(_))));
        assert!(matches!(s.decide(&ev("", "stream.delta", "", ""), 0), Err(Rejection::Invalid(_))));
        assert!(matches!(s.decide(&ev("e", "", "", ""), 0), Err(Rejection::Invalid(_))));
        let mut bad = ev("e", "stream.delta", "", "");
        bad.visibility = "everyone".into();
        assert!(matches!(s.decide(&bad, 0), Err(Rejection::Invalid(_))));
        let big = format!(r#"{{"kind":"text","delta":"{}"}}"#, "x".repeat(MAX_EVENT_PAYLOAD_BYTES));
        assert!(matches!(s.decide(&ev("e", "stream.delta", "", &big), 0), Err(Rejection::Invalid(_))));
    }
}
