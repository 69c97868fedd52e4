//! The free-space reserve of the data directory's filesystem: appends are refused, cleanly and before
//! anything is written, while the free space is below it. RocksDB meeting a full disk in the middle of a
//! write stops accepting writes until reopened (and Debian's build, which keeps its assertions, aborts
//! the process), so the log never lets it get that far.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a reading of the free space is reused: a `statvfs` costs a microsecond, but groups can
/// come by the thousand per second.
const RECHECK: Duration = Duration::from_millis(50);

/// Watches the free space of one directory's filesystem.
pub(super) struct DiskGuard {
    dir: PathBuf,
    reserve: u64,
    /// Read the free bytes from this file instead of the filesystem (fault drills and tests).
    probe: Option<PathBuf>,
    last: Mutex<Option<(Instant, u64)>>,
}

impl DiskGuard {
    pub(super) fn new(dir: PathBuf, reserve: u64, probe: Option<PathBuf>) -> DiskGuard {
        DiskGuard { dir, reserve, probe, last: Mutex::new(None) }
    }

    /// Free bytes for an unprivileged writer, as last read (`u64::MAX` when never read).
    pub(super) fn last_free(&self) -> u64 {
        self.last.lock().map(|l| l.map_or(u64::MAX, |(_, free)| free)).unwrap_or(u64::MAX)
    }

    fn read_free(&self) -> Option<u64> {
        match &self.probe {
            Some(file) => std::fs::read_to_string(file).ok()?.trim().parse().ok(),
            None => {
                let st = nix::sys::statvfs::statvfs(&self.dir).ok()?;
                Some(st.blocks_available().saturating_mul(st.fragment_size()))
            }
        }
    }

    /// Why an append must be refused now, if it must: the free space is below the reserve. A reading
    /// that fails refuses nothing (the write itself will tell).
    pub(super) fn refusal(&self) -> Option<String> {
        if self.reserve == 0 && self.probe.is_none() {
            return None;
        }
        let now = Instant::now();
        let mut last = self.last.lock().ok()?;
        let free = match *last {
            Some((at, free)) if now.duration_since(at) < RECHECK => free,
            _ => {
                let free = self.read_free()?;
                *last = Some((now, free));
                free
            }
        };
        (free < self.reserve).then(|| {
            format!(
                "{} has {free} bytes free, below the reserve of {} bytes (disk_reserve_bytes); writes are refused until space is freed",
                self.dir.display(),
                self.reserve
            )
        })
    }
}
