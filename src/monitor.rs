//! The monitor listener: liveness (`/healthz`), readiness (`/readyz`), Prometheus metrics
//! (`/metrics`), and WuKongIM-shaped server and connection summaries (`/varz`, `/connz`).
//!
//! It is bound before start-up catches the snapshots up, so `/healthz` and `/metrics` answer while the
//! server is starting; `/readyz` answers 503 until every listener is bound and the actors run, and again
//! once shutdown begins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use rookery_actors::Core;
use rookery_storage::{EventLog, RocksLog};
use warp::http::StatusCode;
use warp::{Filter, Reply};

use crate::metrics::{Metrics, View};
use crate::presence::Presence;
use crate::Config;

/// Most connections one `/connz` page lists.
const MAX_CONNZ_LIMIT: usize = 1000;
/// Connections per `/connz` page when `limit` is not given.
const DEFAULT_CONNZ_LIMIT: usize = 100;

/// What the monitor reads.
pub(crate) struct Monitor {
    log: Arc<RocksLog>,
    metrics: Arc<Metrics>,
    config: Arc<Config>,
    started: Instant,
    /// Set once the actors run and every listener is bound.
    live: OnceLock<Live>,
    /// Set when shutdown begins.
    stopping: AtomicBool,
    /// The webhook workers' progress, once they run.
    webhook: OnceLock<Arc<crate::webhook::WebhookStats>>,
    /// Process CPU seconds and the instant of the previous `/varz`, for its `cpu` figure.
    cpu_sample: std::sync::Mutex<(Instant, f64)>,
}

struct Live {
    core: Core,
    presence: Arc<Presence>,
}

impl Monitor {
    pub(crate) fn new(log: Arc<RocksLog>, metrics: Arc<Metrics>, config: Arc<Config>) -> Monitor {
        let started = Instant::now();
        Monitor {
            log,
            metrics,
            config,
            started,
            live: OnceLock::new(),
            stopping: AtomicBool::new(false),
            webhook: OnceLock::new(),
            cpu_sample: std::sync::Mutex::new((started, cpu_seconds())),
        }
    }

    /// Marks the server ready: start-up catch-up is done and every listener is bound.
    pub(crate) fn ready(&self, core: Core, presence: Arc<Presence>) {
        let _ = self.live.set(Live { core, presence });
    }

    /// Exports the webhook workers' progress on `/metrics`.
    pub(crate) fn webhooks(&self, stats: Arc<crate::webhook::WebhookStats>) {
        let _ = self.webhook.set(stats);
    }

    /// Marks the server as shutting down: `/readyz` answers 503 from now on.
    pub(crate) fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn is_ready(&self) -> bool {
        self.live.get().is_some() && !self.stopping.load(Ordering::SeqCst)
    }

    fn metrics_text(&self) -> String {
        let sessions = self.live.get().map(|l| l.presence.snapshot()).unwrap_or_default();
        let view = View {
            log: self.log.stats(),
            head: self.log.head().0 .0,
            core: self.live.get().map(|l| l.core.stats()),
            gateway: self.live.get().map(|l| (l.presence.stats(), sessions.as_slice())),
            webhook: self.webhook.get().map(|w| &**w),
        };
        self.metrics.render(&view)
    }

    fn varz(&self, live: &Live) -> serde_json::Value {
        let (position, hash) = self.log.head();
        let stats = live.core.stats();
        let gateway = live.presence.stats();
        let log = self.log.stats();
        let c = &self.config;
        serde_json::json!({
            "server_id": "1",
            "server_name": "rookery",
            "version": env!("CARGO_PKG_VERSION"),
            "connections": live.presence.snapshot().len(),
            "uptime": uptime(self.started.elapsed().as_secs()),
            "mem": resident_bytes(),
            "cpu": self.cpu_percent(),
            "in_msgs": stats.messages_accepted,
            "out_msgs": gateway.delivered,
            "dropped_msgs": gateway.dropped,
            "in_bytes": gateway.in_bytes,
            "out_bytes": gateway.out_bytes,
            "tcp_addr": c.external_tcp_addr.clone().filter(|a| !a.is_empty()).unwrap_or_else(|| c.tcp_addr.to_string()),
            "ws_addr": c.external_ws_addr.clone().filter(|a| !a.is_empty()).unwrap_or_else(|| format!("ws://{}", c.ws_addr)),
            "monitor_addr": c.monitor_addr.to_string(),
            "monitor_on": 1,
            "open_tcp": gateway.open_tcp,
            "open_ws": gateway.open_ws,
            "log_position": position.0,
            "log_groups": log.groups,
            "log_records": log.records,
            "log_syncs": log.syncs,
            "log_unindexed": log.unindexed,
            "chain_head": hash.to_hex(),
            "channel_actors": stats.channel_actors,
            "user_actors": stats.user_actors,
        })
    }
}

/// `/connz` query.
#[derive(Debug)]
struct ConnzQuery {
    offset: Option<String>,
    limit: Option<String>,
}

fn json(status: StatusCode, body: serde_json::Value) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

fn starting() -> warp::reply::Response {
    json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"status": 503, "msg": "the server is starting or stopping"}))
}

fn connz(monitor: &Monitor, query: Result<ConnzQuery, String>) -> warp::reply::Response {
    let Some(live) = monitor.live.get() else { return starting() };
    let bad = |msg: String| json(StatusCode::BAD_REQUEST, serde_json::json!({"status": 400, "msg": msg}));
    let query = match query {
        Ok(q) => q,
        Err(e) => return bad(e),
    };
    let number = |name: &str, raw: Option<String>, default: usize| match raw {
        None => Ok(default),
        Some(r) => r.trim().parse::<usize>().map_err(|_| format!("{name} must be a non-negative integer, got {r:?}")),
    };
    let offset = match number("offset", query.offset, 0) {
        Ok(o) => o,
        Err(e) => return bad(e),
    };
    let limit = match number("limit", query.limit, DEFAULT_CONNZ_LIMIT) {
        Ok(l) if (1..=MAX_CONNZ_LIMIT).contains(&l) => l,
        Ok(l) => return bad(format!("limit must be 1 to {MAX_CONNZ_LIMIT}, got {l}")),
        Err(e) => return bad(e),
    };
    let sessions = live.presence.snapshot();
    let now = SystemTime::now();
    let connections: Vec<serde_json::Value> = sessions
        .iter()
        .skip(offset)
        .take(limit)
        .map(|s| {
            let (ip, port) = match s.peer.parse::<std::net::SocketAddr>() {
                Ok(a) => (a.ip().to_string(), a.port()),
                Err(_) => (s.peer.clone(), 0),
            };
            let since_ms = s.since.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            serde_json::json!({
                "id": s.id,
                "uid": s.uid.0,
                "ip": ip,
                "port": port,
                "device": device_name(s.device_flag),
                "device_flag": s.device_flag,
                "device_id": s.device_id,
                "version": s.version,
                "transport": s.transport,
                "start": crate::timefmt::format_time(rookery_events::Timestamp(since_ms)),
                "uptime": uptime(now.duration_since(s.since).map_or(0, |d| d.as_secs())),
                "in_msgs": s.msgs_in,
                "out_msgs": s.msgs_out,
                "pending_msgs": s.queued,
                "node_id": crate::config::NODE_ID,
            })
        })
        .collect();
    let now_ms = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    json(
        StatusCode::OK,
        serde_json::json!({
            "connections": connections,
            "now": crate::timefmt::format_time(rookery_events::Timestamp(now_ms)),
            "total": sessions.len(),
            "offset": offset,
            "limit": limit,
        }),
    )
}

/// WuKongIM's names for the device flags.
fn device_name(flag: u8) -> &'static str {
    match flag {
        0 => "APP",
        1 => "WEB",
        2 => "PC",
        _ => "UNKNOWN",
    }
}

/// Seconds as `1d2h3m4s`, leading zero units left out (as WuKongIM prints uptimes).
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (value, unit) in [(d, "d"), (h, "h"), (m, "m")] {
        if value > 0 || !out.is_empty() {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out.push_str(&format!("{s}s"));
    out
}

/// Resident memory of this process in bytes, from `/proc/self/statm`; 0 where that is unavailable.
impl Monitor {
    /// CPU used by the process since the previous call (the first: since start), in percent of one
    /// core, as WuKongIM's `/varz` reports it; two busy cores read 200.
    fn cpu_percent(&self) -> f64 {
        let (now, cpu) = (Instant::now(), cpu_seconds());
        let mut sample = self.cpu_sample.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (then, before) = std::mem::replace(&mut *sample, (now, cpu));
        let wall = now.duration_since(then).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        ((cpu - before).max(0.0) / wall * 1000.0).round() / 10.0
    }
}

/// User plus system CPU seconds of this process (`/proc/self/stat` fields 14 and 15, in clock ticks of
/// 1/100 s, the value Linux reports to user space on every architecture this server is built for).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // The command name (field 2) is in parentheses and may contain spaces: count fields after it.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so fields 14 and 15 are at indexes 11 and 12.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm").ok().and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()));
    // Linux pages are 4 KiB on every platform this server is built for (x86_64, aarch64 default).
    pages.map_or(0, |p| p * 4096)
}

pub(crate) fn routes(monitor: Arc<Monitor>) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let with = move || {
        let m = monitor.clone();
        warp::any().map(move || m.clone())
    };
    let health = warp::path!("healthz").map(|| json(StatusCode::OK, serde_json::json!({"status": "ok"})));
    let ready = warp::path!("readyz").and(with()).map(|m: Arc<Monitor>| {
        if !m.is_ready() {
            return starting();
        }
        // Up but unable to write: a load balancer should send clients elsewhere.
        let log = m.log.stats();
        if log.failed {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": 503, "msg": "the event log stopped after a failed write; restart the server (the log recovers to its last durable record)"}),
            );
        }
        if log.disk_full {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": 503, "msg": format!("the data directory's disk is below its reserve ({} bytes free); writes are refused until space is freed", log.disk_free)}),
            );
        }
        json(StatusCode::OK, serde_json::json!({"status": "ready"}))
    });
    let metrics = warp::path!("metrics")
        .and(with())
        .map(|m: Arc<Monitor>| warp::reply::with_header(m.metrics_text(), "content-type", prometheus::TEXT_FORMAT).into_response());
    let varz = warp::path!("varz").and(with()).map(|m: Arc<Monitor>| match m.live.get() {
        Some(live) => json(StatusCode::OK, m.varz(live)),
        None => starting(),
    });
    // Every session's uid, address and device id: with API credentials configured, only for a request
    // that carries one (any scope) in the `token` header.
    let connz_route =
        warp::path!("connz").and(with()).and(warp::header::optional::<String>("token")).and(warp::query::raw().or(warp::any().map(String::new)).unify()).map(
            |m: Arc<Monitor>, token: Option<String>, raw: String| {
                if !m.config.credentials().is_empty() && token.as_deref().and_then(|t| m.config.credential_for(t)).is_none() {
                    return json(
                        StatusCode::UNAUTHORIZED,
                        serde_json::json!({"status": 401, "msg": "/connz lists every session: send an API credential in the token header"}),
                    );
                }
                let query = parse_connz_query(&raw);
                connz(&m, query)
            },
        );
    let not_found = warp::any().map(|| json(StatusCode::NOT_FOUND, serde_json::json!({"status": 404, "msg": "no such route"})));
    warp::get().and(health.or(ready).unify().or(metrics).unify().or(varz).unify().or(connz_route).unify()).or(not_found).unify()
}

/// `/varz` and `/connz` for the API listener, where WuKongIM serves them: the same answers, behind the
/// API's credential check (which the API family that mounts them applies).
pub(crate) fn summaries(monitor: Arc<Monitor>) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let with = move || {
        let m = monitor.clone();
        warp::any().map(move || m.clone())
    };
    let varz = warp::path!("varz").and(with()).map(|m: Arc<Monitor>| match m.live.get() {
        Some(live) => json(StatusCode::OK, m.varz(live)),
        None => starting(),
    });
    let connz = warp::path!("connz")
        .and(with())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(|m: Arc<Monitor>, raw: String| connz(&m, parse_connz_query(&raw)));
    warp::get().and(varz.or(connz).unify()).boxed()
}

/// Parses the `/connz` query string, naming what is wrong.
fn parse_connz_query(raw: &str) -> Result<ConnzQuery, String> {
    let mut q = ConnzQuery { offset: None, limit: None };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "offset" => q.offset = Some(value.to_owned()),
            "limit" => q.limit = Some(value.to_owned()),
            // WuKongIM's `subs` (subscription details) has nothing to list here.
            "subs" => {}
            other => return Err(format!("unknown query parameter {other:?} (offset and limit are known)")),
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_read_like_wukongim() {
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(61), "1m1s");
        assert_eq!(uptime(3600), "1h0m0s");
        assert_eq!(uptime(90_061), "1d1h1m1s");
    }

    #[tokio::test]
    async fn not_ready_until_live_and_not_ready_when_stopping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(RocksLog::open(dir.path(), rookery_storage::RocksOptions::default()).expect("log"));
        let monitor = Arc::new(Monitor::new(log, Arc::new(Metrics::new()), Arc::new(Config::default())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(warp::serve(routes(monitor.clone())).incoming(listener).run());
        let status = |path: &'static str| async move { reqwest::get(format!("http://{addr}{path}")).await.expect("request").status().as_u16() };
        assert_eq!(status("/healthz").await, 200, "alive while starting");
        assert_eq!(status("/readyz").await, 503, "not ready while starting");
        assert_eq!(status("/varz").await, 503);
        assert_eq!(status("/connz").await, 503);
        assert_eq!(status("/metrics").await, 200, "log metrics answer while starting");
        monitor.stopping();
        assert_eq!(status("/readyz").await, 503, "not ready once stopping");
        assert_eq!(status("/nope").await, 404);
        server.abort();
    }

    #[test]
    fn process_cpu_is_read_from_proc_and_moves_with_work() {
        let before = cpu_seconds();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let used = cpu_seconds() - before;
        // 300 ms of busy work on this thread shows up (ticks are 10 ms; the machine may be shared).
        assert!(used >= 0.1, "{used}");
    }
}
