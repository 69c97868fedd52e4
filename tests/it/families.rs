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

/// A web page in a browser on the server's machine may POST to another origin without asking first (as
/// a form or `text/plain`), and may reach an open loopback API under its own host name after rebinding
/// that name to 127.0.0.1: the browser's `Origin` (or `Sec-Fetch-Site`) and the host name give both
/// away, and both are refused without changing anything. Servers, which send neither, are served
/// whatever content type they give their JSON (curl's and PHP's default is a form's).
#[tokio::test]
async fn what_a_browser_page_could_send_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]);
    let url = format!("http://{}/user/token", s.api);
    let body = r#"{"uid":"victim","token":"t","device_flag":0,"device_level":1}"#;
    for (name, value) in [("Origin", "http://evil.example"), ("Origin", "null"), ("Sec-Fetch-Site", "cross-site"), ("Origin", "http://localhost:8080")] {
        let resp = s.client().post(&url).header(name, value).header("Content-Type", "text/plain;charset=UTF-8").body(body).send().await.expect("sent");
        assert_eq!(resp.status().as_u16(), 403, "{name}: {value}");
        let v: serde_json::Value = resp.json().await.expect("json");
        assert!(v["msg"].as_str().unwrap_or_default().contains("another origin"), "{v}");
    }
    let resp = s.client().post(&url).header("Host", "evil.example:5001").header("Content-Type", "application/json").body(body).send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 403);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert!(v["msg"].as_str().unwrap_or_default().contains("loopback"), "{v}");
    let (_, head) = s.get("/audit/head").await;
    assert_eq!(head["position"], 0, "nothing was written: {head}");

    // A server's JSON under a form's content type, or none, under a loopback name: accepted; so is a page
    // of the API's own origin.
    for content_type in ["application/x-www-form-urlencoded", "text/plain", "application/json"] {
        let resp = s.client().post(&url).header("Content-Type", content_type).body(body).send().await.expect("sent");
        assert_eq!(resp.status().as_u16(), 200, "{content_type}");
    }
    let own = format!("http://{}", s.api);
    let resp = s.client().post(&url).header("Origin", own).header("Content-Type", "application/json").body(body).send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let resp = s
        .client()
        .post(&url)
        .header("Host", format!("localhost:{}", s.api.port()))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let (status, v) = s.post_raw("/user/token", r#"{"uid":"other","token":"t"}"#).await;
    assert_eq!(status, 200, "{v}");
}

/// With a credential configured the API answers under any host name (a page cannot know the secret).
#[tokio::test]
async fn with_a_credential_any_host_name_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[("ROOKERY_MANAGER_TOKEN", "m-secret")]);
    let resp = s
        .client()
        .post(format!("http://{}/user/token", s.api))
        .header("Host", "im.example.com")
        .header("token", "m-secret")
        .json(&json!({"uid": "u1", "token": "t"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
}
