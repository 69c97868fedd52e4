//! WuKongIM's message lookups (`/messages`, `/message`, `/message/byclientmsgno`,
//! `/channel/last_message`), `/tmpchannel/subscriber_set` and `/health`, over the real server.

use serde_json::{json, Value};

use crate::support::{b64, Server};

async fn send(s: &Server, from: &str, channel: &str, ty: u8, no: &str, text: &str) -> Value {
    let (status, v) =
        s.post("/message/send", &json!({"from_uid": from, "channel_id": channel, "channel_type": ty, "client_msg_no": no, "payload": b64(text)})).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn seqs(v: &Value) -> Vec<u64> {
    v["messages"].as_array().expect("messages").iter().map(|m| m["message_seq"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_found_by_seq_id_and_client_msg_no() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let (status, v) = s.post("/channel", &json!({"channel_id": "g", "channel_type": 2, "subscribers": ["a", "b"]})).await;
    assert_eq!(status, 200, "{v}");
    let mut sent = Vec::new();
    for i in 1..=40 {
        sent.push(send(&s, if i % 2 == 0 { "a" } else { "b" }, "g", 2, &format!("n{i}"), &format!("m{i}")).await);
    }
    let id = |i: usize| sent[i - 1]["message_id"].as_i64().unwrap();

    let (status, v) = s
        .post(
            "/messages",
            &json!({"channel_id": "g", "channel_type": 2, "message_seqs": [3, 99, 3, 7], "message_ids": [id(20), 12345], "client_msg_nos": ["n33", "zz"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(seqs(&v), vec![3, 7, 20, 33], "named order, each once, unknown names left out: {v}");
    assert_eq!(v["messages"][2]["message_id"].as_i64(), Some(id(20)));
    assert_eq!(v["messages"][3]["client_msg_no"], "n33");
    for i in [1, 17, 40] {
        let (status, v) = s.post("/message", &json!({"channel_id": "g", "channel_type": 2, "message_id": id(i)})).await;
        assert_eq!((status, v["message_seq"].as_u64()), (200, Some(i as u64)), "{v}");
    }
    let (status, v) = s.post("/message", &json!({"channel_id": "g", "channel_type": 2, "client_msg_no": "n5"})).await;
    assert_eq!((status, v["message_seq"].as_u64()), (200, Some(5)), "{v}");
    let (status, v) = s.post("/message", &json!({"channel_id": "g", "channel_type": 2, "message_id": 1})).await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = s.post("/message", &json!({"channel_id": "g", "channel_type": 2})).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = s.get("/message/byclientmsgno?channel_id=g&channel_type=2&client_msg_no=n40").await;
    assert_eq!((status, v["message_seq"].as_u64(), v["from_uid"].as_str()), (200, Some(40), Some("a")), "{v}");
    let (status, _) = s.get("/message/byclientmsgno?channel_id=g&channel_type=2&client_msg_no=nope").await;
    assert_eq!(status, 404);
    let (status, v) = s.get("/message/byclientmsgno?channel_id=g&channel_type=2").await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = s.get("/channel/last_message?channel_id=g&channel_type=2").await;
    assert_eq!((status, v["message_seq"].as_u64()), (200, Some(40)), "{v}");
    let too_many: Vec<u64> = (1..=1001).collect();
    let (status, v) = s.post("/messages", &json!({"channel_id": "g", "channel_type": 2, "message_seqs": too_many})).await;
    assert_eq!(status, 400, "{v}");

    // Person channels: by the peer and login_uid, or by the internal id; a retracted message has no content.
    let p = send(&s, "a", "b", 1, "p1", "private").await;
    let (status, v) = s.get("/channel/last_message?channel_id=a&channel_type=1&login_uid=b").await;
    assert_eq!((status, v["channel_id"].as_str(), v["message_id"].as_i64()), (200, Some("a"), p["message_id"].as_i64()), "{v}");
    let (status, v) = s.get("/channel/last_message?channel_id=a&channel_type=1").await;
    assert_eq!(status, 400, "login_uid is needed with a peer uid: {v}");
    // The internal id orders the two uids by the person-channel rule: exactly one order names the chat.
    let (s1, v1) = s.get("/message/byclientmsgno?channel_id=b@a&channel_type=1&client_msg_no=p1").await;
    let (s2, v2) = s.get("/message/byclientmsgno?channel_id=a@b&channel_type=1&client_msg_no=p1").await;
    let found: Vec<&Value> = [(s1, &v1), (s2, &v2)].into_iter().filter(|(st, _)| *st == 200).map(|(_, v)| v).collect();
    assert_eq!(found.len(), 1, "{s1} {v1} / {s2} {v2}");
    assert_eq!(found[0]["message_seq"].as_u64(), Some(1));
    let (status, v) = s.get("/channel/last_message?channel_id=empty&channel_type=2").await;
    assert_eq!(status, 404, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_channel_subscribers_are_set_and_health_answers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let (status, v) = s.get("/health").await;
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")), "{v}");
    let (status, v) = s.post("/tmpchannel/subscriber_set", &json!({"channel_id": "t1", "uids": ["a", "b", "c"]})).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.post("/tmpchannel/subscriber_set", &json!({"channel_id": "t1", "uids": ["c", "d"]})).await;
    assert_eq!(status, 200, "{v}");
    // Exactly c and d now.
    let (status, v) = s.get("/audit/state?channel_id=t1&channel_type=8").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["channel"]["subscribers"], json!(["c", "d"]), "{v}");
    for bad in [json!({"uids": ["a"]}), json!({"channel_id": "t1"}), json!({"channel_id": "t1", "uids": ["a@b"]})] {
        let (status, v) = s.post("/tmpchannel/subscriber_set", &bad).await;
        assert_eq!(status, 400, "{bad}: {v}");
    }
}

/// `/varz` and `/connz` answer on the API listener too (where WuKongIM serves them), behind its
/// credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_summaries_are_on_the_api_listener_behind_its_credential() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[("ROOKERY_MANAGER_TOKEN", "secret")]);
    let url = |p: &str| format!("http://{}{p}", s.api);
    for path in ["/varz", "/connz"] {
        let resp = s.client().get(url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path} without the credential");
    }
    let (status, v) = s.post("/user/token", &json!({"uid": "u1", "token": "t1", "device_flag": 1, "device_level": 1})).await;
    assert_eq!(status, 401, "the test helper sends no credential: {v}");
    let resp = s
        .client()
        .post(url("/user/token"))
        .header("token", "secret")
        .json(&json!({"uid": "u1", "token": "t1", "device_flag": 1, "device_level": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut c = crate::gateway::Client::logged_in_tcp(s.tcp, "u1", "t1", 1).await;
    let v: Value = s.client().get(url("/varz")).header("token", "secret").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["connections"], 1, "{v}");
    let v: Value = s.client().get(url("/connz?limit=5")).header("token", "secret").send().await.unwrap().json().await.unwrap();
    assert_eq!((v["total"].as_u64(), v["connections"][0]["uid"].as_str()), (Some(1), Some("u1")), "{v}");
    let resp = s.client().get(url("/connz?limit=abc")).header("token", "secret").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let _ = c.try_write(&rookery::gateway::packet::Packet::Ping).await;
}
