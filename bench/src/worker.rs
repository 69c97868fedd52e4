//! `rookery-bench idle-worker`: a separate load-generator process holding idle WKProto connections
//! with heartbeats, so the benchmark can hold more sockets than one process's 20,000 descriptors allow.
//!
//! Arguments: `TCP_ADDR UID_PREFIX FIRST COUNT PING_MS`. It logs in `UID_PREFIX{FIRST..FIRST+COUNT}`,
//! prints `connected <ok> <failed> <ms>`, then PINGs every connection every `PING_MS` until a line (or
//! end of input) arrives on stdin, then prints `pongs <pings> <pongs> <closed>` and exits.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rookery::gateway::packet::Packet;
use tokio::sync::watch;

use crate::client;

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let [addr, prefix, first, count, ping_ms] = args else { anyhow::bail!("idle-worker TCP_ADDR UID_PREFIX FIRST COUNT PING_MS") };
    let addr: SocketAddr = addr.parse()?;
    let (first, count, ping_ms): (usize, usize, u64) = (first.parse()?, count.parse()?, ping_ms.parse()?);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async move {
        let started = Instant::now();
        let uids: Vec<String> = (first..first + count).map(|i| format!("{prefix}{i}")).collect();
        let sem = Arc::new(tokio::sync::Semaphore::new(256));
        let mut handles = Vec::with_capacity(count);
        for (k, uid) in uids.into_iter().enumerate() {
            let sem = sem.clone();
            handles.push(tokio::spawn(async move {
                let _p = sem.acquire().await;
                client::connect(addr, client::source_ip(first + k), &uid, &crate::server::token(&uid)).await
            }));
        }
        let mut conns = Vec::with_capacity(count);
        let mut failed = 0;
        for h in handles {
            match h.await {
                Ok(Ok(c)) => conns.push(c),
                _ => failed += 1,
            }
        }
        println!("connected {} {} {}", conns.len(), failed, started.elapsed().as_millis());
        let (pings, pongs, closed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::with_capacity(conns.len());
        for (i, (mut reader, mut writer)) in conns.into_iter().enumerate() {
            let (pings, pongs, closed, mut stop) = (pings.clone(), pongs.clone(), closed.clone(), stop_rx.clone());
            tasks.push(tokio::spawn(async move {
                // Spread the heartbeats over the interval.
                let period = Duration::from_millis(ping_ms);
                let mut next = tokio::time::Instant::now() + period.mul_f64((i % 1000) as f64 / 1000.0);
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(next) => {
                            next += period;
                            if writer.queue(&Packet::Ping).is_err() || writer.flush().await.is_err() {
                                closed.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            pings.fetch_add(1, Ordering::Relaxed);
                        }
                        p = reader.next() => match p {
                            Ok(Some(Packet::Pong)) => { pongs.fetch_add(1, Ordering::Relaxed); }
                            Ok(Some(_)) => {}
                            _ => { closed.fetch_add(1, Ordering::Relaxed); return; }
                        },
                        _ = stop.changed() => return,
                    }
                }
            }));
        }
        // Wait for the coordinator.
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        })
        .await;
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        println!("pongs {} {} {}", pings.load(Ordering::Relaxed), pongs.load(Ordering::Relaxed), closed.load(Ordering::Relaxed));
        anyhow::Ok(())
    })
}
