//! The one send path, as every transport reaches it: `/message/sendbatch` (live delivery, `no_persist`),
//! `/message/send` to a list of subscribers (WuKongIM's command messages), and the WuKongIM family's
//! tolerance of fields it does not know.

use std::time::Duration;

use rookery::gateway::packet::Packet;
use serde_json::json;

use crate::gateway::{history, queued, recv, server_with_tokens as server, Client, Kind};
use crate::support::{b64, Server};

/// Stored person messages between `login` and `peer`, as texts.
async fn stored(s: &Server, login: &str, peer: &str) -> Vec<String> {
    history(s, login, peer).await.into_iter().map(|(_, text)| text).collect()
}

/// Nothing more arrives on `c` for a moment.
async fn nothing_more(c: &mut Client, who: &str) {
    c.write(&Packet::Ping).await;
    match c.read().await {
        Some(Packet::Pong) => {}
        other => panic!("{who} expected only PONG, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendbatch_is_stored_and_delivered_live_to_every_recipient() {
    let (_dir, s) = server().await;
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    let mut carol = Client::logged_in(&s, Kind::Ws, "carol", "tc", 1, 5).await;
    let body = json!({"from_uid": "alice", "subscribers": ["bob", "carol", "bob"], "payload": b64("to each"), "header": {"red_dot": 1}});
    let (status, v) = s.post("/message/sendbatch", &body).await;
    assert_eq!((status, &v), (200, &json!({"fail_uids": [], "reason": []})));
    for (c, who) in [(&mut bob, "bob"), (&mut carol, "carol")] {
        let (r, text) = recv(c).await;
        assert_eq!((text.as_str(), r.from_uid.as_str(), r.channel_id.as_str(), r.channel_type), ("to each", "alice", "alice", 1), "{who}");
        assert!(r.header.red_dot && r.message_seq == 1, "{who}: {r:?}");
        // Named twice, sent once.
        nothing_more(c, who).await;
    }
    assert_eq!(stored(&s, "alice", "bob").await, vec!["to each"]);
    assert_eq!(stored(&s, "alice", "carol").await, vec!["to each"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_persist_sendbatch_is_delivered_live_and_not_stored() {
    let (_dir, s) = server().await;
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    let body = json!({"from_uid": "alice", "subscribers": ["bob", "carol"], "payload": b64("typing"), "header": {"no_persist": 1}});
    let (status, v) = s.post("/message/sendbatch", &body).await;
    assert_eq!(status, 200, "{v}");
    let (r, text) = recv(&mut bob).await;
    assert_eq!((text.as_str(), r.message_seq), ("typing", 0));
    assert!(r.header.no_persist, "{r:?}");
    assert!(stored(&s, "alice", "bob").await.is_empty());
    assert!(stored(&s, "alice", "carol").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sendbatch_changes_nothing() {
    let (_dir, s) = server().await;
    for (body, needle) in [
        (json!({"from_uid": "alice", "subscribers": ["bob", "c@rol"], "payload": b64("x")}), "subscribers"),
        (json!({"from_uid": "alice", "subscribers": [], "payload": b64("x")}), "subscribers"),
        (json!({"subscribers": ["bob"], "payload": b64("x")}), "from_uid"),
        (json!({"from_uid": "alice", "subscribers": ["bob"], "payload": "%%"}), "base64"),
    ] {
        let (status, v) = s.post("/message/sendbatch", &body).await;
        assert_eq!(status, 400, "{body} -> {v}");
        assert!(v["msg"].as_str().unwrap_or_default().contains(needle), "{body} -> {v}");
    }
    assert!(stored(&s, "alice", "bob").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_without_a_channel_get_a_command_message() {
    let (_dir, s) = server().await;
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    let body = json!({"from_uid": "alice", "subscribers": ["bob", "carol"], "payload": b64("refresh"), "header": {"sync_once": 1}});
    let (status, v) = s.post("/message/send", &body).await;
    assert_eq!(status, 200, "{v}");
    let id = v["message_id"].as_i64().expect("message_id");
    let (r, text) = recv(&mut bob).await;
    assert_eq!((text.as_str(), r.message_id, r.channel_type), ("refresh", id, 8));
    assert!(r.header.sync_once, "{r:?}");
    // carol is offline: the command waits in her queue; alice, not listed, gets nothing.
    let queued = |uid: &'static str| queued(&s, uid);
    assert_eq!(queued("carol").await, vec![id]);
    assert!(queued("alice").await.is_empty());
    // The same set again reuses its channel: the second command follows the first.
    let (status, v) =
        s.post("/message/send", &json!({"from_uid": "alice", "subscribers": ["carol", "bob"], "payload": b64("again"), "header": {"sync_once": 1}})).await;
    assert_eq!(status, 200, "{v}");
    let (r2, _) = recv(&mut bob).await;
    assert_eq!((r2.channel_id.as_str(), r2.message_seq), (r.channel_id.as_str(), r.message_seq + 1));

    // Subscribers are for commands only, and never together with a channel.
    for body in [
        json!({"from_uid": "alice", "subscribers": ["bob"], "payload": b64("x")}),
        json!({"from_uid": "alice", "subscribers": ["bob"], "channel_id": "g", "channel_type": 2, "payload": b64("x"), "header": {"sync_once": 1}}),
    ] {
        let (status, v) = s.post("/message/send", &body).await;
        assert_eq!(status, 400, "{body} -> {v}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    nothing_more(&mut bob, "bob").await;
}

#[tokio::test]
async fn the_wukongim_family_ignores_fields_it_does_not_know_but_not_a_missing_required_one() {
    let (_dir, s) = server().await;
    let (status, v) = s
        .post(
            "/message/send",
            &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": b64("hi"), "tag_key": "t-1", "future_field": {"x": 1}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.post("/user/token", &json!({"uid": "dave", "token": "td", "device_flag": 0, "device_level": 1, "expire": 3600})).await;
    assert_eq!(status, 200, "{v}");
    // `payload` misspelt: the required field is missing.
    let (status, v) = s.post("/message/send", &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "paylaod": b64("hi")})).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["msg"].as_str().unwrap_or_default().contains("payload"), "{v}");
    assert_eq!(stored(&s, "alice", "bob").await, vec!["hi"]);
}

/// A message too large for any session to receive in one packet is refused to its sender, instead of
/// ending the session of every recipient it is pushed to; the largest one that fits arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_no_session_could_receive_is_refused_to_its_sender() {
    let (_dir, s) = server().await;
    let mut bob = Client::logged_in(&s, Kind::Tcp, "bob", "tb", 0, 5).await;
    let max = rookery::gateway::max_deliverable_payload();
    let too_large = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![b'x'; max + 1]);
    let (status, v) = s.post("/message/send", &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": too_large})).await;
    assert_eq!(status, 413, "{v}");
    let (status, v) =
        s.post("/message/send", &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": b64("hi"), "topic": "t".repeat(256)})).await;
    assert_eq!(status, 400, "{v}");
    nothing_more(&mut bob, "bob").await;
    assert!(stored(&s, "alice", "bob").await.is_empty());

    let largest = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![b'y'; max]);
    let (status, v) =
        s.post("/message/send", &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": largest, "topic": "t".repeat(255)})).await;
    assert_eq!(status, 200, "{v}");
    let (_, text) = recv(&mut bob).await;
    assert_eq!(text.len(), max);
}
