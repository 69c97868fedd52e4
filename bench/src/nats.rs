//! The peer: NATS JetStream (`nats-server -js`, file storage in a temporary directory) doing the same
//! work through `async-nats`: durable publish with ack (S1) and a push consumer fanned out to many
//! subscriber connections (S2).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;
use tokio::sync::{watch, Semaphore};

use crate::client;
use crate::load::Outcome;

/// A running `nats-server -js`.
pub struct Nats {
    child: Option<Child>,
    pub url: String,
    _dir: tempfile::TempDir,
    pub version: String,
}

impl Nats {
    /// Starts nats-server with JetStream on a free loopback port and waits until it accepts connections.
    ///
    /// # Errors
    /// nats-server is not installed or does not come up within 20 s.
    pub async fn start() -> anyhow::Result<Nats> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let version = Command::new("nats-server").arg("--version").output().context("nats-server not found (apt-get install nats-server)")?;
        let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .context("spawning nats-server")?;
        let n = Nats { child: Some(child), url: format!("nats://127.0.0.1:{port}"), _dir: dir, version };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let err = match async_nats::connect(&n.url).await {
                // Not `query_account`: this client cannot parse a 2.9 server's account info.
                Ok(c) => match c.flush().await {
                    Ok(()) => return Ok(n),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!("nats-server did not come up on {}: {err}", n.url);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Nats {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn clients(url: &str, n: usize) -> anyhow::Result<Vec<async_nats::Client>> {
    let sem = Arc::new(Semaphore::new(256));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (sem, url) = (sem.clone(), url.to_string());
        handles.push(tokio::spawn(async move {
            let _p = sem.acquire().await;
            async_nats::ConnectOptions::new().name(format!("bench-{i}")).connect(url).await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await?.context("connect to nats")?);
    }
    Ok(out)
}

async fn fresh_stream(js: &jetstream::Context, name: &str, subjects: Vec<String>) -> anyhow::Result<stream::Stream> {
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config { name: name.into(), subjects, storage: stream::StorageType::File, ..Default::default() })
        .await
        .map_err(|e| anyhow::anyhow!("create stream: {e}"))
}

/// S1 on JetStream: `conns` publisher connections, each publishing to its own subject with `window`
/// publishes awaiting their acks, for `secs`. Returns the merged outcome.
///
/// # Errors
/// Connection or stream setup failures.
pub async fn s1(url: &str, conns: usize, window: usize, secs: f64) -> anyhow::Result<Outcome> {
    let cs = clients(url, conns).await?;
    let js = jetstream::new(cs[0].clone());
    fresh_stream(&js, "S1", vec!["s1.>".into()]).await?;
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut handles = Vec::new();
    for (i, c) in cs.iter().enumerate() {
        let js = jetstream::new(c.clone());
        handles.push(tokio::spawn(async move {
            let mut o = crate::load::empty_outcome();
            let subject = format!("s1.{i}");
            let mut inflight = std::collections::VecDeque::new();
            let mut index = 0u32;
            o.first_send_us = client::now_us();
            loop {
                while Instant::now() < until && inflight.len() < window {
                    let at = Instant::now();
                    match js.publish(subject.clone(), client::payload(index, i as u32).into()).await {
                        Ok(f) => inflight.push_back((at, f)),
                        Err(e) => {
                            o.error = Some(format!("publish: {e}"));
                            return o;
                        }
                    }
                    index += 1;
                    o.sent += 1;
                }
                let Some((at, f)) = inflight.pop_front() else { return o };
                match f.await {
                    Ok(_) => {
                        o.acked += 1;
                        let _ = o.ack_latency.record(at.elapsed().as_micros().max(1) as u64);
                        o.last_ack_us = client::now_us();
                    }
                    Err(_) => o.refused += 1,
                }
            }
        }));
    }
    let mut outs = Vec::new();
    for h in handles {
        outs.push(h.await?);
    }
    Ok(crate::load::merge_all(outs))
}

/// S2 on JetStream: a stream with one push consumer (deliver subject, no acks, new messages only),
/// `receivers` subscriber connections on its deliver subject, one publisher sending `messages`
/// publishes with ack, `window` in flight. Returns (publisher outcome, receiver outcomes).
///
/// # Errors
/// Connection or stream setup failures.
pub async fn s2(url: &str, pid: u32, receivers: usize, messages: u32, window: usize, quiet: Duration) -> anyhow::Result<(Outcome, Vec<Outcome>, (f64, f64))> {
    let cs = clients(url, receivers + 1).await?;
    let js = jetstream::new(cs[0].clone());
    let st = fresh_stream(&js, "S2", vec!["s2.g".into()]).await?;
    st.create_consumer(consumer::push::Config {
        deliver_subject: "s2.deliver".into(),
        ack_policy: consumer::AckPolicy::None,
        deliver_policy: consumer::DeliverPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("create consumer: {e}"))?;
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles = Vec::new();
    for c in &cs[1..] {
        let mut sub = c.subscribe("s2.deliver").await.map_err(|e| anyhow::anyhow!("subscribe: {e}"))?;
        let (received, mut stop) = (received.clone(), stop_rx.clone());
        handles.push(tokio::spawn(async move {
            let mut o = crate::load::empty_outcome();
            o.counts = vec![0; messages as usize];
            loop {
                tokio::select! {
                    m = sub.next() => {
                        let Some(m) = m else { break };
                        let now = client::now_us();
                        if let Some((sent, index, _)) = client::parse_payload(&m.payload) {
                            let _ = o.recv_latency.record(now.saturating_sub(sent).max(1));
                            if let Some(c) = o.counts.get_mut(index as usize) {
                                *c = c.saturating_add(1);
                            }
                        } else {
                            o.bad_recv += 1;
                        }
                        o.received += 1;
                        o.last_recv_us = now;
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    _ = stop.changed() => break,
                }
            }
            o
        }));
    }
    for c in &cs[1..] {
        c.flush().await.map_err(|e| anyhow::anyhow!("flush: {e}"))?;
    }
    let mut p = crate::load::empty_outcome();
    let mut inflight = std::collections::VecDeque::new();
    let (sc, lc) = (crate::server::cpu_secs(pid), crate::server::cpu_secs(0));
    p.first_send_us = client::now_us();
    let mut index = 0u32;
    loop {
        while index < messages && inflight.len() < window {
            let at = Instant::now();
            let f = js.publish("s2.g", client::payload(index, 0).into()).await.map_err(|e| anyhow::anyhow!("publish: {e}"))?;
            inflight.push_back((at, index, f));
            index += 1;
            p.sent += 1;
        }
        let Some((at, i, f)) = inflight.pop_front() else { break };
        match f.await {
            Ok(_) => {
                p.acked += 1;
                p.acked_indices.push(i);
                let _ = p.ack_latency.record(at.elapsed().as_micros().max(1) as u64);
                p.last_ack_us = client::now_us();
            }
            Err(_) => p.refused += 1,
        }
    }
    let expected = p.acked * receivers as u64;
    crate::load::settle(&received, Some(expected), quiet).await;
    let cpu = (crate::server::cpu_secs(pid) - sc, crate::server::cpu_secs(0) - lc);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop_tx.send(true);
    let mut outs = Vec::new();
    for h in handles {
        outs.push(h.await?);
    }
    Ok((p, outs, cpu))
}
