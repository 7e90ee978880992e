//! When and how long to wait before trying a call again: truncated exponential backoff with full
//! jitter, on the statuses Google documents as retryable.

use std::time::Duration;

use reqwest::StatusCode;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(16),
        }
    }
}

/// Whether a call may be repeated safely. Only idempotent calls (GET, PUT of a whole resource,
/// DELETE) and calls guarded by a precondition (`ifGenerationMatch`, an IAM etag) are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    Idempotent,
    NotIdempotent,
}

/// Statuses Google asks clients to retry: 408, 429 and 5xx.
pub fn is_retryable_status(s: StatusCode) -> bool {
    s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1), given a random `unit` in [0, 1):
    /// uniformly distributed below min(max, initial · 2^(attempt-1)).
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let exp = self.initial_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let cap = exp.min(self.max_backoff);
        cap.mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses_follow_google() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 412] {
            assert!(!is_retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1, 0.999_999).as_millis(), 249);
        assert!(p.backoff(3, 0.999_999) > p.backoff(2, 0.999_999));
        assert!(p.backoff(30, 0.999_999) <= p.max_backoff);
        assert_eq!(p.backoff(5, 0.0), Duration::ZERO);
    }
}
