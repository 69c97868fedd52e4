//! One API port, several families: each request goes to the family that owns its path, and each
//! family keeps its own conventions (here: the server's own routes refuse unknown fields, the WuKongIM
//! family ignores them) and answers its own 404.

use serde_json::json;

use crate::support::Server;

#[tokio::test]
async fn each_family_answers_its_own_paths_with_its_own_conventions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]);
    // The server's own family: `/audit/...` refuses a field it does not know.
    let (status, v) = s.post("/audit/erase", &json!({"uid": "ann", "reason": "r", "extra": 1})).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["msg"].as_str().unwrap_or_default().contains("unknown field"), "{v}");
    // The WuKongIM family ignores it.
    let (status, v) = s.post("/user/token", &json!({"uid": "ann", "token": "t", "extra": 1})).await;
    assert_eq!(status, 200, "{v}");
    // Each family's 404, in its envelope.
    for path in ["/audit/no_such_route", "/no_such_route", "/message/no_such_route"] {
        let (status, v) = s.get(path).await;
        assert_eq!((status, v), (404, json!({"status": 404, "msg": "no such route"})), "{path}");
    }
    let (status, v) = s.get("/healthz").await;
    assert_eq!((status, v), (200, json!({"status": "ok"})));
}
