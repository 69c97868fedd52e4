//! The REST API over HTTP: every route of issue 3 except conversations, the send permission rules,
//! history paging, the write-spread command queue, the manager token, and a SIGKILL restart.
//!
//! "Bad input changes nothing" is checked two ways: the log head (monitor `/varz`) does not move, and
//! `no_persist` probe sends (permission-checked but never stored) still get the same answers.

use serde_json::{json, Value};

use crate::support::{b64, verify, Server};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// POSTs and asserts `{"status":200}`.
async fn post_ok(s: &Server, path: &str, body: Value) {
    let (status, v) = s.post(path, &body).await;
    assert_eq!((status, &v), (200, &json!({"status": 200})), "POST {path} {body}");
}

/// POSTs and asserts an HTTP error with a JSON body whose `msg` contains `needle`.
async fn post_err(s: &Server, path: &str, body: Value, want: u16, needle: &str) {
    let (status, v) = s.post(path, &body).await;
    assert_eq!(status, want, "POST {path} {body} answered {v}");
    assert_eq!(v["status"], want, "error body carries the status: {v}");
    let msg = v["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "POST {path} {body}: message {msg:?} should mention {needle:?}");
}

/// A raw-body POST that must be refused with 400.
async fn raw_err(s: &Server, path: &str, body: &str, needle: &str) {
    let (status, v) = s.post_raw(path, body).await;
    assert_eq!(status, 400, "POST {path} {body} answered {v}");
    assert!(v["msg"].as_str().unwrap_or_default().contains(needle), "POST {path} {body}: {v}");
}

/// Sends a message; returns HTTP status and body.
async fn send(s: &Server, from: &str, channel: &str, ty: u8, text: &str, header: Value) -> (u16, Value) {
    s.post("/message/send", &json!({"from_uid": from, "channel_id": channel, "channel_type": ty, "payload": b64(text), "header": header})).await
}

/// Sends and asserts success; returns the message_seq.
async fn send_ok(s: &Server, from: &str, channel: &str, ty: u8, text: &str) -> u64 {
    let (status, v) = send(s, from, channel, ty, text, json!({"red_dot": 1})).await;
    assert_eq!(status, 200, "{from} -> {channel}: {v}");
    v["message_seq"].as_u64().expect("message_seq")
}

/// Whether `from` may send into the channel: a `no_persist` send is checked but never stored, so
/// probing changes nothing. Returns the HTTP status.
async fn probe(s: &Server, from: &str, channel: &str, ty: u8) -> u16 {
    send(s, from, channel, ty, "probe", json!({"no_persist": 1})).await.0
}

/// The event log's head position, from the monitor.
async fn log_position(s: &Server) -> u64 {
    let v: Value = s.client().get(format!("http://{}/varz", s.monitor)).send().await.expect("varz").json().await.expect("varz json");
    v["log_position"].as_u64().expect("log_position")
}

/// The seqs of a messagesync page.
fn seqs(page: &Value) -> Vec<u64> {
    page["messages"].as_array().expect("messages").iter().map(|m| m["message_seq"].as_u64().expect("seq")).collect()
}

async fn history(s: &Server, login: &str, channel: &str, ty: u8, extra: Value) -> Value {
    let mut body = json!({"login_uid": login, "channel_id": channel, "channel_type": ty});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    let (status, v) = s.post("/channel/messagesync", &body).await;
    assert_eq!(status, 200, "{body}: {v}");
    v
}

async fn command_sync(s: &Server, uid: &str, limit: Option<i64>) -> Vec<Value> {
    let mut body = json!({"uid": uid});
    if let Some(l) = limit {
        body["limit"] = json!(l);
    }
    let (status, v) = s.post("/message/sync", &body).await;
    assert_eq!(status, 200, "{v}");
    v.as_array().expect("array").clone()
}

fn payload_texts(messages: &[Value]) -> Vec<String> {
    use base64::Engine;
    messages
        .iter()
        .map(|m| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(m["payload"].as_str().expect("payload")).expect("base64")).expect("utf8"))
        .collect()
}

/// Changes a list of group "g".
async fn group_list(s: &Server, path: &str, uids: Value) {
    post_ok(s, path, json!({"channel_id": "g", "channel_type": 2, "uids": uids})).await;
}

/// Creates a group with subscribers.
async fn group(s: &Server, id: &str, subscribers: &[&str]) {
    post_ok(s, "/channel", json!({"channel_id": id, "channel_type": 2, "subscribers": subscribers})).await;
}

// ---------------------------------------------------------------------------------------------
// Routing, users, system uids
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_answers_configured_or_listener_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let (status, v) = s.get("/route?uid=u1").await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"tcp_addr": "127.0.0.1:0", "ws_addr": "ws://127.0.0.1:0", "wss_addr": ""}), "defaults are the listener addresses");
    let (status, v) = s.get("/route").await;
    assert_eq!((status, v["msg"].as_str().unwrap()), (400, "uid is required"));
    let (status, _) = s.get("/route?uid=a%40b").await;
    assert_eq!(status, 400, "uids containing @ are refused");
    drop(s);

    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("ROOKERY_EXTERNAL_TCP_ADDR", "im.example.com:5100"),
        ("ROOKERY_EXTERNAL_WS_ADDR", "ws://im.example.com:5200"),
        ("ROOKERY_EXTERNAL_WSS_ADDR", "wss://im.example.com"),
    ];
    let s = Server::start(dir.path(), &env);
    let want = json!({"tcp_addr": "im.example.com:5100", "ws_addr": "ws://im.example.com:5200", "wss_addr": "wss://im.example.com"});
    let (status, v) = s.get("/route?uid=u1&intranet=0").await;
    assert_eq!((status, &v), (200, &want));
    let (status, v) = s.post("/route/batch", &json!(["u1", "u2"])).await;
    assert_eq!(status, 200);
    let mut group = want.clone();
    group["uids"] = json!(["u1", "u2"]);
    assert_eq!(v, json!([group]));
    raw_err(&s, "/route/batch", "{\"uids\": 1}", "malformed json body").await;
    post_err(&s, "/route/batch", json!(["ok", ""]), 400, "uid must not be empty").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_token_and_device_quit_validate_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    post_ok(&s, "/user/token", json!({"uid": "u1", "token": "t1", "device_flag": 0, "device_level": 1})).await;
    post_ok(&s, "/user/token", json!({"uid": "u1", "token": "t2", "device_flag": 1, "device_level": 0})).await;
    post_ok(&s, "/user/device_quit", json!({"uid": "u1", "device_flag": 1})).await;
    post_ok(&s, "/user/device_quit", json!({"uid": "u1", "device_flag": -1})).await;

    let before = log_position(&s).await;
    post_err(&s, "/user/token", json!({"token": "t"}), 400, "uid is required").await;
    post_err(&s, "/user/token", json!({"uid": "", "token": "t"}), 400, "uid must not be empty").await;
    post_err(&s, "/user/token", json!({"uid": "a@b", "token": "t"}), 400, "uid must not contain").await;
    post_err(&s, "/user/token", json!({"uid": "a#b", "token": "t"}), 400, "uid must not contain").await;
    post_err(&s, "/user/token", json!({"uid": "____system", "token": "t"}), 400, "system uid").await;
    post_err(&s, "/user/token", json!({"uid": "u1"}), 400, "token is required").await;
    post_err(&s, "/user/token", json!({"uid": "u1", "token": ""}), 400, "token is required").await;
    post_err(&s, "/user/token", json!({"uid": "u1", "token": "t", "device_flag": 7}), 400, "device_flag").await;
    post_err(&s, "/user/token", json!({"uid": "u1", "token": "t", "device_flag": -1}), 400, "device_flag").await;
    post_err(&s, "/user/token", json!({"uid": "u1", "token": "t", "device_level": 2}), 400, "device_level").await;
    // Unknown fields are ignored (WuKongIM does), so a misspelt required field reads as a missing one.
    post_err(&s, "/user/token", json!({"uidd": "u1", "token": "t"}), 400, "uid is required").await;
    raw_err(&s, "/user/token", "{\"uid\": \"u1\",", "malformed json body").await;
    raw_err(&s, "/user/token", " ", "malformed json body").await;
    post_err(&s, "/user/device_quit", json!({"uid": "u1"}), 400, "device_flag is required").await;
    post_err(&s, "/user/device_quit", json!({"uid": "u1", "device_flag": 3}), 400, "device_flag").await;
    post_err(&s, "/user/device_quit", json!({"device_flag": 0}), 400, "uid is required").await;
    assert_eq!(log_position(&s).await, before, "refused requests wrote nothing");

    // A banned user gets v2's answer: HTTP 200 with reason code 19, and nothing is stored.
    post_ok(&s, "/channel/info", json!({"channel_id": "banned", "channel_type": 1, "ban": 1})).await;
    let before = log_position(&s).await;
    let (status, v) = s.post("/user/token", &json!({"uid": "banned", "token": "t"})).await;
    assert_eq!((status, v["status"].as_u64()), (200, Some(19)), "{v}");
    assert_eq!(log_position(&s).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onlinestatus_lists_online_sessions_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    post_ok(&s, "/user/token", json!({"uid": "u1", "token": "t1"})).await;
    let (status, v) = s.post("/user/onlinestatus", &json!(["u1", "u2"])).await;
    assert_eq!((status, v), (200, json!([])), "no gateway yet, so nobody is online");
    let (status, v) = s.post("/user/onlinestatus", &json!([])).await;
    assert_eq!((status, v), (200, json!([])));
    raw_err(&s, "/user/onlinestatus", "{\"uid\":\"u1\"}", "malformed json body").await;
    post_err(&s, "/user/onlinestatus", json!(["a&b"]), 400, "uids must not contain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_uids_are_managed_on_both_paths_and_bypass_send_rules() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let (status, v) = s.get("/user/systemuids").await;
    assert_eq!((status, v), (200, json!([])), "the built-in ____system is not listed");

    post_ok(&s, "/user/systemuids_add", json!({"uids": ["bot", "notice"]})).await;
    post_ok(&s, "/systemuids_add", json!({"uids": ["legacy"]})).await;
    assert_eq!(s.get("/user/systemuids").await.1, json!(["bot", "legacy", "notice"]));
    post_ok(&s, "/systemuids_remove", json!({"uids": ["notice"]})).await;
    post_ok(&s, "/user/systemuids_remove", json!({"uids": ["legacy", "never-added"]})).await;
    assert_eq!(s.get("/user/systemuids").await.1, json!(["bot"]));

    let before = log_position(&s).await;
    post_err(&s, "/user/systemuids_add", json!({"uids": []}), 400, "uids must not be empty").await;
    post_err(&s, "/user/systemuids_add", json!({}), 400, "uids must not be empty").await;
    post_err(&s, "/user/systemuids_add", json!({"uids": ["ok", "a@b"]}), 400, "uids must not contain").await;
    post_err(&s, "/systemuids_remove", json!({"uids": [""]}), 400, "uids must not be empty").await;
    raw_err(&s, "/user/systemuids_add", "[\"bot\"]", "malformed json body").await;
    assert_eq!(log_position(&s).await, before);
    assert_eq!(s.get("/user/systemuids").await.1, json!(["bot"]));

    // A system uid may send into a group it does not belong to, past the lists; a normal user may not.
    group(&s, "g", &["m1"]).await;
    post_ok(&s, "/channel/blacklist_add", json!({"channel_id": "g", "channel_type": 2, "uids": ["bot"]})).await;
    post_ok(&s, "/channel/whitelist_add", json!({"channel_id": "g", "channel_type": 2, "uids": ["m1"]})).await;
    assert_eq!(send_ok(&s, "bot", "g", 2, "announcement").await, 1);
    assert_eq!(send_ok(&s, "____system", "g", 2, "from the built-in account").await, 2);
    assert_eq!(probe(&s, "stranger", "g", 2).await, 403);
    // ...and a user blocked by a person-channel list can still be reached by a system uid.
    post_ok(&s, "/channel/blacklist_add", json!({"channel_id": "alice", "channel_type": 1, "uids": ["bot", "eve"]})).await;
    assert_eq!(probe(&s, "bot", "alice", 1).await, 200);
    assert_eq!(probe(&s, "eve", "alice", 1).await, 403);
    // Removing the system uid makes the rules apply again.
    post_ok(&s, "/user/systemuids_remove", json!({"uids": ["bot"]})).await;
    assert_eq!(probe(&s, "bot", "g", 2).await, 403);
    assert_eq!(probe(&s, "bot", "alice", 1).await, 403);
}

// ---------------------------------------------------------------------------------------------
// Channels, subscribers, lists, permissions
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_and_subscribers_decide_who_may_send() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // Sending into a group that was never created: 404.
    let (status, v) = send(&s, "u1", "g1", 2, "hello", json!({})).await;
    assert_eq!(status, 404, "{v}");

    group(&s, "g1", &["u1", "u2"]).await;
    assert_eq!(send_ok(&s, "u1", "g1", 2, "one").await, 1);
    assert_eq!(probe(&s, "u3", "g1", 2).await, 403, "non-subscribers may not send");

    // subscriber_add: channel_type 0 means group; adding creates nothing twice.
    post_ok(&s, "/channel/subscriber_add", json!({"channel_id": "g1", "channel_type": 0, "subscribers": ["u3"]})).await;
    assert_eq!(probe(&s, "u3", "g1", 2).await, 200);
    post_ok(&s, "/channel/subscriber_remove", json!({"channel_id": "g1", "channel_type": 2, "subscribers": ["u1"]})).await;
    assert_eq!(probe(&s, "u1", "g1", 2).await, 403);
    // reset replaces the set.
    post_ok(&s, "/channel/subscriber_add", json!({"channel_id": "g1", "channel_type": 2, "reset": 1, "subscribers": ["u9"]})).await;
    assert_eq!((probe(&s, "u9", "g1", 2).await, probe(&s, "u2", "g1", 2).await, probe(&s, "u3", "g1", 2).await), (200, 403, 403));
    // subscriber_add creates a missing channel.
    post_ok(&s, "/channel/subscriber_add", json!({"channel_id": "g2", "subscribers": ["a"]})).await;
    assert_eq!(probe(&s, "a", "g2", 2).await, 200);
    // /channel without reset adds; with reset replaces (v2 semantics).
    post_ok(&s, "/channel", json!({"channel_id": "g2", "channel_type": 2, "subscribers": ["b"]})).await;
    assert_eq!((probe(&s, "a", "g2", 2).await, probe(&s, "b", "g2", 2).await), (200, 200));
    post_ok(&s, "/channel", json!({"channel_id": "g2", "channel_type": 2, "subscribers": ["c"], "reset": 1})).await;
    assert_eq!((probe(&s, "a", "g2", 2).await, probe(&s, "c", "g2", 2).await), (403, 200));

    // Flags: ban stops everyone but system uids; send_ban stops members; disband stops all.
    post_ok(&s, "/channel/info", json!({"channel_id": "g2", "channel_type": 2, "ban": 1})).await;
    assert_eq!((probe(&s, "c", "g2", 2).await, probe(&s, "____system", "g2", 2).await), (403, 200));
    post_ok(&s, "/channel/info", json!({"channel_id": "g2", "channel_type": 2, "send_ban": 1})).await;
    assert_eq!(probe(&s, "c", "g2", 2).await, 403);
    post_ok(&s, "/channel/info", json!({"channel_id": "g2", "channel_type": 2})).await;
    assert_eq!(probe(&s, "c", "g2", 2).await, 200, "/channel/info replaces every flag (absent = 0)");
    post_ok(&s, "/channel/info", json!({"channel_id": "g2", "channel_type": 2, "disband": 1})).await;
    assert_eq!((probe(&s, "c", "g2", 2).await, probe(&s, "____system", "g2", 2).await), (410, 410));
    // A user's own person channel with send_ban: that user cannot send anywhere.
    post_ok(&s, "/channel", json!({"channel_id": "u9", "channel_type": 1, "send_ban": 1})).await;
    assert_eq!((probe(&s, "u9", "g1", 2).await, probe(&s, "u9", "friend", 1).await), (403, 403));

    // Delete: sends are refused afterwards; deleting again, or a channel that never existed, is fine.
    post_ok(&s, "/channel/delete", json!({"channel_id": "g1", "channel_type": 2})).await;
    assert_eq!(probe(&s, "u2", "g1", 2).await, 410);
    post_ok(&s, "/channel/delete", json!({"channel_id": "g1", "channel_type": 2})).await;
    post_ok(&s, "/channel/delete", json!({"channel_id": "never", "channel_type": 2})).await;
    // Re-creating a deleted channel starts with the new subscribers only; the append-only history
    // stays and its sequence continues.
    group(&s, "g1", &["n1"]).await;
    assert_eq!((probe(&s, "n1", "g1", 2).await, probe(&s, "u2", "g1", 2).await), (200, 403));
    assert_eq!(send_ok(&s, "n1", "g1", 2, "two").await, 2);
    assert_eq!(payload_texts(history(&s, "n1", "g1", 2, json!({})).await["messages"].as_array().unwrap()), ["one", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_channel_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    group(&s, "g", &["m1", "m2"]).await;
    post_ok(&s, "/channel/blacklist_add", json!({"channel_id": "g", "channel_type": 2, "uids": ["m2"]})).await;
    let before = log_position(&s).await;

    for path in ["/channel", "/channel/info", "/channel/delete", "/channel/subscriber_remove", "/channel/blacklist_add", "/channel/whitelist_set"] {
        let body = |fields: Value| {
            let mut b = match path {
                "/channel/subscriber_remove" => json!({"subscribers": ["m1"]}),
                p if p.contains("list") => json!({"uids": ["x"]}),
                _ => json!({}),
            };
            for (k, v) in fields.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        post_err(&s, path, body(json!({"channel_type": 2})), 400, "channel_id is required").await;
        post_err(&s, path, body(json!({"channel_id": "", "channel_type": 2})), 400, "channel_id must not be empty").await;
        post_err(&s, path, body(json!({"channel_id": "g@x", "channel_type": 2})), 400, "channel_id must not contain").await;
        post_err(&s, path, body(json!({"channel_id": "g"})), 400, "channel_type is required").await;
        post_err(&s, path, body(json!({"channel_id": "g", "channel_type": 99})), 400, "unknown channel_type 99").await;
        post_err(&s, path, body(json!({"channel_id": "g", "channel_type": -1})), 400, "unknown channel_type -1").await;
        post_err(&s, path, body(json!({"channel": "g", "channel_type": 2})), 400, "channel_id is required").await;
        raw_err(&s, path, "{\"channel_id\": \"g\"", "malformed json body").await;
        raw_err(&s, path, "not json", "malformed json body").await;
    }
    post_err(&s, "/channel", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ok", "b&d"]}), 400, "subscribers must not contain").await;
    post_err(&s, "/channel", json!({"channel_id": "g", "channel_type": 2, "ban": 2}), 400, "expected 0 or 1").await;
    post_err(&s, "/channel", json!({"channel_id": "p", "channel_type": 1, "subscribers": ["x"]}), 400, "cannot have subscribers").await;
    post_err(&s, "/channel/info", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["x"]}), 400, "takes no subscribers").await;
    post_err(&s, "/channel/delete", json!({"channel_id": "p", "channel_type": 1}), 400, "person channels cannot be deleted").await;
    post_err(&s, "/channel/subscriber_add", json!({"channel_id": "g", "channel_type": 2, "subscribers": []}), 400, "subscribers must not be empty").await;
    post_err(&s, "/channel/subscriber_add", json!({"channel_id": "g", "channel_type": 2}), 400, "subscribers must not be empty").await;
    post_err(&s, "/channel/subscriber_add", json!({"channel_id": "g", "channel_type": 2, "temp_subscriber": 1, "subscribers": ["t"]}), 400, "temp_subscriber")
        .await;
    post_err(&s, "/channel/subscriber_add", json!({"channel_id": "p", "channel_type": 1, "subscribers": ["t"]}), 400, "cannot have subscribers").await;
    post_err(&s, "/channel/subscriber_add", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["", "t"]}), 400, "subscribers must not be empty")
        .await;
    post_err(&s, "/channel/subscriber_remove", json!({"channel_id": "g", "channel_type": 2, "subscribers": []}), 400, "subscribers must not be empty").await;
    post_err(&s, "/channel/subscriber_remove", json!({"channel_id": "nope", "channel_type": 2, "subscribers": ["m1"]}), 404, "channel not found").await;
    for path in ["/channel/blacklist_add", "/channel/blacklist_remove", "/channel/whitelist_add", "/channel/whitelist_remove"] {
        post_err(&s, path, json!({"channel_id": "g", "channel_type": 2, "uids": []}), 400, "uids must not be empty").await;
        post_err(&s, path, json!({"channel_id": "g", "channel_type": 2}), 400, "uids must not be empty").await;
        post_err(&s, path, json!({"channel_id": "g", "channel_type": 2, "uids": ["x#y"]}), 400, "uids must not contain").await;
        post_err(&s, path, json!({"channel_id": "nope", "channel_type": 2, "uids": ["x"]}), 404, "channel not found").await;
    }
    post_err(&s, "/channel/blacklist_set", json!({"channel_id": "nope", "channel_type": 2, "uids": []}), 404, "channel not found").await;
    let (status, v) = s.get("/channel/whitelist?channel_id=g").await;
    assert_eq!((status, v["msg"].as_str()), (400, Some("channel_type is required")));
    let (status, _) = s.get("/channel/whitelist?channel_id=g&channel_type=abc").await;
    assert_eq!(status, 400);
    let (status, v) = s.post("/channel/nonsense", &json!({})).await;
    assert_eq!((status, v), (404, json!({"status": 404, "msg": "no such route"})));

    assert_eq!(log_position(&s).await, before, "refused requests wrote nothing");
    assert_eq!((probe(&s, "m1", "g", 2).await, probe(&s, "m2", "g", 2).await, probe(&s, "x", "g", 2).await), (200, 403, 403));
    assert_eq!(send_ok(&s, "m1", "g", 2, "still seq 1").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blacklists_and_whitelists_follow_the_send_rules() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    group(&s, "g", &["a", "b", "c"]).await;

    // The denylist wins over membership and the allowlist.
    group_list(&s, "/channel/blacklist_add", json!(["c"])).await;
    assert_eq!(probe(&s, "c", "g", 2).await, 403);
    let (status, v) = send(&s, "c", "g", 2, "x", json!({})).await;
    assert_eq!((status, v["msg"].as_str()), (403, Some("sender is on the blacklist")));
    group_list(&s, "/channel/blacklist_remove", json!(["c"])).await;
    assert_eq!(probe(&s, "c", "g", 2).await, 200);
    group_list(&s, "/channel/blacklist_set", json!(["a", "b"])).await;
    assert_eq!((probe(&s, "a", "g", 2).await, probe(&s, "b", "g", 2).await, probe(&s, "c", "g", 2).await), (403, 403, 200));
    group_list(&s, "/channel/blacklist_set", json!([])).await;
    assert_eq!(probe(&s, "a", "g", 2).await, 200, "an empty set clears the denylist");

    // A non-empty allowlist admits only its members (mute-all); members still need to subscribe.
    assert_eq!(s.get("/channel/whitelist?channel_id=g&channel_type=2").await, (200, json!([])));
    group_list(&s, "/channel/whitelist_add", json!(["b", "a", "outsider"])).await;
    assert_eq!(s.get("/channel/whitelist?channel_id=g&channel_type=2").await, (200, json!(["a", "b", "outsider"])));
    assert_eq!((probe(&s, "a", "g", 2).await, probe(&s, "c", "g", 2).await, probe(&s, "outsider", "g", 2).await), (200, 403, 403));
    let (_, v) = send(&s, "c", "g", 2, "x", json!({})).await;
    assert_eq!(v["msg"], "sender is not on the whitelist");
    group_list(&s, "/channel/whitelist_remove", json!(["a", "outsider"])).await;
    assert_eq!(s.get("/channel/whitelist?channel_id=g&channel_type=2").await.1, json!(["b"]));
    assert_eq!(probe(&s, "a", "g", 2).await, 403);
    group_list(&s, "/channel/whitelist_set", json!(["c"])).await;
    assert_eq!((probe(&s, "b", "g", 2).await, probe(&s, "c", "g", 2).await), (403, 200));
    group_list(&s, "/channel/whitelist_set", json!([])).await;
    assert_eq!((probe(&s, "a", "g", 2).await, probe(&s, "b", "g", 2).await), (200, 200));
    // A channel that does not exist has an empty allowlist (reading creates nothing).
    let before = log_position(&s).await;
    assert_eq!(s.get("/channel/whitelist?channel_id=nope&channel_type=2").await, (200, json!([])));
    assert_eq!(log_position(&s).await, before);

    // Person channels: the list belongs to the receiver. "bob blocks eve" stops eve -> bob only.
    post_ok(&s, "/channel/blacklist_add", json!({"channel_id": "bob", "channel_type": 1, "uids": ["eve"]})).await;
    let (status, v) = send(&s, "eve", "bob", 1, "hi", json!({})).await;
    assert_eq!((status, v["msg"].as_str()), (403, Some("sender is on the blacklist")));
    assert_eq!(probe(&s, "bob", "eve", 1).await, 200, "bob may still write to eve");
    assert_eq!(probe(&s, "alice", "bob", 1).await, 200);
    post_ok(&s, "/channel/blacklist_remove", json!({"channel_id": "bob", "channel_type": 1, "uids": ["eve"]})).await;
    assert_eq!(send_ok(&s, "eve", "bob", 1, "hi again").await, 1);
    // A person allowlist is stored and readable (personal allowlists are off, so it does not gate sends).
    post_ok(&s, "/channel/whitelist_add", json!({"channel_id": "bob", "channel_type": 1, "uids": ["alice"]})).await;
    assert_eq!(s.get("/channel/whitelist?channel_id=bob&channel_type=1").await.1, json!(["alice"]));
    assert_eq!(probe(&s, "eve", "bob", 1).await, 200);
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messagesync_follows_the_seed_001_boundary_rules() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    group(&s, "g", &["u1"]).await;
    // 120 messages, sent 12 at a time so they share commit groups.
    let (client, addr) = (s.client().clone(), s.api);
    for round in 0..10 {
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let body = json!({"from_uid": "u1", "channel_id": "g", "channel_type": 2, "payload": b64(&format!("m{}", round * 12 + i))});
                    client.post(format!("http://{addr}/message/send")).json(&body).send().await.expect("send").status().as_u16()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
    }
    let range = |a: u64, b: u64| (a..=b).collect::<Vec<u64>>();
    let page =
        |start: u64, end: u64, limit: i64, pull_mode: u8| json!({"start_message_seq": start, "end_message_seq": end, "limit": limit, "pull_mode": pull_mode});

    let v = history(&s, "u1", "g", 2, page(100, 200, 10, 1)).await;
    assert_eq!((seqs(&v), v["more"].as_u64()), (range(100, 109), Some(1)), "up 100/200/10");
    assert_eq!((v["start_message_seq"].as_u64(), v["end_message_seq"].as_u64()), (Some(100), Some(200)), "bounds are echoed");
    let v = history(&s, "u1", "g", 2, page(100, 105, 10, 1)).await;
    assert_eq!((seqs(&v), v["more"].as_u64()), (range(100, 104), Some(0)), "up 100/105/10");
    let v = history(&s, "u1", "g", 2, page(100, 50, 10, 0)).await;
    assert_eq!((seqs(&v), v["more"].as_u64()), (range(91, 100), Some(1)), "down 100/50/10");
    let v = history(&s, "u1", "g", 2, page(100, 95, 10, 0)).await;
    assert_eq!((seqs(&v), v["more"].as_u64()), (range(96, 100), Some(0)), "down 100/95/10");
    assert_eq!(seqs(&history(&s, "u1", "g", 2, page(100, 0, 10, 0)).await), range(91, 100), "down 100/0/10");
    assert_eq!(seqs(&history(&s, "u1", "g", 2, page(100, 0, 10, 1)).await), range(100, 109), "up 100/0/10");
    for mode in [0, 1] {
        let v = history(&s, "u1", "g", 2, page(0, 0, 10, mode)).await;
        assert_eq!((seqs(&v), v["more"].as_u64()), (range(111, 120), Some(1)), "both zero: the newest page whatever pull_mode says");
    }
    assert_eq!(seqs(&history(&s, "u1", "g", 2, page(0, 0, 0, 1)).await), range(21, 120), "limit 0 means 100");
    let v = history(&s, "u1", "g", 2, page(111, 0, 10, 1)).await;
    assert_eq!((seqs(&v), v["more"].as_u64()), (range(111, 120), Some(0)), "a full page with nothing behind it has more = 0 (v3)");
    let v = history(&s, "u1", "g", 2, page(50, 100, 10, 0)).await;
    assert_eq!(seqs(&v), Vec::<u64>::new(), "down with end above start is empty");
    let v = history(&s, "u1", "g", 2, page(200, 0, 10, 1)).await;
    assert_eq!((seqs(&v), v["more"].as_u64()), (vec![], Some(0)));
    // Messages are ascending and carry the message object fields.
    let v = history(&s, "u1", "g", 2, page(1, 2, 10, 1)).await;
    let m = &v["messages"][0];
    assert_eq!(
        (m["message_seq"].as_u64(), m["from_uid"].as_str(), m["channel_id"].as_str(), m["channel_type"].as_u64()),
        (Some(1), Some("u1"), Some("g"), Some(2))
    );
    assert_eq!(m["message_idstr"].as_str().unwrap(), m["message_id"].as_i64().unwrap().to_string());

    // The seed-000 form: both bounds exclusive, reverse = take the lowest seqs.
    let legacy = |min: u64, max: u64, reverse: Value| json!({"min_message_seq": min, "max_message_seq": max, "limit": 5, "reverse": reverse});
    let v = history(&s, "u1", "g", 2, legacy(0, 10, json!(true))).await;
    assert_eq!((seqs(&v), v["min_message_seq"].as_u64(), v["max_message_seq"].as_u64()), (range(1, 5), Some(0), Some(10)));
    assert_eq!(seqs(&history(&s, "u1", "g", 2, legacy(0, 10, json!(false))).await), range(5, 9));
    assert_eq!(seqs(&history(&s, "u1", "g", 2, legacy(0, 10, json!(1))).await), range(1, 5), "reverse as 0/1 too");

    // Bad paging input.
    for (body, needle) in [
        (json!({"login_uid": "u1", "channel_id": "g", "channel_type": 2, "limit": -1}), "limit must not be negative"),
        (json!({"login_uid": "u1", "channel_id": "g", "channel_type": 2, "limit": 10001}), "limit must be at most 10000"),
        (json!({"login_uid": "u1", "channel_id": "g", "channel_type": 2, "start_message_seq": -5}), "start_message_seq must not be negative"),
        (json!({"login_uid": "u1", "channel_id": "g", "channel_type": 2, "pull_mode": 2}), "pull_mode"),
        (json!({"channel_id": "g", "channel_type": 2}), "login_uid is required"),
        (json!({"login_uid": "u1", "channel_type": 2}), "channel_id is required"),
        (json!({"login_uid": "u1", "channel_id": "g", "channel_type": 13}), "unknown channel_type 13"),
    ] {
        post_err(&s, "/channel/messagesync", body, 400, needle).await;
    }
    let (status, v) = s.get("/channel/max_message_seq?channel_id=g&channel_type=2").await;
    assert_eq!((status, v), (200, json!({"message_seq": 120})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_channels_share_one_history_seen_from_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    assert_eq!(send_ok(&s, "alice", "bob", 1, "hi bob").await, 1);
    assert_eq!(send_ok(&s, "bob", "alice", 1, "hi alice").await, 2);
    assert_eq!(send_ok(&s, "alice", "bob", 1, "how are you").await, 3);

    let all = json!({"start_message_seq": 0, "end_message_seq": 0, "limit": 10});
    let alice = history(&s, "alice", "bob", 1, all.clone()).await;
    let bob = history(&s, "bob", "alice", 1, all.clone()).await;
    assert_eq!(seqs(&alice), vec![1, 2, 3]);
    assert_eq!(seqs(&bob), vec![1, 2, 3]);
    let ids = |page: &Value| page["messages"].as_array().unwrap().iter().map(|m| m["message_id"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(&alice), ids(&bob), "one stored history");
    for m in alice["messages"].as_array().unwrap() {
        assert_eq!(m["channel_id"], "bob", "alice sees bob as the channel: {m}");
    }
    for m in bob["messages"].as_array().unwrap() {
        assert_eq!(m["channel_id"], "alice", "bob sees alice as the channel: {m}");
    }
    assert_eq!(payload_texts(alice["messages"].as_array().unwrap()), ["hi bob", "hi alice", "how are you"]);
    // The internal id (CRC-32 order: bob@alice) is accepted when it includes the caller.
    assert_eq!(seqs(&history(&s, "alice", "bob@alice", 1, all.clone()).await), vec![1, 2, 3]);
    post_err(&s, "/channel/messagesync", json!({"login_uid": "carol", "channel_id": "bob@alice", "channel_type": 1}), 400, "does not include the calling uid")
        .await;
    assert_eq!(s.get("/channel/max_message_seq?channel_id=bob&channel_type=1&login_uid=alice").await.1, json!({"message_seq": 3}));
    assert_eq!(s.get("/channel/max_message_seq?channel_id=bob%40alice&channel_type=1").await.1, json!({"message_seq": 3}));
    // A third user has their own, empty, history with bob.
    assert_eq!(seqs(&history(&s, "carol", "bob", 1, all).await), Vec::<u64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_are_idempotent_no_persist_is_not_stored_and_bad_sends_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    group(&s, "g", &["u1"]).await;

    // A retry with the same client_msg_no gets the original id and seq.
    let body = json!({"from_uid": "u1", "channel_id": "g", "channel_type": 2, "client_msg_no": "c-1", "payload": b64("once")});
    let (status, first) = s.post("/message/send", &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!((first["message_seq"].as_u64(), first["client_msg_no"].as_str(), first["status"].as_u64()), (Some(1), Some("c-1"), Some(200)));
    assert_eq!(first["message_idstr"].as_str().unwrap(), first["message_id"].as_i64().unwrap().to_string());
    let (_, again) = s.post("/message/send", &body).await;
    assert_eq!((again["message_id"].clone(), again["message_seq"].clone()), (first["message_id"].clone(), first["message_seq"].clone()));

    // no_persist: delivered online only, seq 0, not in history; the next stored message is seq 2.
    let (status, v) = send(&s, "u1", "g", 2, "fleeting", json!({"no_persist": 1})).await;
    assert_eq!((status, v["message_seq"].as_u64()), (200, Some(0)), "{v}");
    assert!(v["message_id"].as_i64().unwrap() > 0, "no_persist messages still get an id");
    assert_eq!(send_ok(&s, "u1", "g", 2, "second").await, 2);
    let page = history(&s, "u1", "g", 2, json!({"limit": 10})).await;
    assert_eq!(payload_texts(page["messages"].as_array().unwrap()), ["once", "second"]);

    let before = log_position(&s).await;
    let base = json!({"from_uid": "u1", "channel_id": "g", "channel_type": 2, "payload": b64("x")});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    post_err(&s, "/message/send", with("payload", json!("%%% not base64")), 400, "payload is not valid base64").await;
    post_err(&s, "/message/send", with("payload", json!("")), 400, "payload must not be empty").await;
    post_err(&s, "/message/send", with("channel_type", json!(0)), 400, "channel_type is required").await;
    post_err(&s, "/message/send", with("channel_id", json!("g#1")), 400, "channel_id must not contain").await;
    post_err(&s, "/message/send", with("from_uid", json!("u@1")), 400, "from_uid must not contain").await;
    post_err(&s, "/message/send", with("subscribers", json!(["u1"])), 400, "subscribers").await;
    raw_err(&s, "/message/send", "{", "malformed json body").await;
    let (status, _) = s.post("/message/send", &with("payload", json!(b64(&"x".repeat(2 << 20))))).await;
    assert_eq!(status, 413, "payloads above max_payload_bytes are refused");
    assert_eq!(log_position(&s).await, before, "refused sends wrote nothing");
    assert_eq!(send_ok(&s, "u1", "g", 2, "third").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendbatch_sends_one_person_message_per_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    post_ok(&s, "/channel/blacklist_add", json!({"channel_id": "r3", "channel_type": 1, "uids": ["hq"]})).await;
    let (status, v) = s
        .post("/message/sendbatch", &json!({"header": {"red_dot": 1}, "from_uid": "hq", "subscribers": ["r1", "r2", "r3", "r1"], "payload": b64("notice")}))
        .await;
    assert_eq!((status, &v), (200, &json!({"fail_uids": ["r3"], "reason": ["sender is on the blacklist"]})));
    for r in ["r1", "r2"] {
        let page = history(&s, r, "hq", 1, json!({"limit": 10})).await;
        assert_eq!(seqs(&page), vec![1], "{r} got exactly one message (duplicates in the list are sent once)");
        assert_eq!(page["messages"][0]["channel_id"], "hq");
        assert_eq!(page["messages"][0]["header"]["red_dot"], 1);
    }
    assert_eq!(seqs(&history(&s, "r3", "hq", 1, json!({})).await), Vec::<u64>::new());
    let ids: Vec<Value> = [history(&s, "r1", "hq", 1, json!({})).await, history(&s, "r2", "hq", 1, json!({})).await]
        .iter()
        .map(|p| p["messages"][0]["client_msg_no"].clone())
        .collect();
    assert_ne!(ids[0], ids[1], "each recipient's message has its own client_msg_no");

    let before = log_position(&s).await;
    let base = json!({"from_uid": "hq", "subscribers": ["r1"], "payload": b64("x")});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    post_err(&s, "/message/sendbatch", with("from_uid", json!("")), 400, "from_uid is required").await;
    post_err(&s, "/message/sendbatch", with("from_uid", Value::Null), 400, "from_uid is required").await;
    post_err(&s, "/message/sendbatch", with("subscribers", json!([])), 400, "subscribers must not be empty").await;
    post_err(&s, "/message/sendbatch", with("subscribers", Value::Null), 400, "subscribers must not be empty").await;
    post_err(&s, "/message/sendbatch", with("subscribers", json!(["r1", "bad@id"])), 400, "subscribers must not contain").await;
    post_err(&s, "/message/sendbatch", with("payload", json!("***")), 400, "payload is not valid base64").await;
    post_err(&s, "/message/sendbatch", with("payload", Value::Null), 400, "payload is required").await;
    raw_err(&s, "/message/sendbatch", "\"text\"", "malformed json body").await;
    assert_eq!(log_position(&s).await, before, "a bad batch sends nothing, not even to the valid recipients");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_once_commands_come_back_from_message_sync_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    group(&s, "g", &["u1", "u2"]).await;
    let cmd = |text: &str| json!({"from_uid": "u1", "channel_id": "g", "channel_type": 2, "payload": b64(text), "header": {"sync_once": 1}});
    let (status, v) = s.post("/message/send", &cmd("c1")).await;
    assert_eq!((status, v["message_seq"].as_u64()), (200, Some(1)), "commands have their own sequence");
    assert_eq!(send_ok(&s, "u1", "g", 2, "ordinary").await, 1, "the ordinary sequence is separate");
    assert_eq!(payload_texts(history(&s, "u2", "g", 2, json!({})).await["messages"].as_array().unwrap()), ["ordinary"], "commands are not in messagesync");

    // Not a member: nothing queued, and an ack with no preceding sync is a no-op.
    assert!(command_sync(&s, "u3", None).await.is_empty());
    post_ok(&s, "/message/syncack", json!({"uid": "u3", "last_message_seq": 1})).await;
    let before = log_position(&s).await;
    post_ok(&s, "/message/syncack", json!({"uid": "u2", "last_message_seq": 1})).await;
    assert_eq!(log_position(&s).await, before, "ack without sync changes nothing");

    let got = command_sync(&s, "u2", None).await;
    assert_eq!(payload_texts(&got), ["c1"]);
    assert_eq!((got[0]["channel_id"].as_str(), got[0]["header"]["sync_once"].as_u64(), got[0]["from_uid"].as_str()), (Some("g"), Some(1), Some("u1")));
    // Syncing again without an ack offers the same commands.
    assert_eq!(payload_texts(&command_sync(&s, "u2", None).await), ["c1"]);
    // A command that arrives after the sync is not acknowledged by the ack of that sync.
    s.post("/message/send", &cmd("c2")).await;
    post_err(&s, "/message/syncack", json!({"uid": "u2", "last_message_seq": 0}), 400, "last_message_seq").await;
    post_err(&s, "/message/syncack", json!({"uid": "u2"}), 400, "last_message_seq").await;
    post_err(&s, "/message/syncack", json!({"uid": "u2", "last_message_seq": -3}), 400, "last_message_seq").await;
    post_err(&s, "/message/syncack", json!({"last_message_seq": 1}), 400, "uid is required").await;
    post_ok(&s, "/message/syncack", json!({"uid": "u2", "last_message_seq": 1})).await;
    assert_eq!(payload_texts(&command_sync(&s, "u2", None).await), ["c2"]);
    // The sender's own queue is independent.
    assert_eq!(payload_texts(&command_sync(&s, "u1", None).await), ["c1", "c2"]);

    // limit bounds one sync, and the ack covers exactly what was returned.
    for text in ["c3", "c4"] {
        s.post("/message/send", &cmd(text)).await;
    }
    assert_eq!(payload_texts(&command_sync(&s, "u1", Some(3)).await), ["c1", "c2", "c3"]);
    post_ok(&s, "/message/syncack", json!({"uid": "u1", "last_message_seq": 3})).await;
    assert_eq!(payload_texts(&command_sync(&s, "u1", None).await), ["c4"]);
    for (body, needle) in [
        (json!({"uid": "u1", "limit": -1}), "limit must not be negative"),
        (json!({"uid": "u1", "limit": 10001}), "limit must be at most 10000"),
        (json!({"limit": 1}), "uid is required"),
        (json!({"uid": "a@b"}), "uid must not contain"),
    ] {
        post_err(&s, "/message/sync", body, 400, needle).await;
    }

    // Person commands: each side sees the other as channel_id; no_persist commands are not queued.
    let (status, _) = s
        .post("/message/send", &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": b64("typing"), "header": {"sync_once": 1}}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .post(
            "/message/send",
            &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": b64("online only"), "header": {"sync_once": 1, "no_persist": 1}}),
        )
        .await;
    assert_eq!(status, 200);
    let bob = command_sync(&s, "bob", None).await;
    assert_eq!((payload_texts(&bob), bob[0]["channel_id"].as_str()), (vec!["typing".to_owned()], Some("alice")));
    assert_eq!(command_sync(&s, "alice", None).await[0]["channel_id"], "bob");
}

// ---------------------------------------------------------------------------------------------
// Security
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_token_is_required_on_every_route_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[("ROOKERY_MANAGER_TOKEN", "secret")]);
    let start = log_position(&s).await;
    let url = |p: &str| format!("http://{}{p}", s.api);
    let body = json!({"channel_id": "g", "channel_type": 2, "subscribers": ["u1"]});
    for token in [None, Some("wrong"), Some(""), Some("secret-but-longer")] {
        let mut req = s.client().post(url("/channel")).json(&body);
        if let Some(t) = token {
            req = req.header("token", t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "token {token:?}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["status"], 401);
        let resp = s.client().get(url("/user/systemuids")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let resp = s.client().get(url("/no/such/route")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "unknown paths are not revealed without the token");
    }
    assert_eq!(log_position(&s).await, start, "unauthorised requests wrote nothing");
    let resp = s.client().post(url("/channel")).header("token", "secret").json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = s.client().get(url("/channel/whitelist?channel_id=g&channel_type=2")).header("token", "secret").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = s.client().get(url("/no/such/route")).header("token", "secret").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": 404, "msg": "no such route"}));
}

// ---------------------------------------------------------------------------------------------
// Durability
// ---------------------------------------------------------------------------------------------

/// Everything the REST API can read back about the state the restart test builds, plus the answers
/// of `no_persist` permission probes (which change nothing).
async fn observe(s: &Server) -> Value {
    let all = json!({"start_message_seq": 0, "end_message_seq": 0, "limit": 100});
    let mut probes = serde_json::Map::new();
    for (from, channel, ty) in [
        ("a", "g1", 2),
        ("b", "g1", 2),
        ("c", "g1", 2),
        ("d", "g1", 2),
        ("x", "g1", 2),
        ("bot", "g1", 2),
        ("eve", "bob", 1),
        ("alice", "bob", 1),
        ("m", "g2", 2),
    ] {
        probes.insert(format!("{from}->{channel}"), json!(probe(s, from, channel, ty).await));
    }
    json!({
        "system_uids": s.get("/user/systemuids").await.1,
        "g1_whitelist": s.get("/channel/whitelist?channel_id=g1&channel_type=2").await.1,
        "bob_whitelist": s.get("/channel/whitelist?channel_id=bob&channel_type=1").await.1,
        "g1_history": history(s, "a", "g1", 2, all.clone()).await,
        "person_history": history(s, "bob", "alice", 1, all).await,
        "g1_max": s.get("/channel/max_message_seq?channel_id=g1&channel_type=2").await.1,
        "queue_a": command_sync(s, "a", None).await,
        "queue_b": command_sync(s, "b", None).await,
        "queue_bob": command_sync(s, "bob", None).await,
        "probes": probes,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_keep_every_piece_of_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &[]);
    post_ok(&s, "/user/systemuids_add", json!({"uids": ["bot", "gone"]})).await;
    post_ok(&s, "/user/systemuids_remove", json!({"uids": ["gone"]})).await;
    group(&s, "g1", &["a", "b", "c", "d", "e"]).await;
    post_ok(&s, "/channel/subscriber_remove", json!({"channel_id": "g1", "channel_type": 2, "subscribers": ["e"]})).await;
    post_ok(&s, "/channel/blacklist_add", json!({"channel_id": "g1", "channel_type": 2, "uids": ["c"]})).await;
    post_ok(&s, "/channel/whitelist_set", json!({"channel_id": "g1", "channel_type": 2, "uids": ["a", "b", "c"]})).await;
    post_ok(&s, "/channel/blacklist_add", json!({"channel_id": "bob", "channel_type": 1, "uids": ["eve"]})).await;
    post_ok(&s, "/channel/whitelist_add", json!({"channel_id": "bob", "channel_type": 1, "uids": ["alice"]})).await;
    group(&s, "g2", &["m"]).await;
    post_ok(&s, "/channel/info", json!({"channel_id": "g2", "channel_type": 2, "send_ban": 1})).await;
    post_ok(&s, "/user/token", json!({"uid": "a", "token": "ta", "device_flag": 0, "device_level": 1})).await;
    for i in 0..5 {
        send_ok(&s, "a", "g1", 2, &format!("group {i}")).await;
    }
    send_ok(&s, "alice", "bob", 1, "hello").await;
    send_ok(&s, "bob", "alice", 1, "hello yourself").await;
    // Write-spread queues: three commands; "a" acknowledges the first, "b" none.
    for text in ["cmd1", "cmd2"] {
        let (status, _) =
            s.post("/message/send", &json!({"from_uid": "a", "channel_id": "g1", "channel_type": 2, "payload": b64(text), "header": {"sync_once": 1}})).await;
        assert_eq!(status, 200);
    }
    assert_eq!(command_sync(&s, "a", Some(1)).await.len(), 1);
    post_ok(&s, "/message/syncack", json!({"uid": "a", "last_message_seq": 1})).await;
    let (status, _) = s
        .post("/message/send", &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": b64("cmd3"), "header": {"sync_once": 1}}))
        .await;
    assert_eq!(status, 200);

    let before = observe(&s).await;
    assert_eq!(payload_texts(before["queue_a"].as_array().unwrap()), ["cmd2"]);
    assert_eq!(payload_texts(before["queue_b"].as_array().unwrap()), ["cmd1", "cmd2"]);
    assert_eq!(
        before["probes"],
        json!({"a->g1": 200, "b->g1": 200, "c->g1": 403, "d->g1": 403, "x->g1": 403, "bot->g1": 200, "eve->bob": 403, "alice->bob": 200, "m->g2": 403})
    );
    assert_eq!(before["g1_max"], json!({"message_seq": 5}));

    s.kill9();
    let mut s = Server::start(dir.path(), &[]);
    let after = observe(&s).await;
    assert_eq!(after, before, "state after SIGKILL and restart");
    // The sequences continue where they were.
    assert_eq!(send_ok(&s, "a", "g1", 2, "after restart").await, 6);
    s.stop();
    let (ok, out) = verify(dir.path());
    assert!(ok, "replay --verify failed: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn varz_counts_commit_groups_and_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    for i in 0..3 {
        post_ok(&s, "/user/token", json!({"uid": format!("u{i}"), "token": "t", "device_flag": 0, "device_level": 1})).await;
    }
    let v: Value = s.client().get(format!("http://{}/varz", s.monitor)).send().await.expect("varz").json().await.expect("varz json");
    let (groups, records, syncs) =
        (v["log_groups"].as_u64().expect("groups"), v["log_records"].as_u64().expect("records"), v["log_syncs"].as_u64().expect("syncs"));
    // Three durable mutations since start: at least one record each, grouped, every group synced.
    assert!(records >= 3 && groups >= 1 && groups <= records, "{v}");
    assert_eq!(syncs, groups, "the default durability syncs every group: {v}");
}

/// `/channel/subscriber_remove_all`, `/channel/blacklist_remove_all`, `/channel/whitelist_remove_all`:
/// the set emptied and the channel kept; an unknown channel is 404 and a person channel 400, with the
/// log unchanged.
#[tokio::test]
async fn remove_all_routes_empty_a_channels_sets_and_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    post_ok(&s, "/channel", json!({"channel_id": "ra", "channel_type": 2, "subscribers": ["a", "b", "c"]})).await;
    post_ok(&s, "/channel/blacklist_add", json!({"channel_id": "ra", "channel_type": 2, "uids": ["x"]})).await;
    post_ok(&s, "/channel/whitelist_add", json!({"channel_id": "ra", "channel_type": 2, "uids": ["a", "b"]})).await;
    assert_eq!(probe(&s, "c", "ra", 2).await, 403, "not on the allowlist");
    let before = log_position(&s).await;
    post_err(&s, "/channel/subscriber_remove_all", json!({"channel_id": "nope", "channel_type": 2}), 404, "nope").await;
    post_err(&s, "/channel/subscriber_remove_all", json!({"channel_id": "a", "channel_type": 1}), 400, "").await;
    post_err(&s, "/channel/blacklist_remove_all", json!({"channel_type": 2}), 400, "channel_id").await;
    assert_eq!(log_position(&s).await, before, "refusals change nothing");

    post_ok(&s, "/channel/whitelist_remove_all", json!({"channel_id": "ra", "channel_type": 2})).await;
    let (_, list) = s.get("/channel/whitelist?channel_id=ra&channel_type=2").await;
    assert_eq!(list, json!([]));
    assert_eq!(probe(&s, "c", "ra", 2).await, 200, "the allowlist is empty again");
    post_ok(&s, "/channel/blacklist_remove_all", json!({"channel_id": "ra", "channel_type": 2})).await;
    post_ok(&s, "/channel/subscriber_remove_all", json!({"channel_id": "ra", "channel_type": 2})).await;
    assert_eq!(probe(&s, "a", "ra", 2).await, 403, "no longer a subscriber");
    // The channel is still there: subscribers can be added again, and removing all again is a no-op.
    post_ok(&s, "/channel/subscriber_add", json!({"channel_id": "ra", "channel_type": 2, "subscribers": ["a"]})).await;
    assert_eq!(probe(&s, "a", "ra", 2).await, 200);
    post_ok(&s, "/channel/subscriber_remove_all", json!({"channel_id": "ra", "channel_type": 2})).await;
    post_ok(&s, "/channel/subscriber_remove_all", json!({"channel_id": "ra", "channel_type": 2})).await;
}
