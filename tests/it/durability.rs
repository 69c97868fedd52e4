//! Acknowledged means durable: a server killed with SIGKILL under concurrent load loses nothing it
//! acknowledged, duplicates nothing, and its log verifies afterwards.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::support::{b64, verify, Server};

const WRITERS: usize = 16;

/// Per writer: (send number, message_seq, message_id) of every acknowledged send.
type Acks = BTreeMap<usize, Vec<(u64, u64, i64)>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_concurrent_sends_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let api = Arc::new(server_handle(&server));

    // Each writer sends one message at a time into its own person channel with the hub user and
    // records every acknowledgement; all writers run at once so appends share commit groups.
    let acked: Arc<Mutex<Acks>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (acked, api) = (acked.clone(), api.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0u64.. {
                let body = json!({
                    "from_uid": format!("w{w}"), "channel_id": "hub", "channel_type": 1,
                    "client_msg_no": format!("w{w}-{n}"), "payload": b64(&format!("message {n} of writer {w}")),
                    "header": {"red_dot": 1},
                });
                let Ok(resp) = api.client.post(format!("http://{}/message/send", api.addr)).json(&body).send().await else { return };
                let Ok(v) = resp.json::<serde_json::Value>().await else { return };
                let seq = v["message_seq"].as_u64().expect("acknowledged send has a message_seq");
                let id = v["message_id"].as_i64().expect("acknowledged send has a message_id");
                acked.lock().unwrap().entry(w).or_default().push((n, seq, id));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    let total: usize = acked.values().map(Vec::len).sum();
    assert!(total >= WRITERS * 5, "the load produced too few acknowledged sends to mean anything ({total})");

    let mut server = Server::start(dir.path(), &[]);
    for (w, sent) in &acked {
        let (status, page) = server
            .post(
                "/channel/messagesync",
                &json!({"login_uid": format!("w{w}"), "channel_id": "hub", "channel_type": 1,
                "start_message_seq": 0, "end_message_seq": 0, "limit": 10000}),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let stored: Vec<(String, u64, i64)> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["client_msg_no"].as_str().unwrap().to_owned(), m["message_seq"].as_u64().unwrap(), m["message_id"].as_i64().unwrap()))
            .collect();
        // Dense seqs from 1, in the order the writer sent them, each message once.
        for (i, (cmn, seq, _)) in stored.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1, "writer {w}: seqs must be dense");
            assert_eq!(cmn, &format!("w{w}-{i}"), "writer {w}: order or duplicates are wrong");
        }
        // Every acknowledged send is there with the acknowledged seq and id; at most the one send
        // that was in flight at the kill may be there unacknowledged.
        for (n, seq, id) in sent {
            let found = stored.get(*n as usize).unwrap_or_else(|| panic!("writer {w}: acknowledged message {n} is lost"));
            assert_eq!((found.1, found.2), (*seq, *id), "writer {w}: message {n} changed");
        }
        assert!(stored.len() <= sent.len() + 1, "writer {w}: {} stored but {} acknowledged", stored.len(), sent.len());
        // A retry of the last acknowledged send is recognised: the restarted channel loads its
        // idempotency window from the log (the message's seq entry probably re-read from the log
        // itself at start-up, its indexer not having written it before the kill).
        if let Some((n, seq, id)) = sent.last() {
            let (status, again) = server
                .post(
                    "/message/send",
                    &json!({"from_uid": format!("w{w}"), "channel_id": "hub", "channel_type": 1,
                    "client_msg_no": format!("w{w}-{n}"), "payload": b64("a retry")}),
                )
                .await;
            assert_eq!(status, 200, "{again}");
            assert_eq!((again["message_seq"].as_u64(), again["message_id"].as_i64()), (Some(*seq), Some(*id)), "writer {w}: retry of {n}");
        }
    }
    server.stop();
    let (ok, out) = verify(dir.path());
    assert!(ok, "replay --verify failed after the crash: {out}");
}

struct Handle {
    client: reqwest::Client,
    addr: std::net::SocketAddr,
}

fn server_handle(server: &Server) -> Handle {
    Handle { client: server.client().clone(), addr: server.api }
}

/// A full disk during load (a disk-full drill through the free-space probe): writes are refused with
/// 507 and a clear message before anything is written, `/readyz` and the metrics say so, nothing
/// acknowledged is lost, and service comes back by itself once space returns, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_writes_cleanly_and_service_returns_with_space() {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("free-bytes");
    std::fs::write(&probe, "1000000000").unwrap();
    let data = dir.path().join("data");
    let probe_env = probe.display().to_string();
    let env = [("ROOKERY_DISK_RESERVE_BYTES", "100000000"), ("ROOKERY_DISK_FREE_PROBE_FILE", probe_env.as_str())];
    let mut server = Server::start(&data, &env);
    let api = Arc::new(server_handle(&server));
    let monitor = server.monitor;
    let client = server.client().clone();
    let status_of = |path: &'static str| {
        let client = client.clone();
        async move { client.get(format!("http://{monitor}{path}")).send().await.expect("monitor answers") }
    };

    // Four writers send all along; the disk fills and empties under them.
    let acked: Arc<Mutex<Acks>> = Arc::default();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..4usize {
        let (acked, api, refused, stop) = (acked.clone(), api.clone(), refused.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body =
                    json!({"from_uid": format!("d{w}"), "channel_id": "hub", "channel_type": 1, "client_msg_no": format!("d{w}-{n}"), "payload": b64("x")});
                let resp = api.client.post(format!("http://{}/message/send", api.addr)).json(&body).send().await.expect("the API answers");
                let status = resp.status().as_u16();
                let v: serde_json::Value = resp.json().await.expect("json");
                match status {
                    200 => {
                        acked.lock().unwrap().entry(w).or_default().push((n, v["message_seq"].as_u64().unwrap(), v["message_id"].as_i64().unwrap()));
                        n += 1;
                    }
                    507 => {
                        assert!(v["msg"].as_str().unwrap_or_default().contains("reserve"), "a clear refusal: {v}");
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        // The same client_msg_no is retried: nothing of it was stored.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    other => panic!("unexpected {other}: {v}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status_of("/readyz").await.status().as_u16(), 200);
    std::fs::write(&probe, "1000").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ready = status_of("/readyz").await;
    assert_eq!(ready.status().as_u16(), 503);
    assert!(ready.text().await.unwrap().contains("reserve"));
    let metrics = status_of("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("rookery_log_writable 0") && metrics.contains("rookery_log_disk_full 1"), "{metrics}");
    let during = refused.load(std::sync::atomic::Ordering::Relaxed);
    assert!(during > 0, "sends were refused while the disk was full");
    std::fs::write(&probe, "1000000000").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status_of("/readyz").await.status().as_u16(), 200, "ready again without a restart");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    let acked = acked.lock().unwrap().clone();
    let after: usize = acked.values().map(Vec::len).sum();
    assert!(after > 4, "sends were acknowledged around the full disk ({after})");

    // Nothing acknowledged is lost or doubled, across a kill as well; the log verifies.
    server.kill9();
    let mut server = Server::start(&data, &env);
    for (w, sent) in &acked {
        let (status, page) = server
            .post(
                "/channel/messagesync",
                &json!({"login_uid": format!("d{w}"), "channel_id": "hub", "channel_type": 1, "start_message_seq": 0, "end_message_seq": 0, "limit": 10000}),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let stored: Vec<(String, u64)> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["client_msg_no"].as_str().unwrap().to_owned(), m["message_seq"].as_u64().unwrap()))
            .collect();
        assert_eq!(stored.len(), sent.len(), "writer {w}: every acknowledged message once, nothing refused stored");
        for (i, ((cmn, seq), (n, acked_seq, _))) in stored.iter().zip(sent).enumerate() {
            assert_eq!((cmn, *seq), (&format!("d{w}-{n}"), i as u64 + 1), "writer {w}");
            assert_eq!(*seq, *acked_seq);
        }
    }
    server.stop();
    let (ok, out) = verify(&data);
    assert!(ok, "the log verifies after the drill: {out}");
}
