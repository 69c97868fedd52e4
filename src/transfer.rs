//! `rookery export` and `rookery import`: the event log as JSON lines, and back.
//!
//! The first line is a header naming the range and the chain head the export ends at; every other
//! line is one event: its stored bytes (base64, authoritative) and, for people and tools reading the
//! file, its position, chain links, time, stream, kind, actor and request id.
//! Import checks every line against the hash chain before anything is written, appends the exact
//! stored bytes in order, and finishes with the exported chain head or fails. An import continues a
//! log only where the export starts (position and chain link), so a full export goes into an empty
//! data directory and an `--since` export continues a copy made earlier.
//!
//! Uploads (`tenant.media_stored`) travel with the log: before the line of each such event comes a
//! blob line, `{"blob": <sha256>, "bytes": <base64>}`, which an import checks against its hash and
//! writes to the blob store, durably, before the event that records it is appended.

use std::io::{BufRead, Write};
use std::ops::ControlFlow;

use base64::Engine as _;
use rookery_events::{link, Actor, ChainHash, EnvelopeBody, Event, Position, TenantEvent};
use rookery_storage::{Commit, EventLog, NewRecord};
use serde::{Deserialize, Serialize};

use crate::blobs::Blobs;

/// Version of the export format, in the header line.
const FORMAT: u32 = 1;
/// Records per append during import.
const IMPORT_BATCH: usize = 1024;
/// Appends in flight during import.
const IMPORT_IN_FLIGHT: usize = 8;

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Format version ([`FORMAT`]).
    pub rookery_export: u32,
    /// Position of the first event in the file.
    pub first: u64,
    /// Chain link of the event before the first one (all zeros when `first` is 1).
    pub first_prev_hash: String,
    /// Position of the last event in the file (`first - 1` when there is none).
    pub head: u64,
    /// Chain link of the last event: the head an import ends at.
    pub head_hash: String,
}

/// A line carrying an upload's bytes, before the event that records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobLine {
    /// SHA-256 of the bytes, hex.
    pub blob: String,
    /// The bytes, base64 (standard alphabet, padded).
    pub bytes: String,
}

/// One event line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Log position.
    pub position: u64,
    /// Chain link of the previous event.
    pub prev_hash: String,
    /// The event's digest (payloads by hash).
    pub digest: String,
    /// The stored envelope bytes, base64 (standard alphabet, padded).
    pub body: String,
    /// When it was recorded (RFC 3339). Informational.
    #[serde(default)]
    pub recorded_at: String,
    /// The stream. Informational.
    #[serde(default)]
    pub stream: String,
    /// The event kind. Informational.
    #[serde(default)]
    pub kind: String,
    /// Who caused it. Informational.
    #[serde(default)]
    pub actor: String,
    /// The request it belongs to. Informational.
    #[serde(default)]
    pub request_id: String,
}

/// What an export or import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Events written.
    pub events: u64,
    /// Position of the last event.
    pub head: Position,
    /// Chain link of the last event.
    pub head_hash: ChainHash,
}

/// The actor as one word: `system`, `api:<credential>`, `client:<uid>/<device_flag>`.
pub fn actor_label(actor: &Actor) -> String {
    match actor {
        Actor::System => "system".into(),
        Actor::Api { credential } => format!("api:{credential}"),
        Actor::Client { uid, device_flag } => format!("client:{}/{}", uid.0, device_flag.0),
        Actor::Delegated { credential, uid } => format!("api:{credential}/for:{}", uid.0),
    }
}

fn hex32(what: &str, s: &str) -> Result<ChainHash, String> {
    let bytes = hex::decode(s).map_err(|e| format!("{what} is not hex: {e}"))?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| format!("{what} is not 32 bytes"))?;
    Ok(ChainHash(arr))
}

/// Writes the events from `since` up to the head as it is when the export starts.
/// `progress(done, total)` is called every few thousand events.
///
/// # Errors
/// A read or write failure, or an undecodable stored record.
pub fn export(log: &dyn EventLog, blobs: Option<&Blobs>, since: Position, out: &mut dyn Write, progress: &mut dyn FnMut(u64, u64)) -> anyhow::Result<Summary> {
    let (head, head_hash) = log.head();
    let first = since.max(Position(1));
    let first_prev_hash = if first.0 == 1 {
        ChainHash::GENESIS
    } else if first > head {
        head_hash
    } else {
        log.read_range(first, 1)?.first().map(|r| r.prev_hash).ok_or_else(|| anyhow::anyhow!("record {first} is missing"))?
    };
    let last = if first > head { Position(first.0 - 1) } else { head };
    let header = Header {
        rookery_export: FORMAT,
        first: first.0,
        first_prev_hash: first_prev_hash.to_hex(),
        head: last.0,
        head_hash: if first > head { first_prev_hash.to_hex() } else { head_hash.to_hex() },
    };
    serde_json::to_writer(&mut *out, &header)?;
    out.write_all(b"\n")?;
    let total = last.0.saturating_sub(first.0 - 1);
    let mut done = 0u64;
    let mut failure: Option<anyhow::Error> = None;
    if first <= head {
        log.scan(first, &mut |r| {
            if r.position > head {
                return ControlFlow::Break(());
            }
            let line = match EnvelopeBody::decode(&r.body) {
                Ok(body) => {
                    if let (Some(blobs), Event::Tenant(TenantEvent::MediaStored { record })) = (blobs, &body.event) {
                        let bytes = match blobs.get(&record.sha256) {
                            Ok(Some(bytes)) => bytes,
                            Ok(None) => {
                                failure =
                                    Some(anyhow::anyhow!("the upload {} recorded at position {} is missing from the blob store", record.sha256, r.position));
                                return ControlFlow::Break(());
                            }
                            Err(e) => {
                                failure = Some(anyhow::anyhow!("reading the upload {}: {e}", record.sha256));
                                return ControlFlow::Break(());
                            }
                        };
                        let blob = BlobLine { blob: record.sha256.clone(), bytes: base64::engine::general_purpose::STANDARD.encode(bytes) };
                        if let Err(e) =
                            serde_json::to_writer(&mut *out, &blob).map_err(anyhow::Error::from).and_then(|()| out.write_all(b"\n").map_err(Into::into))
                        {
                            failure = Some(e);
                            return ControlFlow::Break(());
                        }
                    }
                    Line {
                        position: r.position.0,
                        prev_hash: r.prev_hash.to_hex(),
                        digest: r.digest.to_hex(),
                        body: base64::engine::general_purpose::STANDARD.encode(&r.body),
                        recorded_at: crate::timefmt::format_time(body.meta.recorded_at),
                        stream: body.stream.to_string(),
                        kind: body.event.kind().to_string(),
                        actor: actor_label(&body.meta.actor),
                        request_id: uuid::Uuid::from_bytes(body.meta.request_id.0).to_string(),
                    }
                }
                Err(e) => {
                    failure = Some(anyhow::anyhow!("record {} does not decode: {e}", r.position));
                    return ControlFlow::Break(());
                }
            };
            if let Err(e) = serde_json::to_writer(&mut *out, &line).map_err(anyhow::Error::from).and_then(|()| out.write_all(b"\n").map_err(Into::into)) {
                failure = Some(e);
                return ControlFlow::Break(());
            }
            done += 1;
            if done % 4096 == 0 {
                progress(done, total);
            }
            ControlFlow::Continue(())
        })?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    out.flush()?;
    progress(done, total);
    if done != total {
        anyhow::bail!("exported {done} events where {total} were expected");
    }
    Ok(Summary { events: done, head: last, head_hash: hex32("head hash", &header.head_hash).map_err(anyhow::Error::msg)? })
}

/// Appends the events of an export to `log`, which must end exactly where the export begins.
///
/// Every line is checked before it is appended: consecutive positions, the chain link to the line
/// before, and the digest recomputed from the stored bytes. On the first bad line nothing more is
/// appended and the error names the line; what was appended before it is a valid prefix of the
/// exported log, and importing the same file again into a fresh directory is the way to retry.
///
/// # Errors
/// A malformed or inconsistent file, a log that does not end where the export begins, or a write
/// failure.
pub fn import(log: &dyn EventLog, blobs: Option<&Blobs>, input: &mut dyn BufRead, progress: &mut dyn FnMut(u64, u64)) -> anyhow::Result<Summary> {
    let mut lines = input.lines();
    let header_line = lines.next().ok_or_else(|| anyhow::anyhow!("the input is empty: expected an export header line"))??;
    let header: Header = serde_json::from_str(&header_line).map_err(|e| anyhow::anyhow!("line 1 is not an export header: {e}"))?;
    anyhow::ensure!(header.rookery_export == FORMAT, "export format {} is not supported (this build reads format {FORMAT})", header.rookery_export);
    anyhow::ensure!(header.first >= 1 && header.head + 1 >= header.first, "header range {}..={} is invalid", header.first, header.head);
    let first_prev = hex32("first_prev_hash", &header.first_prev_hash).map_err(anyhow::Error::msg)?;
    let head_hash = hex32("head_hash", &header.head_hash).map_err(anyhow::Error::msg)?;
    let (log_head, log_hash) = log.head();
    anyhow::ensure!(
        log_head.0 + 1 == header.first && log_hash == first_prev,
        "the target log ends at position {log_head} (link {}) but the export starts at position {} after link {}: import a full export into an empty data directory",
        log_hash.to_hex(),
        header.first,
        header.first_prev_hash
    );
    let total = header.head + 1 - header.first;
    let (mut expected, mut prev) = (Position(header.first), first_prev);
    let mut batch: Vec<NewRecord> = Vec::with_capacity(IMPORT_BATCH);
    let mut in_flight: std::collections::VecDeque<(Position, Commit)> = std::collections::VecDeque::new();
    let mut done = 0u64;
    for (n, line) in lines.enumerate() {
        let line_no = n + 2;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        if let Ok(b) = serde_json::from_str::<BlobLine>(&line) {
            let bytes =
                base64::engine::general_purpose::STANDARD.decode(&b.bytes).map_err(|e| anyhow::anyhow!("line {line_no}: blob bytes are not base64: {e}"))?;
            anyhow::ensure!(rookery_events::sha256(&bytes).to_hex() == b.blob, "line {line_no}: the blob's bytes do not match its SHA-256 {}", b.blob);
            let blobs = blobs.ok_or_else(|| anyhow::anyhow!("line {line_no}: the export carries uploads but this import has no blob store"))?;
            blobs.put(&bytes).map_err(|e| anyhow::anyhow!("line {line_no}: storing the upload: {e}"))?;
            continue;
        }
        let l: Line = serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("line {line_no}: not an event line: {e}"))?;
        anyhow::ensure!(l.position == expected.0, "line {line_no}: position {} where {expected} was expected", l.position);
        anyhow::ensure!(expected.0 <= header.head, "line {line_no}: position {} is beyond the header's head {}", l.position, header.head);
        let prev_hash = hex32("prev_hash", &l.prev_hash).map_err(|e| anyhow::anyhow!("line {line_no}: {e}"))?;
        anyhow::ensure!(prev_hash == prev, "line {line_no}: chain link {} does not follow the line before ({})", l.prev_hash, prev.to_hex());
        let digest = hex32("digest", &l.digest).map_err(|e| anyhow::anyhow!("line {line_no}: {e}"))?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(&l.body).map_err(|e| anyhow::anyhow!("line {line_no}: body is not base64: {e}"))?;
        let body = EnvelopeBody::decode(&bytes).map_err(|e| anyhow::anyhow!("line {line_no}: body does not decode: {e}"))?;
        anyhow::ensure!(body.digest() == digest, "line {line_no}: the body does not match its digest (changed after export?)");
        // The record's index entries come from the event, exactly as for a live append; the bytes
        // are the exported ones.
        let record = NewRecord { body: bytes, ..rookery_actors::record_of(&body) };
        prev = link(&prev, expected, &digest);
        batch.push(record);
        expected = expected.next();
        if batch.len() == IMPORT_BATCH {
            let first = Position(expected.0 - batch.len() as u64);
            in_flight.push_back((first, log.submit(std::mem::take(&mut batch))));
            if in_flight.len() >= IMPORT_IN_FLIGHT {
                done += settle(in_flight.pop_front().expect("in flight"))?;
                progress(done, total);
            }
        }
    }
    if !batch.is_empty() {
        let first = Position(expected.0 - batch.len() as u64);
        in_flight.push_back((first, log.submit(batch)));
    }
    for c in in_flight {
        done += settle(c)?;
    }
    progress(done, total);
    anyhow::ensure!(expected.0 == header.head + 1, "the file ends at position {} but its header says {}: truncated export", expected.0 - 1, header.head);
    let (head, hash) = log.head();
    anyhow::ensure!(
        head.0 == header.head && hash == head_hash,
        "imported log ends at {head} with link {} instead of {} with {}",
        hash.to_hex(),
        header.head,
        header.head_hash
    );
    Ok(Summary { events: done, head, head_hash: hash })
}

/// Waits for one import append and checks it landed where the file said.
fn settle((first, commit): (Position, Commit)) -> anyhow::Result<u64> {
    let c = commit.wait()?;
    anyhow::ensure!(c.first == first, "append landed at position {} instead of {first}: was the log written to during the import?", c.first);
    Ok(c.last.0 - c.first.0 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rookery_events::{ChannelEvent, ChannelInfo, ChannelKey, ChannelType, Event, Meta, RequestId, StreamId, Timestamp};
    use rookery_storage::MemLog;

    fn fill(log: &MemLog, n: u64) {
        for i in 0..n {
            let body = EnvelopeBody {
                stream: StreamId::Channel(ChannelKey::new(format!("g{}", i % 3), ChannelType::GROUP)),
                meta: Meta {
                    recorded_at: Timestamp(1_700_000_000_000 + i),
                    actor: Actor::Api { credential: "ops".into() },
                    request_id: RequestId([7; 16]),
                    source: None,
                    user_agent: None,
                },
                event: Event::Channel(if i < 3 {
                    ChannelEvent::Created { info: ChannelInfo::default() }
                } else {
                    ChannelEvent::SubscribersAdded { uids: vec![format!("u{i}").into()] }
                }),
            };
            log.append(vec![rookery_actors::record_of(&body)]).unwrap();
        }
    }

    #[test]
    fn uploads_travel_with_the_events_that_record_them() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (blobs, copy_blobs) = (Blobs::under(from.path()), Blobs::under(to.path()));
        let original = MemLog::default();
        fill(&original, 2);
        let sha256 = blobs.put(b"the bytes of an upload").unwrap();
        let record = rookery_events::MediaRecord {
            kind: "file".into(),
            sha256: sha256.clone(),
            size: 22,
            crc32: 0,
            format: String::new(),
            width: 0,
            height: 0,
            name: "a.bin".into(),
            at: Timestamp(1),
        };
        let body = EnvelopeBody {
            stream: StreamId::Tenant("a1".into()),
            meta: Meta { recorded_at: Timestamp(1_700_000_000_009), actor: Actor::System, request_id: RequestId([9; 16]), source: None, user_agent: None },
            event: Event::Tenant(TenantEvent::MediaStored { record }),
        };
        original.append(vec![rookery_actors::record_of(&body)]).unwrap();
        let mut out = Vec::new();
        export(&original, Some(&blobs), Position(1), &mut out, &mut |_, _| {}).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().nth(3).unwrap().starts_with("{\"blob\""), "the blob comes before its event: {text}");

        let copy = MemLog::default();
        assert!(import(&copy, None, &mut text.as_bytes(), &mut |_, _| {}).unwrap_err().to_string().contains("no blob store"));
        let copy = MemLog::default();
        import(&copy, Some(&copy_blobs), &mut text.as_bytes(), &mut |_, _| {}).unwrap();
        assert_eq!(copy.head(), original.head());
        assert_eq!(copy_blobs.get(&sha256).unwrap().as_deref(), Some(&b"the bytes of an upload"[..]));
        // Bytes that do not match their hash are refused.
        let forged = text.replace(
            &base64::engine::general_purpose::STANDARD.encode(b"the bytes of an upload"),
            &base64::engine::general_purpose::STANDARD.encode(b"other bytes"),
        );
        let err = import(&MemLog::default(), Some(&copy_blobs), &mut forged.as_bytes(), &mut |_, _| {}).unwrap_err().to_string();
        assert!(err.contains("do not match"), "{err}");
        // An export whose blob store lacks a recorded upload fails rather than leaving it out.
        let empty = Blobs::under(to.path().join("nothing").as_path());
        let err = export(&original, Some(&empty), Position(1), &mut Vec::new(), &mut |_, _| {}).unwrap_err().to_string();
        assert!(err.contains("missing from the blob store"), "{err}");
    }

    fn exported(log: &MemLog, since: u64) -> String {
        let mut out = Vec::new();
        export(log, None, Position(since), &mut out, &mut |_, _| {}).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_full_export_imports_to_the_same_chain_head_and_a_partial_one_continues_it() {
        let original = MemLog::default();
        fill(&original, 10);
        let copy = MemLog::default();
        let summary = import(&copy, None, &mut exported(&original, 0).as_bytes(), &mut |_, _| {}).unwrap();
        assert_eq!((summary.events, summary.head, summary.head_hash), (10, original.head().0, original.head().1));
        assert_eq!(copy.read_range(Position(1), 100).unwrap(), original.read_range(Position(1), 100).unwrap());

        fill(&original, 5);
        let tail = exported(&original, 11);
        assert_eq!(import(&copy, None, &mut tail.as_bytes(), &mut |_, _| {}).unwrap().head_hash, original.head().1);
        assert_eq!(copy.read_stream(&StreamId::Channel(ChannelKey::new("g1", ChannelType::GROUP)).key(), Position::ZERO, 100).unwrap().len(), 5);
        assert!(import(&copy, None, &mut tail.as_bytes(), &mut |_, _| {}).unwrap_err().to_string().contains("target log ends at position 15"));
    }

    #[test]
    fn a_changed_missing_or_truncated_line_is_refused_by_line_number() {
        let original = MemLog::default();
        fill(&original, 6);
        let text = exported(&original, 1);
        let lines: Vec<&str> = text.lines().collect();
        let attempt = |lines: &[String]| {
            let copy = MemLog::default();
            import(&copy, None, &mut lines.join("\n").as_bytes(), &mut |_, _| {}).unwrap_err().to_string()
        };
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        let mut changed = own(&lines);
        let mut l: Line = serde_json::from_str(&changed[4]).unwrap();
        let mut bytes = base64::engine::general_purpose::STANDARD.decode(&l.body).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        l.body = base64::engine::general_purpose::STANDARD.encode(&bytes);
        changed[4] = serde_json::to_string(&l).unwrap();
        let e = attempt(&changed);
        assert!(e.starts_with("line 5:"), "{e}");

        let mut missing = own(&lines);
        missing.remove(3);
        assert!(attempt(&missing).starts_with("line 4: position 4 where 3 was expected"));

        let truncated = own(&lines[..5]);
        assert!(attempt(&truncated).contains("truncated export"));

        assert!(attempt(&own(&lines[1..])).starts_with("line 1 is not an export header"));
    }
}
