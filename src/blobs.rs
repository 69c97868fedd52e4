//! The blob store: uploaded files under the data directory, named by the SHA-256 of their bytes
//! (`blobs/sha256/<first two hex digits>/<the rest>`), so the same bytes are stored once.
//!
//! A blob is durable before anything refers to it: written to a temporary file, synced, renamed into
//! place and its directory synced; only then does the caller append the event that records it. A crash
//! in between leaves at most an unreferenced blob or a stray temporary file, never a record without
//! its bytes.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The blob store under one directory.
#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
}

impl Blobs {
    /// The store under `<data_dir>/blobs`.
    pub fn under(data_dir: &Path) -> Blobs {
        Blobs { root: data_dir.join("blobs") }
    }

    /// The directory the store keeps its blobs in (for backups).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| self.root.join("sha256").join(&sha256[..2]).join(&sha256[2..]))
    }

    /// Stores `bytes` durably and answers their SHA-256 (lower-case hex). Blocking.
    ///
    /// # Errors
    /// The file system's.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let sha256 = rookery_events::sha256(bytes).to_hex();
        let path = self.path(&sha256).expect("a SHA-256 names a blob");
        if path.is_file() {
            return Ok(sha256);
        }
        let dir = path.parent().expect("blobs live in a directory");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{}.{}.tmp", &sha256[2..], uuid::Uuid::new_v4().simple()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        // The directory entry of a newly made fan-out directory lives in its parent.
        if let Some(parent) = dir.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(sha256)
    }

    /// The bytes of blob `sha256`, or `None` when there is no such blob. Blocking.
    ///
    /// # Errors
    /// The file system's, other than a missing file.
    pub fn get(&self, sha256: &str) -> std::io::Result<Option<Vec<u8>>> {
        let Some(path) = self.path(sha256) else { return Ok(None) };
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_named_by_their_content_and_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::under(dir.path());
        let a = blobs.put(b"hello").unwrap();
        assert_eq!(a, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(blobs.put(b"hello").unwrap(), a);
        assert_eq!(blobs.get(&a).unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(blobs.get(&"0".repeat(64)).unwrap(), None);
        assert_eq!(blobs.get("../../etc/passwd").unwrap(), None, "only SHA-256 names");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256/2c")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left: {leftovers:?}");
    }
}
