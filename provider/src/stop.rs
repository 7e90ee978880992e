//! Ctrl-C. Terraform answers an interrupt by calling `StopProvider` and then waits for in-flight
//! operations to return before it saves state and exits (a second Ctrl-C kills the provider, losing
//! what it was doing). Long operations — an upload, an image push, waiting for a VM — therefore
//! watch this signal and return promptly with what they finished recorded, as the plugin SDK's
//! `StopContext` lets Go providers do. Once stopped, a provider process stays stopped: Terraform
//! starts no new operations on it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use tfplugin6::{Diagnostic, Diagnostics};
use tokio::sync::Notify;

#[derive(Default)]
pub struct StopSignal {
    stopped: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Resolves once [`stop`](Self::stop) has been called.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a stop between the two is not missed.
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }

    /// Runs `fut` unless the provider is stopped first; `what` names it in the diagnostic.
    pub async fn unless_stopped<T>(&self, what: &str, fut: impl Future<Output = T>) -> Result<T, Diagnostics> {
        tokio::select! {
            biased;
            () = self.stopped() => Err(interrupted(what)),
            v = fut => Ok(v),
        }
    }
}

/// The diagnostic of an operation cut short by Ctrl-C.
pub fn interrupted(what: &str) -> Diagnostics {
    Diagnostic::error(
        format!("Interrupted: {what} was stopped"),
        "Terraform was interrupted (Ctrl-C). What finished is recorded in state; run terraform apply again to \
         continue.",
    )
    .into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_stop_cuts_waiting_work_short_and_stays() {
        let s = Arc::new(StopSignal::default());
        assert_eq!(s.unless_stopped("quick", async { 7 }).await.unwrap(), 7);
        let waiting = {
            let s = s.clone();
            tokio::spawn(
                async move { s.unless_stopped("the upload", tokio::time::sleep(Duration::from_secs(600))).await },
            )
        };
        tokio::task::yield_now().await;
        s.stop();
        let r = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("promptly").expect("task");
        let d = r.unwrap_err();
        assert!(d.0[0].summary.contains("the upload was stopped"), "{d:?}");
        assert!(s.unless_stopped("later", async { 1 }).await.is_err(), "a stopped provider stays stopped");
    }
}
