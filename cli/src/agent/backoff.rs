//! Exponential backoff with full jitter: many agents losing one edge do not all come back at
//! the same instant.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (1-based): a random point in the upper half of
    /// `initial * 2^(attempt-1)`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(16);
        let ceiling = self.initial.saturating_mul(1 << exp).min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let b = Backoff::default();
        let first = b.delay(1);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
        let later = b.delay(10);
        assert!(later >= Duration::from_secs(15) && later <= Duration::from_secs(30));
        assert!(b.delay(1000) <= Duration::from_secs(30));
    }
}
