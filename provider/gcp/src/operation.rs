//! Long-running operations (AIP-151), as IAM and Artifact Registry return them: poll
//! `GET {base}{operation.name}` with backoff until `done`, then report `error` if there is one.
//! Google may answer a mutation with an operation that is already done; polling starts only when
//! it is not.
//!
//! The operation's `response` is not trusted to carry the resource: IAM's workload identity pool
//! operations leave it empty (gcloud's `command_lib/iam/identity_pool_waiter.py`: "Identity Pools
//! GetOperation does not return anything in the Operation.response field", so gcloud reads the
//! resource back, as terraform-provider-google's iambeta resources do). Callers read back what they
//! need.

use std::time::Duration;

use serde::Deserialize;

use crate::error::GcpError;
use crate::retry::Idempotency::Idempotent;
use crate::transport::Transport;

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Operation {
    pub name: String,
    #[serde(default)]
    pub done: bool,
    pub error: Option<Status>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub code: i32,
    #[serde(default)]
    pub message: String,
}

/// Waits between polls: quick at first (most IAM operations finish within a second), then
/// backing off to `MAX_POLL_INTERVAL`. The caller's `timeouts` bound the total.
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(200);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(10);

pub fn poll_interval(polls: u32) -> Duration {
    FIRST_POLL_INTERVAL.saturating_mul(1 << polls.min(8)).min(MAX_POLL_INTERVAL)
}

/// Polls `op` (served under `base`) until it is done; fails with its error, if any, and returns
/// the finished operation otherwise.
pub async fn wait(t: &Transport, base: &str, what: &str, op: Operation) -> Result<Operation, GcpError> {
    let mut op = op;
    let mut polls = 0;
    while !op.done {
        tokio::time::sleep(poll_interval(polls)).await;
        polls += 1;
        let url = format!("{base}{}", op.name);
        op = t.json(&format!("{what}: poll {}", op.name), Idempotent, |c| c.get(&url)).await?;
    }
    if let Some(e) = op.error {
        return Err(GcpError::Operation { operation: what.to_string(), code: e.code, message: e.message });
    }
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_backs_off_to_a_cap() {
        assert_eq!(poll_interval(0), Duration::from_millis(200));
        assert_eq!(poll_interval(1), Duration::from_millis(400));
        assert_eq!(poll_interval(30), MAX_POLL_INTERVAL);
    }

    #[test]
    fn failed_operations_map_to_http_statuses() {
        let e = GcpError::Operation { operation: "create pool".into(), code: 6, message: "exists".into() };
        assert!(e.is_conflict());
        assert!(e.to_string().contains("exists"));
    }
}
