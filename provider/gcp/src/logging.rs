//! Cloud Logging v2, `entries.list`: reading Cloud Audit Logs, the record Google keeps of who used
//! a key (https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list).
//!
//! Only the fields of an audit entry dcr reads are typed (`google.cloud.audit.AuditLog` in
//! `protoPayload`, https://cloud.google.com/logging/docs/reference/audit/auditlog/rest/Shared.Types/AuditLog);
//! serde ignores the rest.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::GcpError;
use crate::retry::Idempotency::Idempotent;
use crate::transport::Transport;

/// The log Data Access audit entries go to in `project`: Cloud Audit Logs' `data_access` log,
/// its `/` URL-encoded as Google names it (https://cloud.google.com/logging/docs/audit#types).
pub fn data_access_log(project: &str) -> String {
    format!("projects/{project}/logs/cloudaudit.googleapis.com%2Fdata_access")
}

/// A Logging query language string literal (https://cloud.google.com/logging/docs/view/logging-query-language#values_and_conversions).
pub fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The filter that selects the Data Access entries of Cloud KMS `Decrypt` calls on `key`
/// (`projects/P/locations/L/keyRings/R/cryptoKeys/K`), in `project`'s audit log.
pub fn key_decrypts_filter(project: &str, key: &str) -> String {
    [
        format!("logName={}", quoted(&data_access_log(project))),
        "protoPayload.serviceName=\"cloudkms.googleapis.com\"".to_string(),
        "protoPayload.methodName=\"Decrypt\"".to_string(),
        format!("protoPayload.resourceName={}", quoted(key)),
    ]
    .join(" AND ")
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    #[serde(default)]
    pub log_name: String,
    #[serde(default)]
    pub insert_id: String,
    /// RFC 3339.
    #[serde(default)]
    pub timestamp: String,
    pub proto_payload: Option<AuditLog>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditLog {
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub method_name: String,
    #[serde(default)]
    pub resource_name: String,
    #[serde(default)]
    pub authentication_info: AuthenticationInfo,
    /// Absent or code 0 when the call succeeded; else a `google.rpc.Status`.
    pub status: Option<RpcStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationInfo {
    /// A Google account or service account.
    pub principal_email: Option<String>,
    /// Any other principal, e.g. a workload identity pool's
    /// `principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/subject/S`.
    pub principal_subject: Option<String>,
}

impl AuthenticationInfo {
    /// Who called, in whichever field Google put them.
    pub fn principal(&self) -> String {
        self.principal_email.clone().or_else(|| self.principal_subject.clone()).unwrap_or_default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RpcStatus {
    #[serde(default)]
    pub code: i32,
    #[serde(default)]
    pub message: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest<'a> {
    resource_names: &'a [String],
    filter: &'a str,
    order_by: &'static str,
    page_size: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    #[serde(default)]
    entries: Vec<LogEntry>,
    next_page_token: Option<String>,
}

/// Page size asked for: entries.list's maximum is 1000.
const PAGE_SIZE: i32 = 1000;

pub struct LoggingClient {
    t: Arc<Transport>,
    base: String,
}

impl LoggingClient {
    pub fn new(t: Arc<Transport>, base: &str) -> LoggingClient {
        LoggingClient { t, base: base.to_string() }
    }

    /// Every entry of `resource_names` (`projects/P`) matching `filter`, oldest first. An empty
    /// page with a next page token means Logging has not finished searching: it is followed.
    pub async fn list_entries(&self, resource_names: &[String], filter: &str) -> Result<Vec<LogEntry>, GcpError> {
        let url = format!("{}entries:list", self.base);
        let operation = format!("list log entries of {}", resource_names.join(", "));
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let body =
                ListRequest { resource_names, filter, order_by: "timestamp asc", page_size: PAGE_SIZE, page_token };
            // entries.list reads only: safe to retry.
            let page: ListResponse = self.t.json(&operation, Idempotent, |c| c.post(&url).json(&body)).await?;
            out.extend(page.entries);
            match page.next_page_token {
                Some(t) if !t.is_empty() => page_token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decrypt_filter_names_the_data_access_log_and_the_key() {
        let key = "projects/p/locations/global/keyRings/r/cryptoKeys/k";
        assert_eq!(
            key_decrypts_filter("p", key),
            "logName=\"projects/p/logs/cloudaudit.googleapis.com%2Fdata_access\" AND \
             protoPayload.serviceName=\"cloudkms.googleapis.com\" AND protoPayload.methodName=\"Decrypt\" AND \
             protoPayload.resourceName=\"projects/p/locations/global/keyRings/r/cryptoKeys/k\""
        );
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn an_audit_entry_parses_from_googles_shape() {
        // The shape of a Cloud KMS Data Access entry, as https://cloud.google.com/kms/docs/logging shows one.
        let entry: LogEntry = serde_json::from_value(serde_json::json!({
            "protoPayload": {
                "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "status": {},
                "authenticationInfo": {"principalSubject": "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s"},
                "requestMetadata": {"callerIp": "10.0.0.2"},
                "serviceName": "cloudkms.googleapis.com",
                "methodName": "Decrypt",
                "authorizationInfo": [{"resource": "projects/p/locations/global/keyRings/r/cryptoKeys/k",
                                       "permission": "cloudkms.cryptoKeyVersions.useToDecrypt", "granted": true}],
                "resourceName": "projects/p/locations/global/keyRings/r/cryptoKeys/k",
                "request": {"@type": "type.googleapis.com/google.cloud.kms.v1.DecryptRequest"}
            },
            "insertId": "x1",
            "resource": {"type": "cloudkms_cryptokey", "labels": {"project_id": "p"}},
            "timestamp": "2026-12-05T06:00:00.123456Z",
            "severity": "INFO",
            "logName": "projects/p/logs/cloudaudit.googleapis.com%2Fdata_access",
            "receiveTimestamp": "2026-12-05T06:00:01Z"
        }))
        .unwrap();
        let audit = entry.proto_payload.unwrap();
        assert_eq!(audit.method_name, "Decrypt");
        assert!(audit.authentication_info.principal().ends_with("/subject/s"));
        assert_eq!(audit.status.unwrap().code, 0);
    }
}
