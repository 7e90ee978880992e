//! The HTTP front: one port, services routed by path prefix, bearer-token authentication, and the
//! optional request log the conformance test reads.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request};
use axum::response::Response;
use serde_json::Value;

use crate::api::{ApiError, Req, Shape, json_response};
use crate::app::App;
use crate::system::Alt;
use crate::tokens;

/// The URL the client used to reach us: its Host header when that is a plain `host[:port]`, else
/// our own endpoint.
fn base_url(headers: &HeaderMap, endpoint: &str) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)));
    match host {
        Some(h) => format!("http://{h}"),
        None => endpoint.to_string(),
    }
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

const MAX_JSON_BODY: usize = 8 << 20;

pub async fn handle(State(app): State<Arc<App>>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let raw_path = parts.uri.path().to_string();
    let query = parse_query(parts.uri.query());
    let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (service, shape) = if raw_path.starts_with("/upload/storage/v1/") {
        ("storage-upload", Shape::Storage)
    } else if raw_path.starts_with("/download/storage/v1/") {
        // google-cloud-storage's media path (blob.py `_DOWNLOAD_URL_TEMPLATE`), and `mediaLink`'s.
        ("storage-download", Shape::Storage)
    } else if raw_path.starts_with("/storage/v1/") {
        ("storage", Shape::Storage)
    } else if raw_path.starts_with("/cloudkms/v1/") {
        ("cloudkms", Shape::Aip)
    } else if raw_path.starts_with("/iam/v1/") {
        ("iam", Shape::Aip)
    } else if raw_path.starts_with("/cloudresourcemanager/v1/") {
        ("cloudresourcemanager", Shape::Aip)
    } else if raw_path.starts_with("/artifactregistry/v1/") {
        ("artifactregistry", Shape::Aip)
    } else if raw_path.starts_with("/compute/v1/") {
        ("compute", Shape::Storage)
    } else if raw_path.starts_with("/logging/v2/") {
        ("logging", Shape::Aip)
    } else if raw_path.starts_with("/sts/v1/") {
        ("sts", Shape::Aip)
    } else if raw_path.starts_with(crate::issuer::HTTP_PREFIX) {
        ("issuer", Shape::Aip)
    } else {
        ("unknown", Shape::Aip)
    };
    let mut logged_body = Value::Null;

    // STS and the issuer's OIDC documents are public: they take no bearer token.
    match service {
        "sts" => {
            let (response, logged) = sts_request(&app, &parts, &raw_path, &content_type, body).await;
            crate::request_log::record(&app, service, &parts, &raw_path, &content_type, logged, &response);
            return response;
        }
        // Not a Google API (Google's issuer has no discovery document to check it against), so
        // not logged for the conformance check.
        "issuer" => return issuer_request(&app, &parts, &raw_path).await.unwrap_or_else(|e| e.into_response(shape)),
        _ => {}
    }

    let result: Result<Response, ApiError> = async {
        let token = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(ApiError::unauthenticated)?
            .to_string();
        let principal = tokens::identity_for(&app.store, &token).await?.ok_or_else(ApiError::unauthenticated)?;
        let system = crate::system::parse(&query)?;
        let r = Req {
            method: parts.method.clone(),
            raw_path: raw_path.clone(),
            query,
            headers: parts.headers.clone(),
            principal,
            base_url: base_url(&parts.headers, &app.endpoint),
        };
        let media = system.alt == Alt::Media;
        let response = match service {
            "storage-upload" => crate::storage::upload(&app, &r, body).await?,
            "storage" | "storage-download" if media => crate::storage::download(&app, &r).await?,
            "storage-download" => {
                return Err(ApiError::bad_request(
                    "The download path serves object data only: add alt=media, or read the object's metadata at /storage/v1/.",
                ));
            }
            _ if media => {
                return Err(ApiError::bad_request("alt=media is only supported on Storage object downloads."));
            }
            "cloudresourcemanager" => crate::resource_manager::handle(&app, &r).await?,
            "storage" | "cloudkms" | "iam" | "compute" | "artifactregistry" | "logging" => {
                let bytes = axum::body::to_bytes(body, MAX_JSON_BODY)
                    .await
                    .map_err(|e| ApiError::bad_request(format!("Cannot read the request body: {e}")))?;
                let mut json: Option<Value> = if bytes.is_empty() {
                    None
                } else {
                    Some(
                        serde_json::from_slice(&bytes)
                            .map_err(|e| ApiError::bad_request(format!("Invalid JSON payload received. {e}")))?,
                    )
                };
                logged_body = json.clone().unwrap_or(Value::Null);
                match service {
                    "storage" => crate::storage::handle(&app, &r, json).await?,
                    "cloudkms" => {
                        if let Some(body) = json.as_mut() {
                            crate::kms::enums_from_numbers(body)?;
                        }
                        crate::kms::handle(&app, &r, json).await?
                    }
                    "compute" => crate::compute::handle(&app, &r, json).await?,
                    "artifactregistry" => crate::artifact_registry::handle(&app, &r, json).await?,
                    "logging" => crate::logging::handle(&app, &r, json).await?,
                    _ => crate::wif::handle(&app, &r, json).await?,
                }
            }
            _ => return Err(ApiError::not_found(format!("No service serves {raw_path}"))),
        };
        let numbers = system.enums_as_numbers && service == "cloudkms";
        if media || (!numbers && system.fields.is_none()) {
            return Ok(response);
        }
        reshape_json(response, |v| {
            let v = if numbers { crate::kms::enums_to_numbers(v) } else { v };
            match &system.fields {
                Some(selection) => selection.apply(v),
                None => v,
            }
        })
        .await
    }
    .await;

    let response = result.unwrap_or_else(|e| e.into_response(shape));
    let logged_body = if content_type.starts_with("application/json") { logged_body } else { Value::Null };
    crate::request_log::record(&app, service, &parts, &raw_path, &content_type, logged_body, &response);
    response
}

/// Rewrites a successful JSON answer (`fields`, enum encoding); anything else passes as it is.
async fn reshape_json(response: Response, f: impl FnOnce(Value) -> Value) -> Result<Response, ApiError> {
    let json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !response.status().is_success() || !json {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.map_err(|e| ApiError::internal(e.to_string()))?;
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    };
    let text = serde_json::to_vec(&f(v)).map_err(|e| ApiError::internal(e.to_string()))?;
    parts.headers.remove("content-length");
    Ok(Response::from_parts(parts, Body::from(text)))
}

/// `POST /sts/v1/token`; returns the response and what the request log keeps of the body (the
/// form with its tokens redacted).
async fn sts_request(
    app: &App,
    parts: &axum::http::request::Parts,
    raw_path: &str,
    content_type: &str,
    body: Body,
) -> (Response, Value) {
    if raw_path != "/sts/v1/token" || parts.method != Method::POST {
        return (
            ApiError::not_found(format!("No STS method serves {} {raw_path}", parts.method)).into_response(Shape::Aip),
            Value::Null,
        );
    }
    let bytes = match axum::body::to_bytes(body, MAX_JSON_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return (
                ApiError::bad_request(format!("Cannot read the request body: {e}")).into_response(Shape::Aip),
                Value::Null,
            );
        }
    };
    let fields = match crate::sts::parse_request(content_type, &bytes) {
        Ok(f) => f,
        Err(e) => return (e.into_response(), Value::Null),
    };
    let logged = crate::sts::logged_body(content_type, &fields);
    let response = match crate::sts::exchange(app, fields).await {
        Ok(v) => json_response(v),
        Err(e) => e.into_response(),
    };
    (response, logged)
}

/// The simulated issuer's OIDC discovery document and JWKS.
async fn issuer_request(app: &App, parts: &axum::http::request::Parts, raw_path: &str) -> Result<Response, ApiError> {
    if parts.method != Method::GET {
        return Err(ApiError::not_found("Method not supported."));
    }
    let rest = &raw_path[crate::issuer::HTTP_PREFIX.len()..];
    match rest {
        "/.well-known/openid-configuration" => {
            let host = parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
            Ok(json_response(crate::issuer::discovery(&format!("http://{host}"))))
        }
        "/jwks" => {
            let set = app.store.call(crate::issuer::jwks).await?;
            Ok(json_response(serde_json::to_value(set).map_err(|e| ApiError::internal(e.to_string()))?))
        }
        _ => Err(ApiError::not_found(format!("No issuer document at {raw_path}"))),
    }
}
