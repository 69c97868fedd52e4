//! Starting, killing and talking to a real server process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `rookery serve` child process.
pub struct Server {
    child: Option<Child>,
    /// The REST API address it bound.
    pub api: SocketAddr,
    /// The monitor address it bound.
    pub monitor: SocketAddr,
    /// The WKProto TCP address it bound.
    pub tcp: SocketAddr,
    /// The WKProto WebSocket address it bound.
    pub ws: SocketAddr,
    client: reqwest::Client,
}

/// Extra settings for a server, as `ROOKERY_*` environment variables.
pub type Env<'a> = &'a [(&'a str, &'a str)];

impl Server {
    /// Starts the binary on `data_dir` with every listener on an ephemeral loopback port and waits
    /// until it reports its addresses.
    pub fn start(data_dir: &Path, env: Env) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rookery"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .env("ROOKERY_API_ADDR", "127.0.0.1:0")
            .env("ROOKERY_MONITOR_ADDR", "127.0.0.1:0")
            .env("ROOKERY_TCP_ADDR", "127.0.0.1:0")
            .env("ROOKERY_WS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning rookery");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut api, mut monitor, mut tcp, mut ws) = (None, None, None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while api.is_none() || monitor.is_none() || tcp.is_none() || ws.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("rookery did not report its listeners within 60 s (exit status: {:?})", child.try_wait());
            });
            let addr = |prefix: &str| line.strip_prefix(prefix).map(|a| a.trim().parse::<SocketAddr>().expect("address"));
            api = api.or(addr("rookery: api listening on "));
            monitor = monitor.or(addr("rookery: monitor listening on "));
            tcp = tcp.or(addr("rookery: tcp listening on "));
            ws = ws.or(addr("rookery: ws listening on "));
        }
        Server {
            child: Some(child),
            api: api.expect("api address"),
            monitor: monitor.expect("monitor address"),
            tcp: tcp.expect("tcp address"),
            ws: ws.expect("ws address"),
            client: reqwest::Client::new(),
        }
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    /// Sends `signal` to the server process (SIGSTOP, SIGCONT...).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).expect("signal sent");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
            let status = child.wait().expect("reaped");
            assert!(status.success(), "rookery exited with {status}");
        }
    }

    /// A POST with a JSON body; returns HTTP status and parsed JSON (Null for an empty body).
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self.client.post(format!("http://{}{}", self.api, path)).json(body).send().await.expect("request sent");
        parse(resp).await
    }

    /// A POST with a raw body.
    pub async fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let resp = self.client.post(format!("http://{}{}", self.api, path)).body(body.to_owned()).send().await.expect("request sent");
        parse(resp).await
    }

    /// A GET with a query string in `path_and_query`.
    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let resp = self.client.get(format!("http://{}{}", self.api, path_and_query)).send().await.expect("request sent");
        parse(resp).await
    }

    /// The HTTP client, for requests that need custom headers.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

async fn parse(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body read");
    let json = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, json)
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `rookery replay --verify` on a data directory; returns (success, stdout + stderr).
pub fn verify(data_dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args(["replay", "--verify", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running rookery replay");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Runs `rookery serve` with `env` on ephemeral ports and expects it to refuse to start; returns its
/// standard error.
pub fn refused_start(env: Env) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rookery"));
    cmd.args(["serve", "--data-dir"]).arg(dir.path());
    for (k, v) in
        [("ROOKERY_API_ADDR", "127.0.0.1:0"), ("ROOKERY_MONITOR_ADDR", "127.0.0.1:0"), ("ROOKERY_TCP_ADDR", "127.0.0.1:0"), ("ROOKERY_WS_ADDR", "127.0.0.1:0")]
    {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running rookery serve");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "rookery started with {env:?}: {stderr}");
    stderr
}

/// Base64 of a text payload.
pub fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
