//! IAM: which roles grant which permissions, how a policy is checked, and what a well-formed
//! policy looks like. Pure functions, so the rules are tested without a server.

use base64::Engine;
use serde_json::Value;

use crate::api::ApiError;

/// Permission patterns each role grants (`service.resource.*` grants every verb on it).
pub fn role_permissions(role: &str) -> Option<&'static [&'static str]> {
    Some(match role {
        "roles/owner" => &["*"],
        "roles/editor" => &[
            "storage.buckets.create",
            "storage.buckets.delete",
            "storage.buckets.get",
            "storage.buckets.list",
            "storage.buckets.update",
            "storage.objects.*",
            "cloudkms.keyRings.create",
            "cloudkms.keyRings.get",
            "cloudkms.keyRings.list",
            "cloudkms.cryptoKeys.create",
            "cloudkms.cryptoKeys.get",
            "cloudkms.cryptoKeys.list",
            "cloudkms.cryptoKeys.update",
            "cloudkms.cryptoKeyVersions.get",
            "cloudkms.cryptoKeyVersions.list",
            "cloudkms.cryptoKeyVersions.destroy",
            "cloudkms.cryptoKeyVersions.restore",
            "compute.instances.*",
            "compute.zoneOperations.*",
        ],
        "roles/viewer" => &[
            "resourcemanager.projects.get",
            "storage.buckets.get",
            "storage.buckets.list",
            "cloudkms.keyRings.get",
            "cloudkms.keyRings.list",
            "cloudkms.cryptoKeys.get",
            "cloudkms.cryptoKeys.list",
            "cloudkms.cryptoKeyVersions.get",
            "cloudkms.cryptoKeyVersions.list",
            "compute.instances.get",
            "compute.instances.list",
            "compute.zoneOperations.get",
        ],
        "roles/compute.instanceAdmin.v1" => &["compute.instances.*", "compute.zoneOperations.*"],
        "roles/storage.admin" => &["storage.*"],
        "roles/storage.objectAdmin" => &["storage.objects.*"],
        "roles/storage.objectViewer" => &["storage.objects.get", "storage.objects.list"],
        "roles/storage.objectCreator" => &["storage.objects.create"],
        "roles/storage.objectUser" => &[
            "storage.objects.create",
            "storage.objects.delete",
            "storage.objects.get",
            "storage.objects.list",
            "storage.objects.update",
        ],
        "roles/storage.legacyBucketOwner" => &[
            "storage.buckets.get",
            "storage.buckets.update",
            "storage.buckets.getIamPolicy",
            "storage.buckets.setIamPolicy",
            "storage.objects.list",
            "storage.objects.create",
            "storage.objects.delete",
        ],
        "roles/storage.legacyBucketReader" => &["storage.buckets.get", "storage.objects.list"],
        "roles/storage.legacyObjectReader" => &["storage.objects.get"],
        "roles/cloudkms.admin" => &[
            "cloudkms.keyRings.*",
            "cloudkms.cryptoKeys.*",
            "cloudkms.cryptoKeyVersions.create",
            "cloudkms.cryptoKeyVersions.get",
            "cloudkms.cryptoKeyVersions.list",
            "cloudkms.cryptoKeyVersions.destroy",
            "cloudkms.cryptoKeyVersions.restore",
            "cloudkms.cryptoKeyVersions.update",
        ],
        "roles/cloudkms.cryptoKeyEncrypterDecrypter" => {
            &["cloudkms.cryptoKeyVersions.useToEncrypt", "cloudkms.cryptoKeyVersions.useToDecrypt"]
        }
        "roles/cloudkms.cryptoKeyEncrypter" => &["cloudkms.cryptoKeyVersions.useToEncrypt"],
        "roles/cloudkms.cryptoKeyDecrypter" => &["cloudkms.cryptoKeyVersions.useToDecrypt"],
        "roles/iam.workloadIdentityPoolAdmin" => {
            &["iam.workloadIdentityPools.*", "iam.workloadIdentityPoolProviders.*"]
        }
        "roles/iam.workloadIdentityPoolViewer" => &[
            "iam.workloadIdentityPools.get",
            "iam.workloadIdentityPools.list",
            "iam.workloadIdentityPoolProviders.get",
            "iam.workloadIdentityPoolProviders.list",
        ],
        "roles/cloudkms.viewer" => &[
            "cloudkms.keyRings.get",
            "cloudkms.keyRings.list",
            "cloudkms.cryptoKeys.get",
            "cloudkms.cryptoKeys.list",
            "cloudkms.cryptoKeyVersions.get",
            "cloudkms.cryptoKeyVersions.list",
        ],
        _ => return None,
    })
}

fn pattern_matches(pattern: &str, permission: &str) -> bool {
    pattern == "*"
        || pattern == permission
        || pattern.strip_suffix('*').is_some_and(|prefix| permission.starts_with(prefix))
}

/// Who a request acts as: one principal, and for federated identities the principal sets it
/// belongs to (`principalSet://…/POOL/*`, `…/attribute.NAME/VALUE`, `…/group/G`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub principal: String,
    pub sets: Vec<String>,
}

impl Identity {
    pub fn new(principal: impl Into<String>) -> Identity {
        Identity { principal: principal.into(), sets: Vec::new() }
    }
    fn is_federated(&self) -> bool {
        self.principal.starts_with("principal://")
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.principal)
    }
}

fn member_matches(member: &str, who: &Identity) -> bool {
    member == who.principal
        || member == "allUsers"
        || (member == "allAuthenticatedUsers" && !who.is_federated())
        || (member.starts_with("principalSet://") && who.sets.iter().any(|s| s == member))
}

/// Whether `policy` grants `permission` to `who`. Conditional bindings are not evaluated by
/// this local cloud and never grant anything (deny is the safe reading).
pub fn allows(policy: &Value, who: &Identity, permission: &str) -> bool {
    policy["bindings"].as_array().is_some_and(|bindings| {
        bindings.iter().any(|b| {
            b.get("condition").is_none()
                && b["role"]
                    .as_str()
                    .and_then(role_permissions)
                    .is_some_and(|perms| perms.iter().any(|p| pattern_matches(p, permission)))
                && b["members"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().any(|m| m.as_str().is_some_and(|m| member_matches(m, who))))
        })
    })
}

fn email(s: &str) -> bool {
    let mut parts = s.splitn(2, '@');
    let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    !local.is_empty() && domain.contains('.') && !s.contains(char::is_whitespace)
}

/// Whether `m` is a member IAM accepts.
pub fn valid_member(m: &str) -> bool {
    if m == "allUsers" || m == "allAuthenticatedUsers" {
        return true;
    }
    if let Some(e) =
        m.strip_prefix("user:").or_else(|| m.strip_prefix("serviceAccount:")).or_else(|| m.strip_prefix("group:"))
    {
        return email(e);
    }
    if let Some(d) = m.strip_prefix("domain:") {
        return d.contains('.') && !d.contains(char::is_whitespace);
    }
    for p in ["projectOwner:", "projectEditor:", "projectViewer:"] {
        if let Some(rest) = m.strip_prefix(p) {
            return !rest.is_empty();
        }
    }
    m.strip_prefix("principal://iam.googleapis.com/")
        .or_else(|| m.strip_prefix("principalSet://iam.googleapis.com/"))
        .is_some_and(|rest| rest.starts_with("projects/") || rest.starts_with("locations/"))
}

/// A principal a token may stand for.
pub fn valid_principal(p: &str) -> bool {
    valid_member(p) && !matches!(p, "allUsers" | "allAuthenticatedUsers")
}

/// Checks a policy sent to setIamPolicy: known roles, well-formed members, conditions only in v3.
pub fn validate_policy(policy: &Value) -> Result<(), ApiError> {
    let version = policy["version"].as_i64().unwrap_or(1);
    if ![0, 1, 3].contains(&version) {
        return Err(ApiError::bad_request(format!("Invalid policy version {version}: only 1 and 3 are supported.")));
    }
    let Some(bindings) = policy.get("bindings") else { return Ok(()) };
    let bindings = bindings.as_array().ok_or_else(|| ApiError::bad_request("bindings must be a list."))?;
    for b in bindings {
        let role = b["role"].as_str().unwrap_or("");
        if role_permissions(role).is_none() {
            return Err(ApiError::bad_request(format!("Role {role} is not supported for this resource.")));
        }
        for m in b["members"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let m = m.as_str().unwrap_or("");
            if !valid_member(m) {
                return Err(ApiError::bad_request(format!("Invalid argument: member {m:?} is not a valid principal.")));
            }
        }
        if b.get("condition").is_some() && version < 3 {
            return Err(ApiError::bad_request("Conditional role bindings require policy version 3."));
        }
    }
    Ok(())
}

/// The bindings of a policy to store: those with no members are dropped, as Google does.
pub fn stored_bindings(policy: &Value) -> Vec<Value> {
    policy["bindings"]
        .as_array()
        .map(|b| b.iter().filter(|b| b["members"].as_array().is_some_and(|m| !m.is_empty())).cloned().collect())
        .unwrap_or_default()
}

/// The etag for policy revision `n`.
pub fn etag(n: i64) -> String {
    base64::engine::general_purpose::STANDARD.encode(n.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_grant_their_permissions_to_their_members_only() {
        let p = json!({"bindings": [
            {"role": "roles/storage.objectViewer", "members": ["user:ana@example.com"]},
            {"role": "roles/cloudkms.cryptoKeyDecrypter", "members": ["principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*"]}
        ]});
        let ana = Identity::new("user:ana@example.com");
        assert!(allows(&p, &ana, "storage.objects.get"));
        assert!(!allows(&p, &ana, "storage.objects.delete"));
        assert!(!allows(&p, &Identity::new("user:bob@example.com"), "storage.objects.get"));
        assert!(!allows(&p, &ana, "cloudkms.cryptoKeyVersions.useToDecrypt"));
        assert!(allows(
            &json!({"bindings": [{"role": "roles/owner", "members": ["user:o@x.io"]}]}),
            &Identity::new("user:o@x.io"),
            "anything.at.all"
        ));
    }

    #[test]
    fn federated_identities_match_their_principal_sets_only() {
        let pool = "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*";
        let p = json!({"bindings": [
            {"role": "roles/cloudkms.cryptoKeyDecrypter", "members": [pool]},
            {"role": "roles/storage.objectViewer", "members": ["allAuthenticatedUsers"]}
        ]});
        let fed = Identity {
            principal: "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/vm"
                .into(),
            sets: vec![pool.into()],
        };
        assert!(allows(&p, &fed, "cloudkms.cryptoKeyVersions.useToDecrypt"));
        assert!(!allows(&p, &fed, "storage.objects.get"), "allAuthenticatedUsers excludes federated identities");
        let other = Identity { sets: vec![pool.replace("/p/", "/q/")], ..fed.clone() };
        assert!(!allows(&p, &other, "cloudkms.cryptoKeyVersions.useToDecrypt"));
    }

    #[test]
    fn conditional_bindings_never_grant() {
        let p = json!({"version": 3, "bindings": [{"role": "roles/owner", "members": ["user:a@b.co"], "condition": {"expression": "true"}}]});
        assert!(!allows(&p, &Identity::new("user:a@b.co"), "storage.objects.get"));
    }

    #[test]
    fn policies_are_validated() {
        assert!(
            validate_policy(&json!({"bindings": [{"role": "roles/storage.objectViewer", "members": ["user:a@b.co"]}]}))
                .is_ok()
        );
        assert!(validate_policy(&json!({"bindings": [{"role": "roles/nope", "members": []}]})).is_err());
        assert!(validate_policy(&json!({"bindings": [{"role": "roles/owner", "members": ["bob"]}]})).is_err());
        assert!(validate_policy(&json!({"version": 1, "bindings": [{"role": "roles/owner", "members": ["user:a@b.co"], "condition": {"expression": "true"}}]})).is_err());
    }

    #[test]
    fn members() {
        assert!(valid_member("user:a@b.co"));
        assert!(valid_member(
            "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*"
        ));
        assert!(!valid_member("a@b.co"));
        assert!(!valid_member("user:nope"));
    }
}
