//! Stream messages (an AI reply arriving piece by piece): `is_stream` sends, `/message/event`,
//! live pushes as EVENT (protocol 5) and as stream RECVs (protocol 2), `/message/eventsync`, the
//! finished message in `/channel/messagesync`, refusals that write nothing, and a kill -9 restart.

use base64::Engine;
use rookery::gateway::packet::Packet;
use serde_json::{json, Value};

use crate::gateway::{recv, server_with_tokens, Client, Kind};
use crate::support::{b64, Server};

async fn head(s: &Server) -> Value {
    s.get("/audit/head").await.1
}

async fn event(s: &Server, id: &str, ty: &str, payload: Value) -> (u16, Value) {
    s.post(
        "/message/event",
        &json!({"channel_id": "ai", "channel_type": 2, "from_uid": "bot", "client_msg_no": "r1", "event_id": id, "event_type": ty, "payload": payload}),
    )
    .await
}

fn delta(text: &str) -> Value {
    json!({"kind": "text", "delta": text})
}

/// The next packet of a protocol-5 client, which must be an EVENT; its type and data.
async fn next_event(c: &mut Client) -> (String, Value) {
    match c.read().await {
        Some(Packet::Event(e)) => (e.kind, serde_json::from_slice(&e.data).expect("EVENT data is JSON")),
        other => panic!("expected EVENT, got {other:?}"),
    }
}

/// The next packet of a protocol-2 client, which must be a stream RECV; its stream seq, flag and the
/// event data inside its content (type 98, data in base64).
async fn next_chunk(c: &mut Client) -> (u32, u8, Value) {
    let r = match c.read().await {
        Some(Packet::Recv(r)) => r,
        other => panic!("expected a stream RECV, got {other:?}"),
    };
    assert!(r.setting.stream() && r.setting.0 & 0x04 != 0, "stream bits for the SDK and the server codecs: {:#x}", r.setting.0);
    assert_eq!(r.stream_no, "r1");
    let content: Value = serde_json::from_slice(&c.open_recv(&r)).expect("content JSON");
    assert_eq!(content["type"], 98);
    let data = base64::engine::general_purpose::STANDARD.decode(content["data"].as_str().expect("data")).expect("base64");
    (r.stream_seq, r.stream_flag, serde_json::from_slice(&data).expect("event data"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_reply_reaches_both_protocols_live_and_late_readers_by_sync() {
    let (dir, mut s) = server_with_tokens().await;
    let (status, v) = s.post("/channel", &json!({"channel_id": "ai", "channel_type": 2, "subscribers": ["alice", "bob", "bot"]})).await;
    assert_eq!(status, 200, "{v}");
    let mut alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 5).await;
    let mut bob = Client::logged_in(&s, Kind::Ws, "bob", "tb", 0, 2).await;

    // Open the stream message: an ordinary message with the stream bit.
    let open =
        json!({"from_uid": "bot", "channel_id": "ai", "channel_type": 2, "client_msg_no": "r1", "is_stream": 1, "payload": b64(r#"{"type":1,"content":""}"#)});
    let (status, sent) = s.post("/message/send", &open).await;
    assert_eq!(status, 200, "{sent}");
    let (r, _) = recv(&mut alice).await;
    assert!(r.setting.stream(), "the message carries the stream bit");
    let (r, _) = recv(&mut bob).await;
    assert_eq!((r.setting.stream(), r.stream_no.as_str(), r.stream_flag), (true, "r1", 0), "protocol 2 gets the stream fields, flag start");

    // Deltas: durable, answered with their seq, pushed in order.
    for (i, piece) in ["Hel", "lo ", "world"].iter().enumerate() {
        let (status, v) = event(&s, &format!("d{i}"), "stream.delta", delta(piece)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!((v["data"]["msg_event_seq"].as_u64(), v["data"]["stream_status"].as_str()), (Some(i as u64 + 1), Some("open")));
        let (kind, data) = next_event(&mut alice).await;
        assert_eq!((kind.as_str(), data["msg_event_seq"].as_u64(), data["payload"]["delta"].as_str()), ("stream.delta", Some(i as u64 + 1), Some(*piece)));
        assert_eq!((data["client_msg_no"].as_str(), data["channel_id"].as_str(), data["from_uid"].as_str()), (Some("r1"), Some("ai"), Some("bot")));
        let (seq, flag, data) = next_chunk(&mut bob).await;
        assert_eq!((seq, flag, data["payload"]["delta"].as_str()), (i as u32 + 1, 1, Some(*piece)));
    }
    // A retried event id is answered with its seq and stored once.
    let before = head(&s).await;
    let (status, v) = event(&s, "d2", "stream.delta", delta("world")).await;
    assert_eq!((status, v["data"]["msg_event_seq"].as_u64()), (200, Some(3)), "{v}");
    assert_eq!(head(&s).await, before, "a retry writes nothing");
    // Refusals change nothing: no event id, a payload that is not JSON-able text, an unknown message.
    for bad in [
        json!({"channel_id": "ai", "channel_type": 2, "client_msg_no": "r1", "event_type": "stream.delta"}),
        json!({"channel_id": "ai", "channel_type": 2, "client_msg_no": "r1", "event_id": "x", "event_type": "stream.delta", "visibility": "all"}),
        json!({"channel_type": 2, "client_msg_no": "r1", "event_id": "x", "event_type": "stream.delta"}),
    ] {
        let (status, v) = s.post("/message/event", &bad).await;
        assert_eq!(status, 400, "{bad} -> {v}");
    }
    let (status, v) =
        s.post("/message/event", &json!({"channel_id": "ai", "channel_type": 2, "client_msg_no": "nope", "event_id": "x", "event_type": "stream.delta"})).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(head(&s).await, before, "refusals write nothing");

    // A private event is stored but not pushed, and listed only on request.
    let (status, v) = s
        .post(
            "/message/event",
            &json!({"channel_id": "ai", "channel_type": 2, "client_msg_no": "r1", "event_id": "p", "event_type": "tool.call", "event_key": "tools", "visibility": "private", "payload": {"name": "search"}}),
        )
        .await;
    assert_eq!((status, v["data"]["msg_event_seq"].as_u64()), (200, Some(4)), "{v}");
    let (status, v) = event(&s, "tools-done", "stream.close", json!({})).await;
    assert_eq!(status, 200, "{v}");
    // Closing main with "tools" still open does not end the message; closing "tools" does.
    let (kind, data) = next_event(&mut alice).await;
    assert_eq!((kind.as_str(), data["stream_status"].as_str()), ("stream.close", Some("closed")));
    let (_, flag, _) = next_chunk(&mut bob).await;
    assert_eq!(flag, 1, "the message goes on while a key is open");
    let (status, v) = s
        .post(
            "/message/event",
            &json!({"channel_id": "ai", "channel_type": 2, "client_msg_no": "r1", "event_id": "t-end", "event_type": "stream.close", "event_key": "tools", "visibility": "private", "payload": {"end_reason": 1}}),
        )
        .await;
    assert_eq!((status, v["data"]["stream_status"].as_str()), (200, Some("closed")), "{v}");
    // Nothing more may be added once the message has ended; an event for an ended key is answered.
    let (status, v) = s
        .post(
            "/message/event",
            &json!({"channel_id": "ai", "channel_type": 2, "client_msg_no": "r1", "event_id": "late", "event_type": "stream.delta", "event_key": "other"}),
        )
        .await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = event(&s, "late2", "stream.delta", delta("!")).await;
    assert_eq!((status, v["data"]["stream_status"].as_str(), v["data"]["msg_event_seq"].as_u64()), (200, Some("closed"), Some(5)), "{v}");
    // The number is taken: a second stream message with it is refused.
    let (status, v) = s.post("/message/send", &open).await;
    assert!(status == 409 || status == 400, "{status} {v}");

    check_late_readers(&s).await;
    s.kill9();
    let s = Server::start(dir.path(), &[]);
    check_late_readers(&s).await;
    // Its events and its end are in the verified log.
    let (status, v) = s.get("/audit/events?kind=channel.message_stream_ended").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["events"].as_array().map(Vec::len), Some(1), "{v}");
    drop(alice);
    drop(bob);
}

/// What a reader who was not online sees of the finished stream.
async fn check_late_readers(s: &Server) {
    // Late readers: events page by page, public only unless asked for.
    let sync = |from: u64, limit: u64, private: u8| json!({"channel_id": "ai", "channel_type": 2, "client_msg_no": "r1", "from_msg_event_seq": from, "limit": limit, "include_private": private});
    let (status, v) = s.post("/message/eventsync", &sync(0, 2, 0)).await;
    assert_eq!(status, 200, "{v}");
    let seqs = |v: &Value| v["data"]["events"].as_array().expect("events").iter().map(|e| e["msg_event_seq"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!((seqs(&v), v["data"]["more"].as_u64(), v["data"]["next_msg_event_seq"].as_u64()), (vec![1, 2], Some(1), Some(2)), "{v}");
    let (_, v) = s.post("/message/eventsync", &sync(2, 10, 0)).await;
    assert_eq!((seqs(&v), v["data"]["more"].as_u64()), (vec![3, 5], Some(0)), "private events are left out: {v}");
    let (_, v) = s.post("/message/eventsync", &sync(0, 10, 1)).await;
    assert_eq!(seqs(&v), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(v["data"]["events"][0]["payload"], delta("Hel"));
    // The finished message in history: ended, its text, every key in event_meta.
    let (status, v) =
        s.post("/channel/messagesync", &json!({"login_uid": "alice", "channel_id": "ai", "channel_type": 2, "limit": 10, "event_summary_mode": "full"})).await;
    assert_eq!(status, 200, "{v}");
    let m = &v["messages"][0];
    assert_eq!(m["end"], 1, "{m}");
    let text = base64::engine::general_purpose::STANDARD.decode(m["stream_data"].as_str().expect("stream_data")).unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), "Hello world");
    assert_eq!(m["event_meta"]["completed"], true);
    let keys: Vec<(&str, &str)> =
        m["event_meta"]["events"].as_array().unwrap().iter().map(|e| (e["event_key"].as_str().unwrap(), e["status"].as_str().unwrap())).collect();
    assert_eq!(keys, vec![("main", "closed"), ("tools", "closed")]);
}

/// A client opens a stream message with a SEND carrying the stream bit; its events follow over REST
/// and reach the sender's own session too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_send_with_the_stream_bit_opens_a_stream_message() {
    let (_dir, s) = server_with_tokens().await;
    let (status, v) = s.post("/channel", &json!({"channel_id": "ai", "channel_type": 2, "subscribers": ["alice", "bob"]})).await;
    assert_eq!(status, 200, "{v}");
    let mut alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 5).await;
    let ack = alice.send_setting(1, "ai", 2, r#"{"type":1,"content":""}"#, "a-reply", rookery::gateway::packet::Setting::STREAM).await;
    assert_eq!(ack.reason_code, rookery::gateway::packet::ReasonCode::SUCCESS);
    let event = json!({"channel_id": "ai", "channel_type": 2, "from_uid": "alice", "client_msg_no": "a-reply", "event_id": "e1", "event_type": "stream.delta", "payload": delta("hi")});
    let (status, v) = s.post("/message/event", &event).await;
    assert_eq!((status, v["data"]["msg_event_seq"].as_u64()), (200, Some(1)), "{v}");
    let (kind, data) = next_event(&mut alice).await;
    assert_eq!((kind.as_str(), data["client_msg_no"].as_str()), ("stream.delta", Some("a-reply")), "the sender's own session gets it too");
    // Without the bit a message has no events.
    let ack = alice.send(2, "ai", 2, "plain").await;
    assert_eq!(ack.reason_code, rookery::gateway::packet::ReasonCode::SUCCESS);
    let (status, v) = s
        .post("/message/event", &json!({"channel_id": "ai", "channel_type": 2, "client_msg_no": "cmn-2", "event_id": "e1", "event_type": "stream.delta"}))
        .await;
    assert_eq!(status, 404, "{v}");
}

/// `message.edit` and `message.revoke` events change any message: online protocol-5 sessions see them at
/// once, readers of the channel find the new content or the retraction, across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_edited_and_revoked_through_events() {
    let (dir, mut s) = server_with_tokens().await;
    let (status, v) = s.post("/channel", &json!({"channel_id": "g", "channel_type": 2, "subscribers": ["alice", "bob", "carol"]})).await;
    assert_eq!(status, 200, "{v}");
    let mut alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 5).await;
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 2).await;
    let send = |no: &str, text: &str| json!({"from_uid": "carol", "channel_id": "g", "channel_type": 2, "client_msg_no": no, "payload": b64(text)});
    let (status, first) = s.post("/message/send", &send("n1", r#"{"type":1,"content":"teh"}"#)).await;
    assert_eq!(status, 200, "{first}");
    let (status, _) = s.post("/message/send", &send("n2", r#"{"type":1,"content":"second"}"#)).await;
    assert_eq!(status, 200);
    for c in [&mut alice, &mut bob] {
        recv(c).await;
        recv(c).await;
    }
    let change = |id: &str, ty: &str, no: &str, payload: Value| json!({"channel_id": "g", "channel_type": 2, "from_uid": "carol", "client_msg_no": no, "event_id": id, "event_type": ty, "payload": payload});
    let (status, v) = s.post("/message/event", &change("ed1", "message.edit", "n1", json!({"type": 1, "content": "the"}))).await;
    assert_eq!((status, v["data"]["event_key"].as_str(), v["data"]["msg_event_seq"].as_u64()), (200, Some("__message__"), Some(1)), "{v}");
    let (kind, data) = next_event(&mut alice).await;
    assert_eq!((kind.as_str(), data["payload"]["content"].as_str(), data["message_seq"].as_u64()), ("message.edit", Some("the"), Some(1)));
    // Refusals: no content, an unknown message, an id and a number that disagree.
    let before = head(&s).await;
    for (bad, expected) in [
        (change("x", "message.edit", "n1", Value::Null), 400),
        (change("x", "message.edit", "nope", json!({"a": 1})), 404),
        (
            json!({"channel_id": "g", "channel_type": 2, "client_msg_no": "n2", "message_id": first["message_id"], "event_id": "x", "event_type": "message.edit", "payload": {"a": 1}}),
            400,
        ),
    ] {
        let (status, v) = s.post("/message/event", &bad).await;
        assert_eq!(status, expected, "{bad}: {v}");
    }
    assert_eq!(head(&s).await, before, "refusals write nothing");
    let (status, v) = s.post("/message/event", &change("rv1", "message.revoke", "n2", Value::Null)).await;
    assert_eq!(status, 200, "{v}");
    let (kind, _) = next_event(&mut alice).await;
    assert_eq!(kind, "message.revoke");
    let before = head(&s).await;
    let (status, _) = s.post("/message/event", &change("rv2", "message.revoke", "n2", Value::Null)).await;
    assert_eq!(status, 200, "revoking again is answered");
    assert_eq!(head(&s).await, before, "and stores nothing");
    let (status, v) = s.post("/message/event", &change("ed2", "message.edit", "n2", json!({"a": 1}))).await;
    assert_eq!(status, 403, "no edit after a revoke: {v}");
    let (status, v) = s.post("/message/event", &change("d1", "stream.delta", "n1", json!({"kind": "text", "delta": "x"}))).await;
    assert_eq!(status, 404, "an edited message is no stream message: {v}");
    // Protocol 2 has no form for these events: bob's next packet is the next message.
    let (status, _) = s.post("/message/send", &send("n3", r#"{"type":1,"content":"third"}"#)).await;
    assert_eq!(status, 200);
    let (r, _) = recv(&mut bob).await;
    assert_eq!(r.client_msg_no, "n3");

    s.kill9();
    let s = Server::start(dir.path(), &[]);
    let (status, v) = s.post("/channel/messagesync", &json!({"login_uid": "bob", "channel_id": "g", "channel_type": 2, "limit": 10})).await;
    assert_eq!(status, 200, "{v}");
    let m = &v["messages"];
    assert_eq!((m[0]["edited"].as_u64(), &m[0]["content_edit"]), (Some(1), &json!({"type": 1, "content": "the"})), "{v}");
    assert_eq!((m[1]["revoke"].as_u64(), m[1]["payload"].as_str(), m[1].get("edited")), (Some(1), Some(""), None), "{v}");
    let (_, v) = s.post("/conversation/sync", &json!({"uid": "bob", "version": 0, "msg_count": 3})).await;
    assert_eq!(v[0]["recents"][2]["content_edit"]["content"], "the", "{v}");
}

/// Deltas appended by several writers at once while the server is killed: after the restart every
/// acknowledged event is there exactly once, the event seqs run 1..n without a gap, and the stream
/// goes on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_deltas_survive_a_kill_9_under_load() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &[]);
    let (status, v) = s.post("/channel", &json!({"channel_id": "ai", "channel_type": 2, "subscribers": ["bot"]})).await;
    assert_eq!(status, 200, "{v}");
    let open = json!({"from_uid": "bot", "channel_id": "ai", "channel_type": 2, "client_msg_no": "r1", "is_stream": 1, "payload": b64("{}")});
    assert_eq!(s.post("/message/send", &open).await.0, 200);
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let api = s.api;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let acked = acked.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for n in 0.. {
                    let id = format!("w{w}-{n}");
                    let body = json!({"channel_id": "ai", "channel_type": 2, "from_uid": "bot", "client_msg_no": "r1", "event_id": id, "event_type": "stream.delta", "payload": delta("x")});
                    let Ok(resp) = http.post(format!("http://{api}/message/event")).json(&body).send().await else { return };
                    let Ok(v) = resp.json::<Value>().await else { return };
                    let Some(seq) = v["data"]["msg_event_seq"].as_u64() else { return };
                    acked.lock().unwrap().push((id, seq));
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    s.kill9();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    let mut s = Server::start(dir.path(), &[]);
    let mut stored = Vec::new();
    let mut from = 0;
    loop {
        let (status, v) = s
            .post("/message/eventsync", &json!({"channel_id": "ai", "channel_type": 2, "client_msg_no": "r1", "from_msg_event_seq": from, "limit": 2000}))
            .await;
        assert_eq!(status, 200, "{v}");
        for e in v["data"]["events"].as_array().unwrap() {
            stored.push((e["event_id"].as_str().unwrap().to_owned(), e["msg_event_seq"].as_u64().unwrap()));
        }
        from = v["data"]["next_msg_event_seq"].as_u64().unwrap();
        if v["data"]["more"] == 0 {
            break;
        }
    }
    let seqs: Vec<u64> = stored.iter().map(|(_, q)| *q).collect();
    assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>(), "gap-free event seqs");
    let ids: std::collections::BTreeSet<&String> = stored.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), stored.len(), "each event once");
    for (id, seq) in &acked {
        assert!(stored.contains(&(id.clone(), *seq)), "acknowledged {id} at {seq} is stored");
    }
    // The stream goes on after the last stored event.
    let next = json!({"channel_id": "ai", "channel_type": 2, "from_uid": "bot", "client_msg_no": "r1", "event_id": "after", "event_type": "stream.close"});
    let (status, v) = s.post("/message/event", &next).await;
    assert_eq!((status, v["data"]["msg_event_seq"].as_u64()), (200, Some(stored.len() as u64 + 1)), "{v}");
    s.stop();
    let (ok, report) = crate::support::verify(dir.path());
    assert!(ok, "replay --verify: {report}");
}
