//! The optional request log: one JSON line per request (service, method, path, query, JSON body,
//! status), which the test suite's conformance check reads against Google's discovery documents.
//!
//! It must not become a copy of what the clean room protects. Bodies and queries are logged with
//! every secret replaced — KMS plaintexts (data keys), ciphertexts and their AAD, and tokens of
//! every kind — by a marker of the same JSON type and format, so the conformance check still sees
//! a well-formed request. (STS forms are redacted where they are parsed, in [`crate::sts`].)

use std::io::Write;
use std::path::Path;

use axum::response::Response;
use serde_json::{Value, json};

use crate::app::App;

/// What a redacted `format: byte` field reads as: base64 of `REDACTED`.
pub const REDACTED_BYTES: &str = "UkVEQUNURUQ=";
pub const REDACTED: &str = "REDACTED";

/// Base64 fields of KMS requests that carry key material or protected data.
const SECRET_BYTES: [&str; 3] = ["plaintext", "ciphertext", "additionalAuthenticatedData"];
/// Fields and query parameters that carry credentials.
const SECRET_STRINGS: [&str; 8] =
    ["subjectToken", "accessToken", "access_token", "idToken", "id_token", "token", "assertion", "refreshToken"];

/// Appends the request's line to the app's log, if it keeps one.
pub fn record(
    app: &App,
    service: &str,
    parts: &axum::http::request::Parts,
    raw_path: &str,
    content_type: &str,
    body: Value,
    response: &Response,
) {
    if let Some(log) = &app.request_log {
        let line = json!({
            "service": service,
            "method": parts.method.as_str(),
            "path": raw_path,
            "query": redacted(query_map(parts.uri.query())),
            "content_type": content_type,
            "body": redacted(body),
            "status": response.status().as_u16(),
        });
        append_line(log, &line);
    }
}

/// `v` with every secret field, at any depth, replaced by its marker.
pub fn redacted(mut v: Value) -> Value {
    redact(&mut v);
    v
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(fields) => {
            for (k, field) in fields.iter_mut() {
                if SECRET_BYTES.contains(&k.as_str()) && field.is_string() {
                    *field = json!(REDACTED_BYTES);
                } else if SECRET_STRINGS.contains(&k.as_str()) {
                    *field = match field {
                        Value::Array(items) => Value::Array(items.iter().map(|_| json!(REDACTED)).collect()),
                        _ => json!(REDACTED),
                    };
                } else {
                    redact(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn query_map(q: Option<&str>) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in
        q.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect::<Vec<_>>()).unwrap_or_default()
    {
        m.entry(k).or_insert_with(|| Value::Array(Vec::new())).as_array_mut().expect("array").push(Value::String(v));
    }
    Value::Object(m)
}

/// Appends one line with a single write on an O_APPEND file, so processes sharing the log do not
/// interleave within a line.
fn append_line(path: &Path, line: &Value) {
    let mut text = line.to_string();
    text.push('\n');
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_material_and_tokens_are_replaced_at_any_depth() {
        let v = redacted(json!({
            "plaintext": "c2VjcmV0LWtleQ==",
            "additionalAuthenticatedData": "YWFk",
            "name": "projects/p/locations/l/keyRings/r",
            "nested": [{"ciphertext": "Y3Q=", "subjectToken": "eyJhbGciOi.x.y"}],
            "access_token": ["dcrl.abc"],
        }));
        assert_eq!(
            v,
            json!({
                "plaintext": REDACTED_BYTES,
                "additionalAuthenticatedData": REDACTED_BYTES,
                "name": "projects/p/locations/l/keyRings/r",
                "nested": [{"ciphertext": REDACTED_BYTES, "subjectToken": REDACTED}],
                "access_token": [REDACTED],
            })
        );
        use base64::Engine;
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(REDACTED_BYTES).unwrap(), b"REDACTED");
    }
}
