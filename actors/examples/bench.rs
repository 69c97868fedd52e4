//! Event-log benchmarks, each measured side by side with raw RocksDB in the same run:
//!
//! (a) append throughput with 1, 16 and 256 concurrent appenders (every append waits for its fsync)
//!     against raw `WriteBatch` + fsync of the same record sizes at the records per fsync the log
//!     achieved, and against the same appenders on a bare group commit (`baseline::RawGroupCommit`,
//!     syncing inline and pipelined): how much of the gap is concurrency itself;
//! (b) replay (decode + fold of every event into its aggregate, what start-up does without
//!     snapshots) against a raw RocksDB iteration that
//!     decodes the same records, at 1M and 10M events.
//!
//! (c) time travel: a channel with 100k events spread through a 10M-event log, rebuilt as of a
//!     past position and a past instant, against rebuilding it by replaying the log up to there.
//!
//! (d) group size: one sender's messages, one at a time, through the actors into a group of 10,000
//!     and of 100,000 subscribers, against the same into a group of 10: what a send costs more
//!     because the group is large.
//!
//! (e) conversations per user: one user's unread counts set one at a time, the user holding 10,000
//!     conversations, against the same for a user with 10.
//!
//! Run with `make bench` (or `cargo run --release -p rookery-actors --example bench -- [--quick]`;
//! `--only-append-table` runs (a) alone, `--only-append N [--log-only | --os-buffered] [--appends K] [--raw-batch B]` one run with N
//! appenders for profiling (without the floors, or without any fsync; K appends, 2,000,000 by default; first the raw
//! batch of B for the same count),
//! `--only-replay N` runs (b) for one log of N events, `--only-group-size` runs (d) and (e)).

use std::sync::Arc;
use std::time::Instant;

use rookery_actors::sample;
use rookery_events::*;
use rookery_storage::{baseline, Durability, EventLog, NewRecord, RocksLog, RocksOptions};

/// Bytes of message payload in every benchmark record.
const PAYLOAD: usize = 100;

fn message_record(channel: u32, seq: u64) -> NewRecord {
    sample::message_record(channel, seq, PAYLOAD)
}

/// Runs `appenders` tasks made by `appender` (given its index) on a two-worker tokio runtime until all
/// are done; returns the seconds that took.
fn run_appenders<F>(appenders: usize, mut appender: impl FnMut(usize) -> F) -> f64
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let tasks: Vec<F> = (0..appenders).map(&mut appender).collect();
    let started = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
        for h in handles {
            h.await.expect("appender");
        }
    });
    started.elapsed().as_secs_f64()
}

fn append_bench(appenders: usize, total: u64) -> (f64, f64, usize) {
    append_bench_with(appenders, total, Durability::SyncEveryGroup)
}

fn append_bench_with(appenders: usize, total: u64, durability: Durability) -> (f64, f64, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(RocksLog::open(dir.path(), RocksOptions { durability, ..RocksOptions::default() }).expect("open"));
    let value_len = baseline::stored_len(&message_record(0, 1));
    // Records are built before the clock starts: encoding an envelope is the events crate's work, and
    // the raw yardstick's values are ready-made too.
    let per = total.div_ceil(appenders as u64);
    let total = per * appenders as u64;
    let mut prebuilt: Vec<Vec<NewRecord>> = (0..appenders)
        .map(|a| {
            let mut records: Vec<NewRecord> = (1..=per).map(|seq| message_record(a as u32, seq)).collect();
            records.reverse();
            records
        })
        .collect();
    let elapsed = run_appenders(appenders, |a| {
        let (log, mut records) = (log.clone(), std::mem::take(&mut prebuilt[a]));
        async move {
            while let Some(r) = records.pop() {
                log.submit(vec![r]).await.expect("append");
            }
        }
    });
    let stats = log.stats();
    // Records per fsync: what one raw `WriteBatch` + sync must hold to be the same amount of work.
    let group = (stats.records as f64 / stats.syncs.max(1) as f64).max(1.0);
    (total as f64 / elapsed, group, value_len)
}

/// The same appenders against [`baseline::RawGroupCommit`]: (appends/s, records per fsync).
fn floor_bench(appenders: usize, total: u64, value_len: usize, pipelined: bool) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = Arc::new(baseline::RawGroupCommit::open(dir.path(), value_len, pipelined).expect("open"));
    let per = total.div_ceil(appenders as u64);
    let elapsed = run_appenders(appenders, |_| {
        let raw = raw.clone();
        async move {
            for _ in 0..per {
                raw.append().await.expect("append");
            }
        }
    });
    let (n, syncs) = Arc::into_inner(raw).expect("appenders done").finish().expect("raw");
    (n as f64 / elapsed, n as f64 / syncs.max(1) as f64)
}

fn fill(dir: &std::path::Path, events: u64) {
    let log = RocksLog::open(dir, RocksOptions { durability: Durability::OsBuffered, ..RocksOptions::default() }).expect("open");
    sample::fill(&log, sample::messages_over_channels(events, PAYLOAD)).expect("fill");
}

fn replay_ours(dir: &std::path::Path) -> (f64, u64) {
    let log = RocksLog::open(dir, RocksOptions::default()).expect("open");
    let started = Instant::now();
    let p = rookery_actors::replay::rebuild_all(&log).expect("replay");
    (p.done as f64 / started.elapsed().as_secs_f64(), p.done)
}

fn replay_raw(dir: &std::path::Path) -> f64 {
    // Opened before the clock starts, as `replay_ours` opens the log before it.
    let reader = baseline::RawReader::open(dir).expect("open");
    let started = Instant::now();
    let mut n = 0u64;
    reader
        .scan(&mut |body| {
            let decoded = EnvelopeBody::decode(body).expect("decodes");
            std::hint::black_box(&decoded);
            n += 1;
        })
        .expect("raw scan");
    n as f64 / started.elapsed().as_secs_f64()
}

/// Rounds per measurement; medians are reported.
const ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The value after `flag` in `args`, if there is one and it parses.
fn flag_value<T: std::str::FromStr>(args: &[String], flag: &str) -> Option<T> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only-append N` runs just the append case with N appenders (for profiling).
    if let Some(n) = flag_value(&args, "--only-append") {
        // `--appends K`: how many appends per run (default 2,000,000, past the first memtable flushes).
        let total = flag_value(&args, "--appends").unwrap_or(2_000_000);
        // `--os-buffered`: no fsync at all, so what is left is the log's CPU work.
        if args.iter().any(|a| a == "--os-buffered") {
            let (rate, _, _) = append_bench_with(n, total, Durability::OsBuffered);
            println!("{n} appenders, no fsync: {rate:.0} events/s");
            return;
        }
        if let Some(b) = flag_value(&args, "--raw-batch") {
            let dir = tempfile::tempdir().expect("tempdir");
            let rate = baseline::raw_append(dir.path(), b, total, baseline::stored_len(&message_record(0, 1))).expect("raw");
            println!("raw batch {b}: {rate:.0} events/s");
        }
        let (rate, group, value_len) = append_bench(n, total);
        println!("{n} appenders: {rate:.0} events/s, avg group {group:.1}");
        // `--log-only`: without the floors, so a profile holds the log alone.
        let floors: &[bool] = if args.iter().any(|a| a == "--log-only") { &[] } else { &[false, true] };
        for &pipelined in floors {
            let (rate, group) = floor_bench(n, total, value_len, pipelined);
            println!("{n} appenders, group-commit floor (pipelined: {pipelined}): {rate:.0} events/s, avg group {group:.1}");
        }
        return;
    }
    // `--only-replay N`: section (b) for one log of N events.
    if let Some(n) = flag_value::<u64>(&args, "--only-replay") {
        let dir = tempfile::tempdir().expect("tempdir");
        fill(dir.path(), n);
        for _ in 0..ROUNDS {
            let raw = replay_raw(dir.path());
            let (ours, _) = replay_ours(dir.path());
            println!("{n} events: replay {ours:.0}/s, raw {raw:.0}/s, ratio {:.2}", ours / raw);
        }
        return;
    }
    if args.iter().any(|a| a == "--only-group-size") {
        group_size(if quick { 300 } else { 5_000 });
        println!();
        conversations(if quick { 300 } else { 3_000 });
        return;
    }
    if args.iter().any(|a| a == "--only-time-travel") {
        time_travel(if quick { 1_000_000 } else { 10_000_000 });
        return;
    }
    println!("## (a) append throughput, durability = fsync per commit group\n");
    println!("| appenders | rookery events/s | records per fsync | raw: 1 key/event, same value size, same batch | ratio | group-commit floor: inline / pipelined events/s | rookery / floors |");
    println!("|---|---|---|---|---|---|---|");
    // Long enough at 16 and 256 appenders for RocksDB to flush and compact what it writes (a 64 MiB
    // memtable of the log holds about 200,000 records): a run that
    // ends before the first flush leaves that work out of the measurement, for both sides. `--quick`
    // (the CI smoke run) only checks that every side runs.
    let cases: [(usize, u64); 3] = if quick { [(1, 300), (16, 3_000), (256, 20_000)] } else { [(1, 3_000), (16, 1_000_000), (256, 2_000_000)] };
    for (appenders, total) in cases {
        // Alternate the sides three times and keep medians: the disk here is shared and noisy, and
        // alternating exposes every side to the same conditions.
        let (mut ours, mut raws, mut groups, mut inline, mut pipelined) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let (rate, group, value_len) = append_bench(appenders, total);
            let batch = group.round() as usize;
            let dir = tempfile::tempdir().expect("tempdir");
            raws.push(baseline::raw_append(dir.path(), batch, total, value_len).expect("raw append"));
            ours.push(rate);
            groups.push(group);
            inline.push(floor_bench(appenders, total, value_len, false).0);
            pipelined.push(floor_bench(appenders, total, value_len, true).0);
        }
        let (ours, raw, group, inline, pipelined) = (median(ours), median(raws), median(groups), median(inline), median(pipelined));
        println!(
            "| {appenders} | {ours:.0} | {group:.1} | {raw:.0} | {:.2} | {inline:.0} / {pipelined:.0} | {:.2} / {:.2} |",
            ours / raw,
            ours / inline,
            ours / pipelined
        );
    }
    if args.iter().any(|a| a == "--only-append-table") {
        return;
    }
    println!("\n## (b) replay: decode + fold into aggregates vs raw iterate + decode\n");
    println!("| events | rookery replay events/s | raw events/s | ratio |");
    println!("|---|---|---|---|");
    let sizes: &[u64] = if quick { &[100_000, 1_000_000] } else { &[1_000_000, 10_000_000] };
    for &events in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        fill(dir.path(), events);
        let (mut ours, mut raws) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            raws.push(replay_raw(dir.path()));
            let (rate, n) = replay_ours(dir.path());
            assert_eq!(n, events);
            ours.push(rate);
        }
        let (ours, raw) = (median(ours), median(raws));
        println!("| {events} | {ours:.0} | {raw:.0} | {:.2} |", ours / raw);
    }
    println!();
    time_travel(if quick { 1_000_000 } else { 10_000_000 });
    println!();
    group_size(if quick { 300 } else { 5_000 });
    println!();
    conversations(if quick { 300 } else { 3_000 });
}

/// Runs `work` on a fresh core (two arbiters, an OS-buffered log in a temporary directory, so that the
/// disk's fsync, the same at every size, does not drown the work that may grow with it) inside an
/// actix system of its own; `work` returns the microseconds per operation it measured.
fn on_fresh_core<F>(work: impl FnOnce(rookery_actors::Core) -> F) -> f64
where
    F: std::future::Future<Output = f64>,
{
    use rookery_actors::{Core, CoreConfig, SystemClock};
    actix::System::new().block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let log: Arc<dyn EventLog> =
            Arc::new(RocksLog::open(dir.path(), RocksOptions { durability: Durability::OsBuffered, ..RocksOptions::default() }).expect("open"));
        let config = CoreConfig { idle_timeout: std::time::Duration::from_secs(600), snapshot_every: 1_000, arbiters: 2, dedupe_window: 4096 };
        let micros = work(Core::start(log, Arc::new(SystemClock), config).expect("core")).await;
        actix::System::current().stop();
        micros
    })
}

/// Prints one row per size: the median over three alternated rounds of `measure(size)` and its ratio
/// to the first (smallest) size.
fn size_table(sizes: &[usize], measure: impl Fn(usize) -> f64) {
    let mut micros = vec![Vec::new(); sizes.len()];
    for _ in 0..ROUNDS {
        for (i, &size) in sizes.iter().enumerate() {
            micros[i].push(measure(size));
        }
    }
    let medians: Vec<f64> = micros.into_iter().map(median).collect();
    for (size, m) in sizes.iter().zip(&medians) {
        println!("| {size} | {m:.1} | {:.2} |", m / medians[0]);
    }
}

/// Microseconds per `SetUnread` of `sets` made one at a time by a user who is a member of
/// `conversations` groups.
fn unread_set_micros(conversations: usize, sets: u64) -> f64 {
    on_fresh_core(|core| async move {
        let origin = rookery_actors::Origin::system(RequestId([1; 16]));
        let user = Uid("reader".into());
        let groups: Vec<ChannelKey> = (0..conversations).map(|i| ChannelKey::new(format!("group-{i}"), ChannelType::GROUP)).collect();
        for group in &groups {
            core.channel(group, ChannelCommand::AddSubscribers { uids: vec![user.clone()], reset: false }, origin.clone()).await.expect("subscribe");
        }
        let started = Instant::now();
        for i in 0..sets {
            let channel = groups[i as usize % groups.len()].clone();
            core.user(&user, UserCommand::SetUnread { channel, unread: 0, at: ChannelMark::default() }, origin.clone()).await.expect("unread set");
        }
        started.elapsed().as_secs_f64() * 1e6 / sets as f64
    })
}

/// (e): unread counts set by users with few and with many conversations.
fn conversations(sets: u64) {
    println!("## (e) conversations per user: {sets} unread counts set, one at a time (OS-buffered log)\n");
    println!("| conversations | µs per unread set | against 10 conversations |");
    println!("|---|---|---|");
    size_table(&[10, 10_000], |n| unread_set_micros(n, sets));
}

/// Microseconds per send of `sends` messages from one member, each waiting for the last, into a
/// fresh group of `members` subscribers, through `Core::send` (the channel actor, its pipeline, the
/// log).
fn group_send_micros(members: usize, sends: u64) -> f64 {
    on_fresh_core(|core| async move {
        let group = ChannelKey::new("big", ChannelType::GROUP);
        let origin = rookery_actors::Origin::system(RequestId([1; 16]));
        let uids = (0..members).map(|i| Uid(format!("member-{i}"))).collect();
        core.channel(&group, ChannelCommand::AddSubscribers { uids, reset: false }, origin.clone()).await.expect("subscribers");
        let started = Instant::now();
        for i in 0..sends {
            let message = SendMessage {
                message_id: MessageId(0),
                client_msg_no: ClientMsgNo(format!("c{i}")),
                from_uid: Uid("member-1".into()),
                header: MessageHeader { red_dot: true, ..MessageHeader::default() },
                setting: 0,
                stream_no: None,
                expire: 0,
                topic: None,
                payload: vec![7; PAYLOAD],
                sender: SenderStanding::default(),
                peer: PeerPolicy::default(),
            };
            let sent = core.send(&group, message, origin.clone()).await.expect("send");
            assert_eq!(sent.recipients.len(), members);
        }
        started.elapsed().as_secs_f64() * 1e6 / sends as f64
    })
}

/// (d): sends into groups of growing size.
fn group_size(sends: u64) {
    println!("## (d) group size: {sends} sends, one at a time, from one member (OS-buffered log)\n");
    println!("| subscribers | µs per send | against 10 subscribers |");
    println!("|---|---|---|");
    size_table(&[10, 10_000, 100_000], |members| group_send_micros(members, sends));
}

/// Every 100th event belongs to one hot channel (membership changes and messages), the rest are
/// messages of 1,000 other channels; `recorded_at` grows by 1 ms per event.
fn fill_time_travel(dir: &std::path::Path, events: u64, hot: &ChannelKey) {
    let log = RocksLog::open(dir, RocksOptions { durability: Durability::OsBuffered, ..RocksOptions::default() }).expect("open");
    let mut seqs = vec![0u64; 1000];
    let mut hot_seq = 0u64;
    let records = (0..events).map(move |i| {
        let at = Timestamp(1_700_000_000_000 + i);
        let (channel, event) = if i % 100 == 0 {
            let k = i / 100;
            let event = match k % 20 {
                0 => ChannelEvent::SubscribersAdded { uids: vec![Uid(format!("member-{k}"))] },
                10 => ChannelEvent::SubscribersRemoved { uids: vec![Uid(format!("member-{}", k - 10))] },
                _ => {
                    hot_seq += 1;
                    ChannelEvent::MessageAppended(Box::new(sample::message(hot, hot_seq, i, format!("c{i}"), at, PAYLOAD)))
                }
            };
            (hot.clone(), event)
        } else {
            let c = (i.wrapping_mul(2_654_435_761) % 1000) as usize;
            seqs[c] += 1;
            let key = ChannelKey::new(format!("group-{c}"), ChannelType::GROUP);
            let m = sample::message(&key, seqs[c], i, format!("c{i}"), at, PAYLOAD);
            (key, ChannelEvent::MessageAppended(Box::new(m)))
        };
        rookery_actors::record_of(&EnvelopeBody { stream: StreamId::Channel(channel), meta: sample::meta(at), event: Event::Channel(event) })
    });
    sample::fill(&log, records).expect("fill");
}

/// (c): the hot channel as of its middle and its end, by position and by time, against folding
/// the log from position 1 up to the same point (what a log without a stream index would do).
fn time_travel(events: u64) {
    use rookery_actors::history::{self, At};
    let hot = ChannelKey::new("hot", ChannelType::GROUP);
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    fill_time_travel(dir.path(), events, &hot);
    println!("## (c) time travel: one channel with {} events in a log of {events}\n", events / 100);
    println!("(log filled in {:.0} s)\n", started.elapsed().as_secs_f64());
    let log = RocksLog::open(dir.path(), RocksOptions::default()).expect("open");
    println!("| as of | channel events replayed | time travel ms | full-log fold ms | ratio |");
    println!("|---|---|---|---|---|");
    for (label, at, position) in [
        ("position at 50%", At::Position(Position(events / 2)), events / 2),
        ("time at 50%", At::Time(Timestamp(1_700_000_000_000 + events / 2 - 1)), events / 2),
        ("position at 100%", At::Position(Position(events)), events),
        ("time at 100%", At::Time(Timestamp(1_700_000_000_000 + events - 1)), events),
    ] {
        let (mut ours, mut replayed) = (Vec::new(), 0);
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let past = history::channel_at(&log, &hot, at).expect("time travel");
            ours.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(past.position, Position(position));
            replayed = past.events_replayed;
        }
        // The yardstick: one fold of the whole log up to the same position.
        let started = Instant::now();
        let mut state = ChannelState::default();
        rookery_actors::scan_bodies(&log, Position(1), &mut |p, body| {
            if p.0 > position {
                return std::ops::ControlFlow::Break(());
            }
            if let (StreamId::Channel(k), Event::Channel(e)) = (&body.stream, &body.event) {
                if *k == hot {
                    state.apply(p, e);
                }
            }
            std::ops::ControlFlow::Continue(())
        })
        .expect("fold");
        let full = started.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(history::channel_at(&log, &hot, at).expect("time travel").state, state, "time travel equals the full fold");
        let ours = median(ours);
        println!("| {label} | {replayed} | {ours:.0} | {full:.0} | {:.3} |", ours / full);
    }
}
