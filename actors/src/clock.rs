//! Time and id sources. The domain gets both as arguments; this is where they come from.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rookery_events::{MessageId, Timestamp};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Timestamp(ms)
    }
}

/// Makes server-wide unique, increasing message ids: milliseconds since 2020-01-01 in the high bits,
/// a 22-bit counter below (4M ids per millisecond before the time part is borrowed from the future).
///
/// Ids stay unique across restarts as long as the clock does not go back past the last id handed out;
/// start-up seeds the generator with the newest timestamp found in the log to guard against that.
#[derive(Debug)]
pub struct MessageIdGen {
    last: AtomicI64,
}

const ID_EPOCH_MS: u64 = 1_577_836_800_000;
const COUNTER_BITS: u32 = 22;

impl MessageIdGen {
    /// A generator whose first id is above any id made at or before `not_before`.
    pub fn new(not_before: Timestamp) -> MessageIdGen {
        MessageIdGen { last: AtomicI64::new(Self::floor(not_before) | ((1 << COUNTER_BITS) - 1)) }
    }

    fn floor(t: Timestamp) -> i64 {
        (t.0.saturating_sub(ID_EPOCH_MS) as i64) << COUNTER_BITS
    }

    /// The next id, larger than every id returned before.
    pub fn next(&self, now: Timestamp) -> MessageId {
        let floor = Self::floor(now);
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let id = (prev + 1).max(floor);
            match self.last.compare_exchange_weak(prev, id, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return MessageId(id),
                Err(actual) => prev = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_even_when_the_clock_stalls_or_goes_back() {
        let g = MessageIdGen::new(Timestamp(1_700_000_000_000));
        let a = g.next(Timestamp(1_700_000_000_000));
        let b = g.next(Timestamp(1_700_000_000_000));
        let c = g.next(Timestamp(1_600_000_000_000));
        assert!(a < b && b < c);
        assert!(a.0 > 0);
    }
}
