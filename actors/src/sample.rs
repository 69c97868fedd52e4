//! Realistic records and a fast pipelined filler, for benchmarks and restart measurements: the event
//! log benchmark (`examples/bench.rs`) and the load generator (`rookery-bench`) build their logs here,
//! so both measure the same record shape with the index entries a live append gives it.

use std::collections::VecDeque;

use rookery_events::*;
use rookery_storage::{EventLog, NewRecord};

use crate::pipeline::record_of;

/// Records per append while filling.
const FILL_BATCH: usize = 1024;
/// Appends in flight while filling.
const FILL_IN_FLIGHT: usize = 8;

/// A benchmark's audit metadata at `recorded_at`.
pub fn meta(recorded_at: Timestamp) -> Meta {
    Meta {
        recorded_at,
        actor: Actor::Api { credential: "bench".into() },
        request_id: RequestId([3; 16]),
        source: Some("127.0.0.1:40000".into()),
        user_agent: None,
    }
}

/// A red-dot message of `key` with a `payload_len`-byte payload, as the channel actor stores it.
pub fn message(key: &ChannelKey, seq: u64, id: u64, client_msg_no: String, at: Timestamp, payload_len: usize) -> Message {
    Message {
        channel: key.clone(),
        message_seq: MessageSeq(seq),
        message_id: MessageId(1_000_000 + id as i64),
        client_msg_no: ClientMsgNo(client_msg_no),
        from_uid: Uid(format!("user-{}", seq % 50)),
        header: MessageHeader { red_dot: true, ..Default::default() },
        setting: 0,
        stream_no: None,
        expire: 0,
        topic: None,
        timestamp: at,
        red_dot_ordinal: seq,
        payload: Payload::Inline(vec![b'x'; payload_len]),
    }
}

/// The stored record of message `seq` of channel `group-<channel>`: body, digest and seq index entry
/// exactly as a live send writes them.
pub fn message_record(channel: u32, seq: u64, payload_len: usize) -> NewRecord {
    let key = ChannelKey::new(format!("group-{channel}"), ChannelType::GROUP);
    let at = Timestamp(1_700_000_000_000 + seq);
    let m = message(&key, seq, seq, format!("c{channel}-{seq}"), at, payload_len);
    record_of(&EnvelopeBody { stream: StreamId::Channel(key), meta: meta(at), event: Event::Channel(ChannelEvent::MessageAppended(Box::new(m))) })
}

/// Appends every record of `records` in batches with several appends in flight, waiting for all of
/// them. Returns how many were appended.
///
/// # Errors
/// The first failed append.
pub fn fill(log: &dyn EventLog, records: impl IntoIterator<Item = NewRecord>) -> Result<u64, rookery_storage::StorageError> {
    let mut pending = Vec::with_capacity(FILL_BATCH);
    let mut commits = VecDeque::new();
    let mut appended = 0u64;
    for r in records {
        pending.push(r);
        if pending.len() == FILL_BATCH {
            commits.push_back(log.submit(std::mem::replace(&mut pending, Vec::with_capacity(FILL_BATCH))));
            if commits.len() > FILL_IN_FLIGHT {
                let c = commits.pop_front().expect("queued").wait()?;
                appended += c.last.0 - c.first.0 + 1;
            }
        }
    }
    if !pending.is_empty() {
        commits.push_back(log.submit(pending));
    }
    for c in commits {
        let c = c.wait()?;
        appended += c.last.0 - c.first.0 + 1;
    }
    Ok(appended)
}

/// `events` message records over 1,000 channels, interleaved as independent senders would write them.
pub fn messages_over_channels(events: u64, payload_len: usize) -> impl Iterator<Item = NewRecord> {
    let mut seqs = vec![0u64; 1000];
    (0..events).map(move |i| {
        let channel = (i.wrapping_mul(2_654_435_761) % 1000) as usize;
        seqs[channel] += 1;
        message_record(channel as u32, seqs[channel], payload_len)
    })
}
