//! Tamper evidence: the hash chain names the exact record that was changed.

use serde_json::json;

use crate::support::{b64, verify, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_one_stored_byte_breaks_the_chain_at_exactly_that_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    for i in 0..5 {
        let (status, v) = server.post("/message/send", &json!({"from_uid": "ann", "channel_id": "ben", "channel_type": 1, "payload": b64(&format!("m{i}"))})).await;
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
