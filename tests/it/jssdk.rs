//! The official WuKongIM JS SDK (npm `wukongimjssdk` 1.0.4, the only version on the registry) under
//! Node with the `ws` package, against the real binary: `tests/js/sdk.test.mjs` connects two SDK
//! clients with registered tokens, sends and receives in a person and a group channel both ways,
//! checks that a wrong token is refused with authFail, that a second master login kicks the first
//! (ConnectKick 12, and the kicked SDK does not reconnect), and that a client that was offline
//! recovers the missed messages through the SDK's datasource hooks (conversation and message sync
//! over the REST API).
//!
//! Needs `node` (v20) and `tests/js/node_modules`, which `scripts/setup` installs (`npm ci`); without
//! them this test fails and says so rather than skipping.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Server;

/// The script bounds itself at 60 s; this is the backstop if Node itself hangs.
const LIMIT: Duration = Duration::from_secs(120);

/// `tests/js` of the checkout being tested. Cargo and nextest set `CARGO_MANIFEST_DIR` when they run
/// a test; the compile-time value is only a fallback, because a target directory shared between
/// clones (as CI's is) can hold a test binary built in another, since deleted, clone.
fn js_dir() -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    root.join("tests").join("js")
}

#[test]
fn official_js_sdk_sends_receives_is_refused_kicked_and_recovers_offline_messages() {
    run_sdk_script(&[], &[]);
}

/// An OpenIM user (seed 004) logs in with the token `/auth/user_register` gave it and receives what
/// `/manager/send_msg` sends, in the official SDK.
#[test]
fn official_js_sdk_logs_in_with_openim_tokens_and_receives_send_msg() {
    run_sdk_script(&["--openim", "tuoyun"], &[("ROOKERY_OPENIM", r#"{secret="tuoyun", admin_uid="openIM123456"}"#)]);
}

/// Runs `tests/js/sdk.test.mjs` with `args` against a server started with `env`.
fn run_sdk_script(args: &[&str], env: crate::support::Env) {
    let dir = js_dir();
    let setup = "run ./scripts/setup (it runs `npm ci --prefix tests/js`), or `npm ci --prefix tests/js` by hand";
    let node = Command::new("node").arg("--version").output();
    assert!(matches!(&node, Ok(out) if out.status.success()), "`node` is not runnable ({:?}): install Node.js 20 and npm, then {setup}", node.as_ref().err());
    assert!(
        dir.join("node_modules").join("wukongimjssdk").join("package.json").is_file() && dir.join("node_modules").join("ws").join("package.json").is_file(),
        "{} has no wukongimjssdk/ws installed: {setup}",
        dir.join("node_modules").display()
    );

    let data = tempfile::tempdir().expect("temp dir");
    let s = Server::start(data.path(), env);
    let mut child = Command::new("node")
        .arg(dir.join("sdk.test.mjs"))
        .args(args)
        .arg("--ws")
        .arg(format!("ws://{}", s.ws))
        .arg("--api")
        .arg(format!("http://{}", s.api))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning node");

    // Read both pipes on threads so a chatty child never blocks on a full pipe.
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = pipe(Box::new(child.stdout.take().expect("stdout")));
    let err = pipe(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    match status {
        Some(st) if st.success() => {
            assert!(out.contains("# all ") && !out.contains("not ok"), "unexpected output:\n{out}\n{err}");
        }
        Some(st) => panic!("the JS SDK test failed ({st}):\n{out}\nstderr:\n{err}"),
        None => panic!("the JS SDK test did not finish within {LIMIT:?}:\n{out}\nstderr:\n{err}"),
    }
}
