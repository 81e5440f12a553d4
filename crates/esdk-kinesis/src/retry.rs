//! Retry pacing shared by every loop of the crate.

use std::time::Duration;

/// Exponential backoff with full jitter: a random delay in `[0, min(cap, base * 2^attempt)]`.
pub(crate) fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let mut r = [0u8; 8];
    // The OS generator; a failure only loses the jitter.
    let _ = getrandom::fill(&mut r);
    let frac = (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64;
    ceiling.mul_f64(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 0..40 {
            assert!(
                backoff(Duration::from_millis(10), Duration::from_millis(500), attempt) <= Duration::from_millis(500)
            );
        }
    }
}
