//! One conformance suite, run against both engines.

use std::ops::ControlFlow;

use rookery_events::{link, sha256, ChainHash, Position};

use crate::*;

fn rec(stream: &str, n: u64) -> NewRecord {
    let body = format!("{stream}:{n}").into_bytes();
    NewRecord { stream: stream.as_bytes().to_vec(), digest: sha256(&body), body, seq: None, dedupe: None }
}

fn msg(stream: &str, seq: u64, dedupe: Option<&str>) -> NewRecord {
    NewRecord { seq: Some(seq), dedupe: dedupe.map(|d| d.as_bytes().to_vec()), ..rec(stream, seq) }
}

/// Runs every check; `open` opens the same store again (after the previous handle is dropped).
fn conformance<L: EventLog>(open: &dyn Fn() -> L) {
    positions_are_dense_and_chained(&open());
    reads_by_stream_seq_and_dedupe(open());
    snapshots(&open());
    invalid_appends_change_nothing(&open());
    concurrent_appends_keep_per_thread_order(open);
    // Everything above is still there after a reopen.
    let log = open();
    let (head, hash) = log.head();
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
    assert_eq!((Position(n), prev), (head, hash));
}

fn positions_are_dense_and_chained<L: EventLog>(log: &L) {
    assert_eq!(log.head(), (Position::ZERO, ChainHash::GENESIS));
    let a = log.append(vec![rec("s1", 1), rec("s2", 1)]).unwrap();
    let b = log.append(vec![rec("s1", 2)]).unwrap();
    assert_eq!((a.first, a.last, b.first, b.last), (Position(1), Position(2), Position(3), Position(3)));
    let all = log.read_range(Position(1), 10).unwrap();
    assert_eq!(all.len(), 3);
    let mut h = ChainHash::GENESIS;
    for r in &all {
        assert_eq!(r.prev_hash, h);
        assert_eq!(r.digest, sha256(&r.body));
        h = link(&h, r.position, &r.digest);
    }
    assert_eq!(log.head(), (Position(3), h));
    assert_eq!(log.read_range(Position(2), 1).unwrap()[0].body, b"s2:1");
}

fn reads_by_stream_seq_and_dedupe<L: EventLog>(log: L) {
    let base = log.head().0 .0;
    log.append((1..=100).map(|s| msg("chan", s, Some(&format!("k{s}")))).collect()).unwrap();
    let stream: Vec<u64> = log.read_stream(b"chan", Position::ZERO, 1000).unwrap().iter().map(|r| r.position.0 - base).collect();
    assert_eq!(stream, (1..=100).collect::<Vec<_>>());
    let after: Vec<u64> = log.read_stream(b"chan", Position(base + 95), 3).unwrap().iter().map(|r| r.position.0 - base).collect();
    assert_eq!(after, vec![96, 97, 98]);
    assert!(log.read_stream(b"cha", Position::ZERO, 10).unwrap().is_empty(), "a prefix of a stream key is another stream");
    let up: Vec<u64> = log.read_seq_range(b"chan", 10, 20, 5, false).unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(up, vec![10, 11, 12, 13, 14]);
    let down: Vec<u64> = log.read_seq_range(b"chan", 10, 20, 5, true).unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(down, vec![20, 19, 18, 17, 16]);
    let tail: Vec<u64> = log.read_seq_range(b"chan", 98, u64::MAX, 10, false).unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(tail, vec![98, 99, 100]);
    assert!(log.read_seq_range(b"chan", 20, 10, 5, false).unwrap().is_empty());
    let (seq, r) = &log.read_seq_range(b"chan", 42, 42, 1, false).unwrap()[0];
    assert_eq!((*seq, r.body.as_slice()), (42, b"chan:42".as_slice()));

    // First one wins, within one group and across groups.
    let first = log.append(vec![msg("d", 1, Some("same")), msg("d", 2, Some("same"))]).unwrap();
    log.append(vec![msg("d", 3, Some("same"))]).unwrap();
    assert_eq!(log.find_dedupe(b"d", b"same").unwrap().unwrap().position, first.first);
    assert!(log.find_dedupe(b"d", b"other").unwrap().is_none());
    assert!(log.find_dedupe(b"chan", b"same").unwrap().is_none());
}

fn snapshots<L: EventLog>(log: &L) {
    let s = |p, b: &[u8]| Snapshot { position: Position(p), state: b.to_vec() };
    assert!(log.get_snapshot(b"x").unwrap().is_none());
    log.put_snapshot(b"x", &s(5, b"five")).unwrap();
    log.put_snapshot(b"x", &s(3, b"three")).unwrap();
    assert_eq!(log.get_snapshot(b"x").unwrap(), Some(s(5, b"five")));
    log.put_snapshot(b"x", &s(9, b"nine")).unwrap();
    log.put_snapshot(b"y", &s(1, b"")).unwrap();
    let mut seen = Vec::new();
    log.scan_snapshots(&mut |k, snap| {
        seen.push((k.to_vec(), snap.position.0));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen, vec![(b"x".to_vec(), 9), (b"y".to_vec(), 1)]);
}

fn invalid_appends_change_nothing<L: EventLog>(log: &L) {
    let head = log.head();
    assert!(matches!(log.append(vec![]), Err(StorageError::Invalid(_))));
    assert!(matches!(log.append(vec![rec("ok", 1), NewRecord { stream: vec![b'a', 0xFF], ..rec("x", 1) }]), Err(StorageError::Invalid(_))));
    assert!(matches!(log.append(vec![NewRecord { stream: vec![], ..rec("x", 1) }]), Err(StorageError::Invalid(_))));
    assert_eq!(log.head(), head);
}

fn concurrent_appends_keep_per_thread_order<L: EventLog>(open: &dyn Fn() -> L) {
    let log = open();
    let base = log.head().0 .0;
    std::thread::scope(|s| {
        for t in 0..16 {
            let log = &log;
            s.spawn(move || {
                for n in 0..200u64 {
                    log.append(vec![rec(&format!("t{t}"), n)]).unwrap();
                }
            });
        }
    });
    assert_eq!(log.head().0, Position(base + 3200));
    for t in 0..16 {
        let bodies: Vec<Vec<u8>> = log.read_stream(format!("t{t}").as_bytes(), Position::ZERO, 1000).unwrap().into_iter().map(|r| r.body).collect();
        let expected: Vec<Vec<u8>> = (0..200).map(|n| format!("t{t}:{n}").into_bytes()).collect();
        assert_eq!(bodies, expected);
    }
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
fn concurrent_appends_share_commit_groups() {
    let dir = tempfile::tempdir().unwrap();
    let log = RocksLog::open(dir.path(), RocksOptions::default()).unwrap();
    std::thread::scope(|s| {
        for t in 0..32 {
            let log = &log;
            s.spawn(move || {
                for n in 0..100u64 {
                    log.append(vec![rec(&format!("t{t}"), n)]).unwrap();
                }
            });
        }
    });
    let stats = log.stats();
    assert_eq!(stats.records, 3200);
    assert!(stats.groups < stats.records / 2, "32 concurrent appenders should share fsyncs: {stats:?}");
    assert_eq!(stats.syncs, stats.groups);
}

#[test]
fn corrupt_records_are_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = RocksLog::open(dir.path(), RocksOptions::default()).unwrap();
        log.append(vec![rec("s", 1), rec("s", 2)]).unwrap();
    }
    {
        let cfs = rocks_test::cfs();
        let db = rocksdb::DB::open_cf(&rocks_test::opts(), dir.path(), cfs).unwrap();
        db.put_cf(db.cf_handle("log").unwrap(), 2u64.to_be_bytes(), [9u8, 1, 2]).unwrap();
    }
    let log = RocksLog::open(dir.path(), RocksOptions::default());
    assert!(matches!(log.err(), Some(StorageError::Corrupt { .. })), "the head record is corrupt, so open fails");
}

mod rocks_test {
    pub fn cfs() -> Vec<&'static str> {
        vec!["log", "stream_pos", "stream_seq", "stream_dedupe", "snapshot"]
    }

    pub fn opts() -> rocksdb::Options {
        let mut o = rocksdb::Options::default();
        o.create_if_missing(false);
        o
    }
}
