//! The OpenIM family (seed 004) against the real server: its door (the `secret` of `/auth/*`, the app
//! manager's token everywhere else), every endpoint with its envelope, the document's limits at their
//! boundaries with nothing changed by a refusal, a registered user receiving `send_msg` over WKProto
//! with the token it got, and everything surviving a kill.

use rookery::gateway::packet::ReasonCode;
use serde_json::{json, Value};

use crate::gateway::{recv, Client, Kind};
use crate::support::Server;

const APP: &str = r#"{secret="tuoyun", admin_uid="openIM123456"}"#;
const ADMIN: &str = "openIM123456";

async fn oim(s: &Server, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = s.client().post(format!("http://{}{}", s.api, path)).json(body);
    if let Some(t) = token {
        req = req.header("token", t);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn head(s: &Server) -> Value {
    s.get("/audit/head").await.1
}

fn code(v: &Value) -> i64 {
    v["errCode"].as_i64().unwrap_or_else(|| panic!("an OpenIM envelope: {v}"))
}

/// Registers `uid` on `platform` and answers its token.
async fn register(s: &Server, uid: &str, platform: u8, name: &str) -> String {
    let (status, v) = oim(s, "/auth/user_register", None, &json!({"secret": "tuoyun", "platform": platform, "uid": uid, "name": name})).await;
    assert_eq!((status, code(&v)), (200, 0), "{v}");
    assert_eq!(v["data"]["uid"], uid, "{v}");
    v["data"]["token"].as_str().expect("token").to_owned()
}

/// A server with the app, its manager registered; answers the manager's token.
async fn oim_server(dir: &std::path::Path) -> (Server, String) {
    let s = Server::start(dir, &[("ROOKERY_OPENIM", APP)]);
    let admin = register(&s, ADMIN, 1, "admin").await;
    (s, admin)
}

#[tokio::test]
async fn without_an_app_the_family_refuses_everything_and_says_how_to_configure_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]);
    for path in ["/auth/user_register", "/manager/get_all_users_uid"] {
        let (status, v) = oim(&s, path, Some("t"), &json!({"secret": "tuoyun", "platform": 1, "uid": "u", "name": "", "operationID": "1"})).await;
        assert_eq!((status, code(&v)), (401, 801), "{path}: {v}");
        assert!(v["errMsg"].as_str().unwrap_or_default().contains("[openim]"), "{v}");
    }
}

#[tokio::test]
async fn the_secret_and_the_managers_token_guard_the_family_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, admin) = oim_server(dir.path()).await;
    let user = register(&s, "u1", 5, "U1").await;
    let before = head(&s).await;

    // auth/*: a wrong or missing secret.
    for (body, want) in [
        (json!({"secret": "wrong", "platform": 1, "uid": "u2", "name": ""}), (401, 801)),
        (json!({"platform": 1, "uid": "u2", "name": ""}), (400, 803)),
        (json!({"secret": "s".repeat(33), "platform": 1, "uid": "u2", "name": ""}), (400, 803)),
    ] {
        for path in ["/auth/user_register", "/auth/user_token"] {
            let (status, v) = oim(&s, path, None, &body).await;
            assert_eq!((status, code(&v)), want, "{path} {body}: {v}");
            assert!(!v["errMsg"].as_str().unwrap_or_default().is_empty());
        }
    }
    // Every manager route: no token, a garbled one, an ordinary user's one.
    let routes = [
        ("/group/create_group", json!({"operationID": "1", "groupName": "g", "memberList": [{"uid": "u1", "setRole": 1}]})),
        ("/friend/import_friend", json!({"operationID": "1", "uid": "u1", "ownerUid": ADMIN})),
        ("/friend/add_blacklist", json!({"operationID": "1", "uid": "u1", "ownerUid": ADMIN})),
        ("/user/update_user_info", json!({"operationID": "1", "uid": "u1", "name": "x"})),
        ("/user/get_user_info", json!({"operationID": "1", "uidList": ["u1"]})),
        ("/manager/delete_user", json!({"operationID": "1", "deleteUidList": ["u1"]})),
        ("/manager/get_all_users_uid", json!({"operationID": "1"})),
        ("/manager/send_msg", json!({"operationID": "1", "sendID": ADMIN, "recvID": "u1", "content": {"text": "x"}, "contentType": 101, "sessionType": 1})),
        ("/group/invite_user_to_group", json!({"operationID": "1", "groupID": "0", "uidList": ["u1"], "reason": "r"})),
        ("/group/kick_group", json!({"operationID": "1", "groupID": "0", "uidListInfo": [{"userId": "u1"}]})),
    ];
    for (path, body) in &routes {
        for token in [None, Some("garbage"), Some(user.as_str()), Some("")] {
            let (status, v) = oim(&s, path, token, body).await;
            assert_eq!((status, code(&v)), (401, 702), "{path} with {token:?}: {v}");
        }
    }
    assert_eq!(head(&s).await, before, "a refused request writes nothing");

    // The manager's token passes; a new token for the manager's platform replaces the old one.
    let (status, v) = oim(&s, "/manager/get_all_users_uid", Some(&admin), &json!({"operationID": "1"})).await;
    assert_eq!((status, &v), (200, &json!({"errCode": 0, "errMsg": "", "uidList": [ADMIN, "u1"]})));
    let (_, v) = oim(&s, "/auth/user_token", None, &json!({"secret": "tuoyun", "platform": 1, "uid": ADMIN})).await;
    let renewed = v["data"]["token"].as_str().expect("token").to_owned();
    let expires = v["data"]["expiredTime"].as_u64().expect("expiredTime");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!((now + 7 * 24 * 3600 - 5..=now + 7 * 24 * 3600 + 5).contains(&expires), "seven days, in seconds: {expires}");
    assert_eq!(code(&oim(&s, "/manager/get_all_users_uid", Some(&admin), &json!({"operationID": "1"})).await.1), 702, "replaced");
    assert_eq!(code(&oim(&s, "/manager/get_all_users_uid", Some(&renewed), &json!({"operationID": "1"})).await.1), 0);
    // operationID is required on manager routes.
    let (status, v) = oim(&s, "/manager/get_all_users_uid", Some(&renewed), &json!({})).await;
    assert_eq!((status, code(&v)), (400, 803), "{v}");
    // Unknown users get no token; the family keeps only the document's paths and methods.
    let (status, v) = oim(&s, "/auth/user_token", None, &json!({"secret": "tuoyun", "platform": 1, "uid": "nobody"})).await;
    assert_eq!((status, code(&v)), (404, 803), "{v}");
    let resp = s.client().get(format!("http://{}/auth/user_token", s.api)).send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(code(&resp.json::<Value>().await.expect("json")), 803);
    // The WuKongIM family is unaffected, its `token` header meaning its own credential.
    assert_eq!(s.post("/user/token", &json!({"uid": "wk1", "token": "t"})).await, (200, json!({"status": 200})));
}

#[tokio::test]
async fn an_expired_manager_token_is_refused_with_701() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[("ROOKERY_OPENIM", r#"{secret="tuoyun", admin_uid="openIM123456", token_ttl_secs=1}"#)]);
    let admin = register(&s, ADMIN, 1, "admin").await;
    assert_eq!(code(&oim(&s, "/manager/get_all_users_uid", Some(&admin), &json!({"operationID": "1"})).await.1), 0);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let before = head(&s).await;
    let (status, v) = oim(&s, "/user/update_user_info", Some(&admin), &json!({"operationID": "1", "uid": ADMIN, "name": "x"})).await;
    assert_eq!((status, code(&v)), (401, 701), "{v}");
    assert_eq!(head(&s).await, before);
    // Over WKProto too, the expired token no longer logs in.
    let mut c = Client::open(&s, Kind::Tcp).await;
    assert_eq!(c.connect("oim#1", &admin, 0, 5).await.reason_code, ReasonCode::AUTH_FAIL);
}

#[tokio::test]
async fn users_are_registered_read_updated_listed_and_deleted_within_the_documents_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, admin) = oim_server(dir.path()).await;
    let full = json!({
        "secret": "tuoyun", "platform": 2, "uid": "d5645454517", "name": "张三", "icon": "https:oss.com.cn/head", "gender": 1,
        "mobile": "17812457845", "birth": "1998.12.15", "email": "xxxx@qq.com", "ex": "xxx",
    });
    let (status, v) = oim(&s, "/auth/user_register", None, &full).await;
    assert_eq!((status, code(&v), v["errMsg"].as_str()), (200, 0, Some("")), "{v}");
    assert_eq!(v["data"]["imUid"], "oim#2", "{v}");
    // Registering the uid again is an error and keeps the first profile.
    let (status, v) = oim(&s, "/auth/user_register", None, &json!({"secret": "tuoyun", "platform": 1, "uid": "d5645454517", "name": "other"})).await;
    assert_eq!((status, code(&v)), (409, 803), "{v}");

    let info = |uids: Value| json!({"operationID": "op", "uidList": uids});
    let (_, v) = oim(&s, "/user/get_user_info", Some(&admin), &info(json!(["d5645454517", "nobody"]))).await;
    let registered = json!({
        "uid": "d5645454517", "name": "张三", "icon": "https:oss.com.cn/head", "gender": 1, "mobile": "17812457845",
        "birth": "1998.12.15", "email": "xxxx@qq.com", "ex": "xxx", "imUid": "oim#2",
    });
    assert_eq!(v, json!({"errCode": 0, "errMsg": "", "data": [registered]}), "unknown uids are absent");

    // Limits at their boundaries: the largest values pass, one more is refused and changes nothing.
    let at_limit = json!({
        "secret": "tuoyun", "platform": 7, "uid": "长".repeat(64), "name": "名".repeat(64), "icon": "i".repeat(1024), "gender": 2,
        "mobile": "1".repeat(32), "birth": "b".repeat(16), "email": "e".repeat(64), "ex": "扩".repeat(1024),
    });
    let (status, v) = oim(&s, "/auth/user_register", None, &at_limit).await;
    assert_eq!((status, code(&v)), (200, 0), "{v}");
    let before = head(&s).await;
    for (field, over) in [
        ("uid", json!("长".repeat(65))),
        ("name", json!("名".repeat(65))),
        ("icon", json!("图".repeat(342))),
        ("gender", json!(3)),
        ("gender", json!("1")),
        ("mobile", json!("1".repeat(33))),
        ("birth", json!("b".repeat(17))),
        ("email", json!("e".repeat(65))),
        ("ex", json!("x".repeat(1025))),
        ("platform", json!(0)),
        ("platform", json!(8)),
        ("uid", json!("")),
        ("name", Value::Null),
    ] {
        let mut body = json!({"secret": "tuoyun", "platform": 1, "uid": "fresh", "name": "n"});
        body[field] = over.clone();
        let (status, v) = oim(&s, "/auth/user_register", None, &body).await;
        assert_eq!((status, code(&v)), (400, 803), "{field} = {over}: {v}");
        assert!(v["errMsg"].as_str().unwrap_or_default().contains(field), "{v}");
    }
    // update_user_info checks the whole request before changing anything.
    let (status, v) = oim(&s, "/user/update_user_info", Some(&admin), &json!({"operationID": "1", "uid": "d5645454517", "name": "李四", "gender": 5})).await;
    assert_eq!((status, code(&v)), (400, 803), "{v}");
    let (status, v) = oim(&s, "/user/update_user_info", Some(&admin), &json!({"operationID": "1", "uid": "nobody", "name": "x"})).await;
    assert_eq!((status, code(&v)), (404, 803), "{v}");
    let (status, v) = s
        .client()
        .post(format!("http://{}/user/update_user_info", s.api))
        .header("token", &admin)
        .body("{not json")
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .expect("sent");
    assert_eq!((status, code(&v.json::<Value>().await.expect("json"))), (400, 803));
    assert_eq!(head(&s).await, before, "refused requests write nothing");
    let (_, v) = oim(&s, "/user/get_user_info", Some(&admin), &info(json!(["d5645454517"]))).await;
    assert_eq!(v["data"][0]["name"], "张三");

    let (status, v) =
        oim(&s, "/user/update_user_info", Some(&admin), &json!({"operationID": "1", "uid": "d5645454517", "name": "李四", "gender": 2, "ex": ""})).await;
    assert_eq!((status, &v), (200, &json!({"errCode": 0, "errMsg": ""})));
    let (_, v) = oim(&s, "/user/get_user_info", Some(&admin), &info(json!(["d5645454517"]))).await;
    assert_eq!(
        (&v["data"][0]["name"], &v["data"][0]["gender"], &v["data"][0]["ex"], &v["data"][0]["mobile"]),
        (&json!("李四"), &json!(2), &json!(""), &json!("17812457845"))
    );

    let (_, v) = oim(&s, "/manager/get_all_users_uid", Some(&admin), &json!({"operationID": "1"})).await;
    assert_eq!(v["uidList"], json!([ADMIN, "d5645454517", "长".repeat(64)]));
    let (status, v) = oim(&s, "/manager/delete_user", Some(&admin), &json!({"operationID": "1", "deleteUidList": ["d5645454517", "122", "466"]})).await;
    assert_eq!((status, &v), (200, &json!({"errCode": 0, "errMsg": "", "failedUidList": ["122", "466"]})));
    let (_, v) = oim(&s, "/user/get_user_info", Some(&admin), &info(json!(["d5645454517"]))).await;
    assert_eq!(v["data"], json!([]), "deleted users are absent");
    let (_, v) = oim(&s, "/manager/get_all_users_uid", Some(&admin), &json!({"operationID": "1"})).await;
    assert_eq!(v["uidList"], json!([ADMIN, "长".repeat(64)]));
    // A deleted uid can be registered again, as a new user.
    let (_, v) = oim(&s, "/auth/user_register", None, &json!({"secret": "tuoyun", "platform": 1, "uid": "d5645454517", "name": "new"})).await;
    assert_eq!(v["data"]["imUid"], "oim#4", "{v}");
}

#[tokio::test]
async fn groups_are_created_with_roles_and_members_invited_and_kicked_with_a_result_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, admin) = oim_server(dir.path()).await;
    for u in ["a", "b", "c", "d"] {
        register(&s, u, 1, u).await;
    }
    let create = |members: Value| json!({"operationID": "1", "groupName": "groupName_on10", "introduction": "简介", "notification": "公告", "faceUrl": "url", "memberList": members});
    let before = head(&s).await;
    for (members, why) in [
        (json!([{"uid": "a", "setRole": 2}]), "no owner"),
        (json!([{"uid": "a", "setRole": 1}, {"uid": "b", "setRole": 1}]), "two owners"),
        (json!([{"uid": "a", "setRole": 1}, {"uid": "b", "setRole": 3}]), "a role out of range"),
        (json!([{"uid": "a", "setRole": 1}, {"uid": "a", "setRole": 0}]), "a uid twice"),
        (json!([]), "nobody"),
        (json!("a"), "not an array"),
    ] {
        let (status, v) = oim(&s, "/group/create_group", Some(&admin), &create(members)).await;
        assert_eq!((status, code(&v)), (400, 803), "{why}: {v}");
    }
    let (status, v) = oim(&s, "/group/create_group", Some(&admin), &create(json!([{"uid": "a", "setRole": 1}, {"uid": "ghost", "setRole": 0}]))).await;
    assert_eq!((status, code(&v)), (404, 803), "an unregistered member: {v}");
    assert_eq!(head(&s).await, before, "refused creations write nothing");

    let (status, v) =
        oim(&s, "/group/create_group", Some(&admin), &create(json!([{"uid": "a", "setRole": 1}, {"uid": "b", "setRole": 2}, {"uid": "c"}]))).await;
    assert_eq!((status, code(&v)), (200, 0), "{v}");
    let gid = v["data"]["groupID"].as_str().expect("groupID").to_owned();
    assert!(gid.len() == 32 && gid.bytes().all(|b| b.is_ascii_hexdigit()), "{gid}");
    // The group as the channel keeps it: owner, manager, notice, members.
    let (_, state) = s.get("/audit/state?channel_id=oim%23g1&channel_type=2").await;
    let group = &state["channel"]["group"];
    assert_eq!(
        (&group["owner"], &group["managers"], &group["name"], &group["desc"]),
        (&json!("oim#2"), &json!(["oim#3"]), &json!("groupName_on10"), &json!("简介")),
        "{state}"
    );
    assert_eq!(state["channel"]["notice"], "公告", "{state}");

    let invite = |gid: &str, uids: Value| json!({"groupID": gid, "uidList": uids, "reason": "reason", "operationID": "1111111111111 "});
    let (status, v) = oim(&s, "/group/invite_user_to_group", Some(&admin), &invite(&gid, json!(["d", "a", "ghost"]))).await;
    assert_eq!(
        (status, &v),
        (200, &json!({"errCode": 0, "errMsg": "", "data": [{"uid": "d", "result": 0}, {"uid": "a", "result": -1}, {"uid": "ghost", "result": -1}]}))
    );
    for bad in ["f21f9f84c14f3a978352ff339f1a800a", "x"] {
        let (status, v) = oim(&s, "/group/invite_user_to_group", Some(&admin), &invite(bad, json!(["d"]))).await;
        assert_eq!((status, code(&v)), (404, 803), "unknown group {bad}: {v}");
    }
    let (status, v) = oim(&s, "/group/invite_user_to_group", Some(&admin), &json!({"groupID": gid, "uidList": ["d"], "operationID": "1"})).await;
    assert_eq!((status, code(&v)), (400, 803), "reason is required: {v}");

    let kick = |uids: &[&str]| json!({"groupID": gid, "uidListInfo": uids.iter().map(|u| json!({"userId": u})).collect::<Vec<_>>(), "operationID": "1"});
    let (status, v) = oim(&s, "/group/kick_group", Some(&admin), &kick(&["c", "a", "ghost"])).await;
    assert_eq!(
        (status, &v),
        (200, &json!({"errCode": 0, "errMsg": "", "data": [{"uid": "c", "result": 0}, {"uid": "a", "result": -1}, {"uid": "ghost", "result": -1}]})),
        "the owner is not kicked"
    );
    let (_, state) = s.get("/audit/state?channel_id=oim%23g1&channel_type=2").await;
    assert_eq!(state["channel"]["subscribers"], json!(["oim#2", "oim#3", "oim#5"]), "{state}");
}

#[tokio::test]
async fn send_msg_reaches_a_user_over_wkproto_with_the_token_it_got_and_a_retry_is_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, admin) = oim_server(dir.path()).await;
    let alice = register(&s, "alice", 5, "Alice").await;
    register(&s, "bob", 1, "Bob").await;
    // The web platform's token logs in as a web device (flag 1) of the internal uid.
    let mut wrong = Client::open(&s, Kind::Ws).await;
    assert_eq!(wrong.connect("oim#2", &alice, 0, 5).await.reason_code, ReasonCode::AUTH_FAIL, "a web token is not an app token");
    let mut c = Client::logged_in(&s, Kind::Ws, "oim#2", &alice, 1, 5).await;

    let msg = json!({
        "operationID": "1111111222", "sendID": "bob", "recvID": "alice", "senderNickName": "张三", "senderFaceURL": "http://www.head.com",
        "forceList": ["alice"], "content": {"text": "nihao"}, "contentType": 101, "sessionType": 1,
    });
    let (status, v) = oim(&s, "/manager/send_msg", Some(&admin), &msg).await;
    assert_eq!((status, code(&v)), (200, 0), "{v}");
    let msg_id = v["msgID"].as_str().expect("msgID").to_owned();
    let send_time = v["sendTime"].as_u64().expect("sendTime");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(now_ms - 10_000 < send_time && send_time <= now_ms, "milliseconds: {send_time}");
    let (r, text) = recv(&mut c).await;
    assert_eq!((r.from_uid.as_str(), r.client_msg_no.as_str()), ("oim#3", "1111111222"));
    let payload: Value = serde_json::from_str(&text).expect("json payload");
    assert_eq!((&payload["type"], &payload["content"], &payload["contentType"]), (&json!(1), &json!("nihao"), &json!(101)), "{payload}");
    assert_eq!((&payload["family"], &payload["senderNickName"], &payload["body"]), (&json!("openim"), &json!("张三"), &json!({"text": "nihao"})));
    // The same operationID again: the same message, not stored twice, not delivered twice.
    let (_, again) = oim(&s, "/manager/send_msg", Some(&admin), &msg).await;
    assert_eq!((again["msgID"].as_str(), again["sendTime"].as_u64()), (Some(msg_id.as_str()), Some(send_time)), "{again}");
    let (_, page) = s.post("/channel/messagesync", &json!({"login_uid": "oim#2", "channel_id": "oim#3", "channel_type": 1, "limit": 10})).await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1), "{page}");

    // A second message gets its own id; content types render for WuKongIM clients.
    let picture = json!({"operationID": "op-2", "sendID": "bob", "recvID": "alice", "contentType": 102, "sessionType": 1,
        "content": {"sourcePicture": {"url": "http://p/1.jpg", "width": 10, "height": 20}}});
    let (_, v) = oim(&s, "/manager/send_msg", Some(&admin), &picture).await;
    assert_ne!(v["msgID"], json!(msg_id), "{v}");
    let (_, text) = recv(&mut c).await;
    let payload: Value = serde_json::from_str(&text).expect("json payload");
    assert_eq!((&payload["type"], &payload["url"], &payload["width"], &payload["height"]), (&json!(2), &json!("http://p/1.jpg"), &json!(10), &json!(20)));

    // Bad sends: each refused with 803, nothing stored.
    let before = head(&s).await;
    let base = json!({"operationID": "op-3", "sendID": "bob", "recvID": "alice", "content": {"text": "x"}, "contentType": 101, "sessionType": 1});
    for (field, value) in [
        ("content", json!({})),
        ("content", json!({"text": 5})),
        ("content", json!("text")),
        ("contentType", json!(113)),
        ("contentType", json!(100)),
        ("sessionType", json!(3)),
        ("sessionType", json!("1")),
        ("operationID", Value::Null),
        ("sendID", Value::Null),
    ] {
        let mut body = base.clone();
        body[field] = value.clone();
        let (status, v) = oim(&s, "/manager/send_msg", Some(&admin), &body).await;
        assert_eq!((status, code(&v)), (400, 803), "{field} = {value}: {v}");
    }
    let mut custom_without_data = base.clone();
    custom_without_data["contentType"] = json!(110);
    custom_without_data["content"] = json!({"description": "d"});
    assert_eq!(oim(&s, "/manager/send_msg", Some(&admin), &custom_without_data).await.0, 400);
    let mut to_nobody = base.clone();
    to_nobody["recvID"] = json!("nobody");
    assert_eq!(code(&oim(&s, "/manager/send_msg", Some(&admin), &to_nobody).await.1), 803);
    assert_eq!(head(&s).await, before, "refused sends write nothing");

    // Blacklist: alice lists bob; bob's messages to alice are refused, alice's to bob still go.
    let (status, v) = oim(&s, "/friend/add_blacklist", Some(&admin), &json!({"uid": "bob", "operationID": "1", "ownerUid": "alice"})).await;
    assert_eq!((status, &v), (200, &json!({"errCode": 0, "errMsg": ""})));
    let mut blocked = base.clone();
    blocked["operationID"] = json!("op-4");
    let (status, v) = oim(&s, "/manager/send_msg", Some(&admin), &blocked).await;
    assert_eq!((status, code(&v)), (403, 801), "{v}");
    let reverse = json!({"operationID": "op-5", "sendID": "alice", "recvID": "bob", "content": {"text": "x"}, "contentType": 101, "sessionType": 1});
    assert_eq!(code(&oim(&s, "/manager/send_msg", Some(&admin), &reverse).await.1), 0);

    // Friends, imported idempotently; a user cannot befriend itself.
    let friends = json!({"uid": "bob", "operationID": "1111111222", "ownerUid": "alice"});
    assert_eq!(oim(&s, "/friend/import_friend", Some(&admin), &friends).await, (200, json!({"errCode": 0, "errMsg": ""})));
    assert_eq!(oim(&s, "/friend/import_friend", Some(&admin), &friends).await, (200, json!({"errCode": 0, "errMsg": ""})));
    let (_, added) = s.get("/audit/events?kind=tenant.friends_added").await;
    assert_eq!(added["events"].as_array().map(Vec::len), Some(1), "one friendship, written once: {added}");
    let (status, v) = oim(&s, "/friend/import_friend", Some(&admin), &json!({"uid": "bob", "operationID": "1", "ownerUid": "bob"})).await;
    assert_eq!((status, code(&v)), (400, 803), "{v}");
    let (status, v) = oim(&s, "/friend/import_friend", Some(&admin), &json!({"uid": "ghost", "operationID": "1", "ownerUid": "bob"})).await;
    assert_eq!((status, code(&v)), (404, 803), "{v}");

    // Group messages: members only.
    let (_, v) = oim(
        &s,
        "/group/create_group",
        Some(&admin),
        &json!({"operationID": "g", "groupName": "g", "memberList": [{"uid": "bob", "setRole": 1}, {"uid": "alice"}]}),
    )
    .await;
    let gid = v["data"]["groupID"].as_str().expect("groupID").to_owned();
    let group_msg = |from: &str, op: &str| json!({"operationID": op, "sendID": from, "recvID": gid, "content": {"text": "hi all", "atUserList": ["alice"]}, "contentType": 106, "sessionType": 2, "forceList": ["alice"]});
    let (status, v) = oim(&s, "/manager/send_msg", Some(&admin), &group_msg("bob", "op-6")).await;
    assert_eq!((status, code(&v)), (200, 0), "{v}");
    loop {
        let (r, text) = recv(&mut c).await;
        if r.channel_id == "oim#g1" {
            let payload: Value = serde_json::from_str(&text).expect("json payload");
            assert_eq!((&payload["type"], &payload["mention"]), (&json!(1), &json!({"uids": ["oim#2"]})), "{payload}");
            break;
        }
    }
    let (status, v) = oim(&s, "/manager/send_msg", Some(&admin), &group_msg(ADMIN, "op-7")).await;
    assert_eq!((status, code(&v)), (403, 801), "a non-member: {v}");
}

#[tokio::test]
async fn the_apps_users_groups_and_tokens_survive_a_kill_and_show_in_the_audit_trail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, admin) = oim_server(dir.path()).await;
    let alice = register(&s, "alice", 3, "Alice").await;
    register(&s, "bob", 1, "Bob").await;
    let (_, v) = oim(
        &s,
        "/group/create_group",
        Some(&admin),
        &json!({"operationID": "g", "groupName": "g", "memberList": [{"uid": "bob", "setRole": 1}, {"uid": "alice", "setRole": 2}]}),
    )
    .await;
    let gid = v["data"]["groupID"].as_str().expect("groupID").to_owned();
    assert_eq!(code(&oim(&s, "/friend/add_blacklist", Some(&admin), &json!({"uid": "bob", "operationID": "1", "ownerUid": "alice"})).await.1), 0);
    let (_, before) = oim(&s, "/user/get_user_info", Some(&admin), &json!({"operationID": "1", "uidList": [ADMIN, "alice", "bob"]})).await;

    s.kill9();
    let s = Server::start(dir.path(), &[("ROOKERY_OPENIM", APP)]);
    let (status, after) = oim(&s, "/user/get_user_info", Some(&admin), &json!({"operationID": "1", "uidList": [ADMIN, "alice", "bob"]})).await;
    assert_eq!((status, &after), (200, &before), "the manager's token, the users and their profiles after a kill");
    let (_, v) = oim(&s, "/group/invite_user_to_group", Some(&admin), &json!({"groupID": gid, "uidList": ["alice"], "reason": "r", "operationID": "1"})).await;
    assert_eq!(v["data"], json!([{"uid": "alice", "result": -1}]), "the group and its members after a kill: {v}");
    let blocked = json!({"operationID": "op", "sendID": "bob", "recvID": "alice", "content": {"text": "x"}, "contentType": 101, "sessionType": 1});
    assert_eq!(oim(&s, "/manager/send_msg", Some(&admin), &blocked).await.0, 403, "the blacklist after a kill");
    // The desktop platform's token still logs alice in, as a PC device.
    let _alice = Client::logged_in(&s, Kind::Tcp, "oim#2", &alice, 2, 5).await;

    // Who did what: registrations and tokens acting as the app, with no token hash shown.
    let (status, trail) = s.get("/audit/events?uid=oim%232&order=asc").await;
    assert_eq!(status, 200, "{trail}");
    let events = trail["events"].as_array().expect("events");
    let issued = events.iter().find(|e| e["kind"] == "user.platform_token_issued").unwrap_or_else(|| panic!("a token event: {trail}"));
    assert_eq!(issued["actor"], json!({"type": "api", "credential": "openim:oim"}), "{issued}");
    assert_eq!(issued["event"]["platform"], 3, "{issued}");
    assert!(issued["event"].get("token_hash").is_none(), "{issued}");
    // Time travel: alice as of now has a desktop token and an account with her profile.
    let (_, now) = s.get("/audit/state?uid=oim%232").await;
    assert_eq!(now["user"]["platform_tokens"][0]["platform"], 3, "{now}");
    assert_eq!(now["user"]["account"]["username"], "alice", "{now}");
    assert!(!trail.to_string().contains(&alice), "the token never appears");
}
