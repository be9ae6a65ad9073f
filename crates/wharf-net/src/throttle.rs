//! Keeps a flood from flooding the audit trail: for each key, the first item passes at once,
//! later ones pass at most once per wait, and the items held back in between are counted.
//! The count travels with the next item that passes, or, when nothing more comes, with the
//! last held-back item once its wait is over ([`Throttle::due`]), so no item goes
//! uncounted: every item that passes stands for itself and its `suppressed` count. The wait doubles after each item that passes, up to a ceiling, and starts
//! over once the key has been quiet for a ceiling's length.
//!
//! Memory is bounded: at most `cap` keys, each forgotten once it is quiet; when all of
//! them are busy, items of new keys are counted together under one overflow entry, which
//! passes like any other and is marked as such.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One item let through, with the number of items of its key held back before it.
#[derive(Debug, PartialEq, Eq)]
pub struct Passed<T> {
    /// The item.
    pub item: T,
    /// Other items of the same key held back since the last one that passed (this one
    /// stands for itself and these).
    pub suppressed: u64,
    /// The table was full: this counts items of keys that could not be tracked one by one.
    pub overflow: bool,
}

/// The shortest wait after an item has passed.
const MIN_WAIT: Duration = Duration::from_secs(1);

struct Entry<T> {
    last: Instant,
    wait: Duration,
    suppressed: u64,
    held: Option<T>,
}

impl<T> Entry<T> {
    fn new(now: Instant, wait: Duration) -> Entry<T> {
        Entry {
            last: now,
            wait,
            suppressed: 0,
            held: None,
        }
    }

    /// Lets `item` through, or holds it back and counts it.
    fn offer(&mut self, item: T, now: Instant, ceiling: Duration) -> Option<(T, u64)> {
        if now.saturating_duration_since(self.last) >= self.wait {
            let suppressed = std::mem::take(&mut self.suppressed);
            self.held = None;
            self.passed(now, ceiling);
            Some((item, suppressed))
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            self.held = Some(item);
            None
        }
    }

    fn passed(&mut self, now: Instant, ceiling: Duration) {
        self.last = now;
        self.wait = (self.wait * 2).max(MIN_WAIT).min(ceiling);
    }

    /// The held-back item and count, once the wait is over.
    fn flush(&mut self, now: Instant, ceiling: Duration) -> Option<(T, u64)> {
        if self.suppressed == 0 || now.saturating_duration_since(self.last) < self.wait {
            return None;
        }
        let item = self.held.take()?;
        // The held item was counted when it was held back; it now stands for itself.
        let suppressed = std::mem::take(&mut self.suppressed) - 1;
        self.passed(now, ceiling);
        Some((item, suppressed))
    }

    fn quiet(&self, now: Instant, ceiling: Duration) -> bool {
        self.suppressed == 0 && now.saturating_duration_since(self.last) >= self.wait.max(ceiling)
    }
}

/// Items per key, thinned out over time.
pub struct Throttle<K, T> {
    cap: usize,
    ceiling: Duration,
    state: Mutex<State<K, T>>,
}

struct State<K, T> {
    entries: HashMap<K, Entry<T>>,
    overflow: Option<Entry<T>>,
    last_prune: Option<Instant>,
}

impl<K: Hash + Eq + Clone, T> Throttle<K, T> {
    /// At most `cap` keys; no key waits longer than `ceiling` between two items.
    pub fn new(cap: usize, ceiling: Duration) -> Throttle<K, T> {
        Throttle {
            cap,
            ceiling,
            state: Mutex::new(State {
                entries: HashMap::new(),
                overflow: None,
                last_prune: None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<K, T>> {
        // Counters and held items only: usable after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Offers `item` for `key`: `Some` when it passes now (with the count held back before
    /// it). `first_wait` is how long a key waits after its first item.
    pub fn offer(&self, key: &K, item: T, first_wait: Duration) -> Option<Passed<T>> {
        self.offer_at(key, item, first_wait, Instant::now())
    }

    fn offer_at(&self, key: &K, item: T, first_wait: Duration, now: Instant) -> Option<Passed<T>> {
        let ceiling = self.ceiling;
        let mut state = self.state();
        if let Some(entry) = state.entries.get_mut(key) {
            let (item, suppressed) = entry.offer(item, now, ceiling)?;
            return Some(Passed {
                item,
                suppressed,
                overflow: false,
            });
        }
        if state.entries.len() >= self.cap {
            // Forget quiet keys, at most once a second so that a crowd of new keys cannot
            // make every offer walk the whole table.
            let due = state
                .last_prune
                .is_none_or(|at| now.saturating_duration_since(at) >= MIN_WAIT);
            if due {
                state.entries.retain(|_, e| !e.quiet(now, ceiling));
                state.last_prune = Some(now);
            }
        }
        if state.entries.len() >= self.cap {
            let entry = state
                .overflow
                .get_or_insert_with(|| Entry::new(now, Duration::ZERO));
            let (item, suppressed) = entry.offer(item, now, ceiling)?;
            return Some(Passed {
                item,
                suppressed,
                overflow: true,
            });
        }
        state
            .entries
            .insert(key.clone(), Entry::new(now, first_wait.min(ceiling)));
        Some(Passed {
            item,
            suppressed: 0,
            overflow: false,
        })
    }

    /// The held-back items whose wait is over, each with its count; forgets quiet keys.
    /// Call it about once a second.
    pub fn due(&self) -> Vec<Passed<T>> {
        self.due_at(Instant::now())
    }

    fn due_at(&self, now: Instant) -> Vec<Passed<T>> {
        let ceiling = self.ceiling;
        let mut state = self.state();
        let mut out = Vec::new();
        for entry in state.entries.values_mut() {
            if let Some((item, suppressed)) = entry.flush(now, ceiling) {
                out.push(Passed {
                    item,
                    suppressed,
                    overflow: false,
                });
            }
        }
        state.entries.retain(|_, e| !e.quiet(now, ceiling));
        if let Some(entry) = state.overflow.as_mut()
            && let Some((item, suppressed)) = entry.flush(now, ceiling)
        {
            out.push(Passed {
                item,
                suppressed,
                overflow: true,
            });
        }
        out
    }

    /// Keys tracked now.
    pub fn tracked(&self) -> usize {
        self.state().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_flood_passes_first_then_with_counts_at_growing_intervals() {
        let throttle = Throttle::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut passed = Vec::new();
        // 10 items a second for 20 seconds.
        for i in 0..200u64 {
            if let Some(p) = throttle.offer_at(&"k", i, SEC, at(i * 100)) {
                passed.push((p.item, p.suppressed));
            }
        }
        // Waits of 1, 2, 4, 8 s: items at 0, 1, 3, 7 and 15 s.
        assert_eq!(passed, [(0, 0), (10, 9), (30, 19), (70, 39), (150, 79)],);
        // Nothing is lost: the 49 held back since 15 s come out once the 16 s wait is over,
        // as the last of them standing for the other 48.
        assert!(throttle.due_at(at(20_000)).is_empty());
        let due = throttle.due_at(at(31_000));
        assert_eq!(
            due,
            [Passed {
                item: 199,
                suppressed: 48,
                overflow: false
            }]
        );
        let all: u64 = passed
            .iter()
            .chain([(199, 48)].iter())
            .map(|(_, s)| s + 1)
            .sum();
        assert_eq!(all, 200);
    }

    #[test]
    fn quiet_keys_are_forgotten_and_start_over() {
        let throttle = Throttle::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(throttle.offer_at(&1u8, (), SEC, t0).is_some());
        assert!(throttle.offer_at(&1u8, (), SEC, t0).is_none());
        assert_eq!(throttle.due_at(t0 + SEC).len(), 1);
        assert_eq!(throttle.tracked(), 1);
        assert!(throttle.due_at(t0 + Duration::from_secs(70)).is_empty());
        assert_eq!(throttle.tracked(), 0);
        let again = throttle.offer_at(&1u8, (), SEC, t0 + Duration::from_secs(71));
        assert_eq!(again.map(|p| p.suppressed), Some(0));
    }

    #[test]
    fn a_full_table_counts_new_keys_together() {
        let throttle = Throttle::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        for key in 0..2u32 {
            assert!(throttle.offer_at(&key, key, SEC, t0).is_some());
            assert!(throttle.offer_at(&key, key, SEC, t0).is_none());
        }
        let first = throttle
            .offer_at(&7, 7, SEC, t0)
            .expect("first overflow passes");
        assert!(first.overflow);
        for key in 8..20u32 {
            assert!(throttle.offer_at(&key, key, SEC, t0).is_none());
        }
        assert_eq!(throttle.tracked(), 2);
        let due = throttle.due_at(t0 + Duration::from_secs(60));
        let overflow: Vec<_> = due.iter().filter(|p| p.overflow).collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!((overflow[0].item, overflow[0].suppressed), (19, 11));
    }
}
