//! Open connections counted per client network, so a service can cap how many one network
//! holds at once. The key is the caller's (the ban engine's network of the address: one
//! IPv4 address, an IPv6 /64), so a host cannot multiply its allowance by rotating through
//! its own IPv6 range. The count drops when the [`AddressSlot`] is dropped, whatever ends
//! the connection.
//!
//! The table holds one entry per network with an open connection and forgets a network
//! when its last connection closes; callers take a slot only after a connection has passed
//! the service's overall limit, so the table never has more entries than that limit.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

type Counts<K> = Arc<Mutex<HashMap<K, usize>>>;

/// Per-network connection counts of one service.
#[derive(Clone)]
pub struct AddressSlots<K = IpAddr> {
    limit: usize,
    open: Counts<K>,
}

/// One open connection of a network; frees its slot when dropped.
pub struct AddressSlot<K: Hash + Eq = IpAddr> {
    key: K,
    open: Counts<K>,
}

fn lock<K>(open: &Mutex<HashMap<K, usize>>) -> MutexGuard<'_, HashMap<K, usize>> {
    // The map holds plain counters; after a panic elsewhere it is still usable.
    open.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Hash + Eq + Clone> AddressSlots<K> {
    /// At most `limit` connections per network.
    pub fn new(limit: usize) -> AddressSlots<K> {
        AddressSlots {
            limit,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for one more connection from `key`, or `None` when it has `limit` already.
    pub fn take(&self, key: K) -> Option<AddressSlot<K>> {
        let mut open = lock(&self.open);
        let count = open.entry(key.clone()).or_insert(0);
        if *count >= self.limit {
            if *count == 0 {
                open.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            key,
            open: Arc::clone(&self.open),
        })
    }

    /// Networks holding at least one connection.
    pub fn networks(&self) -> usize {
        lock(&self.open).len()
    }
}

impl<K: Hash + Eq> Drop for AddressSlot<K> {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_key_and_freed_on_drop() {
        let slots = AddressSlots::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert!(slots.take(a).is_none());
        let _other = slots.take(b).unwrap();
        drop(first);
        assert!(slots.take(a).is_some());
        assert_eq!(slots.networks(), 2);
    }

    #[test]
    fn a_zero_limit_refuses_without_keeping_an_entry() {
        let slots = AddressSlots::new(0);
        assert!(slots.take(7u8).is_none());
        assert_eq!(slots.networks(), 0);
    }
}
