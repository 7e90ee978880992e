//! One error type for every Google API call, keeping Google's own message.

use reqwest::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum GcpError {
    /// Google answered with an error status. `message` is Google's message, verbatim.
    #[error("{operation}: {status} {}{message}", reason.as_deref().map(|r| format!("({r}) ")).unwrap_or_default())]
    Api { operation: String, status: StatusCode, reason: Option<String>, message: String },
    /// The request never got an answer (connection refused, reset, timed out).
    #[error("{operation}: could not reach {url}: {source}")]
    Network { operation: String, url: String, source: reqwest::Error },
    /// The answer did not have the shape the API documents.
    #[error("{operation}: unexpected response: {detail}")]
    Decode { operation: String, detail: String },
    #[error(
        "could not obtain Google Cloud credentials: {0}. Run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, or set GOOGLE_OAUTH_ACCESS_TOKEN"
    )]
    Credentials(String),
    /// A long-running operation finished with an error (`code` is a google.rpc.Code).
    #[error("{operation}: the operation failed: {message} (code {code})")]
    Operation { operation: String, code: i32, message: String },
    /// Reading local data to send failed.
    #[error("{operation}: {source}")]
    Io { operation: String, source: std::io::Error },
}

impl GcpError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            GcpError::Api { status, .. } => Some(*status),
            GcpError::Operation { code, .. } => rpc_code_status(*code),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(StatusCode::CONFLICT)
    }
    pub fn is_precondition_failed(&self) -> bool {
        self.status() == Some(StatusCode::PRECONDITION_FAILED)
    }
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(StatusCode::FORBIDDEN)
    }
}

/// The HTTP status Google's APIs use for a google.rpc.Code, so an operation's error reads like
/// the same error answered directly.
fn rpc_code_status(code: i32) -> Option<StatusCode> {
    Some(match code {
        3 | 9 | 11 => StatusCode::BAD_REQUEST,
        5 => StatusCode::NOT_FOUND,
        6 | 10 => StatusCode::CONFLICT,
        7 => StatusCode::FORBIDDEN,
        8 => StatusCode::TOO_MANY_REQUESTS,
        16 => StatusCode::UNAUTHORIZED,
        13..=15 => StatusCode::INTERNAL_SERVER_ERROR,
        _ => return None,
    })
}

/// Extracts the message and reason from either of Google's error bodies: the Storage JSON API's
/// `{"error":{"code","message","errors":[{"reason",..}]}}` or the AIP `{"error":{"code","message",
/// "status"}}`. Falls back to the raw body when it is neither.
pub fn parse_error_body(body: &str) -> (String, Option<String>) {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    match err {
        Some(e) if e.is_object() => {
            let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("").to_string();
            let reason = e
                .get("status")
                .and_then(|s| s.as_str())
                .or_else(|| e.pointer("/errors/0/reason").and_then(|r| r.as_str()))
                .map(str::to_string);
            (message, reason)
        }
        // OAuth-style errors (STS): {"error":"invalid_grant","error_description":"..."}
        Some(serde_json::Value::String(code)) => {
            let desc = parsed.as_ref().and_then(|v| v.get("error_description")).and_then(|d| d.as_str()).unwrap_or("");
            (desc.to_string(), Some(code.clone()))
        }
        _ => (body.chars().take(2000).collect(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_error_shape() {
        let (m, r) = parse_error_body(
            r#"{"error":{"code":409,"message":"Bucket exists","errors":[{"domain":"global","reason":"conflict","message":"Bucket exists"}]}}"#,
        );
        assert_eq!(m, "Bucket exists");
        assert_eq!(r.as_deref(), Some("conflict"));
    }

    #[test]
    fn aip_error_shape() {
        let (m, r) = parse_error_body(r#"{"error":{"code":404,"message":"KeyRing not found","status":"NOT_FOUND"}}"#);
        assert_eq!(m, "KeyRing not found");
        assert_eq!(r.as_deref(), Some("NOT_FOUND"));
    }

    #[test]
    fn oauth_error_shape_and_plain_text() {
        let (m, r) = parse_error_body(r#"{"error":"invalid_grant","error_description":"condition failed"}"#);
        assert_eq!((m.as_str(), r.as_deref()), ("condition failed", Some("invalid_grant")));
        assert_eq!(parse_error_body("upstream timeout").0, "upstream timeout");
    }

    #[test]
    fn display_keeps_googles_message() {
        let e = GcpError::Api {
            operation: "create bucket \"b\"".into(),
            status: StatusCode::CONFLICT,
            reason: Some("conflict".into()),
            message: "Your previous request to create the named bucket succeeded and you already own it.".into(),
        };
        let s = e.to_string();
        assert!(s.contains("create bucket") && s.contains("409") && s.contains("already own it"), "{s}");
    }
}
