//! `rookery backup` and `rookery restore` against the real binary: a backup taken while the server
//! runs (through `POST /backup`) and one taken with no server, restored into new data directories.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::support::{b64, Server};

const TOKEN: &str = "backup-admin-secret";

fn rookery(args: &[&str], api: Option<std::net::SocketAddr>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rookery"));
    cmd.args(args).env("RUST_LOG", "warn").env("ROOKERY_MANAGER_TOKEN", TOKEN);
    if let Some(addr) = api {
        cmd.env("ROOKERY_API_ADDR", addr.to_string());
    }
    cmd.output().expect("run rookery")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

async fn call(s: &Server, method: &str, route: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("http://{}{}", s.api, route);
    let req = match method {
        "GET" => s.client().get(url),
        _ => s.client().post(url).json(&body.unwrap_or(Value::Null)),
    };
    let resp = req.header("token", TOKEN).send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn send(s: &Server, text: &str) {
    let (status, v) = call(s, "POST", "/message/send", Some(json!({"from_uid": "ann", "channel_id": "g", "channel_type": 2, "payload": b64(text)}))).await;
    assert_eq!(status, 200, "{v}");
}

async fn head(s: &Server) -> Value {
    let (status, v) = call(s, "GET", "/audit/head", None).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn messages(s: &Server) -> Vec<String> {
    let (status, v) = call(s, "POST", "/channel/messagesync", Some(json!({"login_uid": "ann", "channel_id": "g", "channel_type": 2, "limit": 100}))).await;
    assert_eq!(status, 200, "{v}");
    v["messages"].as_array().expect("messages").iter().map(|m| m["payload"].as_str().expect("payload").to_owned()).collect()
}

#[tokio::test]
async fn backup_while_running_restores_the_state_at_backup_time() {
    let root = tempfile::tempdir().expect("tempdir");
    let (data, backup, restored) = (root.path().join("data"), root.path().join("backup"), root.path().join("restored"));
    let mut server = Server::start(&data, &[("ROOKERY_MANAGER_TOKEN", TOKEN)]);
    let (status, v) = call(&server, "POST", "/channel", Some(json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann", "bob"]}))).await;
    assert_eq!(status, 200, "{v}");
    for i in 0..5 {
        send(&server, &format!("before{i}")).await;
    }
    let head_at_backup = head(&server).await;
    let messages_at_backup = messages(&server).await;
    let (_, state_at_backup) = call(&server, "GET", "/audit/state?channel_id=g&channel_type=2", None).await;

    // The server holds the log, so the command asks it; a wrong token is refused with the reason.
    let out = rookery(&["backup", path(&backup), "--data-dir", path(&data), "--token", "wrong"], Some(server.api));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("401"), "{}", text(&out));
    let out = rookery(&["backup", path(&backup), "--data-dir", path(&data)], Some(server.api));
    assert!(out.status.success(), "{}", text(&out));
    let manifest: toml::Value = toml::from_str(&std::fs::read_to_string(backup.join("BACKUP.toml")).expect("manifest")).expect("toml manifest");
    assert_eq!(manifest["position"].as_integer().map(|p| p as u64), head_at_backup["position"].as_u64());
    assert_eq!(manifest["chain_head"].as_str(), head_at_backup["hash"].as_str());
    assert!(text(&out).contains(head_at_backup["hash"].as_str().expect("hash")), "{}", text(&out));

    // More activity after the backup.
    for i in 0..3 {
        send(&server, &format!("after{i}")).await;
    }
    assert_ne!(head(&server).await, head_at_backup);

    // Bad inputs: a non-empty backup target, a data dir without a log, a directory that is no backup.
    let out = rookery(&["backup", path(&backup), "--data-dir", path(&data)], Some(server.api));
    assert!(!out.status.success() && text(&out).contains("not empty"), "{}", text(&out));
    let out = rookery(&["backup", path(&root.path().join("b2")), "--data-dir", path(&root.path().join("nothing"))], None);
    assert!(!out.status.success() && text(&out).contains("no event log"), "{}", text(&out));
    let out = rookery(&["restore", path(&data), "--data-dir", path(&restored)], None);
    assert!(!out.status.success() && text(&out).contains("not a Rookery backup"), "{}", text(&out));
    assert!(!restored.exists(), "a refused restore leaves nothing behind");

    // Restore into a new directory; a second restore there is refused.
    let out = rookery(&["restore", path(&backup), "--data-dir", path(&restored)], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = rookery(&["restore", path(&backup), "--data-dir", path(&restored)], None);
    assert!(!out.status.success() && text(&out).contains("not empty"), "{}", text(&out));
    let out = rookery(&["verify", "--data-dir", path(&restored)], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(head_at_backup["hash"].as_str().expect("hash")), "{}", text(&out));

    server.stop();
    let restored_server = Server::start(&restored, &[("ROOKERY_MANAGER_TOKEN", TOKEN)]);
    assert_eq!(head(&restored_server).await, head_at_backup, "the restored chain ends where the backup was taken");
    assert_eq!(messages(&restored_server).await, messages_at_backup);
    let (_, state) = call(&restored_server, "GET", "/audit/state?channel_id=g&channel_type=2", None).await;
    // The channel as of the restored head is the channel as it was at backup time (how it was
    // computed, from a snapshot or by replay, may differ).
    assert_eq!((&state["channel"], &state["at"]), (&state_at_backup["channel"], &state_at_backup["at"]));
    assert_eq!(state["channel"]["last_message_seq"], 5, "{state}");
    // The restored server goes on from there.
    send(&restored_server, "later").await;
    assert_eq!(messages(&restored_server).await.len(), messages_at_backup.len() + 1);
}

#[tokio::test]
async fn backup_without_a_server_opens_the_log_itself() {
    let root = tempfile::tempdir().expect("tempdir");
    let (data, backup, restored) = (root.path().join("data"), root.path().join("backup"), root.path().join("restored"));
    let mut server = Server::start(&data, &[("ROOKERY_MANAGER_TOKEN", TOKEN)]);
    let (status, v) = call(&server, "POST", "/channel", Some(json!({"channel_id": "g", "channel_type": 2, "subscribers": ["ann"]}))).await;
    assert_eq!(status, 200, "{v}");
    send(&server, "only").await;
    let final_head = head(&server).await;
    server.stop();

    // An empty existing directory is a fine target.
    std::fs::create_dir(&backup).expect("mkdir");
    let out = rookery(&["backup", path(&backup), "--data-dir", path(&data)], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = rookery(&["restore", path(&backup), "--data-dir", path(&restored)], None);
    assert!(out.status.success(), "{}", text(&out));
    let (ok, report) = crate::support::verify(&restored);
    assert!(ok, "{report}");
    let s = Server::start(&restored, &[("ROOKERY_MANAGER_TOKEN", TOKEN)]);
    assert_eq!(head(&s).await, final_head);
    assert_eq!(messages(&s).await, vec![b64("only")]);
}
