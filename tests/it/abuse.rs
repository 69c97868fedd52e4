//! What a hostile or broken client may try, against the real server: none of it may cost the server
//! lasting state or hurt other clients.

use rookery::gateway::packet::ReasonCode;
use serde_json::Value;

use crate::gateway::{server_with_tokens, Client, Kind};
use crate::support::Server;

/// The actor counts of `/varz`.
async fn actors(s: &Server) -> (u64, u64) {
    let v: Value = reqwest::get(format!("http://{}/varz", s.monitor)).await.expect("varz").json().await.expect("json");
    (v["user_actors"].as_u64().expect("user_actors"), v["channel_actors"].as_u64().expect("channel_actors"))
}

/// Refused CONNECTs with made-up uids load nothing: the token is checked before any per-user state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_leave_no_actors_behind() {
    let (_dir, s) = server_with_tokens().await;
    // A real login first, so the counts include what a working session costs.
    let _alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 5).await;
    let before = actors(&s).await;
    for i in 0..200 {
        let mut c = Client::open(&s, if i % 2 == 0 { Kind::Tcp } else { Kind::Ws }).await;
        let ack = c.connect(&format!("intruder-{i}"), "guess", 0, 5).await;
        assert_eq!(ack.reason_code, ReasonCode::AUTH_FAIL, "{i}");
    }
    // A known uid with a wrong token: refused too, and alice's state is read, not reloaded.
    let mut c = Client::open(&s, Kind::Tcp).await;
    assert_eq!(c.connect("bob", "wrong", 0, 5).await.reason_code, ReasonCode::AUTH_FAIL);
    let after = actors(&s).await;
    assert!(after.0 <= before.0 + 1 && after.1 <= before.1, "actors before {before:?}, after 201 refused logins {after:?}");
}

/// A read-only key reads the command queue without changing what the next acknowledgement takes, and
/// never sees a token's hash (a stand-in for the token) in the audit trail or a past state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_key_changes_no_sync_state_and_sees_no_token_hashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(
        dir.path(),
        &[("ROOKERY_API_KEYS", r#"[{name="ro",secret="ro-secret",scope="read_only"},{name="adm",secret="adm-secret",scope="admin"}]"#)],
    );
    let post = |path: &'static str, token: &'static str, body: Value| {
        let s = &s;
        async move {
            let resp = s.client().post(format!("http://{}{}", s.api, path)).header("token", token).json(&body).send().await.expect("sent");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(post("/user/token", "adm-secret", serde_json::json!({"uid": "bob", "token": "weak", "device_level": 1})).await.0, 200);
    let cmd = serde_json::json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": crate::support::b64("c"), "header": {"sync_once": 1}});
    assert_eq!(post("/message/send", "adm-secret", cmd).await.0, 200);
    // The read-only read, then an admin acknowledgement: it acknowledges nothing the read-only key read.
    let (status, v) = post("/message/sync", "ro-secret", serde_json::json!({"uid": "bob"})).await;
    assert_eq!((status, v.as_array().map(Vec::len)), (200, Some(1)), "{v}");
    assert_eq!(post("/message/syncack", "adm-secret", serde_json::json!({"uid": "bob", "last_message_seq": 1})).await.0, 200);
    let (_, v) = post("/message/sync", "adm-secret", serde_json::json!({"uid": "bob"})).await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "the command is still queued: {v}");
    // No token hash anywhere a key can read.
    for path in ["/audit/events?uid=bob", "/audit/state?uid=bob"] {
        let resp = s.client().get(format!("http://{}{}", s.api, path)).header("token", "ro-secret").send().await.expect("sent");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let text = resp.text().await.expect("body");
        let weak_hash = hex_sha256(b"weak");
        assert!(!text.contains("token_sha256") && !text.contains(&weak_hash), "{path}: {text}");
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    rookery_events::sha256(bytes).to_hex()
}

/// Clients that open REST connections and never finish a request are disconnected after the header
/// timeout, and however many there are, they only ever hold `api_max_connections` sockets: the others
/// wait in the listen queue and are served once those go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_rest_clients_are_disconnected_and_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[("ROOKERY_API_HEADER_TIMEOUT_MS", "500"), ("ROOKERY_API_MAX_CONNECTIONS", "2")]);
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(s.api).await.expect("connect");
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.expect("partial head");
        slow.push(c);
    }
    // Both slots are taken: this request waits for one of them to be freed by the header timeout.
    let url = format!("http://{}/healthz", s.api);
    let waiting = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    for mut c in slow {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a client that never finished its request head was not disconnected");
    }
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await.expect("served once a slot is free").expect("task").expect("request");
    assert_eq!(status, 200);
}

/// The monitor's session list names every online user with their address and device: with API
/// credentials configured it needs one of them; health, readiness and metrics stay open to probes.
#[tokio::test]
async fn the_session_list_needs_a_credential_when_the_api_has_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[("ROOKERY_API_KEYS", r#"[{name="ro",secret="ro-secret",scope="read_only"}]"#)]);
    let client = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut req = client.get(format!("http://{}{}", s.monitor, path));
        if let Some(t) = token {
            req = req.header("token", t);
        }
        async move { req.send().await.expect("monitor request").status().as_u16() }
    };
    assert_eq!(get("/connz", None).await, 401);
    assert_eq!(get("/connz", Some("wrong")).await, 401);
    assert_eq!(get("/connz", Some("ro-secret")).await, 200);
    for path in ["/healthz", "/readyz", "/metrics", "/varz"] {
        assert_eq!(get(path, None).await, 200, "{path}");
    }
}

/// A page of history is bounded by bytes as well as by count: large messages end a page early (with
/// `more`), and paging on from it reaches every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_are_bounded_by_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[("ROOKERY_MAX_PAGE_BYTES", "1000000")]);
    for i in 1..=5u8 {
        let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![b'0' + i; 400_000]);
        let (status, v) = s.post("/message/send", &serde_json::json!({"from_uid": "a", "channel_id": "b", "channel_type": 1, "payload": payload})).await;
        assert_eq!(status, 200, "{v}");
    }
    let seqs = |v: &Value| v["messages"].as_array().expect("messages").iter().map(|m| m["message_seq"].as_u64().expect("seq")).collect::<Vec<_>>();
    let (status, v) = s.post("/channel/messagesync", &serde_json::json!({"login_uid": "a", "channel_id": "b", "channel_type": 1, "limit": 100})).await;
    assert_eq!(status, 200);
    assert_eq!((seqs(&v), v["more"].as_u64()), (vec![4, 5], Some(1)));
    let mut got: Vec<u64> = Vec::new();
    let mut start = 1;
    loop {
        let (_, v) = s
            .post(
                "/channel/messagesync",
                &serde_json::json!({"login_uid": "a", "channel_id": "b", "channel_type": 1, "limit": 100, "start_message_seq": start, "pull_mode": 1}),
            )
            .await;
        let page = seqs(&v);
        assert!(!page.is_empty() && page.len() <= 2, "{page:?}");
        got.extend(&page);
        start = page[page.len() - 1] + 1;
        if v["more"] == 0 {
            break;
        }
    }
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
}

/// A client cannot make the server store messages in channels nobody created by posting into one of
/// the types anyone may post to (temp, info, customer service).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_post_into_a_channel_nobody_created() {
    let (_dir, s) = server_with_tokens().await;
    let mut alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 5).await;
    for ty in [8u8, 6, 3] {
        let ack = alice.send(1, "made-up", ty, "spam").await;
        assert_eq!(ack.reason_code, ReasonCode::CHANNEL_NOT_EXIST, "type {ty}");
    }
    let (_, head) = s.get("/audit/head").await;
    let before = head["position"].as_u64();
    // Once the app server made one, clients post into it as before.
    let (status, v) = s.post("/channel", &serde_json::json!({"channel_id": "made-up", "channel_type": 6})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(alice.send(2, "made-up", 6, "hello").await.reason_code, ReasonCode::SUCCESS);
    let (_, head) = s.get("/audit/head").await;
    assert!(head["position"].as_u64() > before);
}

/// A client's command message (`sync_once`) becomes one queue entry per subscriber: into a big group it
/// is refused (SENDACK `NOT_ALLOW_SEND`) and nothing is written; into a small one it goes as before.
#[tokio::test]
async fn a_client_cannot_queue_a_command_for_every_member_of_a_big_group() {
    let (_dir, s) = server_with_tokens().await;
    let mut members: Vec<String> = (0..rookery_events::MAX_CLIENT_COMMAND_RECIPIENTS).map(|i| format!("m{i}")).collect();
    members.push("alice".into());
    let (status, v) = s.post("/channel", &serde_json::json!({"channel_id": "big", "channel_type": 2, "subscribers": members})).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.post("/channel", &serde_json::json!({"channel_id": "small", "channel_type": 2, "subscribers": ["alice", "bob"]})).await;
    assert_eq!(status, 200, "{v}");
    let mut alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 5).await;
    let command = rookery::gateway::packet::Header { sync_once: true, ..Default::default() };
    let before = s.get("/audit/head").await.1;
    assert_eq!(alice.send_with(1, "big", 2, "refresh", command).await.reason_code, ReasonCode::NOT_ALLOW_SEND);
    assert_eq!(s.get("/audit/head").await.1, before, "nothing queued for anyone");
    assert_eq!(alice.send_with(2, "small", 2, "refresh", command).await.reason_code, ReasonCode::SUCCESS);
    // The app server's API may still send commands to the big group.
    let body =
        serde_json::json!({"header": {"sync_once": 1}, "from_uid": "alice", "channel_id": "big", "channel_type": 2, "payload": crate::support::b64("refresh")});
    assert_eq!(s.post("/message/send", &body).await.0, 200);
}
