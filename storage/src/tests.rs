//! One conformance suite, run against both engines, plus RocksDB-only tests (group commit, failure,
//! corruption, locking).

use std::ops::ControlFlow;
use std::path::Path;

use rookery_events::{link, sha256, ChainHash, Position};

use crate::*;

fn rec(stream: &str, n: u64) -> NewRecord {
    let body = format!("{stream}:{n}").into_bytes();
    NewRecord { stream: stream.as_bytes().to_vec(), digest: sha256(&body), body, seq: None }
}

fn msg(stream: &str, seq: u64) -> NewRecord {
    NewRecord { seq: Some(seq), ..rec(stream, seq) }
}

fn bodies(records: &[StoredRecord]) -> Vec<String> {
    records.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect()
}

fn seqs(hits: &[(u64, StoredRecord)]) -> Vec<u64> {
    hits.iter().map(|(s, _)| *s).collect()
}

// ---------------------------------------------------------------------------------------------------
// The conformance suite
// ---------------------------------------------------------------------------------------------------

/// Runs every check against one store; `open` opens the same store again. Each check drops its handle
/// before the next one opens, so every step also exercises a reopen.
fn conformance<L: EventLog>(open: &dyn Fn() -> L) {
    positions_are_dense_and_chained(&open());
    scans_and_ranges(&open());
    reads_by_stream_and_seq(&open());
    snapshots(&open());
    invalid_appends_change_nothing(&open());
    rewrites_keep_position_and_chain(&open());
    one_caller_keeps_submission_order(&open());
    submitted_before_drop_are_finished(open);
    concurrent_appends_are_dense_and_ordered(&open());
    everything_survives_reopen(&open());
}

fn positions_are_dense_and_chained<L: EventLog>(log: &L) {
    assert_eq!(log.head(), (Position::ZERO, ChainHash::GENESIS), "a new log is empty");
    assert!(log.read_range(Position(1), 10).unwrap().is_empty());
    // A batch gets consecutive positions, starting at 1; the next submit continues after it.
    let a = log.append(vec![rec("s1", 1), rec("s2", 1), rec("s1", 2)]).unwrap();
    let b = log.append(vec![rec("s2", 2)]).unwrap();
    assert_eq!((a.first, a.last), (Position(1), Position(3)));
    assert_eq!((b.first, b.last), (Position(4), Position(4)));
    let all = log.read_range(Position(1), 10).unwrap();
    assert_eq!(bodies(&all), ["s1:1", "s2:1", "s1:2", "s2:2"]);
    let mut h = ChainHash::GENESIS;
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.position, Position(i as u64 + 1));
        assert_eq!(r.prev_hash, h);
        assert_eq!(r.digest, sha256(&r.body));
        h = link(&h, r.position, &r.digest);
        assert_eq!(r.hash(), h);
    }
    assert_eq!(log.head(), (Position(4), h));
}

fn scans_and_ranges<L: EventLog>(log: &L) {
    let base = log.head().0 .0;
    log.append((1..=10).map(|n| rec("scan", n)).collect()).unwrap();
    // From the middle, until the end.
    let mut seen = Vec::new();
    log.scan(Position(base + 7), &mut |r| {
        seen.push(r.position.0 - base);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen, [7, 8, 9, 10]);
    // Until `f` breaks.
    let mut seen = Vec::new();
    log.scan(Position(base + 2), &mut |r| {
        seen.push(r.position.0 - base);
        if seen.len() == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(seen, [2, 3, 4]);
    // Position 0 means "from the start"; past the head there is nothing.
    assert_eq!(log.read_range(Position::ZERO, 1).unwrap()[0].position, Position(1));
    assert!(log.read_range(Position(base + 11), 5).unwrap().is_empty());
    assert!(log.read_range(Position(base + 1), 0).unwrap().is_empty());
    assert_eq!(bodies(&log.read_range(Position(base + 4), 3).unwrap()), ["scan:4", "scan:5", "scan:6"]);
}

/// An engine that only has the trait's default `read_stream_back`.
struct ForwardOnly<'a, L>(&'a L);

impl<L: EventLog> EventLog for ForwardOnly<'_, L> {
    fn submit(&self, records: Vec<NewRecord>) -> crate::Commit {
        self.0.submit(records)
    }
    fn submit_with_rewrites(&self, records: Vec<NewRecord>, rewrites: Vec<Rewrite>) -> crate::Commit {
        self.0.submit_with_rewrites(records, rewrites)
    }
    fn purge_superseded(&self, from: Position, to: Position) -> crate::Result<()> {
        self.0.purge_superseded(from, to)
    }
    fn head(&self) -> (Position, crate::ChainHash) {
        self.0.head()
    }
    fn scan(&self, from: Position, f: &mut dyn FnMut(StoredRecord) -> ControlFlow<()>) -> crate::Result<()> {
        self.0.scan(from, f)
    }
    fn read_stream(&self, stream: &[u8], after: Position, limit: usize) -> crate::Result<Vec<StoredRecord>> {
        self.0.read_stream(stream, after, limit)
    }
    fn read_seq_range(&self, stream: &[u8], from: u64, to: u64, limit: usize, newest_first: bool) -> crate::Result<Vec<(u64, StoredRecord)>> {
        self.0.read_seq_range(stream, from, to, limit, newest_first)
    }
    fn put_snapshot(&self, stream: &[u8], snapshot: &crate::Snapshot) -> crate::Result<()> {
        self.0.put_snapshot(stream, snapshot)
    }
    fn get_snapshot(&self, stream: &[u8]) -> crate::Result<Option<crate::Snapshot>> {
        self.0.get_snapshot(stream)
    }
    fn scan_snapshots(&self, f: &mut dyn FnMut(&[u8], crate::Snapshot) -> ControlFlow<()>) -> crate::Result<()> {
        self.0.scan_snapshots(f)
    }
}

fn reads_by_stream_and_seq<L: EventLog>(log: &L) {
    let base = log.head().0 .0;
    // Interleave another stream so stream order is not log order.
    for chunk in (1..=100u64).collect::<Vec<_>>().chunks(25) {
        let mut batch: Vec<NewRecord> = chunk.iter().map(|&s| msg("chan", s)).collect();
        batch.insert(1, rec("other", chunk[0]));
        log.append(batch).unwrap();
    }
    let stream = log.read_stream(b"chan", Position::ZERO, 1000).unwrap();
    assert_eq!(bodies(&stream), (1..=100).map(|s| format!("chan:{s}")).collect::<Vec<_>>());
    assert!(stream.windows(2).all(|w| w[0].position < w[1].position), "oldest first");
    assert!(stream[0].position.0 > base);
    // `after` is exclusive and `limit` caps the answer.
    let after = log.read_stream(b"chan", stream[94].position, 3).unwrap();
    assert_eq!(bodies(&after), ["chan:96", "chan:97", "chan:98"]);
    assert!(log.read_stream(b"chan", stream[99].position, 10).unwrap().is_empty());
    assert!(log.read_stream(b"chan", Position::ZERO, 0).unwrap().is_empty());
    assert!(log.read_stream(b"chan", Position(u64::MAX), 10).unwrap().is_empty());
    assert!(log.read_stream(b"cha", Position::ZERO, 10).unwrap().is_empty(), "a prefix of a stream key is another stream");
    assert!(log.read_stream(b"chan2", Position::ZERO, 10).unwrap().is_empty());
    assert_eq!(log.read_stream(b"other", Position::ZERO, 10).unwrap().len(), 4);
    // Backward: `before` is exclusive, newest first, `limit` caps; the default method agrees.
    let back = log.read_stream_back(b"chan", stream[5].position, 3).unwrap();
    assert_eq!(bodies(&back), ["chan:5", "chan:4", "chan:3"]);
    assert_eq!(bodies(&log.read_stream_back(b"chan", Position(u64::MAX), 2).unwrap()), ["chan:100", "chan:99"]);
    assert!(log.read_stream_back(b"chan", stream[0].position, 10).unwrap().is_empty());
    assert!(log.read_stream_back(b"chan", Position::ZERO, 10).unwrap().is_empty());
    assert!(log.read_stream_back(b"chan", Position(u64::MAX), 0).unwrap().is_empty());
    assert!(log.read_stream_back(b"cha", Position(u64::MAX), 10).unwrap().is_empty());
    assert_eq!(log.read_stream_back(b"other", Position(u64::MAX), 10).unwrap().len(), 4);
    let all_back = log.read_stream_back(b"chan", Position(u64::MAX), 1000).unwrap();
    assert_eq!(all_back.iter().rev().cloned().collect::<Vec<_>>(), stream);
    let fwd = ForwardOnly(log);
    assert_eq!(fwd.read_stream_back(b"chan", stream[5].position, 3).unwrap(), back);
    assert_eq!(fwd.read_stream_back(b"chan", Position(u64::MAX), 1000).unwrap(), all_back);
    assert_eq!(fwd.read_stream_back(b"chan", stream[50].position, 1000).unwrap(), all_back[50..]);
    assert!(fwd.read_stream_back(b"chan", stream[0].position, 10).unwrap().is_empty());
    assert!(fwd.read_stream_back(b"chan", Position(u64::MAX), 0).unwrap().is_empty());

    // Seq ranges: lowest first, or highest first, bounded by both ends and the limit.
    assert_eq!(seqs(&log.read_seq_range(b"chan", 10, 20, 5, false).unwrap()), [10, 11, 12, 13, 14]);
    assert_eq!(seqs(&log.read_seq_range(b"chan", 10, 20, 5, true).unwrap()), [20, 19, 18, 17, 16]);
    assert_eq!(seqs(&log.read_seq_range(b"chan", 10, 12, 50, false).unwrap()), [10, 11, 12]);
    assert_eq!(seqs(&log.read_seq_range(b"chan", 10, 12, 50, true).unwrap()), [12, 11, 10]);
    assert_eq!(seqs(&log.read_seq_range(b"chan", 98, u64::MAX, 10, false).unwrap()), [98, 99, 100]);
    assert_eq!(seqs(&log.read_seq_range(b"chan", 0, u64::MAX, 2, true).unwrap()), [100, 99]);
    assert_eq!(seqs(&log.read_seq_range(b"chan", 0, 2, 10, true).unwrap()), [2, 1]);
    assert!(log.read_seq_range(b"chan", 20, 10, 5, false).unwrap().is_empty(), "from > to");
    assert!(log.read_seq_range(b"chan", 10, 20, 0, true).unwrap().is_empty(), "limit 0");
    assert!(log.read_seq_range(b"chan", 101, 200, 5, false).unwrap().is_empty());
    assert!(log.read_seq_range(b"other", 0, u64::MAX, 5, false).unwrap().is_empty(), "records without seq are not indexed");
    assert!(log.read_seq_range(b"cha", 0, u64::MAX, 5, true).unwrap().is_empty());
    let hit = log.read_seq_range(b"chan", 42, 42, 1, false).unwrap();
    assert_eq!((hit[0].0, hit[0].1.body.as_slice()), (42, b"chan:42".as_slice()));
    assert_eq!(hit[0].1, stream[41], "the seq index points at the same record");
}

fn snapshots<L: EventLog>(log: &L) {
    let s = |p, b: &[u8]| Snapshot { position: Position(p), state: b.to_vec() };
    assert!(log.get_snapshot(b"x").unwrap().is_none());
    log.put_snapshot(b"x", &s(5, b"five")).unwrap();
    log.put_snapshot(b"x", &s(3, b"three")).unwrap();
    assert_eq!(log.get_snapshot(b"x").unwrap(), Some(s(5, b"five")), "an older snapshot is ignored");
    log.put_snapshot(b"x", &s(5, b"five again")).unwrap();
    assert_eq!(log.get_snapshot(b"x").unwrap(), Some(s(5, b"five again")), "the same position replaces");
    log.put_snapshot(b"x", &s(9, b"nine")).unwrap();
    log.put_snapshot(b"y", &s(1, b"")).unwrap();
    log.put_snapshot(b"a", &s(2, b"two")).unwrap();
    assert_eq!(log.get_snapshot(b"y").unwrap(), Some(s(1, b"")));
    let mut seen = Vec::new();
    log.scan_snapshots(&mut |k, snap| {
        seen.push((k.to_vec(), snap.position.0));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen, [(b"a".to_vec(), 2), (b"x".to_vec(), 9), (b"y".to_vec(), 1)], "in stream-key order");
    let mut count = 0;
    log.scan_snapshots(&mut |_, _| {
        count += 1;
        ControlFlow::Break(())
    })
    .unwrap();
    assert_eq!(count, 1);
}

/// A rewrite replaces a stored body atomically with an append, everywhere it can be read, and never
/// changes a digest or chain link; a wrong digest or a position beyond the head refuses the append.
fn rewrites_keep_position_and_chain<L: EventLog>(log: &L) {
    let first = log.append(vec![msg("rw", 1), msg("rw", 2)]).unwrap().first;
    let before = log.read_range(first, 2).unwrap();
    let head = log.head();
    let new_body = b"erased".to_vec();
    let stale = Rewrite { position: first, digest: sha256(b"something else"), body: new_body.clone() };
    assert!(matches!(log.submit_with_rewrites(vec![rec("rw-audit", 1)], vec![stale]).wait(), Err(StorageError::Invalid(_))));
    let beyond = Rewrite { position: head.0.next(), digest: before[0].digest, body: new_body.clone() };
    assert!(matches!(log.submit_with_rewrites(vec![rec("rw-audit", 1)], vec![beyond]).wait(), Err(StorageError::Invalid(_))));
    assert_eq!(log.head(), head, "a refused rewrite appends nothing");
    assert_eq!(log.read_range(first, 2).unwrap(), before);

    let ok = Rewrite { position: first, digest: before[0].digest, body: new_body.clone() };
    let c = log.submit_with_rewrites(vec![rec("rw-audit", 2)], vec![ok]).wait().unwrap();
    assert_eq!(c.first, head.0.next());
    let after = log.read_range(first, 2).unwrap();
    assert_eq!(after[0], StoredRecord { body: new_body.clone(), ..before[0].clone() });
    assert_eq!(after[1], before[1]);
    assert_eq!(log.read_seq_range(b"rw", 1, 1, 1, false).unwrap()[0].1.body, new_body);
    assert_eq!(log.read_stream(b"rw", Position::ZERO, 1).unwrap()[0].body, new_body);
    // The chain continues from the unchanged links.
    let appended = log.read_range(c.first, 1).unwrap();
    assert_eq!(appended[0].prev_hash, head.1);
    log.purge_superseded(first, c.first).unwrap();
    assert_eq!(log.read_range(first, 1).unwrap()[0].body, new_body);
}

fn invalid_appends_change_nothing<L: EventLog>(log: &L) {
    let head = log.head();
    assert!(matches!(log.append(vec![]), Err(StorageError::Invalid(_))));
    // One bad record refuses the whole batch, the good records with it.
    let bad_stream = NewRecord { stream: vec![b'a', 0xFF], ..rec("bad", 1) };
    assert!(matches!(log.append(vec![rec("good", 1), bad_stream]), Err(StorageError::Invalid(_))));
    assert!(matches!(log.append(vec![NewRecord { stream: vec![], ..rec("x", 1) }]), Err(StorageError::Invalid(_))));
    assert_eq!(log.head(), head);
    assert!(log.read_stream(b"good", Position::ZERO, 10).unwrap().is_empty());
    // A valid append right after is unaffected.
    assert_eq!(log.append(vec![rec("good", 2)]).unwrap().first, head.0.next());
}

fn one_caller_keeps_submission_order<L: EventLog>(log: &L) {
    let base = log.head().0 .0;
    let commits: Vec<Commit> = (0..100).map(|n| log.submit(vec![rec("pipelined", n), rec("pipelined", n)])).collect();
    for (i, c) in commits.into_iter().enumerate() {
        let c = c.wait().unwrap();
        assert_eq!((c.first.0, c.last.0), (base + 2 * i as u64 + 1, base + 2 * i as u64 + 2));
    }
}

fn submitted_before_drop_are_finished<L: EventLog>(open: &dyn Fn() -> L) {
    let log = open();
    let base = log.head().0 .0;
    let commits: Vec<Commit> = (0..50).map(|n| log.submit(vec![rec("late", n)])).collect();
    drop(log);
    for (i, c) in commits.into_iter().enumerate() {
        assert_eq!(c.wait().unwrap().first, Position(base + i as u64 + 1));
    }
    let log = open();
    assert_eq!(log.head().0, Position(base + 50));
    assert_eq!(log.read_stream(b"late", Position::ZERO, 100).unwrap().len(), 50);
}

fn concurrent_appends_are_dense_and_ordered<L: EventLog>(log: &L) {
    const THREADS: u64 = 16;
    const EACH: u64 = 500;
    let base = log.head().0 .0;
    let mut positions: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    (0..EACH)
                        .map(|n| {
                            let c = log.append(vec![rec(&format!("t{t}"), n)]).unwrap();
                            assert_eq!(c.first, c.last);
                            c.first.0
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                let mine = h.join().unwrap();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "a thread's appends are committed in its order");
                mine
            })
            .collect()
    });
    positions.sort_unstable();
    assert_eq!(positions, (base + 1..=base + THREADS * EACH).collect::<Vec<_>>(), "unique and dense");
    assert_eq!(log.head().0, Position(base + THREADS * EACH));
    for t in 0..THREADS {
        let stream = log.read_stream(format!("t{t}").as_bytes(), Position::ZERO, 1000).unwrap();
        let expected: Vec<String> = (0..EACH).map(|n| format!("t{t}:{n}")).collect();
        assert_eq!(bodies(&stream), expected);
    }
}

fn everything_survives_reopen<L: EventLog>(log: &L) {
    let (head, hash) = log.head();
    assert!(head.0 > 8000);
    let mut prev = ChainHash::GENESIS;
    let mut n = 0;
    log.scan(Position(1), &mut |r| {
        n += 1;
        assert_eq!(r.position, Position(n));
        assert_eq!(r.prev_hash, prev);
        prev = r.hash();
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!((Position(n), prev), (head, hash), "the recovered head is the end of the chain");
    assert_eq!(seqs(&log.read_seq_range(b"chan", 10, 20, 5, true).unwrap()), [20, 19, 18, 17, 16]);
    assert_eq!(log.get_snapshot(b"x").unwrap().unwrap().state, b"nine");
    // Appends continue the chain.
    let c = log.append(vec![rec("after-reopen", 1)]).unwrap();
    assert_eq!(c.first, head.next());
    assert_eq!(log.read_range(c.first, 1).unwrap()[0].prev_hash, hash);
}

#[test]
fn memlog_conforms() {
    let log = MemLog::new();
    conformance(&|| log.clone());
}

#[test]
fn rockslog_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&|| RocksLog::open(dir.path(), RocksOptions::default()).unwrap());
}

#[test]
fn rockslog_conforms_with_os_buffered_and_tiny_groups() {
    // Small group limits force appends to be split across groups and carried over.
    let dir = tempfile::tempdir().unwrap();
    let options = RocksOptions { durability: Durability::OsBuffered, max_group_records: 3, max_group_bytes: 4096, ..RocksOptions::default() };
    conformance(&|| RocksLog::open(dir.path(), options.clone()).unwrap());
}

// ---------------------------------------------------------------------------------------------------
// RocksDB only
// ---------------------------------------------------------------------------------------------------

fn open_rocks(path: &Path) -> RocksLog {
    RocksLog::open(path, RocksOptions::default()).unwrap()
}

/// Appends `threads × each` single-record batches concurrently.
fn hammer(log: &RocksLog, threads: u64, each: u64) {
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for n in 0..each {
                    log.append(vec![rec(&format!("t{t}"), n)]).unwrap();
                }
            });
        }
    });
}

/// Writes `value` under `key` in column family `cf` of the (closed) log at `path`, bypassing the log.
fn raw_put(path: &Path, cf: &str, key: &[u8], value: &[u8]) {
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, crate::rocks::schema::ALL).unwrap();
    db.put_cf(db.cf_handle(cf).unwrap(), key, value).unwrap();
}

#[test]
fn concurrent_appends_share_commit_groups() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_rocks(dir.path());
    hammer(&log, 32, 100);
    let stats = log.stats();
    assert_eq!(stats.records, 3200);
    // Each of 32 callers waits for its own commit, so while one group syncs the others queue up
    // (observed on the 2-core CI machine: about 20 records per group). Half is a wide margin.
    assert!(stats.groups < stats.records / 2, "concurrent appenders must share write batches: {stats:?}");
    assert!(stats.syncs >= 1 && stats.syncs <= stats.groups, "one fsync covers one or more groups: {stats:?}");
    assert_eq!(stats.group_records.count(), stats.groups, "one group-size observation per group");
    assert_eq!(stats.group_records.sum, stats.records, "group sizes add up to the records");
    assert_eq!(stats.write_micros.count(), stats.groups, "one latency observation per group");
    assert_eq!(stats.pending, 0, "every submitted record was answered");
}

#[test]
fn a_checkpoint_is_a_consistent_prefix_taken_while_appending() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_rocks(&dir.path().join("live"));
    log.append(vec![rec("a", 1), rec("a", 2)]).unwrap();
    log.put_snapshot(b"a", &Snapshot { position: Position(2), state: b"two".to_vec() }).unwrap();
    let copy_dir = dir.path().join("copy");
    let head = std::thread::scope(|s| {
        let appender = s.spawn(|| hammer(&log, 4, 50));
        let head = log.checkpoint(&copy_dir).unwrap();
        appender.join().unwrap();
        head
    });
    assert!(head.0 >= Position(2) && head.0 <= log.head().0, "{head:?}");
    let copy = RocksLog::open_read_only(&copy_dir).unwrap();
    assert_eq!(copy.head(), head);
    // Every record of the copy is the live log's record at that position, so the chains agree.
    let n = usize::try_from(head.0 .0).unwrap();
    assert_eq!(copy.read_range(Position(1), n + 10).unwrap(), log.read_range(Position(1), n).unwrap());
    assert_eq!(copy.get_snapshot(b"a").unwrap().unwrap().state, b"two");
    // The target must be new.
    assert!(matches!(log.checkpoint(&copy_dir), Err(StorageError::Invalid(_))));
}

#[test]
fn group_limits_are_respected() {
    let dir = tempfile::tempdir().unwrap();
    let log = RocksLog::open(dir.path(), RocksOptions { max_group_records: 1, ..RocksOptions::default() }).unwrap();
    hammer(&log, 8, 50);
    let stats = log.stats();
    assert_eq!((stats.groups, stats.records), (400, 400), "one record per group");
    // An append larger than the limit is still written, alone and atomically.
    let c = log.append((0..5).map(|n| rec("big", n)).collect()).unwrap();
    assert_eq!((c.first.0, c.last.0), (401, 405));
    assert_eq!(log.stats().groups, 401);
}

/// One caller at a time finds the log idle every time: each append is its own group, written with a
/// synced write by the committer, one fsync each (the syncer's shared fsyncs are for concurrent load).
#[test]
fn a_lone_appender_gets_one_fsync_per_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_rocks(dir.path());
    hammer(&log, 1, 50);
    let stats = log.stats();
    assert_eq!((stats.records, stats.groups, stats.syncs), (50, 50, 50), "{stats:?}");
    assert_eq!(stats.pending, 0);
}

#[test]
fn os_buffered_never_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = RocksLog::open(dir.path(), RocksOptions { durability: Durability::OsBuffered, ..RocksOptions::default() }).unwrap();
    hammer(&log, 4, 25);
    let stats = log.stats();
    assert_eq!(stats.records, 100);
    assert!(stats.groups > 0);
    assert_eq!(stats.syncs, 0);
}

/// Appends two records, has `inject` make the next group fail, and checks that the failing append
/// moves nothing and that the log refuses appends from then on; `stopped` checks more on the stopped
/// log. Returns the head before the failure; the log is closed.
fn fail_and_stop(path: &Path, inject: impl Fn(&RocksLog), stopped: impl Fn(&RocksLog)) -> (Position, ChainHash) {
    let log = open_rocks(path);
    log.append(vec![rec("s", 1), rec("s", 2)]).unwrap();
    let head = log.head();
    inject(&log);
    assert!(matches!(log.append(vec![msg("s", 3)]), Err(StorageError::Backend(_))));
    assert_eq!(log.head(), head, "the head does not move");
    assert_eq!(log.read_stream(b"s", Position::ZERO, 10).unwrap().len(), 2);
    assert!(log.read_seq_range(b"s", 3, 3, 1, false).unwrap().is_empty());
    assert_eq!(log.read_range(Position(1), 10).unwrap().len(), 2, "scans stop at the head");
    stopped(&log);
    // Fail-stop: nothing more is accepted until the log is reopened.
    assert!(matches!(log.append(vec![rec("s", 4)]), Err(StorageError::Backend(_))));
    assert_eq!(log.head(), head);
    head
}

/// Reopens the log at `path` and checks that it goes on from its last record, chained to it; returns
/// the head it found.
fn reopen_goes_on(path: &Path) -> (Position, ChainHash) {
    let log = open_rocks(path);
    let before = log.head();
    let c = log.append(vec![rec("s", 5)]).unwrap();
    assert_eq!(c.first, before.0.next(), "positions are not skipped");
    assert_eq!(log.read_range(c.first, 1).unwrap()[0].prev_hash, before.1);
    before
}

#[test]
fn a_failed_write_fails_its_group_and_stops_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let head = fail_and_stop(dir.path(), RocksLog::fail_next_write, |_| {});
    assert_eq!(reopen_goes_on(dir.path()), head, "nothing of the failed group was written");
}

#[test]
fn a_failed_sync_fails_its_group_and_stops_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let head = fail_and_stop(dir.path(), RocksLog::fail_next_sync, |log| {
        // The batch reached RocksDB unsynced; nothing about it is visible.
        assert_eq!(log.entries(crate::rocks::schema::LOG).len(), 3);
    });
    // An append that failed may or may not be there after a restart (its bytes reached the WAL file);
    // either way the log is whole and goes on from its last record.
    assert!(reopen_goes_on(dir.path()).0 >= head.0);
}

#[test]
fn a_written_group_is_invisible_until_published() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_rocks(dir.path());
    log.append(vec![msg("s", 1)]).unwrap();
    let head = log.head();
    // Let go even when an assertion below fails, or closing the log would wait for ever.
    struct Hold<'a>(&'a RocksLog);
    impl Drop for Hold<'_> {
        fn drop(&mut self) {
            self.0.hold_publish(false);
        }
    }
    log.hold_publish(true);
    let hold = Hold(&log);
    let pending = log.submit(vec![msg("s", 2)]);
    // Wait until the committer has written the batch (it then waits to publish).
    let started = std::time::Instant::now();
    while log.entries(crate::rocks::schema::LOG).len() < 2 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the batch was never written");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(log.head(), head);
    assert_eq!(log.read_range(Position(1), 10).unwrap().len(), 1, "a scan does not see it");
    assert_eq!(log.read_stream(b"s", Position::ZERO, 10).unwrap().len(), 1, "nor a stream read");
    assert_eq!(log.read_seq_range(b"s", 1, 10, 10, false).unwrap().len(), 1, "nor a seq read");
    drop(hold);
    assert_eq!(pending.wait().unwrap().first, Position(2));
    assert_eq!(log.read_range(Position(1), 10).unwrap().len(), 2);
    assert_eq!(log.read_seq_range(b"s", 1, 10, 10, false).unwrap().len(), 2);
}

#[test]
fn close_refuses_later_writes_but_keeps_reads() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_rocks(dir.path());
    let pending = log.submit(vec![rec("s", 1)]);
    log.close();
    assert_eq!(pending.wait().unwrap().first, Position(1), "what was queued is finished");
    assert!(matches!(log.append(vec![rec("s", 2)]), Err(StorageError::Closed)));
    let snap = Snapshot { position: Position(1), state: vec![] };
    assert!(matches!(log.put_snapshot(b"s", &snap), Err(StorageError::Closed)));
    assert_eq!(log.read_stream(b"s", Position::ZERO, 10).unwrap().len(), 1);
    assert_eq!(log.head().0, Position(1));
    log.close();
}

/// `close` with groups queued, being written and being synced: every one of them is synced and
/// answered (the syncer hands its last groups back to a committer that is already closing).
#[test]
fn close_answers_every_append_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_rocks(dir.path());
    let pending: Vec<_> = (1..=3000).map(|n| log.submit(vec![rec("s", n)])).collect();
    log.close();
    for (n, commit) in (1..).zip(pending) {
        assert_eq!(commit.wait().unwrap().first, Position(n), "answered, in order");
    }
    let stats = log.stats();
    assert_eq!((stats.records, stats.pending), (3000, 0), "{stats:?}");
    assert!(stats.syncs >= 1 && stats.syncs <= stats.groups, "{stats:?}");
    drop(log);
    assert_eq!(open_rocks(dir.path()).head().0, Position(3000));
}

#[test]
fn one_writer_per_directory_but_read_only_opens_alongside() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_rocks(dir.path());
    log.append(vec![msg("chan", 1), msg("chan", 2)]).unwrap();
    log.put_snapshot(b"chan", &Snapshot { position: Position(2), state: b"st".to_vec() }).unwrap();
    assert!(matches!(RocksLog::open(dir.path(), RocksOptions::default()), Err(StorageError::Backend(_))), "RocksDB's LOCK");

    let reader = RocksLog::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.head(), log.head(), "sees unflushed writes through the WAL");
    assert_eq!(reader.read_range(Position(1), 10).unwrap(), log.read_range(Position(1), 10).unwrap());
    assert_eq!(seqs(&reader.read_seq_range(b"chan", 1, 2, 10, true).unwrap()), [2, 1]);
    assert_eq!(reader.get_snapshot(b"chan").unwrap().unwrap().state, b"st");
    assert!(matches!(reader.append(vec![rec("chan", 3)]), Err(StorageError::Invalid(_))));
    assert!(matches!(reader.put_snapshot(b"chan", &Snapshot { position: Position(9), state: vec![] }), Err(StorageError::Invalid(_))));
    // No writer counters; the records the writer's indexer had not written yet when the reader opened
    // are indexed in the reader's memory (all of them or none, depending on timing).
    assert_eq!(reader.stats(), LogStats { unindexed: reader.unindexed(), ..LogStats::default() });
    assert!([0, 2].contains(&reader.unindexed()));

    // The writer is unaffected by the reader.
    log.append(vec![rec("chan", 3)]).unwrap();
    drop(reader);
    drop(log);
    assert_eq!(RocksLog::open_read_only(dir.path()).unwrap().head().0, Position(3));
    assert!(matches!(RocksLog::open_read_only(&dir.path().join("missing")), Err(StorageError::Backend(_))));
}

#[test]
fn commit_is_a_future() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_rocks(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (a, b) = rt.block_on(async { (log.submit(vec![rec("s", 1)]).await, log.submit(vec![rec("s", 2)]).await) });
    assert_eq!((a.unwrap().first, b.unwrap().first), (Position(1), Position(2)));
}

#[test]
fn a_corrupt_head_record_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    open_rocks(dir.path()).append(vec![rec("s", 1), rec("s", 2)]).unwrap();
    raw_put(dir.path(), "log", &2u64.to_be_bytes(), &[9, 1, 2]);
    assert!(matches!(RocksLog::open(dir.path(), RocksOptions::default()), Err(StorageError::Corrupt { position: Position(2), .. })));
    assert!(matches!(RocksLog::open_read_only(dir.path()), Err(StorageError::Corrupt { .. })));
}

#[test]
fn corrupt_records_and_index_entries_are_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open_rocks(dir.path());
        log.append(vec![msg("s", 1), msg("s", 2), msg("s", 3)]).unwrap();
        log.put_snapshot(b"good", &Snapshot { position: Position(3), state: vec![1] }).unwrap();
    }
    let short = {
        let mut v = vec![1u8];
        v.extend_from_slice(&[0; 40]);
        v
    };
    raw_put(dir.path(), "log", &1u64.to_be_bytes(), &short);
    raw_put(dir.path(), "log", &2u64.to_be_bytes(), &[]);
    raw_put(dir.path(), "stream_seq", &[b's', 0xFF, 0, 0, 0, 0, 0, 0, 0, 3], b"xyz");
    raw_put(dir.path(), "snapshot", b"bad", b"abc");
    let corrupt_at = |r: Result<_>, p: u64| matches!(r, Err(StorageError::Corrupt { position, .. }) if position == Position(p));

    let log = open_rocks(dir.path());
    assert_eq!(log.head().0, Position(3), "the head record is intact");
    assert!(corrupt_at(log.read_range(Position(1), 10).map(drop), 1));
    assert!(corrupt_at(log.scan(Position(2), &mut |_| ControlFlow::Continue(())), 2));
    assert_eq!(log.read_range(Position(3), 10).unwrap().len(), 1);
    assert!(corrupt_at(log.read_stream(b"s", Position::ZERO, 10).map(drop), 1));
    assert!(matches!(log.read_seq_range(b"s", 3, 3, 1, false), Err(StorageError::Corrupt { what: "index entry", .. })));
    assert!(matches!(log.get_snapshot(b"bad"), Err(StorageError::Corrupt { what: "snapshot", .. })));
    assert!(log.get_snapshot(b"good").unwrap().is_some());
    assert!(matches!(log.scan_snapshots(&mut |_, _| ControlFlow::Continue(())), Err(StorageError::Corrupt { .. })));
}

// ---------------------------------------------------------------------------------------------------
// The index tail (RocksDB only): entries held in memory, written in blocks, re-read after a crash
// ---------------------------------------------------------------------------------------------------

/// Asserts that every stream and seq read of `log` answers as `reference` does, for every
/// bound up to `max` and a few limits.
fn assert_same_reads(log: &dyn EventLog, reference: &dyn EventLog, streams: &[&str], max: u64) {
    for s in streams.iter().map(|s| s.as_bytes()) {
        for bound in 0..=max + 1 {
            for limit in [1, 2, 7, 1000] {
                let p = Position(bound);
                assert_eq!(log.read_stream(s, p, limit).unwrap(), reference.read_stream(s, p, limit).unwrap(), "read_stream after {bound} limit {limit}");
                assert_eq!(log.read_stream_back(s, p, limit).unwrap(), reference.read_stream_back(s, p, limit).unwrap(), "back before {bound} limit {limit}");
                for to in [bound, bound + 3, u64::MAX] {
                    for newest in [false, true] {
                        assert_eq!(
                            log.read_seq_range(s, bound, to, limit, newest).unwrap(),
                            reference.read_seq_range(s, bound, to, limit, newest).unwrap(),
                            "seq range {bound}..={to} limit {limit} newest first {newest}"
                        );
                    }
                }
            }
        }
    }
}

/// Appends the same batch to both logs.
fn both(a: &dyn EventLog, b: &dyn EventLog, batch: Vec<NewRecord>) {
    assert_eq!(a.append(batch.clone()).unwrap(), b.append(batch).unwrap());
}

#[test]
fn reads_merge_index_blocks_with_the_tail_and_survive_losing_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let reference = MemLog::new();
    let streams = ["a", "b", "c"];
    let mut seq = [0u64; 3];
    let mut batch_of = |n: usize, round: u64| -> Vec<NewRecord> {
        (0..n)
            .map(|i| {
                let s = (i + round as usize) % 3;
                if i % 4 == 3 {
                    rec(streams[s], round * 100 + i as u64)
                } else {
                    seq[s] += 1;
                    msg(streams[s], seq[s])
                }
            })
            .collect()
    };
    {
        let log = open_rocks(dir.path());
        // Blocks of several generations, then a tail on top of them.
        for round in 0..3 {
            both(&log, &reference, batch_of(7, round));
            log.flush_index();
            assert_eq!(log.unindexed(), 0);
        }
        both(&log, &reference, batch_of(5, 3));
        assert_same_reads(&log, &reference, &streams, log.head().0 .0);
        // The process dies: what the indexer has not written is lost with it.
        log.hold_index();
        both(&log, &reference, batch_of(9, 4));
        both(&log, &reference, batch_of(4, 5));
        assert!(log.unindexed() >= 13);
        assert_same_reads(&log, &reference, &streams, log.head().0 .0);
    }
    // Re-opened, the records after the watermark are indexed again, first in memory (a read-only open
    // has no indexer, so its tail stays as recovered), then in blocks.
    let read_only = RocksLog::open_read_only(dir.path()).unwrap();
    assert!(read_only.unindexed() >= 13, "the lost entries were re-read from the log");
    let head = read_only.head().0 .0;
    assert_same_reads(&read_only, &reference, &streams, head);
    let log = open_rocks(dir.path());
    assert_same_reads(&log, &reference, &streams, head);
    assert_same_reads(&read_only, &reference, &streams, head);
    drop(read_only);
    log.flush_index();
    assert_eq!(log.unindexed(), 0);
    log.assert_blocks_disjoint();
    assert_same_reads(&log, &reference, &streams, log.head().0 .0);
    both(&log, &reference, batch_of(6, 6));
    drop(log);
    let log = open_rocks(dir.path());
    assert_eq!(log.unindexed(), 0, "a clean close leaves nothing to re-read");
    assert_same_reads(&log, &reference, &streams, log.head().0 .0);
}

#[test]
fn a_busy_stream_is_split_into_bounded_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let reference = MemLog::new();
    let log = open_rocks(dir.path());
    both(&log, &reference, (1..=2500).map(|s| msg("busy", s)).collect());
    log.flush_index();
    let blocks = log.entries("stream_seq").into_iter().filter(|(k, _)| k.starts_with(b"busy\xFF")).count();
    assert_eq!(blocks, 3, "2,500 seqs in blocks of at most 1,024");
    log.assert_blocks_disjoint();
    for (from, to) in [(1, 2500), (1000, 1030), (1024, 1025), (2048, 2049), (2400, 9999)] {
        for newest in [false, true] {
            assert_eq!(log.read_seq_range(b"busy", from, to, 50, newest).unwrap(), reference.read_seq_range(b"busy", from, to, 50, newest).unwrap());
        }
    }
    for p in [0, 1023, 1024, 1025, 2047, 2048, 2499, 2500] {
        assert_eq!(log.read_stream(b"busy", Position(p), 5).unwrap(), reference.read_stream(b"busy", Position(p), 5).unwrap());
        assert_eq!(log.read_stream_back(b"busy", Position(p), 5).unwrap(), reference.read_stream_back(b"busy", Position(p), 5).unwrap());
    }
}

#[test]
fn a_log_written_one_index_key_per_record_opens_and_continues() {
    // The layout before index blocks: format-1 records and one index key per entry, no watermark.
    let dir = tempfile::tempdir().unwrap();
    let reference = MemLog::new();
    let old: Vec<NewRecord> = vec![msg("a", 1), rec("a", 2), msg("b", 1), msg("a", 2), msg("a", 3)];
    reference.append(old.clone()).unwrap();
    {
        let cfs = crate::rocks::schema::ALL.iter().map(|n| rocksdb::ColumnFamilyDescriptor::new(*n, crate::rocks::cf_options(n)));
        let db = rocksdb::DB::open_cf_descriptors(&crate::rocks::db_options(), dir.path(), cfs).unwrap();
        let cf = |n: &str| db.cf_handle(n).unwrap();
        let mut hash = ChainHash::GENESIS;
        for (i, r) in old.iter().enumerate() {
            let p = Position(i as u64 + 1);
            let be = p.0.to_be_bytes();
            let mut value = vec![1u8];
            value.extend_from_slice(&hash.0);
            value.extend_from_slice(&r.digest.0);
            value.extend_from_slice(&r.body);
            db.put_cf(cf("log"), be, value).unwrap();
            hash = link(&hash, p, &r.digest);
            let key = |suffix: &[u8]| [r.stream.as_slice(), &[0xFF], suffix].concat();
            db.put_cf(cf("stream_pos"), key(&be), []).unwrap();
            if let Some(s) = r.seq {
                db.put_cf(cf("stream_seq"), key(&s.to_be_bytes()), be).unwrap();
            }
        }
    }
    let streams = ["a", "b"];
    {
        let log = open_rocks(dir.path());
        assert_eq!(log.unindexed(), 0, "the old indexes are complete");
        assert_same_reads(&log, &reference, &streams, 6);
        // New records go through the tail, and a crash before any index write loses only the tail.
        log.hold_index();
        both(&log, &reference, vec![msg("a", 4), msg("a", 5), msg("b", 2)]);
        assert_same_reads(&log, &reference, &streams, 9);
    }
    let read_only = RocksLog::open_read_only(dir.path()).unwrap();
    assert_eq!(read_only.unindexed(), 3, "only the new records are re-read");
    assert_same_reads(&read_only, &reference, &streams, 9);
    drop(read_only);
    let log = open_rocks(dir.path());
    assert_same_reads(&log, &reference, &streams, 9);
    assert_eq!(crate::EventLog::head(&log), reference.head());
    log.flush_index();
    assert_same_reads(&log, &reference, &streams, 9);
}

#[test]
fn the_index_tail_is_bounded_and_a_full_tail_does_not_hang_close() {
    let dir = tempfile::tempdir().unwrap();
    let batch = |stream: &str, b: u64| -> Vec<NewRecord> { (0..100).map(|i| rec(stream, b * 100 + i)).collect() };
    let log = RocksLog::open(dir.path(), RocksOptions { max_unindexed_records: 1000, ..RocksOptions::default() }).unwrap();
    log.hold_index();
    for b in 0..10 {
        log.append(batch("full", b)).unwrap();
    }
    assert_eq!(log.unindexed(), 1000);
    // The tail is full: further appends wait for the indexer.
    let commits: Vec<_> = (10..30).map(|b| log.submit(batch("full", b))).collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(log.head().0, Position(1000), "appends wait while the tail is full");
    assert_eq!(log.unindexed(), 1000);
    log.release_index();
    for c in commits {
        c.wait().unwrap();
    }
    assert_eq!(log.head().0, Position(3000));
    assert_eq!(log.read_stream(b"full", Position::ZERO, 5000).unwrap().len(), 3000);

    // Full again, and the indexer cannot write: close still returns, having written every append.
    log.flush_index();
    log.hold_index();
    for b in 0..10 {
        log.append(batch("late", b)).unwrap();
    }
    let late: Vec<_> = (10..20).map(|b| log.submit(batch("late", b))).collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(log.head().0, Position(4000));
    log.close();
    for c in late {
        c.wait().unwrap();
    }
    drop(log);
    let log = open_rocks(dir.path());
    assert_eq!(log.head().0, Position(5000));
    assert_eq!(log.read_stream(b"late", Position::ZERO, 5000).unwrap().len(), 2000, "re-read from the log");
}

#[test]
fn data_written_with_idempotency_entries_opens_and_reads() {
    // Earlier versions kept an idempotency index: records carried a key among their index entries
    // (flag bit 1) and the indexer wrote it to the `stream_dedupe` family, which for a while had a
    // hash memtable keyed by a whole-key prefix extractor. Such a directory opens and reads, and
    // records with a key after the watermark are re-read into the tail like any other.
    let dir = tempfile::tempdir().unwrap();
    let reference = MemLog::new();
    {
        let log = open_rocks(dir.path());
        both(&log, &reference, vec![msg("s", 1), msg("s", 2)]);
        log.flush_index();
    }
    let late = [msg("s", 3), rec("t", 1), msg("s", 4)];
    reference.append(late.to_vec()).unwrap();
    {
        fn whole_key(key: &[u8]) -> &[u8] {
            key
        }
        let mut db_options = rocksdb::Options::default();
        db_options.set_allow_concurrent_memtable_write(false);
        let cfs = crate::rocks::schema::ALL.iter().map(|name| {
            let mut o = crate::rocks::cf_options(name);
            if *name == "stream_dedupe" {
                o.set_prefix_extractor(rocksdb::SliceTransform::create("rookery.whole_key", whole_key, None));
                o.set_memtable_factory(rocksdb::MemtableFactory::HashLinkList { bucket_count: 1 << 10 });
            }
            rocksdb::ColumnFamilyDescriptor::new(*name, o)
        });
        let db = rocksdb::DB::open_cf_descriptors(&db_options, dir.path(), cfs).unwrap();
        let dedupe = db.cf_handle("stream_dedupe").unwrap();
        db.put_cf(dedupe, b"s\xFFin-a-table-file", 1u64.to_be_bytes()).unwrap();
        db.flush_cf(dedupe).unwrap();
        db.put_cf(dedupe, b"s\xFFin-the-wal", 2u64.to_be_bytes()).unwrap();
        // Records after the watermark in the former layout, the key after the seq.
        let mut prev = reference.read_range(Position(2), 1).unwrap()[0].hash();
        for (i, r) in late.iter().enumerate() {
            let position = Position(3 + i as u64);
            let mut value = vec![2u8];
            value.extend_from_slice(&prev.0);
            value.extend_from_slice(&r.digest.0);
            value.extend_from_slice(&(r.stream.len() as u32).to_be_bytes());
            value.extend_from_slice(&r.stream);
            value.push(u8::from(r.seq.is_some()) | 2);
            if let Some(seq) = r.seq {
                value.extend_from_slice(&seq.to_be_bytes());
            }
            let key = format!("key-{i}");
            value.extend_from_slice(&(key.len() as u32).to_be_bytes());
            value.extend_from_slice(key.as_bytes());
            value.extend_from_slice(&r.body);
            db.put_cf(db.cf_handle("log").unwrap(), position.0.to_be_bytes(), value).unwrap();
            prev = link(&prev, position, &r.digest);
        }
    }
    let read_only = RocksLog::open_read_only(dir.path()).unwrap();
    assert_eq!(read_only.unindexed(), 3, "the records after the watermark are re-read");
    assert_same_reads(&read_only, &reference, &["s", "t"], 5);
    assert_eq!(read_only.read_range(Position(1), 10).unwrap(), reference.read_range(Position(1), 10).unwrap());
    drop(read_only);
    let log = open_rocks(dir.path());
    assert_eq!(crate::EventLog::head(&log), reference.head(), "the chain goes through the former records");
    assert!(log.entries("stream_dedupe").is_empty(), "the former index is dropped");
    both(&log, &reference, vec![msg("s", 5)]);
    log.flush_index();
    log.flush_memtables();
    assert_same_reads(&log, &reference, &["s", "t"], 6);
    drop(log);
    for log in [open_rocks(dir.path()), RocksLog::open_read_only(dir.path()).unwrap()] {
        assert_same_reads(&log, &reference, &["s", "t"], 6);
    }
}

/// Below the disk reserve an append is refused before anything is written, the log stays usable,
/// the stats say so, and appends succeed again once space returns.
#[test]
fn a_full_disk_refuses_appends_cleanly_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("free");
    std::fs::write(&probe, "1000000").unwrap();
    let data = dir.path().join("log");
    let options = RocksOptions { disk_reserve_bytes: 500_000, disk_free_probe: Some(probe.clone()), ..RocksOptions::default() };
    let log = RocksLog::open(&data, options).unwrap();
    log.append(vec![rec("s", 1)]).unwrap();
    assert!(!log.stats().disk_full);

    std::fs::write(&probe, "1000").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(60));
    for n in 2..5 {
        match log.append(vec![rec("s", n)]) {
            Err(StorageError::DiskFull(msg)) => assert!(msg.contains("reserve"), "{msg}"),
            other => panic!("expected a disk-full refusal, got {other:?}"),
        }
    }
    let stats = log.stats();
    assert!(stats.disk_full && !stats.failed && stats.disk_free == 1000, "{stats:?}");
    assert_eq!(log.head().0, Position(1), "nothing written");

    std::fs::write(&probe, "1000000").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(60));
    assert!(!log.stats().disk_full, "readiness comes back without a write");
    let c = log.append(vec![rec("s", 2)]).unwrap();
    assert_eq!(c.first, Position(2), "the refused appends took no positions");
    drop(log);
    let reopened = RocksLog::open(&data, RocksOptions::default()).unwrap();
    assert_eq!(reopened.head().0, Position(2));
}
