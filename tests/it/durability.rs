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
