//! Planning a `dcr_policy`: the rules in force, the generated condition (shown in the plan), the
//! names derived from the project number, and the policy document's version and hash.

use dcr_attestation::condition::{PolicyRules, attribute_mapping};
use dcr_attestation::names::{self, PolicyLocation};
use dcr_gcp::workload_identity::{audience, pool_name, pool_principal_set};
use tfplugin6::model::{Attr, IntoValue};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, PlanRequest, PlanResponse, Severity, Value, plan};

use super::model::{string_set, strings};
use super::rules::{checked_condition, document, effective_rules, sha256_hex};
use super::schema::{schema, validate_config};
use super::{PROVIDER_ID, missing_dataset, null_digest_diagnostic};
use crate::clients::Clients;
use crate::provider::ProviderState;
use crate::resources::common::{default_bucket_check, gcp_diag, plan_response};
use crate::resources::dataset::{LocatedDataset, locate, parse_id};
use tfplugin6::model::wholly_known;

/// What plan learned from the cloud.
#[derive(Clone, Debug, Default)]
pub struct PlanFacts {
    pub project: String,
    pub project_number: String,
    pub is_local: bool,
    /// Every dataset of the config, located; `None` while some id is unknown.
    pub datasets: Option<Vec<LocatedDataset>>,
}

pub(super) async fn plan(state: &ProviderState, req: PlanRequest) -> PlanResponse {
    if req.proposed_new_state.is_null() {
        return PlanResponse::default();
    }
    let fail = |diagnostics: Diagnostics| PlanResponse { diagnostics, ..Default::default() };
    let mut d = validate_config(&req.config);
    let config = match super::read(&req.config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // A null digest is what a `dcr_image_digest` reads when its notebook is missing. Terraform
    // plans every resource in its pre-destroy refresh too (a normal-mode plan with
    // `PreDestroyRefresh`, hashicorp/terraform internal/terraform/context_plan.go), so an
    // error here would make `terraform destroy` need the notebook: plan warns and leaves the
    // condition unknown, and apply refuses (see `converge`).
    let null_digest = config.has_null_digest();
    if null_digest {
        d.push(null_digest_diagnostic(Severity::Warning));
    }
    if d.has_errors() {
        return fail(d);
    }
    let c = match state.clients() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let default = |name: &str| PolicyLocation::default_bucket(&c.project, name);
    if let Some(e) = default_bucket_check(&config.bucket, &config.name, default, "PROJECT-policy-NAME") {
        return fail(e.into());
    }
    let (rules, issuer, warnings) = match effective_rules(&config, c.is_local) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    d.extend(warnings);
    // The inputs the attribute condition is generated from.
    let rule_inputs_known = wholly_known(&config.allowed_image_digests)
        && wholly_known(&config.require_confidential_hardware)
        && wholly_known(&config.allowed_hardware)
        && wholly_known(&config.allow_debug)
        && wholly_known(&config.require_stable_image);
    let condition = if !null_digest && rule_inputs_known {
        match checked_condition(&rules) {
            Ok(cond) => Some(cond),
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    let project_number = match c.project_number().await {
        Ok(n) => n,
        Err(e) => return fail(gcp_diag("Cannot read the project number", e)),
    };
    let datasets = if wholly_known(&config.datasets) {
        match locate_for_plan(&c, &strings(&config.datasets)).await {
            Ok(Located::All(l)) => Some(l),
            Ok(Located::Restoring(warnings)) => {
                d.extend(warnings);
                None
            }
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    let facts = PlanFacts { project: c.project.clone(), project_number, is_local: c.is_local, datasets };
    plan_response(plan_state(&req.prior_state, &req.config, &rules, &issuer, condition.as_deref(), &facts), d)
}

/// The planned state: configuration, defaults, names derived from the project number, the
/// generated condition, and the policy document's version and hash (a new version when its content
/// differs from what the prior state recorded).
pub fn plan_state(
    prior_value: &Value,
    config_value: &Value,
    rules: &PolicyRules,
    issuer: &str,
    condition: Option<&str>,
    facts: &PlanFacts,
) -> Result<(Value, Vec<AttributePath>), Diagnostics> {
    let schema = schema();
    let (prior, config) = (super::read(prior_value)?, super::read(config_value)?);
    let mut with_defaults = config_value.clone();
    plan::fill_defaults(&schema.block, &mut with_defaults);
    let mut p = super::read(&with_defaults)?;
    // Optional attributes the configuration left out take the backend's defaults; set ones
    // (known or not yet known) stay as configured.
    if config.require_confidential_hardware.is_null() {
        p.require_confidential_hardware = Attr::Known(rules.require_confidential_hardware);
    }
    if config.allowed_hardware.is_null() {
        p.allowed_hardware = match config.require_confidential_hardware {
            Attr::Unknown => Attr::Unknown,
            _ if rules.require_confidential_hardware => string_set(&rules.allowed_hardware),
            _ => Attr::Null,
        };
    }
    if config.require_stable_image.is_null() {
        p.require_stable_image = Attr::Known(rules.require_stable_image);
    }
    if config.issuer.is_null() {
        p.issuer = Attr::Known(issuer.to_string());
    }
    let name = config.name.known().cloned();
    if config.bucket.is_null() {
        p.bucket = Attr::known_or_unknown(name.as_deref().map(|n| PolicyLocation::default_bucket(&facts.project, n)));
    }
    p.id = Attr::known_or_unknown(name.clone());
    p.project_number = Attr::Known(facts.project_number.clone());
    let pool = name.as_deref().map(|n| pool_name(&facts.project_number, &names::policy_pool_id(n)));
    let provider = pool.as_ref().map(|pool| format!("{pool}/providers/{PROVIDER_ID}"));
    p.audience = Attr::known_or_unknown(provider.as_deref().map(audience));
    p.principal_set = Attr::known_or_unknown(pool.as_deref().map(pool_principal_set));
    p.pool = Attr::known_or_unknown(pool);
    p.workload_identity_provider = Attr::known_or_unknown(provider);
    p.attribute_condition = Attr::known_or_unknown(condition.map(str::to_string));
    p.attribute_mapping = Attr::Known(attribute_mapping().into_iter().map(|(k, v)| (k, Attr::Known(v))).collect());
    p.policy_uri = Attr::known_or_unknown(p.bucket.as_deref().map(|b| PolicyLocation::new(b).document_uri()));

    let requires_replace = plan::replacements(&schema.block, prior_value, &p.clone().into_value());
    let fresh = prior_value.is_null() || !requires_replace.is_empty();
    let document_inputs_known = {
        let mut inputs = p.clone();
        (inputs.dataset_keys, inputs.policy_version, inputs.policy_sha256) = (Attr::Null, Attr::Null, Attr::Null);
        inputs.timeouts = Attr::Null;
        inputs.into_value().is_wholly_known()
    };
    match &facts.datasets {
        Some(located) if document_inputs_known => {
            p.dataset_keys =
                Attr::Known(located.iter().map(|l| (l.location.id(), Attr::Known(l.crypto_key.clone()))).collect());
            let prior_version = if fresh { None } else { prior.policy_version.known().map(|v| *v as u64) };
            let unchanged = |v: u64| sha256_hex(&document(&p, rules, located, v).to_bytes());
            let (version, sha) = match prior_version {
                Some(v) if prior.policy_sha256.as_deref() == Some(unchanged(v).as_str()) => (v, unchanged(v)),
                Some(v) => (v + 1, unchanged(v + 1)),
                None => (1, unchanged(1)),
            };
            p.policy_version = Attr::Known(version as i64);
            p.policy_sha256 = Attr::Known(sha);
        }
        _ => {
            p.dataset_keys = Attr::Unknown;
            p.policy_version = Attr::Unknown;
            p.policy_sha256 = Attr::Unknown;
        }
    }
    Ok((p.into_value(), requires_replace))
}

/// What plan knows of a policy's datasets.
enum Located {
    All(Vec<LocatedDataset>),
    /// Some dataset's bucket is there but its encrypted object is not — deleted outside Terraform,
    /// which the dataset's own plan restores in this apply. Planning the policy as "known after
    /// apply" lets that apply run; failing here would leave no way to converge (the re-upload
    /// could never be applied). Apply still refuses a dataset that is missing by then.
    Restoring(Diagnostics),
}

async fn locate_for_plan(c: &Clients, ids: &[String]) -> Result<Located, Diagnostics> {
    let mut restoring = Diagnostics::new();
    let mut out = Vec::new();
    for id in ids {
        match locate(c, id).await? {
            Some(l) => out.push(l),
            None => {
                let bucket = parse_id(id).map(|l| l.bucket).unwrap_or_default();
                let bucket_there =
                    c.storage.get_bucket(&bucket).await.map_err(|e| gcp_diag("Cannot read bucket", e))?;
                if bucket_there.is_none() {
                    return Err(missing_dataset(id)); // not one being restored
                }
                restoring.push(
                    Diagnostic::warning(
                        format!("dataset {id:?} has no encrypted object yet"),
                        "Its bucket exists, so its dcr_dataset is expected to upload it in this apply; the policy's \
                         document follows once it does.",
                    )
                    .at(AttributePath::root("datasets")),
                );
            }
        }
    }
    Ok(if restoring.is_empty() { Located::All(out) } else { Located::Restoring(restoring) })
}
