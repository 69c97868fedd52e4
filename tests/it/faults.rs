//! The fault suite: the real server under mixed load (REST senders into person channels and a group
//! with fan-out, WKProto senders, command messages), killed with SIGKILL again and again, then checked
//! for count conservation: every acknowledged message present exactly once, each channel's seqs
//! gap-free, every acknowledged command queued once, and `replay --verify` clean. Also a server
//! stopped (SIGSTOP) under load and resumed.
//!
//! `ROOKERY_FAULT_CYCLES` sets the number of kill cycles: 3 in `make test`, 100 in `make fault-suite`,
//! whose figures are in docs/BENCHMARKS.md.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rookery::gateway::packet::ReasonCode;
use serde_json::{json, Value};

use crate::gateway::Client;
use crate::support::{b64, verify, Server};

/// Group members besides the senders: each group message fans out to all of them.
const FAN_OUT: usize = 50;

/// An acknowledged message: (channel id as stored, channel type, client_msg_no, message_seq).
type Acked = (String, u8, String, u64);

fn cycles() -> usize {
    std::env::var("ROOKERY_FAULT_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

async fn setup(s: &Server) {
    let mut members: Vec<String> = (0..FAN_OUT).map(|i| format!("m{i}")).collect();
    members.extend(["r0", "r1", "r2", "r3"].map(String::from));
    let (status, v) = s.post("/channel", &json!({"channel_id": "fg", "channel_type": 2, "subscribers": members})).await;
    assert_eq!(status, 200, "{v}");
    for w in ["w0", "w1"] {
        let (status, v) = s.post("/user/token", &json!({"uid": w, "token": format!("t-{w}"), "device_flag": 0, "device_level": 1})).await;
        assert_eq!(status, 200, "{v}");
    }
}

/// One REST sender: `body(n)` until the server dies; records each acknowledgement.
async fn rest_sender(
    s: Arc<(reqwest::Client, std::net::SocketAddr)>,
    acked: Arc<Mutex<Vec<Acked>>>,
    cycle: usize,
    who: &'static str,
    channel: (&'static str, u8),
    command: bool,
) {
    for n in 0u64.. {
        let cmn = format!("c{cycle}-{who}-{n}");
        let mut body = json!({"from_uid": who, "channel_id": channel.0, "channel_type": channel.1, "client_msg_no": cmn, "payload": b64("load")});
        if command {
            body["header"] = json!({"sync_once": 1});
        }
        let Ok(resp) = s.0.post(format!("http://{}/message/send", s.1)).json(&body).send().await else { return };
        let Ok(v) = resp.json::<Value>().await else { return };
        let Some(seq) = v["message_seq"].as_u64() else { return };
        // Stored channel id of a person channel as the sender names it: the peer's uid.
        acked.lock().unwrap().push((channel.0.to_owned(), channel.1 + if command { 100 } else { 0 }, cmn, seq));
        if command {
            // Commands stay queued (m0 never acknowledges them): a few per cycle keep the queue
            // within one read of /message/sync even at 100 cycles.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One WKProto sender into the person channel with `hubw` until the server dies.
async fn wk_sender(tcp: std::net::SocketAddr, acked: Arc<Mutex<Vec<Acked>>>, cycle: usize, who: &'static str) {
    let mut c = Client::logged_in_tcp(tcp, who, &format!("t-{who}"), 0).await;
    for n in 1u32.. {
        let p = c.send_packet_for(n, "hubw", 1, "load", &format!("c{cycle}-{who}-{n}"));
        if !c.try_write(&p).await {
            return;
        }
        match c.read().await {
            Some(rookery::gateway::packet::Packet::Sendack(ack)) if ack.reason_code == ReasonCode::SUCCESS => {
                acked.lock().unwrap().push(("hubw".into(), 1, format!("c{cycle}-{who}-{n}"), ack.message_seq));
            }
            _ => return,
        }
    }
}

/// The stored messages of a channel as `viewer` reads them: (client_msg_no, seq), in seq order.
async fn stored(s: &Server, viewer: &str, channel: &str, ty: u8) -> Vec<(String, u64)> {
    // Pages upwards from seq 1: `[start, ...)`, the lowest `limit` of them.
    let mut out: Vec<(String, u64)> = Vec::new();
    let mut start = 1u64;
    loop {
        let body = json!({"login_uid": viewer, "channel_id": channel, "channel_type": ty, "start_message_seq": start, "end_message_seq": 0, "limit": 10000, "pull_mode": 1});
        let (status, page) = s.post("/channel/messagesync", &body).await;
        assert_eq!(status, 200, "{page}");
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        out.extend(messages.iter().map(|m| (m["client_msg_no"].as_str().unwrap_or_default().to_owned(), m["message_seq"].as_u64().unwrap_or(0))));
        let next = out.last().map_or(start, |(_, q)| q + 1);
        if page["more"].as_u64() != Some(1) || messages.is_empty() || next <= start {
            return out;
        }
        start = next;
    }
}

/// The command messages queued for `uid`: their client_msg_nos.
async fn queued_commands(s: &Server, uid: &str) -> Vec<String> {
    let (status, v) = s.post("/message/sync", &json!({"uid": uid, "limit": 10000})).await;
    assert_eq!(status, 200, "{v}");
    v.as_array().cloned().unwrap_or_default().iter().map(|m| m["client_msg_no"].as_str().unwrap_or_default().to_owned()).collect()
}

/// (acknowledged, lost, duplicated, stored without an acknowledgement) of one stream of messages.
fn conserve(label: &str, acked: &[&Acked], stored: &[(String, u64)], dense: bool) -> (usize, usize, usize, usize) {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (cmn, _) in stored {
        *count.entry(cmn.as_str()).or_default() += 1;
    }
    if dense {
        for (i, (_, seq)) in stored.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1, "{label}: seqs must be gap-free");
        }
    }
    let by_cmn: BTreeMap<&str, u64> = stored.iter().map(|(c, q)| (c.as_str(), *q)).collect();
    let mut lost = 0;
    for (_, _, cmn, seq) in acked {
        match by_cmn.get(cmn.as_str()) {
            None => lost += 1,
            Some(q) => assert_eq!(q, seq, "{label}: {cmn} was acknowledged with seq {seq}"),
        }
    }
    let duplicated = count.values().filter(|n| **n > 1).count();
    let unacked = stored.len() - acked.len() + lost;
    (acked.len(), lost, duplicated, unacked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_cycles_under_mixed_load_lose_and_duplicate_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let cycles = cycles();
    for cycle in 0..cycles {
        let mut s = Server::start(dir.path(), &[]);
        if cycle == 0 {
            setup(&s).await;
        }
        let handle = Arc::new((s.client().clone(), s.api));
        let mut tasks = Vec::new();
        for (who, channel, command) in [("r0", ("hub", 1u8), false), ("r1", ("hub", 1), false), ("r2", ("fg", 2), false), ("r3", ("fg", 2), true)] {
            tasks.push(tokio::spawn(rest_sender(handle.clone(), acked.clone(), cycle, who, channel, command)));
        }
        let wk = {
            let (acked, tcp) = (acked.clone(), s.tcp);
            tokio::spawn(async move {
                tokio::join!(wk_sender(tcp, acked.clone(), cycle, "w0"), wk_sender(tcp, acked, cycle, "w1"));
            })
        };
        // A varying moment: early, mid-group, late.
        tokio::time::sleep(Duration::from_millis(300 + (cycle as u64 * 137) % 500)).await;
        s.kill9();
        for t in tasks {
            let _ = t.await;
        }
        let _ = wk.await;
    }

    let mut s = Server::start(dir.path(), &[]);
    let acked = acked.lock().unwrap().clone();
    let mut totals = (0, 0, 0, 0);
    let mut add = |t: (usize, usize, usize, usize)| {
        totals = (totals.0 + t.0, totals.1 + t.1, totals.2 + t.2, totals.3 + t.3);
    };
    for (label, viewer, channel, ty, filter) in [
        ("r0 -> hub", "r0", "hub", 1u8, "-r0-"),
        ("r1 -> hub", "r1", "hub", 1, "-r1-"),
        ("w0 -> hubw", "w0", "hubw", 1, "-w0-"),
        ("w1 -> hubw", "w1", "hubw", 1, "-w1-"),
    ] {
        let mine: Vec<&Acked> = acked.iter().filter(|a| a.0 == channel && a.1 == ty && a.2.contains(filter)).collect();
        add(conserve(label, &mine, &stored(&s, viewer, channel, ty).await, true));
    }
    let group: Vec<&Acked> = acked.iter().filter(|a| a.0 == "fg" && a.1 == 2).collect();
    add(conserve("group fg", &group, &stored(&s, "m0", "fg", 2).await, true));
    let commands: Vec<&Acked> = acked.iter().filter(|a| a.1 == 102).collect();
    let queued: Vec<(String, u64)> = queued_commands(&s, "m0").await.into_iter().map(|c| (c, 0)).collect();
    let by_cmn: Vec<(String, u64)> = queued.iter().map(|(c, _)| (c.clone(), commands.iter().find(|a| a.2 == *c).map_or(0, |a| a.3))).collect();
    add(conserve("commands queued for m0", &commands, &by_cmn, false));
    let (total, lost, duplicated, unacked) = totals;
    println!("fault suite: {cycles} SIGKILL cycles, {total} messages acknowledged, {lost} lost, {duplicated} duplicated, {unacked} stored unacknowledged (in flight at a kill)");
    assert!(total >= cycles * 10, "the load acknowledged too little to mean anything ({total})");
    assert_eq!((lost, duplicated), (0, 0), "count conservation");
    s.stop();
    let (ok, out) = verify(dir.path());
    assert!(ok, "replay --verify after {cycles} kills: {out}");
}

/// A server stopped (SIGSTOP) under load and resumed (SIGCONT): its clients wait, nothing
/// acknowledged is lost, and the load goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_server_resumes_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let handle = Arc::new((s.client().clone(), s.api));
    let sender = tokio::spawn(rest_sender(handle, acked.clone(), 0, "r0", ("hub", 1), false));
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.signal(nix::sys::signal::Signal::SIGSTOP);
    // An answer already on its way when the process stopped may still arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(acked.lock().unwrap().len(), before, "nothing is acknowledged while stopped");
    s.signal(nix::sys::signal::Signal::SIGCONT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(acked.lock().unwrap().len() > before, "the load goes on after SIGCONT");
    let mut s = s;
    s.kill9();
    let _ = sender.await;
    let s = Server::start(dir.path(), &[]);
    let acked = acked.lock().unwrap().clone();
    let mine: Vec<&Acked> = acked.iter().collect();
    let (_, lost, duplicated, _) = conserve("r0 -> hub", &mine, &stored(&s, "r0", "hub", 1).await, true);
    assert_eq!((lost, duplicated), (0, 0));
}
