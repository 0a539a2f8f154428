//! Inbound connection limits and per-source fair shares. Every inbound mix
//! connection takes a [`Slot`] for its source IP address: at most
//! MAX_CONNECTIONS_PER_SOURCE per address, then MAX_CONNECTIONS in all, and
//! the last quarter of the slots only for *established* sources (addresses
//! that have sent a whole frame before), so a flood of fresh idle
//! connections cannot shut out the mixes already talking to the node. The
//! counts are taken under one lock before the connection task starts, so the
//! caps are strict. Each packet admitted holds a [`Ticket`] on its source;
//! the source's share of MAX_QUEUE_DEPTH is the cap divided by the sources
//! with open connections, which is what ingress compares against before it
//! lets a sender past a full queue.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::metrics::ConnEvent;

/// Established source addresses remembered (oldest forgotten first).
const MAX_ESTABLISHED: usize = 4096;

/// One source address and the packets it has inside the node.
pub struct Source {
    in_flight: AtomicUsize,
    global: Arc<AtomicUsize>,
}

impl Source {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }
}

/// One packet's place in the node's queue: held from admission until the
/// packet is written or dropped, and given back (to its source and to the
/// node's queue depth) when dropped.
pub struct Ticket(Arc<Source>);

impl Ticket {
    /// A ticket outside any source's share (tests and benches).
    pub fn detached(global: &Arc<AtomicUsize>) -> Ticket {
        global.fetch_add(1, Relaxed);
        Ticket(Arc::new(Source {
            in_flight: AtomicUsize::new(1),
            global: global.clone(),
        }))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
        self.0.global.fetch_sub(1, Relaxed);
    }
}

struct Entry {
    source: Arc<Source>,
    connections: usize,
}

struct State {
    total: usize,
    sources: HashMap<IpAddr, Entry>,
    /// Address -> order in which it became established.
    established: HashMap<IpAddr, u64>,
    next_order: u64,
}

/// The mix port's connection table.
pub struct Sources {
    max_total: usize,
    max_per_source: usize,
    reserved: usize,
    max_depth: usize,
    global: Arc<AtomicUsize>,
    active: AtomicUsize,
    state: Mutex<State>,
}

/// An open connection's claim on the table; released when dropped.
pub struct Slot {
    ip: IpAddr,
    source: Arc<Source>,
    table: Arc<Sources>,
}

impl Slot {
    pub fn source(&self) -> &Arc<Source> {
        &self.source
    }

    /// Admits `n` packets the caller has already counted into the queue
    /// (see [`Sources::take`]) as tickets.
    pub fn tickets(&self, n: usize) -> impl Iterator<Item = Ticket> + '_ {
        (0..n).map(|_| Ticket(self.source.clone()))
    }

    /// Marks the source as established (it sent a whole frame).
    pub fn established(&self) {
        self.table.mark_established(self.ip);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.release(self.ip);
    }
}

impl Sources {
    pub fn new(
        max_total: usize,
        max_per_source: usize,
        max_depth: usize,
        global: Arc<AtomicUsize>,
    ) -> Self {
        Sources {
            max_total,
            max_per_source,
            reserved: max_total / 4,
            max_depth,
            global,
            active: AtomicUsize::new(0),
            state: Mutex::new(State {
                total: 0,
                sources: HashMap::new(),
                established: HashMap::new(),
                next_order: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims a slot for a new connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, ConnEvent> {
        let mut state = self.lock();
        let mine = state.sources.get(&ip).map_or(0, |e| e.connections);
        if mine >= self.max_per_source {
            return Err(ConnEvent::RefusedPerSource);
        }
        if state.total >= self.max_total {
            return Err(ConnEvent::RefusedTotal);
        }
        if state.total >= self.max_total - self.reserved && !state.established.contains_key(&ip) {
            return Err(ConnEvent::RefusedReserved);
        }
        state.total += 1;
        if state.sources.len() > 4 * self.max_total {
            state
                .sources
                .retain(|_, e| e.connections > 0 || e.source.in_flight() > 0);
        }
        let global = &self.global;
        let entry = state.sources.entry(ip).or_insert_with(|| Entry {
            source: Arc::new(Source {
                in_flight: AtomicUsize::new(0),
                global: global.clone(),
            }),
            connections: 0,
        });
        entry.connections += 1;
        if entry.connections == 1 {
            self.active.fetch_add(1, Relaxed);
        }
        Ok(Slot {
            ip,
            source: entry.source.clone(),
            table: self.clone(),
        })
    }

    fn release(&self, ip: IpAddr) {
        let mut state = self.lock();
        state.total -= 1;
        if let Some(entry) = state.sources.get_mut(&ip) {
            entry.connections -= 1;
            if entry.connections == 0 {
                self.active.fetch_sub(1, Relaxed);
                if entry.source.in_flight() == 0 {
                    state.sources.remove(&ip);
                }
            }
        }
    }

    fn mark_established(&self, ip: IpAddr) {
        let mut state = self.lock();
        if state.established.contains_key(&ip) {
            return;
        }
        if state.established.len() >= MAX_ESTABLISHED {
            // Forget the older half.
            let cut = state.next_order - (MAX_ESTABLISHED as u64) / 2;
            state.established.retain(|_, order| *order >= cut);
        }
        let order = state.next_order;
        state.next_order += 1;
        state.established.insert(ip, order);
    }

    /// One source's share of MAX_QUEUE_DEPTH: the cap divided among the
    /// sources that have connections open.
    pub fn fair_share(&self) -> usize {
        (self.max_depth / self.active.load(Relaxed).max(1)).max(1)
    }

    /// Counts up to `n` packets from `source` into the queue, within the
    /// source's fair share and the queue cap. Returns how many it took.
    pub fn take(&self, source: &Source, n: usize) -> usize {
        let allowed = self.fair_share().saturating_sub(source.in_flight()).min(n);
        let mut current = self.global.load(Relaxed);
        loop {
            let take = self.max_depth.saturating_sub(current).min(allowed);
            if take == 0 {
                return 0;
            }
            match self
                .global
                .compare_exchange_weak(current, current + take, Relaxed, Relaxed)
            {
                Ok(_) => {
                    source.in_flight.fetch_add(take, Relaxed);
                    return take;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Whether `source` holds its whole share of the queue and wants `n`
    /// more while other sources are connected (a lone sender is never over
    /// its share: it is only slowed).
    pub fn over_share(&self, source: &Source, n: usize) -> bool {
        self.active.load(Relaxed) > 1 && source.in_flight() + n > self.fair_share()
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn caps_are_strict_per_source_then_total_with_reserved_slots() {
        let global = Arc::new(AtomicUsize::new(0));
        let table = Arc::new(Sources::new(8, 3, 100, global));
        let mut a: Vec<Slot> = (0..3).map(|_| table.admit(ip(1)).unwrap()).collect();
        assert_eq!(table.admit(ip(1)).err(), Some(ConnEvent::RefusedPerSource));
        a[0].established();
        let b: Vec<Slot> = (0..3).map(|_| table.admit(ip(2)).unwrap()).collect();
        // 6 of 8 open: the last 2 are reserved for established sources.
        assert_eq!(table.admit(ip(3)).err(), Some(ConnEvent::RefusedReserved));
        drop(a.remove(0));
        let again = table.admit(ip(1)).unwrap();
        let c = table.admit(ip(4));
        assert!(c.is_err());
        assert_eq!(table.open(), 6);
        drop((b, again));
        assert_eq!(table.open(), 2);
        drop(a);
        assert!(table.admit(ip(3)).is_ok());
    }

    #[test]
    fn fair_share_splits_the_queue_and_tickets_give_it_back() {
        let global = Arc::new(AtomicUsize::new(0));
        let table = Arc::new(Sources::new(8, 8, 100, global.clone()));
        let a = table.admit(ip(1)).unwrap();
        assert_eq!(table.fair_share(), 100);
        let b = table.admit(ip(2)).unwrap();
        assert_eq!(table.fair_share(), 50);
        assert_eq!(table.take(a.source(), 80), 50);
        let held: Vec<Ticket> = a.tickets(50).collect();
        assert!(table.over_share(a.source(), 1));
        assert_eq!(table.take(b.source(), 80), 50);
        let other: Vec<Ticket> = b.tickets(50).collect();
        assert_eq!(global.load(Relaxed), 100);
        assert_eq!(table.take(b.source(), 1), 0);
        drop(held);
        assert_eq!(global.load(Relaxed), 50);
        assert_eq!(a.source().in_flight(), 0);
        drop(other);
        assert_eq!(global.load(Relaxed), 0);
    }
}
