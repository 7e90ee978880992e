//! Mechanics more than one resource needs: the read and apply skeleton of resources whose apply
//! converges, turning API errors into diagnostics, settling a state after a failed apply, and dcr's
//! private buckets (create or adopt, empty and delete, hash an object).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use dcr_gcp::GcpError;
use dcr_gcp::iam::IamResource;
use dcr_gcp::storage::{Bucket, IamConfiguration, UniformBucketLevelAccess};
use tfplugin6::model::{Attr, FromValue};
use tfplugin6::{ApplyRequest, AttributePath, Diagnostic, Diagnostics, PlanResponse, ReadResponse, Value};

use crate::clients::Clients;
use crate::timeouts;

pub fn gcp_diag(summary: &str, e: GcpError) -> Diagnostics {
    Diagnostic::error(summary, e.to_string()).into()
}

/// Replaces unknowns left in a state (after a failed apply) with nulls: state never holds unknowns.
pub fn settle(v: &Value) -> Value {
    match v {
        Value::Unknown => Value::Null,
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), settle(v))).collect()),
        Value::List(l) => Value::List(l.iter().map(settle).collect()),
        Value::Set(l) => Value::Set(l.iter().map(settle).collect()),
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), settle(v))).collect()),
        other => other.clone(),
    }
}

/// The settings every dcr bucket has: uniform bucket-level access, public access prevention.
pub fn private_bucket(name: &str, location: &str, labels: &BTreeMap<String, String>) -> Bucket {
    Bucket {
        name: name.to_string(),
        location: Some(location.to_string()),
        storage_class: None,
        labels: Some(labels.clone()),
        iam_configuration: Some(IamConfiguration {
            uniform_bucket_level_access: Some(UniformBucketLevelAccess { enabled: Some(true), locked_time: None }),
            public_access_prevention: Some("enforced".into()),
        }),
        metageneration: None,
        time_created: None,
    }
}

/// Creates the bucket, or adopts it when it already exists and we can manage it (a previous apply
/// that failed after creating it); brings labels and access settings to the desired values.
pub async fn ensure_bucket(c: &Clients, want: &Bucket) -> Result<(), Diagnostics> {
    let existing = match c.storage.get_bucket(&want.name).await {
        Ok(b) => b,
        Err(e) => return Err(gcp_diag(&format!("Cannot read bucket {:?}", want.name), e)),
    };
    let Some(have) = existing else {
        return match c.storage.insert_bucket(&c.project, want).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => Err(Diagnostic::attribute_error(
                AttributePath::root("bucket"),
                format!("bucket {:?} already exists and belongs to someone else", want.name),
                format!("{e}. Bucket names are global: choose another `bucket`."),
            )
            .into()),
            Err(e) => Err(gcp_diag(&format!("Cannot create bucket {:?}", want.name), e)),
        };
    };
    let labels_differ = have.labels.clone().unwrap_or_default() != want.labels.clone().unwrap_or_default();
    let have_iam = have.iam_configuration.clone().unwrap_or_default();
    let iam_differ = have_iam.public_access_prevention.as_deref() != Some("enforced")
        || have_iam.uniform_bucket_level_access.and_then(|u| u.enabled) != Some(true);
    if labels_differ || iam_differ {
        let patch = Bucket {
            name: want.name.clone(),
            labels: want.labels.clone(),
            iam_configuration: want.iam_configuration.clone(),
            ..Bucket::default()
        };
        c.storage.patch_bucket(&want.name, &patch).await.map_err(|e| gcp_diag("Cannot update bucket", e))?;
    }
    Ok(())
}

pub async fn empty_and_delete_bucket(c: &Clients, bucket: &str) -> Result<(), Diagnostics> {
    empty_and_delete_bucket_keeping(c, bucket, None).await
}

/// As [`empty_and_delete_bucket`], except that the object `keep` stays, and with it the bucket,
/// when it exists.
pub async fn empty_and_delete_bucket_keeping(c: &Clients, bucket: &str, keep: Option<&str>) -> Result<(), Diagnostics> {
    let objects = match c.storage.list_objects(bucket, None).await {
        Ok(o) => o,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(gcp_diag(&format!("Cannot list bucket {bucket:?}"), e)),
    };
    let mut kept = false;
    for o in objects {
        if Some(o.name.as_str()) == keep {
            kept = true;
            continue;
        }
        c.storage.delete_object(bucket, &o.name).await.map_err(|e| gcp_diag("Cannot delete object", e))?;
    }
    if kept {
        return Ok(());
    }
    c.storage.delete_bucket(bucket).await.map_err(|e| gcp_diag(&format!("Cannot delete bucket {bucket:?}"), e))
}

/// Grants (`present`) or revokes `role` for `member` on `r`, by IAM read-modify-write. Revoking on a
/// resource that is gone, or that we may no longer administer, is done.
pub async fn grant(r: &dyn IamResource, role: &str, member: &str, present: bool) -> Result<(), Diagnostics> {
    let result = dcr_gcp::iam::read_modify_write(r, |p| {
        if present { p.add_member(role, member) } else { p.remove_member(role, member) }
    })
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if !present && (e.is_not_found() || e.is_forbidden()) => Ok(()),
        Err(e) => Err(gcp_diag(
            &format!("Cannot {} {role} for {member} on {}", if present { "grant" } else { "revoke" }, r.describe()),
            e,
        )),
    }
}

/// An object's bytes, or `None` when it does not exist (small objects: documents, manifests, tokens).
pub async fn read_object(c: &Clients, bucket: &str, object: &str) -> Result<Option<Vec<u8>>, Diagnostics> {
    match c.storage.read_object(bucket, object).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(gcp_diag(&format!("Cannot read gs://{bucket}/{object}"), e)),
    }
}

/// A string the plan made known; its absence at apply is a provider bug.
pub fn known<'a>(type_name: &str, v: &'a tfplugin6::Attr<String>, attribute: &str) -> Result<&'a str, Diagnostics> {
    v.as_deref().ok_or_else(|| {
        Diagnostic::error(format!("{type_name}: {attribute} is not known"), "This is a bug in the provider.").into()
    })
}

/// Hex SHA-256 of an object's bytes, streamed.
pub async fn object_sha256(c: &Clients, bucket: &str, object: &str) -> Result<String, GcpError> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    c.storage
        .download_object(bucket, object, |chunk| {
            ctx.update(chunk);
            Ok(())
        })
        .await?;
    Ok(hex::encode(ctx.finish().as_ref()))
}

/// `ReadResource` for a resource whose refresh gives the new state or fails; on failure the state
/// stays as it was and the error is reported.
pub fn read_response(state: Value, private: Vec<u8>, refreshed: Result<Value, Diagnostics>) -> ReadResponse {
    match refreshed {
        Ok(new_state) => ReadResponse { new_state, private, diagnostics: Diagnostics::new() },
        Err(diagnostics) => ReadResponse { new_state: state, private, diagnostics },
    }
}

/// When `bucket` is left out, the default name `default(name)` (shown as `pattern`) must be a
/// usable bucket name: a diagnostic at `bucket` when it is not (see
/// [`crate::validate::default_bucket_diagnostic`]).
pub fn default_bucket_check(
    bucket: &tfplugin6::Attr<String>,
    name: &tfplugin6::Attr<String>,
    default: impl FnOnce(&str) -> String,
    pattern: &str,
) -> Option<Diagnostic> {
    let name = name.as_deref().filter(|_| bucket.is_null())?;
    crate::validate::default_bucket_diagnostic(AttributePath::root("bucket"), &default(name), pattern)
}

/// Runs blocking work (reading files, hashing, generating data, writing images) on the blocking
/// pool, off the async runtime's few threads, which the gRPC server and every other request share.
pub async fn blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, Diagnostics> + Send + 'static,
) -> Result<T, Diagnostics> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Diagnostic::error(format!("{what} failed"), e.to_string()).into()))
}

/// `PlanResourceChange`'s answer from a planner's result and the diagnostics gathered before it.
pub fn plan_response(planned: Result<(Value, Vec<AttributePath>), Diagnostics>, mut d: Diagnostics) -> PlanResponse {
    match planned {
        Ok((planned_state, requires_replace)) => {
            PlanResponse { planned_state, requires_replace, planned_private: Vec::new(), diagnostics: d }
        }
        Err(e) => {
            d.extend(e);
            PlanResponse { diagnostics: d, ..Default::default() }
        }
    }
}

/// Converges on typed models: reads the prior and planned states, starts the state from
/// `start(prior, planned)`, and lets `steps` fill it in as each piece of work completes. Returns
/// the state reached — settled (no unknowns) if a step failed — and what went wrong.
pub async fn converge_typed<M: tfplugin6::Model + Clone>(
    prior: &Value,
    planned: &Value,
    read: fn(&Value) -> Result<M, Diagnostics>,
    start: impl FnOnce(&M, &M) -> M,
    steps: impl AsyncFnOnce(&M, &M, &mut M) -> Result<(), Diagnostics>,
) -> (Value, Diagnostics) {
    let (prior, planned_model) = match (read(prior), read(planned)) {
        (Ok(p), Ok(n)) => (p, n),
        (Err(d), _) | (_, Err(d)) => return (settle(planned), d),
    };
    let mut state = start(&prior, &planned_model);
    let result = steps(&prior, &planned_model, &mut state).await;
    let state = state.into_value();
    match result {
        Ok(()) => (state, Diagnostics::new()),
        Err(d) => (settle(&state), d),
    }
}

/// What [`apply_converging`] reads of a resource: the attributes every converging resource has
/// (`declared_rules.rs` checks they are in each one's schema).
#[derive(Clone, Debug, Default, PartialEq, tfplugin6::Model)]
pub struct ConvergingResource {
    pub name: Attr<String>,
    pub timeouts: Attr<crate::timeouts::Timeouts>,
}

/// `ApplyResourceChange` for a resource whose apply converges: a destroy runs `delete` within the
/// `delete` time limit, keeping the prior state if it fails; a create or update runs `converge`
/// (which returns the state reached, even on failure) within its limit. On time-out the work done is
/// unknown, so the state is what can be vouched for: the prior state, or on create the plan's known
/// values. Returns the new state and what went wrong; the resource decides whether a failed create
/// left anything to track.
pub async fn apply_converging(
    type_name: &str,
    req: &ApplyRequest,
    default_timeout: Duration,
    delete: impl Future<Output = Result<(), Diagnostics>>,
    converge: impl Future<Output = (Value, Diagnostics)>,
) -> (Value, Diagnostics) {
    let read = |v: &Value| ConvergingResource::from_value(v).unwrap_or_default();
    let (prior, config) = (read(&req.prior_state), read(&req.config));
    let name = prior.name.as_deref().or(config.name.as_deref()).unwrap_or("");
    let what = format!("{type_name} {name:?}");
    if req.planned_state.is_null() {
        let limit = timeouts::limit(&prior.timeouts, "delete", default_timeout);
        return match timeouts::run("delete", &what, limit, delete).await {
            Ok(Ok(())) => (Value::Null, Diagnostics::new()),
            Ok(Err(d)) | Err(d) => (req.prior_state.clone(), d),
        };
    }
    let op = if req.prior_state.is_null() { "create" } else { "update" };
    let limit = timeouts::limit(&config.timeouts, op, default_timeout);
    match timeouts::run(op, &what, limit, converge).await {
        Ok(r) => r,
        Err(d) => (if req.prior_state.is_null() { settle(&req.planned_state) } else { req.prior_state.clone() }, d),
    }
}
