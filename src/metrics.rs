//! Prometheus metrics: what the server counts itself (REST requests) in a `prometheus` registry, plus
//! what other layers already count (the log writer's `LogStats`, the core's `CoreStats`, the gateway's
//! `GatewayStats` and sessions), read at scrape time and rendered as metric families next to it.
//!
//! Reading the other layers at scrape time keeps them free of any metrics library and costs nothing
//! between scrapes. Every metric is listed in docs/OPERATIONS.md ("Monitoring").

use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use rookery_actors::CoreStats;
use rookery_storage::{HistogramSnapshot, LogStats};

use crate::presence::{GatewayStats, SessionSnapshot};
use crate::webhook::WebhookStats;

/// Route classes of `rookery_http_requests_total`: the first path segment when it is one of these,
/// else `other` (so unknown paths cannot grow the label set).
const ROUTE_CLASSES: &[(&str, &str)] = &[
    ("audit", "audit"),
    ("backup", "backup"),
    ("channel", "channel"),
    ("conversation", "conversation"),
    ("conversations", "conversation"),
    ("healthz", "health"),
    ("message", "message"),
    ("route", "route"),
    ("systemuids_add", "system"),
    ("systemuids_remove", "system"),
    ("user", "user"),
];

/// The route class of a request path.
pub fn route_class(path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    ROUTE_CLASSES.iter().find(|(segment, _)| *segment == first).map_or("other", |(_, class)| class)
}

/// The server's own metrics.
pub struct Metrics {
    registry: Registry,
    http: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry with the server's metrics.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http =
            IntCounterVec::new(Opts::new("rookery_http_requests_total", "REST API requests answered, by route class and HTTP status."), &["class", "status"])
                .expect("valid metric definition");
        registry.register(Box::new(http.clone())).expect("metric registered once");
        Metrics { registry, http }
    }

    /// Counts one answered REST request.
    pub fn observe_http(&self, path: &str, status: u16) {
        self.http.with_label_values(&[route_class(path), &status.to_string()]).inc();
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn render(&self, view: &View) -> String {
        let mut families = self.registry.gather();
        families.extend(view.families());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out).expect("text encoding into memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// What the other layers report at one scrape. `core` and `gateway` are `None` while the server is
/// still starting (catching snapshots up).
pub struct View<'a> {
    /// The log writer's counters.
    pub log: LogStats,
    /// The log head position.
    pub head: u64,
    /// The actor layer, once started.
    pub core: Option<CoreStats>,
    /// Gateway counters and sessions, once started.
    pub gateway: Option<(GatewayStats, &'a [SessionSnapshot])>,
    /// The webhook workers' progress, when webhooks are configured.
    pub webhook: Option<&'a WebhookStats>,
}

impl View<'_> {
    fn families(&self) -> Vec<MetricFamily> {
        let log = &self.log;
        let mut f = vec![
            counter("rookery_log_records_appended_total", "Records appended to the event log since start.", log.records),
            counter("rookery_log_commit_groups_total", "Commit groups written (one RocksDB write batch each).", log.groups),
            counter("rookery_log_fsyncs_total", "WAL fsyncs (each covers one or more groups under durability = \"sync\").", log.syncs),
            gauge("rookery_log_head_position", "Position of the last committed record.", self.head as f64),
            gauge("rookery_log_pending_records", "Records submitted to the log writer and not yet answered.", log.pending as f64),
            gauge("rookery_log_unindexed_records", "Committed records whose index entries are in memory only, waiting for the indexer.", log.unindexed as f64),
            gauge(
                "rookery_log_writable",
                "1 while the event log accepts appends; 0 when the disk is below its reserve or a write failed.",
                f64::from(u8::from(!log.disk_full && !log.failed)),
            ),
            gauge(
                "rookery_log_disk_full",
                "1 while the data directory's disk is below its reserve (appends refused until space is freed).",
                f64::from(u8::from(log.disk_full)),
            ),
            gauge("rookery_log_failed", "1 after a failed write: the log refuses appends until the server is restarted.", f64::from(u8::from(log.failed))),
            gauge(
                "rookery_disk_free_bytes",
                "Free bytes of the data directory's filesystem at the last reading.",
                if log.disk_free == u64::MAX { f64::NAN } else { log.disk_free as f64 },
            ),
            histogram("rookery_log_commit_group_records", "Records per commit group.", &log.group_records, 1.0),
            histogram(
                "rookery_log_write_seconds",
                "Time from the start of a commit group's write until it is published, WAL fsync included when syncing.",
                &log.write_micros,
                1e-6,
            ),
        ];
        if let Some(core) = &self.core {
            f.push(counter("rookery_messages_in_total", "Sends accepted (REST and WKProto), each a new stored message.", core.messages_accepted));
            f.push(counter(
                "rookery_messages_retried_total",
                "Retried sends (same sender and client_msg_no) answered with their original, storing nothing.",
                core.messages_retried,
            ));
            f.push(labelled_gauge(
                "rookery_actors",
                "Live actors, by kind.",
                "kind",
                &[("channel", core.channel_actors as f64), ("user", core.user_actors as f64)],
            ));
        }
        if let Some(w) = self.webhook {
            let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            f.push(counter("rookery_webhook_deliveries_total", "Webhook requests the receiver answered with 200.", load(&w.delivered)));
            f.push(counter(
                "rookery_webhook_failures_total",
                "Webhook requests that failed (status other than 200, timeout, connection or TLS error) and are retried.",
                load(&w.failures),
            ));
            f.push(counter(
                "rookery_webhook_dead_lettered_total",
                "Webhook deliveries given up after webhook_max_attempts (message events are kept as dead letters; GET /webhook/deadletters).",
                load(&w.dead_lettered),
            ));
            f.push(gauge("rookery_webhook_cursor_position", "Log position up to which stored messages were delivered to the webhook.", load(&w.cursor) as f64));
        }
        if let Some((gateway, sessions)) = &self.gateway {
            f.push(counter("rookery_messages_out_total", "RECVs written to WKProto sessions.", gateway.delivered));
            f.push(counter("rookery_messages_dropped_total", "RECVs dropped because a session's outbound queue was full.", gateway.dropped));
            f.push(counter("rookery_client_bytes_in_total", "Bytes read from client connections (TCP bytes, WebSocket message payloads).", gateway.in_bytes));
            f.push(counter(
                "rookery_client_bytes_out_total",
                "Bytes written to client connections (TCP bytes, WebSocket message payloads).",
                gateway.out_bytes,
            ));
            f.push(labelled_gauge(
                "rookery_connections_open",
                "Open WKProto sockets (authenticated or not), by transport.",
                "transport",
                &[("tcp", gateway.open_tcp as f64), ("ws", gateway.open_ws as f64)],
            ));
            let count = |t: &str| sessions.iter().filter(|s| s.transport == t).count() as f64;
            f.push(labelled_gauge(
                "rookery_sessions",
                "Authenticated WKProto sessions, by transport.",
                "transport",
                &[("tcp", count("tcp")), ("ws", count("ws"))],
            ));
            f.push(gauge(
                "rookery_session_outbound_queued",
                "RECVs waiting on the outbound queues of all sessions.",
                sessions.iter().map(|s| s.queued).sum::<usize>() as f64,
            ));
            f.push(gauge(
                "rookery_session_outbound_queued_max",
                "RECVs waiting on the fullest session outbound queue.",
                sessions.iter().map(|s| s.queued).max().unwrap_or(0) as f64,
            ));
        }
        f
    }
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn counter(name: &str, help: &str, value: u64) -> MetricFamily {
    let mut c = Counter::default();
    c.set_value(value as f64);
    let mut m = Metric::default();
    m.set_counter(c);
    family(name, help, MetricType::COUNTER, vec![m])
}

fn gauge(name: &str, help: &str, value: f64) -> MetricFamily {
    let mut g = Gauge::default();
    g.set_value(value);
    family(name, help, MetricType::GAUGE, vec![Metric::from_gauge(g)])
}

fn labelled_gauge(name: &str, help: &str, label: &str, values: &[(&str, f64)]) -> MetricFamily {
    let metrics = values
        .iter()
        .map(|(v, value)| {
            let mut g = Gauge::default();
            g.set_value(*value);
            let mut m = Metric::from_gauge(g);
            let mut pair = LabelPair::default();
            pair.set_name(label.into());
            pair.set_value((*v).into());
            m.set_label(vec![pair]);
            m
        })
        .collect();
    family(name, help, MetricType::GAUGE, metrics)
}

/// A storage histogram, its bounds and sum multiplied by `scale` (1e-6 turns microseconds into seconds).
fn histogram(name: &str, help: &str, h: &HistogramSnapshot, scale: f64) -> MetricFamily {
    let mut cumulative = 0;
    let buckets = h
        .bounds
        .iter()
        .zip(&h.counts)
        .map(|(bound, count)| {
            cumulative += count;
            let mut b = Bucket::default();
            b.set_upper_bound(*bound as f64 * scale);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut hist = Histogram::default();
    hist.set_bucket(buckets);
    hist.set_sample_count(h.count());
    hist.set_sample_sum(h.sum as f64 * scale);
    let mut m = Metric::default();
    m.set_histogram(hist);
    family(name, help, MetricType::HISTOGRAM, vec![m])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_classes_bound_the_label_set() {
        assert_eq!(route_class("/message/send"), "message");
        assert_eq!(route_class("/conversations/sync"), "conversation");
        assert_eq!(route_class("/systemuids_add"), "system");
        assert_eq!(route_class("/"), "other");
        assert_eq!(route_class("/no/such/route"), "other");
    }

    #[test]
    fn renders_counters_and_histograms_in_the_text_format() {
        let m = Metrics::new();
        m.observe_http("/message/send", 200);
        m.observe_http("/message/send", 200);
        m.observe_http("/user/token", 400);
        let mut log = LogStats { records: 7, groups: 3, ..LogStats::default() };
        // Groups of 1, 2 and 4 records.
        log.group_records.counts[0] = 1;
        log.group_records.counts[1] = 1;
        log.group_records.counts[2] = 1;
        log.group_records.sum = 7;
        let text = m.render(&View { log, head: 7, core: None, gateway: None, webhook: None });
        assert!(text.contains("rookery_http_requests_total{class=\"message\",status=\"200\"} 2\n"), "{text}");
        assert!(text.contains("rookery_http_requests_total{class=\"user\",status=\"400\"} 1\n"), "{text}");
        assert!(text.contains("rookery_log_records_appended_total 7\n"), "{text}");
        assert!(text.contains("rookery_log_head_position 7\n"), "{text}");
        assert!(text.contains("rookery_log_unindexed_records 0\n"), "{text}");
        assert!(text.contains("rookery_log_commit_group_records_bucket{le=\"2\"} 2\n"), "{text}");
        assert!(text.contains("rookery_log_commit_group_records_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("rookery_log_commit_group_records_sum 7\n"), "{text}");
        assert!(text.contains("# TYPE rookery_log_write_seconds histogram\n"), "{text}");
        assert!(!text.contains("rookery_messages_in_total"), "no core while starting: {text}");
    }
}
