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
            "logging.logEntries.list",
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
        "roles/logging.viewer" => &["logging.logEntries.list"],
        "roles/logging.privateLogViewer" => &["logging.logEntries.list", "logging.privateLogEntries.list"],
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
        // Artifact Registry's predefined roles, the permissions dcr's calls need
        // (https://cloud.google.com/artifact-registry/docs/access-control#roles).
        "roles/artifactregistry.reader" => &[
            "artifactregistry.repositories.get",
            "artifactregistry.repositories.list",
            "artifactregistry.repositories.downloadArtifacts",
        ],
        "roles/artifactregistry.writer" => &[
            "artifactregistry.repositories.get",
            "artifactregistry.repositories.list",
            "artifactregistry.repositories.downloadArtifacts",
            "artifactregistry.repositories.uploadArtifacts",
        ],
        "roles/artifactregistry.admin" => &["artifactregistry.*"],
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

/// The resource a permission is checked on, as IAM Conditions see it (`resource.name`,
/// `resource.type`, `resource.service`: https://cloud.google.com/iam/docs/conditions-resource-attributes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionResource {
    pub name: String,
    pub type_: String,
    pub service: String,
}

impl ConditionResource {
    /// A Cloud Storage bucket, or an object in it: `projects/_/buckets/B[/objects/O]`, the names
    /// Cloud Storage gives conditions (https://cloud.google.com/storage/docs/access-control/iam#conditions).
    pub fn storage(bucket: &str, object: Option<&str>) -> ConditionResource {
        let service = "storage.googleapis.com".to_string();
        match object {
            Some(o) => ConditionResource {
                name: format!("projects/_/buckets/{bucket}/objects/{o}"),
                type_: "storage.googleapis.com/Object".into(),
                service,
            },
            None => ConditionResource {
                name: format!("projects/_/buckets/{bucket}"),
                type_: "storage.googleapis.com/Bucket".into(),
                service,
            },
        }
    }
}

/// Whether a binding's condition holds on `on`. A condition that cannot be evaluated (no resource
/// known, an attribute the local cloud does not model, a CEL error) does not hold: such a binding
/// grants nothing, which is how IAM treats a condition that evaluates to an error.
fn condition_holds(condition: &Value, on: Option<&ConditionResource>) -> bool {
    let (Some(expr), Some(on)) = (condition["expression"].as_str(), on) else { return false };
    let Ok(program) = cel::Program::compile(expr) else { return false };
    let mut ctx = cel::Context::default();
    let resource = serde_json::json!({"name": on.name, "type": on.type_, "service": on.service});
    if ctx.add_variable("resource", &resource).is_err() {
        return false;
    }
    matches!(program.execute(&ctx), Ok(cel::Value::Bool(true)))
}

/// Checks a binding's condition when it is set: a title and a CEL expression that compiles
/// (IAM's `Expr`: https://cloud.google.com/iam/docs/conditions-overview#structure).
fn validate_condition(condition: &Value) -> Result<(), ApiError> {
    let title = condition["title"].as_str().unwrap_or("");
    if title.is_empty() || title.chars().count() > 100 {
        return Err(ApiError::bad_request("A condition needs a title of 1 to 100 characters."));
    }
    let expr = condition["expression"].as_str().unwrap_or("");
    if expr.is_empty() || expr.len() > 12_800 {
        return Err(ApiError::bad_request("A condition needs an expression of at most 12800 characters."));
    }
    cel::Program::compile(expr)
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(format!("Condition expression {expr:?} is not valid CEL: {e}")))
}

/// Whether `policy` has a conditional binding.
pub fn has_conditions(policy: &Value) -> bool {
    policy["bindings"].as_array().is_some_and(|b| b.iter().any(|b| b.get("condition").is_some()))
}

/// Whether `policy` grants `permission` to `who`; conditional bindings grant nothing here (see
/// [`allows_on`]).
pub fn allows(policy: &Value, who: &Identity, permission: &str) -> bool {
    allows_on(policy, who, permission, None)
}

/// Whether `policy` grants `permission` to `who` on resource `on`: unconditional bindings, and
/// conditional ones whose condition holds on `on`.
pub fn allows_on(policy: &Value, who: &Identity, permission: &str, on: Option<&ConditionResource>) -> bool {
    policy["bindings"].as_array().is_some_and(|bindings| {
        bindings.iter().any(|b| {
            b.get("condition").is_none_or(|c| condition_holds(c, on))
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
        if let Some(c) = b.get("condition") {
            if version < 3 {
                return Err(ApiError::bad_request("Conditional role bindings require policy version 3."));
            }
            validate_condition(c)?;
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
    fn conditional_bindings_grant_only_where_their_condition_holds() {
        let p = json!({"version": 3, "bindings": [{"role": "roles/storage.objectViewer", "members": ["user:a@b.co"],
            "condition": {"title": "run 1", "expression": "resource.name.startsWith('projects/_/buckets/out/objects/study/aa/')"}}]});
        let a = Identity::new("user:a@b.co");
        let inside = ConditionResource::storage("out", Some("study/aa/outputs/summary.csv"));
        let beside = ConditionResource::storage("out", Some("study/bb/outputs/summary.csv"));
        assert!(allows_on(&p, &a, "storage.objects.get", Some(&inside)));
        assert!(!allows_on(&p, &a, "storage.objects.get", Some(&beside)));
        assert!(!allows_on(&p, &a, "storage.objects.list", Some(&ConditionResource::storage("out", None))));
        assert!(!allows(&p, &a, "storage.objects.get"), "no resource known: the condition does not hold");
        let broken = json!({"version": 3, "bindings": [{"role": "roles/owner", "members": ["user:a@b.co"],
            "condition": {"title": "t", "expression": "resource.nope.startsWith('x')"}}]});
        assert!(!allows_on(&broken, &a, "storage.objects.get", Some(&inside)), "an error grants nothing");
    }

    #[test]
    fn conditions_need_version_3_a_title_and_valid_cel() {
        let with = |c: Value, v: i64| json!({"version": v, "bindings": [{"role": "roles/storage.objectViewer", "members": ["user:a@b.co"], "condition": c}]});
        assert!(
            validate_policy(&with(json!({"title": "t", "expression": "resource.name.startsWith('x')"}), 3)).is_ok()
        );
        for (c, v) in [
            (json!({"title": "t", "expression": "true"}), 1),
            (json!({"expression": "true"}), 3),
            (json!({"title": "t", "expression": "resource.name.startsWith("}), 3),
        ] {
            assert!(validate_policy(&with(c.clone(), v)).is_err(), "{c} v{v}");
        }
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
