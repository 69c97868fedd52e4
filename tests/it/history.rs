//! Time travel: `GET /audit/state` shows a channel or a user as of a past position or instant.

use serde_json::{json, Value};

use crate::support::{b64, Server};

async fn ok(s: &Server, path: &str, body: Value) {
    let (status, v) = s.post(path, &body).await;
    assert_eq!(status, 200, "{path}: {v}");
}

async fn head(s: &Server) -> u64 {
    s.get("/audit/head").await.1["position"].as_u64().unwrap()
}

async fn state(s: &Server, query: &str) -> Value {
    let (status, v) = s.get(&format!("/audit/state?{query}")).await;
    assert_eq!(status, 200, "{query}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_channel_and_user_states_by_position_and_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    ok(&server, "/user/token", json!({"uid": "bob", "token": "t1", "device_flag": 1, "device_level": 1})).await;
    ok(&server, "/channel", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann", "bob"]})).await;
    for i in 0..3 {
        ok(&server, "/message/send", json!({"header": {"red_dot": 1}, "from_uid": "ann", "channel_id": "g", "channel_type": 2, "payload": b64(&format!("m{i}"))})).await;
    }
    let before = head(&server).await;
    let (_, live) = server.post("/conversation/sync", &json!({"uid": "bob"})).await;
    assert_eq!(live[0]["unread"], 3, "{live}");
    let before_time = state(&server, &format!("at={before}&channel_id=g&channel_type=2")).await["at"]["recorded_at"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    ok(&server, "/channel/subscriber_remove", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann"]})).await;
    ok(&server, "/channel/blacklist_add", json!({"channel_id": "g", "channel_type": 2, "uids": ["eve"]})).await;
    ok(&server, "/user/token", json!({"uid": "bob", "token": "t2", "device_flag": 2, "device_level": 0})).await;
    ok(&server, "/message/send", json!({"from_uid": "bob", "channel_id": "g", "channel_type": 2, "payload": b64("late")})).await;

    let then = state(&server, &format!("at={before}&channel_id=g&channel_type=2")).await;
    assert_eq!(then["at"]["position"], before);
    let c = &then["channel"];
    assert_eq!((c["exists"].as_bool(), c["subscribers"].clone(), c["blacklist"].clone(), c["last_message_seq"].as_u64()), (Some(true), json!(["ann", "bob"]), json!([]), Some(3)), "{then}");

    let by_time = state(&server, &format!("at={before_time}&channel_id=g&channel_type=2")).await;
    assert_eq!(by_time["channel"], then["channel"], "the instant of position {before} gives the same state");
    assert_eq!(by_time["at"]["position"], before);

    let now = state(&server, "channel_id=g&channel_type=2").await;
    let c = &now["channel"];
    assert_eq!((c["subscribers"].clone(), c["blacklist"].clone(), c["last_message_seq"].as_u64()), (json!(["bob"]), json!(["eve"]), Some(4)), "{now}");

    let bob_then = state(&server, &format!("at={before}&uid=bob")).await["user"].clone();
    assert_eq!(bob_then["devices"].as_array().unwrap().len(), 1, "{bob_then}");
    assert_eq!(bob_then["conversations"], json!([{"channel_id": "g", "channel_type": 2, "last_message_seq": 3, "unread": 3}]));
    let bob_now = state(&server, "uid=bob").await["user"].clone();
    assert_eq!(bob_now["devices"].as_array().unwrap().iter().map(|d| d["device_flag"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(bob_now["conversations"], json!([{"channel_id": "g", "channel_type": 2, "last_message_seq": 4, "unread": 0}]));
    assert_eq!(bob_now["system_uid"], false);

    // Before anything happened, nothing existed.
    let genesis = state(&server, "at=1970-01-01T00:00:00Z&channel_id=g&channel_type=2").await;
    assert_eq!((genesis["at"]["position"].as_u64(), genesis["channel"]["exists"].as_bool()), (Some(0), Some(false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_time_travel_queries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for (query, needle) in [
        ("channel_id=g", "channel_type is required"),
        ("channel_id=g&channel_type=99", "unknown channel_type"),
        ("uid=a&channel_id=g&channel_type=2", "not both"),
        ("", "give channel_id"),
        ("uid=a&at=yesterday", "RFC 3339"),
        ("uid=a&at=99999999999999999999999", "too large"),
        ("uid=a&nonsense=1", "malformed query"),
    ] {
        let (status, v) = server.get(&format!("/audit/state?{query}")).await;
        assert_eq!(status, 400, "{query}: {v}");
        assert!(v["msg"].as_str().unwrap().contains(needle), "{query}: {v}");
    }
}
