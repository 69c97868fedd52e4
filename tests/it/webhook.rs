//! Webhooks against a local receiver: every stored message reaches `msg.notify` (and `msg.offline`
//! for offline recipients) signed, in order; failures are retried; `kill -9` mid-delivery loses
//! nothing; online status changes reach `user.onlinestatus`; an `https://` receiver is reached only
//! when its certificate is trusted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use warp::Filter;

use crate::gateway::{Client, Kind};
use crate::support::{b64, Server};

const SECRET: &str = "hook-secret";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    event: String,
    delivery: String,
    accepted: bool,
    body: Value,
}

/// A local webhook receiver that records every request and answers 500 while `fail` is not zero
/// (counting down when positive, for ever when negative).
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    fail: Arc<AtomicI64>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let fail = Arc::new(AtomicI64::new(0));
        let (h, f) = (hits.clone(), fail.clone());
        let route = warp::post()
            .and(warp::path!("hook"))
            .and(warp::query::<HashMap<String, String>>())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(move |q: HashMap<String, String>, headers: warp::http::HeaderMap, body: bytes::Bytes| {
                let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let event = q.get("event").cloned().unwrap_or_default();
                assert_eq!(header("x-rookery-event"), event);
                check_signature(&header("x-rookery-signature"), &body);
                let left = f.load(Ordering::SeqCst);
                let accepted = left == 0;
                if left > 0 {
                    f.fetch_sub(1, Ordering::SeqCst);
                }
                let body: Value = serde_json::from_slice(&body).expect("json body");
                h.lock().unwrap().push(Hit { event, delivery: header("x-rookery-delivery"), accepted, body });
                let status = if accepted { warp::http::StatusCode::OK } else { warp::http::StatusCode::INTERNAL_SERVER_ERROR };
                warp::reply::with_status("", status)
            });
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Receiver { url: format!("http://{addr}/hook"), hits, fail }
    }

    fn accepted(&self, event: &str) -> Vec<Hit> {
        self.hits.lock().unwrap().iter().filter(|h| h.accepted && h.event == event).cloned().collect()
    }

    /// Message ids of accepted `msg.notify` deliveries, in delivery order.
    fn notified(&self) -> Vec<i64> {
        self.accepted("msg.notify")
            .iter()
            .flat_map(|h| h.body.as_array().unwrap().iter().map(|m| m["message_id"].as_i64().unwrap()).collect::<Vec<_>>())
            .collect()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Receiver) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {:#?}", self.hits.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `t=<ts>,v1=<hex>` must be HMAC-SHA256(secret, "<ts>.<body>").
fn check_signature(header: &str, body: &[u8]) {
    let (t, v1) = header.split_once(",v1=").expect("signature header");
    let t = t.strip_prefix("t=").expect("timestamp");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    assert_eq!(v1, hex::encode(mac.finalize().into_bytes()), "signature of {}", String::from_utf8_lossy(body));
}

fn env(r: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("ROOKERY_WEBHOOK_URL", r.url.clone()),
        ("ROOKERY_WEBHOOK_SECRET", SECRET.into()),
        ("ROOKERY_WEBHOOK_INTERVAL_MS", "20".into()),
        ("ROOKERY_WEBHOOK_MAX_BACKOFF_MS", "300".into()),
    ]
}

fn start(dir: &std::path::Path, r: &Receiver) -> Server {
    let env = env(r);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(dir, &pairs)
}

async fn ok(s: &Server, path: &str, body: Value) -> Value {
    let (status, v) = s.post(path, &body).await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

async fn send(s: &Server, text: &str) -> i64 {
    ok(s, "/message/send", json!({"from_uid": "ann", "channel_id": "g", "channel_type": 2, "payload": b64(text)})).await["message_id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_status_changes_reach_the_receiver_signed_once_and_in_order() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &receiver);
    ok(&server, "/user/token", json!({"uid": "bob", "token": "tb", "device_flag": 1, "device_level": 1})).await;
    ok(&server, "/channel", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann", "bob", "cid"]})).await;
    let mut bob = Client::open(&server, Kind::Tcp).await;
    assert_eq!(bob.connect("bob", "tb", 1, 4).await.reason_code, rookery::gateway::packet::ReasonCode::SUCCESS);
    receiver.wait_for("bob online", |r| r.accepted("user.onlinestatus").iter().any(|h| h.body.to_string().contains("\"bob-1-1-"))).await;

    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(send(&server, &format!("m{i}")).await);
    }
    receiver.wait_for("five notified messages", |r| r.notified().len() >= 5).await;
    receiver.wait_for("five offline pushes", |r| r.accepted("msg.offline").len() >= 5).await;
    assert_eq!(receiver.notified(), ids, "every message once, in order");
    let notify = receiver.accepted("msg.notify");
    assert!(notify.iter().all(|h| !h.delivery.is_empty()));
    assert_eq!(notify[0].body[0]["payload"], b64("m0"));
    assert_eq!(notify[0].body[0]["channel_id"], "g");
    let offline = receiver.accepted("msg.offline");
    assert_eq!(offline.iter().map(|h| h.body["message_id"].as_i64().unwrap()).collect::<Vec<_>>(), ids);
    assert!(offline.iter().all(|h| h.body["to_uids"] == json!(["cid"])), "bob is online and ann sent: {offline:?}");

    drop(bob);
    receiver.wait_for("bob offline", |r| r.accepted("user.onlinestatus").iter().any(|h| h.body.to_string().contains("\"bob-1-0-"))).await;
    let status: Vec<String> = receiver
        .accepted("user.onlinestatus")
        .iter()
        .flat_map(|h| h.body.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect::<Vec<_>>())
        .collect();
    // uid-flag-online-conn_id-device_count-total_count, read from the right (uids may contain '-').
    let fields = |s: &str| -> Vec<String> { s.rsplitn(6, '-').map(str::to_string).collect() };
    let (on, off) = (fields(&status[0]), fields(status.last().unwrap()));
    assert_eq!(
        (on[0].as_str(), on[1].as_str(), on[3].as_str(), on[4].as_str(), on[5].as_str()),
        ("1", "1", "1", "1", "bob"),
        "online, 1 session of flag 1, 1 in all: {status:?}"
    );
    assert_eq!((off[0].as_str(), off[1].as_str(), off[3].as_str()), ("0", "0", "0"), "offline, none left: {status:?}");
    assert_eq!(on[2], off[2], "the same connection id: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_and_a_kill_9_mid_delivery_loses_nothing() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &receiver);
    ok(&server, "/channel", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann", "bob"]})).await;

    // Two failures, then success: retried, delivered once accepted.
    receiver.fail.store(2, Ordering::SeqCst);
    let first = send(&server, "first").await;
    receiver.wait_for("first message", |r| r.notified() == vec![first]).await;
    // Its offline push too: the cursor moves past a message only once both are delivered, and a
    // push still failing at the kill below would have the restarted server deliver `first` again.
    receiver.wait_for("first message's offline push", |r| r.accepted("msg.offline").len() == 1).await;
    assert!(receiver.hits.lock().unwrap().iter().filter(|h| !h.accepted && h.event == "msg.notify").count() >= 2);

    // The receiver is down while three more messages are stored; the server dies mid-retry.
    receiver.fail.store(-1, Ordering::SeqCst);
    let mut ids = vec![first];
    for i in 0..3 {
        ids.push(send(&server, &format!("during {i}")).await);
    }
    receiver.wait_for("retries of the undelivered batch", |r| r.hits.lock().unwrap().iter().filter(|h| !h.accepted).count() >= 4).await;
    server.kill9();

    receiver.fail.store(0, Ordering::SeqCst);
    let server = start(dir.path(), &receiver);
    ids.push(send(&server, "after").await);
    receiver.wait_for("everything after the restart", |r| r.notified().len() >= 5).await;
    assert_eq!(receiver.notified(), ids, "each acknowledged message delivered (once here: nothing was accepted twice)");
    receiver.wait_for("offline pushes", |r| r.accepted("msg.offline").len() >= 5).await;
    let pushed: Vec<i64> = receiver.accepted("msg.offline").iter().map(|h| h.body["message_id"].as_i64().unwrap()).collect();
    assert_eq!(pushed, ids);
}

#[test]
fn bad_webhook_settings_stop_the_server_at_start() {
    for (key, value, needle) in [("ROOKERY_WEBHOOK_URL", "ftp://x", "http://"), ("ROOKERY_WEBHOOK_FOCUS_EVENTS", "[\"msg.nope\"]", "unknown webhook event")] {
        let err = crate::support::refused_start(&[("ROOKERY_WEBHOOK_URL", "http://127.0.0.1:1/hook"), (key, value)]);
        assert!(err.contains(needle), "{key}={value}: {err}");
    }
    // A CA file that holds no certificate (or cannot be read) is refused too, not ignored.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    for path in [ca.clone(), dir.path().join("missing.pem")] {
        let path = path.to_str().unwrap();
        let err = crate::support::refused_start(&[("ROOKERY_WEBHOOK_URL", "https://localhost:1/hook"), ("ROOKERY_WEBHOOK_CA_FILE", path)]);
        assert!(err.contains("webhook_ca_file") && err.contains(path), "{path}: {err}");
    }
}

/// An `https://` receiver with a certificate made for the test: answers 200 to every request and
/// records its event and signature-checked body; counts TLS handshakes that failed.
struct TlsReceiver {
    url: String,
    hits: Arc<Mutex<Vec<(String, Value)>>>,
    failed_handshakes: Arc<AtomicI64>,
}

impl TlsReceiver {
    async fn start(cert: &std::path::Path, key: &std::path::Path) -> TlsReceiver {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let failed_handshakes: Arc<AtomicI64> = Arc::default();
        let (h, f) = (hits.clone(), failed_handshakes.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, h, f) = (acceptor.clone(), h.clone(), f.clone());
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(stream) => serve_requests(stream, h).await,
                        Err(_) => {
                            f.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        TlsReceiver { url: format!("https://localhost:{port}/hook"), hits, failed_handshakes }
    }

    fn notified(&self) -> Vec<i64> {
        let hits = self.hits.lock().unwrap();
        hits.iter()
            .filter(|(e, _)| e == "msg.notify")
            .flat_map(|(_, b)| b.as_array().unwrap().iter().map(|m| m["message_id"].as_i64().unwrap()).collect::<Vec<_>>())
            .collect()
    }
}

/// HTTP/1.1 requests on one connection, each answered 200, until the client closes it.
async fn serve_requests<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: S, hits: Arc<Mutex<Vec<(String, Value)>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::io::BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let header = |name: &str| head.iter().find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()));
        let mut body = vec![0; header("content-length").map_or(0, |n| n.parse().unwrap())];
        stream.read_exact(&mut body).await.unwrap();
        check_signature(&header("x-rookery-signature").expect("signed"), &body);
        let event = header("x-rookery-event").unwrap_or_default();
        hits.lock().unwrap().push((event, serde_json::from_slice(&body).expect("json body")));
        stream.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_receiver_is_reached_when_its_certificate_is_trusted_and_only_then() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = crate::tls::certificate(certs.path());
    let receiver = TlsReceiver::start(&cert, &key).await;
    let hook = [
        ("ROOKERY_WEBHOOK_URL", receiver.url.as_str()),
        ("ROOKERY_WEBHOOK_SECRET", SECRET),
        ("ROOKERY_WEBHOOK_INTERVAL_MS", "20"),
        ("ROOKERY_WEBHOOK_MAX_BACKOFF_MS", "300"),
    ];

    // Not trusted (a self-signed certificate is in no system store): every attempt fails in the
    // handshake, nothing is delivered, and the message stays pending.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &hook);
    ok(&server, "/channel", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann", "bob"]})).await;
    let first = send(&server, "m0").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.failed_handshakes.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the server never tried the receiver");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.notified().is_empty());
    // The monitor shows it: failures, no delivery, the cursor behind the head.
    let m = metrics(&server).await;
    assert!(m["rookery_webhook_failures_total"] >= 2.0 && m["rookery_webhook_deliveries_total"] == 0.0, "{m:?}");
    assert!(m["rookery_webhook_cursor_position"] < m["rookery_log_head_position"], "{m:?}");
    drop(server);

    // Trusted through webhook_ca_file: the pending message and a new one arrive, in order.
    let ca = cert.to_str().unwrap();
    let server = Server::start(dir.path(), &[&hook[..], &[("ROOKERY_WEBHOOK_CA_FILE", ca)]].concat());
    let second = send(&server, "m1").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.notified().len() < 2 {
        assert!(Instant::now() < deadline, "not delivered over TLS: {:?}", receiver.notified());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.notified(), vec![first, second]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = metrics(&server).await;
        if m["rookery_webhook_cursor_position"] == m["rookery_log_head_position"] {
            assert!(m["rookery_webhook_deliveries_total"] >= 1.0, "{m:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the cursor never caught up: {m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The unlabelled samples of one `/metrics` scrape.
async fn metrics(s: &Server) -> HashMap<String, f64> {
    let text = reqwest::get(format!("http://{}/metrics", s.monitor)).await.unwrap().text().await.unwrap();
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once(' ')).filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?))).collect()
}

/// A batch of `msg.notify` is bounded by payload bytes as well as by count, so large messages never
/// make one huge request (or hold their weight in the server's memory); all of them still arrive, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_batches_are_bounded_by_bytes() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &r);
    let mut ids = Vec::new();
    for i in 0..20u8 {
        let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![b'a' + i; 600_000]);
        let v = ok(&s, "/message/send", json!({"from_uid": "u1", "channel_id": "u2", "channel_type": 1, "payload": payload})).await;
        ids.push(v["message_id"].as_i64().unwrap());
    }
    r.wait_for("20 notified messages", |r| r.notified().len() >= 20).await;
    assert_eq!(r.notified(), ids);
    for hit in r.accepted("msg.notify") {
        let bytes: usize = hit
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|m| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, m["payload"].as_str().unwrap()).unwrap().len())
            .sum();
        assert!(bytes <= rookery::webhook::MAX_BATCH_BYTES, "a batch carried {bytes} payload bytes");
    }
    assert!(r.accepted("msg.notify").len() >= 2);
}

/// A delivery the receiver keeps refusing is set aside after `webhook_max_attempts` and later messages
/// go on; the operator lists it and delivers it again once the receiver takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_refused_too_often_becomes_a_dead_letter_that_can_be_replayed() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = env(&receiver);
    env.push(("ROOKERY_WEBHOOK_MAX_ATTEMPTS", "3".into()));
    env.push(("ROOKERY_WEBHOOK_FOCUS_EVENTS", r#"["msg.notify"]"#.into()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(dir.path(), &pairs);
    ok(&server, "/channel", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann", "bob"]})).await;

    receiver.fail.store(-1, Ordering::SeqCst);
    let poison = send(&server, "refused").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let letters = loop {
        let (status, v) = server.get("/webhook/deadletters").await;
        assert_eq!(status, 200, "{v}");
        if v["dead_letters"].as_array().is_some_and(|l| !l.is_empty()) {
            break v["dead_letters"].clone();
        }
        assert!(Instant::now() < deadline, "never set aside: {:#?}", receiver.hits.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((letters[0]["event"].as_str(), letters[0]["attempts"].as_u64()), (Some("msg.notify"), Some(3)), "{letters}");
    assert_eq!(receiver.hits.lock().unwrap().iter().filter(|h| h.event == "msg.notify").count(), 3, "three attempts, then it stopped");

    // Later messages are not held back by it.
    receiver.fail.store(0, Ordering::SeqCst);
    let next = send(&server, "next").await;
    receiver.wait_for("the next message", |r| r.notified() == vec![next]).await;

    // Replayed: delivered from the log again, and off the list.
    let (status, v) = server.post("/webhook/deadletters/replay", &json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"][0]["delivered"], true, "{v}");
    assert_eq!(receiver.notified(), vec![next, poison]);
    assert_eq!(server.get("/webhook/deadletters").await.1["dead_letters"], json!([]));
    let (status, _) = server.post("/webhook/deadletters/replay", &json!({"bogus": 1})).await;
    assert_eq!(status, 400, "unknown fields are refused");
}

/// The end of a stream message reaches `msg.stream` once, with what its events came to; its deltas
/// do not (one push per reply, not per piece).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_a_stream_message_reaches_msg_stream_once() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &receiver);
    ok(&server, "/channel", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann", "bot"]})).await;
    let open = json!({"from_uid": "bot", "channel_id": "g", "channel_type": 2, "client_msg_no": "s1", "is_stream": 1, "payload": b64("{}")});
    let message_id = ok(&server, "/message/send", open).await["message_id"].as_i64().unwrap();
    let event = |id: &str, ty: &str, payload: Value| json!({"channel_id": "g", "channel_type": 2, "from_uid": "bot", "client_msg_no": "s1", "event_id": id, "event_type": ty, "payload": payload});
    for (i, piece) in ["a", "b", "c"].iter().enumerate() {
        ok(&server, "/message/event", event(&format!("d{i}"), "stream.delta", json!({"kind": "text", "delta": piece}))).await;
    }
    ok(&server, "/message/event", event("end", "stream.error", json!({"error": "timeout"}))).await;
    receiver.wait_for("msg.stream", |r| !r.accepted("msg.stream").is_empty()).await;
    receiver.wait_for("the stream message notified", |r| r.notified().contains(&message_id)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = receiver.accepted("msg.stream");
    assert_eq!(hits.len(), 1, "{hits:#?}");
    let b = &hits[0].body;
    assert_eq!(
        (b["client_msg_no"].as_str(), b["message_id"].as_i64(), b["end"].as_u64(), b["error"].as_str()),
        (Some("s1"), Some(message_id), Some(1), Some("timeout"))
    );
    assert_eq!(b["event_meta"]["events"][0]["snapshot"], json!({"kind": "text", "text": "abc"}));
    assert_eq!(b["msg_event_seq"], 4);
}

/// `msg.offline` goes to a recipient whose only online session is a slave device (WuKongIM v2's rule),
/// and not to one with a master device online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_pushes_go_to_users_without_a_master_device_online() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &receiver);
    ok(&server, "/user/token", json!({"uid": "bob", "token": "tb", "device_flag": 1, "device_level": 1})).await;
    ok(&server, "/user/token", json!({"uid": "cid", "token": "tc", "device_flag": 1, "device_level": 0})).await;
    ok(&server, "/channel", json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann", "bob", "cid", "dee"]})).await;
    let mut bob = Client::open(&server, Kind::Tcp).await;
    assert_eq!(bob.connect("bob", "tb", 1, 4).await.reason_code, rookery::gateway::packet::ReasonCode::SUCCESS);
    let mut cid = Client::open(&server, Kind::Tcp).await;
    assert_eq!(cid.connect("cid", "tc", 1, 4).await.reason_code, rookery::gateway::packet::ReasonCode::SUCCESS);
    receiver.wait_for("both online", |r| r.accepted("user.onlinestatus").iter().map(|h| h.body.to_string()).collect::<String>().contains("\"cid-1-1-")).await;
    let id = send(&server, "hello").await;
    receiver.wait_for("the offline push", |r| r.accepted("msg.offline").iter().any(|h| h.body["message_id"].as_i64() == Some(id))).await;
    let hit = receiver.accepted("msg.offline").into_iter().find(|h| h.body["message_id"].as_i64() == Some(id)).unwrap();
    assert_eq!(hit.body["to_uids"], json!(["cid", "dee"]), "cid is on a slave device only; bob's master device is online");
    drop((bob, cid));
}
