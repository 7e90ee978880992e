//! STS v1 token exchange (`POST /v1/token`): an OIDC token in, a short-lived federated access
//! token out, after the checks Google's STS makes — the audience names an active provider of an
//! active, enabled pool; the token's signature verifies against the issuer's keys; `iss`, `aud`,
//! `exp` and `iat` hold; the attribute mapping yields a subject; the attribute condition is true.
//!
//! Refusals are OAuth errors (`{"error": "...", "error_description": "..."}`) whose description
//! names the check that failed, so a policy author can tell a wrong digest from an expired token.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dcr_attestation::cel::{
    Bindings, MAX_SUBJECT_BYTES, MappedAttributes, evaluate_condition, explain_refusal, map_attributes,
};
use dcr_attestation::claims::LOCAL_ISSUER;
use dcr_attestation::{Expectations, verify};
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

use crate::api::unix_now;
use crate::app::App;
use crate::iam::Identity;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const SUBJECT_TYPES: [&str; 2] = ["urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token"];
/// Federated tokens live one hour, as Google's.
pub const FEDERATED_TOKEN_SECS: i64 = 3600;
/// STS refuses subject tokens issued more than a day ago.
const MAX_SUBJECT_AGE_SECS: i64 = 24 * 3600;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: i64 = 60;
const FIELDS: [&str; 9] = [
    "grant_type",
    "audience",
    "scope",
    "requested_token_type",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "options",
];

/// An OAuth 2.0 error response.
#[derive(Debug, Clone, PartialEq)]
pub struct StsError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl StsError {
    fn new(error: &'static str, description: impl Into<String>) -> StsError {
        StsError { status: 400, error, description: description.into() }
    }
    fn internal(description: impl Into<String>) -> StsError {
        StsError { status: 500, error: "server_error", description: description.into() }
    }
    pub fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, axum::Json(json!({"error": self.error, "error_description": self.description}))).into_response()
    }
}

type StsResult<T> = Result<T, StsError>;

/// The request, from a form (what Google's auth libraries send) or from JSON with the discovery
/// document's camelCase names.
pub fn parse_request(content_type: &str, body: &[u8]) -> StsResult<BTreeMap<String, String>> {
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let pairs: Vec<(String, String)> = if media == "application/json" {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| StsError::new("invalid_request", format!("The request body is not JSON: {e}")))?;
        v.as_object()
            .ok_or_else(|| StsError::new("invalid_request", "The request body must be a JSON object."))?
            .iter()
            .map(|(k, v)| (camel_to_snake(k), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect()
    } else {
        url::form_urlencoded::parse(body).into_owned().collect()
    };
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        if !FIELDS.contains(&k.as_str()) {
            return Err(StsError::new("invalid_request", format!("Unknown parameter \"{k}\".")));
        }
        out.insert(k, v);
    }
    Ok(out)
}

fn camel_to_snake(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A field's value as the request log may keep it: tokens never.
fn shown<'a>(field: &str, value: &'a str) -> &'a str {
    if field.ends_with("_token") { "REDACTED" } else { value }
}

/// The form as the request log keeps it: field names and harmless values, tokens replaced.
pub fn redacted_form(fields: &BTreeMap<String, String>) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        ser.append_pair(k, shown(k, v));
    }
    ser.finish()
}

/// The request body as the request log keeps it, in the shape it was sent (form or JSON).
pub fn logged_body(content_type: &str, fields: &BTreeMap<String, String>) -> Value {
    if !content_type.starts_with("application/json") {
        return Value::String(redacted_form(fields));
    }
    Value::Object(
        fields.iter().map(|(k, v)| (crate::api::lower_camel(k), Value::String(shown(k, v).to_string()))).collect(),
    )
}

/// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/providers/PROV`
/// → (project number, pool id, provider resource name).
pub fn parse_audience(audience: &str) -> Option<(String, String, String)> {
    let name = audience.strip_prefix("//iam.googleapis.com/")?;
    let s: Vec<&str> = name.split('/').collect();
    match s.as_slice() {
        ["projects", n, "locations", "global", "workloadIdentityPools", pool, "providers", prov]
            if !n.is_empty() && !pool.is_empty() && !prov.is_empty() =>
        {
            Some((n.to_string(), pool.to_string(), name.to_string()))
        }
        _ => None,
    }
}

fn invalid_target(audience: &str, why: &str) -> StsError {
    StsError::new(
        "invalid_target",
        format!(
            "The target service indicated by the \"audience\" parameter is invalid: {why}. This might be because the pool \
             or provider is disabled or deleted, or because it does not exist. (audience {audience})"
        ),
    )
}

/// Where the provider's keys come from: inline `jwksJson`, this local cloud's own simulated
/// issuer, or the issuer's OIDC discovery document.
async fn provider_jwks(app: &App, provider: &Value) -> StsResult<JwkSet> {
    let oidc = &provider["oidc"];
    if let Some(inline) = oidc["jwksJson"].as_str() {
        return serde_json::from_str(inline)
            .map_err(|e| StsError::internal(format!("the provider's jwksJson is not a JWK set: {e}")));
    }
    let issuer = oidc["issuerUri"].as_str().unwrap_or("");
    if dcr_attestation::claims::same_issuer(issuer, LOCAL_ISSUER) {
        return app.store.call(crate::issuer::jwks).await.map_err(|e| StsError::internal(e.message));
    }
    dcr_gcp::oidc::issuer_jwks(&app.http, issuer)
        .await
        .map_err(|e| StsError::new("invalid_grant", format!("Cannot fetch the signing keys of issuer {issuer}: {e}")))
}

/// Runs the exchange; on success returns the response body.
pub async fn exchange(app: &App, fields: BTreeMap<String, String>) -> StsResult<Value> {
    let field = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
    if field("grant_type") != GRANT_TYPE {
        return Err(StsError::new(
            "unsupported_grant_type",
            format!("grant_type must be {GRANT_TYPE}, not {:?}.", field("grant_type")),
        ));
    }
    if field("requested_token_type") != ACCESS_TOKEN {
        return Err(StsError::new("invalid_request", format!("requested_token_type must be {ACCESS_TOKEN}.")));
    }
    if !SUBJECT_TYPES.contains(&field("subject_token_type")) {
        return Err(StsError::new(
            "invalid_request",
            format!("subject_token_type must be one of {}.", SUBJECT_TYPES.join(", ")),
        ));
    }
    let token = field("subject_token").to_string();
    if token.is_empty() {
        return Err(StsError::new("invalid_request", "subject_token is required."));
    }
    let audience = field("audience").to_string();
    let (number, pool_id, provider_name) = parse_audience(&audience).ok_or_else(|| {
        invalid_target(&audience, "it is not //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER")
    })?;
    let lookup = provider_name.clone();
    let found = app
        .store
        .call(move |c| crate::wif::pool_and_provider(c, &lookup))
        .await
        .map_err(|e| StsError::internal(e.message))?;
    let (pool, provider) = found.ok_or_else(|| invalid_target(&audience, "no such provider"))?;
    if pool["state"] == "DELETED" || provider["state"] == "DELETED" {
        return Err(invalid_target(&audience, "the pool or provider is deleted"));
    }
    if pool["disabled"] == json!(true) || provider["disabled"] == json!(true) {
        return Err(invalid_target(&audience, "the pool or provider is disabled"));
    }

    let jwks = provider_jwks(app, &provider).await?;
    let issuer = provider["oidc"]["issuerUri"].as_str().unwrap_or("").to_string();
    let mut allowed: Vec<String> = provider["oidc"]["allowedAudiences"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if allowed.is_empty() {
        // With no allowed audiences the token must name the provider itself.
        allowed = vec![
            format!("//iam.googleapis.com/{provider_name}"),
            format!("https://iam.googleapis.com/{provider_name}"),
        ];
    }
    let expect = Expectations {
        issuer,
        audiences: allowed,
        now: Some(unix_now()),
        leeway: LEEWAY_SECS,
        max_age: Some(MAX_SUBJECT_AGE_SECS),
    };
    let claims = verify(&token, &jwks, &expect)
        .map_err(|e| StsError::new("invalid_grant", format!("The subject token was refused: {e}.")))?;

    let mapping: BTreeMap<String, String> =
        serde_json::from_value(provider["attributeMapping"].clone()).unwrap_or_default();
    let MappedAttributes { google, attribute } = map_attributes(&mapping, &claims)
        .map_err(|e| StsError::new("invalid_grant", format!("The attribute mapping failed: {e}.")))?;
    let subject = google.get("subject").cloned().unwrap_or_default();
    if subject.is_empty() {
        return Err(StsError::new("invalid_grant", "The attribute mapping gave no google.subject for this token."));
    }
    if subject.len() > MAX_SUBJECT_BYTES {
        return Err(StsError::new(
            "invalid_grant",
            format!("The mapped google.subject is {} bytes; at most {MAX_SUBJECT_BYTES} are allowed.", subject.len()),
        ));
    }
    if let Some(condition) = provider["attributeCondition"].as_str() {
        let b = Bindings { assertion: claims.clone(), google: google.clone(), attribute: attribute.clone() };
        match evaluate_condition(condition, &b) {
            Ok(true) => {}
            Ok(false) => {
                let failed = explain_refusal(condition, &b).unwrap_or_else(|| condition.to_string());
                return Err(StsError::new(
                    "unauthorized_client",
                    format!(
                        "The given credential is rejected by the attribute condition: `{failed}` is not true for this token."
                    ),
                ));
            }
            Err(e) => {
                return Err(StsError::new(
                    "unauthorized_client",
                    format!(
                        "The given credential is rejected by the attribute condition: it could not be evaluated ({e})."
                    ),
                ));
            }
        }
    }

    let pool_name = format!("projects/{number}/locations/global/workloadIdentityPools/{pool_id}");
    let identity = federated_identity(&pool_name, &subject, &google, &attribute);
    let ttl = app.federated_token_secs;
    let access_token = app
        .store
        .call(move |c| crate::tokens::mint_federated(c, &identity, &number, &pool_id, ttl))
        .await
        .map_err(|e| StsError::internal(e.message))?;
    Ok(json!({
        "access_token": access_token,
        "issued_token_type": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": ttl,
    }))
}

/// The principal a federated token acts as, and the principal sets it belongs to.
pub fn federated_identity(
    pool_name: &str,
    subject: &str,
    google: &BTreeMap<String, String>,
    attribute: &BTreeMap<String, String>,
) -> Identity {
    let base = format!("iam.googleapis.com/{pool_name}");
    let mut sets = vec![format!("principalSet://{base}/*")];
    sets.extend(attribute.iter().map(|(k, v)| format!("principalSet://{base}/attribute.{k}/{v}")));
    if let Some(groups) = google.get("groups") {
        sets.extend(groups.split(',').filter(|g| !g.is_empty()).map(|g| format!("principalSet://{base}/group/{g}")));
    }
    Identity { principal: format!("principal://{base}/subject/{subject}"), sets }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_name_a_provider_by_project_number() {
        let (n, pool, name) = parse_audience(
            "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/dcr-p/providers/attestation",
        )
        .unwrap();
        assert_eq!((n.as_str(), pool.as_str()), ("123", "dcr-p"));
        assert!(name.ends_with("/providers/attestation"));
        assert!(parse_audience("https://sts.googleapis.com").is_none());
        assert!(
            parse_audience("//iam.googleapis.com/projects/123/locations/us/workloadIdentityPools/p/providers/x")
                .is_none()
        );
    }

    #[test]
    fn requests_parse_from_forms_and_camel_case_json_and_log_without_tokens() {
        let f = parse_request(
            "application/x-www-form-urlencoded",
            b"grant_type=g&subject_token=secret.jwt.value&audience=a",
        )
        .unwrap();
        assert_eq!(f["subject_token"], "secret.jwt.value");
        let logged = redacted_form(&f);
        assert!(!logged.contains("secret") && logged.contains("subject_token=REDACTED"), "{logged}");
        let j = parse_request("application/json", br#"{"grantType":"g","subjectToken":"t"}"#).unwrap();
        assert_eq!(j["grant_type"], "g");
        assert_eq!(logged_body("application/json", &j), json!({"grantType": "g", "subjectToken": "REDACTED"}));
        assert!(parse_request("application/x-www-form-urlencoded", b"bogus=1").is_err());
    }

    #[test]
    fn federated_identities_belong_to_their_pool_and_attribute_sets() {
        let attrs = BTreeMap::from([("image_digest".to_string(), "sha256:ab".to_string())]);
        let id =
            federated_identity("projects/1/locations/global/workloadIdentityPools/p", "vm", &BTreeMap::new(), &attrs);
        assert_eq!(
            id.principal,
            "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/vm"
        );
        assert!(id.sets.contains(
            &"principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*".to_string()
        ));
        assert!(id.sets.iter().any(|s| s.ends_with("/attribute.image_digest/sha256:ab")));
    }
}
