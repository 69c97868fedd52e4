//! The RECVs a session has written and not yet seen a RECVACK for (spec §1.6.6).
//!
//! Pure bookkeeping with the clock passed in, so it is tested without sockets or sleeps: the session
//! records every RECV it writes, removes it on RECVACK, and asks [`Unacked::due`] at the earliest
//! deadline which RECVs to write again (with the DUP flag) and which to give up on.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::packet::RecvPacket;

/// One RECV waiting for its RECVACK.
struct Entry {
    /// The sealed packet as first written (DUP clear).
    packet: RecvPacket,
    /// How many times it was written again.
    resent: u32,
    /// The ticket of its live deadline in [`Unacked::order`].
    ticket: u64,
}

/// What [`Unacked::due`] found.
#[derive(Debug, Default, PartialEq)]
pub struct Due {
    /// RECVs to write again, DUP set, oldest first.
    pub resend: Vec<RecvPacket>,
    /// Message ids whose retries are used up; they are no longer tracked.
    pub given_up: Vec<i64>,
}

/// The unacknowledged RECVs of one session, by message id, with their deadlines in order.
pub struct Unacked {
    timeout: Duration,
    retries: u32,
    capacity: usize,
    max_bytes: usize,
    /// Payload bytes of the tracked RECVs.
    bytes: usize,
    entries: HashMap<i64, Entry>,
    /// `(deadline, message_id, ticket)`, deadlines non-decreasing. An item whose ticket is no longer
    /// its entry's (acknowledged, or re-armed later) is stale and skipped; the front is always live.
    order: VecDeque<(Instant, i64, u64)>,
    next_ticket: u64,
}

impl Unacked {
    /// Waits `timeout` for each RECVACK, writes a RECV again at most `retries` times, and tracks at
    /// most `capacity` RECVs (at least one) holding at most `max_bytes` of payload (but always the
    /// newest RECV).
    pub fn new(timeout: Duration, retries: u32, capacity: usize, max_bytes: usize) -> Unacked {
        Unacked { timeout, retries, capacity: capacity.max(1), max_bytes, bytes: 0, entries: HashMap::new(), order: VecDeque::new(), next_ticket: 0 }
    }

    /// Payload bytes held for re-sending.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of RECVs waiting for their RECVACK.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits for a RECVACK.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When [`Unacked::due`] has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(at, _, _)| *at)
    }

    /// Records a RECV just written at `now`. When the table is full (by count or by payload bytes)
    /// the RECVs with the earliest deadlines are given up to make room; their message ids are
    /// returned.
    pub fn sent(&mut self, packet: RecvPacket, now: Instant) -> Vec<i64> {
        self.remove(packet.message_id);
        let mut evicted = Vec::new();
        while !self.entries.is_empty() && (self.entries.len() >= self.capacity || self.bytes + packet.payload.len() > self.max_bytes) {
            let Some((_, id, _)) = self.order.pop_front() else { break };
            self.remove(id);
            evicted.push(id);
            self.trim();
        }
        let ticket = self.arm(packet.message_id, now);
        self.bytes += packet.payload.len();
        self.entries.insert(packet.message_id, Entry { packet, resent: 0, ticket });
        // The same message again leaves its earlier deadline stale, perhaps at the front.
        self.trim();
        evicted
    }

    /// Forgets `message_id`; whether it was tracked.
    fn remove(&mut self, message_id: i64) -> bool {
        match self.entries.remove(&message_id) {
            Some(e) => {
                self.bytes -= e.packet.payload.len();
                true
            }
            None => false,
        }
    }

    /// A RECVACK for `message_id`; `false` when nothing waited for it (a late or unknown ack).
    pub fn acked(&mut self, message_id: i64) -> bool {
        let found = self.remove(message_id);
        self.trim();
        found
    }

    /// Everything whose deadline is at or before `now`: RECVs to write again (re-armed with a new
    /// deadline) and RECVs given up after `retries` re-sends.
    pub fn due(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        while let Some(&(at, id, ticket)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            if self.entries.get(&id).is_none_or(|e| e.ticket != ticket) {
                continue;
            }
            let give_up = self.entries.get(&id).is_some_and(|e| e.resent >= self.retries);
            if give_up {
                self.remove(id);
                due.given_up.push(id);
            } else {
                let ticket = self.arm(id, now);
                if let Some(entry) = self.entries.get_mut(&id) {
                    entry.resent += 1;
                    entry.ticket = ticket;
                    let mut dup = entry.packet.clone();
                    dup.header.dup = true;
                    due.resend.push(dup);
                }
            }
            self.trim();
        }
        due
    }

    /// Adds a deadline `timeout` after `now` for `message_id`; returns its ticket.
    fn arm(&mut self, message_id: i64, now: Instant) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.order.push_back((now + self.timeout, message_id, ticket));
        ticket
    }

    /// Drops stale items from the front, so the front is live.
    fn trim(&mut self) {
        while let Some(&(_, id, ticket)) = self.order.front() {
            if self.entries.get(&id).is_some_and(|e| e.ticket == ticket) {
                break;
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(id: i64) -> RecvPacket {
        RecvPacket { message_id: id, message_seq: id as u64, ..RecvPacket::default() }
    }

    const T: Duration = Duration::from_millis(100);

    #[test]
    fn unacked_recv_is_resent_with_dup_then_given_up() {
        let t0 = Instant::now();
        let mut u = Unacked::new(T, 2, 10, usize::MAX);
        assert_eq!(u.sent(recv(1), t0), Vec::<i64>::new());
        assert_eq!(u.next_deadline(), Some(t0 + T));
        assert_eq!(u.due(t0 + T / 2), Due::default(), "nothing before the deadline");
        let first = u.due(t0 + T);
        assert_eq!(first.resend.len(), 1);
        assert!(first.resend[0].header.dup && first.resend[0].message_id == 1);
        assert_eq!(u.next_deadline(), Some(t0 + 2 * T));
        assert_eq!(u.due(t0 + 2 * T).resend.len(), 1, "second retry");
        let last = u.due(t0 + 3 * T);
        assert_eq!((last.resend.len(), last.given_up), (0, vec![1]), "given up after two retries");
        assert!(u.is_empty());
        assert_eq!(u.next_deadline(), None);
    }

    #[test]
    fn acked_recv_is_never_resent() {
        let t0 = Instant::now();
        let mut u = Unacked::new(T, 3, 10, usize::MAX);
        u.sent(recv(1), t0);
        u.sent(recv(2), t0);
        assert!(u.acked(1));
        assert!(!u.acked(1), "a second ack finds nothing");
        assert!(!u.acked(99), "an unknown id finds nothing");
        let due = u.due(t0 + T);
        assert_eq!(due.resend.iter().map(|r| r.message_id).collect::<Vec<_>>(), vec![2]);
        assert!(u.acked(2));
        assert_eq!(u.due(t0 + 10 * T), Due::default());
        assert_eq!(u.next_deadline(), None, "stale deadlines are dropped");
    }

    #[test]
    fn the_same_message_again_restarts_its_clock() {
        let t0 = Instant::now();
        let mut u = Unacked::new(T, 3, 10, usize::MAX);
        u.sent(recv(1), t0);
        u.sent(recv(1), t0 + T / 2);
        assert_eq!(u.len(), 1);
        assert_eq!(u.due(t0 + T), Due::default(), "the first deadline is stale");
        assert_eq!(u.due(t0 + T / 2 + T).resend.len(), 1);
    }

    #[test]
    fn payload_budget_gives_up_the_oldest_but_keeps_the_newest() {
        let t0 = Instant::now();
        let big = |id: i64, n: usize| RecvPacket { message_id: id, payload: vec![0; n], ..RecvPacket::default() };
        let mut u = Unacked::new(T, 3, 100, 100);
        u.sent(big(1, 40), t0);
        u.sent(big(2, 40), t0);
        assert_eq!(u.bytes(), 80);
        assert_eq!(u.sent(big(3, 40), t0), vec![1]);
        assert_eq!(u.bytes(), 80);
        assert!(u.acked(2));
        assert_eq!(u.bytes(), 40);
        assert_eq!(u.sent(big(4, 500), t0), vec![3], "a RECV over the budget alone is still tracked");
        assert_eq!((u.len(), u.bytes()), (1, 500));
        u.sent(big(4, 10), t0);
        assert_eq!((u.len(), u.bytes()), (1, 10), "the same message again replaces its bytes");
    }

    #[test]
    fn full_table_gives_up_the_oldest() {
        let t0 = Instant::now();
        let mut u = Unacked::new(T, 3, 2, usize::MAX);
        u.sent(recv(1), t0);
        u.sent(recv(2), t0 + T / 4);
        assert_eq!(u.sent(recv(3), t0 + T / 2), vec![1]);
        assert_eq!(u.len(), 2);
        assert_eq!(u.next_deadline(), Some(t0 + T / 4 + T));
        let due = u.due(t0 + 2 * T);
        assert_eq!(due.resend.iter().map(|r| r.message_id).collect::<Vec<_>>(), vec![2, 3]);
    }
}
