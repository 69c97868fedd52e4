//! JSON-RPC 2.0 over WebSocket (spec §3.2-3.3): the same session as WKProto, spelled in JSON.
//!
//! A WebSocket session whose first data starts with `{` or `[` (after whitespace) speaks JSON-RPC for
//! its whole life. [`JsonRpc`] translates both ways between its JSON messages and the WKProto
//! [`Packet`]s the session already understands, so the session logic is shared:
//!
//! | client → server | packet | server → client |
//! |---|---|---|
//! | request `connect` | CONNECT → CONNACK | response (`result` on success, `error` with the reason code otherwise) |
//! | request `send` | SEND → SENDACK | response `result {messageId, messageSeq, reasonCode}` |
//! | request `ping` | PING → PONG | response with the id and no `result` (as WuKongIM) |
//! | notification `recvack` | RECVACK | — |
//! | request or notification `disconnect` | DISCONNECT (ignored) | — |
//! | — | RECV | notification `recv` |
//! | — | DISCONNECT | notification `disconnect {reasonCode, reason}` |
//!
//! Responses are matched to requests by order: the session answers CONNECT, SEND and PING in arrival
//! order, one answer each, so a queue of request ids per method is exact. JSON-RPC sessions are never
//! encrypted: `payload` is the base64 of the plaintext both ways. Pure: no I/O.

use std::collections::VecDeque;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::packet::{ConnectPacket, Header, Packet, ReasonCode, RecvackPacket, SendPacket, Setting, LATEST_VERSION};

/// Most bytes of JSON buffered without a complete message.
const MAX_PENDING_INPUT: usize = 2 << 20;

/// Most bytes buffered before the session's `connect`: a connect request is small, and a client with
/// no credential yet should hold no more of the server's memory than that.
const MAX_PENDING_BEFORE_CONNECT: usize = 64 << 10;

/// What the next input message turned into.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A packet for the session.
    Packet(Packet),
    /// A message that could not be used: the error response to write. Before `connect` the session
    /// must then close.
    Refused(String),
}

/// A fatal input error: the bytes can never become JSON.
#[derive(Debug, PartialEq, Eq)]
pub struct Fatal(pub String);

/// The translation state of one JSON-RPC session.
#[derive(Default)]
pub struct JsonRpc {
    input: Vec<u8>,
    /// Messages already split off the input (elements of a batch array).
    ready: VecDeque<Value>,
    connect: VecDeque<Value>,
    sends: VecDeque<Value>,
    pings: VecDeque<Value>,
    next_client_seq: u32,
    /// Whether a `connect` request was seen.
    connected: bool,
    /// How far the input has been scanned for the end of its first value, so each byte is looked at
    /// once however the value arrives (a value is parsed only when it is complete).
    scan: Scan,
    /// Values handed to the JSON parser (each complete), for tests.
    parses: usize,
    /// Input length at the last check of an unfinished value for early errors; checked again only
    /// once the input has doubled, so the checks cost linear work in all.
    probed_at: usize,
    /// Those checks, for tests.
    probes: usize,
}

/// Where the scan for the end of the input's first JSON value stands.
#[derive(Default, Clone, Copy)]
struct Scan {
    /// Bytes of the input scanned so far.
    at: usize,
    /// Where the value starts (after leading whitespace), once found.
    start: Option<usize>,
    /// Open `{`/`[` not yet closed.
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl Scan {
    /// Scans `input` from where the last call stopped; the end (exclusive) of the first value once it
    /// is complete. A value that is not an object, array or string (a bare number or literal) ends at
    /// the next delimiter, or at the end of the input (a WebSocket message holds whole values).
    fn end_of_value(&mut self, input: &[u8]) -> Option<usize> {
        while self.at < input.len() {
            let b = input[self.at];
            self.at += 1;
            let Some(start) = self.start else {
                if !b.is_ascii_whitespace() {
                    self.start = Some(self.at - 1);
                    match b {
                        b'{' | b'[' => self.depth = 1,
                        b'"' => self.in_string = true,
                        _ => {}
                    }
                }
                continue;
            };
            let scalar = self.depth == 0 && !self.in_string && !matches!(input[start], b'"' | b'{' | b'[');
            if scalar {
                if b.is_ascii_whitespace() || matches!(b, b'{' | b'[' | b'"' | b',' | b']' | b'}') {
                    return Some(self.at - 1);
                }
                continue;
            }
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => {
                        self.in_string = false;
                        if self.depth == 0 {
                            return Some(self.at);
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(self.at);
                    }
                }
                _ => {}
            }
        }
        // A bare scalar ends with the message that carried it.
        match self.start {
            Some(start) if self.depth == 0 && !self.in_string && !matches!(input[start], b'"' | b'{' | b'[') => Some(input.len()),
            _ => None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct HeaderJson {
    no_persist: bool,
    red_dot: bool,
    sync_once: bool,
    dup: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SettingJson {
    receipt: bool,
    signal: bool,
    stream: bool,
    topic: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectParams {
    uid: String,
    token: String,
    #[serde(default)]
    version: u8,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    device_flag: u8,
    #[serde(default)]
    client_timestamp: i64,
    #[serde(default)]
    client_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendParams {
    #[serde(default)]
    header: HeaderJson,
    #[serde(default)]
    setting: SettingJson,
    #[serde(default)]
    client_msg_no: String,
    channel_id: String,
    channel_type: u8,
    #[serde(default)]
    expire: u32,
    #[serde(default)]
    topic: String,
    payload: String,
}

/// A message id as a decimal string (WuKongIM) or a JSON number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id64 {
    Text(String),
    Number(i64),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecvackParams {
    #[serde(default)]
    header: HeaderJson,
    message_id: Id64,
    #[serde(default)]
    message_seq: u64,
}

fn header(h: &HeaderJson) -> Header {
    Header { dup: h.dup, sync_once: h.sync_once, red_dot: h.red_dot, no_persist: h.no_persist }
}

fn header_json(h: Header) -> Value {
    let mut m = Map::new();
    for (name, on) in [("noPersist", h.no_persist), ("redDot", h.red_dot), ("syncOnce", h.sync_once), ("dup", h.dup)] {
        if on {
            m.insert(name.into(), Value::Bool(true));
        }
    }
    Value::Object(m)
}

fn error_response(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

impl JsonRpc {
    /// A session that has seen nothing yet.
    pub fn new() -> JsonRpc {
        JsonRpc::default()
    }

    /// Whether `first` (the first data of a WebSocket session) starts a JSON-RPC session.
    pub fn detect(first: &[u8]) -> bool {
        matches!(first.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')), Some(b'{' | b'['))
    }

    /// Whether a `connect` request was seen.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Appends the bytes of one WebSocket message.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// The next message turned into a packet or a refusal; `None` until more input arrives.
    ///
    /// # Errors
    /// [`Fatal`] when the input is not JSON, or too much of it arrives without completing a message.
    pub fn next_message(&mut self) -> Result<Option<Incoming>, Fatal> {
        if self.ready.is_empty() {
            self.split()?;
        }
        let Some(value) = self.ready.pop_front() else { return Ok(None) };
        Ok(Some(self.message(value)))
    }

    /// Moves the next complete JSON value of the input to `ready` (its elements, for a batch). The
    /// input is scanned once, byte by byte, for the end of its first value, and only a complete value
    /// is parsed: an unfinished one that grows message by message costs linear work, not a re-parse of
    /// everything buffered at each message.
    fn split(&mut self) -> Result<(), Fatal> {
        let Some(end) = self.scan.end_of_value(&self.input) else {
            if self.scan.start.is_none() {
                // Only whitespace so far.
                self.input.clear();
                self.scan = Scan::default();
                self.probed_at = 0;
            }
            let cap = if self.connected { MAX_PENDING_INPUT } else { MAX_PENDING_BEFORE_CONNECT };
            if self.input.len() > cap {
                return Err(Fatal("JSON message too large".into()));
            }
            // Garbage is refused without waiting for the end of a value that may never come.
            if let Some(start) = self.scan.start.filter(|_| self.input.len() >= 2 * self.probed_at) {
                self.probes += 1;
                self.probed_at = self.input.len();
                if let Some(Err(e)) = serde_json::Deserializer::from_slice(&self.input[start..]).into_iter::<serde::de::IgnoredAny>().next() {
                    if !e.is_eof() {
                        return Err(Fatal(format!("invalid JSON: {e}")));
                    }
                }
            }
            return Ok(());
        };
        let start = self.scan.start.unwrap_or(0);
        self.parses += 1;
        let parsed = serde_json::from_slice::<Value>(&self.input[start..end]);
        self.input.drain(..end);
        self.scan = Scan::default();
        self.probed_at = 0;
        match parsed {
            Ok(Value::Array(items)) if items.is_empty() => self.ready.push_back(Value::Null),
            Ok(Value::Array(items)) => self.ready.extend(items),
            Ok(other) => self.ready.push_back(other),
            Err(e) => return Err(Fatal(format!("invalid JSON: {e}"))),
        }
        Ok(())
    }

    /// One JSON-RPC message as a packet, or the error to answer.
    fn message(&mut self, value: Value) -> Incoming {
        let Value::Object(mut obj) = value else {
            return Incoming::Refused(error_response(&Value::String(String::new()), 0, "a JSON-RPC message must be an object"));
        };
        let id = obj.remove("id").unwrap_or(Value::Null);
        let reply_id = if id.is_null() { Value::String(String::new()) } else { id.clone() };
        let refuse = |message: String| Incoming::Refused(error_response(&reply_id, 0, &message));
        if !matches!(&id, Value::Null | Value::String(_) | Value::Number(_)) {
            return refuse("id must be a string or a number".into());
        }
        if let Some(v) = obj.get("jsonrpc") {
            if v != "2.0" {
                return refuse("jsonrpc must be \"2.0\"".into());
            }
        }
        let Some(Value::String(method)) = obj.remove("method") else {
            return refuse("method is required (a client sends only requests and notifications)".into());
        };
        let params = obj.remove("params").unwrap_or(Value::Object(Map::new()));
        if !self.connected && method != "connect" {
            return refuse(format!("the first message must be a connect request, not {method}"));
        }
        let request = !id.is_null();
        match method.as_str() {
            "connect" if request => {
                if self.connected {
                    return refuse("already connected".into());
                }
                let p: ConnectParams = match serde_json::from_value(params) {
                    Ok(p) => p,
                    Err(e) => return refuse(format!("invalid connect params: {e}")),
                };
                self.connected = true;
                self.connect.push_back(id);
                Incoming::Packet(Packet::Connect(ConnectPacket {
                    // 0 or absent: the latest version.
                    version: if p.version == 0 { LATEST_VERSION } else { p.version },
                    device_flag: p.device_flag,
                    device_id: p.device_id,
                    uid: p.uid,
                    token: p.token,
                    client_timestamp: p.client_timestamp,
                    client_key: p.client_key,
                }))
            }
            "send" if request => {
                let p: SendParams = match serde_json::from_value(params) {
                    Ok(p) => p,
                    Err(e) => return refuse(format!("invalid send params: {e}")),
                };
                let payload = match base64::engine::general_purpose::STANDARD.decode(p.payload.as_bytes()) {
                    Ok(b) => b,
                    Err(e) => return refuse(format!("payload must be standard base64: {e}")),
                };
                let s = p.setting;
                let setting = Setting(0)
                    .with(Setting::RECEIPT, s.receipt)
                    .with(Setting::SIGNAL, s.signal)
                    .with(Setting::STREAM, s.stream)
                    .with(Setting::TOPIC, s.topic || !p.topic.is_empty());
                self.next_client_seq = self.next_client_seq.wrapping_add(1);
                self.sends.push_back(id);
                Incoming::Packet(Packet::Send(SendPacket {
                    header: header(&p.header),
                    setting,
                    client_seq: self.next_client_seq,
                    client_msg_no: p.client_msg_no,
                    channel_id: p.channel_id,
                    channel_type: p.channel_type,
                    expire: p.expire,
                    topic: p.topic,
                    payload,
                    ..SendPacket::default()
                }))
            }
            "ping" if request => {
                self.pings.push_back(id);
                Incoming::Packet(Packet::Ping)
            }
            "recvack" => {
                let p: RecvackParams = match serde_json::from_value(params) {
                    Ok(p) => p,
                    Err(e) => return refuse(format!("invalid recvack params: {e}")),
                };
                let message_id = match p.message_id {
                    Id64::Number(n) => n,
                    Id64::Text(t) => match t.parse() {
                        Ok(n) => n,
                        Err(_) => return refuse(format!("messageId must be a decimal integer, got {t:?}")),
                    },
                };
                Incoming::Packet(Packet::Recvack(RecvackPacket { header: header(&p.header), message_id, message_seq: p.message_seq }))
            }
            "disconnect" => Incoming::Packet(Packet::Disconnect(super::packet::DisconnectPacket::default())),
            "subscribe" | "unsubscribe" => refuse(format!("{method} is not supported")),
            "connect" | "send" | "ping" => refuse(format!("{method} must be a request (with an id)")),
            other => refuse(format!("unknown method {other}")),
        }
    }

    /// A packet of the session as JSON-RPC text; `None` for packets JSON-RPC has no form for.
    pub fn outgoing(&mut self, packet: &Packet) -> Option<String> {
        let reply = |id: Option<Value>, body: (&str, Value)| {
            let mut m = Map::new();
            m.insert("jsonrpc".into(), json!("2.0"));
            m.insert("id".into(), id.unwrap_or(Value::String(String::new())));
            if !body.0.is_empty() {
                m.insert(body.0.into(), body.1);
            }
            Value::Object(m).to_string()
        };
        match packet {
            Packet::Connack(c) => {
                let id = self.connect.pop_front();
                if c.reason_code == ReasonCode::SUCCESS {
                    let mut r = json!({"reasonCode": c.reason_code.0, "timeDiff": c.time_diff, "nodeId": c.node_id});
                    if let Some(v) = c.server_version {
                        r["serverVersion"] = json!(v);
                    }
                    Some(reply(id, ("result", r)))
                } else {
                    let message = c.reason_code.name().unwrap_or("refused");
                    Some(reply(id, ("error", json!({"code": c.reason_code.0, "message": message}))))
                }
            }
            Packet::Sendack(a) => {
                let id = self.sends.pop_front();
                let r = json!({"messageId": a.message_id.to_string(), "messageSeq": a.message_seq, "reasonCode": a.reason_code.0});
                Some(reply(id, ("result", r)))
            }
            Packet::Pong => Some(reply(self.pings.pop_front(), ("", Value::Null))),
            Packet::Recv(r) => {
                let mut p = json!({
                    "messageId": r.message_id.to_string(),
                    "messageSeq": r.message_seq,
                    "timestamp": r.timestamp,
                    "channelId": r.channel_id,
                    "channelType": r.channel_type,
                    "fromUid": r.from_uid,
                    "payload": base64::engine::general_purpose::STANDARD.encode(&r.payload),
                });
                let h = header_json(r.header);
                if h.as_object().is_some_and(|m| !m.is_empty()) {
                    p["header"] = h;
                }
                let s = r.setting;
                if s.0 != 0 {
                    p["setting"] = json!({"receipt": s.contains(Setting::RECEIPT), "signal": s.contains(Setting::SIGNAL), "stream": s.contains(Setting::STREAM), "topic": s.contains(Setting::TOPIC)});
                }
                if !r.client_msg_no.is_empty() {
                    p["clientMsgNo"] = json!(r.client_msg_no);
                }
                if r.expire != 0 {
                    p["expire"] = json!(r.expire);
                }
                if !r.topic.is_empty() {
                    p["topic"] = json!(r.topic);
                }
                Some(json!({"jsonrpc": "2.0", "method": "recv", "params": p}).to_string())
            }
            // `data` is the EVENT's bytes as text (JSON for message events).
            Packet::Event(e) => Some(
                json!({"jsonrpc": "2.0", "method": "event", "params": {"id": e.id, "type": e.kind, "timestamp": e.timestamp, "data": String::from_utf8_lossy(&e.data)}})
                    .to_string(),
            ),
            Packet::Disconnect(d) => {
                Some(json!({"jsonrpc": "2.0", "method": "disconnect", "params": {"reasonCode": d.reason_code.0, "reason": d.reason}}).to_string())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::packet::{ConnackPacket, RecvPacket, SendackPacket};

    fn next(rpc: &mut JsonRpc) -> Incoming {
        rpc.next_message().expect("not fatal").expect("a message")
    }

    fn refused(i: Incoming) -> Value {
        match i {
            Incoming::Refused(text) => serde_json::from_str(&text).expect("json"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_unfinished_value_is_scanned_once_and_parsed_only_when_complete() {
        let mut rpc = JsonRpc::new();
        rpc.feed(br#"{"method":"connect","id":1,"params":{"uid":"u","token":"t"}}"#);
        assert!(matches!(rpc.next_message(), Ok(Some(Incoming::Packet(Packet::Connect(_))))));
        rpc.connected = true;
        let parses = rpc.parses;
        // An array that never closes, then thousands of small messages: nothing is parsed until it ends.
        rpc.feed(b"[");
        for _ in 0..3000 {
            rpc.feed(br#"{"#);
            rpc.feed(br#"}"#);
            rpc.feed(b",");
            assert!(matches!(rpc.next_message(), Ok(None)));
        }
        assert_eq!(rpc.parses, parses, "an unfinished value was parsed");
        assert!(rpc.probes <= 16, "checked for errors {} times over 9,000 messages", rpc.probes);
        rpc.feed(br#"{"x":"]}\"]}"}]"#);
        let first = rpc.next_message().expect("not fatal").expect("the batch's first element");
        assert!(matches!(first, Incoming::Refused(_)), "{first:?}");
        assert_eq!(rpc.parses, parses + 1, "the whole batch was parsed once");
    }

    #[test]
    fn before_connect_little_may_be_buffered() {
        let mut rpc = JsonRpc::new();
        rpc.feed(br#"{"method":"connect","params":{"uid":""#);
        rpc.feed(&vec![b'a'; MAX_PENDING_BEFORE_CONNECT]);
        assert!(rpc.next_message().is_err(), "64 KiB of an unfinished connect is refused");
        let mut rpc = JsonRpc::new();
        rpc.feed(b"   ");
        assert!(matches!(rpc.next_message(), Ok(None)));
        rpc.feed(b"7");
        assert!(matches!(rpc.next_message(), Ok(Some(Incoming::Refused(_)))), "a bare scalar is a whole (wrong) message");
    }

    #[test]
    fn detects_json_after_whitespace_only() {
        assert!(JsonRpc::detect(b" \r\n{\"method\":1}"));
        assert!(JsonRpc::detect(b"[{}]"));
        assert!(!JsonRpc::detect(&[0x10, 0x63]));
        assert!(!JsonRpc::detect(b""));
    }

    #[test]
    fn connect_send_ping_round_trip_by_order() {
        let mut rpc = JsonRpc::new();
        rpc.feed(br#"{"jsonrpc":"2.0","method":"connect","id":"c1","params":{"uid":"u1","token":"t","deviceFlag":1,"clientTimestamp":5}}"#);
        let Incoming::Packet(Packet::Connect(c)) = next(&mut rpc) else { panic!("CONNECT") };
        assert_eq!((c.uid.as_str(), c.token.as_str(), c.device_flag, c.version, c.client_timestamp), ("u1", "t", 1, LATEST_VERSION, 5));
        // Two messages in one WebSocket message, and one split over two.
        rpc.feed(
            br#"{"method":"send","id":"s1","params":{"channelId":"u2","channelType":1,"payload":"aGk=","header":{"redDot":true}}} {"method":"ping","id":7}"#,
        );
        rpc.feed(br#"{"method":"send","id":"s2","params":{"channelId":"g","channelType":2,"#);
        let Incoming::Packet(Packet::Send(s)) = next(&mut rpc) else { panic!("SEND") };
        assert_eq!((s.channel_id.as_str(), s.payload.as_slice(), s.header.red_dot, s.client_seq), ("u2", &b"hi"[..], true, 1));
        assert_eq!(next(&mut rpc), Incoming::Packet(Packet::Ping));
        assert_eq!(rpc.next_message(), Ok(None), "the second send is incomplete");
        rpc.feed(br#""payload":"eW8="}}"#);
        let Incoming::Packet(Packet::Send(s2)) = next(&mut rpc) else { panic!("SEND") };
        assert_eq!((s2.channel_id.as_str(), s2.client_seq), ("g", 2));

        let out = |rpc: &mut JsonRpc, p: Packet| serde_json::from_str::<Value>(&rpc.outgoing(&p).expect("has a form")).expect("json");
        let ack = out(&mut rpc, Packet::Connack(ConnackPacket { reason_code: ReasonCode::SUCCESS, node_id: 1, ..ConnackPacket::default() }));
        assert_eq!((ack["id"].clone(), ack["result"]["reasonCode"].clone()), (json!("c1"), json!(1)));
        let a1 = out(&mut rpc, Packet::Sendack(SendackPacket { message_id: 99, message_seq: 3, reason_code: ReasonCode::SUCCESS, ..SendackPacket::default() }));
        assert_eq!((a1["id"].clone(), a1["result"]["messageId"].clone(), a1["result"]["messageSeq"].clone()), (json!("s1"), json!("99"), json!(3)));
        let pong = out(&mut rpc, Packet::Pong);
        assert_eq!(pong, json!({"jsonrpc": "2.0", "id": 7}));
        let a2 = out(&mut rpc, Packet::Sendack(SendackPacket { reason_code: ReasonCode::SUBSCRIBER_NOT_EXIST, ..SendackPacket::default() }));
        assert_eq!((a2["id"].clone(), a2["result"]["reasonCode"].clone()), (json!("s2"), json!(3)));

        let recv = out(
            &mut rpc,
            Packet::Recv(RecvPacket {
                message_id: 5,
                message_seq: 2,
                from_uid: "u2".into(),
                channel_id: "u2".into(),
                channel_type: 1,
                payload: b"yo".to_vec(),
                ..RecvPacket::default()
            }),
        );
        assert_eq!(recv["method"], json!("recv"));
        assert_eq!((recv["params"]["messageId"].clone(), recv["params"]["payload"].clone()), (json!("5"), json!("eW8=")));
        assert!(recv.get("id").is_none(), "a notification has no id");
    }

    #[test]
    fn bad_messages_are_refused_with_their_id() {
        let mut rpc = JsonRpc::new();
        rpc.feed(br#"{"method":"send","id":"x","params":{}}"#);
        let e = refused(next(&mut rpc));
        assert_eq!(e["id"], json!("x"));
        assert!(e["error"]["message"].as_str().unwrap().contains("connect"), "{e}");
        rpc.feed(br#"{"method":"connect","id":"c","params":{"uid":"u"}}"#);
        assert!(refused(next(&mut rpc))["error"]["message"].as_str().unwrap().contains("token"));
        rpc.feed(br#"{"method":"connect","id":"c","params":{"uid":"u","token":"t"}}"#);
        assert!(matches!(next(&mut rpc), Incoming::Packet(Packet::Connect(_))));
        for (input, needle) in [
            (&br#"{"method":"send","id":"1","params":{"channelId":"u2","channelType":1,"payload":"***"}}"#[..], "base64"),
            (br#"{"method":"nope","id":"2"}"#, "unknown method"),
            (br#"{"method":"ping"}"#, "request"),
            (br#"{"method":"subscribe","id":"3"}"#, "not supported"),
            (br#"{"method":"recvack","params":{"messageId":"x1"}}"#, "decimal"),
            (br#"{"jsonrpc":"1.0","method":"ping","id":"4"}"#, "2.0"),
            (br#"{"method":"ping","id":{"a":1}}"#, "id must be"),
            (br#"42"#, "object"),
        ] {
            rpc.feed(input);
            let e = refused(next(&mut rpc));
            assert!(e["error"]["message"].as_str().unwrap().contains(needle), "{e} should mention {needle}");
        }
        rpc.feed(b"{not json");
        assert!(rpc.next_message().is_err());
    }

    #[test]
    fn an_event_is_a_notification_with_its_data_as_text() {
        let mut rpc = JsonRpc::new();
        let e = super::super::packet::EventPacket { id: "e1".into(), kind: "stream.delta".into(), timestamp: 7, data: br#"{"msg_event_seq":1}"#.to_vec() };
        let v: Value = serde_json::from_str(&rpc.outgoing(&Packet::Event(e)).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc": "2.0", "method": "event", "params": {"id": "e1", "type": "stream.delta", "timestamp": 7, "data": "{\"msg_event_seq\":1}"}})
        );
    }

    #[test]
    fn failed_connect_is_an_error_and_disconnect_a_notification() {
        let mut rpc = JsonRpc::new();
        rpc.feed(br#"{"method":"connect","id":"c","params":{"uid":"u","token":"t"}}"#);
        next(&mut rpc);
        let e: Value =
            serde_json::from_str(&rpc.outgoing(&Packet::Connack(ConnackPacket { reason_code: ReasonCode::AUTH_FAIL, ..ConnackPacket::default() })).unwrap())
                .unwrap();
        assert_eq!((e["id"].clone(), e["error"]["code"].clone()), (json!("c"), json!(2)));
        assert!(e.get("result").is_none());
        let d: Value = serde_json::from_str(
            &rpc.outgoing(&Packet::Disconnect(super::super::packet::DisconnectPacket { reason_code: ReasonCode::CONNECT_KICK, reason: "x".into() })).unwrap(),
        )
        .unwrap();
        assert_eq!(d, json!({"jsonrpc": "2.0", "method": "disconnect", "params": {"reasonCode": 12, "reason": "x"}}));
    }
}
