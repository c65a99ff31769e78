//! Connection slots of the public listener, and shedding at the limit.
//!
//! At most `limits.max_connections` connections are served at once. A connection that sends
//! nothing, or its request head a byte at a time, holds its slot until the header-read
//! timeout; a flood of them fills the slots and the kernel backlog faster than timeouts empty
//! them. If new connections simply waited in the backlog for a free slot, a well-behaved
//! client would wait behind the whole queue: measured with 64 slots, a 1 s header timeout and
//! 1,900 hostile connections, up to 18 s and more (tests/it/faults.rs).
//!
//! So at the limit a new connection is accepted and room is made for it: the connection that
//! has been open longest without starting any request is closed (nginx does the same with
//! idle connections when it runs out). Every connection first gets a grace period to send its
//! request head (a tenth of the header-read timeout: a client sends its request right after
//! the handshake), so a flood cannot shed a well-behaved newcomer before it is read. A
//! connection that has started a request is never shed and keeps its slot until it closes or
//! times out between requests; if every slot is in such use, the new connection waits for one.
//!
//! Room is made at up to `max_connections` per grace period (64 slots and a 1 s header
//! timeout: 640 connections a second), so the wait of a well-behaved client is bounded by the
//! hostile connections queued ahead of it in the kernel backlog divided by that rate.
//!
//! Each connection closed to make room is counted (`regiongate_connections_shed_total`).

use prometheus::IntCounter;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The slots, shared by every accept loop of the public listener.
pub struct Slots {
    permits: Arc<Semaphore>,
    /// Connections that may be shed, oldest first (ids grow); entries of connections that
    /// started a request meanwhile are skipped and dropped when met.
    sheddable: Mutex<BTreeMap<u64, Arc<Entry>>>,
    next: AtomicU64,
    /// How long a connection may send its request head before it can be shed.
    grace: Duration,
    /// Connections closed to make room.
    shed_total: IntCounter,
}

struct Entry {
    opened: Instant,
    started: AtomicBool,
    shed: Notify,
}

/// A connection's slot, given back when dropped.
pub struct Admission {
    slots: Arc<Slots>,
    id: u64,
    entry: Arc<Entry>,
    _permit: OwnedSemaphorePermit,
}

/// Marks a connection as having started a request (it is then never shed).
#[derive(Clone)]
pub struct Started(Arc<Entry>);

impl Started {
    /// Called for every request; a relaxed load once the flag is set.
    pub fn mark(&self) {
        if !self.0.started.load(Relaxed) {
            self.0.started.store(true, Relaxed);
        }
    }
}

impl Slots {
    /// `max` slots; a connection can be shed once it has been open for `grace` without
    /// starting a request. Every connection shed adds one to `shed_total`.
    pub fn new(max: usize, grace: Duration, shed_total: IntCounter) -> Slots {
        Slots {
            permits: Arc::new(Semaphore::new(max)),
            sheddable: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            grace,
            shed_total,
        }
    }

    /// A slot for a connection just accepted: a free one, or one made free by shedding the
    /// oldest connection that has not started a request. `None` if the slots are closed.
    pub async fn admit(self: &Arc<Self>) -> Option<Admission> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return None,
            Err(TryAcquireError::NoPermits) => loop {
                // The shed connection gives its slot back as soon as its task sees the signal.
                // If none can be shed yet, try again when the oldest candidate's grace is over
                // (or a slot frees); if a race took the slot, shed another.
                let again = self.shed_one().unwrap_or(self.grace);
                tokio::select! {
                    p = self.permits.clone().acquire_owned() => break p.ok()?,
                    _ = tokio::time::sleep(again.max(Duration::from_millis(1))) => {}
                }
            },
        };
        let id = self.next.fetch_add(1, Relaxed);
        let entry = Arc::new(Entry {
            opened: Instant::now(),
            started: AtomicBool::new(false),
            shed: Notify::new(),
        });
        if let Ok(mut m) = self.sheddable.lock() {
            m.insert(id, entry.clone());
        }
        Some(Admission {
            slots: self.clone(),
            id,
            entry,
            _permit: permit,
        })
    }

    /// Signals the oldest connection that has not started a request to close, if its grace
    /// period is over. `Some(ZERO)` if one was signalled, `Some(wait)` if the oldest candidate
    /// can be shed after `wait`, `None` if there is no candidate.
    fn shed_one(&self) -> Option<Duration> {
        let mut m = self.sheddable.lock().ok()?;
        while let Some(entry) = m.first_entry() {
            let e = entry.get();
            if e.started.load(Relaxed) {
                entry.remove();
                continue;
            }
            let age = e.opened.elapsed();
            if age < self.grace {
                return Some(self.grace - age);
            }
            e.shed.notify_one();
            entry.remove();
            tracing::debug!("at the connection limit: closing the oldest idle connection");
            return Some(Duration::ZERO);
        }
        None
    }
}

impl Admission {
    /// The handle the connection's request handler marks requests with.
    pub fn started(&self) -> Started {
        Started(self.entry.clone())
    }

    /// Resolves when this connection is to be closed to make room, and counts it; never for
    /// a connection that has started a request.
    pub async fn shed(&self) {
        loop {
            self.entry.shed.notified().await;
            // Counted here rather than where the victim is chosen: a connection can start a
            // request between being chosen and seeing the signal, and is then kept.
            if !self.entry.started.load(Relaxed) {
                self.slots.shed_total.inc();
                return;
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut m) = self.slots.sheddable.lock() {
            m.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_limit_the_oldest_idle_connection_makes_room() {
        let shed_total = IntCounter::new("shed", "shed").expect("counter");
        let slots = Arc::new(Slots::new(
            2,
            Duration::from_millis(100),
            shed_total.clone(),
        ));
        let old = slots.admit().await.expect("slot");
        let busy = slots.admit().await.expect("slot");
        busy.started().mark();
        // Full: the third admission sheds `old` (never `busy`) once its grace is over, which
        // gives its slot back.
        let asked = Instant::now();
        let third = tokio::spawn({
            let slots = slots.clone();
            async move { slots.admit().await.map(|a| a.id) }
        });
        tokio::time::timeout(Duration::from_secs(5), old.shed())
            .await
            .expect("the idle connection is told to close");
        assert!(
            asked.elapsed() >= Duration::from_millis(90),
            "after its grace"
        );
        assert_eq!(shed_total.get(), 1, "the shed connection is counted");
        drop(old);
        let id = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("admitted once room was made")
            .expect("task");
        assert_eq!(id, Some(2));
        // A connection that started a request is never told to close, nor counted.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), busy.shed())
                .await
                .is_err()
        );
        assert_eq!(shed_total.get(), 1);
    }
}
