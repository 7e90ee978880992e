//! What every service handler shares with the HTTP front: the parsed request ([`Req`]), path
//! segments, Google's two error shapes (Storage's legacy one and the AIP one KMS uses), and JSON
//! responses. Handlers depend on this module and on [`crate::app::App`], never on the server.

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Which error shape a service uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Storage,
    Aip,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// Storage `errors[].reason`.
    pub reason: &'static str,
}

impl ApiError {
    pub fn new(status: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), reason }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid", message)
    }
    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            401,
            "required",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "notFound", message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", message)
    }
    pub fn precondition(message: impl Into<String>) -> ApiError {
        ApiError::new(412, "conditionNotMet", message)
    }
    pub fn failed_precondition(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "failedPrecondition", message)
    }
    /// A method Google serves that the local cloud does not: 501, gRPC's UNIMPLEMENTED (google.rpc.Code
    /// maps it to HTTP 501), so a client sees a refusal rather than a missing resource.
    pub fn unimplemented(method: &str, path: &str, service: &str) -> ApiError {
        ApiError::new(
            501,
            "notImplemented",
            format!(
                "{method} {path} is not served by the local cloud's {service} API; docs/guides/design-notes.md lists the methods it serves."
            ),
        )
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "backendError", message)
    }

    fn aip_status(&self) -> &'static str {
        match (self.status, self.reason) {
            (400, "failedPrecondition") => "FAILED_PRECONDITION",
            (400, _) => "INVALID_ARGUMENT",
            (401, _) => "UNAUTHENTICATED",
            (403, _) => "PERMISSION_DENIED",
            (404, _) => "NOT_FOUND",
            (409, "aborted") => "ABORTED",
            (409, _) => "ALREADY_EXISTS",
            (412, _) => "FAILED_PRECONDITION",
            (429, _) => "RESOURCE_EXHAUSTED",
            (501, _) => "UNIMPLEMENTED",
            _ => "INTERNAL",
        }
    }

    /// The `google.rpc.Code` number of [`aip_status`](Self::aip_status), as audit entries record it
    /// (the numbers of googleapis' google/rpc/code.proto).
    pub fn rpc_code(&self) -> i32 {
        match self.aip_status() {
            "INVALID_ARGUMENT" => 3,
            "NOT_FOUND" => 5,
            "ALREADY_EXISTS" => 6,
            "PERMISSION_DENIED" => 7,
            "RESOURCE_EXHAUSTED" => 8,
            "FAILED_PRECONDITION" => 9,
            "ABORTED" => 10,
            "UNIMPLEMENTED" => 12,
            "UNAUTHENTICATED" => 16,
            _ => 13,
        }
    }

    pub fn body(&self, shape: Shape) -> Value {
        match shape {
            Shape::Storage => json!({"error": {
                "code": self.status,
                "message": self.message,
                "errors": [{"domain": "global", "reason": self.reason, "message": self.message}],
            }}),
            Shape::Aip => json!({"error": {"code": self.status, "message": self.message, "status": self.aip_status()}}),
        }
    }

    pub fn into_response(self, shape: Shape) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body(shape))).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Refuses a request body that is not an object or names a field the resource does not have, as
/// Google's JSON front ends do ("Unknown name").
pub fn check_fields(body: &Value, allowed: &[&str], what: &str) -> ApiResult<()> {
    let Some(o) = body.as_object() else {
        return Err(ApiError::bad_request(format!("Invalid JSON payload received: {what} must be an object.")));
    };
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => {
            Err(ApiError::bad_request(format!("Invalid JSON payload received. Unknown name \"{k}\" in {what}.")))
        }
        None => Ok(()),
    }
}

pub fn json_response(v: Value) -> Response {
    axum::Json(v).into_response()
}

/// RFC 3339 UTC with milliseconds, as Google writes timestamps.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `allowed_audiences` → `allowedAudiences` (proto field names to their JSON names, dotted paths
/// included); lowerCamelCase stays as it is.
pub fn lower_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// One parsed request, before its body is read.
pub struct Req {
    pub method: Method,
    /// The path as sent, still percent-encoded.
    pub raw_path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub principal: crate::iam::Identity,
    /// This local cloud's URL as the client reached it (`http://HOST`), for links in answers.
    pub base_url: String,
}

impl Req {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    pub fn query_i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.query(name)
            .map(|v| v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("Invalid value for {name}: {v}"))))
            .transpose()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Splits a raw path into percent-decoded segments.
pub fn segments(raw: &str) -> Vec<String> {
    raw.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// Percent-encodes one path segment.
pub fn encode_segment(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}
