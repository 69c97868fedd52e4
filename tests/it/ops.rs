//! Operations against the real binary: the monitor's `/metrics`, `/readyz`, `/varz` and `/connz`.
//! Counters are scraped before and after known traffic and must move by exactly that traffic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rookery::gateway::packet::{self, ReasonCode};
use serde_json::{json, Value};

use crate::gateway::{recv, Client, Kind};
use crate::support::{b64, Server};

const WAIT: Duration = Duration::from_secs(10);

/// A logged-in WKProto client over TCP.
async fn wk(s: &Server, uid: &str, token: &str, device_flag: u8, device_id: &str) -> Client {
    let mut c = Client::open(s, Kind::Tcp).await;
    let ack = c.connect_device(uid, token, device_flag, packet::LATEST_VERSION, device_id).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{uid} connects");
    c
}

async fn monitor_get(s: &Server, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{}{}", s.monitor, path)).await.expect("monitor request");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

async fn monitor_json(s: &Server, path: &str) -> Value {
    let (status, body) = monitor_get(s, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// One scrape: every sample line as `name{labels}` → value.
async fn scrape(s: &Server) -> HashMap<String, f64> {
    let (status, text) = monitor_get(s, "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("sample line");
            (name.to_owned(), value.parse::<f64>().unwrap_or_else(|_| panic!("numeric sample: {l}")))
        })
        .collect()
}

fn get(m: &HashMap<String, f64>, name: &str) -> f64 {
    *m.get(name).unwrap_or_else(|| panic!("metric {name} missing; have {:?}", m.keys().collect::<Vec<_>>()))
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, name: &str) -> f64 {
    get(after, name) - before.get(name).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_connz_and_varz_follow_the_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]);
    // Every listener line has been printed, so the server is ready.
    assert_eq!(monitor_get(&s, "/readyz").await.0, 200);
    assert_eq!(monitor_get(&s, "/healthz").await.0, 200);
    for (uid, token, flag) in [("alice", "ta", 1), ("bob", "tb", 0)] {
        let (status, v) = s.post("/user/token", &json!({"uid": uid, "token": token, "device_flag": flag, "device_level": 1})).await;
        assert_eq!(status, 200, "{v}");
    }

    let before = scrape(&s).await;
    let mut bob = wk(&s, "bob", "tb", 0, "bob-phone").await;
    let mut alice = wk(&s, "alice", "ta", 1, "alice-browser").await;
    // Three sends over WKProto, each delivered live to bob.
    for i in 0..3 {
        assert_eq!(alice.send(i + 1, "bob", 1, &format!("wk{i}")).await.reason_code, ReasonCode::SUCCESS);
        assert_eq!(recv(&mut bob).await.1, format!("wk{i}"));
    }
    // A retry of the last one is answered from the original: not a new message.
    assert_eq!(alice.send(3, "bob", 1, "wk2").await.reason_code, ReasonCode::SUCCESS);
    // Two sends over REST, each delivered to bob and to alice's own session, and one refused request.
    for i in 0..2 {
        let (status, v) =
            s.post("/message/send", &json!({"from_uid": "alice", "channel_id": "bob", "channel_type": 1, "payload": b64(&format!("rest{i}"))})).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(recv(&mut bob).await.1, format!("rest{i}"));
        assert_eq!(recv(&mut alice).await.1, format!("rest{i}"));
    }
    let (status, _) = s.post("/message/send", &json!({"from_uid": "alice"})).await;
    assert_eq!(status, 400);
    let after = scrape(&s).await;

    assert_eq!(delta(&before, &after, "rookery_messages_in_total"), 5.0, "3 WKProto + 2 REST sends, the retry not counted");
    assert_eq!(delta(&before, &after, "rookery_messages_retried_total"), 1.0, "the retry, counted apart");
    assert_eq!(delta(&before, &after, "rookery_messages_out_total"), 7.0, "5 RECVs written to bob, 2 to alice");
    assert_eq!(delta(&before, &after, "rookery_messages_dropped_total"), 0.0);
    // Every byte both clients wrote was read, and every byte they read was written, nothing else.
    assert_eq!(delta(&before, &after, "rookery_client_bytes_in_total"), (alice.bytes_sent + bob.bytes_sent) as f64);
    assert_eq!(delta(&before, &after, "rookery_client_bytes_out_total"), (alice.bytes_received + bob.bytes_received) as f64);
    assert_eq!(delta(&before, &after, r#"rookery_http_requests_total{class="message",status="200"}"#), 2.0);
    assert_eq!(delta(&before, &after, r#"rookery_http_requests_total{class="message",status="400"}"#), 1.0);
    assert_eq!(get(&after, r#"rookery_connections_open{transport="tcp"}"#), 2.0);
    assert_eq!(get(&after, r#"rookery_connections_open{transport="ws"}"#), 0.0);
    assert_eq!(get(&after, r#"rookery_sessions{transport="tcp"}"#), 2.0);
    // Every message is one record; records and groups agree with the histograms.
    let appended = delta(&before, &after, "rookery_log_records_appended_total");
    assert!(appended >= 5.0, "at least one record per new message, got {appended}");
    assert_eq!(get(&after, "rookery_log_commit_group_records_count"), get(&after, "rookery_log_commit_groups_total"));
    assert_eq!(get(&after, "rookery_log_commit_group_records_sum"), get(&after, "rookery_log_records_appended_total"));
    assert_eq!(get(&after, "rookery_log_write_seconds_count"), get(&after, "rookery_log_commit_groups_total"));
    assert_eq!(get(&after, "rookery_log_fsyncs_total"), get(&after, "rookery_log_commit_groups_total"), "durability = sync");
    assert_eq!(get(&after, r#"rookery_log_commit_group_records_bucket{le="+Inf"}"#), get(&after, "rookery_log_commit_groups_total"));
    let (_, head) = s.get("/audit/head").await;
    assert_eq!(get(&after, "rookery_log_head_position"), head["position"].as_f64().expect("head position"));
    assert!(get(&after, r#"rookery_actors{kind="channel"}"#) >= 1.0, "the person channel's actor is live");
    assert_eq!(get(&after, "rookery_log_pending_records"), 0.0, "nothing in flight once every send was answered");
    // The indexer moves in-memory index entries to the index families every 50 ms: soon none are left.
    let mut unindexed = get(&after, "rookery_log_unindexed_records");
    assert!(unindexed <= get(&after, "rookery_log_records_appended_total"), "{unindexed}");
    for _ in 0..50 {
        if unindexed == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        unindexed = get(&scrape(&s).await, "rookery_log_unindexed_records");
    }
    assert_eq!(unindexed, 0.0, "the indexer keeps up with an idle server");

    // /connz lists both sessions with their counters.
    let connz = monitor_json(&s, "/connz").await;
    assert_eq!(connz["total"], 2, "{connz}");
    let conns = connz["connections"].as_array().expect("connections");
    let of = |uid: &str| conns.iter().find(|c| c["uid"] == uid).unwrap_or_else(|| panic!("{uid} listed: {connz}")).clone();
    let (a, b) = (of("alice"), of("bob"));
    assert_eq!((a["device_flag"].as_u64(), a["device"].as_str(), a["device_id"].as_str()), (Some(1), Some("WEB"), Some("alice-browser")));
    assert_eq!((b["device_flag"].as_u64(), b["device"].as_str(), b["device_id"].as_str()), (Some(0), Some("APP"), Some("bob-phone")));
    assert_eq!((a["in_msgs"].as_u64(), a["out_msgs"].as_u64()), (Some(4), Some(2)), "4 accepted SENDs (the retry too), her 2 REST sends");
    assert_eq!((b["in_msgs"].as_u64(), b["out_msgs"].as_u64()), (Some(0), Some(5)));
    assert_eq!(a["ip"], "127.0.0.1");
    assert_eq!(a["port"].as_u64(), Some(u64::from(alice.local_port())));
    assert_eq!(b["port"].as_u64(), Some(u64::from(bob.local_port())));
    assert_eq!(a["version"].as_u64(), Some(u64::from(packet::LATEST_VERSION)));
    assert_eq!(a["transport"], "tcp");
    assert!(a["start"].as_str().is_some_and(|t| t.ends_with('Z')), "{a}");
    // Paging, and bad paging.
    let page = monitor_json(&s, "/connz?offset=1&limit=1").await;
    assert_eq!((page["total"].as_u64(), page["connections"].as_array().map(Vec::len)), (Some(2), Some(1)));
    assert_eq!(page["connections"][0]["uid"], "alice", "ordered by connection");
    for bad in ["/connz?limit=0", "/connz?limit=x", "/connz?offset=-1", "/connz?nope=1"] {
        let (status, body) = monitor_get(&s, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("msg"), "{bad}: {body}");
    }

    // /varz in WuKongIM's shape.
    let varz = monitor_json(&s, "/varz").await;
    assert_eq!(varz["connections"], 2, "{varz}");
    assert_eq!(varz["out_msgs"].as_u64(), Some(get(&after, "rookery_messages_out_total") as u64));
    assert_eq!(varz["in_msgs"].as_u64(), Some(get(&after, "rookery_messages_in_total") as u64));
    assert!(varz["in_bytes"].as_u64().is_some_and(|b| b as f64 >= get(&after, "rookery_client_bytes_in_total")), "{varz}");
    assert!(varz["out_bytes"].as_u64().is_some_and(|b| b as f64 >= get(&after, "rookery_client_bytes_out_total")), "{varz}");
    assert_eq!(varz["log_position"], head["position"]);
    assert!(varz["mem"].as_u64().is_some_and(|m| m > 0), "{varz}");
    // CPU since the previous /varz, in percent of one core: the server did work since it started.
    let cpu = varz["cpu"].as_f64().expect("cpu");
    assert!((0.0..=100.0 * 64.0).contains(&cpu), "{varz}");

    // A closed socket leaves /connz and the gauges.
    drop(bob);
    let deadline = Instant::now() + WAIT;
    loop {
        let m = scrape(&s).await;
        if get(&m, r#"rookery_connections_open{transport="tcp"}"#) == 1.0 && get(&m, r#"rookery_sessions{transport="tcp"}"#) == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "bob's closed socket still counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(monitor_json(&s, "/connz").await["total"], 1);
    drop(alice);
}

#[tokio::test]
async fn logs_can_be_json_and_unknown_formats_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start(dir.path(), &[("ROOKERY_LOG_FORMAT", "json")]);
    assert_eq!(monitor_get(&s, "/readyz").await.0, 200);
    s.stop();
    let rookery = |format: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rookery"))
            .args(["replay", "--verify", "--data-dir"])
            .arg(dir.path())
            .env("ROOKERY_LOG_FORMAT", format)
            .env("RUST_LOG", "info")
            .output()
            .expect("run rookery")
    };
    // Opening the log logs at info: one JSON object per line.
    let out = rookery("json");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("event log opened")).unwrap_or_else(|| panic!("log line missing: {err}"));
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["fields"]["message"], "event log opened", "{v}");
    // An unknown format is refused, naming the setting and the valid choices.
    let out = rookery("xml");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("log_format") && err.contains("json"), "{err}");
}

fn rookery_config(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rookery"));
    cmd.arg("config").args(args).env("RUST_LOG", "warn");
    // Only the variables this test sets.
    for (k, _) in std::env::vars() {
        if k.starts_with("ROOKERY_") || k.starts_with("WK_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run rookery config")
}

#[test]
fn config_prints_effective_settings_with_secrets_hidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rookery.toml");
    std::fs::write(
        &file,
        "manager_token = \"file-secret\"\nsnapshot_every = 50\n[[api_keys]]\nname = \"ops\"\nsecret = \"ops-secret\"\nscope = \"read_only\"\n",
    )
    .expect("write settings");
    let out = rookery_config(
        &["--config", file.to_str().expect("utf8 path")],
        &[("WK_HTTPADDR", "127.0.0.1:7001"), ("WK_ADDR", "tcp://127.0.0.1:7100"), ("ROOKERY_TCP_ADDR", "127.0.0.1:8100"), ("ROOKERY_LOG_FORMAT", "json")],
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("file-secret") && !text.contains("ops-secret"), "secrets never printed: {text}");
    let printed: toml::Value = toml::from_str(&text).expect("the output is TOML");
    assert_eq!(printed["manager_token"].as_str(), Some("<hidden>"));
    assert_eq!(printed["api_keys"][0]["secret"].as_str(), Some("<hidden>"));
    assert_eq!(printed["api_keys"][0]["name"].as_str(), Some("ops"));
    assert_eq!(printed["snapshot_every"].as_integer(), Some(50), "from the file");
    assert_eq!(printed["api_addr"].as_str(), Some("127.0.0.1:7001"), "from WK_HTTPADDR");
    assert_eq!(printed["tcp_addr"].as_str(), Some("127.0.0.1:8100"), "ROOKERY_TCP_ADDR wins over WK_ADDR");
    assert_eq!(printed["log_format"].as_str(), Some("json"));
    assert_eq!(printed["ws_addr"].as_str(), Some("0.0.0.0:5200"), "a default");
    assert!(text.contains("# external_tcp_addr is not set"), "{text}");

    // The printed settings are a settings file: with the secrets filled in again, it prints the same.
    let again = dir.path().join("printed.toml");
    std::fs::write(&again, text.replacen("<hidden>", "secret-1", 1).replacen("<hidden>", "secret-2", 1)).expect("write printed settings");
    let out = rookery_config(&["--config", again.to_str().expect("utf8 path")], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).expect("utf8"), text);

    // Bad input: a missing file, an unknown key, settings that would not start.
    let out = rookery_config(&["--config", "/nonexistent/rookery.toml"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    std::fs::write(&file, "api_adr = \"127.0.0.1:1\"\n").expect("write settings");
    let out = rookery_config(&["--config", file.to_str().expect("utf8 path")], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("api_adr"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = rookery_config(&[], &[("ROOKERY_API_ADDR", "0.0.0.0:5001")]);
    assert!(!out.status.success(), "a public API without a credential is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a credential"));
}
