//! Connection tasks: each WKProto connection sends (closed loop with a window, or paced at a fixed
//! rate), receives, acknowledges, and records latencies and per-message receipt counts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rookery::gateway::packet::{Packet, ReasonCode};
use tokio::sync::{watch, Semaphore};

use crate::client::{self, Reader, Writer};

/// A latency histogram in microseconds, 1 µs to 10 min.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// What one connection does.
#[derive(Clone)]
pub struct Role {
    /// Channel to send to; `None` for a receiver only.
    pub target: Option<(String, u8)>,
    /// Closed loop: at most this many SENDs without SENDACK.
    pub window: usize,
    /// Paced: SENDs per second on this connection (still bounded by `window`).
    pub rate: Option<f64>,
    /// Stop sending after this many messages.
    pub max_msgs: u32,
    /// Stop sending at this instant.
    pub until: Instant,
    /// Message indices this connection sends start here.
    pub index_base: u32,
    /// Receipts of message indices below this are counted one by one (conservation).
    pub track: usize,
    /// Index of this connection, written into each payload.
    pub me: u32,
}

/// What one connection saw.
pub struct Outcome {
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    pub ack_latency: Histogram<u64>,
    pub recv_latency: Histogram<u64>,
    pub received: u64,
    pub bad_recv: u64,
    /// Receipts per tracked message index.
    pub counts: Vec<u16>,
    /// Indices this connection sent that were acknowledged with success.
    pub acked_indices: Vec<u32>,
    pub first_send_us: u64,
    pub last_recv_us: u64,
    pub last_ack_us: u64,
    pub error: Option<String>,
}

/// Counters shared by all connections of a run, for progress checks.
#[derive(Default)]
pub struct Progress {
    pub received: AtomicU64,
    pub acked: AtomicU64,
}

/// Connects `uids` (uid, token), `concurrency` handshakes at a time, spreading source addresses.
///
/// # Errors
/// The first failed connection.
pub async fn connect_all(server: SocketAddr, uids: &[String], concurrency: usize) -> anyhow::Result<Vec<(Reader, Writer)>> {
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut handles = Vec::with_capacity(uids.len());
    for (i, uid) in uids.iter().enumerate() {
        let (sem, uid) = (sem.clone(), uid.clone());
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            client::connect(server, client::source_ip(i), &uid, &crate::server::token(&uid)).await
        }));
    }
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await??);
    }
    Ok(out)
}

/// Runs one connection until it has sent what its role says, has every SENDACK, and `stop` is set.
pub async fn run(mut reader: Reader, mut writer: Writer, role: Role, progress: Arc<Progress>, mut stop: watch::Receiver<bool>) -> (Reader, Writer, Outcome) {
    let mut o = Outcome {
        sent: 0,
        acked: 0,
        refused: 0,
        ack_latency: histogram(),
        recv_latency: histogram(),
        received: 0,
        bad_recv: 0,
        counts: vec![0; role.track],
        acked_indices: Vec::new(),
        first_send_us: 0,
        last_recv_us: 0,
        last_ack_us: 0,
        error: None,
    };
    let r = drive(&mut reader, &mut writer, &role, &progress, &mut stop, &mut o).await;
    if let Err(e) = r {
        o.error = Some(format!("{e:#}"));
    }
    (reader, writer, o)
}

async fn drive(
    reader: &mut Reader,
    writer: &mut Writer,
    role: &Role,
    progress: &Progress,
    stop: &mut watch::Receiver<bool>,
    o: &mut Outcome,
) -> anyhow::Result<()> {
    let mut inflight: std::collections::VecDeque<(Instant, u32)> = std::collections::VecDeque::new();
    let period = role.rate.map(|r| Duration::from_secs_f64(1.0 / r.max(1e-6)));
    let mut next_send = Instant::now();
    let mut seq = 0u32;
    let sending = |o: &Outcome| role.target.is_some() && (o.sent as u32) < role.max_msgs && Instant::now() < role.until;
    loop {
        // Send what the window and the pace allow.
        if let Some((channel, ty)) = &role.target {
            while sending(o) && inflight.len() < role.window && period.is_none_or(|_| Instant::now() >= next_send) {
                let index = role.index_base + o.sent as u32;
                seq += 1;
                writer.queue_send(seq, channel, *ty, &client::payload(index, role.me))?;
                if o.sent == 0 {
                    o.first_send_us = client::now_us();
                }
                inflight.push_back((Instant::now(), index));
                o.sent += 1;
                if let Some(p) = period {
                    next_send += p;
                }
            }
            writer.flush().await?;
        }
        let done_sending = !sending(o) && inflight.is_empty();
        if done_sending && *stop.borrow() {
            return Ok(());
        }
        let wake = match period {
            Some(_) if sending(o) && inflight.len() < role.window => tokio::time::Instant::from_std(next_send),
            _ if sending(o) => tokio::time::Instant::from_std(role.until),
            _ => tokio::time::Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            p = reader.next() => {
                let Some(p) = p? else { anyhow::bail!("server closed the connection") };
                handle(reader, writer, p, &mut inflight, progress, o, role)?;
                while let Some(p) = reader.buffered()? {
                    handle(reader, writer, p, &mut inflight, progress, o, role)?;
                }
                writer.flush().await?;
            }
            _ = stop.changed(), if done_sending => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

fn handle(
    reader: &Reader,
    writer: &mut Writer,
    p: Packet,
    inflight: &mut std::collections::VecDeque<(Instant, u32)>,
    progress: &Progress,
    o: &mut Outcome,
    _role: &Role,
) -> anyhow::Result<()> {
    match p {
        Packet::Sendack(ack) => {
            // SENDACKs come in SEND order on one connection.
            let Some((at, index)) = inflight.pop_front() else { anyhow::bail!("SENDACK without SEND") };
            let _ = o.ack_latency.record(at.elapsed().as_micros().max(1) as u64);
            o.last_ack_us = client::now_us();
            if ack.reason_code == ReasonCode::SUCCESS {
                o.acked += 1;
                o.acked_indices.push(index);
                progress.acked.fetch_add(1, Ordering::Relaxed);
            } else {
                o.refused += 1;
            }
        }
        Packet::Recv(recv) => {
            let now = client::now_us();
            match reader.open(&recv).ok().and_then(|plain| client::parse_payload(&plain)) {
                Some((sent_us, index, _sender)) => {
                    let _ = o.recv_latency.record(now.saturating_sub(sent_us).max(1));
                    if let Some(c) = o.counts.get_mut(index as usize) {
                        *c = c.saturating_add(1);
                    }
                }
                None => o.bad_recv += 1,
            }
            o.received += 1;
            o.last_recv_us = now;
            progress.received.fetch_add(1, Ordering::Relaxed);
            writer.queue_recvack(&recv)?;
        }
        Packet::Pong => {}
        other => anyhow::bail!("unexpected {:?}", other.packet_type()),
    }
    Ok(())
}

/// Merged results of many connections.
pub struct Totals {
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    pub received: u64,
    pub bad_recv: u64,
    pub ack_latency: Histogram<u64>,
    pub recv_latency: Histogram<u64>,
    pub first_send_us: u64,
    pub last_ack_us: u64,
    pub last_recv_us: u64,
    pub errors: Vec<String>,
}

/// Adds up outcomes.
pub fn totals(outcomes: &[Outcome]) -> Totals {
    let mut t = Totals {
        sent: 0,
        acked: 0,
        refused: 0,
        received: 0,
        bad_recv: 0,
        ack_latency: histogram(),
        recv_latency: histogram(),
        first_send_us: u64::MAX,
        last_ack_us: 0,
        last_recv_us: 0,
        errors: Vec::new(),
    };
    for o in outcomes {
        t.sent += o.sent;
        t.acked += o.acked;
        t.refused += o.refused;
        t.received += o.received;
        t.bad_recv += o.bad_recv;
        let _ = t.ack_latency.add(&o.ack_latency);
        let _ = t.recv_latency.add(&o.recv_latency);
        if o.sent > 0 {
            t.first_send_us = t.first_send_us.min(o.first_send_us);
        }
        t.last_ack_us = t.last_ack_us.max(o.last_ack_us);
        t.last_recv_us = t.last_recv_us.max(o.last_recv_us);
        if let Some(e) = &o.error {
            t.errors.push(e.clone());
        }
    }
    if t.first_send_us == u64::MAX {
        t.first_send_us = 0;
    }
    t
}

/// Count conservation: every acknowledged message reaches every tracked connection except its sender
/// exactly once. `(expected, missing, duplicate)`.
pub fn conservation(outcomes: &[Outcome], sender_of: impl Fn(u32) -> usize) -> (u64, u64, u64) {
    let acked: Vec<u32> = outcomes.iter().flat_map(|o| o.acked_indices.iter().copied()).collect();
    let (mut expected, mut missing, mut duplicate) = (0, 0, 0);
    for (conn, o) in outcomes.iter().enumerate() {
        if o.counts.is_empty() {
            continue;
        }
        for &index in &acked {
            if sender_of(index) == conn {
                continue;
            }
            expected += 1;
            match o.counts.get(index as usize).copied().unwrap_or(0) {
                0 => missing += 1,
                n => duplicate += u64::from(n - 1),
            }
        }
    }
    (expected, missing, duplicate)
}

/// Runs every connection with its role; when every sender is done, waits until `expected_recv` RECVs
/// arrived or none arrived for `quiet`, then stops the receivers.
pub async fn run_all(conns: Vec<(Reader, Writer)>, roles: Vec<Role>, expected_recv: Option<u64>, quiet: Duration) -> (Vec<(Reader, Writer)>, Vec<Outcome>) {
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let senders = roles.iter().filter(|r| r.target.is_some()).count();
    let mut handles = Vec::with_capacity(conns.len());
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    for ((reader, writer), role) in conns.into_iter().zip(roles) {
        let (progress, stop_rx, done_tx) = (progress.clone(), stop_rx.clone(), done_tx.clone());
        let is_sender = role.target.is_some();
        handles.push(tokio::spawn(async move {
            // A sender reports as soon as all its SENDACKs are in; receivers run until stopped.
            let mut role2 = role.clone();
            if is_sender {
                let r = run(reader, writer, role2.clone(), progress.clone(), watch::channel(true).1).await;
                let _ = done_tx.send(());
                // Keep receiving (senders are members too) until stopped.
                let (reader, writer, first) = r;
                role2.target = None;
                let (reader, writer, mut rest) = run(reader, writer, role2, progress, stop_rx).await;
                merge(&mut rest, first);
                (reader, writer, rest)
            } else {
                run(reader, writer, role2, progress, stop_rx).await
            }
        }));
    }
    drop(done_tx);
    for _ in 0..senders {
        if done_rx.recv().await.is_none() {
            break;
        }
    }
    settle(&progress.received, expected_recv, quiet).await;
    // Give stragglers (duplicates) a moment to show up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop_tx.send(true);
    let mut conns = Vec::new();
    let mut outcomes = Vec::new();
    for h in handles {
        match h.await {
            Ok((r, w, o)) => {
                conns.push((r, w));
                outcomes.push(o);
            }
            Err(e) => outcomes.push(Outcome { error: Some(format!("task: {e}")), ..empty_outcome() }),
        }
    }
    (conns, outcomes)
}

/// An outcome with nothing in it.
pub fn empty_outcome() -> Outcome {
    Outcome {
        sent: 0,
        acked: 0,
        refused: 0,
        ack_latency: histogram(),
        recv_latency: histogram(),
        received: 0,
        bad_recv: 0,
        counts: Vec::new(),
        acked_indices: Vec::new(),
        first_send_us: 0,
        last_recv_us: 0,
        last_ack_us: 0,
        error: None,
    }
}

/// Folds many outcomes into one (conservation counts are not kept).
pub fn merge_all(outs: Vec<Outcome>) -> Outcome {
    let mut all = empty_outcome();
    all.first_send_us = u64::MAX;
    for o in outs {
        let first = o.first_send_us;
        let last_ack = all.last_ack_us.max(o.last_ack_us);
        merge(&mut all, o);
        all.first_send_us = all.first_send_us.min(first);
        all.last_ack_us = last_ack;
    }
    all
}

fn merge(into: &mut Outcome, from: Outcome) {
    into.sent += from.sent;
    into.acked += from.acked;
    into.refused += from.refused;
    let _ = into.ack_latency.add(&from.ack_latency);
    let _ = into.recv_latency.add(&from.recv_latency);
    into.received += from.received;
    into.bad_recv += from.bad_recv;
    for (a, b) in into.counts.iter_mut().zip(&from.counts) {
        *a = a.saturating_add(*b);
    }
    into.acked_indices.extend(from.acked_indices);
    into.first_send_us = from.first_send_us;
    into.last_ack_us = from.last_ack_us;
    into.last_recv_us = into.last_recv_us.max(from.last_recv_us);
    if into.error.is_none() {
        into.error = from.error;
    }
}

/// Waits until `received` reaches `expected` (when known) or has not moved for `quiet`.
pub async fn settle(received: &AtomicU64, expected: Option<u64>, quiet: Duration) {
    let mut last = (received.load(Ordering::Relaxed), Instant::now());
    loop {
        let now = received.load(Ordering::Relaxed);
        if expected.is_some_and(|e| now >= e) {
            return;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= quiet {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
