//! How many connections are open, and which to let go.
//!
//! Idle keep-alive connections and clients that send their headers slowly
//! each hold a descriptor and some memory while doing nothing. Rather than
//! refuse new connections when the cap is reached (which would turn away
//! the scrape or the kubelet probe along with the flood), the connection
//! that has waited longest for a request is closed to make room: a client
//! that sends its request at once, as Prometheus and probes do, always
//! gets in. Only when every connection is in the middle of a request is
//! the newcomer turned away.
//!
//! Closed connections leave their buffers in the allocator, which glibc
//! does not give back to the system on its own; [`Connections::trim`]
//! does, after connections have closed, so a burst of clients does not
//! leave the exporter's resident memory high for good.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

pub(super) struct Connections {
    max: usize,
    start: Instant,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    /// Closed since the last trim.
    closed: AtomicU64,
}

/// One open connection, as the cap sees it.
pub(super) struct Connection {
    /// Milliseconds since `start` at which it began to wait for a request
    /// (plus one); 0 while a request is being answered.
    idle_since: AtomicU64,
    /// Told when the connection is closed to make room.
    pub(super) evicted: Notify,
}

/// Holds a place among the open connections until dropped.
pub(super) struct Admitted {
    id: u64,
    pub(super) connection: Arc<Connection>,
    connections: Arc<Connections>,
}

/// Marks its connection busy until dropped.
pub(super) struct Busy<'a> {
    connection: &'a Connection,
    connections: &'a Connections,
}

impl Connections {
    pub(super) fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max: max.max(1),
            start: Instant::now(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(super) fn count(&self) -> usize {
        self.lock().len()
    }

    /// A place for a new connection, making room by closing the one idle
    /// longest when the cap is reached; `None` when every connection is
    /// answering a request.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut open = self.lock();
        if open.len() >= self.max {
            let oldest = open
                .iter()
                .filter_map(|(id, c)| match c.idle_since.load(Ordering::Relaxed) {
                    0 => None,
                    since => Some((since, *id)),
                })
                .min()?;
            if let Some(evicted) = open.remove(&oldest.1) {
                evicted.evicted.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            idle_since: AtomicU64::new(self.now()),
            evicted: Notify::new(),
        });
        open.insert(id, Arc::clone(&connection));
        Some(Admitted {
            id,
            connection,
            connections: Arc::clone(self),
        })
    }

    /// Gives the memory of closed connections back to the system, if any
    /// closed since the last call.
    pub(super) fn trim(&self) {
        if self.closed.swap(0, Ordering::Relaxed) == 0 {
            return;
        }
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only walks the allocator's own free lists.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

impl Admitted {
    /// For the span of one request: the connection is not idle, so it is
    /// not closed to make room.
    pub(super) fn busy(&self) -> Busy<'_> {
        self.connection.idle_since.store(0, Ordering::Relaxed);
        Busy {
            connection: &self.connection,
            connections: &self.connections,
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.connection
            .idle_since
            .store(self.connections.now(), Ordering::Relaxed);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
        self.connections.closed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_idle_connection_makes_room() {
        let connections = Connections::new(2);
        let first = connections.admit().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = connections.admit().unwrap();
        let third = connections.admit().expect("room is made");
        assert_eq!(connections.count(), 2);
        // The first was told; the second was not.
        {
            let told = first.connection.evicted.notified();
            tokio::pin!(told);
            assert!(futures_ready(told.as_mut()));
            let spared = second.connection.evicted.notified();
            tokio::pin!(spared);
            assert!(!futures_ready(spared.as_mut()));
        }
        drop((first, second, third));
        assert_eq!(connections.count(), 0);
    }

    #[test]
    fn busy_connections_are_not_closed_and_a_full_house_turns_newcomers_away() {
        let connections = Connections::new(1);
        let only = connections.admit().unwrap();
        let busy = only.busy();
        assert!(connections.admit().is_none());
        drop(busy);
        assert!(connections.admit().is_some(), "idle again, so it makes room");
    }

    /// Whether a `Notify` permit is already stored.
    fn futures_ready(fut: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        std::future::Future::poll(fut, &mut cx).is_ready()
    }
}
