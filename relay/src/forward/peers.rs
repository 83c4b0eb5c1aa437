//! Outgoing connections to other relays, cached by full address
//! (fingerprint, host and port: a forward naming a wrong host never shares
//! the real one's), least recently used evicted past [`MAX_PEERS`].

use std::collections::HashMap;
use std::sync::Arc;

use enlace_protocol::address::RelayAddress;

/// One destination's cached connection; the async lock makes concurrent
/// users share one connection attempt.
pub(crate) type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

/// Outgoing connections kept open at most; past it the least recently
/// used is dropped (quinn closes a connection when its last handle goes).
pub const MAX_PEERS: usize = 256;

/// Cached outgoing connections by full address, least recently used
/// evicted past [`MAX_PEERS`].
#[derive(Default)]
pub(crate) struct Peers {
    slots: HashMap<Vec<u8>, (Slot, u64)>,
    /// Use counter: the last use of each slot orders them.
    tick: u64,
}

impl Peers {
    /// The slot of `key`, made the most recently used; evicts first if a
    /// new one would pass the cap.
    pub(crate) fn slot(&mut self, key: Vec<u8>) -> Slot {
        self.tick = self.tick.wrapping_add(1);
        let tick = self.tick;
        if let Some((slot, used)) = self.slots.get_mut(&key) {
            *used = tick;
            return slot.clone();
        }
        if self.slots.len() >= MAX_PEERS {
            // Slots whose connection is gone (or never came) first.
            self.slots.retain(|_, (s, _)| {
                s.try_lock()
                    .map(|c| c.as_ref().is_some_and(|c| c.close_reason().is_none()))
                    .unwrap_or(true)
            });
        }
        while self.slots.len() >= MAX_PEERS {
            let Some(oldest) = self
                .slots
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.slots.remove(&oldest);
        }
        let slot = Slot::default();
        self.slots.insert(key, (slot.clone(), tick));
        slot
    }

    pub(crate) fn remove(&mut self, key: &[u8]) {
        self.slots.remove(key);
    }
}

/// The key of a connection: the full encoded address.
pub(crate) fn address_key(address: &RelayAddress) -> Vec<u8> {
    let mut key = Vec::new();
    address.encode(&mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_connections_are_capped_least_recently_used_first() {
        let mut peers = Peers::default();
        let key = |n: usize| n.to_be_bytes().to_vec();
        // Every slot busy (a connection attempt holds its lock), so none is
        // dropped as dead: the cap has to evict.
        let first = peers.slot(key(0));
        let mut busy = vec![first.clone().try_lock_owned().unwrap()];
        for n in 1..MAX_PEERS {
            busy.push(peers.slot(key(n)).try_lock_owned().unwrap());
        }
        // Slot 0 is used again, so slot 1 is now the oldest.
        assert!(Arc::ptr_eq(&first, &peers.slot(key(0))));
        peers.slot(key(MAX_PEERS));
        assert_eq!(peers.slots.len(), MAX_PEERS);
        assert!(peers.slots.contains_key(&key(0)));
        assert!(!peers.slots.contains_key(&key(1)));
        assert!(peers.slots.contains_key(&key(MAX_PEERS)));
        for n in 0..4 * MAX_PEERS {
            busy.push(peers.slot(key(1_000_000 + n)).try_lock_owned().unwrap());
            assert!(peers.slots.len() <= MAX_PEERS);
        }
        drop(busy);
        // Dead slots go first, before any live one is evicted.
        peers.slot(key(7));
        assert_eq!(peers.slots.len(), 1);
    }
}
