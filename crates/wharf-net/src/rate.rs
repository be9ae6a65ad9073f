//! How fast each client network may open new connections: a token bucket per key that holds
//! `burst` tokens and refills at `per_minute`. Each new connection takes a token; a network
//! with none left is refused until one has dripped back in.
//!
//! Memory is bounded: a bucket that has refilled is the same as no bucket and is forgotten
//! by [`RateLimiter::prune`], and at most `cap` networks are tracked at once. When every one
//! of them is still draining, a network not yet tracked is let through untracked (the
//! per-service limits still apply to it) rather than refused: refusing would let a crowd of
//! addresses lock everyone out.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A token bucket per network.
pub struct RateLimiter<K> {
    per_second: f64,
    burst: f64,
    cap: usize,
    state: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    tokens: HashMap<K, Bucket>,
    last_prune: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `per_minute` new connections a minute per key, `burst` of them at once, at most `cap`
    /// keys tracked. A `per_minute` of 0 turns the limit off.
    pub fn new(per_minute: u32, burst: u32, cap: usize) -> RateLimiter<K> {
        RateLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            cap,
            state: Mutex::new(Buckets {
                tokens: HashMap::new(),
                last_prune: None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, Buckets<K>> {
        // Plain numbers: a panic elsewhere cannot leave them unusable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a token for one new connection of `key`; false when it has none left.
    pub fn allow(&self, key: &K) -> bool {
        self.allow_at(key, Instant::now())
    }

    fn allow_at(&self, key: &K, now: Instant) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let mut state = self.state();
        if let Some(bucket) = state.tokens.get_mut(key) {
            let tokens = self.refilled(bucket, now);
            if tokens < 1.0 {
                *bucket = Bucket { tokens, at: now };
                return false;
            }
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            return true;
        }
        if state.tokens.len() >= self.cap {
            // Full: forget refilled buckets, at most once a second so a crowd of new
            // addresses cannot make every accept walk the whole table.
            let due = state
                .last_prune
                .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
            if due {
                self.prune_locked(&mut state, now);
            }
            if state.tokens.len() >= self.cap {
                return true;
            }
        }
        state.tokens.insert(
            key.clone(),
            Bucket {
                tokens: self.burst - 1.0,
                at: now,
            },
        );
        true
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }

    fn prune_locked(&self, state: &mut Buckets<K>, now: Instant) {
        state
            .tokens
            .retain(|_, bucket| self.refilled(bucket, now) < self.burst);
        state.last_prune = Some(now);
    }

    /// Forgets the buckets that have refilled; call it now and then.
    pub fn prune(&self) {
        let mut state = self.state();
        self.prune_locked(&mut state, Instant::now());
    }

    /// Networks tracked now.
    pub fn tracked(&self) -> usize {
        self.state().tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = RateLimiter::new(60, 3, 10);
        let t0 = Instant::now();
        let passed = (0..10).filter(|_| limiter.allow_at(&1u8, t0)).count();
        assert_eq!(passed, 3);
        // One token a second drips back.
        assert!(limiter.allow_at(&1u8, t0 + Duration::from_millis(1000)));
        assert!(!limiter.allow_at(&1u8, t0 + Duration::from_millis(1500)));
        // Another key has its own bucket.
        assert!(limiter.allow_at(&2u8, t0));
    }

    #[test]
    fn refilled_buckets_are_forgotten_and_the_table_is_capped() {
        let limiter = RateLimiter::new(600, 2, 3);
        let t0 = Instant::now();
        for key in 0..3u32 {
            assert!(limiter.allow_at(&key, t0));
            assert!(limiter.allow_at(&key, t0));
            assert!(!limiter.allow_at(&key, t0));
        }
        // Full of draining buckets: a fourth key is let through untracked.
        assert!(limiter.allow_at(&3, t0));
        assert!(limiter.allow_at(&3, t0));
        assert!(limiter.allow_at(&3, t0));
        assert_eq!(limiter.tracked(), 3);
        // Ten a second: after a second every bucket is full again and forgotten.
        let later = t0 + Duration::from_secs(1);
        let mut state = limiter.state();
        limiter.prune_locked(&mut state, later);
        assert!(state.tokens.is_empty());
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limiter = RateLimiter::new(0, 1, 1);
        assert!((0..100).all(|_| limiter.allow(&0u8)));
        assert_eq!(limiter.tracked(), 0);
    }
}
