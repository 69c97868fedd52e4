//! The Rookery server: configuration, the REST API and the monitor listener around the actor core.
//!
//! [`run`] opens the event log, brings snapshots up to the log head, starts the actors, binds every
//! listener and serves until the shutdown future completes.

pub mod audit;
pub mod backup;
pub mod blobs;
pub mod config;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod metrics;
mod monitor;
pub mod presence;
pub mod render;
pub mod timefmt;
pub mod tls;
pub mod transfer;
pub mod usecase;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use rookery_actors::{replay, Core, CoreConfig, SystemClock};
use rookery_storage::{Durability, EventLog, RocksLog, RocksOptions};

pub use config::Config;

/// Opens the event log in `data_dir/log`.
///
/// # Errors
/// When the directory cannot be created or the log cannot be opened (for example, another process
/// holds it).
pub fn open_log(config: &Config) -> anyhow::Result<RocksLog> {
    let dir = config.data_dir.join("log");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating data directory {}", dir.display()))?;
    let durability = match config.durability {
        config::DurabilitySetting::Sync => Durability::SyncEveryGroup,
        config::DurabilitySetting::Buffered => Durability::OsBuffered,
    };
    RocksLog::open(
        &dir,
        RocksOptions {
            durability,
            max_unindexed_records: config.log_max_unindexed_records,
            disk_reserve_bytes: config.disk_reserve_bytes,
            disk_free_probe: config.disk_free_probe_file.clone(),
            ..RocksOptions::default()
        },
    )
    .with_context(|| format!("opening event log in {}", dir.display()))
}

/// Runs the server until `shutdown` completes. Must be called inside an actix `System` whose tokio
/// runtime is multi-threaded (see `main.rs`).
///
/// # Errors
/// Invalid configuration, an unreadable log, or a listener that cannot bind.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    let rocks = Arc::new(open_log(&config)?);
    let log: Arc<dyn EventLog> = rocks.clone();
    let (head, hash) = log.head();
    tracing::info!(position = head.0, chain_head = %hash.to_hex(), "event log opened");
    let config = Arc::new(config);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The monitor comes first, so liveness and metrics answer while snapshots catch up; `/readyz`
    // says 503 until everything below is done.
    let metrics = Arc::new(metrics::Metrics::new());
    let (monitor_state, monitor) = start_monitor(&config, &rocks, &metrics, stop_rx.clone()).await?;
    catch_up(&log).await?;

    let threads = if config.actor_threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) } else { config.actor_threads };
    let core_config = CoreConfig {
        idle_timeout: std::time::Duration::from_secs(config.actor_idle_secs),
        snapshot_every: config.snapshot_every,
        arbiters: threads,
        dedupe_window: config.dedupe_window,
    };
    let core = Core::start(log.clone(), Arc::new(SystemClock), core_config)?;

    let (api_listener, tcp_listener, ws_listener) =
        (bind(config.api_addr, "REST API")?, bind(config.tcp_addr, "WKProto TCP")?, bind(config.ws_addr, "WKProto WebSocket")?);
    let bound = (api_listener.local_addr()?, tcp_listener.local_addr()?, ws_listener.local_addr()?);

    let tls = tls::acceptor(&config)?;
    let presence = Arc::new(presence::Presence::default());
    // A message no session could receive in one packet is refused to its sender instead.
    let usecases = usecase::UseCases::new(core.clone(), config.clone(), presence.clone(), gateway::max_deliverable_payload());
    let limits = Arc::new(limits::Limits::new(&config));
    let gateway = gateway::server::Gateway::new(usecases.clone(), limits.clone(), tls.clone());
    let tcp = tokio::spawn(gateway::tcp::serve(tcp_listener, gateway.clone(), stop_rx.clone()));
    let ws = tokio::spawn(gateway::ws::serve(ws_listener, gateway.clone(), stop_rx.clone()));
    let webhooks = webhook::start(&config, core.clone(), gateway.presence.clone(), stop_rx.clone()).map_err(anyhow::Error::msg)?;
    if let Some((stats, _)) = &webhooks {
        monitor_state.webhooks(stats.clone());
    }
    let api_state = http::ApiState {
        usecases,
        core: core.clone(),
        config: config.clone(),
        presence: gateway.presence.clone(),
        limits: gateway.limits.clone(),
        rocks: Some(rocks.clone()),
    };
    let routes = http::Families::new(api_state.clone()).with_summaries(api_state, monitor::summaries(monitor_state.clone()));
    let api_limits = http::serve::ListenerLimits {
        header_timeout: std::time::Duration::from_millis(config.api_header_timeout_ms),
        max_connections: config.api_max_connections,
    };
    let api_tls = if config.tls_api { tls.clone() } else { None };
    let api = tokio::spawn(http::serve::serve(api_listener, api_tls, routes, metrics.clone(), api_limits, stopped(stop_rx.clone())));
    monitor_state.ready(core.clone(), gateway.presence.clone());
    // Printed once ready: a supervisor that has seen all four lines finds `/readyz` answering 200.
    println!("rookery: api listening on {}", bound.0);
    println!("rookery: tcp listening on {}", bound.1);
    println!("rookery: ws listening on {}", bound.2);
    tracing::info!("ready");

    let head_logger = tokio::spawn(every_minute(log.clone(), limits));

    shutdown.await;
    head_logger.abort();
    tracing::info!("shutting down");
    monitor_state.stopping();
    let _ = stop_tx.send(true);
    let _ = api.await;
    let _ = monitor.await;
    let _ = tcp.await;
    let _ = ws.await;
    if let Some((_, tasks)) = webhooks {
        for t in tasks {
            let _ = t.await;
        }
    }
    Ok(())
}

/// Completes once the stop signal is true (or its sender is gone).
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Binds the monitor and serves it until the stop signal; answers `/readyz` with 503 until
/// [`monitor::Monitor::ready`].
async fn start_monitor(
    config: &Arc<Config>,
    rocks: &Arc<RocksLog>,
    metrics: &Arc<metrics::Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Arc<monitor::Monitor>, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(config.monitor_addr).await.with_context(|| format!("binding monitor on {}", config.monitor_addr))?;
    // Tests and supervisors read these lines to learn the bound ports.
    println!("rookery: monitor listening on {}", listener.local_addr()?);
    let state = Arc::new(monitor::Monitor::new(rocks.clone(), metrics.clone(), config.clone()));
    let task = tokio::spawn(warp::serve(monitor::routes(state.clone())).incoming(listener).graceful(stopped(stop)).run());
    Ok((state, task))
}

/// Folds the log tail since the last checkpoint into the snapshots, logging progress.
async fn catch_up(log: &Arc<dyn EventLog>) -> anyhow::Result<()> {
    let replay_log = log.clone();
    let caught_up = tokio::task::spawn_blocking(move || {
        replay::catch_up(&*replay_log, &mut |p| {
            tracing::info!(
                done = p.done,
                total = p.total,
                percent = format!("{:.1}", p.percent()),
                events_per_sec = p.rate() as u64,
                "replaying log tail into snapshots"
            );
        })
    })
    .await
    .context("replay task")??;
    tracing::info!(events = caught_up.done, events_per_sec = caught_up.rate() as u64, "snapshots up to date");
    Ok(())
}

/// Once a minute: forgets idle rate-limit entries, and logs the chain head so it can be anchored
/// outside the server.
async fn every_minute(log: Arc<dyn EventLog>, limits: Arc<limits::Limits>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        limits.housekeeping();
        let (position, hash) = log.head();
        tracing::info!(position = position.0, chain_head = %hash.to_hex(), "event log chain head");
    }
}

/// [`listen`], with the listener's name in the error.
fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    listen(addr).with_context(|| format!("binding {what} on {addr}"))
}

/// Binds a listener with an accept queue of 4096 (the kernel caps it at `net.core.somaxconn`) instead of
/// tokio's 1024, so a reconnect storm waits in the queue instead of losing SYNs, which costs each client a
/// one-second retransmission.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As tokio's `TcpListener::bind` does, so a restarted server can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
