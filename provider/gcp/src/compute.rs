//! Compute Engine v1, the calls that run Confidential Space VMs: instances insert/get/stop/delete,
//! the serial console, and zone operations (compute's own LRO shape: `status` PENDING, RUNNING,
//! DONE, with `error.errors[]` on failure). Mutations carry a `requestId`, so a retried insert or
//! delete is de-duplicated by the server and may be retried safely.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::error::GcpError;
use crate::operation::poll_interval;
use crate::retry::Idempotency::Idempotent;
use crate::transport::{Transport, segment};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneOperation {
    pub name: String,
    #[serde(default)]
    pub status: String,
    pub error: Option<OperationErrors>,
    #[serde(default)]
    pub http_error_status_code: Option<i32>,
    #[serde(default)]
    pub http_error_message: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct OperationErrors {
    #[serde(default)]
    pub errors: Vec<OperationError>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct OperationError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SerialPortOutput {
    #[serde(default)]
    pub contents: String,
    /// int64 as a string, as Compute encodes it.
    #[serde(default)]
    pub next: String,
}

#[derive(Clone)]
pub struct ComputeClient {
    t: Arc<Transport>,
    /// `https://compute.googleapis.com/compute/v1/` or the local cloud's.
    base: String,
}

impl ComputeClient {
    pub fn new(t: Arc<Transport>, base: &str) -> ComputeClient {
        ComputeClient { t, base: base.to_string() }
    }

    fn zone_url(&self, project: &str, zone: &str) -> String {
        format!("{}projects/{}/zones/{}/", self.base, segment(project), segment(zone))
    }

    /// Creates the instance `body` describes and waits until the insert is done.
    pub async fn insert_instance(&self, project: &str, zone: &str, body: &Value) -> Result<(), GcpError> {
        let name = body["name"].as_str().unwrap_or("");
        let what = format!("create instance {name} in {project}/{zone}");
        let url = format!("{}instances", self.zone_url(project, zone));
        let rid = request_id();
        let op: ZoneOperation =
            self.t.json(&what, Idempotent, |c| c.post(&url).query(&[("requestId", &rid)]).json(body)).await?;
        self.wait(project, zone, &what, op).await
    }

    /// The instance, or `None` when it does not exist.
    pub async fn get_instance(&self, project: &str, zone: &str, name: &str) -> Result<Option<Value>, GcpError> {
        let url = format!("{}instances/{}", self.zone_url(project, zone), segment(name));
        self.t.json_opt(&format!("read instance {name} in {project}/{zone}"), |c| c.get(&url)).await
    }

    /// Deletes the instance and waits; one that is already gone is not an error.
    pub async fn delete_instance(&self, project: &str, zone: &str, name: &str) -> Result<(), GcpError> {
        self.mutate(project, zone, name, "delete", reqwest::Method::DELETE, "").await
    }

    /// Stops the instance and waits; one that is already gone is not an error.
    pub async fn stop_instance(&self, project: &str, zone: &str, name: &str) -> Result<(), GcpError> {
        self.mutate(project, zone, name, "stop", reqwest::Method::POST, "/stop").await
    }

    async fn mutate(
        &self,
        project: &str,
        zone: &str,
        name: &str,
        verb: &str,
        method: reqwest::Method,
        suffix: &str,
    ) -> Result<(), GcpError> {
        let what = format!("{verb} instance {name} in {project}/{zone}");
        let url = format!("{}instances/{}{suffix}", self.zone_url(project, zone), segment(name));
        let rid = request_id();
        match self
            .t
            .json::<ZoneOperation>(&what, Idempotent, |c| c.request(method.clone(), &url).query(&[("requestId", &rid)]))
            .await
        {
            Ok(op) => self.wait(project, zone, &what, op).await,
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Serial port 1 from byte `start`.
    pub async fn serial_output(
        &self,
        project: &str,
        zone: &str,
        name: &str,
        start: u64,
    ) -> Result<SerialPortOutput, GcpError> {
        let url = format!("{}instances/{}/serialPort", self.zone_url(project, zone), segment(name));
        let start = start.to_string();
        self.t
            .json(&format!("read the serial console of {name}"), Idempotent, |c| {
                c.get(&url).query(&[("port", "1"), ("start", start.as_str())])
            })
            .await
    }

    /// Polls a zone operation until DONE; a failed operation becomes [`GcpError::Operation`].
    async fn wait(&self, project: &str, zone: &str, what: &str, op: ZoneOperation) -> Result<(), GcpError> {
        let mut op = op;
        let mut polls = 0;
        while op.status != "DONE" {
            tokio::time::sleep(poll_interval(polls)).await;
            polls += 1;
            let url = format!("{}operations/{}", self.zone_url(project, zone), segment(&op.name));
            op = self.t.json(&format!("{what}: poll {}", op.name), Idempotent, |c| c.get(&url)).await?;
        }
        match op.error.map(|e| e.errors).unwrap_or_default().first() {
            None => Ok(()),
            Some(e) => Err(GcpError::Operation {
                operation: what.to_string(),
                code: op.http_error_status_code.map(http_to_rpc).unwrap_or(2),
                message: format!("{} ({})", e.message, e.code),
            }),
        }
    }
}

/// A fresh request id: a random UUID v4, as Compute expects.
fn request_id() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// google.rpc.Code for an HTTP status, so operation errors classify like call errors.
fn http_to_rpc(status: i32) -> i32 {
    match status {
        400 => 3,
        403 => 7,
        404 => 5,
        409 => 6,
        412 => 9,
        429 => 8,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, request_id());
    }
}
