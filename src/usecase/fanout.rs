//! Live delivery after the answer: a committed message is handed to a fan-out worker, which puts it
//! on the outbound queue of every online session of its recipients. The sender's answer does not
//! wait for that (in a group of 10,000 online members it takes milliseconds).
//!
//! Workers are chosen by channel, so the messages of one channel are delivered in the order they
//! were handed over (a session's sends are handed over in the order they committed). Each worker's
//! queue is bounded: when delivery falls that far behind, handing over waits, which slows the
//! senders instead of holding an unbounded backlog.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rookery_events::Uid;
use tokio::sync::mpsc;

use crate::presence::{Outbound, Presence};

/// Messages a worker may have waiting before handing over waits.
const QUEUE: usize = 4096;

/// One message to deliver.
struct Job {
    item: Outbound,
    recipients: Arc<[Uid]>,
    /// The session it came from, which does not get it back.
    except: Option<u64>,
}

/// The fan-out workers. Cheap to clone.
#[derive(Clone)]
pub(super) struct Fanout {
    workers: Arc<[mpsc::Sender<Job>]>,
}

impl Fanout {
    /// Starts the workers (twice as many as cores, at least four, so that one big group does not
    /// hold up every other channel).
    pub(super) fn start(presence: Arc<Presence>) -> Fanout {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()).saturating_mul(2).max(4);
        let workers = (0..n)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
                let presence = presence.clone();
                tokio::spawn(async move {
                    while let Some(job) = rx.recv().await {
                        presence.deliver(&job.item, &job.recipients, job.except);
                    }
                });
                tx
            })
            .collect();
        Fanout { workers }
    }

    /// Hands `item` over for delivery to the online sessions of `recipients` but `except`. The items
    /// of one channel (its messages and their events) are delivered in the order they were handed over.
    pub(super) async fn submit(&self, item: Outbound, recipients: Arc<[Uid]>, except: Option<u64>) {
        if recipients.is_empty() {
            return;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        item.key().hash(&mut h);
        let worker = &self.workers[(h.finish() % self.workers.len() as u64) as usize];
        // Only fails when the runtime is shutting down; nobody is left to deliver to then.
        let _ = worker.send(Job { item, recipients, except }).await;
    }
}
