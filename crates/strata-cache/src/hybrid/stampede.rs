//! Stampede protection: at most one fetch (L2 read, then factory) per key at a
//! time in this process; every caller waits on the same outcome.
//!
//! The fetch runs in a spawned task and publishes its outcome on a `watch`
//! channel, so a caller that is dropped (timed out, cancelled) cancels nothing:
//! the others still get the value, and it is still cached. The map of flights
//! is behind a std `Mutex`: it is held for one map operation, never across an
//! await, and flights are rare next to hits (which never touch it).
//!
//! Each fetch is also a running read (see `invalidation`): a flight whose key
//! was invalidated since it started is not joined; a caller arriving then
//! starts a new fetch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::invalidation::{ReadMarks, Reads, RunningRead};
use super::l1::L1Entry;
use crate::error::{Error, ErrorKind, Result};

/// A fetch's result: the entry (cached or not) and whether it is a stale
/// fallback served by fail-safe.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub(crate) entry: Arc<L1Entry>,
    pub(crate) stale: bool,
}

pub(crate) type Outcome = Result<Fetched>;
type Slot = Option<Outcome>;

/// One flight in the map: its id, its outcome channel, its invalidation marks.
#[derive(Debug)]
struct Running {
    id: u64,
    receiver: watch::Receiver<Slot>,
    marks: Arc<ReadMarks>,
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
    sender: watch::Sender<Slot>,
    read: RunningRead,
}

/// A caller's wait on a flight.
#[derive(Debug)]
pub(crate) struct Flight {
    receiver: watch::Receiver<Slot>,
}

impl Flights {
    /// Joins the flight of `key`, or starts one (registered in `reads` from
    /// now on) and returns its leader too. A flight invalidated since it
    /// started is not joined: it is replaced by a new one.
    pub(crate) fn join(
        self: &Arc<Self>,
        key: &str,
        reads: &Arc<Reads>,
    ) -> (Flight, Option<Leader>) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = map.get(key)
            && !running.marks.is_marked()
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
        let running = Running {
            id,
            receiver: receiver.clone(),
            marks: Arc::clone(read.marks()),
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
    /// What happened to the key since the fetch started.
    pub(crate) fn marks(&self) -> Arc<ReadMarks> {
        Arc::clone(self.read.marks())
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
        let (flight, leader) = flights.join("k", &reads);
        let (second, none) = flights.join("k", &reads);
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
        let (_first, old) = flights.join("k", &reads);
        let old = old.expect("a leader");
        reads.key_changed("k");
        let (_second, new) = flights.join("k", &reads);
        let new = new.expect("a new leader after the invalidation");
        let (_third, none) = flights.join("k", &reads);
        assert!(none.is_none(), "the new flight is joined");
        drop(old);
        assert!(
            flights.is_running("k"),
            "the old leader leaves the new flight alone"
        );
        drop(new);
        assert!(!flights.is_running("k"));
    }
}
