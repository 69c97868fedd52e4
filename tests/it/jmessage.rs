//! The JMessage family (seed 002) against the real server: its door (HTTP Basic credentials of a
//! configured app, its error envelope, its paths kept apart from the WuKongIM family's), and its
//! users: register, read, update, list, online state, password, delete, disable, blacklist, each
//! bad input refused with the document's error and nothing changed.

use base64::Engine;
use rookery::gateway::packet::{Packet, ReasonCode};
use serde_json::{json, Value};

use crate::gateway::{Client, Kind};
use crate::support::Server;

const APPS: &str = r#"[{tag="a1", appkey="4f7aef34fb361292c566a1cd", master_secret="054d6103823a726fc12d0466"}]"#;

fn basic(s: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s))
}

async fn jm(s: &Server, method: &str, path: &str, authorization: Option<&str>, body: &Value) -> (u16, Value) {
    let url = format!("http://{}{}", s.api, path);
    let mut req = match method {
        "GET" => s.client().get(url),
        "PUT" => s.client().put(url).json(body),
        "DELETE" if body.is_null() => s.client().delete(url),
        "DELETE" => s.client().delete(url).json(body),
        _ => s.client().post(url).json(body),
    };
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn without_an_app_the_family_refuses_everything_and_says_how_to_configure_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]);
    let (status, v) = jm(
        &s,
        "POST",
        "/v1/users/",
        Some(&basic("4f7aef34fb361292c566a1cd:054d6103823a726fc12d0466")),
        &json!([{"username": "dev_fang", "password": "password"}]),
    )
    .await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["code"], 899008, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("jmessage_apps"), "{v}");
}

#[tokio::test]
async fn every_credential_problem_is_401_899008_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[("ROOKERY_JMESSAGE_APPS", APPS)]);
    let (_, head_before) = s.get("/audit/head").await;
    let body = json!([{"username": "dev_fang", "password": "password"}]);
    for authorization in [
        None,
        Some("Bearer 054d6103823a726fc12d0466".to_owned()),
        Some("Basic not base64!".to_owned()),
        Some(basic("4f7aef34fb361292c566a1cd054d6103823a726fc12d0466")),
        Some(basic("ffffffffffffffffffffffff:054d6103823a726fc12d0466")),
        Some(basic("4f7aef34fb361292c566a1cd:wrong")),
    ] {
        for (method, path) in [("POST", "/v1/users/"), ("GET", "/v1/users/dev_fang"), ("PUT", "/v1/sdkregister/1"), ("GET", "/groups/1/members")] {
            let (status, v) = jm(&s, method, path, authorization.as_deref(), &body).await;
            assert_eq!((status, &v), (401, &json!({"error": {"code": 899008, "message": "Basic authentication failed"}})), "{method} {path} {authorization:?}");
        }
    }
    let (_, head_after) = s.get("/audit/head").await;
    assert_eq!(head_before, head_after, "a refused request writes nothing");

    // The right credentials (the appkey in any case) pass the door; a path the family does not serve
    // is answered in its envelope.
    let good = basic("4F7AEF34FB361292C566A1CD:054d6103823a726fc12d0466");
    let (status, v) = jm(&s, "GET", "/v1/no_such_route", Some(&good), &Value::Null).await;
    assert_eq!((status, v), (404, json!({"error": {"code": 899003, "message": "no such route"}})));
    // Rookery's own request-id rule, in this family's envelope.
    let resp =
        s.client().get(format!("http://{}/v1/no_such_route", s.api)).header("Authorization", &good).header("X-Request-Id", "no pe").send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], 899003, "{v}");

    // The WuKongIM family is unaffected: its paths and its envelope.
    let (status, v) = s.post("/user/token", &json!({"uid": "u1", "token": "t"})).await;
    assert_eq!((status, v), (200, json!({"status": 200})));
}

/// The app's credentials, as a client of the family sends them.
fn app() -> String {
    basic("4f7aef34fb361292c566a1cd:054d6103823a726fc12d0466")
}

/// A request with the app's credentials.
async fn call(s: &Server, method: &str, path: &str, body: &Value) -> (u16, Value) {
    jm(s, method, path, Some(&app()), body).await
}

/// A request with a raw body (malformed JSON and the like).
async fn call_raw(s: &Server, method: &str, path: &str, body: &str) -> (u16, Value) {
    let url = format!("http://{}{}", s.api, path);
    let req = if method == "PUT" { s.client().put(url) } else { s.client().post(url) };
    let resp = req.header("Authorization", app()).body(body.to_owned()).send().await.expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn error_code(v: &Value) -> i64 {
    v["error"]["code"].as_i64().unwrap_or_else(|| panic!("an error envelope: {v}"))
}

async fn head(s: &Server) -> Value {
    s.get("/audit/head").await.1
}

async fn jm_server(dir: &std::path::Path) -> Server {
    Server::start(dir, &[("ROOKERY_JMESSAGE_APPS", APPS)])
}

#[tokio::test]
async fn users_are_registered_read_updated_listed_and_deleted_as_the_document_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = jm_server(dir.path()).await;
    let full = json!({
        "username": "dev_fang", "password": "password", "nickname": "Fang", "avatar": "/avatar", "birthday": "1990-01-24",
        "signature": "orz 🎉", "gender": 2, "region": "shenzhen", "address": "nanshan", "extras": {"key": "value"},
    });
    let (status, v) = call(
        &s,
        "POST",
        "/v1/users/",
        &json!([full, {"username": "dev.li@x", "password": "1234"}, {"username": "dev_fang", "password": "other"}, {"username": "ab", "password": "password"}, {"username": "dev_wu", "password": 1234}]),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v[0], json!({"username": "dev_fang"}));
    assert_eq!(v[1], json!({"username": "dev.li@x"}));
    assert_eq!(v[2]["error"]["code"], 899001, "a taken name: {v}");
    assert_eq!(v[3]["error"]["code"], 899003, "a short name: {v}");
    assert_eq!(v[4]["error"]["code"], 899003, "a password that is not a string: {v}");

    let (status, fang) = call(&s, "GET", "/v1/users/dev_fang", &Value::Null).await;
    assert_eq!(status, 200, "{fang}");
    for (k, want) in [
        ("username", json!("dev_fang")),
        ("nickname", json!("Fang")),
        ("avatar", json!("/avatar")),
        ("birthday", json!("1990-01-24 00:00:00")),
        ("gender", json!(2)),
        ("signature", json!("orz 🎉")),
        ("region", json!("shenzhen")),
        ("address", json!("nanshan")),
        ("extras", json!({"key": "value"})),
        ("uid", json!("a1#1")),
    ] {
        assert_eq!(fang[k], want, "{k}: {fang}");
    }
    assert_eq!(fang["ctime"].as_str().map(str::len), Some(19), "yyyy-MM-dd HH:mm:ss: {fang}");
    // Only username, ctime and mtime when nothing else was set.
    let (_, li) = call(&s, "GET", "/v1/users/dev.li@x", &Value::Null).await;
    let mut keys: Vec<&String> = li.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["ctime", "mtime", "uid", "username"], "{li}");

    let (status, v) = call(&s, "PUT", "/v1/users/dev.li@x", &json!({"nickname": "李", "gender": 1})).await;
    assert_eq!((status, v), (204, Value::Null));
    let (_, li) = call(&s, "GET", "/v1/users/dev.li@x", &Value::Null).await;
    assert_eq!((&li["nickname"], &li["gender"]), (&json!("李"), &json!(1)), "{li}");

    let (status, page) = call(&s, "GET", "/v1/users/?start=0&count=10", &Value::Null).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!((page["total"].as_u64(), page["start"].as_u64(), page["count"].as_u64()), (Some(2), Some(0), Some(2)), "{page}");
    assert_eq!(page["users"][0]["username"], "dev_fang");
    assert_eq!(page["users"][1]["nickname"], "李");
    let (_, page) = call(&s, "GET", "/v1/users/?start=1&count=1", &Value::Null).await;
    assert_eq!((page["count"].as_u64(), &page["users"][0]["username"]), (Some(1), &json!("dev.li@x")), "{page}");

    let (status, _) = call(&s, "PUT", "/v1/users/dev_fang/password", &json!({"new_password": "654321"})).await;
    assert_eq!(status, 204);

    // Deleting frees the name; registering it again makes a new user.
    let (status, _) = call(&s, "DELETE", "/v1/users/dev.li@x", &Value::Null).await;
    assert_eq!(status, 204);
    let (status, v) = call(&s, "GET", "/v1/users/dev.li@x", &Value::Null).await;
    assert_eq!((status, error_code(&v)), (404, 899002), "{v}");
    let (status, v) = call(&s, "POST", "/v1/users/", &json!([{"username": "dev.li@x", "password": "1234"}])).await;
    assert_eq!((status, &v[0]), (201, &json!({"username": "dev.li@x"})));
    let (_, li) = call(&s, "GET", "/v1/users/dev.li@x", &Value::Null).await;
    assert_eq!((&li["uid"], li.get("nickname")), (&json!("a1#3"), None), "a new account, not the old one: {li}");

    // A batch delete with an unknown name deletes nothing; without one it deletes all.
    let (status, v) = call(&s, "DELETE", "/v1/users/", &json!(["dev_fang", "nobody1"])).await;
    assert_eq!((status, error_code(&v)), (404, 899002), "{v}");
    assert_eq!(call(&s, "GET", "/v1/users/dev_fang", &Value::Null).await.0, 200, "still there");
    let (status, _) = call(&s, "DELETE", "/v1/users/", &json!(["dev_fang", "dev.li@x"])).await;
    assert_eq!(status, 200);
    let (_, page) = call(&s, "GET", "/v1/users/?start=0&count=10", &Value::Null).await;
    assert_eq!(page["total"], 0, "{page}");
}

#[tokio::test]
async fn every_bad_user_request_gets_the_documents_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = jm_server(dir.path()).await;
    let (status, _) = call(&s, "POST", "/v1/users/", &json!([{"username": "dev_fang", "password": "password", "nickname": "Fang"}])).await;
    assert_eq!(status, 201);
    let (_, before) = call(&s, "GET", "/v1/users/dev_fang", &Value::Null).await;
    let head_before = head(&s).await;

    let many: Vec<Value> = (0..501).map(|i| json!({"username": format!("user{i:04}"), "password": "password"})).collect();
    let fits = format!("{}a", "名".repeat(21));
    let cases: Vec<(&str, &str, Value, u16, i64)> = vec![
        ("POST", "/v1/users/", json!({"username": "x"}), 400, 899003),
        ("POST", "/v1/users/", json!([]), 400, 899003),
        ("POST", "/v1/users/", Value::Array(many), 400, 899003),
        ("PUT", "/v1/users/dev_fang", json!({"gender": 3}), 400, 899003),
        ("PUT", "/v1/users/dev_fang", json!({"gender": "1"}), 400, 899003),
        ("PUT", "/v1/users/dev_fang", json!({"nickname": "a\nb"}), 400, 899003),
        ("PUT", "/v1/users/dev_fang", json!({"nickname": "名".repeat(22)}), 400, 899003),
        ("PUT", "/v1/users/dev_fang", json!({"nickname": fits.clone(), "gender": 9}), 400, 899003),
        ("PUT", "/v1/users/dev_fang", json!({"signature": "s".repeat(251)}), 400, 899003),
        ("PUT", "/v1/users/dev_fang", json!({"birthday": "1990-02-30"}), 400, 899003),
        ("PUT", "/v1/users/dev_fang", json!({"extras": "text"}), 400, 899003),
        ("PUT", "/v1/users/dev_fang", json!({"extras": {"k": "v".repeat(510)}}), 400, 899003),
        ("PUT", "/v1/users/dev_fang", json!([1]), 400, 899003),
        ("PUT", "/v1/users/nobody1", json!({"nickname": "x"}), 404, 899002),
        ("GET", "/v1/users/a_b%20c", Value::Null, 400, 899003),
        ("GET", "/v1/users/abc", Value::Null, 400, 899003),
        ("GET", "/v1/users/nobody1", Value::Null, 404, 899002),
        ("PUT", "/v1/users/dev_fang/password", json!({"new_password": "abc"}), 400, 899003),
        ("PUT", "/v1/users/dev_fang/password", json!({}), 400, 899003),
        ("PUT", "/v1/users/nobody1/password", json!({"new_password": "abcd"}), 404, 899002),
        ("DELETE", "/v1/users/nobody1", Value::Null, 404, 899002),
        ("DELETE", "/v1/users/", json!([]), 400, 899003),
        ("DELETE", "/v1/users/", json!(["dev_fang", 7]), 400, 899003),
        ("GET", "/v1/users/?start=0&count=0", Value::Null, 400, 899003),
        ("GET", "/v1/users/?start=0&count=501", Value::Null, 400, 899003),
        ("GET", "/v1/users/?start=-1&count=5", Value::Null, 400, 899003),
        ("GET", "/v1/users/?count=5", Value::Null, 400, 899003),
        ("PUT", "/v1/users/dev_fang/forbidden?disable=maybe", Value::Null, 400, 899003),
        ("PUT", "/v1/users/nobody1/forbidden?disable=true", Value::Null, 404, 899002),
        ("PUT", "/v1/users/dev_fang/blacklist", json!(["nobody1"]), 404, 899002),
        ("PUT", "/v1/users/dev_fang/blacklist", json!("dev_fang"), 400, 899003),
        ("GET", "/v1/users/nobody1/userstat", Value::Null, 404, 899002),
        ("POST", "/v1/users/userstat", json!(["dev_fang", "nobody1"]), 404, 899002),
        ("PATCH", "/v1/users/dev_fang", json!({}), 405, 899003),
    ];
    for (method, path, body, status, code) in cases {
        let (got, v) = if method == "PATCH" {
            let resp = s.client().patch(format!("http://{}{}", s.api, path)).header("Authorization", app()).json(&body).send().await.expect("sent");
            (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
        } else {
            call(&s, method, path, &body).await
        };
        assert_eq!((got, error_code(&v)), (status, code), "{method} {path} {body}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap_or_default().is_empty(), "{v}");
    }
    for (method, path) in [("POST", "/v1/users/"), ("PUT", "/v1/users/dev_fang")] {
        let (status, v) = call_raw(&s, method, path, "{not json").await;
        assert_eq!((status, error_code(&v)), (400, 899003), "{method} {path}: {v}");
    }
    assert_eq!(head(&s).await, head_before, "no refused request wrote anything");
    let (_, after) = call(&s, "GET", "/v1/users/dev_fang", &Value::Null).await;
    assert_eq!(before, after);

    // The v2 state query answers unknown users in place instead of failing.
    let (status, v) = call(&s, "POST", "/v2/users/statuser", &json!(["dev_fang", "nobody1"])).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v[0], json!({"username": "dev_fang", "devices": [], "statuscode": 0}));
    assert_eq!(v[1], json!({"username": "nobody1", "devices": [], "statuscode": 1, "statusmsg": "no_exist"}));
}

#[tokio::test]
async fn a_jmessage_user_logs_in_over_wkproto_until_disabled_or_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = jm_server(dir.path()).await;
    let (status, _) =
        call(&s, "POST", "/v1/users/", &json!([{"username": "alice", "password": "password"}, {"username": "bobby", "password": "password"}])).await;
    assert_eq!(status, 201);
    let (_, alice) = call(&s, "GET", "/v1/users/alice", &Value::Null).await;
    let uid = alice["uid"].as_str().expect("uid").to_owned();
    assert_eq!(uid, "a1#1");
    // Tokens through the WuKongIM API, for registered tenant users only.
    assert_eq!(s.post("/user/token", &json!({"uid": uid, "token": "ta", "device_flag": 1})).await.0, 200);
    assert_eq!(s.post("/user/token", &json!({"uid": "a1#2", "token": "tb", "device_flag": 1})).await.0, 200);
    let (status, v) = s.post("/user/token", &json!({"uid": "a1#99", "token": "tx"})).await;
    assert_eq!(status, 404, "no such account: {v}");

    let mut c = Client::logged_in(&s, Kind::Tcp, &uid, "ta", 1, 5).await;
    let (_, stat) = call(&s, "GET", "/v1/users/alice/userstat", &Value::Null).await;
    assert_eq!(stat, json!({"login": true, "online": true}));
    let (_, stat) = call(&s, "POST", "/v1/users/userstat", &json!(["alice", "bobby"])).await;
    assert_eq!(stat[0], json!({"username": "alice", "devices": [{"login": true, "online": true, "platform": "j"}]}), "{stat}");
    assert_eq!(stat[1], json!({"username": "bobby", "devices": [{"login": true, "online": false, "platform": "j"}]}), "{stat}");

    // A message to the JMessage user, from the other one, reaches it.
    let (status, v) = s.post("/message/send", &json!({"from_uid": "a1#2", "channel_id": uid, "channel_type": 1, "payload": crate::support::b64("hi")})).await;
    assert_eq!(status, 200, "{v}");
    match c.read().await {
        Some(Packet::Recv(r)) => assert_eq!(r.from_uid, "a1#2"),
        other => panic!("expected RECV, got {other:?}"),
    }

    // Disabled: its session ends and it cannot log in or send; enabled again: it can.
    let (status, _) = call(&s, "PUT", "/v1/users/alice/forbidden?disable=true", &Value::Null).await;
    assert_eq!(status, 204);
    match c.read().await {
        Some(Packet::Disconnect(_)) | None => {}
        other => panic!("expected the session to end, got {other:?}"),
    }
    let mut again = Client::open(&s, Kind::Tcp).await;
    assert_eq!(again.connect(&uid, "ta", 1, 5).await.reason_code, ReasonCode::BAN);
    let (status, _) = s.post("/message/send", &json!({"from_uid": uid, "channel_id": "a1#2", "channel_type": 1, "payload": crate::support::b64("x")})).await;
    assert_eq!(status, 403, "a disabled user cannot send");
    let (status, _) = call(&s, "PUT", "/v1/users/alice/forbidden?disable=false", &Value::Null).await;
    assert_eq!(status, 204);
    let _back = Client::logged_in(&s, Kind::Tcp, &uid, "ta", 1, 5).await;

    // Deleted: logged out everywhere, and its token no longer works even if set again.
    let (status, _) = call(&s, "DELETE", "/v1/users/alice", &Value::Null).await;
    assert_eq!(status, 204);
    let mut after = Client::open(&s, Kind::Tcp).await;
    assert_eq!(after.connect(&uid, "ta", 1, 5).await.reason_code, ReasonCode::AUTH_FAIL);
    assert_eq!(s.post("/user/token", &json!({"uid": uid, "token": "ta", "device_flag": 1})).await.0, 404);
}

#[tokio::test]
async fn a_users_blacklist_refuses_single_messages_from_the_listed_users_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = jm_server(dir.path()).await;
    let users: Vec<Value> = ["annie", "benny", "cindy"].iter().map(|u| json!({"username": u, "password": "password", "nickname": u.to_uppercase()})).collect();
    assert_eq!(call(&s, "POST", "/v1/users/", &Value::Array(users)).await.0, 201);
    let (status, _) = call(&s, "PUT", "/v1/users/annie/blacklist", &json!(["benny"])).await;
    assert_eq!(status, 204);
    let (status, list) = call(&s, "GET", "/v1/users/annie/blacklist", &Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!((&list[0]["username"], &list[0]["nickname"]), (&json!("benny"), &json!("BENNY")), "{list}");

    let send = |from: &str, to: &str| json!({"from_uid": from, "channel_id": to, "channel_type": 1, "payload": crate::support::b64("hi")});
    assert_eq!(s.post("/message/send", &send("a1#2", "a1#1")).await.0, 403, "benny is on annie's blacklist");
    assert_eq!(s.post("/message/send", &send("a1#3", "a1#1")).await.0, 200, "cindy is not");
    assert_eq!(s.post("/message/send", &send("a1#1", "a1#2")).await.0, 200, "annie may still write to benny");

    let (status, _) = call(&s, "DELETE", "/v1/users/annie/blacklist", &json!(["benny"])).await;
    assert_eq!(status, 204);
    assert_eq!(call(&s, "GET", "/v1/users/annie/blacklist", &Value::Null).await.1, json!([]));
    assert_eq!(s.post("/message/send", &send("a1#2", "a1#1")).await.0, 200);
}

#[tokio::test]
async fn users_survive_a_kill_and_show_in_the_audit_trail_and_time_travel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = jm_server(dir.path()).await;
    let (status, _) = call(
        &s,
        "POST",
        "/v1/users/",
        &json!([{"username": "annie", "password": "password", "nickname": "Ann"}, {"username": "benny", "password": "password"}]),
    )
    .await;
    assert_eq!(status, 201);
    let before_update = head(&s).await["position"].as_u64().expect("position");
    assert_eq!(call(&s, "PUT", "/v1/users/annie", &json!({"nickname": "Annie", "region": "north"})).await.0, 204);
    assert_eq!(call(&s, "PUT", "/v1/users/annie/blacklist", &json!(["benny"])).await.0, 204);
    assert_eq!(call(&s, "PUT", "/v1/users/benny/password", &json!({"new_password": "secret-2"})).await.0, 204);
    let (status, _) = call(&s, "POST", "/v1/groups/", &json!({"owner_username": "annie", "name": "g", "members_username": ["benny"]})).await;
    assert_eq!(status, 201);
    assert_eq!(call(&s, "PUT", "/groups/messages/1/silence?status=true", &json!(["benny"])).await.0, 204);
    assert_eq!(call(&s, "POST", "/v1/users/annie/friends", &json!(["benny"])).await.0, 201);
    assert_eq!(call(&s, "PUT", "/v1/users/annie/friends", &json!([{"username": "benny", "note_name": "B"}])).await.0, 204);
    assert_eq!(call(&s, "POST", "/v1/sensitiveword", &json!(["bad", "worse"])).await.0, 204);
    assert_eq!(call(&s, "PUT", "/v1/sensitiveword/status?status=1", &Value::Null).await.0, 204);
    assert_eq!(call(&s, "POST", "/v1/chatroom/", &json!({"owner_username": "annie", "name": "room", "members_username": ["benny"]})).await.0, 201);
    assert_eq!(call(&s, "PUT", "/v1/chatroom/1/forbidden/benny?status=1", &Value::Null).await.0, 204);
    let (_, words) = call(&s, "GET", "/v1/sensitiveword?start=0&count=10", &Value::Null).await;
    let (_, room_members) = call(&s, "GET", "/v1/chatroom/1/members?start=0&count=10", &Value::Null).await;
    let (_, annie) = call(&s, "GET", "/v1/users/annie", &Value::Null).await;
    let (_, group) = call(&s, "GET", "/v1/groups/1", &Value::Null).await;

    s.kill9();
    let s = jm_server(dir.path()).await;
    assert_eq!(call(&s, "GET", "/v1/users/annie", &Value::Null).await.1, annie, "the same user after a kill");
    assert_eq!(call(&s, "GET", "/v1/users/annie/blacklist", &Value::Null).await.1[0]["username"], "benny");
    assert_eq!(call(&s, "GET", "/v1/users/?start=0&count=5", &Value::Null).await.1["total"], 2);
    assert_eq!(call(&s, "GET", "/v1/groups/1", &Value::Null).await.1, group, "the same group after a kill");
    assert_eq!(members(&s, 1).await, named(&[("annie", 1), ("benny", 0)]));
    assert_eq!(call(&s, "GET", "/v1/users/annie/friends", &Value::Null).await.1[0]["note_name"], "B", "friends after a kill");
    assert_eq!(call(&s, "GET", "/v1/sensitiveword?start=0&count=10", &Value::Null).await.1, words, "words after a kill");
    assert_eq!(call(&s, "GET", "/v1/sensitiveword/status", &Value::Null).await.1, json!({"status": 1}));
    assert_eq!(call(&s, "GET", "/v1/chatroom/1/members?start=0&count=10", &Value::Null).await.1, room_members, "rooms after a kill");
    let silenced = s.post("/message/send", &json!({"from_uid": "a1#2", "channel_id": "a1#g1", "channel_type": 2, "payload": crate::support::b64("x")})).await;
    assert_eq!(silenced.0, 403, "still silenced after a kill: {silenced:?}");

    // Who changed what: the account's own events, acting as the app, with no password hash shown.
    let (status, trail) = s.get("/audit/events?uid=a1%231&order=asc").await;
    assert_eq!(status, 200, "{trail}");
    let kinds: Vec<&str> = trail["events"].as_array().expect("events").iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.starts_with(&["tenant.users_registered", "tenant.profile_updated"]), "{kinds:?}");
    let update = &trail["events"][1];
    assert_eq!(update["actor"], json!({"type": "api", "credential": "jmessage:a1"}), "{update}");
    assert_eq!(update["event"]["patch"], json!({"nickname": "Annie", "region": "north"}), "{update}");
    let (_, all) = s.get("/audit/events?kind=tenant.password_changed").await;
    assert_eq!(all["events"].as_array().map(Vec::len), Some(1), "{all}");
    assert!(!all.to_string().contains("hash") && !all.to_string().contains("salt"), "no password material: {all}");

    // Time travel: the account as it was before the update.
    let (status, past) = s.get(&format!("/audit/state?uid=a1%231&at={before_update}")).await;
    assert_eq!(status, 200, "{past}");
    assert_eq!(past["user"]["account"]["profile"], json!({"nickname": "Ann"}), "{past}");
    assert_eq!(past["user"]["account"]["username"], "annie");
    let (_, now) = s.get("/audit/state?uid=a1%231").await;
    assert_eq!(now["user"]["account"]["profile"]["nickname"], "Annie", "{now}");
    drop(s);
    let (ok, out) = crate::support::verify(dir.path());
    assert!(ok, "{out}");
}

async fn register(s: &Server, names: &[&str]) {
    let users: Vec<Value> = names.iter().map(|u| json!({"username": u, "password": "password", "nickname": u.to_uppercase()})).collect();
    let (status, v) = call(s, "POST", "/v1/users/", &Value::Array(users)).await;
    assert_eq!(status, 201, "{v}");
    assert!(v.as_array().expect("array").iter().all(|u| u.get("error").is_none()), "{v}");
}

/// (username, flag) of a group's members, in the order the API lists them.
async fn members(s: &Server, gid: u64) -> Vec<(String, i64)> {
    let (status, v) = call(s, "GET", &format!("/v1/groups/{gid}/members/"), &Value::Null).await;
    assert_eq!(status, 200, "{v}");
    v.as_array().expect("array").iter().map(|m| (m["username"].as_str().expect("username").to_owned(), m["flag"].as_i64().expect("flag"))).collect()
}

fn named(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(n, f)| ((*n).to_owned(), *f)).collect()
}

#[tokio::test]
async fn groups_are_created_read_changed_and_deleted_with_their_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = jm_server(dir.path()).await;
    register(&s, &["tommy", "eddie", "annie", "zoeyy"]).await;
    let (status, g) = call(
        &s,
        "POST",
        "/v1/groups/",
        &json!({"owner_username": "tommy", "name": "群聊天室", "members_username": ["eddie", "annie"], "flag": 1, "desc": "运动"}),
    )
    .await;
    assert_eq!(status, 201, "{g}");
    assert_eq!(g["gid"], 1);
    assert_eq!((&g["owner_username"], &g["name"], &g["desc"], &g["MaxMemberCount"]), (&json!("tommy"), &json!("群聊天室"), &json!("运动"), &json!(500)));
    assert_eq!(g["members_username"], json!(["eddie", "annie"]));

    let (status, got) = call(&s, "GET", "/v1/groups/1", &Value::Null).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!((&got["gid"], &got["appkey"], &got["flag"], &got["MaxMemberCount"]), (&json!(1), &json!("4f7aef34fb361292c566a1cd"), &json!(1), &json!(500)));
    assert_eq!(got["ctime"].as_str().map(str::len), Some(19), "{got}");
    assert_eq!(members(&s, 1).await, named(&[("tommy", 1), ("eddie", 0), ("annie", 0)]));
    let (_, of_eddie) = call(&s, "GET", "/v1/users/eddie/groups/", &Value::Null).await;
    assert_eq!(of_eddie.as_array().map(|a| a.iter().map(|g| g["gid"].clone()).collect::<Vec<_>>()), Some(vec![json!(1)]), "{of_eddie}");

    assert_eq!(call(&s, "POST", "/v1/groups/1/members", &json!({"add": ["zoeyy"], "remove": ["annie"]})).await.0, 204);
    assert_eq!(members(&s, 1).await, named(&[("tommy", 1), ("eddie", 0), ("zoeyy", 0)]));
    assert_eq!(call(&s, "POST", "/v2/groups/1/addMembers", &json!(["annie"])).await.0, 204);
    assert_eq!(call(&s, "POST", "/v2/groups/1/delMembers", &json!(["zoeyy"])).await.0, 204);
    assert_eq!(members(&s, 1).await, named(&[("tommy", 1), ("eddie", 0), ("annie", 0)]));
    assert_eq!(call(&s, "GET", "/v1/users/zoeyy/groups/", &Value::Null).await.1, json!([]), "zoeyy left");

    // Bad requests: the document's codes, and nothing changes.
    let head_before = head(&s).await;
    for (method, path, body, status, code) in [
        ("POST", "/v1/groups/1/members", json!({"add": ["eddie"]}), 409, 899011),
        ("POST", "/v1/groups/1/members", json!({"remove": ["zoeyy"]}), 400, 899014),
        ("POST", "/v1/groups/1/members", json!({"add": ["zoeyy"], "remove": ["nobody1"]}), 404, 899002),
        ("POST", "/v1/groups/1/members", json!({}), 400, 899003),
        ("POST", "/v1/groups/1/members", json!({"add": "zoeyy"}), 400, 899003),
        ("POST", "/v2/groups/1/addMembers", json!([]), 400, 899003),
        ("POST", "/v2/groups/9/addMembers", json!(["zoeyy"]), 404, 899006),
        ("GET", "/v1/groups/9", Value::Null, 404, 899006),
        ("GET", "/v1/groups/abc", Value::Null, 400, 899003),
        ("GET", "/v1/groups/01", Value::Null, 400, 899003),
        ("PUT", "/v1/groups/1", json!({}), 400, 899003),
        ("PUT", "/v1/groups/1", json!({"name": "a\nb"}), 400, 899003),
        ("PUT", "/v1/groups/1", json!({"name": "名".repeat(22)}), 400, 899003),
        ("PUT", "/v1/groups/9", json!({"name": "x"}), 404, 899006),
        ("DELETE", "/v1/groups/9", Value::Null, 404, 899006),
        ("POST", "/v1/groups/", json!({"owner_username": "nobody1", "name": "x"}), 404, 899002),
        ("POST", "/v1/groups/", json!({"owner_username": "tommy", "name": "x", "members_username": ["nobody1"]}), 404, 899002),
        ("POST", "/v1/groups/", json!({"owner_username": "tommy"}), 400, 899003),
        ("POST", "/v1/groups/", json!({"owner_username": "tommy", "name": "x", "flag": 3}), 400, 899003),
        ("POST", "/v1/groups/", json!({"owner_username": "tommy", "name": "x", "members_username": vec!["eddie"; 501]}), 400, 899003),
        ("PUT", "/groups/owner/1", json!({"username": "zoeyy"}), 400, 899014),
        ("PUT", "/groups/owner/1", json!({"username": "eddie", "appkey": "ffffffffffffffffffffffff"}), 400, 899003),
        ("PUT", "/groups/owner/9", json!({"username": "eddie"}), 404, 899006),
        ("PUT", "/groups/messages/1/silence?status=maybe", json!(["eddie"]), 400, 899003),
        ("PUT", "/groups/messages/1/silence?status=true", json!(["zoeyy"]), 400, 899014),
    ] {
        let (got, v) = call(&s, method, path, &body).await;
        assert_eq!((got, error_code(&v)), (status, code), "{method} {path} {body}: {v}");
    }
    assert_eq!(head(&s).await, head_before, "no refused request wrote anything");

    assert_eq!(call(&s, "PUT", "/v1/groups/1", &json!({"name": "renamed", "avatar": "/a.png"})).await.0, 204);
    let (_, got) = call(&s, "GET", "/v1/groups/1", &Value::Null).await;
    assert_eq!((&got["name"], &got["desc"], &got["avatar"]), (&json!("renamed"), &json!("运动"), &json!("/a.png")), "{got}");
    let (_, page) = call(&s, "GET", "/v1/groups/?start=0&count=10", &Value::Null).await;
    assert_eq!((page["total"].as_u64(), page["count"].as_u64(), &page["groups"][0]["name"]), (Some(1), Some(1), &json!("renamed")), "{page}");

    // The owner hands the group on and stays a member.
    assert_eq!(call(&s, "PUT", "/groups/owner/1", &json!({"username": "eddie", "appkey": "4F7AEF34FB361292C566A1CD"})).await.0, 204);
    assert_eq!(members(&s, 1).await, named(&[("eddie", 1), ("tommy", 0), ("annie", 0)]));

    assert_eq!(call(&s, "DELETE", "/v1/groups/1", &Value::Null).await.0, 204);
    let (status, v) = call(&s, "GET", "/v1/groups/1", &Value::Null).await;
    assert_eq!((status, error_code(&v)), (404, 899006));
    assert_eq!(call(&s, "GET", "/v1/groups/?start=0&count=10", &Value::Null).await.1["total"], 0);
    assert_eq!(call(&s, "GET", "/v1/users/eddie/groups/", &Value::Null).await.1, json!([]));
    // A new group gets a new number.
    let (_, g2) = call(&s, "POST", "/v1/groups/", &json!({"owner_username": "tommy", "name": "again", "flag": 2})).await;
    assert_eq!((&g2["gid"], &g2["flag"]), (&json!(2), &json!(2)), "{g2}");
}

#[tokio::test]
async fn silenced_or_removed_members_cannot_send_to_the_group_and_deleted_users_leave_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = jm_server(dir.path()).await;
    register(&s, &["tommy", "eddie", "annie"]).await;
    let (status, _) = call(&s, "POST", "/v1/groups/", &json!({"owner_username": "tommy", "name": "team", "members_username": ["eddie", "annie"]})).await;
    assert_eq!(status, 201);
    for (uid, token) in [("a1#1", "t1"), ("a1#2", "t2")] {
        assert_eq!(s.post("/user/token", &json!({"uid": uid, "token": token, "device_flag": 1})).await.0, 200);
    }
    let mut tommy = Client::logged_in(&s, Kind::Tcp, "a1#1", "t1", 1, 5).await;
    let mut eddie = Client::logged_in(&s, Kind::Ws, "a1#2", "t2", 1, 5).await;
    let ack = eddie.send(1, "a1#g1", 2, "hello team").await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{ack:?}");
    let (recv, text) = crate::gateway::recv(&mut tommy).await;
    assert_eq!((recv.channel_id.as_str(), recv.from_uid.as_str(), text.as_str()), ("a1#g1", "a1#2", "hello team"));

    assert_eq!(call(&s, "PUT", "/groups/messages/1/silence?status=true", &json!(["eddie"])).await.0, 204);
    assert_eq!(eddie.send(2, "a1#g1", 2, "can you hear me").await.reason_code, ReasonCode::SEND_BAN);
    let rest = |from: &str| json!({"from_uid": from, "channel_id": "a1#g1", "channel_type": 2, "payload": crate::support::b64("x")});
    assert_eq!(s.post("/message/send", &rest("a1#2")).await.0, 403, "silenced through the API too");
    assert_eq!(s.post("/message/send", &rest("a1#3")).await.0, 200, "others still speak");
    assert_eq!(crate::gateway::recv(&mut eddie).await.0.from_uid, "a1#3", "and the silenced member still hears them");
    assert_eq!(call(&s, "PUT", "/groups/messages/1/silence?status=false", &json!(["eddie"])).await.0, 204);
    assert_eq!(eddie.send(3, "a1#g1", 2, "back").await.reason_code, ReasonCode::SUCCESS);

    // Removed: no longer a member, so refused.
    assert_eq!(call(&s, "POST", "/v2/groups/1/delMembers", &json!(["eddie"])).await.0, 204);
    assert_eq!(eddie.send(4, "a1#g1", 2, "still here?").await.reason_code, ReasonCode::SUBSCRIBER_NOT_EXIST);

    // The owner's account is deleted: the group passes to the member with the lowest number.
    assert_eq!(call(&s, "DELETE", "/v1/users/tommy", &Value::Null).await.0, 204);
    assert_eq!(members(&s, 1).await, named(&[("annie", 1)]));
    // Its last member's account is deleted: the group is gone.
    assert_eq!(call(&s, "DELETE", "/v1/users/annie", &Value::Null).await.0, 204);
    assert_eq!(call(&s, "GET", "/v1/groups/1", &Value::Null).await.1["error"]["code"], 899006);
    assert_eq!(call(&s, "GET", "/v1/groups/?start=0&count=5", &Value::Null).await.1["total"], 0);
}

fn text_message(from: &str, target_type: &str, target: Value, text: &str) -> Value {
    json!({"version": 1, "target_type": target_type, "target_id": target, "from_type": "user", "from_id": from, "msg_type": "text", "msg_body": {"text": text, "extras": {}}})
}

#[tokio::test]
async fn messages_go_through_the_one_send_path_and_their_sender_can_retract_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = jm_server(dir.path()).await;
    register(&s, &["fangf", "javen", "other"]).await;
    assert_eq!(s.post("/user/token", &json!({"uid": "a1#2", "token": "tj", "device_flag": 0})).await.0, 200);
    let mut javen = Client::logged_in(&s, Kind::Tcp, "a1#2", "tj", 0, 5).await;

    let (status, sent) = call(&s, "POST", "/v1/messages", &text_message("fangf", "single", json!("javen"), "Hello, JMessage!")).await;
    assert_eq!(status, 201, "{sent}");
    let msg_id = sent["msg_id"].as_u64().expect("msg_id");
    assert!(sent["msg_ctime"].as_u64().expect("msg_ctime") > 1_700_000_000_000, "milliseconds: {sent}");
    let (recv, payload) = crate::gateway::recv(&mut javen).await;
    assert_eq!((recv.from_uid.as_str(), recv.channel_id.as_str(), recv.channel_type), ("a1#1", "a1#1", 1));
    let payload: Value = serde_json::from_str(&payload).expect("json payload");
    assert_eq!((&payload["type"], &payload["content"], &payload["msg_type"]), (&json!(1), &json!("Hello, JMessage!"), &json!("text")), "{payload}");

    let image = json!({"version": 1, "target_type": "single", "target_id": "javen", "from_type": "user", "from_id": "fangf", "msg_type": "image",
        "msg_body": {"media_id": "a1/image/ce0a", "media_crc32": 2778919613u64, "width": 3840, "height": 2160, "fsize": 3328738, "format": "jpg"}});
    let (status, v) = call(&s, "POST", "/v1/messages", &image).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(serde_json::from_str::<Value>(&crate::gateway::recv(&mut javen).await.1).expect("json")["type"], 2);

    // Groups: members send, others are refused.
    let (status, _) = call(&s, "POST", "/v1/groups/", &json!({"owner_username": "fangf", "name": "g", "members_username": ["javen"]})).await;
    assert_eq!(status, 201);
    let (status, v) = call(&s, "POST", "/v1/messages", &text_message("fangf", "group", json!("1"), "to the group")).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(crate::gateway::recv(&mut javen).await.0.channel_id, "a1#g1");
    let head_before = head(&s).await;
    let custom = |body: Value| json!({"version": 1, "target_type": "single", "target_id": "javen", "from_type": "user", "from_id": "fangf", "msg_type": "custom", "msg_body": body});
    for (body, status, code) in [
        (text_message("other", "group", json!(1), "let me in"), 403, 899016),
        (text_message("fangf", "group", json!("9"), "x"), 404, 899006),
        (text_message("fangf", "group", json!("g"), "x"), 400, 899003),
        (text_message("nobody1", "single", json!("javen"), "x"), 404, 899002),
        (text_message("fangf", "single", json!("nobody1"), "x"), 404, 899002),
        (text_message("fangf", "chatroom", json!("1"), "x"), 404, 899006),
        (
            json!({"version": 2, "target_type": "single", "target_id": "javen", "from_type": "user", "from_id": "fangf", "msg_type": "text", "msg_body": {"text": "x"}}),
            400,
            899003,
        ),
        (
            json!({"version": 1, "target_type": "single", "target_id": "javen", "from_type": "admin", "from_id": "fangf", "msg_type": "text", "msg_body": {"text": "x"}}),
            400,
            899003,
        ),
        (
            json!({"version": 1, "target_type": "single", "target_id": "javen", "from_type": "user", "from_id": "fangf", "msg_type": "video", "msg_body": {"text": "x"}}),
            400,
            899003,
        ),
        (
            json!({"version": 1, "target_type": "single", "target_id": "javen", "from_type": "user", "from_id": "fangf", "msg_type": "text", "msg_body": {"extras": {}}}),
            400,
            899003,
        ),
        (
            json!({"version": 1, "target_type": "single", "target_id": "javen", "from_type": "user", "from_id": "fangf", "msg_type": "text", "msg_body": "x"}),
            400,
            899003,
        ),
        (
            json!({"version": 1, "target_type": "single", "target_id": "javen", "from_type": "user", "from_id": "fangf", "msg_type": "image", "msg_body": {"format": "jpg"}}),
            400,
            899003,
        ),
        (
            json!({"version": 1, "target_type": "single", "target_id": "javen", "from_type": "user", "from_id": "fangf", "msg_type": "text", "msg_body": {"text": "x"}, "no_offline": "yes"}),
            400,
            899003,
        ),
        (
            json!({"version": 1, "target_type": "single", "target_id": "javen", "from_type": "user", "from_id": "fangf", "msg_type": "text", "msg_body": {"text": "x"}, "target_appkey": "ffffffffffffffffffffffff"}),
            400,
            899003,
        ),
        (custom(json!({"k": "v".repeat(4090)})), 400, 899003),
    ] {
        let (got, v) = call(&s, "POST", "/v1/messages", &body).await;
        assert_eq!((got, error_code(&v)), (status, code), "{body}: {v}");
    }
    assert_eq!(head(&s).await, head_before, "no refused send wrote anything");
    // 4096 bytes of msg_body exactly is still accepted.
    let fill = 4096 - json!({"k": ""}).to_string().len();
    assert_eq!(call(&s, "POST", "/v1/messages", &custom(json!({"k": "v".repeat(fill)}))).await.0, 201);
    let _ = crate::gateway::recv(&mut javen).await;

    // A blacklisted sender is refused.
    assert_eq!(call(&s, "PUT", "/v1/users/javen/blacklist", &json!(["fangf"])).await.0, 204);
    let (status, v) = call(&s, "POST", "/v1/messages", &text_message("fangf", "single", json!("javen"), "blocked")).await;
    assert_eq!((status, error_code(&v)), (403, 899016), "{v}");
    assert_eq!(call(&s, "DELETE", "/v1/users/javen/blacklist", &json!(["fangf"])).await.0, 204);

    // Retraction: not by someone else, by the sender once, and then readers no longer see the content.
    let retract = |who: &str, id: u64| format!("/v1/messages/{who}/{id}/retract");
    let (status, v) = call(&s, "POST", &retract("javen", msg_id), &Value::Null).await;
    assert_eq!((status, error_code(&v)), (403, 899016), "{v}");
    assert_eq!(call(&s, "POST", &retract("fangf", msg_id), &Value::Null).await.0, 204);
    let (status, v) = call(&s, "POST", &retract("fangf", msg_id), &Value::Null).await;
    assert_eq!((status, error_code(&v)), (409, 855004), "{v}");
    for id in [999_999u64, 1] {
        let (status, v) = call(&s, "POST", &retract("fangf", id), &Value::Null).await;
        assert_eq!((status, error_code(&v)), (404, 855003), "{id}: {v}");
    }
    let (status, v) = call(&s, "POST", "/v1/messages/fangf/abc/retract", &Value::Null).await;
    assert_eq!((status, error_code(&v)), (400, 899003), "{v}");
    let (status, history) = s.post("/channel/messagesync", &json!({"login_uid": "a1#2", "channel_id": "a1#1", "channel_type": 1, "limit": 10})).await;
    assert_eq!(status, 200, "{history}");
    let first = &history["messages"][0];
    assert_eq!((&first["revoke"], &first["revoker"], &first["payload"]), (&json!(1), &json!("a1#1"), &json!("")), "{first}");
    assert!(history["messages"][1].get("revoke").is_none(), "{history}");
    let (_, trail) = s.get("/audit/events?kind=channel.message_revoked").await;
    assert_eq!(trail["events"][0]["actor"]["credential"], "jmessage:a1", "{trail}");
}

#[tokio::test]
async fn friends_are_mutual_with_notes_of_their_own_and_end_with_either_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = jm_server(dir.path()).await;
    register(&s, &["annie", "benny", "cindy", "danny"]).await;
    let (status, v) = call(&s, "POST", "/v1/users/annie/friends", &json!(["benny", "cindy"])).await;
    assert_eq!((status, v), (201, Value::Null));
    let names = |v: &Value| v.as_array().expect("array").iter().map(|f| f["username"].as_str().expect("name").to_owned()).collect::<Vec<_>>();
    let (_, of_annie) = call(&s, "GET", "/v1/users/annie/friends", &Value::Null).await;
    assert_eq!(names(&of_annie), ["benny", "cindy"]);
    assert_eq!(
        (&of_annie[0]["nickname"], &of_annie[0]["note_name"], &of_annie[0]["appkey"]),
        (&json!("BENNY"), &json!(""), &json!("4f7aef34fb361292c566a1cd"))
    );
    assert_eq!(names(&call(&s, "GET", "/v1/users/benny/friends", &Value::Null).await.1), ["annie"], "both ways");

    assert_eq!(call(&s, "PUT", "/v1/users/benny/friends", &json!([{"username": "annie", "note_name": "An", "others": "from school 🎒"}])).await.0, 204);
    let (_, of_benny) = call(&s, "GET", "/v1/users/benny/friends", &Value::Null).await;
    assert_eq!((&of_benny[0]["note_name"], &of_benny[0]["others"]), (&json!("An"), &json!("from school 🎒")));
    assert_eq!(call(&s, "GET", "/v1/users/annie/friends", &Value::Null).await.1[0]["note_name"], "", "each side has its own note");

    let head_before = head(&s).await;
    for (method, body, status, code) in [
        ("POST", json!(["danny", "benny"]), 409, 899070),
        ("POST", json!(["danny", "nobody1"]), 404, 899002),
        ("POST", json!(["annie"]), 400, 899003),
        ("POST", json!([]), 400, 899003),
        ("POST", json!({"users": ["danny"]}), 400, 899003),
        ("PUT", json!([{"username": "danny", "note_name": "D"}]), 404, 899002),
        ("PUT", json!([{"username": "benny", "note_name": "a\nb"}]), 400, 899003),
        ("PUT", json!([{"username": "benny", "note_name": "n".repeat(65)}]), 400, 899003),
        ("PUT", json!([{"username": "benny", "others": "o".repeat(251)}]), 400, 899003),
        ("PUT", json!([{"username": "benny"}]), 400, 899003),
        ("DELETE", json!(["nobody1"]), 404, 899002),
    ] {
        let (got, v) = call(&s, method, "/v1/users/annie/friends", &body).await;
        assert_eq!((got, error_code(&v)), (status, code), "{method} {body}: {v}");
    }
    let (got, v) = call(&s, "GET", "/v1/users/nobody1/friends", &Value::Null).await;
    assert_eq!((got, error_code(&v)), (404, 899002), "{v}");
    assert_eq!(head(&s).await, head_before, "no refused request wrote anything");
    assert_eq!(names(&call(&s, "GET", "/v1/users/danny/friends", &Value::Null).await.1), Vec::<String>::new());

    // Deleting ends friendships on both sides; deleting a non-friend changes nothing.
    assert_eq!(call(&s, "DELETE", "/v1/users/annie/friends", &json!(["cindy", "danny"])).await.0, 204);
    assert_eq!(names(&call(&s, "GET", "/v1/users/cindy/friends", &Value::Null).await.1), Vec::<String>::new());
    assert_eq!(call(&s, "DELETE", "/v1/users/benny", &Value::Null).await.0, 204);
    assert_eq!(call(&s, "GET", "/v1/users/annie/friends", &Value::Null).await.1, json!([]), "a deleted account is no one's friend");
}

#[tokio::test]
async fn sensitive_words_are_listed_and_masked_in_sent_text_while_the_filter_is_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = jm_server(dir.path()).await;
    register(&s, &["fangf", "javen"]).await;
    assert_eq!(call(&s, "GET", "/v1/sensitiveword/status", &Value::Null).await.1, json!({"status": 0}));
    assert_eq!(call(&s, "POST", "/v1/sensitiveword", &json!(["FUCK", "坏词", "FUCK"])).await.0, 204);
    assert_eq!(call(&s, "PUT", "/v1/sensitiveword", &json!({"old_word": "FUCK", "new_word": "fuck"})).await.0, 204);
    let (status, list) = call(&s, "GET", "/v1/sensitiveword?start=0&count=10", &Value::Null).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!((&list["total"], &list["count"], &list["words"][0]["name"], &list["words"][1]["name"]), (&json!(2), &json!(2), &json!("fuck"), &json!("坏词")));
    assert_eq!(list["words"][0]["itime"].as_str().map(str::len), Some(19), "{list}");
    let (_, second) = call(&s, "GET", "/v1/sensitiveword?start=1&count=5", &Value::Null).await;
    assert_eq!((&second["start"], &second["count"], &second["words"][0]["name"]), (&json!(1), &json!(1), &json!("坏词")));

    let head_before = head(&s).await;
    let hundred: Vec<String> = (0..99).map(|i| format!("w{i}")).collect();
    for (method, path, body, status) in [
        ("POST", "/v1/sensitiveword", json!(["abcdefghijk"]), 400),
        ("POST", "/v1/sensitiveword", json!([]), 400),
        ("POST", "/v1/sensitiveword", json!([7]), 400),
        ("POST", "/v1/sensitiveword", json!(hundred), 400),
        ("PUT", "/v1/sensitiveword", json!({"old_word": "nope", "new_word": "x"}), 400),
        ("PUT", "/v1/sensitiveword", json!({"old_word": "fuck", "new_word": "坏词"}), 400),
        ("PUT", "/v1/sensitiveword", json!({"old_word": "fuck"}), 400),
        ("DELETE", "/v1/sensitiveword", json!({"word": "nope"}), 400),
        ("GET", "/v1/sensitiveword?start=0&count=2001", Value::Null, 400),
        ("PUT", "/v1/sensitiveword/status?status=2", Value::Null, 400),
        ("PUT", "/v1/sdkregister/status?status=yes", Value::Null, 400),
    ] {
        let (got, v) = call(&s, method, path, &body).await;
        assert_eq!((got, error_code(&v)), (status, 899003), "{method} {path} {body}: {v}");
    }
    assert_eq!(head(&s).await, head_before, "no refused request wrote anything");
    // Ten characters of three bytes each are one word.
    assert_eq!(call(&s, "POST", "/v1/sensitiveword", &json!(["一二三四五六七八九十"])).await.0, 204);

    let send = |text: &str| text_message("fangf", "single", json!("javen"), text);
    async fn stored(s: &Server) -> Value {
        let (_, h) = s.post("/channel/messagesync", &json!({"login_uid": "a1#2", "channel_id": "a1#1", "channel_type": 1, "limit": 10, "pull_mode": 1})).await;
        let last = h["messages"].as_array().expect("messages").last().cloned().expect("a message");
        let bytes = base64::engine::general_purpose::STANDARD.decode(last["payload"].as_str().expect("payload")).expect("base64");
        serde_json::from_slice::<Value>(&bytes).expect("json")
    }
    assert_eq!(call(&s, "POST", "/v1/messages", &send("what the FuCk, 坏词")).await.0, 201);
    assert_eq!(stored(&s).await["content"], "what the FuCk, 坏词", "the filter is off");
    assert_eq!(call(&s, "PUT", "/v1/sensitiveword/status?status=1", &Value::Null).await.0, 204);
    assert_eq!(call(&s, "GET", "/v1/sensitiveword/status", &Value::Null).await.1, json!({"status": 1}));
    assert_eq!(call(&s, "POST", "/v1/messages", &send("what the FuCk, 坏词")).await.0, 201);
    let p = stored(&s).await;
    assert_eq!((&p["content"], &p["body"]["text"]), (&json!("what the ****, **"), &json!("what the ****, **")), "{p}");
    assert_eq!(call(&s, "DELETE", "/v1/sensitiveword", &json!({"word": "fuck"})).await.0, 204);
    assert_eq!(call(&s, "POST", "/v1/messages", &send("fuck 坏词")).await.0, 201);
    assert_eq!(stored(&s).await["content"], "fuck **");

    // The SDK registration switch is kept and shown.
    assert_eq!(call(&s, "GET", "/v1/sdkregister/status", &Value::Null).await.1, json!({"status": 1}));
    assert_eq!(call(&s, "PUT", "/v1/sdkregister/status?status=0", &Value::Null).await.0, 204);
    assert_eq!(call(&s, "GET", "/v1/sdkregister/status", &Value::Null).await.1, json!({"status": 0}));
}

#[tokio::test]
async fn no_disturb_and_shields_are_kept_with_the_documents_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = jm_server(dir.path()).await;
    register(&s, &["annie", "benny"]).await;
    assert_eq!(call(&s, "POST", "/v1/groups/", &json!({"owner_username": "annie", "name": "g", "members_username": ["benny"]})).await.0, 201);
    let body = json!({"single": {"add": ["benny"]}, "group": {"add": [1]}, "global": 1});
    assert_eq!(call(&s, "POST", "/v1/users/annie/nodisturb", &body).await.0, 204);
    let head_before = head(&s).await;
    for (path, body, status, code) in [
        ("/v1/users/annie/nodisturb", json!({"group": {"add": [1]}}), 409, 899052),
        ("/v1/users/benny/nodisturb", json!({"group": {"remove": [1]}}), 409, 899053),
        ("/v1/users/annie/nodisturb", json!({"group": {"add": [9]}}), 404, 899051),
        ("/v1/users/annie/nodisturb", json!({"single": {"add": ["nobody1"]}}), 404, 899002),
        ("/v1/users/nobody1/nodisturb", json!({"global": 1}), 404, 899002),
        ("/v1/users/annie/nodisturb", json!({"global": 2}), 400, 899003),
        ("/v1/users/annie/nodisturb", json!({"group": {"add": ["1"]}}), 400, 899003),
        ("/v1/users/annie/nodisturb", json!({"single": ["benny"]}), 400, 899003),
        ("/v1/users/annie/groupsShield", json!({"add": [9]}), 404, 899051),
        ("/v1/users/annie/groupsShield", json!({}), 400, 899003),
    ] {
        let (got, v) = call(&s, "POST", path, &body).await;
        assert_eq!((got, error_code(&v)), (status, code), "{path} {body}: {v}");
    }
    assert_eq!(head(&s).await, head_before, "no refused request wrote anything");
    // The same settings again change nothing and are not an error (except a group's, above).
    assert_eq!(call(&s, "POST", "/v1/users/annie/nodisturb", &json!({"single": {"add": ["benny"]}, "global": 1})).await.0, 204);
    assert_eq!(head(&s).await, head_before);
    assert_eq!(call(&s, "POST", "/v1/users/annie/nodisturb", &json!({"group": {"remove": [1]}})).await.0, 204);
    assert_eq!(call(&s, "POST", "/v1/users/annie/groupsShield", &json!({"add": [1]})).await.0, 204);
    assert_eq!(call(&s, "POST", "/v1/users/annie/groupsShield", &json!({"add": [1], "remove": []})).await.0, 204, "idempotent");
    let (_, trail) = s.get("/audit/events?uid=a1%231&order=asc").await;
    let kinds: Vec<&str> = trail["events"].as_array().expect("events").iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "tenant.no_disturb_changed").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "tenant.groups_shielded").count(), 1, "{kinds:?}");
}

#[tokio::test]
async fn chatrooms_have_members_who_hear_each_other_and_forbidden_members_who_cannot_speak() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = jm_server(dir.path()).await;
    register(&s, &["liming", "xiaom", "caiyh", "other"]).await;
    let (status, v) =
        call(&s, "POST", "/v1/chatroom/", &json!({"owner_username": "liming", "name": "测试聊天室", "description": "测试", "members_username": ["xiaom"]}))
            .await;
    assert_eq!((status, &v), (201, &json!({"chatroom_id": 1})));
    assert_eq!(call(&s, "PUT", "/v1/chatroom/1/members", &json!(["caiyh"])).await.0, 204);
    let (status, rooms) = call(&s, "POST", "/v1/chatroom/batch", &json!([1, 9])).await;
    assert_eq!(status, 200, "{rooms}");
    assert_eq!(rooms.as_array().map(Vec::len), Some(1), "unknown ids are left out: {rooms}");
    let r = &rooms[0];
    assert_eq!(
        (&r["id"], &r["owner_username"], &r["max_member_count"], &r["name"], &r["description"], &r["total_member_count"]),
        (&json!(1), &json!("liming"), &json!(10000), &json!("测试聊天室"), &json!("测试"), &json!(3))
    );
    assert_eq!(call(&s, "GET", "/v1/users/caiyh/chatroom", &Value::Null).await.1[0]["id"], 1);
    assert_eq!(call(&s, "GET", "/v1/users/other/chatroom", &Value::Null).await.1, json!([]));
    let (_, page) = call(&s, "GET", "/v1/chatroom?start=0&count=10", &Value::Null).await;
    assert_eq!((&page["total"], &page["count"], &page["rooms"][0]["id"]), (&json!(1), &json!(1), &json!(1)), "{page}");
    let (_, members) = call(&s, "GET", "/v1/chatroom/1/members?start=0&count=10", &Value::Null).await;
    assert_eq!(members["total"], 3, "{members}");
    let names: Vec<&str> = members["users"].as_array().expect("users").iter().filter_map(|u| u["username"].as_str()).collect();
    assert_eq!(names, ["liming", "xiaom", "caiyh"]);
    assert_eq!(members["users"][2]["room_ctime"].as_str().map(str::len), Some(19), "{members}");

    // Members hear the room (no conversation is made for it); a forbidden member cannot speak.
    assert_eq!(s.post("/user/token", &json!({"uid": "a1#2", "token": "tx", "device_flag": 1})).await.0, 200);
    let mut xiaom = Client::logged_in(&s, Kind::Tcp, "a1#2", "tx", 1, 5).await;
    let (status, v) = call(&s, "POST", "/v1/messages", &text_message("caiyh", "chatroom", json!(1), "hi room")).await;
    assert_eq!(status, 201, "{v}");
    let (recv, _) = crate::gateway::recv(&mut xiaom).await;
    assert_eq!((recv.channel_id.as_str(), recv.channel_type), ("a1#r1", 9));
    assert_eq!(call(&s, "PUT", "/v1/chatroom/1/forbidden/caiyh?status=1", &Value::Null).await.0, 204);
    let (status, v) = call(&s, "POST", "/v1/messages", &text_message("caiyh", "chatroom", json!(1), "still?")).await;
    assert_eq!((status, error_code(&v)), (403, 899016), "{v}");
    let (_, members) = call(&s, "GET", "/v1/chatroom/1/members?start=2&count=1", &Value::Null).await;
    assert_eq!((&members["users"][0]["username"], &members["users"][0]["flag"]), (&json!("caiyh"), &json!(1)), "{members}");
    assert_eq!(call(&s, "PUT", "/v1/chatroom/1/forbidden/caiyh?status=0", &Value::Null).await.0, 204);
    assert_eq!(call(&s, "POST", "/v1/messages", &text_message("caiyh", "chatroom", json!(1), "back")).await.0, 201);
    let (status, v) = call(&s, "POST", "/v1/messages", &text_message("other", "chatroom", json!(1), "let me in")).await;
    assert_eq!((status, error_code(&v)), (403, 899016), "{v}");

    let head_before = head(&s).await;
    for (method, path, body, status, code) in [
        ("POST", "/v1/chatroom/", json!({"owner_username": "liming"}), 400, 899003),
        ("POST", "/v1/chatroom/", json!({"owner_username": "nobody1", "name": "x"}), 404, 899002),
        ("POST", "/v1/chatroom/", json!({"owner_username": "liming", "name": "x", "description": "d".repeat(251)}), 400, 899003),
        ("POST", "/v1/chatroom/batch", json!(["1"]), 400, 899003),
        ("PUT", "/v1/chatroom/9", json!({"name": "x"}), 404, 899006),
        ("PUT", "/v1/chatroom/1", json!({}), 400, 899003),
        ("PUT", "/v1/chatroom/1", json!({"owner_username": "other"}), 400, 899014),
        ("DELETE", "/v1/chatroom/9", Value::Null, 404, 899006),
        ("PUT", "/v1/chatroom/1/forbidden/caiyh?status=2", Value::Null, 400, 899003),
        ("PUT", "/v1/chatroom/1/forbidden/other?status=1", Value::Null, 400, 899014),
        ("PUT", "/v1/chatroom/1/members", json!(["caiyh"]), 409, 899011),
        ("DELETE", "/v1/chatroom/1/members", json!(["other"]), 400, 899014),
        ("PUT", "/v1/chatroom/1/members", json!(["nobody1"]), 404, 899002),
        ("GET", "/v1/chatroom/x/members?start=0&count=5", Value::Null, 400, 899003),
        ("GET", "/v1/chatroom?start=0&count=0", Value::Null, 400, 899003),
    ] {
        let (got, v) = call(&s, method, path, &body).await;
        assert_eq!((got, error_code(&v)), (status, code), "{method} {path} {body}: {v}");
    }
    assert_eq!(head(&s).await, head_before, "no refused request wrote anything");

    assert_eq!(call(&s, "PUT", "/v1/chatroom/1", &json!({"owner_username": "xiaom", "name": "renamed"})).await.0, 204);
    let (_, rooms) = call(&s, "POST", "/v1/chatroom/batch", &json!([1])).await;
    assert_eq!((&rooms[0]["owner_username"], &rooms[0]["name"]), (&json!("xiaom"), &json!("renamed")));
    assert_eq!(call(&s, "DELETE", "/v1/chatroom/1/members", &json!(["caiyh"])).await.0, 204);
    assert_eq!(call(&s, "GET", "/v1/users/caiyh/chatroom", &Value::Null).await.1, json!([]));
    assert_eq!(call(&s, "DELETE", "/v1/chatroom/1", &Value::Null).await.0, 204);
    assert_eq!(call(&s, "GET", "/v1/chatroom?start=0&count=10", &Value::Null).await.1["total"], 0);
    assert_eq!(call(&s, "GET", "/v1/users/xiaom/chatroom", &Value::Null).await.1, json!([]));
}

/// A multipart form with one file in the `filename` field.
async fn upload(s: &Server, kind: &str, name: &str, bytes: &[u8]) -> (u16, Value) {
    let boundary = "rookeryboundary7MA4YWxkTrZu0gW";
    let mut body =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
            .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let resp = s
        .client()
        .post(format!("http://{}/v1/resource?type={kind}", s.api))
        .header("Authorization", app())
        .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The first bytes of a PNG image of `width` x `height` (what a header reader needs).
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut b = vec![0x89u8];
    b.extend_from_slice(b"PNG\r\n\x1a\n");
    b.extend_from_slice(&13u32.to_be_bytes());
    b.extend_from_slice(b"IHDR");
    b.extend_from_slice(&width.to_be_bytes());
    b.extend_from_slice(&height.to_be_bytes());
    b.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&[0u8; 64]);
    b
}

#[tokio::test]
async fn uploads_are_stored_once_by_content_served_by_url_and_kept_by_backups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = jm_server(dir.path()).await;
    let image = png(640, 480);
    assert_eq!(&image[..8], b"\x89PNG\r\n\x1a\n");
    let (status, v) = upload(&s, "image", "test.png", &image).await;
    assert_eq!(status, 200, "{v}");
    let media_id = v["media_id"].as_str().expect("media_id").to_owned();
    let sha = media_id.strip_prefix("a1/image/").expect("<tag>/<type>/<sha256>").to_owned();
    assert_eq!((&v["width"], &v["height"], &v["format"], &v["fsize"]), (&json!(640), &json!(480), &json!("png"), &json!(image.len())), "{v}");
    assert_eq!(v["media_crc32"].as_u64(), Some(u64::from(crc32(&image))), "{v}");
    let head_once = head(&s).await;
    assert_eq!(upload(&s, "image", "again.png", &image).await.1["media_id"], media_id.as_str(), "the same bytes, the same media");
    assert_eq!(head(&s).await, head_once, "and no second record");

    let (status, v) = call(&s, "GET", &format!("/v1/resource?mediaId={media_id}"), &Value::Null).await;
    assert_eq!(status, 200, "{v}");
    let url = v["url"].as_str().expect("url").to_owned();
    assert!(url.ends_with(&format!("/media/{sha}")), "{url}");
    let resp = s.client().get(&url).send().await.expect("fetched");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.bytes().await.expect("body").to_vec(), image, "served back as uploaded, without credentials");
    assert_eq!(s.client().get(format!("http://{}/media/{}", s.api, "0".repeat(64))).send().await.expect("sent").status().as_u16(), 404);

    let (status, v) = upload(&s, "file", "report.PDF", b"%PDF-1.4 not really").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((&v["fname"], &v["fsize"]), (&json!("report.PDF"), &json!(19)), "{v}");
    let (status, v) = upload(&s, "voice", "hello.m4a", b"....ftypM4A ").await;
    assert_eq!((status, &v["format"]), (200, &json!("m4a")), "{v}");

    let head_before = head(&s).await;
    for (kind, bytes, status, code) in [
        ("image", b"not an image at all".to_vec(), 400, 899003),
        ("video", b"x".to_vec(), 400, 899003),
        ("file", Vec::new(), 400, 899003),
        ("file", vec![7u8; (8 << 20) + 1], 400, 899003),
    ] {
        let (got, v) = upload(&s, kind, "x.bin", &bytes).await;
        assert_eq!((got, error_code(&v)), (status, code), "{kind} of {} bytes: {v}", bytes.len());
    }
    for missing in [format!("a1/image/{}", "0".repeat(64)), format!("zz/image/{sha}"), "garbage".to_owned()] {
        let (got, v) = call(&s, "GET", &format!("/v1/resource?mediaId={missing}"), &Value::Null).await;
        assert_eq!(got, 404, "{missing}: {v}");
    }
    assert_eq!(head(&s).await, head_before, "no refused upload wrote anything");

    // A backup holds the uploads' bytes with the log that records them.
    let backup = dir.path().join("backup");
    let (status, v) = s.post("/backup", &json!({"dir": backup.to_str().expect("utf-8")})).await;
    assert_eq!(status, 200, "{v}");
    let copied = std::fs::read(backup.join("blobs/sha256").join(&sha[..2]).join(&sha[2..])).expect("the blob is in the backup");
    assert_eq!(copied, image);
    // A restore brings them back with the log: the restored server serves the same URL.
    let restored = dir.path().join("restored");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args(["restore", backup.to_str().expect("utf-8"), "--data-dir", restored.to_str().expect("utf-8")])
        .env("RUST_LOG", "warn")
        .output()
        .expect("rookery restore");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(s);
    let again = jm_server(&restored).await;
    let (status, v) = call(&again, "GET", &format!("/v1/resource?mediaId={media_id}"), &Value::Null).await;
    assert_eq!(status, 200, "{v}");
    let fetched = again.client().get(format!("http://{}/media/{sha}", again.api)).send().await.expect("fetched").bytes().await.expect("body");
    assert_eq!(fetched.to_vec(), image);
}

fn crc32(bytes: &[u8]) -> u32 {
    // CRC-32/IEEE, bit by bit: the test's own, not the server's.
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[tokio::test]
async fn cross_app_routes_name_users_of_the_apps_an_app_may_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let apps = r#"[{tag="a1", appkey="4f7aef34fb361292c566a1cd", master_secret="054d6103823a726fc12d0466", cross_apps=["B2B2B2B2B2B2B2B2B2B2B2B2"]},
                   {tag="b2", appkey="b2b2b2b2b2b2b2b2b2b2b2b2", master_secret="s2"},
                   {tag="c3", appkey="c3c3c3c3c3c3c3c3c3c3c3c3", master_secret="s3"}]"#;
    let s = Server::start(dir.path(), &[("ROOKERY_JMESSAGE_APPS", apps)]);
    let other = basic("b2b2b2b2b2b2b2b2b2b2b2b2:s2");
    register(&s, &["annie"]).await;
    let (status, v) = jm(&s, "POST", "/v1/users/", Some(&other), &json!([{"username": "bobby", "password": "password"}])).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(call(&s, "POST", "/v1/groups/", &json!({"owner_username": "annie", "name": "mixed"})).await.0, 201);

    let add = json!([{"appkey": "b2b2b2b2b2b2b2b2b2b2b2b2", "add": ["bobby"]}]);
    assert_eq!(call(&s, "POST", "/v1/cross/groups/1/members", &add).await.0, 204);
    let (status, list) = call(&s, "GET", "/v1/cross/groups/1/members/", &Value::Null).await;
    assert_eq!(status, 200, "{list}");
    let seen: Vec<(String, String, i64)> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|m| (m["username"].as_str().unwrap_or_default().to_owned(), m["appkey"].as_str().unwrap_or_default().to_owned(), m["flag"].as_i64().unwrap_or(-1)))
        .collect();
    assert_eq!(
        seen,
        [("annie".to_owned(), "4f7aef34fb361292c566a1cd".to_owned(), 1), ("bobby".to_owned(), "b2b2b2b2b2b2b2b2b2b2b2b2".to_owned(), 0)],
        "each with its app's appkey as configured"
    );
    assert_eq!(call(&s, "GET", "/v1/cross/users/annie/groups", &Value::Null).await.1[0]["gid"], 1);

    // The other app's user can send to the group it was added to, and can be blacklisted across apps.
    let to_group = json!({"from_uid": "b2#1", "channel_id": "a1#g1", "channel_type": 2, "payload": crate::support::b64("hi")});
    assert_eq!(s.post("/message/send", &to_group).await.0, 200);
    assert_eq!(call(&s, "PUT", "/v1/cross/users/annie/blacklist", &json!([{"appkey": "b2b2b2b2b2b2b2b2b2b2b2b2", "usernames": ["bobby"]}])).await.0, 204);
    let (_, listed) = call(&s, "GET", "/v1/cross/users/annie/blacklist", &Value::Null).await;
    assert_eq!((&listed[0]["username"], &listed[0]["appkey"]), (&json!("bobby"), &json!("b2b2b2b2b2b2b2b2b2b2b2b2")), "{listed}");
    let to_annie = json!({"from_uid": "b2#1", "channel_id": "a1#1", "channel_type": 1, "payload": crate::support::b64("hi")});
    assert_eq!(s.post("/message/send", &to_annie).await.0, 403);
    assert_eq!(call(&s, "DELETE", "/v1/cross/users/annie/blacklist", &json!([{"appkey": "b2b2b2b2b2b2b2b2b2b2b2b2", "usernames": ["bobby"]}])).await.0, 204);
    assert_eq!(s.post("/message/send", &to_annie).await.0, 200);

    let head_before = head(&s).await;
    for (method, path, body, status, code) in [
        ("POST", "/v1/cross/groups/1/members", json!([{"appkey": "c3c3c3c3c3c3c3c3c3c3c3c3", "add": ["x123"]}]), 400, 899003),
        ("POST", "/v1/cross/groups/1/members", json!([{"add": ["bobby"]}]), 400, 899003),
        ("POST", "/v1/cross/groups/1/members", json!([{"appkey": "b2b2b2b2b2b2b2b2b2b2b2b2", "add": ["nobody1"]}]), 404, 899002),
        ("POST", "/v1/cross/groups/1/members", json!([{"appkey": "b2b2b2b2b2b2b2b2b2b2b2b2", "add": ["bobby"]}]), 409, 899011),
        ("POST", "/v1/cross/groups/9/members", json!([{"appkey": "b2b2b2b2b2b2b2b2b2b2b2b2", "remove": ["bobby"]}]), 404, 899006),
        ("POST", "/v1/cross/users/annie/friends", json!({"appkey": "b2b2b2b2b2b2b2b2b2b2b2b2", "users": ["bobby"]}), 400, 899003),
        ("POST", "/v1/cross/users/annie/nodisturb", json!([{"appkey": "b2b2b2b2b2b2b2b2b2b2b2b2"}]), 400, 899003),
        ("PUT", "/v1/cross/users/annie/blacklist", json!([{"appkey": "b2b2b2b2b2b2b2b2b2b2b2b2", "usernames": []}]), 400, 899003),
    ] {
        let (got, v) = call(&s, method, path, &body).await;
        assert_eq!((got, error_code(&v)), (status, code), "{method} {path} {body}: {v}");
    }
    assert_eq!(head(&s).await, head_before, "no refused request wrote anything");
    // The other app has no cross apps: it cannot name the first one's users.
    let (status, v) =
        jm(&s, "PUT", "/v1/cross/users/bobby/blacklist", Some(&other), &json!([{"appkey": "4f7aef34fb361292c566a1cd", "usernames": ["annie"]}])).await;
    assert_eq!((status, error_code(&v)), (400, 899003), "{v}");

    // Chatrooms take members from cross apps the same way.
    assert_eq!(call(&s, "POST", "/v1/chatroom/", &json!({"owner_username": "annie", "name": "room"})).await.0, 201);
    assert_eq!(call(&s, "POST", "/cross/chatroom/1/members", &json!([{"appkey": "b2b2b2b2b2b2b2b2b2b2b2b2", "add": ["bobby"]}])).await.0, 204);
    assert_eq!(call(&s, "POST", "/v1/chatroom/batch", &json!([1])).await.1[0]["total_member_count"], 2);
}
