//! Log positions and the hash chain that links every stored envelope to its predecessor.

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

/// Position of an envelope in the global event log.
///
/// Positions start at 1 and grow by exactly one per appended envelope; 0 means "before the first".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
pub struct Position(pub u64);

impl Position {
    /// The position before any envelope.
    pub const ZERO: Position = Position(0);

    /// The position right after this one.
    pub fn next(self) -> Position {
        Position(self.0 + 1)
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A SHA-256 value: an envelope's digest or a link of the chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Encode, Decode)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The "previous hash" of the very first envelope.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// Lower-case hex, the form used in logs, APIs and error messages.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainHash({})", &self.to_hex()[..16])
    }
}

/// The chain link of the envelope at `position`: `SHA-256(prev ‖ position as u64 BE ‖ digest)`.
///
/// `digest` is the envelope's own digest (see `Envelope::digest`), which covers message payloads only
/// through their hashes, so erasing a payload later leaves every link intact.
pub fn link(prev: &ChainHash, position: Position, digest: &ChainHash) -> ChainHash {
    let mut h = Sha256::new();
    h.update(prev.0);
    h.update(position.0.to_be_bytes());
    h.update(digest.0);
    ChainHash(h.finalize().into())
}

/// SHA-256 of arbitrary bytes, as a [`ChainHash`].
pub fn sha256(bytes: &[u8]) -> ChainHash {
    ChainHash(Sha256::digest(bytes).into())
}
