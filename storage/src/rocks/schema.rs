//! Column families of the RocksDB engine and their key layouts, in one table.
//!
//! Numbers are big-endian so that byte order is numeric order and range scans come out sorted.
//! Stream keys are never empty and never contain `0xFF`, so `stream ‖ 0xFF` is a prefix that belongs to
//! exactly one stream (no stream key is a prefix of another's index keys).

/// `log`: position (u64 BE) → `[format = 1][prev_hash: 32][digest: 32][body]`. The log itself.
pub(crate) const LOG: &str = "log";
/// `stream_pos`: stream ‖ 0xFF ‖ position (u64 BE) → empty. One stream's records in log order.
pub(crate) const STREAM_POS: &str = "stream_pos";
/// `stream_seq`: stream ‖ 0xFF ‖ seq (u64 BE) → position (u64 BE). A channel's messages by message_seq.
pub(crate) const STREAM_SEQ: &str = "stream_seq";
/// `stream_dedupe`: stream ‖ 0xFF ‖ idempotency key → position (u64 BE). The first record wins.
pub(crate) const STREAM_DEDUPE: &str = "stream_dedupe";
/// `snapshot`: stream (any bytes) → position (u64 BE) ‖ encoded state. One projection snapshot per stream.
pub(crate) const SNAPSHOT: &str = "snapshot";

/// Every column family, in creation order.
pub(crate) const ALL: [&str; 5] = [LOG, STREAM_POS, STREAM_SEQ, STREAM_DEDUPE, SNAPSHOT];

/// Format byte of a `log` value. A new layout gets a new number; old values keep decoding.
pub(crate) const RECORD_FORMAT: u8 = 1;
/// Bytes before the body in a `log` value: format, prev_hash, digest.
pub(crate) const RECORD_HEADER: usize = 1 + 32 + 32;

/// `stream ‖ 0xFF ‖ suffix`: the key of an index entry.
pub(crate) fn stream_key(stream: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 1 + suffix.len());
    k.extend_from_slice(stream);
    k.push(0xFF);
    k.extend_from_slice(suffix);
    k
}

/// The prefix every index key of `stream` starts with.
pub(crate) fn stream_prefix(stream: &[u8]) -> Vec<u8> {
    stream_key(stream, &[])
}

/// Reads a big-endian u64 from exactly 8 bytes.
pub(crate) fn be_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}
