//! Cloud KMS v1 subset: key rings, symmetric crypto keys and their versions, encrypt/decrypt with
//! real AES-256-GCM, version destruction, and IAM on key rings and keys.
//!
//! [`handle`] is the route table: it parses `projects/P/locations/L/…[:verb]` once and hands each
//! method to a small handler in the file of its resource. Handlers return the JSON answer;
//! permission checks ([`Scope::require`]) run inside the same store call as the read or write.

mod crypto_keys;
mod encryption;
mod key_rings;
mod policies;
mod rows;
mod versions;
mod wire;

use axum::response::Response;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, Req, json_response, segments};
use crate::app::App;
use crate::store::sql;

pub use wire::{enums_from_numbers, enums_to_numbers};

/// Default destroy-scheduled duration: 30 days, as Google's default.
pub const DEFAULT_DESTROY_SCHEDULED: &str = "2592000s";

pub fn valid_id(id: &str) -> bool {
    (1..=63).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub fn valid_location(l: &str) -> bool {
    !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Splits `name:verb` in the last path segment.
fn split_verb(seg: &str) -> (&str, Option<&str>) {
    match seg.split_once(':') {
        Some((a, v)) => (a, Some(v)),
        None => (seg, None),
    }
}

/// A request's path below `cloudkms/v1/projects/P/locations/L/`, its custom verb taken off the
/// last segment: `(["keyRings", "r", "cryptoKeys", "k"], Some("encrypt"))`.
fn route_of(segments: &[String]) -> Option<(&str, &str, Vec<&str>, Option<&str>)> {
    let s: Vec<&str> = segments.iter().skip(2).map(String::as_str).collect(); // after cloudkms/v1
    let ["projects", project, "locations", location, rest @ ..] = s.as_slice() else { return None };
    let (last, verb) = split_verb(rest.last()?);
    let mut path = rest.to_vec();
    *path.last_mut()? = last;
    Some((project, location, path, verb))
}

pub async fn handle(app: &App, r: &Req, body: Option<Value>) -> ApiResult<Response> {
    let unserved = || ApiError::unimplemented(r.method.as_str(), &r.raw_path, "Cloud KMS");
    let segs = segments(&r.raw_path);
    let (project, location, path, verb) = route_of(&segs).ok_or_else(unserved)?;
    if !valid_location(location) {
        return Err(ApiError::bad_request(format!("Invalid location '{location}'.")));
    }
    let store = &app.store;
    let body = body.unwrap_or(json!({}));
    let parent = format!("projects/{project}/locations/{location}");
    let at = |ring: &str| Scope {
        principal: r.principal.clone(),
        project: project.to_string(),
        key_ring: if ring.is_empty() { String::new() } else { format!("{parent}/keyRings/{ring}") },
    };
    let key_name = |ring: &str, key: &str| format!("{parent}/keyRings/{ring}/cryptoKeys/{key}");
    let v = match (r.method.as_str(), path.as_slice(), verb) {
        ("POST", ["keyRings"], None) => key_rings::create(store, at(""), &parent, r.query("keyRingId"), body).await?,
        ("GET", ["keyRings"], None) => key_rings::list(store, at(""), parent).await?,
        ("GET", ["keyRings", ring], None) => key_rings::get(store, at(ring)).await?,
        ("GET" | "POST", ["keyRings", ring], Some("getIamPolicy")) => policies::get(store, at(ring), None).await?,
        ("POST", ["keyRings", ring], Some("setIamPolicy")) => policies::set(store, at(ring), None, body).await?,
        ("POST", ["keyRings", ring, "cryptoKeys"], None) => {
            let skip_version = r.query("skipInitialVersionCreation") == Some("true");
            crypto_keys::create(store, at(ring), r.query("cryptoKeyId"), skip_version, body).await?
        }
        ("GET", ["keyRings", ring, "cryptoKeys"], None) => crypto_keys::list(store, at(ring)).await?,
        ("GET", ["keyRings", ring, "cryptoKeys", key], None) => {
            crypto_keys::get(store, at(ring), key_name(ring, key)).await?
        }
        ("PATCH", ["keyRings", ring, "cryptoKeys", key], None) => {
            crypto_keys::patch(store, at(ring), key_name(ring, key), r.query("updateMask"), body).await?
        }
        ("POST", ["keyRings", ring, "cryptoKeys", key], Some("encrypt")) => {
            encryption::encrypt(store, at(ring), key_name(ring, key), body).await?
        }
        ("POST", ["keyRings", ring, "cryptoKeys", key], Some("decrypt")) => {
            encryption::decrypt(store, at(ring), key_name(ring, key), body).await?
        }
        ("GET" | "POST", ["keyRings", ring, "cryptoKeys", key], Some("getIamPolicy")) => {
            policies::get(store, at(ring), Some(key_name(ring, key))).await?
        }
        ("POST", ["keyRings", ring, "cryptoKeys", key], Some("setIamPolicy")) => {
            policies::set(store, at(ring), Some(key_name(ring, key)), body).await?
        }
        ("GET", ["keyRings", ring, "cryptoKeys", key, "cryptoKeyVersions"], None) => {
            versions::list(store, at(ring), key_name(ring, key)).await?
        }
        ("GET", ["keyRings", ring, "cryptoKeys", key, "cryptoKeyVersions", version], None) => {
            versions::get(store, at(ring), key_name(ring, key), version).await?
        }
        ("POST", ["keyRings", ring, "cryptoKeys", key, "cryptoKeyVersions", version], Some("destroy")) => {
            versions::destroy(store, at(ring), key_name(ring, key), version).await?
        }
        ("POST", ["keyRings", ring, "cryptoKeys", key, "cryptoKeyVersions", version], Some("restore")) => {
            versions::restore(store, at(ring), key_name(ring, key), version).await?
        }
        _ => return Err(unserved()),
    };
    Ok(json_response(v))
}

/// Who asks, in which project, under which key ring (empty for the key ring collection).
struct Scope {
    principal: crate::iam::Identity,
    project: String,
    key_ring: String,
}

impl Scope {
    /// Refuses unless the caller holds `permission` through the project's, the key ring's or (for
    /// a key) the key's policy; `resource` names what the refusal is about.
    fn require(&self, c: &Connection, key: Option<&str>, permission: &str, resource: &str) -> ApiResult<()> {
        if self.allows(c, key, permission)? {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "Permission '{permission}' denied on resource '{resource}' (or it may not exist)."
            )))
        }
    }

    fn allows(&self, c: &Connection, key: Option<&str>, permission: &str) -> ApiResult<bool> {
        let granted_by = |table: &str, name: &str| -> ApiResult<bool> {
            let policy: Option<String> = c
                .query_row(&format!("SELECT policy FROM {table} WHERE name = ?1"), [name], |r| r.get(0))
                .optional()
                .map_err(sql)?;
            Ok(policy
                .and_then(|p| serde_json::from_str::<Value>(&p).ok())
                .is_some_and(|p| crate::iam::allows(&p, &self.principal, permission)))
        };
        let project = crate::resource_manager::project_policy(c, &self.project)?.unwrap_or(Value::Null);
        Ok(crate::iam::allows(&project, &self.principal, permission)
            || granted_by("key_rings", &self.key_ring)?
            || key.map(|k| granted_by("crypto_keys", k)).transpose()?.unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        segments(path)
    }

    #[test]
    fn routes_carry_the_path_below_the_location_and_the_verb() {
        let s = segs("/cloudkms/v1/projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k:encrypt");
        assert_eq!(
            route_of(&s),
            Some(("p", "europe-west4", vec!["keyRings", "r", "cryptoKeys", "k"], Some("encrypt")))
        );
        let s = segs("/cloudkms/v1/projects/p/locations/l/keyRings");
        assert_eq!(route_of(&s), Some(("p", "l", vec!["keyRings"], None)));
        assert_eq!(route_of(&segs("/cloudkms/v1/projects/p/locations/l")), None);
        assert_eq!(route_of(&segs("/cloudkms/v1/projects/p/keyRings/r")), None);
    }

    #[test]
    fn ids_and_locations() {
        assert!(valid_id("dcr-patients_1"));
        assert!(!valid_id("has space"));
        assert!(!valid_id(&"a".repeat(64)));
        assert!(valid_location("europe-west1"));
        assert!(!valid_location("Global"));
    }
}
