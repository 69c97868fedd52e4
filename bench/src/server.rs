//! Starting a real `rookery serve` (the binary built next to this one) and talking to its REST API.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

/// The `rookery` binary: `$ROOKERY_BIN`, or the one in the same directory as this program.
pub fn rookery_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ROOKERY_BIN") {
        return Ok(p.into());
    }
    let p = std::env::current_exe()?.with_file_name("rookery");
    if !p.exists() {
        bail!("{} not found: build it (cargo build --release --bin rookery) or set ROOKERY_BIN", p.display());
    }
    Ok(p)
}

/// A running server.
pub struct Server {
    child: Option<Child>,
    pub api: SocketAddr,
    pub tcp: SocketAddr,
    pub monitor: SocketAddr,
    /// From spawn until every listener was reported (the log is open and replayed by then).
    pub ready_after: Duration,
    http: reqwest::Client,
}

impl Server {
    /// Starts `rookery serve` on `data_dir`, every listener on an ephemeral loopback port, with extra
    /// `ROOKERY_*` settings, and waits until it reports its listeners.
    ///
    /// # Errors
    /// The binary is missing or the server does not report its listeners within 10 minutes.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Server> {
        let mut cmd = Command::new(rookery_bin()?);
        cmd.arg("serve")
            // The server refuses `ROOKERY_*` variables it does not know; this one is the bench's.
            .env_remove("ROOKERY_BIN")
            .arg("--data-dir")
            .arg(data_dir)
            .env("ROOKERY_API_ADDR", "127.0.0.1:0")
            .env("ROOKERY_MONITOR_ADDR", "127.0.0.1:0")
            .env("ROOKERY_TCP_ADDR", "127.0.0.1:0")
            .env("ROOKERY_WS_ADDR", "127.0.0.1:0")
            // The abuse limits are not what is measured: a load generator sends far above a human's rate.
            .env("ROOKERY_SEND_RATE_LIMIT", "0")
            .env("ROOKERY_API_RATE_LIMIT", "0")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().context("spawning rookery")?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut api, mut tcp, mut monitor, mut ws) = (None, None, None, None);
        let deadline = started + Duration::from_secs(600);
        while api.is_none() || tcp.is_none() || monitor.is_none() || ws.is_none() {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
                let _ = child.kill();
                bail!("rookery did not report its listeners (exit status: {:?})", child.try_wait());
            };
            let addr = |prefix: &str| line.strip_prefix(prefix).and_then(|a| a.trim().parse::<SocketAddr>().ok());
            api = api.or(addr("rookery: api listening on "));
            monitor = monitor.or(addr("rookery: monitor listening on "));
            tcp = tcp.or(addr("rookery: tcp listening on "));
            ws = ws.or(addr("rookery: ws listening on "));
        }
        let ready_after = started.elapsed();
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
        Ok(Server {
            child: Some(child),
            api: api.unwrap_or(([0, 0, 0, 0], 0).into()),
            tcp: tcp.unwrap_or(([0, 0, 0, 0], 0).into()),
            monitor: monitor.unwrap_or(([0, 0, 0, 0], 0).into()),
            ready_after,
            http,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The server's resident memory (VmRSS), kB.
    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.pid())
    }

    /// A POST; fails unless the answer is HTTP 200.
    ///
    /// # Errors
    /// Transport errors and non-200 answers.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self.http.post(format!("http://{}{}", self.api, path)).json(body).send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if status != 200 {
            bail!("{path}: HTTP {status}: {text}");
        }
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    /// The HTTP client, for requests with headers of their own.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// GET `/varz` of the monitor.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn varz(&self) -> anyhow::Result<Value> {
        Ok(self.http.get(format!("http://{}/varz", self.monitor)).send().await?.json().await?)
    }

    /// Registers token `t-<uid>` for every uid, `concurrency` requests at a time.
    ///
    /// # Errors
    /// The first failed request.
    pub async fn tokens(self: &Arc<Self>, uids: &[String], concurrency: usize) -> anyhow::Result<()> {
        use futures_util::StreamExt as _;
        let results: Vec<anyhow::Result<Value>> = futures_util::stream::iter(uids.iter().cloned())
            .map(|uid| {
                let s = self.clone();
                async move { s.post("/user/token", &json!({"uid": uid, "token": token(&uid), "device_flag": 0, "device_level": 1})).await }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for r in results {
            r?;
        }
        Ok(())
    }

    /// SIGTERM and wait, then SIGKILL if it did not stop within 30 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The token the benchmark registers for a uid.
pub fn token(uid: &str) -> String {
    format!("t-{uid}")
}

/// VmRSS of a process, kB (0 when it cannot be read).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used so far, in seconds; `pid` 0 is this process.
pub fn cpu_secs(pid: u32) -> f64 {
    let path = if pid == 0 { "/proc/self/stat".to_string() } else { format!("/proc/{pid}/stat") };
    let Ok(stat) = std::fs::read_to_string(path) else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux for every architecture this runs on.
    ticks as f64 / 100.0
}
