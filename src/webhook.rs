//! Webhooks with WuKongIM's events and bodies: `msg.notify`, `msg.offline` and `user.onlinestatus`.
//!
//! Message events come from a durable cursor over the event log, not from the send path: the worker
//! reads stored messages after its cursor, delivers them, and only then moves the cursor (kept in the
//! log's snapshot store under `!webhook`). A crash or `kill -9` at any point loses nothing; what was
//! being delivered is delivered again after the restart (at least once). Receivers de-duplicate by
//! `message_id`, and every request carries a delivery id and an HMAC-SHA256 signature.
//!
//! Failed deliveries are retried with exponential backoff, `webhook_max_attempts` times; then the
//! delivery is set aside as a *dead letter* (its event, delivery id and log positions, kept with the
//! snapshots under `!webhook-dead`) and the worker goes on, so one message a receiver keeps refusing
//! cannot hold back every later webhook. An operator lists dead letters (`GET /webhook/deadletters`)
//! and delivers them again (`POST /webhook/deadletters/replay`); the messages themselves are read
//! from the log again, so nothing is lost.
//!
//! Online status changes are not events of the log; they are batched in memory and retried the same
//! way, and are lost only if the server dies before delivering them (after a restart every session is
//! gone, which the receiver sees as the sessions' reconnects).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rookery_actors::Core;
use rookery_events::{ChannelEvent, ChannelType, EnvelopeBody, Event, Message, Position, StreamId, Uid};
use rookery_storage::{EventLog, Snapshot};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::presence::{Presence, StatusChange};

/// Where the message worker's cursor is kept (a snapshot key; stream keys never start with `!`).
const CURSOR_KEY: &[u8] = b"!webhook";
/// Where the dead letters are kept (a JSON list, as a snapshot's state).
const DEAD_KEY: &[u8] = b"!webhook-dead";
/// Most dead letters kept; past it the oldest are forgotten (and logged as such).
pub const MAX_DEAD_LETTERS: usize = 10_000;

/// One read-modify-write of the dead letters at a time (the worker adds, an operator's replay removes).
static DEAD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A delivery the receiver kept refusing, set aside so that later ones go on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// `msg.notify`, `msg.offline` or `msg.stream`.
    pub event: String,
    /// Its delivery id (`X-Rookery-Delivery`).
    pub delivery: String,
    /// The log positions its messages were read from (inclusive).
    pub from: u64,
    /// Last position.
    pub to: u64,
    /// For `msg.offline`: the recipients it was for.
    #[serde(default)]
    pub to_uids: Vec<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub error: String,
    /// When it was set aside (ms since the epoch).
    pub at_ms: u64,
}

impl DeadLetter {
    /// The dead letter of a delivery about the one record at `position` (`msg.offline`, `msg.stream`).
    fn of_record(event: &str, position: Position, to_uids: Vec<String>, attempts: u32, error: String) -> DeadLetter {
        DeadLetter { event: event.into(), delivery: position.0.to_string(), from: position.0, to: position.0, to_uids, attempts, error, at_ms: now_ms() }
    }
}

/// How a delivery ended.
enum Outcome {
    /// The receiver answered 200.
    Delivered,
    /// The server is stopping.
    Stopped,
    /// Every attempt failed; the last failure.
    GaveUp(u32, String),
}
/// Records read from the log per step.
const READ_BATCH: usize = 1024;

/// Records read from the log at a time while a batch fills (each may hold a payload of up to the
/// payload limit, so this bounds what one read holds in memory).
const READ_CHUNK: usize = 64;

/// Most payload bytes in one `msg.notify` batch; a batch ends early once its messages pass it (a
/// batch holds at least one message).
pub const MAX_BATCH_BYTES: usize = 8 << 20;
/// First retry delay; doubled per failure up to the configured maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Most status strings per `user.onlinestatus` request.
const STATUS_BATCH: usize = 512;

/// `uid-device_flag-online-conn_id-device_online_count-total_online_count`, as WuKongIM reports a change.
fn status_wire(c: &StatusChange) -> String {
    format!("{}-{}-{}-{}-{}-{}", c.uid.0, c.device_flag, u8::from(c.online), c.conn_id, c.device_online_count, c.total_online_count)
}

/// What [`start`] started: the message worker's progress, and the workers' tasks (they end on the stop
/// signal).
pub type Started = (Arc<WebhookStats>, Vec<tokio::task::JoinHandle<()>>);

/// Progress of the message worker, for monitoring.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Last log position whose messages were delivered.
    pub cursor: AtomicU64,
    /// Requests answered with 200.
    pub delivered: AtomicU64,
    /// Requests that failed (and were retried).
    pub failures: AtomicU64,
    /// Deliveries set aside as dead letters since the start.
    pub dead_lettered: AtomicU64,
}

/// The webhook sender: the configured URL, secret and focus, and an HTTP client.
#[derive(Clone)]
struct Sender {
    url: String,
    secret: Option<String>,
    focus: Vec<String>,
    http: reqwest::Client,
    max_backoff: Duration,
    /// Attempts per delivery before it is given up (0: never).
    max_attempts: u32,
    stats: Arc<WebhookStats>,
}

impl Sender {
    fn wants(&self, event: &str) -> bool {
        self.focus.is_empty() || self.focus.iter().any(|f| f == event)
    }

    /// POSTs until the receiver answers 200, the server stops, or `max_attempts` attempts failed.
    async fn deliver(&self, event: &str, delivery: &str, body: &Value, stop: &mut watch::Receiver<bool>) -> Outcome {
        let bytes = serde_json::to_vec(body).expect("json");
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        loop {
            if *stop.borrow() {
                return Outcome::Stopped;
            }
            attempts += 1;
            let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let mut request = self
                .http
                .post(&self.url)
                .query(&[("event", event)])
                .header("Content-Type", "application/json")
                .header("X-Rookery-Event", event)
                .header("X-Rookery-Delivery", delivery)
                .body(bytes.clone());
            if let Some(secret) = &self.secret {
                request = request.header("X-Rookery-Signature", signature(secret, timestamp, &bytes));
            }
            let failure = match request.send().await {
                Ok(r) if r.status().as_u16() == 200 => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Delivered;
                }
                Ok(r) => format!("status {}", r.status().as_u16()),
                Err(e) => e.to_string(),
            };
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            if self.max_attempts > 0 && attempts >= self.max_attempts {
                tracing::error!(event, delivery, attempts, error = %failure, "webhook delivery given up");
                return Outcome::GaveUp(attempts, failure);
            }
            tracing::warn!(event, delivery, error = %failure, retry_in_ms = backoff.as_millis() as u64, "webhook delivery failed");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {}
            }
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: receivers recompute it with the shared
/// secret and reject old timestamps to stop replays.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The webhook HTTP client: the request timeout and, for `https://` receivers, the system's root
/// certificates plus those of `webhook_ca_file`.
fn client(config: &Config) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_millis(config.webhook_timeout_ms));
    if let Some(path) = &config.webhook_ca_file {
        let what = |e: &dyn std::fmt::Display| format!("webhook_ca_file {}: {e}", path.display());
        let pem = std::fs::read(path).map_err(|e| what(&e))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| what(&e))?;
        if certificates.is_empty() {
            return Err(what(&"no PEM certificate in it"));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| format!("webhook HTTP client: {e}"))
}

/// Starts the workers when a webhook URL is configured. They stop when `stop` turns true.
///
/// # Errors
/// When `webhook_ca_file` cannot be read or holds no certificate.
pub fn start(config: &Config, core: Core, presence: Arc<Presence>, stop: watch::Receiver<bool>) -> Result<Option<Started>, String> {
    let Some(url) = config.webhook_url.clone().filter(|u| !u.is_empty()) else { return Ok(None) };
    let http = client(config)?;
    let stats = Arc::new(WebhookStats::default());
    let sender = Sender {
        url,
        secret: config.webhook_secret.clone().filter(|s| !s.is_empty()),
        focus: config.webhook_focus_events.clone(),
        http,
        max_backoff: Duration::from_millis(config.webhook_max_backoff_ms.max(FIRST_BACKOFF.as_millis() as u64)),
        max_attempts: config.webhook_max_attempts,
        stats: stats.clone(),
    };
    let mut tasks = Vec::new();
    if sender.wants("msg.notify") || sender.wants("msg.offline") {
        let interval = Duration::from_millis(config.webhook_interval_ms.max(1));
        let batch = config.webhook_batch.max(1);
        tasks.push(tokio::spawn(messages(sender.clone(), core, presence.clone(), interval, batch, stop.clone())));
    }
    if sender.wants("user.onlinestatus") {
        let (tx, rx) = mpsc::channel(config.webhook_status_queue.max(1));
        presence.set_status_listener(tx);
        tasks.push(tokio::spawn(statuses(sender, rx, stop)));
    }
    Ok(Some((stats, tasks)))
}

/// The message worker: deliver what follows the cursor, then move it.
async fn messages(sender: Sender, core: Core, presence: Arc<Presence>, interval: Duration, batch: usize, mut stop: watch::Receiver<bool>) {
    let log = core.log().clone();
    let mut cursor = match load_cursor(&log).await {
        Ok(Some(p)) => p,
        // First start with webhooks: begin at the head rather than replaying the whole history.
        Ok(None) => {
            let head = log.head().0;
            if let Err(e) = save_cursor(&log, head).await {
                tracing::error!(error = %e, "cannot store the webhook cursor; webhooks stopped");
                return;
            }
            head
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the webhook cursor; webhooks stopped");
            return;
        }
    };
    sender.stats.cursor.store(cursor.0, Ordering::Relaxed);
    loop {
        if *stop.borrow() {
            return;
        }
        let step = match next_messages(&log, cursor, batch).await {
            Ok(step) => step,
            Err(e) => {
                tracing::error!(error = %e, "reading the log for webhooks failed");
                None
            }
        };
        let Some((messages, ends, scanned_to)) = step else {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        if !messages.is_empty() {
            let delivery = format!("{}-{}", cursor.next().0, scanned_to.0);
            if sender.wants("msg.notify") {
                let body = Value::Array(messages.iter().map(|(_, m)| crate::render::message_json(m, None)).collect());
                match sender.deliver("msg.notify", &delivery, &body, &mut stop).await {
                    Outcome::Delivered => {}
                    Outcome::Stopped => return,
                    Outcome::GaveUp(attempts, error) => {
                        let (from, to) = (messages.first().map_or(0, |(p, _)| p.0), messages.last().map_or(0, |(p, _)| p.0));
                        let letter = DeadLetter {
                            event: "msg.notify".into(),
                            delivery: delivery.clone(),
                            from,
                            to,
                            to_uids: Vec::new(),
                            attempts,
                            error,
                            at_ms: now_ms(),
                        };
                        set_aside(&log, &sender.stats, letter).await;
                    }
                }
            }
            if sender.wants("msg.offline") {
                for (position, m) in &messages {
                    let Some(to_uids) = offline_recipients(&core, &presence, m).await else { continue };
                    if to_uids.is_empty() {
                        continue;
                    }
                    let mut body = crate::render::message_json(m, None);
                    body["to_uids"] = json!(to_uids.iter().map(|u| u.0.as_str()).collect::<Vec<_>>());
                    match sender.deliver("msg.offline", &format!("{}", position.0), &body, &mut stop).await {
                        Outcome::Delivered => {}
                        Outcome::Stopped => return,
                        Outcome::GaveUp(attempts, error) => {
                            let uids = to_uids.iter().map(|u| u.0.clone()).collect();
                            set_aside(&log, &sender.stats, DeadLetter::of_record("msg.offline", *position, uids, attempts, error)).await;
                        }
                    }
                }
            }
        }
        if sender.wants("msg.stream") {
            for (position, channel, e) in &ends {
                let body = crate::render::stream_end_json(channel, e);
                match sender.deliver("msg.stream", &position.0.to_string(), &body, &mut stop).await {
                    Outcome::Delivered => {}
                    Outcome::Stopped => return,
                    Outcome::GaveUp(attempts, error) => {
                        set_aside(&log, &sender.stats, DeadLetter::of_record("msg.stream", *position, Vec::new(), attempts, error)).await;
                    }
                }
            }
        }
        cursor = scanned_to;
        if let Err(e) = save_cursor(&log, cursor).await {
            tracing::error!(error = %e, "cannot store the webhook cursor");
        }
        sender.stats.cursor.store(cursor.0, Ordering::Relaxed);
    }
}

/// What one read after the cursor found: messages, ends of stream messages (with their channel), and
/// the last position looked at.
type Step = (Vec<(Position, Message)>, Vec<(Position, rookery_events::ChannelKey, Box<rookery_events::MessageEventRecord>)>, Position);

/// Up to `batch` stored messages after `cursor`, the stream messages that ended among them, and the
/// last position looked at, or `None` when nothing follows the cursor.
async fn next_messages(log: &Arc<dyn EventLog>, cursor: Position, batch: usize) -> anyhow::Result<Option<Step>> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || {
        // `at` is the last record handled: the cursor moves there once the batch is delivered.
        let (mut out, mut bytes, mut at, mut scanned) = (Vec::new(), 0usize, cursor, 0usize);
        let mut ends = Vec::new();
        while scanned < READ_BATCH {
            let records = log.read_range(at.next(), READ_CHUNK.min(READ_BATCH - scanned))?;
            if records.is_empty() {
                break;
            }
            scanned += records.len();
            for r in records {
                let body = EnvelopeBody::decode(&r.body).map_err(|e| anyhow::anyhow!("record {}: {e}", r.position))?;
                match (body.stream, body.event) {
                    (_, Event::Channel(ChannelEvent::MessageAppended(m))) => {
                        let size = m.payload.bytes().len();
                        if !out.is_empty() && bytes + size > MAX_BATCH_BYTES {
                            return Ok(Some((out, ends, at)));
                        }
                        bytes += size;
                        out.push((r.position, *m));
                        if out.len() == batch {
                            return Ok(Some((out, ends, r.position)));
                        }
                    }
                    (StreamId::MessageEvents(k, _), Event::Channel(ChannelEvent::MessageEvent(e))) if e.ended.is_some() => ends.push((r.position, k, e)),
                    _ => {}
                }
                at = r.position;
            }
        }
        Ok((at > cursor).then_some((out, ends, at)))
    })
    .await?
}

/// Who should get a push for `m`: recipients other than the sender with no master-level session online.
/// `None` for messages WuKongIM sends no `msg.offline` for (command messages, channels without
/// conversations).
async fn offline_recipients(core: &Core, presence: &Presence, m: &Message) -> Option<Vec<Uid>> {
    if m.header.sync_once || matches!(m.channel.ty, ChannelType::DATA | ChannelType::TEMP | ChannelType::LIVE) {
        return None;
    }
    let recipients = match core.recipients(&m.channel).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, channel = %m.channel, "cannot list recipients for msg.offline");
            return None;
        }
    };
    let candidates: Vec<Uid> = recipients.iter().filter(|u| **u != m.from_uid).cloned().collect();
    // As WuKongIM v2: a recipient is offline unless a master-level device of it is online.
    let reachable = presence.with_master_online(&candidates);
    Some(candidates.into_iter().filter(|u| !reachable.contains(u)).collect())
}

/// The status worker: batch changes (up to [`STATUS_BATCH`] or 2 s) and deliver them in order.
async fn statuses(sender: Sender, mut rx: mpsc::Receiver<StatusChange>, mut stop: watch::Receiver<bool>) {
    let mut sequence = 0u64;
    loop {
        let first = tokio::select! {
            change = rx.recv() => match change { Some(c) => c, None => return },
            _ = stop.changed() => return,
        };
        let mut batch = vec![status_wire(&first)];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while batch.len() < STATUS_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(c)) => batch.push(status_wire(&c)),
                Ok(None) | Err(_) => break,
            }
        }
        sequence += 1;
        // Status changes are not in the log: a batch given up is dropped (and counted), not set aside.
        match sender.deliver("user.onlinestatus", &format!("status-{sequence}"), &json!(batch), &mut stop).await {
            Outcome::Delivered => {}
            Outcome::Stopped => return,
            Outcome::GaveUp(..) => {
                sender.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The dead letters, oldest first.
///
/// # Errors
/// When the snapshot store cannot be read or holds something that is not a list of dead letters.
pub async fn dead_letters(log: &Arc<dyn EventLog>) -> anyhow::Result<Vec<DeadLetter>> {
    let log = log.clone();
    let stored = tokio::task::spawn_blocking(move || log.get_snapshot(DEAD_KEY)).await??;
    Ok(match stored {
        Some(s) if !s.state.is_empty() => serde_json::from_slice(&s.state)?,
        _ => Vec::new(),
    })
}

async fn store_dead_letters(log: &Arc<dyn EventLog>, letters: &[DeadLetter]) -> anyhow::Result<()> {
    let state = serde_json::to_vec(letters)?;
    let log = log.clone();
    // At the head: a later write is never at a lower position, so it always replaces an earlier one.
    tokio::task::spawn_blocking(move || {
        let at = log.head().0;
        log.put_snapshot(DEAD_KEY, &Snapshot { position: at, state })
    })
    .await??;
    Ok(())
}

/// Sets a delivery aside; the worker goes on (a failure to store it is logged: the messages stay in
/// the log, and the delivery's id and positions are in that log line).
async fn set_aside(log: &Arc<dyn EventLog>, stats: &WebhookStats, letter: DeadLetter) {
    stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
    let _guard = DEAD_LOCK.lock().await;
    let result = async {
        let mut letters = dead_letters(log).await?;
        letters.push(letter.clone());
        if letters.len() > MAX_DEAD_LETTERS {
            let forgotten = letters.len() - MAX_DEAD_LETTERS;
            tracing::error!(forgotten, "more than {MAX_DEAD_LETTERS} webhook dead letters: the oldest are forgotten");
            letters.drain(..forgotten);
        }
        store_dead_letters(log, &letters).await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, event = letter.event, delivery = letter.delivery, from = letter.from, to = letter.to, "cannot store a webhook dead letter");
    }
}

/// Delivers dead letters again, once each (those named in `only`, or all): each one delivered is
/// removed, each one refused again stays with its attempts counted. Answers (delivery, delivered or
/// the failure).
///
/// # Errors
/// When no webhook is configured, or the dead letters cannot be read or stored.
pub async fn replay_dead_letters(config: &Config, core: &Core, only: Option<Vec<String>>) -> anyhow::Result<Vec<(String, Result<(), String>)>> {
    let url = config.webhook_url.clone().filter(|u| !u.is_empty()).ok_or_else(|| anyhow::anyhow!("no webhook_url is configured"))?;
    let sender = Sender {
        url,
        secret: config.webhook_secret.clone().filter(|s| !s.is_empty()),
        focus: Vec::new(),
        http: client(config).map_err(|e| anyhow::anyhow!(e))?,
        max_backoff: FIRST_BACKOFF,
        max_attempts: 1,
        stats: Arc::new(WebhookStats::default()),
    };
    let log = core.log().clone();
    let _guard = DEAD_LOCK.lock().await;
    let mut letters = dead_letters(&log).await?;
    let (_tx, mut stop) = watch::channel(false);
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for mut letter in letters.drain(..) {
        if only.as_ref().is_some_and(|o| !o.contains(&letter.delivery)) {
            kept.push(letter);
            continue;
        }
        let body = if letter.event == "msg.stream" {
            stream_end_at(&log, letter.from).await?.unwrap_or(Value::Null)
        } else {
            message_letter_body(&log, &letter).await?
        };
        match sender.deliver(&letter.event, &letter.delivery, &body, &mut stop).await {
            Outcome::Delivered => out.push((letter.delivery.clone(), Ok(()))),
            Outcome::GaveUp(_, error) => {
                letter.attempts += 1;
                letter.error = error.clone();
                out.push((letter.delivery.clone(), Err(error)));
                kept.push(letter);
            }
            Outcome::Stopped => kept.push(letter),
        }
    }
    store_dead_letters(&log, &kept).await?;
    Ok(out)
}

/// The body of a dead letter of `msg.notify` (the messages it covered) or `msg.offline` (its one
/// message with the uids it was for).
async fn message_letter_body(log: &Arc<dyn EventLog>, letter: &DeadLetter) -> anyhow::Result<Value> {
    let messages = messages_between(log, letter.from, letter.to).await?;
    Ok(if letter.event == "msg.offline" {
        let mut body = messages.first().map(|m| crate::render::message_json(m, None)).unwrap_or(Value::Null);
        body["to_uids"] = json!(letter.to_uids);
        body
    } else {
        Value::Array(messages.iter().map(|m| crate::render::message_json(m, None)).collect())
    })
}

/// The `msg.stream` body of the event at `position`, if it is the end of a stream message.
async fn stream_end_at(log: &Arc<dyn EventLog>, position: u64) -> anyhow::Result<Option<Value>> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || {
        let Some(r) = log.read_range(Position(position), 1)?.into_iter().next().filter(|r| r.position.0 == position) else { return Ok(None) };
        let body = EnvelopeBody::decode(&r.body).map_err(|e| anyhow::anyhow!("record {}: {e}", r.position))?;
        Ok(match (body.stream, body.event) {
            (StreamId::MessageEvents(k, _), Event::Channel(ChannelEvent::MessageEvent(e))) if e.ended.is_some() => Some(crate::render::stream_end_json(&k, &e)),
            _ => None,
        })
    })
    .await?
}

/// The stored messages at positions `from..=to`.
async fn messages_between(log: &Arc<dyn EventLog>, from: u64, to: u64) -> anyhow::Result<Vec<Message>> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut at = from.max(1);
        while at <= to {
            let records = log.read_range(Position(at), READ_CHUNK.min((to - at + 1) as usize))?;
            let Some(last) = records.last().map(|r| r.position.0) else { break };
            for r in records {
                let body = EnvelopeBody::decode(&r.body).map_err(|e| anyhow::anyhow!("record {}: {e}", r.position))?;
                if let Event::Channel(ChannelEvent::MessageAppended(m)) = body.event {
                    out.push(*m);
                }
            }
            at = last + 1;
        }
        Ok(out)
    })
    .await?
}

async fn load_cursor(log: &Arc<dyn EventLog>) -> anyhow::Result<Option<Position>> {
    let log = log.clone();
    Ok(tokio::task::spawn_blocking(move || log.get_snapshot(CURSOR_KEY)).await??.map(|s| s.position))
}

async fn save_cursor(log: &Arc<dyn EventLog>, at: Position) -> anyhow::Result<()> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || log.put_snapshot(CURSOR_KEY, &Snapshot { position: at, state: Vec::new() })).await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_and_signatures_have_the_documented_form() {
        let c = StatusChange { uid: "u-1".into(), device_flag: 1, online: true, conn_id: 7, device_online_count: 1, total_online_count: 2 };
        assert_eq!(status_wire(&c), "u-1-1-1-7-1-2");
        // Computed independently (Python's hmac module) for key "Jefe" and "0.what do ya want for nothing?".
        assert_eq!(signature("Jefe", 0, b"what do ya want for nothing?"), "t=0,v1=37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc");
        assert_ne!(signature("other", 0, b"x"), signature("Jefe", 0, b"x"));
    }
}
