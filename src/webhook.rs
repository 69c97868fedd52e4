//! Webhooks with WuKongIM's events and bodies: `msg.notify`, `msg.offline` and `user.onlinestatus`.
//!
//! Message events come from a durable cursor over the event log, not from the send path: the worker
//! reads stored messages after its cursor, delivers them, and only then moves the cursor (kept in the
//! log's snapshot store under `!webhook`). A crash or `kill -9` at any point loses nothing; what was
//! being delivered is delivered again after the restart (at least once). Receivers de-duplicate by
//! `message_id`, and every request carries a delivery id and an HMAC-SHA256 signature.
//!
//! Failed deliveries are retried with exponential backoff and never dropped, so a receiver that is
//! down delays webhooks (the lag is visible in the log and `/varz`) but loses nothing.
//!
//! Online status changes are not events of the log; they are batched in memory and retried the same
//! way, and are lost only if the server dies before delivering them (after a restart every session is
//! gone, which the receiver sees as the sessions' reconnects).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rookery_actors::Core;
use rookery_events::{ChannelEvent, ChannelType, EnvelopeBody, Event, Message, Position, Uid};
use rookery_storage::{EventLog, Snapshot};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::presence::{Presence, StatusChange};

/// Where the message worker's cursor is kept (a snapshot key; stream keys never start with `!`).
const CURSOR_KEY: &[u8] = b"!webhook";
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
}

/// The webhook sender: the configured URL, secret and focus, and an HTTP client.
#[derive(Clone)]
struct Sender {
    url: String,
    secret: Option<String>,
    focus: Vec<String>,
    http: reqwest::Client,
    max_backoff: Duration,
    stats: Arc<WebhookStats>,
}

impl Sender {
    fn wants(&self, event: &str) -> bool {
        self.focus.is_empty() || self.focus.iter().any(|f| f == event)
    }

    /// POSTs until the receiver answers 200 or the server stops; returns false when stopped first.
    async fn deliver(&self, event: &str, delivery: &str, body: &Value, stop: &mut watch::Receiver<bool>) -> bool {
        let bytes = serde_json::to_vec(body).expect("json");
        let mut backoff = FIRST_BACKOFF;
        loop {
            if *stop.borrow() {
                return false;
            }
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
                    return true;
                }
                Ok(r) => format!("status {}", r.status().as_u16()),
                Err(e) => e.to_string(),
            };
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
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
        let Some((messages, scanned_to)) = step else {
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
                if !sender.deliver("msg.notify", &delivery, &body, &mut stop).await {
                    return;
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
                    if !sender.deliver("msg.offline", &format!("{}", position.0), &body, &mut stop).await {
                        return;
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

/// Up to `batch` stored messages after `cursor` and the last position looked at, or `None` when
/// nothing follows the cursor.
async fn next_messages(log: &Arc<dyn EventLog>, cursor: Position, batch: usize) -> anyhow::Result<Option<(Vec<(Position, Message)>, Position)>> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || {
        // `at` is the last record handled: the cursor moves there once the batch is delivered.
        let (mut out, mut bytes, mut at, mut scanned) = (Vec::new(), 0usize, cursor, 0usize);
        while scanned < READ_BATCH {
            let records = log.read_range(at.next(), READ_CHUNK.min(READ_BATCH - scanned))?;
            if records.is_empty() {
                break;
            }
            scanned += records.len();
            for r in records {
                let body = EnvelopeBody::decode(&r.body).map_err(|e| anyhow::anyhow!("record {}: {e}", r.position))?;
                if let Event::Channel(ChannelEvent::MessageAppended(m)) = body.event {
                    let size = m.payload.bytes().len();
                    if !out.is_empty() && bytes + size > MAX_BATCH_BYTES {
                        return Ok(Some((out, at)));
                    }
                    bytes += size;
                    out.push((r.position, *m));
                    if out.len() == batch {
                        return Ok(Some((out, r.position)));
                    }
                }
                at = r.position;
            }
        }
        Ok((at > cursor).then_some((out, at)))
    })
    .await?
}

/// Who should get a push for `m`: recipients other than the sender with no online session.
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
    let online: std::collections::HashSet<Uid> = presence.online_devices(&candidates).into_iter().map(|(u, _)| u).collect();
    Some(candidates.into_iter().filter(|u| !online.contains(u)).collect())
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
        if !sender.deliver("user.onlinestatus", &format!("status-{sequence}"), &json!(batch), &mut stop).await {
            return;
        }
    }
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
