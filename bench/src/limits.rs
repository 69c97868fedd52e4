//! Physical limits measured in the same run: raw RocksDB group commit (WriteBatch + fsync) and raw
//! loopback TCP request/response with the sizes of a SEND and its SENDACK. Also the log filler for S6.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rookery_storage::{baseline, Durability, NewRecord, RocksLog, RocksOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::load::histogram;

/// A message record as the server writes it for a SEND's payload.
pub fn message_record(channel: u32, seq: u64) -> NewRecord {
    rookery_actors::sample::message_record(channel, seq, crate::client::PAYLOAD)
}

/// Bytes of one stored message record (body plus the log's record header, chain link and index entries).
pub fn record_len() -> usize {
    baseline::stored_len(&message_record(0, 1))
}

/// Raw RocksDB appends of `record_len()`-byte values, `batch` per WriteBatch with one fsync each.
/// Values per second.
///
/// # Errors
/// RocksDB failures.
pub fn raw_group_commit(batch: usize, total: u64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    Ok(baseline::raw_append(dir.path(), batch, total, record_len())?)
}

/// Fills a server data directory's log with `events` message records over 1,000 channels, unsynced.
///
/// # Errors
/// RocksDB failures.
pub fn fill(data_dir: &Path, events: u64) -> anyhow::Result<()> {
    let dir = data_dir.join("log");
    std::fs::create_dir_all(&dir)?;
    let log = RocksLog::open(&dir, RocksOptions { durability: Durability::OsBuffered, ..RocksOptions::default() })?;
    rookery_actors::sample::fill(&log, rookery_actors::sample::messages_over_channels(events, crate::client::PAYLOAD))?;
    Ok(())
}

/// Raw loopback request/response: `conns` connections, each writing a `req`-byte frame and waiting for a
/// `resp`-byte answer from a plain echo server (its own 2-thread runtime), for `secs`.
/// Returns (round trips per second, latency histogram).
///
/// # Errors
/// Socket failures.
pub async fn raw_loopback(conns: usize, secs: f64, req: usize, resp: usize) -> anyhow::Result<(f64, Histogram<u64>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr: SocketAddr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let mut stop = stop_rx;
            loop {
                tokio::select! {
                    a = listener.accept() => {
                        let Ok((mut s, _)) = a else { continue };
                        let _ = s.set_nodelay(true);
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; req];
                            let out = vec![7u8; resp];
                            while s.read_exact(&mut buf).await.is_ok() {
                                if s.write_all(&out).await.is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    _ = stop.changed() => break,
                }
            }
        });
    });
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut handles = Vec::new();
    for i in 0..conns {
        handles.push(tokio::spawn(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(crate::client::source_ip(i).into(), 0))?;
            let mut s = socket.connect(addr).await?;
            s.set_nodelay(true)?;
            let frame = vec![3u8; req];
            let mut answer = vec![0u8; resp];
            let mut h = histogram();
            let mut n = 0u64;
            while Instant::now() < until {
                let at = Instant::now();
                s.write_all(&frame).await?;
                s.read_exact(&mut answer).await?;
                let _ = h.record(at.elapsed().as_micros().max(1) as u64);
                n += 1;
            }
            anyhow::Ok((n, h))
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    let mut hist = histogram();
    for h in handles {
        let (n, part) = h.await??;
        total += n;
        let _ = hist.add(&part);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let _ = server.join();
    Ok((total as f64 / elapsed, hist))
}
