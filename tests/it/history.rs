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
        ok(
            &server,
            "/message/send",
            json!({"header": {"red_dot": 1}, "from_uid": "ann", "channel_id": "g", "channel_type": 2, "payload": b64(&format!("m{i}"))}),
        )
        .await;
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
    assert_eq!(
        (c["exists"].as_bool(), c["subscribers"].clone(), c["blacklist"].clone(), c["last_message_seq"].as_u64()),
        (Some(true), json!(["ann", "bob"]), json!([]), Some(3)),
        "{then}"
    );

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

/// Runs the `rookery` binary with arguments; returns (success, stdout, stderr).
fn rookery(args: &[&str], dir: &std::path::Path) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rookery")).args(args).arg("--data-dir").arg(dir).env("RUST_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// What a client or operator can read about the state, from one server.
async fn observable(s: &Server, head: u64) -> Vec<Value> {
    let mut seen = Vec::new();
    for q in ["channel_id=g&channel_type=2", "uid=ann", "uid=bob", "uid=cid"] {
        let mut v = state(s, &format!("at={head}&{q}")).await;
        v.as_object_mut().unwrap().remove("elapsed_ms");
        v.as_object_mut().unwrap().remove("from_snapshot");
        v.as_object_mut().unwrap().remove("events_replayed");
        seen.push(v);
    }
    for uid in ["ann", "bob", "cid"] {
        seen.push(s.post("/conversation/sync", &json!({"uid": uid, "msg_count": 5})).await.1);
        seen.push(s.post("/message/sync", &json!({"uid": uid, "limit": 100})).await.1);
    }
    seen.push(s.post("/channel/messagesync", &json!({"login_uid": "ann", "channel_id": "g", "channel_type": 2, "limit": 100})).await.1);
    seen.push(s.post("/channel/messagesync", &json!({"login_uid": "ann", "channel_id": "bob", "channel_type": 1, "limit": 100})).await.1);
    seen.push(s.get("/user/systemuids").await.1);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imported_into_an_empty_directory_gives_the_same_state_and_chain_head() {
    let original_dir = tempfile::tempdir().unwrap();
    let original = Server::start(original_dir.path(), &[]);
    ok(&original, "/user/token", json!({"uid": "ann", "token": "ta", "device_flag": 1, "device_level": 1})).await;
    ok(&original, "/user/systemuids_add", json!({"uids": ["robot"]})).await;
    ok(&original, "/channel", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann", "bob", "cid"]})).await;
    ok(&original, "/channel/blacklist_add", json!({"channel_id": "g", "channel_type": 2, "uids": ["eve"]})).await;
    for i in 0..40 {
        let from = ["ann", "bob", "cid"][i % 3];
        ok(&original, "/message/send", json!({"header": {"red_dot": 1}, "from_uid": from, "channel_id": "g", "channel_type": 2, "client_msg_no": format!("c{i}"), "payload": b64(&format!("group {i}"))})).await;
    }
    ok(&original, "/message/send", json!({"header": {"red_dot": 1}, "from_uid": "ann", "channel_id": "bob", "channel_type": 1, "payload": b64("hi bob")}))
        .await;
    ok(&original, "/message/send", json!({"header": {"sync_once": 1}, "from_uid": "ann", "channel_id": "g", "channel_type": 2, "payload": b64("command")}))
        .await;
    ok(&original, "/conversations/setUnread", json!({"uid": "cid", "channel_id": "g", "channel_type": 2, "unread": 2})).await;
    ok(&original, "/channel/subscriber_remove", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["cid"]})).await;
    let (_, head) = original.get("/audit/head").await;

    // Exported while the server runs on the directory.
    let file = original_dir.path().join("export.jsonl");
    let (done, _, err) = rookery(&["export", "--output", file.to_str().unwrap()], original_dir.path());
    assert!(done, "{err}");
    assert!(err.contains(&format!("chain head {} at position {}", head["hash"].as_str().unwrap(), head["position"])), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count() as u64, head["position"].as_u64().unwrap() + 1, "a header and one line per event");
    assert!(text.lines().nth(1).unwrap().contains("\"kind\":\"user.token_set\""), "{}", text.lines().nth(1).unwrap());

    let copy_dir = tempfile::tempdir().unwrap();
    let (done, out, err) = rookery(&["import", "--input", file.to_str().unwrap()], copy_dir.path());
    assert!(done, "{out}{err}");
    assert!(out.contains(&format!("chain head {} at position {}", head["hash"].as_str().unwrap(), head["position"])), "{out}");
    let (done, out, err) = rookery(&["verify"], copy_dir.path());
    assert!(done && out.contains(head["hash"].as_str().unwrap()), "{out}{err}");
    let (done, out) = crate::support::verify(copy_dir.path());
    assert!(done, "{out}");

    // Importing again on top is refused and changes nothing.
    let (done, _, err) = rookery(&["import", "--input", file.to_str().unwrap()], copy_dir.path());
    assert!(!done && err.contains("empty data directory"), "{err}");

    let copy = Server::start(copy_dir.path(), &[]);
    let p = head["position"].as_u64().unwrap();
    assert_eq!(copy.get("/audit/head").await.1, head);
    let seen = observable(&original, p).await;
    assert_eq!(seen[0]["channel"]["subscribers"], json!(["ann", "bob"]), "{}", seen[0]);
    assert!(seen[4].as_array().is_some_and(|c| c.len() == 2), "ann has two conversations: {}", seen[4]);
    assert!(seen[7].as_array().is_some_and(|c| c.len() == 1), "bob has the command queued: {}", seen[7]);
    assert_eq!(seen[10]["messages"].as_array().map(Vec::len), Some(40), "{}", seen[10]);
    assert_eq!(observable(&copy, p).await, seen);

    // The copy keeps going where the original was: the next group message gets seq 41 in both.
    for s in [&original, &copy] {
        let (_, v) =
            s.post("/message/send", &json!({"from_uid": "ann", "channel_id": "g", "channel_type": 2, "client_msg_no": "c0", "payload": b64("retry")})).await;
        assert_eq!(v["message_seq"], 1, "the retried client_msg_no is found through the imported index: {v}");
        let (_, v) = s.post("/message/send", &json!({"from_uid": "ann", "channel_id": "g", "channel_type": 2, "payload": b64("next")})).await;
        assert_eq!(v["message_seq"], 41, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_since_a_position_or_time_holds_only_later_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    ok(&server, "/channel", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann"]})).await;
    let first = head(&server).await;
    let at = state(&server, &format!("at={first}&uid=ann")).await["at"]["recorded_at"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    ok(&server, "/message/send", json!({"from_uid": "ann", "channel_id": "g", "channel_type": 2, "payload": b64("later")})).await;
    let last = head(&server).await;
    for since in [(first + 1).to_string(), at] {
        let (done, out, err) = rookery(&["export", "--since", &since], dir.path());
        assert!(done, "{err}");
        let positions: Vec<u64> = out.lines().skip(1).map(|l| serde_json::from_str::<Value>(l).unwrap()["position"].as_u64().unwrap()).collect();
        assert_eq!(positions, (first + 1..=last).collect::<Vec<_>>(), "--since {since}");
    }
    let (done, _, err) = rookery(&["export", "--since", "last tuesday"], dir.path());
    assert!(!done && err.contains("RFC 3339"), "{err}");
}

/// Whether any file under `dir` contains `needle`.
fn on_disk(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            on_disk(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_users_payloads_is_audited_and_the_chain_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    ok(&server, "/channel", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann", "bob"]})).await;
    // A secret no other byte sequence in the data directory could contain.
    let secret = format!("ann-secret-{}", uuid_like());
    let kept = format!("bob-keeps-{}", uuid_like());
    for i in 0..3 {
        ok(&server, "/message/send", json!({"from_uid": "ann", "channel_id": "g", "channel_type": 2, "payload": b64(&format!("{secret}-{i}"))})).await;
        ok(&server, "/message/send", json!({"from_uid": "bob", "channel_id": "g", "channel_type": 2, "payload": b64(&format!("bob {i}"))})).await;
    }
    ok(&server, "/message/send", json!({"from_uid": "ann", "channel_id": "bob", "channel_type": 1, "payload": b64(&format!("{secret}-dm"))})).await;
    ok(&server, "/message/send", json!({"from_uid": "bob", "channel_id": "ann", "channel_type": 1, "payload": b64(&kept)})).await;
    assert!(on_disk(dir.path(), secret.as_bytes()), "the payload is on disk before the erasure");

    for (body, needle) in [
        (json!({"reason": "r"}), "uid is required"),
        (json!({"uid": "ann"}), "reason is required"),
        (json!({"uid": "ann", "reason": "r", "channel_type": 2}), "channel_type without channel_id"),
        (json!({"uid": "ann", "reason": "r", "channel_id": "nope", "channel_type": 2}), "no stored messages"),
        (json!({"uid": "ann", "reason": "r", "extra": 1}), "unknown field"),
    ] {
        let (status, v) = server.post("/audit/erase", &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v["msg"].as_str().unwrap().contains(needle), "{body}: {v}");
    }

    let (status, v) = server.post("/audit/erase", &json!({"uid": "ann", "reason": "ticket 42"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["erased"], 4, "{v}");
    assert_eq!(v["channels"].as_array().unwrap().len(), 2, "the group and the person channel: {v}");

    let (_, page) = server.post("/channel/messagesync", &json!({"login_uid": "bob", "channel_id": "g", "channel_type": 2, "limit": 10})).await;
    let payloads: Vec<(String, String)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["from_uid"].as_str().unwrap().to_string(), m["payload"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(payloads.len(), 6);
    for (from, payload) in &payloads {
        assert_eq!(payload.is_empty(), from == "ann", "{payloads:?}");
    }
    let (_, dm) = server.post("/channel/messagesync", &json!({"login_uid": "bob", "channel_id": "ann", "channel_type": 1, "limit": 10})).await;
    assert_eq!(dm["messages"][0]["payload"], "", "{dm}");
    assert_eq!(dm["messages"][1]["payload"], b64(&kept), "{dm}");

    // The chain still verifies, live and offline; the erasure itself is in the log and in exports.
    let (done, out, err) = rookery(&["verify"], dir.path());
    assert!(done, "{out}{err}");
    let (done, out, err) = rookery(&["export"], dir.path());
    assert!(done, "{err}");
    assert_eq!(out.matches("\"kind\":\"channel.payloads_erased\"").count(), 2, "one event per channel");
    assert!(!on_disk(dir.path(), secret.as_bytes()), "the erased payload bytes are gone from the data directory");
    assert!(on_disk(dir.path(), kept.as_bytes()), "other payloads are still there (so the check above can see payloads)");
}

/// 16 random letters from `g` to `v`. Not hex digits: every REST send's generated client_msg_no is a
/// hex UUID, and LZ4 in the table files would encode a four-character run of `kept` that also occurs
/// in one of those as a back-reference, so the bytes would no longer be found verbatim on disk.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let bits = nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..16).map(|i| char::from(b'g' + ((bits >> (4 * i)) & 0xF) as u8)).collect()
}
