//! Planning a `dcr_workload`: the image digest (the image is built at plan, as
//! `data "dcr_image_digest"` builds it), backend defaults, names, and whether a new run is due.

use dcr_attestation::names::{RunLocation, instance_name};
use tfplugin6::plan;
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, PlanRequest, PlanResponse, Value};

use crate::clients::Clients;
use crate::provider::ProviderState;
use crate::workload_image::{plan_image, with_defaults};

use super::schema::{schema, validate_config};
use super::*;

pub(super) async fn plan(provider: &ProviderState, req: PlanRequest) -> PlanResponse {
    if req.proposed_new_state.is_null() {
        return PlanResponse::default();
    }
    let fail = |diagnostics: Diagnostics| PlanResponse { diagnostics, ..Default::default() };
    let d = validate_config(&req.config);
    if d.has_errors() {
        return fail(d);
    }
    let c = match provider.clients() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let backend = validate_for_backend(&req.config, &c);
    if backend.has_errors() {
        return fail(backend);
    }
    let defaults = with_defaults(&req.config);
    let mut d = d;
    let image_digest = if let Some(warning) = notebook_gone(&req.prior_state, &defaults) {
        d.push(warning);
        req.prior_state.get("image_digest").as_str().map(str::to_string)
    } else {
        match plan_image(&c, &defaults).await {
            Ok(i) => i.map(|(_, image)| image.digest),
            Err(e) => return fail(e),
        }
    };
    let (planned_state, requires_replace) =
        plan_state(&req.prior_state, &req.config, &Placement::of(&c), image_digest.as_deref());
    PlanResponse { planned_state, requires_replace, planned_private: Vec::new(), diagnostics: d }
}

/// Planned state: image attribute defaults, backend defaults, the planned image and names; results
/// unknown on a new run, kept on an in-place update.
/// What the image is built from, besides the notebook's bytes.
const IMAGE_INPUTS: [&str; 6] = ["notebook", "parameters", "base_image", "name", "max_run_seconds", "input"];

/// The notebook is gone but the run it defines is recorded and nothing else that goes into the
/// image changed: plan keeps the recorded image digest (see [`crate::files::gone_but_recorded`]).
fn notebook_gone(prior: &Value, planned: &Value) -> Option<Diagnostic> {
    let path = planned.get("notebook").as_str()?;
    let digest = prior.get("image_digest").as_str()?;
    let output_same = ["bucket", "prefix"].iter().all(|a| prior.get("output").get(a) == planned.get("output").get(a));
    let unchanged = output_same && IMAGE_INPUTS.iter().all(|a| prior.get(a) == planned.get(a));
    crate::files::gone_but_recorded(
        AttributePath::root("notebook"),
        path,
        unchanged,
        "the recorded run",
        format!(
            "The run of image {digest} is recorded in state; plans and destroy need no local copy. To run a changed \
             notebook, put the file back at this path."
        ),
    )
}

/// Where the backend puts what the configuration does not place: the provider block's region
/// and zone, and whether the backend is the local one.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    pub is_local: bool,
    pub region: Option<String>,
    pub zone: Option<String>,
}

impl Placement {
    pub(super) fn of(c: &Clients) -> Placement {
        Placement { is_local: c.is_local, region: c.region.clone(), zone: c.zone.clone() }
    }
}

pub fn plan_state(
    prior: &Value,
    config: &Value,
    at: &Placement,
    image_digest: Option<&str>,
) -> (Value, Vec<AttributePath>) {
    let schema = schema();
    let mut planned = with_defaults(config);
    plan::fill_defaults(&schema.block, &mut planned);
    if config.get("zone").is_null() {
        planned.set("zone", Value::string(default_zone(at).unwrap_or_default()));
    }
    let machine = match planned.get("confidential_type").as_str() {
        Some("TDX") => Value::string("c3-standard-4"),
        Some(_) => Value::string("n2d-standard-2"),
        None => Value::Unknown,
    };
    if config.get("machine_type").is_null() {
        planned.set("machine_type", machine);
    }
    let name = config.get("name").as_str().map(str::to_string);
    planned.set("id", Value::opt_string(name.clone()));
    planned.set("instance", Value::opt_string(name.as_deref().map(instance_name)));
    let output = planned.get("output").clone();
    if !output.is_null() && output.get("location").is_null() {
        let location = output_location(at, &planned);
        let mut o = output;
        o.set("location", Value::string(location));
        planned.set("output", o);
    }
    match image_digest {
        Some(digest) => {
            planned.set("image_digest", Value::string(digest));
            planned.set("image", Value::string(format!("{}@{}", repository(&planned), digest)));
            let out = planned.get("output");
            let uri = match (out.get("bucket").as_str(), out.get("prefix").as_str()) {
                (Some(b), Some(p)) => Value::string(RunLocation::new(b, p, digest).uri()),
                _ => Value::Unknown,
            };
            planned.set("output_uri", uri);
        }
        None => {
            for a in ["image_digest", "image", "output_uri"] {
                planned.set(a, Value::Unknown);
            }
        }
    }
    let replace = plan::replacements(&schema.block, prior, &planned);
    let keeps_run = !prior.is_null() && replace.is_empty() && !is_new_run(prior, &planned);
    let results =
        ["status", "output_manifest_sha256", "attestation_token", "attestation_claims", "log_tail", "shared_with"];
    for a in results {
        planned.set(a, if keeps_run { prior.get(a).clone() } else { Value::Unknown });
    }
    (planned, replace)
}

/// Whether `planned` differs from `prior` in what defines a run (and so runs again).
pub(super) fn is_new_run(prior: &Value, planned: &Value) -> bool {
    RUN_ATTRIBUTES.iter().any(|a| prior.get(a) != planned.get(a))
}

/// The zone a VM goes to when the resource names none: the provider's `zone`; on `gcp` without a
/// zone or region, `us-central1-a`. A region without a zone is not guessed into a zone (not every
/// region has an `-a`): `None`, and plan asks for one.
pub(super) fn default_zone(c: &Placement) -> Option<String> {
    if c.is_local {
        return Some("local-a".into());
    }
    match (&c.zone, &c.region) {
        (Some(z), _) => Some(z.clone()),
        (None, None) => Some("us-central1-a".into()),
        (None, Some(_)) => None,
    }
}

/// The output bucket's location: `output.location`, else the provider's region, else `US`.
pub(super) fn output_location(c: &Placement, planned: &Value) -> String {
    planned
        .get("output")
        .get("location")
        .as_str()
        .map(str::to_string)
        .or_else(|| c.region.clone().map(|r| r.to_uppercase()))
        .unwrap_or_else(|| "US".into())
}

/// Checks that need the backend: what Confidential Space needs on `gcp`.
pub(super) fn validate_for_backend(config: &Value, c: &Clients) -> Diagnostics {
    let mut d = Diagnostics::new();
    if c.is_local {
        return d;
    }
    if config.get("registry").is_null() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("registry"),
            "a registry is required on the gcp backend",
            "Confidential Space VMs pull the image from a registry: set registry, e.g. \
             us-docker.pkg.dev/PROJECT/REPO (dcr creates an Artifact Registry repository that does not exist yet).",
        ));
    }
    if config.get("service_account").is_null() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("service_account"),
            "a service account is required on the gcp backend",
            format!(
                "Confidential Space's launcher gets attestation tokens and pulls the image as the VM's service \
                 account: set service_account to one that has {SERVICE_ACCOUNT_ROLES}."
            ),
        ));
    }
    if config.get("zone").is_null() && default_zone(&Placement::of(c)).is_none() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("zone"),
            "no zone for the VM",
            "The provider sets a region but no zone: set zone here, or zone in the provider's gcp block.",
        ));
    }
    d
}
