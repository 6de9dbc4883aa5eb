//! Exponential backoff for every reconnect and retry loop.
//!
//! One type, so that every loop waits the same way: the first attempt waits
//! `first`, each later one twice as long, never more than `max`.

use std::time::Duration;

/// An exponential backoff: `first`, doubling per attempt, capped at `max`.
///
/// [`Backoff::delay`] is a pure function of the attempt number;
/// [`Backoff::next_delay`] counts attempts itself and adds jitter if asked,
/// and [`Backoff::reset`] starts over after a success.
///
/// ```
/// use std::time::Duration;
/// use weft_core::backoff::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
/// assert_eq!(backoff.delay(1), Duration::from_millis(50));
/// assert_eq!(backoff.delay(3), Duration::from_millis(200));
/// assert_eq!(backoff.delay(100), Duration::from_secs(2));
///
/// assert_eq!(backoff.next_delay(), Duration::from_millis(50));
/// assert_eq!(backoff.next_delay(), Duration::from_millis(100));
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Duration::from_millis(50));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    // Attempts made since the last reset; `next_delay` answers for `attempt + 1`.
    attempt: u32,
    // Share of each stateful delay drawn at random, so that many peers that
    // lost the same host do not all come back in the same millisecond.
    jitter: f64,
}

impl Backoff {
    /// A backoff whose first delay is `first` and whose delays never exceed
    /// `max` (if `first > max`, every delay is `max`).
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            attempt: 0,
            jitter: 0.0,
        }
    }

    /// Makes [`Backoff::next_delay`] take up to `fraction` (0.0 to 1.0) off
    /// each delay at random. [`Backoff::delay`] stays deterministic.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weft_core::backoff::Backoff;
    ///
    /// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
    ///     .with_jitter(0.5);
    /// let d = backoff.next_delay();
    /// assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
    /// ```
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// The delay before attempt `attempt` (1-based; 0 is taken as 1):
    /// `first * 2^(attempt - 1)`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        // 2^32 exceeds any cap worth having; checked_mul guards the rest.
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.first
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max)
    }

    /// The delay before the next attempt, counting attempts since the last
    /// [`Backoff::reset`], with jitter if [`Backoff::with_jitter`] asked for it.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let delay = self.delay(self.attempt);
        if self.jitter > 0.0 {
            delay.mul_f64(1.0 - self.jitter * rand::random::<f64>())
        } else {
            delay
        }
    }

    /// Starts over: the next [`Backoff::next_delay`] is `first` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_first_up_to_max() {
        let b = Backoff::new(50 * MS, 2000 * MS);
        let delays: Vec<_> = (0..=8).map(|a| b.delay(a)).collect();
        assert_eq!(
            delays,
            [50, 50, 100, 200, 400, 800, 1600, 2000, 2000].map(|m| m * MS)
        );
    }

    #[test]
    fn huge_attempts_do_not_overflow() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for attempt in [31, 32, 33, 64, 1000, u32::MAX] {
            assert_eq!(b.delay(attempt), Duration::from_secs(30), "{attempt}");
        }
        let uncapped = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        assert_eq!(uncapped.delay(3), Duration::MAX);
    }

    #[test]
    fn first_above_max_is_capped() {
        let b = Backoff::new(5 * MS, 2 * MS);
        assert_eq!(b.delay(1), 2 * MS);
    }

    #[test]
    fn next_delay_counts_and_reset_starts_over() {
        let mut b = Backoff::new(10 * MS, 35 * MS);
        let seen: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(seen, [10, 20, 35, 35, 35].map(|m| m * MS));
        b.reset();
        assert_eq!(b.next_delay(), 10 * MS);
    }

    #[test]
    fn next_delay_saturates_its_count() {
        let mut b = Backoff::new(MS, 4 * MS);
        b.attempt = u32::MAX;
        assert_eq!(b.next_delay(), 4 * MS);
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_spares_delay() {
        let mut b = Backoff::new(100 * MS, 100 * MS).with_jitter(0.25);
        for _ in 0..200 {
            let d = b.next_delay();
            assert!(d >= 75 * MS && d <= 100 * MS, "{d:?}");
        }
        assert_eq!(b.delay(1), 100 * MS);
        let odd = Backoff::new(MS, MS).with_jitter(f64::NAN);
        assert_eq!(odd.jitter, 0.0);
        assert_eq!(Backoff::new(MS, MS).with_jitter(7.0).jitter, 1.0);
    }
}
