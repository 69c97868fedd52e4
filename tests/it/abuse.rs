//! What a hostile or broken client may try, against the real server: none of it may cost the server
//! lasting state or hurt other clients.

use rookery::gateway::packet::ReasonCode;
use serde_json::Value;

use crate::gateway::{server_with_tokens, Client, Kind};
use crate::support::Server;

/// The actor counts of `/varz`.
async fn actors(s: &Server) -> (u64, u64) {
    let v: Value = reqwest::get(format!("http://{}/varz", s.monitor)).await.expect("varz").json().await.expect("json");
    (v["user_actors"].as_u64().expect("user_actors"), v["channel_actors"].as_u64().expect("channel_actors"))
}

/// Refused CONNECTs with made-up uids load nothing: the token is checked before any per-user state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_leave_no_actors_behind() {
    let (_dir, s) = server_with_tokens().await;
    // A real login first, so the counts include what a working session costs.
    let _alice = Client::logged_in(&s, Kind::Tcp, "alice", "ta", 1, 5).await;
    let before = actors(&s).await;
    for i in 0..200 {
        let mut c = Client::open(&s, if i % 2 == 0 { Kind::Tcp } else { Kind::Ws }).await;
        let ack = c.connect(&format!("intruder-{i}"), "guess", 0, 5).await;
        assert_eq!(ack.reason_code, ReasonCode::AUTH_FAIL, "{i}");
    }
    // A known uid with a wrong token: refused too, and alice's state is read, not reloaded.
    let mut c = Client::open(&s, Kind::Tcp).await;
    assert_eq!(c.connect("bob", "wrong", 0, 5).await.reason_code, ReasonCode::AUTH_FAIL);
    let after = actors(&s).await;
    assert!(after.0 <= before.0 + 1 && after.1 <= before.1, "actors before {before:?}, after 201 refused logins {after:?}");
}
