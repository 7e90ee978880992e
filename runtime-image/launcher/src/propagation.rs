//! Waiting out IAM propagation. A workload starts seconds after its grants were written (the output
//! pool and its bucket grant are created just before the VM), and Google documents that IAM changes
//! take effect after a delay, usually within minutes
//! (https://cloud.google.com/iam/docs/access-change-propagation). Until then STS may not know the
//! provider (`invalid_target`) or refuse the exchange (`invalid_grant`), and the first Storage or
//! KMS call with a fresh federated token may get 403. Those answers are retried with backoff
//! within a bounded budget, each wait logged; everything else — above all a refusal by the
//! attribute condition (`unauthorized_client`), which no waiting changes — fails at once.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use dcr_gcp::GcpError;

use crate::progress;

/// How long to wait for IAM on Google Cloud: Google's usual propagation time, with margin.
pub const GCP_BUDGET: Duration = Duration::from_secs(300);
/// The local cloud's IAM is consistent at once; a short budget keeps the retry path exercised.
pub const LOCAL_BUDGET: Duration = Duration::from_secs(10);
const FIRST_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Which answers may still change as IAM propagates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// An STS token exchange.
    Exchange,
    /// The first Storage or KMS call made with a new federated token.
    FirstUse,
}

/// Whether `e`, answered to `call`, may be IAM not having propagated yet.
pub fn may_propagate(call: Call, e: &GcpError) -> bool {
    let GcpError::Api { status, reason, .. } = e else { return false };
    match call {
        Call::Exchange => {
            status.as_u16() == 400 && matches!(reason.as_deref(), Some("invalid_target") | Some("invalid_grant"))
        }
        Call::FirstUse => status.as_u16() == 403,
    }
}

/// The wait before attempt `n + 1`: 1 s, doubling to 30 s.
pub fn backoff(n: u32) -> Duration {
    FIRST_WAIT.saturating_mul(1 << n.min(5)).min(MAX_WAIT)
}

/// Runs `attempt` until it succeeds, fails with an answer propagation cannot explain, or `budget`
/// is spent; `what` names the call in the log.
pub async fn retry<T, F, Fut>(what: &str, call: Call, budget: Duration, mut attempt: F) -> Result<T, GcpError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, GcpError>>,
{
    let started = Instant::now();
    let mut n = 0;
    loop {
        match attempt().await {
            Ok(v) => {
                if n > 0 {
                    progress::say(format_args!("{what}: IAM has propagated after {} s", started.elapsed().as_secs()));
                }
                return Ok(v);
            }
            Err(e) if may_propagate(call, &e) && started.elapsed() + backoff(n) <= budget => {
                let wait = backoff(n);
                progress::say(format_args!(
                    "{what}: {}; waiting {} s for IAM to propagate ({} of {} s spent)",
                    short(&e),
                    wait.as_secs(),
                    started.elapsed().as_secs(),
                    budget.as_secs()
                ));
                tokio::time::sleep(wait).await;
                n += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The status and reason of an error, for the log (Google's messages can be long).
fn short(e: &GcpError) -> String {
    match e {
        GcpError::Api { status, reason, .. } => format!("{status} {}", reason.as_deref().unwrap_or("")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, reason: &str) -> GcpError {
        GcpError::Api {
            operation: "x".into(),
            status: dcr_gcp::StatusCode::from_u16(status).unwrap(),
            reason: Some(reason.into()),
            message: String::new(),
        }
    }

    #[test]
    fn only_answers_iam_propagation_explains_are_retried() {
        assert!(may_propagate(Call::Exchange, &api(400, "invalid_target")));
        assert!(may_propagate(Call::Exchange, &api(400, "invalid_grant")));
        assert!(!may_propagate(Call::Exchange, &api(400, "unauthorized_client")), "a condition refusal is final");
        assert!(!may_propagate(Call::Exchange, &api(403, "forbidden")));
        assert!(may_propagate(Call::FirstUse, &api(403, "forbidden")));
        assert!(!may_propagate(Call::FirstUse, &api(404, "notFound")));
    }

    #[test]
    fn waits_back_off_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(10), MAX_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_or_a_final_answer_or_the_budget() {
        let mut calls = 0;
        let r = retry("probe", Call::FirstUse, Duration::from_secs(5), || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(api(403, "forbidden")) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r.unwrap(), 3);

        let mut calls = 0;
        let r: Result<(), _> = retry("probe", Call::Exchange, Duration::from_secs(5), || {
            calls += 1;
            async { Err(api(400, "unauthorized_client")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1, "a final answer is not retried");

        let mut calls = 0;
        let r: Result<(), _> = retry("probe", Call::FirstUse, Duration::from_secs(2), || {
            calls += 1;
            async { Err(api(403, "forbidden")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 2, "1 s wait fits a 2 s budget, the next 2 s wait does not");
    }
}
