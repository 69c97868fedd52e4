//! The PopIM-style family (seed 003) against the real server: its parameters (query strings, forms
//! with `name[]=` arrays, JSON), envelope and codes; users, friends and applications, groups with the
//! roles the group decides, messages with quote, revoke and delete, unread counts by read time, the
//! home aggregate, uploads and QR codes; refusals that change nothing, mute expiry, and a restart.

use serde_json::{json, Value};

use crate::support::Server;

const APP: &str = r#"{tag="p1"}"#;

/// A POST with a form body (`pairs` may repeat a name, PHP-style `name[]`).
async fn post(s: &Server, path: &str, pairs: &[(&str, String)]) -> (u16, Value) {
    let body = serde_urlencoded::to_string(pairs).expect("form");
    let resp =
        s.client().post(format!("http://{}{}", s.api, path)).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A GET with a query string.
async fn get(s: &Server, path: &str, pairs: &[(&str, String)]) -> (u16, Value) {
    let query = serde_urlencoded::to_string(pairs).expect("query");
    let resp = s.client().get(format!("http://{}{}?{}", s.api, path, query)).send().await.expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn p(name: &'static str, v: impl ToString) -> (&'static str, String) {
    (name, v.to_string())
}

fn code(v: &Value) -> i64 {
    v["code"].as_i64().unwrap_or_else(|| panic!("an envelope: {v}"))
}

async fn head(s: &Server) -> Value {
    s.get("/audit/head").await.1
}

/// Registers `username` and answers its uid.
async fn add_user(s: &Server, username: &str, nickname: &str) -> u64 {
    let (status, v) = post(s, "/api/user/open_user", &[p("username", username), p("nickname", nickname), p("password", "secret1")]).await;
    assert_eq!((status, code(&v)), (200, 0), "{v}");
    v["data"]["uid"].as_u64().expect("uid")
}

/// `who`'s history with `peer`.
async fn history(s: &Server, who: u64, peer: u64, extra: Vec<(&'static str, String)>) -> Value {
    let mut pairs = vec![p("login_uid", who), p("id", peer), p("type", "friend")];
    pairs.extend(extra);
    get(s, "/api/message/get", &pairs).await.1["data"].clone()
}

fn mids(v: &Value) -> Vec<u64> {
    v.as_array().map(|a| a.iter().filter_map(|m| m["mid"].as_u64()).collect()).unwrap_or_default()
}

async fn unread(s: &Server, who: u64, peer: u64) -> Value {
    get(s, "/api/message/unreadcount", &[p("login_uid", who), p("id", peer), p("type", "friend")]).await.1["data"].clone()
}

async fn act(s: &Server, path: &str, who: u64, peer: u64, mid: u64, ty: Option<u64>) -> (u16, Value) {
    let mut pairs = vec![p("login_uid", who), p("id", peer), p("type", "friend"), p("mid", mid)];
    if let Some(t) = ty {
        pairs.push(p("ty", t));
    }
    post(s, path, &pairs).await
}

/// A multipart form with one file in the `file` field.
async fn upload(s: &Server, path: &str, name: &'static str, bytes: Vec<u8>) -> (u16, Value) {
    let boundary = "popimboundary7MA4YWxkTrZu0gW";
    let mut body =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
            .into_bytes();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let resp = s
        .client()
        .post(format!("http://{}{}", s.api, path))
        .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .expect("sent");
    (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
}

fn server(dir: &std::path::Path) -> Server {
    Server::start(dir, &[("ROOKERY_POPIM", APP)])
}

#[tokio::test]
async fn without_an_app_the_family_refuses_and_sms_routes_say_they_are_not_supported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]);
    let (status, v) = get(&s, "/api/pop/getsetting", &[]).await;
    assert_eq!((status, code(&v)), (401, 3), "{v}");
    assert!(v["msg"].as_str().unwrap_or_default().contains("[popim]"), "{v}");

    let s2dir = tempfile::tempdir().expect("tempdir");
    let s = server(s2dir.path());
    for path in ["/web/service/send_sms", "/h5/user/send_sms_pass", "/web/service/forget_pass", "/api/login/join"] {
        let (status, v) = post(&s, path, &[p("phone", 13800000000u64), p("type", "register")]).await;
        assert_eq!((status, code(&v)), (501, 6), "{path}: {v}");
        assert!(v["msg"].as_str().unwrap_or_default().contains("sms"), "{v}");
    }
    let (status, v) = get(&s, "/api/pop/getsetting", &[]).await;
    assert_eq!((status, code(&v), &v["data"]["register"]), (200, 0, &json!("on")), "{v}");
    let (status, v) = get(&s, "/api/no/such", &[]).await;
    assert_eq!((status, code(&v)), (404, 2), "{v}");
    // A token, when configured, is required.
    let tdir = tempfile::tempdir().expect("tempdir");
    let t = Server::start(tdir.path(), &[("ROOKERY_POPIM", r#"{tag="p1", token="backend-secret"}"#)]);
    assert_eq!(get(&t, "/api/pop/getsetting", &[]).await.0, 401);
    let resp = t.client().get(format!("http://{}/api/pop/getsetting", t.api)).header("token", "backend-secret").send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn users_register_read_update_and_change_passwords_with_bad_input_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    // user/add is a GET in the document.
    let (status, v) = get(&s, "/api/user/add", &[p("username", "jerry"), p("nickname", "小老鼠"), p("password", "secret1"), p("sign", "hi")]).await;
    assert_eq!((status, code(&v), &v["data"]["uid"]), (200, 0, &json!(1)), "{v}");
    let tom = add_user(&s, "tom", "猫猫").await;
    let before = head(&s).await;
    for (pairs, want) in [
        (vec![p("username", "jerry"), p("nickname", "x"), p("password", "secret1")], (409, 4)),
        (vec![p("username", "bad name"), p("nickname", "x"), p("password", "secret1")], (400, 1)),
        (vec![p("username", "ok1"), p("password", "secret1")], (400, 1)),
        (vec![p("username", "ok1"), p("nickname", "x"), p("password", "abc")], (400, 1)),
    ] {
        let (status, v) = post(&s, "/api/user/open_user", &pairs).await;
        assert_eq!((status, code(&v)), want, "{pairs:?}: {v}");
        assert!(!v["msg"].as_str().unwrap_or_default().is_empty());
    }
    assert_eq!(head(&s).await, before, "refusals write nothing");

    let (_, v) = get(&s, "/api/user/get", &[p("uid", 1)]).await;
    assert_eq!(v["data"]["username"], "jerry");
    assert_eq!(
        (&v["data"]["nickname"], &v["data"]["sign"], &v["data"]["state"], &v["data"]["account_state"]),
        (&json!("小老鼠"), &json!("hi"), &json!("offline"), &json!("normal"))
    );
    // A credential check: username + password.
    assert_eq!(code(&get(&s, "/api/user/get", &[p("username", "jerry"), p("password", "secret1")]).await.1), 0);
    assert_eq!(get(&s, "/api/user/get", &[p("username", "jerry"), p("password", "wrong!")]).await.0, 403);
    assert_eq!(get(&s, "/api/user/get", &[p("uid", 99)]).await.0, 404);
    assert_eq!(get(&s, "/api/user/get", &[p("uid", "x")]).await.0, 400);
    // JSON bodies and ids as strings work too.
    let resp = s.client().post(format!("http://{}/api/user/multiGet", s.api)).json(&json!({"uid": ["2", 1, 77]})).send().await.expect("sent");
    let v: Value = resp.json().await.expect("json");
    let names: Vec<&str> = v["data"].as_array().expect("array").iter().filter_map(|u| u["username"].as_str()).collect();
    assert_eq!(names, ["tom", "jerry"], "{v}");
    let resp =
        s.client().post(format!("http://{}/api/user/update", s.api)).header("content-type", "application/json").body("{not json").send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 400);

    assert_eq!(code(&post(&s, "/api/user/update", &[p("login_uid", tom), p("nickname", "大猫"), p("sign", "懒")]).await.1), 0);
    assert_eq!(get(&s, "/api/user/get", &[p("uid", tom)]).await.1["data"]["nickname"], "大猫");
    let (status, _) = post(&s, "/api/user/update", &[p("login_uid", tom), p("account_state", "frozen")]).await;
    assert_eq!(status, 400);
    // Passwords: the old one must match and the new one be repeated.
    let change = |old: &str, p1: &str, p2: &str| vec![p("login_uid", tom), p("password_old", old), p("password1", p1), p("password2", p2)];
    assert_eq!(post(&s, "/api/user/updatepassword", &change("wrong1", "newpass", "newpass")).await.0, 403);
    assert_eq!(post(&s, "/api/user/updatepassword", &change("secret1", "newpass", "other")).await.0, 400);
    assert_eq!(code(&post(&s, "/api/user/updatepassword", &change("secret1", "newpass", "newpass")).await.1), 0);
    assert_eq!(code(&get(&s, "/api/user/get", &[p("username", "tom"), p("password", "newpass")]).await.1), 0);
    // Disabled: shown so, and it cannot act.
    assert_eq!(code(&post(&s, "/api/user/update", &[p("login_uid", tom), p("account_state", "disabled")]).await.1), 0);
    assert_eq!(get(&s, "/api/user/get", &[p("uid", tom)]).await.1["data"]["account_state"], "disabled");
    let (status, v) = post(&s, "/api/friend/apply", &[p("login_uid", tom), p("friend_uid", 1)]).await;
    assert_eq!((status, code(&v)), (403, 5), "{v}");
}

#[tokio::test]
async fn friend_applications_are_answered_by_their_addressee_and_lists_group_by_initials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    let tom = add_user(&s, "tom", "Tom").await;
    let jerry = add_user(&s, "jerry", "jerry").await;
    let cat = add_user(&s, "cat", "喵喵").await;
    let (_, v) = post(&s, "/api/friend/apply", &[p("login_uid", tom), p("friend_uid", jerry), p("postscript", "我是tom")]).await;
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!(post(&s, "/api/friend/apply", &[p("login_uid", jerry), p("friend_uid", tom)]).await.0, 409, "one pending request per pair");
    assert_eq!(get(&s, "/api/friend/applycount", &[p("login_uid", jerry)]).await.1["data"], 1);
    let (_, list) = get(&s, "/api/friend/applylist", &[p("login_uid", jerry)]).await;
    let nid = list["data"][0]["nid"].as_u64().expect("nid");
    assert_eq!((&list["data"][0]["from"], &list["data"][0]["operation"], &list["data"][0]["nickname"]), (&json!(tom), &json!("not_operated"), &json!("Tom")));
    assert_eq!(list["data"][0]["data"], json!({"postscript": "我是tom"}).to_string());
    // Only the addressee answers; nothing changes otherwise.
    let before = head(&s).await;
    for by in [tom, cat] {
        let (status, v) = post(&s, "/api/friend/agree", &[p("login_uid", by), p("nid", nid)]).await;
        assert_eq!((status, code(&v)), (403, 3), "{v}");
    }
    assert_eq!(post(&s, "/api/friend/agree", &[p("login_uid", jerry), p("nid", 999)]).await.0, 404);
    assert_eq!(head(&s).await, before);
    assert_eq!(code(&post(&s, "/api/friend/agree", &[p("login_uid", jerry), p("nid", nid)]).await.1), 0);
    assert_eq!(post(&s, "/api/friend/refuse", &[p("login_uid", jerry), p("nid", nid)]).await.0, 409, "answered already");
    let (_, detail) = get(&s, "/api/friend/applydetail", &[p("login_uid", jerry), p("nid", nid)]).await;
    assert_eq!((&detail["data"]["operation"], &detail["data"]["username"]), (&json!("agree"), &json!("tom")));
    assert_eq!(get(&s, "/api/friend/applycount", &[p("login_uid", jerry)]).await.1["data"], 0);

    // Address book by initial: remark first, else nickname; CJK under '#'.
    assert_eq!(code(&post(&s, "/api/friend/add", &[p("login_uid", tom), p("friend_uid", cat)]).await.1), 0);
    assert_eq!(code(&post(&s, "/api/friend/remark", &[p("login_uid", tom), p("friend_uid", jerry), p("remark", "mouse")]).await.1), 0);
    let (_, book) = get(&s, "/api/friend/getlist", &[p("login_uid", tom)]).await;
    assert_eq!(book["data"]["M"][jerry.to_string()]["name"], "mouse", "{book}");
    assert_eq!(book["data"]["#"][cat.to_string()]["name"], "喵喵", "{book}");
    assert_eq!(post(&s, "/api/friend/remark", &[p("login_uid", jerry), p("friend_uid", cat), p("remark", "x")]).await.0, 404, "not friends");

    // A stranger one chats with is on the temp list, not in the book.
    let dog = add_user(&s, "dog", "Dog").await;
    assert_eq!(code(&post(&s, "/api/message/send", &[p("login_uid", dog), p("to", tom), p("type", "friend"), p("content", "hello")]).await.1), 0);
    let (_, temp) = get(&s, "/api/friend/get_temp_list", &[p("login_uid", tom)]).await;
    assert_eq!(temp["data"]["D"][dog.to_string()]["uid"], dog, "{temp}");
    assert_eq!(code(&post(&s, "/api/friend/delete", &[p("login_uid", tom), p("friend_uid", jerry)]).await.1), 0);
    let (_, book) = get(&s, "/api/friend/getlist", &[p("login_uid", jerry)]).await;
    assert_eq!(book["data"], json!({}), "deleted both ways: {book}");
}

#[tokio::test]
async fn group_roles_are_the_groups_and_mutes_expire_on_their_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    let owner = add_user(&s, "owner", "Owner").await;
    let m1 = add_user(&s, "mgr", "Mgr").await;
    let a = add_user(&s, "ann", "Ann").await;
    let x = add_user(&s, "xen", "Xen").await;
    let (_, v) = post(&s, "/api/group/create", &[p("login_uid", owner), p("members[]", m1), p("members[]", a)]).await;
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!(v["data"]["groupname"], "群聊(Owner,Mgr,Ann)");
    let gid = v["data"]["gid"].as_str().expect("gid").parse::<u64>().expect("number");
    assert_eq!(code(&post(&s, "/api/group/manager", &[p("login_uid", owner), p("gid", gid), p("uid", m1), p("value", 1)]).await.1), 0);
    let (_, v) = post(&s, "/api/group/ismanager", &[p("login_uid", a), p("gid", gid), p("uid", m1)]).await;
    assert_eq!(v["data"], json!({"is_manager": 1}));

    // Refusals by role leave the group as it was.
    let before = head(&s).await;
    for (path, pairs) in [
        ("/api/group/memberdel", vec![p("login_uid", m1), p("gid", gid), p("members[]", a)]),
        ("/api/group/delete", vec![p("login_uid", a), p("gid", gid)]),
        ("/api/group/manager", vec![p("login_uid", m1), p("gid", gid), p("uid", a), p("value", 1)]),
        ("/api/group/forbiddenuser", vec![p("login_uid", a), p("gid", gid), p("uid", m1), p("time", 0)]),
        ("/api/group/forbiddenuser", vec![p("login_uid", m1), p("gid", gid), p("uid", owner), p("time", 4_000_000_000u64)]),
        ("/api/group/forbiddenall", vec![p("login_uid", a), p("gid", gid), p("value", 1)]),
        ("/api/group/memberadd", vec![p("login_uid", x), p("gid", gid), p("members[]", x)]),
    ] {
        let (status, v) = post(&s, path, &pairs).await;
        assert_eq!((status, code(&v)), (403, 3), "{path} {pairs:?}: {v}");
    }
    assert_eq!(post(&s, "/api/group/detail", &[p("login_uid", owner), p("gid", 999)]).await.0, 404);
    assert_eq!(head(&s).await, before, "refusals write nothing");

    // A mute until a time in the near future refuses sends, then expires on its own.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(code(&post(&s, "/api/group/forbiddenuser", &[p("login_uid", m1), p("gid", gid), p("uid", a), p("time", now + 2)]).await.1), 0);
    let send = |from: u64, text: &str| vec![p("login_uid", from), p("to", gid), p("type", "group"), p("content", text.to_owned())];
    assert_eq!(post(&s, "/api/message/send", &send(a, "muted?")).await.0, 403);
    tokio::time::sleep(std::time::Duration::from_millis(2600)).await;
    assert_eq!(code(&post(&s, "/api/message/send", &send(a, "free")).await.1), 0, "the mute ended by itself");
    // forbiddenall mutes ordinary members only; 0 lifts at once.
    assert_eq!(code(&post(&s, "/api/group/forbiddenall", &[p("login_uid", owner), p("gid", gid), p("value", 1)]).await.1), 0);
    assert_eq!(post(&s, "/api/message/send", &send(a, "x")).await.0, 403);
    assert_eq!(code(&post(&s, "/api/message/send", &send(m1, "managers may")).await.1), 0);
    assert_eq!(code(&post(&s, "/api/group/forbiddenall", &[p("login_uid", owner), p("gid", gid), p("value", 0)]).await.1), 0);
    assert_eq!(code(&post(&s, "/api/message/send", &send(a, "y")).await.1), 0);
    // A non-member cannot send; it joins the (public) group and can.
    assert_eq!(post(&s, "/api/message/send", &send(x, "hi")).await.0, 403);
    assert_eq!(code(&post(&s, "/api/group/join", &[p("login_uid", x), p("gid", gid)]).await.1), 0);
    assert_eq!(code(&post(&s, "/api/message/send", &send(x, "hi")).await.1), 0);

    // Members page by number; detail; remark.
    let (_, page) = get(&s, "/api/group/members", &[p("login_uid", a), p("gid", gid), p("limit", 2), p("index", owner)]).await;
    let keys: Vec<&String> = page["data"].as_object().expect("object").keys().collect();
    assert_eq!(keys, [&m1.to_string(), &a.to_string()], "{page}");
    assert_eq!(code(&post(&s, "/api/group/remark", &[p("login_uid", a), p("gid", gid), p("remark", "my group")]).await.1), 0);
    let (_, d) = get(&s, "/api/group/detail", &[p("login_uid", a), p("gid", gid)]).await;
    assert_eq!((&d["data"]["info"]["uid"], &d["data"]["info"]["remark"]), (&json!(owner), &json!("my group")), "{d}");
    assert_eq!(d["data"]["members"].as_object().map(|m| m.len()), Some(4));

    // The owner leaves: the manager owns the group now.
    assert_eq!(code(&post(&s, "/api/group/leave", &[p("login_uid", owner), p("gid", gid)]).await.1), 0);
    let (_, d) = get(&s, "/api/group/detail", &[p("login_uid", a), p("gid", gid), p("simple", 1)]).await;
    assert_eq!(d["data"]["info"]["uid"], m1, "{d}");
    assert!(d["data"].get("members").is_none());
    assert_eq!(code(&post(&s, "/api/group/memberdel", &[p("login_uid", m1), p("gid", gid), p("members[]", x)]).await.1), 0);
    assert_eq!(code(&post(&s, "/api/group/delete", &[p("login_uid", m1), p("gid", gid)]).await.1), 0);
    assert_eq!(get(&s, "/api/group/detail", &[p("login_uid", m1), p("gid", gid)]).await.0, 404);
}

#[tokio::test]
async fn messages_quote_revoke_delete_and_count_unread_by_read_time_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = server(dir.path());
    let tom = add_user(&s, "tom", "Tom").await;
    let jerry = add_user(&s, "jerry", "Jerry").await;
    let send = |from: u64, to: u64, text: &str| vec![p("login_uid", from), p("to", to), p("type", "friend"), p("content", text.to_owned())];
    for text in ["one", "two", "three"] {
        assert_eq!(code(&post(&s, "/api/message/send", &send(tom, jerry, text)).await.1), 0);
    }
    let h = history(&s, jerry, tom, vec![]).await;
    assert_eq!(mids(&h), [1, 2, 3]);
    assert_eq!((&h[0]["from"], &h[0]["content"]), (&json!(tom.to_string()), &json!("one")));
    // Pages below a cursor, oldest first.
    let h = history(&s, jerry, tom, vec![p("mid", 3), p("limit", 1)]).await;
    assert_eq!(h[0]["mid"], 2, "{h}");
    // Unread: own messages never count; read marks by time.
    assert_eq!((unread(&s, jerry, tom).await, unread(&s, tom, jerry).await), (json!(3), json!(0)));
    assert_eq!(code(&post(&s, "/api/message/updateLastReadTime", &[p("login_uid", jerry), p("id", tom), p("type", "friend")]).await.1), 0);
    assert_eq!(unread(&s, jerry, tom).await, json!(0));
    assert_eq!(code(&post(&s, "/api/message/send", &send(tom, jerry, "four")).await.1), 0);
    assert_eq!(unread(&s, jerry, tom).await, json!(1));
    assert_eq!(code(&post(&s, "/api/friend/update", &[p("login_uid", jerry), p("friend_uid", tom), p("last_read_time", 0)]).await.1), 0);
    assert_eq!(unread(&s, jerry, tom).await, json!(4), "read up to before everything");

    // Quote: a message of the conversation, its content resolved when read.
    let mut quoting = send(jerry, tom, "re: two");
    quoting.push(p("quote_mid", 2));
    assert_eq!(code(&post(&s, "/api/message/send", &quoting).await.1), 0);
    let mut bad_quote = send(jerry, tom, "x");
    bad_quote.push(p("quote_mid", 99));
    assert_eq!(post(&s, "/api/message/send", &bad_quote).await.0, 404);
    let h = history(&s, tom, jerry, vec![]).await;
    assert_eq!((&h[4]["quote_mid"], &h[4]["quote_content"]), (&json!(2), &json!("two")), "{h}");

    // Revoke: the sender only; readers see no content.
    let before = head(&s).await;
    assert_eq!(act(&s, "/api/message/revoke", jerry, tom, 1, None).await.0, 403, "not the sender");
    assert_eq!(act(&s, "/api/message/delete", jerry, tom, 1, Some(2)).await.0, 403, "not the sender");
    assert_eq!(act(&s, "/api/message/delete", jerry, tom, 1, Some(3)).await.0, 400);
    assert_eq!(act(&s, "/api/message/revoke", tom, jerry, 77, None).await.0, 404);
    assert_eq!(head(&s).await, before);
    assert_eq!(code(&act(&s, "/api/message/revoke", tom, jerry, 1, None).await.1), 0);
    let h = history(&s, jerry, tom, vec![]).await;
    assert_eq!((&h[0]["mid"], &h[0]["content"], &h[0]["revoked"]), (&json!(1), &json!(""), &json!(1)), "{h}");
    // Delete for me (ty 1): gone for jerry only; for all (ty 2, the sender): gone for both.
    assert_eq!(code(&act(&s, "/api/message/delete", jerry, tom, 2, Some(1)).await.1), 0);
    assert_eq!((mids(&history(&s, jerry, tom, vec![]).await), mids(&history(&s, tom, jerry, vec![]).await)), (vec![1, 3, 4, 5], vec![1, 2, 3, 4, 5]));
    assert_eq!(code(&act(&s, "/api/message/delete", tom, jerry, 3, Some(2)).await.1), 0);
    assert_eq!(mids(&history(&s, tom, jerry, vec![]).await), [1, 2, 4, 5]);

    // The home aggregate, then a kill: the same afterwards.
    let before_kill = get(&s, "/api/pop/get", &[p("login_uid", jerry)]).await.1;
    assert_eq!(before_kill["data"]["mine"]["username"], "jerry", "{before_kill}");
    let chat = &before_kill["data"]["chatting"][format!("friend{tom}")];
    assert_eq!((&chat["type"], &chat["items"][0]["content"]), (&json!("friend"), &json!("re: two")), "{before_kill}");
    s.kill9();
    let s = server(dir.path());
    let after = get(&s, "/api/pop/get", &[p("login_uid", jerry)]).await.1;
    assert_eq!(after["data"]["chatting"], before_kill["data"]["chatting"], "conversations after a kill");
    assert_eq!(mids(&history(&s, jerry, tom, vec![]).await), [1, 4, 5], "revoked, hidden and deleted messages after a kill");

    // The audit trail names the user each change was made for.
    let (_, trail) = s.get("/audit/events?kind=channel.message_deleted").await;
    assert_eq!(trail["events"][0]["actor"], json!({"type": "delegated", "credential": "popim:p1", "uid": format!("p1#{tom}")}), "{trail}");
}

#[tokio::test]
async fn replies_uploads_and_qr_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(dir.path());
    let add = |kind: u8, title: &str, weights: i64, default: u8| {
        vec![p("type", kind), p("title", title.to_owned()), p("content", "c"), p("weights", weights), p("is_default", default)]
    };
    for (kind, title, w, d) in [(1, "welcome", 1, 1), (2, "quick", 5, 0), (2, "quicker", 9, 1), (1, "hello", 3, 1)] {
        assert_eq!(code(&post(&s, "/api/reply/add", &add(kind, title, w, d)).await.1), 0);
    }
    let (_, v) = get(&s, "/api/reply/get", &[]).await;
    let titles = |k: &str| {
        v["data"][k].as_array().unwrap().iter().map(|r| (r["title"].as_str().unwrap().to_owned(), r["is_default"].as_u64().unwrap())).collect::<Vec<_>>()
    };
    assert_eq!(titles("1"), [("hello".to_owned(), 1), ("welcome".to_owned(), 0)], "heaviest first; one default per type");
    assert_eq!(titles("2"), [("quicker".to_owned(), 1), ("quick".to_owned(), 0)]);
    assert_eq!(post(&s, "/api/reply/add", &add(4, "x", 0, 0)).await.0, 400);
    let mut update = add(2, "quickest", 9, 1);
    update.push(p("rid", 3));
    assert_eq!(code(&post(&s, "/api/reply/update", &update).await.1), 0);
    assert_eq!(post(&s, "/api/reply/delete", &[p("rid", 42)]).await.0, 404);
    assert_eq!(code(&post(&s, "/api/reply/delete", &[p("rid", 1)]).await.1), 0);
    let (_, v) = get(&s, "/api/reply/get", &[]).await;
    assert_eq!(v["data"]["1"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["data"]["2"][0]["title"], "quickest");

    // Uploads: an image (checked as one), a file; the src serves the bytes.
    let png = {
        let mut b = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0, 3, 0, 0, 0, 2, 8, 2, 0, 0, 0];
        b.extend_from_slice(&[0; 16]);
        b
    };
    let (status, v) = upload(&s, "/api/upload/img", "a.png", png.clone()).await;
    assert_eq!((status, code(&v), &v["data"]["name"]), (200, 0, &json!("a.png")), "{v}");
    let src = v["data"]["src"].as_str().expect("src").to_owned();
    let served = s.client().get(format!("http://{}{}", s.api, src)).send().await.expect("sent").bytes().await.expect("bytes");
    assert_eq!(served.as_ref(), png.as_slice());
    let (status, v) = upload(&s, "/api/upload/img", "not.png", b"plain text".to_vec()).await;
    assert_eq!((status, code(&v)), (400, 1), "not an image: {v}");
    let (status, v) = upload(&s, "/api/upload/file", "notes.txt", b"plain text".to_vec()).await;
    assert_eq!((status, code(&v), &v["data"]["size"]), (200, 0, &json!("10 B")), "{v}");
    let (status, _) = upload(&s, "/api/upload/avatar", "a.png", png).await;
    assert_eq!(status, 400, "an avatar needs login_uid");

    // QR codes: an SVG image; no content is an error.
    let resp = s.client().get(format!("http://{}/api/qrcode/get?content=hello", s.api)).send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "image/svg+xml");
    assert!(resp.text().await.expect("text").contains("<svg"));
    let (status, v) = get(&s, "/api/qrcode/get", &[]).await;
    assert_eq!((status, code(&v)), (400, 1));
}
