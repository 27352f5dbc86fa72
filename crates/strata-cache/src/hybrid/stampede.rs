//! Stampede protection: at most one fetch (L2 read, then factory) per key at a
//! time in this process; every caller waits on the same outcome.
//!
//! The fetch runs in a spawned task and publishes its outcome on a `watch`
//! channel, so a caller that is dropped (timed out, cancelled) cancels nothing:
//! the others still get the value, and it is still cached. The map of flights
//! is behind a std `Mutex`: it is held for one map operation, never across an
//! await, and flights are rare next to hits (which never touch it).
//!
//! Each fetch is also a running read (see `reads`): a flight whose key was
//! invalidated since it started (or one of its tags, or `clear`: see
//! `order`) is not joined; a caller arriving then starts a new fetch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::l1::L1Entry;
use super::order::Order;
use super::reads::{ReadMark, Reads, RunningRead};
use crate::error::{Error, ErrorKind, Result};

/// A fetch's result: the entry (cached or not), whether it is a stale
/// fallback served by fail-safe, and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub(crate) entry: Arc<L1Entry>,
    pub(crate) stale: bool,
    pub(crate) source: Source,
}

/// Where a fetch found its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    L2,
    Factory,
}

pub(crate) type Outcome = Result<Fetched>;
type Outcomes = Option<Outcome>;

/// One flight in the map: its id, its outcome channel, where its read began.
#[derive(Debug)]
struct Running {
    id: u64,
    receiver: watch::Receiver<Outcomes>,
    mark: Arc<ReadMark>,
    read_seq: u64,
    tags: Vec<String>,
}

/// The fetches in flight, by key.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Running, foldhash::fast::RandomState>>,
    next_id: AtomicU64,
}

/// The task that runs a fetch; publishing (or dropping) it ends the flight.
#[derive(Debug)]
pub(crate) struct Leader {
    flights: Arc<Flights>,
    key: String,
    id: u64,
    sender: watch::Sender<Outcomes>,
    read: RunningRead,
    read_seq: u64,
}

/// A caller's wait on a flight.
#[derive(Debug)]
pub(crate) struct Flight {
    receiver: watch::Receiver<Outcomes>,
}

impl Flights {
    /// Joins the flight of `key`, or starts one (registered in `reads` from
    /// now on, its read beginning now in `order`) and returns its leader too.
    /// A flight invalidated since it started is not joined: it is replaced by
    /// a new one.
    pub(crate) fn join(
        self: &Arc<Self>,
        key: &str,
        tags: &[String],
        reads: &Arc<Reads>,
        order: &Order,
    ) -> (Flight, Option<Leader>) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = map.get(key)
            && !running.mark.is_set()
            && !order.changed_since(running.read_seq, &running.tags)
        {
            return (
                Flight {
                    receiver: running.receiver.clone(),
                },
                None,
            );
        }
        let (sender, receiver) = watch::channel(None);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let read = reads.start(key);
        let read_seq = order.begin_read();
        let running = Running {
            id,
            receiver: receiver.clone(),
            mark: Arc::clone(read.mark()),
            read_seq,
            tags: tags.to_vec(),
        };
        // Replaces an invalidated flight: its leader still finishes for its
        // own waiters, and its drop leaves this entry alone (ids differ).
        map.insert(key.to_owned(), running);
        let leader = Leader {
            flights: Arc::clone(self),
            key: key.to_owned(),
            id,
            sender,
            read,
            read_seq,
        };
        (Flight { receiver }, Some(leader))
    }

    /// True when a fetch of `key` is running.
    #[cfg(test)]
    pub(crate) fn is_running(&self, key: &str) -> bool {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }
}

impl Leader {
    /// Whether the key was invalidated since the fetch started.
    pub(crate) fn mark(&self) -> Arc<ReadMark> {
        Arc::clone(self.read.mark())
    }

    /// The sequence number the fetch's read began at (see `order`).
    pub(crate) fn read_seq(&self) -> u64 {
        self.read_seq
    }

    /// Hands the outcome to every waiter and ends the flight.
    pub(crate) fn finish(self, outcome: Outcome) {
        self.sender.send_replace(Some(outcome));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut map = self
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map
            .get(&self.key)
            .is_some_and(|running| running.id == self.id)
        {
            map.remove(&self.key);
        }
    }
}

impl Flight {
    /// Waits for the outcome.
    ///
    /// # Errors
    ///
    /// The fetch's error; [`ErrorKind::Factory`] when the fetch task ended
    /// without an outcome (the factory panicked).
    pub(crate) async fn wait(mut self, key: &str) -> Outcome {
        match self.receiver.wait_for(Option::is_some).await {
            Ok(slot) => slot.clone().unwrap_or_else(|| Err(panicked(key))),
            Err(_) => Err(panicked(key)),
        }
    }
}

fn panicked(key: &str) -> Error {
    Error::new(
        ErrorKind::Factory,
        format!("the factory for {key:?} panicked or its task was aborted"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_leader_ends_the_flight_with_an_error() {
        let flights = Arc::new(Flights::default());
        let reads = Arc::new(Reads::default());
        let order = Order::new(false, false);
        let (flight, leader) = flights.join("k", &[], &reads, &order);
        let (second, none) = flights.join("k", &[], &reads, &order);
        assert!(none.is_none());
        assert!(flights.is_running("k"));
        drop(leader);
        assert!(!flights.is_running("k"));
        assert_eq!(
            flight.wait("k").await.unwrap_err().kind(),
            ErrorKind::Factory
        );
        assert!(second.wait("k").await.is_err());
    }

    #[tokio::test]
    async fn an_invalidated_flight_is_not_joined() {
        let flights = Arc::new(Flights::default());
        let reads = Arc::new(Reads::default());
        let order = Order::new(false, false);
        let tags = ["t".to_owned()];
        let (_first, old) = flights.join("k", &tags, &reads, &order);
        let old = old.expect("a leader");
        reads.key_changed("k");
        let (_second, new) = flights.join("k", &tags, &reads, &order);
        let new = new.expect("a new leader after the invalidation");
        let (_third, none) = flights.join("k", &tags, &reads, &order);
        assert!(none.is_none(), "the new flight is joined");
        drop(old);
        assert!(
            flights.is_running("k"),
            "the old leader leaves the new flight alone"
        );
        order.invalidate(crate::hybrid::order::Scope::Tag("t"));
        let (_fourth, newer) = flights.join("k", &tags, &reads, &order);
        assert!(newer.is_some(), "a tag invalidated since the flight began");
        drop((new, newer));
        assert!(!flights.is_running("k"));
    }
}
