//! IAM policies (the shape shared by Storage and KMS) and the one read-modify-write loop every
//! resource uses to change them without losing concurrent edits.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::GcpError;
use crate::retry::Idempotency::Idempotent;
use crate::transport::Transport;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Storage only (`storage#policy`); never sent to other APIs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<Binding>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    pub role: String,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Expr>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expr {
    pub expression: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Policy {
    /// Makes `members` exactly the members of the unconditional binding for `role` (dropping the
    /// binding when empty), leaving other roles alone. Returns whether anything changed.
    pub fn set_role_members(&mut self, role: &str, members: &[String]) -> bool {
        let before = self.bindings.clone();
        self.bindings.retain(|b| !(b.role == role && b.condition.is_none()));
        if !members.is_empty() {
            let mut m = members.to_vec();
            m.sort();
            m.dedup();
            self.bindings.push(Binding { role: role.to_string(), members: m, condition: None });
        }
        self.normalize();
        let mut b = before;
        b.sort_by(|x, y| x.role.cmp(&y.role));
        b != self.bindings
    }

    /// Adds `member` to `role` (unconditional). Returns whether anything changed.
    pub fn add_member(&mut self, role: &str, member: &str) -> bool {
        if let Some(b) = self.bindings.iter_mut().find(|b| b.role == role && b.condition.is_none()) {
            if b.members.iter().any(|m| m == member) {
                return false;
            }
            b.members.push(member.to_string());
        } else {
            self.bindings.push(Binding { role: role.into(), members: vec![member.into()], condition: None });
        }
        self.normalize();
        true
    }

    /// Removes `member` from `role` (unconditional). Returns whether anything changed.
    pub fn remove_member(&mut self, role: &str, member: &str) -> bool {
        let mut changed = false;
        for b in self.bindings.iter_mut().filter(|b| b.role == role && b.condition.is_none()) {
            let n = b.members.len();
            b.members.retain(|m| m != member);
            changed |= b.members.len() != n;
        }
        self.bindings.retain(|b| !b.members.is_empty());
        changed
    }

    /// Makes the binding of `role` under `condition` (matched by title and expression) hold
    /// exactly `members`, dropping it when there are none; conditional bindings need policy
    /// version 3 (https://cloud.google.com/iam/docs/policies#versions). Returns whether anything
    /// changed.
    pub fn set_conditional_members(&mut self, role: &str, condition: &Expr, members: &[String]) -> bool {
        let same = |b: &Binding| {
            b.role == role
                && b.condition
                    .as_ref()
                    .is_some_and(|c| c.title == condition.title && c.expression == condition.expression)
        };
        let before = self.bindings.clone();
        self.bindings.retain(|b| !same(b));
        if !members.is_empty() {
            let mut m = members.to_vec();
            m.sort();
            m.dedup();
            self.bindings.push(Binding { role: role.to_string(), members: m, condition: Some(condition.clone()) });
        }
        self.normalize();
        let changed = {
            let mut b = before;
            b.sort_by(|x, y| x.role.cmp(&y.role));
            b != self.bindings
        };
        if self.bindings.iter().any(|b| b.condition.is_some()) {
            self.version = Some(3);
        }
        changed
    }

    /// Members of the unconditional binding for `role`.
    pub fn members(&self, role: &str) -> Vec<String> {
        self.bindings
            .iter()
            .filter(|b| b.role == role && b.condition.is_none())
            .flat_map(|b| b.members.clone())
            .collect()
    }

    fn normalize(&mut self) {
        for b in &mut self.bindings {
            b.members.sort();
            b.members.dedup();
        }
        self.bindings.sort_by(|x, y| x.role.cmp(&y.role));
    }
}

/// Something with an IAM policy: a bucket, a key ring, a crypto key.
#[async_trait]
pub trait IamResource: Send + Sync {
    fn describe(&self) -> String;
    async fn get_policy(&self) -> Result<Policy, GcpError>;
    async fn set_policy(&self, policy: &Policy) -> Result<Policy, GcpError>;
}

/// The IAM methods of a resource in an AIP-style API (Cloud KMS, Artifact Registry):
/// `GET {resource}:getIamPolicy` and `POST {resource}:setIamPolicy`.
pub struct AipIam {
    t: Arc<Transport>,
    base: String,
    resource: String,
    /// The `updateMask` the API's `SetIamPolicyRequest` takes, when it has that field.
    update_mask: Option<&'static str>,
}

impl AipIam {
    pub fn new(t: Arc<Transport>, base: &str, resource: &str, update_mask: Option<&'static str>) -> AipIam {
        AipIam { t, base: base.to_string(), resource: resource.to_string(), update_mask }
    }
}

#[async_trait]
impl IamResource for AipIam {
    fn describe(&self) -> String {
        self.resource.clone()
    }
    async fn get_policy(&self) -> Result<Policy, GcpError> {
        let url = format!("{}{}:getIamPolicy", self.base, self.resource);
        self.t
            .json(&format!("read IAM policy of {}", self.resource), Idempotent, |c| {
                c.get(&url).query(&[("options.requestedPolicyVersion", "3")])
            })
            .await
    }
    async fn set_policy(&self, policy: &Policy) -> Result<Policy, GcpError> {
        let url = format!("{}{}:setIamPolicy", self.base, self.resource);
        let policy = Policy { kind: None, resource_id: None, ..policy.clone() };
        let body = match self.update_mask {
            Some(mask) => serde_json::json!({ "policy": policy, "updateMask": mask }),
            None => serde_json::json!({ "policy": policy }),
        };
        self.t.json(&format!("set IAM policy of {}", self.resource), Idempotent, |c| c.post(&url).json(&body)).await
    }
}

/// Reads the policy, applies `edit`, and writes it back with the etag it read, so a concurrent
/// change makes the write fail (409 or 412) instead of being lost; then it starts over. `edit`
/// returns whether it changed anything; an unchanged policy is not written.
pub async fn read_modify_write(
    resource: &dyn IamResource,
    edit: impl Fn(&mut Policy) -> bool + Send + Sync,
) -> Result<Policy, GcpError> {
    const ATTEMPTS: u32 = 8;
    let mut attempt = 1;
    loop {
        let mut policy = resource.get_policy().await?;
        if !edit(&mut policy) {
            return Ok(policy);
        }
        match resource.set_policy(&policy).await {
            Ok(p) => return Ok(p),
            Err(e) if (e.is_conflict() || e.is_precondition_failed()) && attempt < ATTEMPTS => {
                tracing::debug!(resource = %resource.describe(), attempt, "IAM policy changed concurrently; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_role_members_is_authoritative_for_one_role_only() {
        let mut p = Policy::default();
        p.add_member("roles/a", "user:x@example.com");
        p.add_member("roles/b", "user:y@example.com");
        assert!(p.set_role_members("roles/a", &["user:z@example.com".into()]));
        assert_eq!(p.members("roles/a"), vec!["user:z@example.com"]);
        assert_eq!(p.members("roles/b"), vec!["user:y@example.com"]);
        assert!(!p.set_role_members("roles/a", &["user:z@example.com".into()]));
        assert!(p.set_role_members("roles/a", &[]));
        assert!(p.members("roles/a").is_empty());
    }

    #[test]
    fn conditional_bindings_are_set_by_title_and_expression_and_raise_the_version() {
        let mut p = Policy::default();
        p.add_member("roles/storage.objectViewer", "user:owner@example.com");
        let run =
            Expr { expression: "resource.name.startsWith('x')".into(), title: Some("run x".into()), description: None };
        assert!(p.set_conditional_members(
            "roles/storage.objectViewer",
            &run,
            &["user:b@x.io".into(), "user:a@x.io".into()]
        ));
        assert_eq!(p.version, Some(3));
        assert_eq!(p.members("roles/storage.objectViewer"), vec!["user:owner@example.com"], "unconditional untouched");
        let cond = p.bindings.iter().find(|b| b.condition.is_some()).unwrap();
        assert_eq!(cond.members, vec!["user:a@x.io", "user:b@x.io"]);
        assert!(!p.set_conditional_members(
            "roles/storage.objectViewer",
            &run,
            &["user:a@x.io".into(), "user:b@x.io".into()]
        ));
        assert!(p.set_conditional_members("roles/storage.objectViewer", &run, &[]));
        assert_eq!(p.bindings.len(), 1);
    }

    #[test]
    fn add_and_remove_report_changes() {
        let mut p = Policy::default();
        assert!(p.add_member("roles/a", "user:x@example.com"));
        assert!(!p.add_member("roles/a", "user:x@example.com"));
        assert!(p.remove_member("roles/a", "user:x@example.com"));
        assert!(p.bindings.is_empty());
    }

    #[test]
    fn storage_fields_are_omitted_when_absent() {
        let p = Policy { version: Some(3), etag: Some("e".into()), ..Default::default() };
        let j = serde_json::to_value(&p).unwrap();
        assert_eq!(j, serde_json::json!({"version": 3, "etag": "e"}));
    }
}
