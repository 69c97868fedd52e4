//! Column families of the RocksDB engine and their key layouts, in one table.
//!
//! Numbers are big-endian so that byte order is numeric order and range scans come out sorted.
//! Stream keys are never empty and never contain `0xFF`, so `stream ‖ 0xFF` is a prefix that belongs to
//! exactly one stream (no stream key is a prefix of another's index keys).

/// `log`: position (u64 BE) → `[format = 2][prev_hash: 32][digest: 32][index entries][body]`, the log
/// itself. The index entries (see [`IndexMeta`]) let the stream indexes be rebuilt from the log alone.
/// Format 1 (`[1][prev_hash][digest][body]`) is still read: it was written when every record's index
/// entries went into the same write batch, so its indexes are complete by construction.
pub(crate) const LOG: &str = "log";
/// `stream_pos`: stream ‖ 0xFF ‖ first position (u64 BE) → the block's further positions (u64 BE
/// each, ascending). One stream's records in log order, in blocks that do not overlap: every position
/// of a block is below the next block's first. A block of one position has an empty value (the layout
/// of the one-key-per-record index written before blocks, which therefore reads as blocks of one).
///
/// Also holds [`INDEXED_TO`] (a key no stream key can produce, since it starts with 0xFF).
pub(crate) const STREAM_POS: &str = "stream_pos";
/// `stream_seq`: stream ‖ 0xFF ‖ first seq (u64 BE) → the first seq's position (u64 BE), then
/// (seq, position) pairs (u64 BE each) of the rest of the block, ascending. A channel's messages by
/// message_seq, in non-overlapping blocks like `stream_pos` (seqs grow with positions in a stream).
pub(crate) const STREAM_SEQ: &str = "stream_seq";
/// `stream_dedupe`: stream ‖ 0xFF ‖ idempotency key → position (u64 BE), written by earlier versions
/// (retried sends are now recognised by the channel actor from the channel's recent messages). Neither
/// read nor written; emptied by a writable open, and still there, because RocksDB opens a database only
/// with all of its families (a read-only open of a directory an earlier version wrote names it too).
pub(crate) const STREAM_DEDUPE: &str = "stream_dedupe";
/// `snapshot`: stream (any bytes) → position (u64 BE) ‖ encoded state. One projection snapshot per stream.
pub(crate) const SNAPSHOT: &str = "snapshot";

/// Every column family, in creation order.
pub(crate) const ALL: [&str; 5] = [LOG, STREAM_POS, STREAM_SEQ, STREAM_DEDUPE, SNAPSHOT];

/// Format byte of a `log` value written now. A new layout gets a new number; old values keep decoding.
pub(crate) const RECORD_FORMAT: u8 = 2;
/// Format byte of the first layout, without index entries (still decoded).
pub(crate) const RECORD_FORMAT_V1: u8 = 1;
/// Bytes of format, prev_hash and digest at the start of a `log` value.
pub(crate) const RECORD_HEADER: usize = 1 + 32 + 32;

/// Key in `stream_pos` of the index watermark: the log position (u64 BE) up to which every record's
/// index entries are in the index families. Records after it are indexed in memory only (the writer
/// put them there before acknowledging them) and are re-read from the log when the log is opened.
pub(crate) const INDEXED_TO: &[u8] = b"\xFFindexed_to";

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
