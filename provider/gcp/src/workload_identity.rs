//! IAM v1 workload identity federation: pools and their OIDC providers.
//!
//! Both kinds behave alike on Google Cloud — every mutation is a long-running operation, a deleted
//! one lingers 30 days as `state: DELETED` and blocks its id (409) until undeleted — so the
//! mechanics live once, in [`WorkloadIdentityClient::ensure`] and
//! [`WorkloadIdentityClient::delete_if_present`], generic over the two resource types.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::GcpError;
use crate::operation::{Operation, wait};
use crate::retry::Idempotency::{Idempotent, NotIdempotent};
use crate::transport::Transport;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityPool {
    #[serde(skip_serializing)]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(skip_serializing)]
    pub state: Option<String>,
    #[serde(skip_serializing)]
    pub expire_time: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityPoolProvider {
    #[serde(skip_serializing)]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub attribute_mapping: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute_condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<Oidc>,
    #[serde(skip_serializing)]
    pub state: Option<String>,
    #[serde(skip_serializing)]
    pub expire_time: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Oidc {
    pub issuer_uri: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_audiences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_json: Option<String>,
}

/// What the generic mechanics need to know of a pool or a provider.
pub trait WifResource: Serialize + DeserializeOwned + Clone + Send + Sync {
    /// `pool` or `provider`, for messages.
    const KIND: &'static str;
    /// The collection under a parent (`workloadIdentityPools`, `providers`).
    const COLLECTION: &'static str;
    /// The query parameter carrying the new id.
    const ID_PARAM: &'static str;
    fn state(&self) -> Option<&str>;
}

impl WifResource for WorkloadIdentityPool {
    const KIND: &'static str = "workload identity pool";
    const COLLECTION: &'static str = "workloadIdentityPools";
    const ID_PARAM: &'static str = "workloadIdentityPoolId";
    fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }
}

impl WifResource for WorkloadIdentityPoolProvider {
    const KIND: &'static str = "workload identity pool provider";
    const COLLECTION: &'static str = "providers";
    const ID_PARAM: &'static str = "workloadIdentityPoolProviderId";
    fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }
}

/// Whether a resource read back is soft-deleted.
pub fn is_deleted<T: WifResource>(r: &T) -> bool {
    r.state() == Some("DELETED")
}

/// The fields whose values differ between what we want and what exists: the `updateMask` of the
/// patch that makes them equal. Top-level fields go by their JSON names; a changed `oidc` goes as
/// its sub-fields, as terraform-provider-google sends it
/// (`google/services/iambeta/resource_iam_workload_identity_pool_provider.go`, Update:
/// `oidc.allowed_audiences`, `oidc.issuer_uri`, and `oidc.jwks_json` since JWKS upload exists).
pub fn changed_fields<T: Serialize>(want: &T, have: &T) -> Vec<String> {
    let (w, h) = (serde_json::to_value(want).unwrap_or(Value::Null), serde_json::to_value(have).unwrap_or(Value::Null));
    let empty = serde_json::Map::new();
    let (w, h) = (w.as_object().unwrap_or(&empty), h.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = w.keys().chain(h.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut mask = Vec::new();
    for k in keys.into_iter().filter(|k| w.get(*k) != h.get(*k)) {
        if k == "oidc" {
            mask.extend(OIDC_MASK.iter().map(|f| f.to_string()));
        } else {
            mask.push(k.clone());
        }
    }
    mask
}

/// The `updateMask` paths of a provider's OIDC settings.
pub const OIDC_MASK: [&str; 3] = ["oidc.allowed_audiences", "oidc.issuer_uri", "oidc.jwks_json"];

#[derive(Clone)]
pub struct WorkloadIdentityClient {
    t: Arc<Transport>,
    base: String,
}

impl WorkloadIdentityClient {
    pub fn new(t: Arc<Transport>, base: &str) -> WorkloadIdentityClient {
        WorkloadIdentityClient { t, base: base.to_string() }
    }

    pub async fn get<T: WifResource>(&self, name: &str) -> Result<Option<T>, GcpError> {
        let url = format!("{}{name}", self.base);
        self.t.json_opt(&format!("read {} {name}", T::KIND), |c| c.get(&url)).await
    }

    /// Waits for `op`, then reads `name` back: IAM's pool operations finish with an empty
    /// `response` (see [`crate::operation`]), so the resource as it now is comes from a GET.
    async fn run_then_read<T: WifResource>(&self, what: &str, op: Operation, name: &str) -> Result<T, GcpError> {
        wait(&self.t, &self.base, what, op).await?;
        self.get(name).await?.ok_or_else(|| GcpError::Decode {
            operation: what.to_string(),
            detail: format!("the operation finished but {name} cannot be read back (404)"),
        })
    }

    /// Creates `parent/COLLECTION/id`. A lost response retried would answer 409, so creation is
    /// not retried on its own: [`ensure`](Self::ensure) reads back instead.
    pub async fn create<T: WifResource>(&self, parent: &str, id: &str, want: &T) -> Result<T, GcpError> {
        let what = format!("create {} {parent}/{}/{id}", T::KIND, T::COLLECTION);
        let url = format!("{}{parent}/{}", self.base, T::COLLECTION);
        let op: Operation =
            self.t.json(&what, NotIdempotent, |c| c.post(&url).query(&[(T::ID_PARAM, id)]).json(want)).await?;
        self.run_then_read(&what, op, &format!("{parent}/{}/{id}", T::COLLECTION)).await
    }

    pub async fn patch<T: WifResource>(&self, name: &str, want: &T, mask: &[String]) -> Result<T, GcpError> {
        let what = format!("update {} {name}", T::KIND);
        let url = format!("{}{name}", self.base);
        let mask = mask.join(",");
        let op: Operation = self
            .t
            .json(&what, Idempotent, |c| c.patch(&url).query(&[("updateMask", mask.as_str())]).json(want))
            .await?;
        self.run_then_read(&what, op, name).await
    }

    /// Soft-deletes `name` (it lingers as `state: DELETED`).
    pub async fn delete<T: WifResource>(&self, name: &str) -> Result<(), GcpError> {
        let what = format!("delete {} {name}", T::KIND);
        let url = format!("{}{name}", self.base);
        let op: Operation = self.t.json(&what, Idempotent, |c| c.delete(&url)).await?;
        wait(&self.t, &self.base, &what, op).await.map(|_| ())
    }

    pub async fn undelete<T: WifResource>(&self, name: &str) -> Result<T, GcpError> {
        let what = format!("undelete {} {name}", T::KIND);
        let url = format!("{}{name}:undelete", self.base);
        let op: Operation = self.t.json(&what, Idempotent, |c| c.post(&url).json(&serde_json::json!({}))).await?;
        self.run_then_read(&what, op, name).await
    }

    /// Makes `parent/COLLECTION/id` exist, be active and look like `want`: creates it when missing,
    /// undeletes it when soft-deleted (its id cannot be re-created for 30 days), and patches the
    /// fields that differ. Returns the resource as it now is.
    pub async fn ensure<T: WifResource>(&self, parent: &str, id: &str, want: &T) -> Result<T, GcpError> {
        let name = format!("{parent}/{}/{id}", T::COLLECTION);
        let mut have: Option<T> = self.get(&name).await?;
        if have.is_none() {
            match self.create(parent, id, want).await {
                Ok(created) => return Ok(created),
                // Created by a request whose answer was lost, or soft-deleted and hidden from a
                // read that raced the delete: read again and carry on from what is there.
                Err(e) if e.is_conflict() => have = self.get(&name).await?,
                Err(e) => return Err(e),
            }
        }
        let Some(mut have) = have else {
            return Err(GcpError::Decode {
                operation: format!("create {} {name}", T::KIND),
                detail: "the id is taken (409) but the resource cannot be read".into(),
            });
        };
        if is_deleted(&have) {
            tracing::info!(%name, "undeleting a soft-deleted {}", T::KIND);
            have = self.undelete(&name).await?;
        }
        let mask = changed_fields(want, &have);
        if mask.is_empty() { Ok(have) } else { self.patch(&name, want, &mask).await }
    }

    /// Soft-deletes `name` unless it is already gone or deleted.
    pub async fn delete_if_present<T: WifResource>(&self, name: &str) -> Result<(), GcpError> {
        match self.get::<T>(name).await? {
            Some(r) if !is_deleted(&r) => match self.delete::<T>(name).await {
                Ok(()) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(e),
            },
            _ => Ok(()),
        }
    }
}

/// `projects/NUMBER/locations/global/workloadIdentityPools/POOL`.
pub fn pool_name(project_number: &str, pool: &str) -> String {
    format!("projects/{project_number}/locations/global/workloadIdentityPools/{pool}")
}

/// The audience a token is exchanged at: the provider's full resource name.
pub fn audience(provider_name: &str) -> String {
    format!("//iam.googleapis.com/{provider_name}")
}

/// The IAM member standing for every identity a pool federates.
pub fn pool_principal_set(pool_name: &str) -> String {
    format!("principalSet://iam.googleapis.com/{pool_name}/*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_differing_settable_fields_are_patched() {
        let want = WorkloadIdentityPoolProvider {
            attribute_condition: Some("a".into()),
            oidc: Some(Oidc { issuer_uri: "https://i".into(), ..Default::default() }),
            ..Default::default()
        };
        let mut have = want.clone();
        have.name = "n".into();
        have.state = Some("ACTIVE".into());
        assert!(changed_fields(&want, &have).is_empty(), "output-only fields are not compared");
        have.attribute_condition = Some("b".into());
        have.display_name = Some("x".into());
        assert_eq!(changed_fields(&want, &have), vec!["attributeCondition", "displayName"]);
        have.oidc = Some(Oidc { issuer_uri: "https://other".into(), ..Default::default() });
        assert_eq!(
            changed_fields(&want, &have),
            vec!["attributeCondition", "displayName", "oidc.allowed_audiences", "oidc.issuer_uri", "oidc.jwks_json"]
        );
    }

    #[test]
    fn names_and_members() {
        let pool = pool_name("123", "dcr-p");
        assert_eq!(pool, "projects/123/locations/global/workloadIdentityPools/dcr-p");
        assert_eq!(
            pool_principal_set(&pool),
            "principalSet://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/dcr-p/*"
        );
        assert_eq!(audience(&format!("{pool}/providers/tee")), format!("//iam.googleapis.com/{pool}/providers/tee"));
    }
}
