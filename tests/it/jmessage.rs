//! The JMessage family's door: HTTP Basic credentials of a configured app, its error envelope, and its
//! paths kept apart from the WuKongIM family's.

use base64::Engine;
use serde_json::{json, Value};

use crate::support::Server;

const APPS: &str = r#"[{tag="a1", appkey="4f7aef34fb361292c566a1cd", master_secret="054d6103823a726fc12d0466"}]"#;

fn basic(s: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s))
}

async fn jm(s: &Server, method: &str, path: &str, authorization: Option<&str>, body: &Value) -> (u16, Value) {
    let url = format!("http://{}{}", s.api, path);
    let mut req = match method {
        "GET" => s.client().get(url),
        "PUT" => s.client().put(url).json(body),
        _ => s.client().post(url).json(body),
    };
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn without_an_app_the_family_refuses_everything_and_says_how_to_configure_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]);
    let (status, v) = jm(
        &s,
        "POST",
        "/v1/users/",
        Some(&basic("4f7aef34fb361292c566a1cd:054d6103823a726fc12d0466")),
        &json!([{"username": "dev_fang", "password": "password"}]),
    )
    .await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["code"], 899008, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("jmessage_apps"), "{v}");
}

#[tokio::test]
async fn every_credential_problem_is_401_899008_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[("ROOKERY_JMESSAGE_APPS", APPS)]);
    let (_, head_before) = s.get("/audit/head").await;
    let body = json!([{"username": "dev_fang", "password": "password"}]);
    for authorization in [
        None,
        Some("Bearer 054d6103823a726fc12d0466".to_owned()),
        Some("Basic not base64!".to_owned()),
        Some(basic("4f7aef34fb361292c566a1cd054d6103823a726fc12d0466")),
        Some(basic("ffffffffffffffffffffffff:054d6103823a726fc12d0466")),
        Some(basic("4f7aef34fb361292c566a1cd:wrong")),
    ] {
        for (method, path) in [("POST", "/v1/users/"), ("GET", "/v1/users/dev_fang"), ("PUT", "/v1/sdkregister/1"), ("GET", "/groups/1/members")] {
            let (status, v) = jm(&s, method, path, authorization.as_deref(), &body).await;
            assert_eq!((status, &v), (401, &json!({"error": {"code": 899008, "message": "Basic authentication failed"}})), "{method} {path} {authorization:?}");
        }
    }
    let (_, head_after) = s.get("/audit/head").await;
    assert_eq!(head_before, head_after, "a refused request writes nothing");

    // The right credentials (the appkey in any case) pass the door; a path the family does not serve
    // is answered in its envelope.
    let good = basic("4F7AEF34FB361292C566A1CD:054d6103823a726fc12d0466");
    let (status, v) = jm(&s, "GET", "/v1/no_such_route", Some(&good), &Value::Null).await;
    assert_eq!((status, v), (404, json!({"error": {"code": 899003, "message": "no such route"}})));
    // Rookery's own request-id rule, in this family's envelope.
    let resp =
        s.client().get(format!("http://{}/v1/no_such_route", s.api)).header("Authorization", &good).header("X-Request-Id", "no pe").send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], 899003, "{v}");

    // The WuKongIM family is unaffected: its paths and its envelope.
    let (status, v) = s.post("/user/token", &json!({"uid": "u1", "token": "t"})).await;
    assert_eq!((status, v), (200, json!({"status": 200})));
}
