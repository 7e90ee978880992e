//! Applying a `dcr_workload`: build and store the image, give the consumer's bucket a pool that
//! admits only this digest, run the VM, wait, and verify what it released; and destroy.

use dcr_attestation::claims::{GOOGLE_ISSUER, LOCAL_ISSUER, STS_AUDIENCE};
use dcr_attestation::condition::{attribute_condition, attribute_mapping};
use dcr_attestation::names::{self, RunLocation, digest_hex, instance_name};
use dcr_attestation::verify::Attested;
use dcr_attestation::workload::{
    FAILURE_OBJECT, FailureReport, OUTPUT_MANIFEST_OBJECT, OutputManifest, TOKEN_OBJECT, WorkloadManifest,
    output_nonce, shared_readers,
};
use dcr_gcp::workload_identity::{
    Oidc, WorkloadIdentityPool, WorkloadIdentityPoolProvider, pool_name, pool_principal_set,
};
use dcr_image::BuiltImage;
use tfplugin6::model::{Attr, IntoValue, SetOf};
use tfplugin6::{ApplyRequest, ApplyResponse, AttributePath, Diagnostic, Diagnostics, Value};

use crate::clients::Clients;
use crate::image_registry;
use crate::provider::ProviderState;
use crate::resources::common::{
    apply_converging, empty_and_delete_bucket, ensure_bucket, gcp_diag, grant, private_bucket, read_object, settle,
};
use crate::resources::policy::PROVIDER_ID;
use crate::verification::{Expected, check, claims_value};
use crate::workload_image::plan_image;

use super::model::{Workload, known};
use super::plan::{Placement, output_location};
use super::vm::{instance_body, output_rules, share_run};
use super::{LOG_TAIL_LINES, OUTPUT_WRITER, TYPE_NAME, default_timeout, read, repository};

pub(super) async fn apply(provider: &ProviderState, req: ApplyRequest) -> ApplyResponse {
    let delete = delete(provider, &req.prior_state);
    let converge = converge(provider, &req.prior_state, &req.planned_state);
    let limits_from = if req.planned_state.is_null() { &req.prior_state } else { &req.planned_state };
    let limit = default_timeout(&read(limits_from).unwrap_or_default());
    let (mut state, mut diagnostics) = apply_converging(TYPE_NAME, &req, limit, delete, converge).await;
    if diagnostics.has_errors() && !req.planned_state.is_null() {
        // Timed out, or failed while it waited: the run must not go on unsupervised on the data.
        match stop_unfinished_run(provider, &req.planned_state).await {
            Ok(true) if req.prior_state.is_null() => match read(&state) {
                Ok(mut w) => {
                    w.status = Attr::Known("INTERRUPTED".into());
                    state = w.into_value();
                }
                Err(d) => diagnostics.extend(d),
            },
            Ok(_) => {}
            Err(d) => diagnostics.extend(d),
        }
    }
    ApplyResponse { new_state: state, private: Vec::new(), diagnostics }
}

/// Stores the image where the VM pulls it from; returns the pinned reference.
async fn store_image(c: &Clients, planned: &Workload, image: &BuiltImage) -> Result<String, Diagnostics> {
    let repo = repository(planned);
    let fail = |e: dcr_image::ImageError| {
        Diagnostics::from(Diagnostic::error("Cannot store the workload image", e.to_string()))
    };
    match planned.registry.as_deref() {
        None => {
            let dir = c.local_image_store().ok_or_else(|| {
                Diagnostics::from(Diagnostic::attribute_error(
                    AttributePath::root("registry"),
                    "a registry is required on the gcp backend",
                    "Set registry to an Artifact Registry repository, e.g. us-docker.pkg.dev/PROJECT/REPO.",
                ))
            })?;
            let (image, tag) = (image.clone(), planned.name().as_deref().unwrap_or("workload").to_string());
            let digest = image.digest.clone();
            crate::resources::common::blocking("The image's write", move || {
                let layout = dcr_image::layout::Layout::create(&dir).map_err(fail)?;
                image.write_to(&layout, &tag).map_err(fail)
            })
            .await?;
            Ok(format!("{repo}@{digest}"))
        }
        Some(registry) => {
            if !c.is_local {
                image_registry::prepare(c, registry, known(&planned.service_account, "service_account")?).await?;
            }
            let host = repo.split('/').next().unwrap_or("").to_string();
            let dest = dcr_image::registry::Destination {
                reference: format!("{repo}:{}", &digest_hex(&image.digest)[..12]),
                auth: image_registry::push_auth(c, &host).await?,
                plain_http: dcr_image::registry::loopback_plain_http(&repo),
            };
            dcr_image::registry::push(image, &dest).await.map_err(fail)
        }
    }
}

/// The consumer side: output bucket, and a pool whose condition pins this digest, allowed to
/// write there.
async fn ensure_output_access(c: &Clients, planned: &Workload, digest: &str) -> Result<(), Diagnostics> {
    let name = known(planned.name(), "name")?.to_string();
    let output = planned.output();
    let bucket = known(&output.bucket, "output.bucket")?;
    let labels = std::collections::BTreeMap::from([("dcr-workload".to_string(), name.clone())]);
    ensure_bucket(c, &private_bucket(bucket, &output_location(&Placement::of(c), &output), &labels)).await?;
    let number = c.project_number().await.map_err(|e| gcp_diag("Cannot read the project number", e))?;
    let parent = format!("projects/{number}/locations/global");
    let pool = WorkloadIdentityPool {
        display_name: Some(format!("dcr out {name}")),
        description: Some(format!("dcr_workload {name:?} writing its results (managed by Terraform)")),
        ..Default::default()
    };
    let pool = c
        .iam
        .ensure(&parent, &names::output_pool_id(&name), &pool)
        .await
        .map_err(|e| gcp_diag("Cannot create the output workload identity pool", e))?;
    let provider = WorkloadIdentityPoolProvider {
        display_name: Some("attestation".into()),
        description: Some(format!("Only image {digest} (managed by dcr)")),
        attribute_mapping: attribute_mapping(),
        attribute_condition: Some(attribute_condition(&output_rules(digest, c.is_local))),
        oidc: Some(Oidc {
            issuer_uri: if c.is_local { LOCAL_ISSUER } else { GOOGLE_ISSUER }.to_string(),
            allowed_audiences: vec![STS_AUDIENCE.to_string()],
            jwks_json: None,
        }),
        ..Default::default()
    };
    c.iam
        .ensure(&pool.name, PROVIDER_ID, &provider)
        .await
        .map_err(|e| gcp_diag("Cannot create the output workload identity provider", e))?;
    grant(&c.storage.bucket_iam(bucket), OUTPUT_WRITER, &pool_principal_set(&pool.name), true).await
}

/// Polls the VM until it is TERMINATED; returns its last state.
async fn wait_for_end(c: &Clients, zone: &str, instance: &str) -> Result<serde_json::Value, Diagnostics> {
    let mut polls = 0u32;
    loop {
        let vm = c
            .compute
            .get_instance(&c.project, zone, instance)
            .await
            .map_err(|e| gcp_diag("Cannot read the workload VM", e))?
            .ok_or_else(|| {
                Diagnostics::from(Diagnostic::error(
                    "The workload VM disappeared",
                    format!("{instance} was deleted while it ran."),
                ))
            })?;
        if vm["status"] == "TERMINATED" || vm["status"] == "STOPPED" {
            return Ok(vm);
        }
        tokio::time::sleep(std::time::Duration::from_millis(if polls < 20 { 250 } else { 2000 })).await;
        polls += 1;
    }
}

async fn log_tail(c: &Clients, zone: &str, instance: &str) -> String {
    match c.compute.serial_output(&c.project, zone, instance, 0).await {
        Ok(out) => {
            let lines: Vec<&str> = out.contents.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(the serial console could not be read: {e})"),
    }
}

async fn converge(provider: &ProviderState, prior: &Value, planned: &Value) -> (Value, Diagnostics) {
    let (prior_model, planned_model) = match (read(prior), read(planned)) {
        (Ok(p), Ok(n)) => (p, n),
        (Err(d), _) | (_, Err(d)) => return (settle(planned), d),
    };
    let mut state = planned_model.clone();
    if !prior.is_null() && prior_model.same_run(&planned_model) {
        return (state.into_value(), Diagnostics::new()); // an in-place change (wait, timeouts): nothing runs again
    }
    match run(provider, &planned_model, &mut state).await {
        Ok(()) => (state.into_value(), Diagnostics::new()),
        // A refused or failed new run changes no record: the state still describes the last
        // finished run (whose results are still there), so the next plan tries the new run
        // again. A failed first run is recorded as it got (Terraform taints it).
        Err(d) if !prior.is_null() => (prior.clone(), d),
        Err(d) => (settle(&state.into_value()), d),
    }
}

/// A new run: the image stored, the output's access, the VM started, waited for and collected.
async fn run(provider: &ProviderState, planned: &Workload, state: &mut Workload) -> Result<(), Diagnostics> {
    let c = provider.clients()?;
    let (manifest, image) = plan_image(&c, &planned.image_spec()).await?.ok_or_else(|| {
        Diagnostics::from(Diagnostic::error(
            "dcr_workload: the image inputs are not known",
            "This is a bug in the provider.",
        ))
    })?;
    if planned.image_digest.as_deref() != Some(image.digest.as_str()) {
        return Err(Diagnostic::error(
            "The workload image changed between plan and apply",
            format!(
                "The plan built {}, apply built {}: the notebook or base image changed in between. Run terraform apply again.",
                planned.image_digest.as_deref().unwrap_or("?"),
                image.digest
            ),
        )
        .into());
    }
    let reference = provider.stop.unless_stopped("the image push", store_image(&c, planned, &image)).await??;
    state.image = Attr::Known(reference.clone());
    ensure_output_access(&c, planned, &image.digest).await?;

    let zone = known(&planned.zone, "zone")?.to_string();
    let instance = instance_name(known(planned.name(), "name")?);
    // A VM of this name is an earlier run of this workload (a failed apply): it goes first.
    c.compute
        .delete_instance(&c.project, &zone, &instance)
        .await
        .map_err(|e| gcp_diag("Cannot delete the earlier run's VM", e))?;
    let body = instance_body(planned, &reference, c.is_local, c.local_endpoint.as_deref());
    c.compute
        .insert_instance(&c.project, &zone, &body)
        .await
        .map_err(|e| gcp_diag("Cannot create the workload VM", e))?;
    state.status = Attr::Known("PROVISIONING".into());
    if !c.is_local && planned.wait == Attr::Known(false) {
        state.output_manifest_sha256 = Attr::Null;
        state.attestation_token = Attr::Null;
        state.attestation_claims = Value::Null;
        state.log_tail = Attr::Null;
        state.shared_with = Attr::Null;
        return Ok(());
    }
    let vm = match provider.stop.unless_stopped("the run", wait_for_end(&c, &zone, &instance)).await {
        Ok(vm) => vm?,
        Err(interrupted) => {
            // A run cut short must not go on unsupervised on the data: the VM goes now, and
            // the next apply starts a new run (a failed create is replaced).
            let deleted = c.compute.delete_instance(&c.project, &zone, &instance).await;
            state.status = Attr::Known(if deleted.is_ok() { "INTERRUPTED" } else { "RUNNING" }.into());
            let mut d = interrupted;
            if let Err(e) = deleted {
                d.extend(gcp_diag(&format!("Cannot delete the interrupted run's VM {instance}"), e));
            }
            return Err(d);
        }
    };
    state.status = vm["status"].as_str().map_or(Attr::Null, |s| Attr::Known(s.to_string()));
    collect(&c, state, &manifest, &image.digest, &zone, &instance, &vm).await
}

/// Reads what the run released and verifies it; a failure report or a refused token fails the
/// apply with the reason.
#[allow(clippy::too_many_arguments)]
async fn collect(
    c: &Clients,
    state: &mut Workload,
    manifest: &WorkloadManifest,
    digest: &str,
    zone: &str,
    instance: &str,
    vm: &serde_json::Value,
) -> Result<(), Diagnostics> {
    let fail = |summary: String, detail: String| Diagnostics::from(Diagnostic::error(summary, detail));
    let place = RunLocation::under(&manifest.output.uri, digest).ok_or_else(|| {
        fail("The workload's output is not in Cloud Storage".into(), format!("{:?}", manifest.output.uri))
    })?;
    let (run, bucket) = (place.uri(), place.bucket.as_str());
    if let Some(bytes) = read_object(c, bucket, &place.object(FAILURE_OBJECT)).await? {
        let tail = log_tail(c, zone, instance).await;
        state.log_tail = Attr::Known(tail.clone());
        let report: Option<FailureReport> = serde_json::from_slice(&bytes).ok();
        let (stage, message) = report
            .map(|r| (r.stage, r.message))
            .unwrap_or_else(|| ("?".into(), String::from_utf8_lossy(&bytes).into_owned()));
        return Err(fail(
            format!("The workload failed ({stage}); nothing was released"),
            format!("{message}\n\nEnd of the VM's console:\n{tail}"),
        ));
    }
    let Some(manifest_bytes) = read_object(c, bucket, &place.object(OUTPUT_MANIFEST_OBJECT)).await? else {
        let tail = log_tail(c, zone, instance).await;
        state.log_tail = Attr::Known(tail.clone());
        return Err(fail(
            "The workload released nothing".into(),
            format!(
                "The VM ended ({}) without an output manifest or a failure report in {run}.\n\nEnd of the VM's console:\n{tail}",
                vm["statusMessage"].as_str().unwrap_or("no status message")
            ),
        ));
    };
    let token = read_object(c, bucket, &place.object(TOKEN_OBJECT)).await?.ok_or_else(|| {
        fail(
            "The workload released no attestation token".into(),
            format!("{} is missing.", place.object_uri(TOKEN_OBJECT)),
        )
    })?;
    let token = String::from_utf8_lossy(&token).trim().to_string();
    let issuer = if c.is_local { LOCAL_ISSUER } else { GOOGLE_ISSUER };
    let jwks = c.issuer_jwks(issuer).await.map_err(|e| fail("Cannot fetch the issuer's keys".into(), e))?;
    let expected = Expected {
        issuer: issuer.to_string(),
        audience: Some(run.clone()),
        attested: Attested {
            image_digest: Some(digest.to_string()),
            nonce: Some(output_nonce(&manifest_bytes)),
            require_confidential_hardware: !c.is_local,
            allow_debug: Some(c.is_local),
            ..Default::default()
        },
        valid_at: None,
        jwks: None,
        local_state_dir: None,
    };
    let claims = check(&token, &jwks, &expected).map_err(|why| {
        fail(
            "The workload's attestation token does not verify".into(),
            format!("{why}. The results in {run} are not trusted."),
        )
    })?;
    let released = OutputManifest::from_bytes(&manifest_bytes).map_err(|e| {
        fail(
            "The workload's output manifest is not readable".into(),
            format!("{e} ({})", place.object_uri(OUTPUT_MANIFEST_OBJECT)),
        )
    })?;
    let readers = shared_readers(&released.inputs);
    share_run(c, bucket, &place.prefix, digest, &readers).await?;
    state.shared_with = Attr::Known(SetOf(readers.iter().cloned().map(Attr::Known).collect()));
    state.output_manifest_sha256 = Attr::Known(output_nonce(&manifest_bytes));
    state.attestation_token = Attr::Known(token);
    state.attestation_claims = claims_value(&claims);
    state.log_tail = Attr::Null;
    Ok(())
}

/// Deletes the workload's VM if it is still running; true when it did.
async fn stop_unfinished_run(provider: &ProviderState, planned: &Value) -> Result<bool, Diagnostics> {
    let c = provider.clients()?;
    let planned = read(planned)?;
    let (Some(zone), Some(name)) = (planned.zone.as_deref(), planned.name().as_deref()) else {
        return Ok(false);
    };
    let instance = instance_name(name);
    let vm = c
        .compute
        .get_instance(&c.project, zone, &instance)
        .await
        .map_err(|e| gcp_diag("Cannot read the workload VM", e))?;
    let running = vm.is_some_and(|vm| vm["status"] != "TERMINATED" && vm["status"] != "STOPPED");
    if running {
        c.compute
            .delete_instance(&c.project, zone, &instance)
            .await
            .map_err(|e| gcp_diag(&format!("Cannot delete the unfinished run's VM {instance}"), e))?;
    }
    Ok(running)
}

async fn delete(provider: &ProviderState, prior: &Value) -> Result<(), Diagnostics> {
    let c = provider.clients()?;
    let prior = read(prior)?;
    let name = known(prior.name(), "name")?;
    if let Some(zone) = prior.zone.as_deref() {
        c.compute
            .delete_instance(&c.project, zone, &instance_name(name))
            .await
            .map_err(|e| gcp_diag("Cannot delete the workload VM", e))?;
    }
    let number = c.project_number().await.map_err(|e| gcp_diag("Cannot read the project number", e))?;
    let pool = pool_name(&number, &names::output_pool_id(name));
    if let Some(bucket) = prior.output().bucket.as_deref() {
        // The results go with the workload: copy what you keep before destroying it.
        empty_and_delete_bucket(&c, bucket).await?;
    }
    c.iam
        .delete_if_present::<WorkloadIdentityPoolProvider>(&format!("{pool}/providers/{PROVIDER_ID}"))
        .await
        .map_err(|e| gcp_diag("Cannot delete the output workload identity provider", e))?;
    c.iam
        .delete_if_present::<WorkloadIdentityPool>(&pool)
        .await
        .map_err(|e| gcp_diag("Cannot delete the output workload identity pool", e))?;
    Ok(())
}
