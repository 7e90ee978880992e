//! Planning a `dcr_workload`: the image digest (the image is built at plan, as
//! `data "dcr_image_digest"` builds it), backend defaults, names, and whether a new run is due.

use dcr_attestation::names::{RunLocation, instance_name};
use tfplugin6::model::{Attr, IntoValue};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, PlanRequest, PlanResponse, Value, plan};

use super::model::{Workload, WorkloadOutput};
use super::schema::{schema, validate_config};
use super::{SERVICE_ACCOUNT_ROLES, read, repository};
use crate::clients::Clients;
use crate::provider::ProviderState;
use crate::resources::common::plan_response;
use crate::workload_image::plan_image;

pub(super) async fn plan(provider: &ProviderState, req: PlanRequest) -> PlanResponse {
    if req.proposed_new_state.is_null() {
        return PlanResponse::default();
    }
    let fail = |diagnostics: Diagnostics| PlanResponse { diagnostics, ..Default::default() };
    let mut d = validate_config(&req.config);
    if d.has_errors() {
        return fail(d);
    }
    let c = match provider.clients() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (config, prior, defaults) = match (read(&req.config), read(&req.prior_state), with_defaults(&req.config)) {
        (Ok(c), Ok(p), Ok(w)) => (c, p, w),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return fail(e),
    };
    let backend = validate_for_backend(&config, &c);
    if backend.has_errors() {
        return fail(backend);
    }
    let image_digest = if let Some(warning) = notebook_gone(&prior, &defaults) {
        d.push(warning);
        prior.image_digest.known().cloned()
    } else {
        match plan_image(&c, &defaults.image_spec()).await {
            Ok(i) => i.map(|(_, image)| image.digest),
            Err(e) => return fail(e),
        }
    };
    plan_response(plan_state(&req.prior_state, &req.config, &Placement::of(&c), image_digest.as_deref()), d)
}

/// The configuration with the defaults the image attributes take: the declared ones, the base
/// image and the output prefix.
pub(super) fn with_defaults(config: &Value) -> Result<Workload, Diagnostics> {
    let mut v = config.clone();
    plan::fill_defaults(&schema().block, &mut v);
    let mut w = read(&v)?;
    w.image_attrs.fill_defaults();
    Ok(w)
}

/// The notebook is gone but the run it defines is recorded and nothing else that goes into the
/// image changed: plan keeps the recorded image digest (see [`crate::files::gone_but_recorded`]).
fn notebook_gone(prior: &Workload, planned: &Workload) -> Option<Diagnostic> {
    let path = planned.image_attrs.notebook.as_deref()?;
    let digest = prior.image_digest.as_deref()?;
    crate::files::gone_but_recorded(
        AttributePath::root("notebook"),
        path,
        prior.same_image_inputs(planned),
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

/// Planned state: image attribute defaults, backend defaults, the planned image and names; results
/// unknown on a new run, kept on an in-place update.
pub fn plan_state(
    prior_value: &Value,
    config_value: &Value,
    at: &Placement,
    image_digest: Option<&str>,
) -> Result<(Value, Vec<AttributePath>), Diagnostics> {
    let schema = schema();
    let (prior, config) = (read(prior_value)?, read(config_value)?);
    let mut p = with_defaults(config_value)?;
    if config.zone.is_null() {
        p.zone = Attr::Known(default_zone(at).unwrap_or_default());
    }
    if config.machine_type.is_null() {
        p.machine_type = match p.confidential_type.as_deref() {
            Some("TDX") => Attr::Known("c3-standard-4".into()),
            Some(_) => Attr::Known("n2d-standard-2".into()),
            None => Attr::Unknown,
        };
    }
    let name = config.name().known().cloned();
    p.instance = Attr::known_or_unknown(name.as_deref().map(instance_name));
    p.id = Attr::known_or_unknown(name);
    if let Attr::Known(o) = &mut p.image_attrs.output
        && o.location.is_null()
    {
        o.location = Attr::Known(output_location(at, o));
    }
    match image_digest {
        Some(digest) => {
            p.image_digest = Attr::Known(digest.to_string());
            p.image = Attr::Known(format!("{}@{digest}", repository(&p)));
            let out = p.output();
            p.output_uri = Attr::known_or_unknown(
                out.bucket.as_deref().zip(out.prefix.as_deref()).map(|(b, pre)| RunLocation::new(b, pre, digest).uri()),
            );
        }
        None => (p.image_digest, p.image, p.output_uri) = (Attr::Unknown, Attr::Unknown, Attr::Unknown),
    }
    let replace = plan::replacements(&schema.block, prior_value, &p.clone().into_value());
    let keeps_run = !prior_value.is_null() && replace.is_empty() && prior.same_run(&p);
    if keeps_run {
        p.status = prior.status;
        p.output_manifest_sha256 = prior.output_manifest_sha256;
        p.attestation_token = prior.attestation_token;
        p.attestation_claims = prior.attestation_claims;
        p.log_tail = prior.log_tail;
        p.shared_with = prior.shared_with;
    } else {
        p.status = Attr::Unknown;
        p.output_manifest_sha256 = Attr::Unknown;
        p.attestation_token = Attr::Unknown;
        p.attestation_claims = Value::Unknown;
        p.log_tail = Attr::Unknown;
        p.shared_with = Attr::Unknown;
    }
    Ok((p.into_value(), replace))
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
pub(super) fn output_location(c: &Placement, output: &WorkloadOutput) -> String {
    output
        .location
        .known()
        .cloned()
        .or_else(|| c.region.clone().map(|r| r.to_uppercase()))
        .unwrap_or_else(|| "US".into())
}

/// Checks that need the backend: what Confidential Space needs on `gcp`.
pub(super) fn validate_for_backend(config: &Workload, c: &Clients) -> Diagnostics {
    let mut d = Diagnostics::new();
    if c.is_local {
        return d;
    }
    if config.registry.is_null() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("registry"),
            "a registry is required on the gcp backend",
            "Confidential Space VMs pull the image from a registry: set registry, e.g. \
             us-docker.pkg.dev/PROJECT/REPO (dcr creates an Artifact Registry repository that does not exist yet).",
        ));
    }
    if config.service_account.is_null() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("service_account"),
            "a service account is required on the gcp backend",
            format!(
                "Confidential Space's launcher gets attestation tokens and pulls the image as the VM's service \
                 account: set service_account to one that has {SERVICE_ACCOUNT_ROLES}."
            ),
        ));
    }
    if config.zone.is_null() && default_zone(&Placement::of(c)).is_none() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("zone"),
            "no zone for the VM",
            "The provider sets a region but no zone: set zone here, or zone in the provider's gcp block.",
        ));
    }
    d
}
