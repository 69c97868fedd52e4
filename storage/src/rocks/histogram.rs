//! Fixed-bucket histograms the writer threads fill with relaxed atomic adds, and their plain snapshots.
//!
//! The storage crate depends on no metrics library: the server reads these snapshots and exports them
//! (Prometheus text format on the monitor port).

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (inclusive) of the commit-group size buckets, in records per group.
pub const GROUP_RECORDS_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

/// Upper bounds (inclusive) of the group write latency buckets, in microseconds: the `WriteBatch`
/// write plus, under `SyncEveryGroup`, the WAL fsync.
pub const WRITE_MICROS_BOUNDS: &[u64] = &[50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000];

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Inclusive upper bound of each bucket, ascending.
    pub bounds: &'static [u64],
    /// Observations per bucket (not cumulative): `counts[i]` fell in `(bounds[i-1], bounds[i]]`. One more
    /// entry than `bounds`: the last counts observations above the highest bound.
    pub counts: Vec<u64>,
    /// Sum of all observed values.
    pub sum: u64,
}

impl HistogramSnapshot {
    /// An empty histogram with these bounds.
    pub fn empty(bounds: &'static [u64]) -> HistogramSnapshot {
        HistogramSnapshot { bounds, counts: vec![0; bounds.len() + 1], sum: 0 }
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The live histogram.
pub(crate) struct AtomicHistogram {
    bounds: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl AtomicHistogram {
    pub(crate) fn new(bounds: &'static [u64]) -> AtomicHistogram {
        AtomicHistogram { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum: AtomicU64::new(0) }
    }

    pub(crate) fn observe(&self, value: u64) {
        let bucket = self.bounds.partition_point(|&b| b < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_holds_them() {
        let h = AtomicHistogram::new(&[1, 4, 16]);
        for v in [0, 1, 2, 4, 5, 16, 17, 1000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, vec![2, 2, 2, 2]);
        assert_eq!(s.sum, 1045);
        assert_eq!(s.count(), 8);
        assert_eq!(HistogramSnapshot::empty(&[1, 4, 16]).counts, vec![0; 4]);
    }
}
