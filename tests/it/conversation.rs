//! Conversation lists with unread counts, over HTTP.

use serde_json::{json, Value};

use crate::support::{b64, Server};

async fn send(s: &Server, from: &str, channel: &str, ty: u8, text: &str, red_dot: u8) -> Value {
    let (status, v) = s
        .post("/message/send", &json!({"from_uid": from, "channel_id": channel, "channel_type": ty, "payload": b64(text), "header": {"red_dot": red_dot}}))
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn conversations(s: &Server, uid: &str, extra: Value) -> Vec<Value> {
    let mut body = json!({"uid": uid, "version": 0, "msg_count": 2});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, v) = s.post("/conversation/sync", &body).await;
    assert_eq!(status, 200, "{v}");
    v.as_array().unwrap().clone()
}

fn find<'a>(list: &'a [Value], channel_id: &str) -> &'a Value {
    list.iter().find(|c| c["channel_id"] == channel_id).unwrap_or_else(|| panic!("no conversation {channel_id} in {list:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_conversations_count_the_peers_messages_by_seq_or_by_red_dot() {
    // By default every message after the read point counts (WuKongIM v2); with `red_dot`, only flagged ones.
    for (counting, expected) in [(None, 3), (Some("red_dot"), 2)] {
        let dir = tempfile::tempdir().unwrap();
        let env: Vec<(&str, &str)> = counting.map(|c| ("ROOKERY_UNREAD_COUNTING", c)).into_iter().collect();
        let s = Server::start(dir.path(), &env);
        conversation_reads(&s, expected).await;
    }
}

async fn conversation_reads(s: &Server, expected_unread: u64) {
    send(s, "alice", "bob", 1, "hi bob", 1).await;
    send(s, "alice", "bob", 1, "are you there", 1).await;
    send(s, "alice", "bob", 1, "silent", 0).await;

    let bob = conversations(s, "bob", json!({})).await;
    let c = find(&bob, "alice");
    assert_eq!(c["channel_type"], 1);
    assert_eq!(c["unread"], expected_unread, "{c}");
    assert_eq!(c["last_msg_seq"], 3);
    let recents = c["recents"].as_array().unwrap();
    assert_eq!(recents.len(), 2);
    assert_eq!(recents[0]["message_seq"], 3, "recents are newest first");
    assert_eq!(recents[0]["channel_id"], "alice");

    // The sender has read everything up to their own message.
    let alice = conversations(s, "alice", json!({})).await;
    assert_eq!(find(&alice, "bob")["unread"], 0);

    // Bob answers: his reply marks alice's messages read for him, and is unread for alice.
    send(s, "bob", "alice", 1, "yes", 1).await;
    assert_eq!(find(&conversations(s, "bob", json!({})).await, "alice")["unread"], 0);
    assert_eq!(find(&conversations(s, "alice", json!({})).await, "bob")["unread"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_can_be_set_cleared_and_conversations_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    for i in 0..5 {
        send(&s, "carol", "dave", 1, &format!("m{i}"), 1).await;
    }
    let before = find(&conversations(&s, "dave", json!({})).await, "carol").clone();
    assert_eq!(before["unread"], 5);

    let (status, v) = s.post("/conversations/setUnread", &json!({"uid": "dave", "channel_id": "carol", "channel_type": 1, "unread": 2})).await;
    assert_eq!((status, &v), (200, &json!({"status": 200})));
    let after = find(&conversations(&s, "dave", json!({})).await, "carol").clone();
    assert_eq!(after["unread"], 2);
    assert!(after["version"].as_u64() > before["version"].as_u64(), "version grows on every change");

    // Bad input is refused and changes nothing.
    for bad in [
        json!({"uid": "dave", "channel_id": "carol", "channel_type": 1, "unread": -1}),
        json!({"uid": "dave", "channel_id": "carol", "channel_type": 1, "unread": 99}),
        json!({"uid": "dave", "channel_id": "carol", "channel_type": 1}),
        json!({"uid": "", "channel_id": "carol", "channel_type": 1, "unread": 1}),
        json!({"uid": "dave", "channel_id": "carol", "channel_type": 0, "unread": 1}),
    ] {
        let (status, v) = s.post("/conversations/setUnread", &bad).await;
        assert_eq!(status, 400, "{bad} -> {v}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(find(&conversations(&s, "dave", json!({})).await, "carol"), &after);

    let (status, _) = s.post("/conversations/clearUnread", &json!({"uid": "dave", "channel_id": "carol", "channel_type": 1})).await;
    assert_eq!(status, 200);
    assert_eq!(find(&conversations(&s, "dave", json!({})).await, "carol")["unread"], 0);
    assert!(conversations(&s, "dave", json!({"only_unread": 1})).await.is_empty());

    let (status, _) = s.post("/conversations/delete", &json!({"uid": "dave", "channel_id": "carol", "channel_type": 1})).await;
    assert_eq!(status, 200);
    assert!(conversations(&s, "dave", json!({})).await.is_empty(), "a deleted conversation is hidden");
    send(&s, "carol", "dave", 1, "again", 1).await;
    let back = conversations(&s, "dave", json!({"msg_count": 10})).await;
    let c = find(&back, "carol");
    assert_eq!(c["unread"], 1);
    assert_eq!(c["recents"].as_array().unwrap().len(), 1, "messages before the delete stay hidden");

    let (status, _) = s.post("/conversations/setUnread", &json!({"uid": "dave", "channel_id": "nobody-ever", "channel_type": 2, "unread": 1})).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_start_with_nothing_unread_and_last_msg_seqs_filters() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let (status, v) = s.post("/channel", &json!({"channel_id": "g1", "channel_type": 2, "subscribers": ["erin", "frank"]})).await;
    assert_eq!(status, 200, "{v}");
    for i in 0..3 {
        send(&s, "erin", "g1", 2, &format!("m{i}"), 1).await;
    }
    // A late joiner does not see earlier messages as unread.
    let (status, _) = s.post("/channel/subscriber_add", &json!({"channel_id": "g1", "channel_type": 2, "subscribers": ["gina"]})).await;
    assert_eq!(status, 200);
    send(&s, "frank", "g1", 2, "welcome", 1).await;

    assert_eq!(find(&conversations(&s, "frank", json!({})).await, "g1")["unread"], 0);
    assert_eq!(find(&conversations(&s, "erin", json!({})).await, "g1")["unread"], 1);
    assert_eq!(find(&conversations(&s, "gina", json!({})).await, "g1")["unread"], 1);

    // The client already has everything up to seq 4: nothing new to report.
    assert!(conversations(&s, "gina", json!({"last_msg_seqs": "g1:2:4"})).await.is_empty());
    let partial = conversations(&s, "gina", json!({"last_msg_seqs": "g1:2:2", "msg_count": 10})).await;
    assert_eq!(find(&partial, "g1")["recents"].as_array().unwrap().len(), 2);
    assert!(conversations(&s, "gina", json!({"exclude_channel_types": [2]})).await.is_empty());

    // Removed members lose the conversation.
    let (status, _) = s.post("/channel/subscriber_remove", &json!({"channel_id": "g1", "channel_type": 2, "subscribers": ["gina"]})).await;
    assert_eq!(status, 200);
    assert!(conversations(&s, "gina", json!({})).await.is_empty());

    let (status, v) = s.post("/conversation/sync", &json!({"uid": "gina", "msg_count": -1})).await;
    assert_eq!(status, 400, "{v}");
}

/// `/conversation/channels`, `/conversation/syncByChannels`, `/conversation/syncMessages`, v3's paged
/// `/conversation/list` and `/channel/messagesyncbatch` read the same conversations and history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_sets_recent_messages_paged_lists_and_batched_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let (status, v) = s.post("/channel", &json!({"channel_id": "g1", "channel_type": 2, "subscribers": ["bob", "carol"]})).await;
    assert_eq!(status, 200, "{v}");
    for i in 1..=5 {
        send(&s, "carol", "g1", 2, &format!("g{i}"), 1).await;
    }
    send(&s, "bob", "g1", 2, "mine", 1).await;
    for peer in ["p1", "p2", "p3"] {
        send(&s, peer, "bob", 1, &format!("from {peer}"), 1).await;
    }

    let (status, v) = s.post("/conversation/channels", &json!({"uid": "bob"})).await;
    assert_eq!(status, 200, "{v}");
    let mut ids: Vec<(String, u64)> =
        v.as_array().unwrap().iter().map(|c| (c["channel_id"].as_str().unwrap().to_owned(), c["channel_type"].as_u64().unwrap())).collect();
    ids.sort();
    assert_eq!(ids, vec![("g1".into(), 2), ("p1".into(), 1), ("p2".into(), 1), ("p3".into(), 1)]);

    let (status, v) =
        s.post("/conversation/syncByChannels", &json!({"uid": "bob", "channels": [{"channel_id": "g1", "channel_type": 2}], "msg_count": 3})).await;
    assert_eq!(status, 200, "{v}");
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!((list[0]["channel_id"].as_str(), list[0]["last_msg_seq"].as_u64(), list[0]["recents"].as_array().map(Vec::len)), (Some("g1"), Some(6), Some(3)));

    let (status, v) = s
        .post("/conversation/syncMessages", &json!({"uid": "bob", "channels": [{"channel_id": "g1", "channel_type": 2, "last_msg_seq": 2}, {"channel_id": "p2", "channel_type": 1}], "msg_count": 2}))
        .await;
    assert_eq!(status, 200, "{v}");
    let g = &v[0];
    let seqs: Vec<u64> = g["messages"].as_array().unwrap().iter().map(|m| m["message_seq"].as_u64().unwrap()).collect();
    assert_eq!((seqs, g["user_last_msg_seq"].as_u64()), (vec![5, 6], Some(6)), "newest 2 after seq 2, ascending; bob's own last: {g}");
    assert_eq!((v[1]["channel_id"].as_str(), v[1]["messages"][0]["from_uid"].as_str()), (Some("p2"), Some("p2")));
    let (status, v) = s.post("/conversation/syncMessages", &json!({"uid": "bob", "channels": []})).await;
    assert_eq!(status, 400, "{v}");

    // The paged list: 2 per page, newest first, every conversation once, the cursor opaque.
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    for _ in 0..4 {
        let (status, v) = s.post("/conversation/list", &json!({"uid": "bob", "limit": 2, "cursor": cursor})).await;
        assert_eq!(status, 200, "{v}");
        for c in v["conversations"].as_array().unwrap() {
            seen.push(c["channel_id"].as_str().unwrap().to_owned());
            assert!(c["last_message"]["message_seq"].as_u64().unwrap() > 0, "{c}");
        }
        if v["done"] == true {
            assert!(v.get("next_cursor").is_none(), "{v}");
            break;
        }
        cursor = v["next_cursor"].clone();
    }
    assert_eq!(seen, vec!["p3", "p2", "p1", "g1"], "most recently changed first");
    let (status, v) = s.post("/conversation/list", &json!({"uid": "bob", "cursor": "not-a-cursor!"})).await;
    assert_eq!(status, 400, "{v}");

    let (status, v) = s
        .post(
            "/channel/messagesyncbatch",
            &json!({"login_uid": "bob", "items": [
                {"channel_id": "g1", "channel_type": 2, "start_message_seq": 2, "limit": 2, "pull_mode": 1},
                {"channel_id": "p1", "channel_type": 1, "limit": 10},
                {"channel_id": "g1", "channel_type": 2, "pull_mode": 7}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let items = v["items"].as_array().unwrap();
    let seqs: Vec<u64> = items[0]["messages"].as_array().unwrap().iter().map(|m| m["message_seq"].as_u64().unwrap()).collect();
    assert_eq!((seqs, items[0]["more"].as_u64()), (vec![2, 3], Some(1)));
    assert_eq!(items[1]["messages"][0]["channel_id"], "p1", "{v}");
    assert!(items[2]["error"].as_str().is_some_and(|e| e.contains("pull_mode")), "one bad item is reported in place: {v}");
}
