//! A bandwidth cap shared by every file a run copies at once: a token bucket refilled at
//! the configured rate, holding at most one second's worth, so a burst never exceeds it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The cap; `None` rate means none.
pub struct Pace {
    rate: Option<u64>,
    state: Mutex<(f64, Instant)>,
}

impl Pace {
    /// A cap of `rate` bytes per second.
    pub fn new(rate: Option<u64>) -> Pace {
        let full = rate.map(|r| r as f64).unwrap_or(0.0);
        Pace {
            rate: rate.filter(|r| *r > 0),
            state: Mutex::new((full, Instant::now())),
        }
    }

    /// Waits until `bytes` may go.
    pub async fn take(&self, bytes: usize) {
        let Some(rate) = self.rate else { return };
        let rate = rate as f64;
        let wait = {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let (tokens, last) = *state;
            let refilled = (tokens + now.duration_since(last).as_secs_f64() * rate).min(rate);
            let left = refilled - bytes as f64;
            *state = (left, now);
            if left >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-left / rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn three_seconds_of_bytes_take_two_seconds_after_the_first() {
        let pace = Pace::new(Some(1000));
        let start = Instant::now();
        for _ in 0..30 {
            pace.take(100).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1990), "{took:?}");
        assert!(took <= Duration::from_millis(2100), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_cap_never_waits() {
        let pace = Pace::new(None);
        let start = Instant::now();
        pace.take(1 << 30).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
