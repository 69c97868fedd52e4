//! Tamper evidence: the hash chain names the exact record that was changed.

use serde_json::{json, Value};

use crate::support::{b64, verify, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_one_stored_byte_breaks_the_chain_at_exactly_that_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    for i in 0..5 {
        let (status, v) =
            server.post("/message/send", &json!({"from_uid": "ann", "channel_id": "ben", "channel_type": 1, "payload": b64(&format!("m{i}"))})).await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, head) = server.get("/audit/head").await;
    assert_eq!(status, 200);
    let last = head["position"].as_u64().unwrap();
    assert!(last >= 5 && head["hash"].as_str().unwrap().len() == 64, "{head}");
    server.stop();

    let chain = |dir: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rookery")).args(["verify", "--data-dir"]).arg(dir).env("RUST_LOG", "warn").output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (ok, out) = chain(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains(&format!("at position {last}")) && out.contains(head["hash"].as_str().unwrap()), "the verified head is the one the API showed: {out}");

    let target = last - 2;
    rookery_storage::fault::flip_body_byte(&dir.path().join("log"), rookery_storage::Position(target), 20, 0x01).unwrap();
    let (ok, out) = chain(dir.path());
    assert!(!ok, "verify must fail after tampering: {out}");
    // Either the record no longer decodes or its digest no longer matches; both name the position.
    assert!(out.contains(&format!("record at position {target} ")), "{out}");
    assert!(!out.contains(&format!("position {}", target - 1)), "nothing before the changed record is blamed: {out}");
    let (ok, out) = verify(dir.path());
    assert!(!ok && out.contains(&format!("position {target}")), "replay --verify also names it: {out}");
}

/// Keys of the credential tests: a manager token plus two named keys.
const CREDENTIALS: &[(&str, &str)] = &[
    ("ROOKERY_MANAGER_TOKEN", "mgr-secret"),
    ("ROOKERY_API_KEYS", r#"[{name="ops-readonly",secret="ro-secret",scope="read_only"},{name="deploy",secret="admin-secret",scope="admin"}]"#),
];

/// One request with optional `token` and `X-Request-Id` headers: status, echoed request id, JSON body.
async fn call(s: &Server, method: &str, path: &str, token: Option<&str>, request_id: Option<&str>, body: Option<&Value>) -> (u16, Option<String>, Value) {
    let url = format!("http://{}{}", s.api, path);
    let mut req = match method {
        "GET" => s.client().get(url),
        _ => s.client().post(url),
    };
    if let Some(t) = token {
        req = req.header("token", t);
    }
    if let Some(id) = request_id {
        req = req.header("X-Request-Id", id);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.header("User-Agent", "audit-test/1.0").send().await.expect("request sent");
    let status = resp.status().as_u16();
    let echoed = resp.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    (status, echoed, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Every route that changes state, with a body an admin may send after `seed`, in an order in which
/// each succeeds.
fn mutations() -> Vec<(&'static str, Value)> {
    vec![
        ("/channel", json!({"channel_id": "g2", "channel_type": 2, "subscribers": ["u1", "u2"]})),
        ("/channel/info", json!({"channel_id": "g2", "channel_type": 2, "large": 1})),
        ("/channel/subscriber_add", json!({"channel_id": "g2", "channel_type": 2, "subscribers": ["u3"]})),
        ("/channel/subscriber_remove", json!({"channel_id": "g2", "channel_type": 2, "subscribers": ["u3"]})),
        ("/channel/blacklist_add", json!({"channel_id": "g2", "channel_type": 2, "uids": ["u4"]})),
        ("/channel/blacklist_remove", json!({"channel_id": "g2", "channel_type": 2, "uids": ["u4"]})),
        ("/channel/blacklist_set", json!({"channel_id": "g2", "channel_type": 2, "uids": ["u5"]})),
        ("/channel/whitelist_add", json!({"channel_id": "g2", "channel_type": 2, "uids": ["u1"]})),
        ("/channel/whitelist_remove", json!({"channel_id": "g2", "channel_type": 2, "uids": ["u1"]})),
        ("/channel/whitelist_set", json!({"channel_id": "g2", "channel_type": 2, "uids": []})),
        ("/message/send", json!({"from_uid": "u1", "channel_id": "g2", "channel_type": 2, "payload": b64("hi")})),
        ("/message/sendbatch", json!({"from_uid": "hq", "subscribers": ["r1", "r2"], "payload": b64("notice")})),
        ("/message/syncack", json!({"uid": "u2", "last_message_seq": 1})),
        ("/user/token", json!({"uid": "u1", "token": "t-1", "device_flag": 0, "device_level": 1})),
        ("/user/device_quit", json!({"uid": "u1", "device_flag": -1})),
        ("/user/systemuids_add", json!({"uids": ["bot"]})),
        ("/user/systemuids_remove", json!({"uids": ["bot"]})),
        ("/systemuids_add", json!({"uids": ["bot2"]})),
        ("/systemuids_remove", json!({"uids": ["bot2"]})),
        ("/conversations/setUnread", json!({"uid": "u2", "channel_id": "g1", "channel_type": 2, "unread": 1})),
        ("/conversations/clearUnread", json!({"uid": "u2", "channel_id": "g1", "channel_type": 2, "message_seq": 0})),
        ("/conversations/delete", json!({"uid": "u2", "channel_id": "g1", "channel_type": 2})),
        ("/audit/erase", json!({"uid": "u1", "channel_id": "g2", "channel_type": 2, "reason": "request 1"})),
        ("/channel/delete", json!({"channel_id": "g2", "channel_type": 2})),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_key_is_refused_on_every_mutation_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CREDENTIALS);
    // Seed with the named admin key: a group with a red-dot message for u2.
    let (status, _, v) =
        call(&server, "POST", "/channel", Some("admin-secret"), None, Some(&json!({"channel_id": "g1", "channel_type": 2, "subscribers": ["u1", "u2"]}))).await;
    assert_eq!(status, 200, "{v}");
    let send = json!({"header": {"red_dot": 1}, "from_uid": "u1", "channel_id": "g1", "channel_type": 2, "payload": b64("seed")});
    let (status, _, v) = call(&server, "POST", "/message/send", Some("admin-secret"), None, Some(&send)).await;
    assert_eq!(status, 200, "{v}");

    let (_, _, head_before) = call(&server, "GET", "/audit/head", Some("ro-secret"), None, None).await;
    for (path, body) in mutations() {
        let (status, echoed, v) = call(&server, "POST", path, Some("ro-secret"), None, Some(&body)).await;
        assert_eq!(status, 403, "{path}: {v}");
        assert_eq!(v["status"], 403, "{path}: {v}");
        assert!(v["msg"].as_str().unwrap().contains("\"ops-readonly\" is read-only"), "{path}: {v}");
        assert!(echoed.is_some(), "{path}: errors carry the request id too");
    }
    let (status, _, head_after) = call(&server, "GET", "/audit/head", Some("ro-secret"), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(head_after, head_before, "a refused mutation appends nothing");
    // Reads work with the read-only key and show the seeded state untouched.
    let (status, _, uids) = call(&server, "GET", "/user/systemuids", Some("ro-secret"), None, None).await;
    assert_eq!((status, uids), (200, json!([])));
    let (status, _, seq) = call(&server, "GET", "/channel/max_message_seq?channel_id=g1&channel_type=2", Some("ro-secret"), None, None).await;
    assert_eq!(status, 200, "{seq}");
    let (status, _, convs) = call(&server, "POST", "/conversation/sync", Some("ro-secret"), None, Some(&json!({"uid": "u2", "msg_count": 0}))).await;
    assert_eq!(status, 200, "{convs}");
    assert_eq!(convs[0]["unread"], 1, "the conversation read marks are unchanged: {convs}");

    // The same requests with an admin key are accepted: the 403s were the scope, not the bodies.
    for (path, body) in mutations() {
        let (status, _, v) = call(&server, "POST", path, Some("admin-secret"), None, Some(&body)).await;
        assert_eq!(status, 200, "{path}: {v}");
    }
    let (_, _, head_admin) = call(&server, "GET", "/audit/head", Some("mgr-secret"), None, None).await;
    assert!(head_admin["position"].as_u64() > head_after["position"].as_u64(), "{head_admin} vs {head_after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_key_is_401_and_every_response_echoes_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CREDENTIALS);
    let body = json!({"uids": ["bot"]});
    for token in [None, Some("nope"), Some(""), Some("ro-secretx"), Some("admin-secre")] {
        let (status, echoed, v) = call(&server, "POST", "/user/systemuids_add", token, None, Some(&body)).await;
        assert_eq!((status, v["msg"].as_str()), (401, Some("missing or wrong token header")), "{token:?}: {v}");
        assert!(uuid::Uuid::parse_str(&echoed.unwrap()).is_ok(), "a 401 carries a generated request id");
    }
    let (_, _, head) = call(&server, "GET", "/audit/head", Some("mgr-secret"), None, None).await;
    assert_eq!(head["position"], 0, "nothing was written: {head}");

    // A given UUID is kept and echoed in its canonical form, on success and on errors alike.
    let given = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
    let canonical = given.to_lowercase();
    let (status, echoed, _) = call(&server, "POST", "/user/systemuids_add", Some("mgr-secret"), Some(given), Some(&body)).await;
    assert_eq!((status, echoed.as_deref()), (200, Some(canonical.as_str())));
    let (status, echoed, _) = call(&server, "GET", "/no/such/route", Some("ro-secret"), Some(given), None).await;
    assert_eq!((status, echoed.as_deref()), (404, Some(canonical.as_str())));
    let (status, echoed, _) = call(&server, "POST", "/user/systemuids_add", Some("ro-secret"), Some(given), Some(&body)).await;
    assert_eq!((status, echoed.as_deref()), (403, Some(canonical.as_str())));
    // Without one, each response gets a fresh id.
    let (_, first, _) = call(&server, "GET", "/healthz", Some("ro-secret"), None, None).await;
    let (_, second, _) = call(&server, "GET", "/healthz", Some("ro-secret"), None, None).await;
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(uuid::Uuid::parse_str(&first).is_ok() && first != second, "{first} {second}");
    // Ids of other formats (what proxies and tracers send) are kept: echoed as sent, and recorded as a
    // UUID derived from them, the same one every time.
    for other in ["not-a-uuid", "6F9619FF-8B86-D011-B42D", "12345", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"] {
        let (status, echoed, v) = call(&server, "POST", "/user/systemuids_add", Some("mgr-secret"), Some(other), Some(&json!({"uids": ["other"]}))).await;
        assert_eq!((status, echoed.as_deref()), (200, Some(other)), "{other}: {v}");
    }
    let recorded = |id: &str| rookery::http::serve::recorded_request_id(id).expect("kept").hyphenated().to_string();
    assert_eq!(recorded("12345"), recorded("12345"));
    assert_ne!(recorded("12345"), recorded("12346"));
    // An id that cannot be kept is refused with 400 before anything happens, and the answer still has an id.
    let (_, _, head_before) = call(&server, "GET", "/audit/head", Some("mgr-secret"), None, None).await;
    for bad in ["has a space".to_owned(), "x".repeat(129)] {
        let (status, echoed, v) = call(&server, "POST", "/user/systemuids_add", Some("mgr-secret"), Some(&bad), Some(&json!({"uids": ["more"]}))).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["msg"].as_str().unwrap().contains("x-request-id must be a uuid or"), "{v}");
        assert!(uuid::Uuid::parse_str(&echoed.unwrap()).is_ok());
    }
    let (_, _, head_after) = call(&server, "GET", "/audit/head", Some("mgr-secret"), None, None).await;
    assert_eq!(head_after, head_before, "a refused request id writes nothing");
    let (_, _, uids) = call(&server, "GET", "/user/systemuids", Some("deploy-secret-is-wrong"), None, None).await;
    assert_eq!(uids["status"], 401);
    let (_, _, uids) = call(&server, "GET", "/user/systemuids", Some("admin-secret"), None, None).await;
    assert_eq!(uids, json!(["bot", "other"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_or_empty_credentials_stop_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (keys, needle) in [
        (r#"[{name="ops",secret="a",scope="read_only"},{name="ops",secret="b",scope="admin"}]"#, "\"ops\" is used twice"),
        (r#"[{name="ops",secret="",scope="read_only"}]"#, "secret must not be empty"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rookery"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .env("ROOKERY_API_ADDR", "127.0.0.1:0")
            .env("ROOKERY_MONITOR_ADDR", "127.0.0.1:0")
            .env("ROOKERY_TCP_ADDR", "127.0.0.1:0")
            .env("ROOKERY_WS_ADDR", "127.0.0.1:0")
            .env("ROOKERY_API_KEYS", keys)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(needle), "{keys}: {stderr}");
    }
}

/// `rookery audit --json` on a data directory; the parsed page, or the exit code and stderr.
fn cli_audit(dir: &std::path::Path, args: &[&str]) -> Result<Value, (i32, String)> {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_rookery")).arg("audit").arg("--data-dir").arg(dir).args(args).env("RUST_LOG", "warn").output().unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout))))
    } else {
        Err((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_answer_every_filter_over_the_api_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CREDENTIALS);
    let r1 = "0b6a1d2e-6c5f-4f8e-9a41-3d1f5a7e2c10";
    let r2 = "5e2c7f0a-1b3d-4c6e-8f9a-0d1e2f3a4b5c";
    let calls: &[(&str, Option<&str>, &str, Value)] = &[
        ("admin-secret", Some(r1), "/channel", json!({"channel_id": "g1", "channel_type": 2, "subscribers": ["ann", "ben"]})),
        ("mgr-secret", Some(r2), "/message/send", json!({"from_uid": "ann", "channel_id": "g1", "channel_type": 2, "payload": b64("hello")})),
        ("admin-secret", None, "/user/token", json!({"uid": "ben", "token": "t-ben", "device_flag": 1})),
        ("mgr-secret", None, "/user/systemuids_add", json!({"uids": ["bot"]})),
    ];
    for (token, rid, path, body) in calls {
        let (status, echoed, v) = call(&server, "POST", path, Some(token), *rid, Some(body)).await;
        assert_eq!(status, 200, "{path}: {v}");
        if let Some(rid) = rid {
            assert_eq!(echoed.as_deref(), Some(*rid));
        }
    }
    let (status, _, _) = call(&server, "POST", "/user/systemuids_add", Some("ro-secret"), None, Some(&json!({"uids": ["evil"]}))).await;
    assert_eq!(status, 403);

    let api = |q: String| {
        let server = &server;
        async move {
            let (status, _, v) = call(server, "GET", &format!("/audit/events?{q}"), Some("ro-secret"), None, None).await;
            assert_eq!(status, 200, "{q}: {v}");
            v
        }
    };
    let all = api("order=asc&limit=1000".into()).await;
    let events = all["events"].as_array().unwrap().clone();
    assert_eq!(all["next_cursor"], Value::Null);
    let positions = |v: &Value| v["events"].as_array().unwrap().iter().map(|e| e["position"].as_u64().unwrap()).collect::<Vec<_>>();
    let expect = |pred: &dyn Fn(&Value) -> bool| events.iter().filter(|e| pred(e)).map(|e| e["position"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(positions(&all), (1..=events.len() as u64).collect::<Vec<_>>(), "every event, oldest first");

    // The envelope records the credential's name, the kept request id, the peer and the user agent.
    let by_deploy = api("actor=deploy&order=asc".into()).await;
    let first = &by_deploy["events"][0];
    assert_eq!(first["actor"], json!({"type": "api", "credential": "deploy"}));
    assert_eq!(first["request_id"], r1);
    assert_eq!(first["user_agent"], "audit-test/1.0");
    assert!(first["source"].as_str().unwrap().starts_with("127.0.0.1:"), "{first}");
    let sent = events.iter().find(|e| e["kind"] == "channel.message_appended").expect("the message is recorded");
    assert_eq!((&sent["request_id"], &sent["actor"]["credential"]), (&json!(r2), &json!("manager")));
    assert_eq!(sent["event"]["payload"], b64("hello"));
    assert!(!serde_json::to_string(&all).unwrap().contains("secret"), "no secret is ever recorded");
    assert!(events.iter().all(|e| e["actor"]["credential"] != "ops-readonly"), "the refused request left no trace");

    // Each filter answers exactly the matching events.
    let is_g1 = |e: &Value| e["stream"]["channel_id"] == "g1" && e["stream"]["channel_type"] == 2;
    let cases: Vec<(String, Vec<u64>)> = vec![
        ("channel_id=g1&channel_type=2".into(), expect(&is_g1)),
        ("uid=ben".into(), expect(&|e| e["stream"] == json!({"type": "user", "uid": "ben"}))),
        ("actor=manager".into(), expect(&|e| e["actor"]["credential"] == "manager")),
        ("actor=api:deploy".into(), expect(&|e| e["actor"]["credential"] == "deploy")),
        ("actor=ops-readonly".into(), vec![]),
        ("kind=system.uids_added".into(), expect(&|e| e["kind"] == "system.uids_added")),
        ("kind=user.token_set&uid=ben".into(), expect(&|e| e["kind"] == "user.token_set")),
        ("from=2&to=4".into(), vec![2, 3, 4]),
        (format!("since={}", sent["recorded_at"].as_str().unwrap()), expect(&|e| e["recorded_at_ms"].as_u64() >= sent["recorded_at_ms"].as_u64())),
        (format!("until={}", sent["recorded_at_ms"]), expect(&|e| e["recorded_at_ms"].as_u64() <= sent["recorded_at_ms"].as_u64())),
    ];
    assert!(cases[0].1.len() >= 2 && cases[1].1.len() >= 2 && cases[2].1.len() == 2, "{cases:?}");
    for (q, mut want) in cases {
        let asc = api(format!("{q}&order=asc")).await;
        assert_eq!(positions(&asc), want, "{q}");
        want.reverse();
        let desc = api(q.clone()).await;
        assert_eq!(positions(&desc), want, "{q}: newest first by default");
        // The CLI on the live server's data directory answers the same page.
        let mut args = vec!["--json".to_owned()];
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap();
            let flag = match k {
                "channel_id" => "--channel".to_owned(),
                other => format!("--{}", other.replace('_', "-")),
            };
            args.push(flag);
            args.push(v.to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cli = cli_audit(dir.path(), &args).unwrap_or_else(|e| panic!("{q}: {e:?}"));
        assert_eq!(cli["events"], desc["events"], "{q}: CLI and API agree");
    }

    // Paging: two at a time, following next_cursor, gives everything once.
    let mut cursor: Option<u64> = None;
    let mut paged = Vec::new();
    loop {
        let page = api(format!("limit=2{}", cursor.map(|c| format!("&cursor={c}")).unwrap_or_default())).await;
        assert!(page["events"].as_array().unwrap().len() <= 2);
        paged.extend(positions(&page));
        let Some(next) = page["next_cursor"].as_u64() else { break };
        let cli = cli_audit(dir.path(), &["--json", "--limit", "2", "--cursor", &next.to_string()]).unwrap();
        assert_eq!(positions(&cli), positions(&api(format!("limit=2&cursor={next}")).await));
        cursor = Some(next);
    }
    assert_eq!(paged, (1..=events.len() as u64).rev().collect::<Vec<_>>());

    // Bad parameters: 400 with a reason over the API, exit code 2 from the CLI; nothing changes.
    let (_, _, head_before) = call(&server, "GET", "/audit/head", Some("ro-secret"), None, None).await;
    for (q, needle) in [
        ("limit=0", "limit must be 1 to 1000"),
        ("limit=1001", "limit must be 1 to 1000"),
        ("order=sideways", "order must be asc or desc"),
        ("since=yesterday", "since must be an RFC 3339 time"),
        ("until=2025-02-30T00:00:00Z", "until must be an RFC 3339 time"),
        ("kind=channel.exploded", "unknown kind"),
        ("channel_id=g1", "channel_id needs channel_type"),
        ("from=5&to=2", "must not be above"),
        ("cursor=abc", "cursor must be"),
        ("colour=blue", "malformed query string"),
    ] {
        let (status, echoed, v) = call(&server, "GET", &format!("/audit/events?{q}"), Some("ro-secret"), None, None).await;
        assert_eq!((status, &v["status"]), (400, &json!(400)), "{q}: {v}");
        assert!(v["msg"].as_str().unwrap().contains(needle), "{q}: {v}");
        assert!(echoed.is_some());
    }
    let (code, stderr) = cli_audit(dir.path(), &["--limit", "0"]).unwrap_err();
    assert!(code == 2 && stderr.contains("limit must be 1 to 1000"), "{code} {stderr}");
    let (_, _, head_after) = call(&server, "GET", "/audit/head", Some("ro-secret"), None, None).await;
    assert_eq!(head_before, head_after);
    let (status, _, _) = call(&server, "GET", "/audit/events", Some("wrong"), None, None).await;
    assert_eq!(status, 401, "the audit trail needs a credential too");

    // The text form: one line per event.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args(["audit", "--kind", "channel.message_appended", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.lines().count() == 1 && text.contains("api:manager") && text.contains(r2), "{text}");
}
