//! Planning a `dcr_dataset`: the source file is read (hashed and checked against the schema), so
//! an edited file plans an update and a file that breaks its schema fails the plan before anything
//! is created; then the planned state is derived from the configuration, what the files showed and
//! the prior state.

use dcr_attestation::names::{self, DatasetLocation};
use tfplugin6::model::{Attr, IntoValue};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, PlanRequest, PlanResponse, Value, plan};

use super::model::{Dataset, ProgrammingStage};
use super::schema::{schema, validate_config};
use dcr_dataset::{CsvSummary, DatasetSchema, check_csv, checkcache};

use super::columns::dataset_schema;
use crate::provider::ProviderState;
use crate::resources::common::{default_bucket_check, plan_response};

/// What plan learned from the files it read.
#[derive(Clone, Debug, Default)]
pub struct PlanFacts {
    pub project: String,
    pub source_sha256: Option<String>,
    pub source_rows: Option<u64>,
    pub public_sha256: Option<String>,
}

pub(super) async fn plan(state: &ProviderState, req: PlanRequest) -> PlanResponse {
    if req.proposed_new_state.is_null() {
        return PlanResponse::default();
    }
    let fail = |diagnostics: Diagnostics| PlanResponse { diagnostics, ..Default::default() };
    let mut d = validate_config(&req.config);
    if d.has_errors() {
        return fail(d);
    }
    let (config, prior) = match (super::read(&req.config), super::read(&req.prior_state)) {
        (Ok(c), Ok(p)) => (c, p),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let clients = match state.clients() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let default = |name: &str| DatasetLocation::default_bucket(&clients.project, name);
    if let Some(e) = default_bucket_check(&config.bucket, &config.name, default, "PROJECT-NAME") {
        return fail(e.into());
    }
    let mut facts = PlanFacts { project: clients.project.clone(), ..Default::default() };
    let schema = match dataset_schema(&config.schema) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let (Some(schema), Some(source)) = (&schema, config.source.as_deref()) {
        if let Some(warning) = uploaded_source_gone(&prior, &config) {
            facts.source_sha256 = prior.source_sha256.known().cloned();
            facts.source_rows = prior.source_rows.known().map(|r| *r as u64);
            d.push(warning);
        } else {
            match check_file_async(AttributePath::root("source"), source.to_string(), schema.clone()).await {
                Ok(s) => {
                    facts.source_sha256 = Some(s.sha256);
                    facts.source_rows = Some(s.rows);
                }
                Err(e) => d.extend(e),
            }
        }
        if let Some(warning) = published_sample_gone(&prior, &config) {
            facts.public_sha256 = prior.stage1_sha256.known().cloned();
            d.push(warning);
        } else if let Some(public) = config.stage().and_then(|s| s.public_source.as_deref()) {
            let at = AttributePath::root("programming_stage").attr("public_source");
            match check_file_async(at, public.to_string(), schema.clone()).await {
                Ok(s) => facts.public_sha256 = Some(s.sha256),
                Err(e) => d.extend(e),
            }
        }
    }
    if d.has_errors() {
        return fail(d);
    }
    let planned = plan_state(&req.prior_state, &req.config, &facts);
    if let Ok((v, _)) = &planned
        && let Err(e) = check_budget(&clients, v).await
    {
        return fail(e);
    }
    plan_response(planned, d)
}

/// A planned DP-synthetic generation must fit what the budget has left, per the ledger.
async fn check_budget(clients: &crate::clients::Clients, planned: &Value) -> Result<(), Diagnostics> {
    let p = super::read(planned)?;
    let (Some(budget), Some(stage), Some(place)) = (super::ledger::budget(&p), p.stage(), p.place()) else {
        return Ok(());
    };
    if p.stage_mode() != Some("dp_synthetic") || !p.stage1_sha256.is_unknown() {
        return Ok(());
    }
    let Some(epsilon) = stage.epsilon.known().and_then(|n| n.as_f64()) else { return Ok(()) };
    let delta = stage.delta.known().and_then(|n| n.as_f64()).unwrap_or(super::DEFAULT_DELTA);
    let stored = super::ledger::read(clients, &place).await?;
    let rho = dcr_synth::accounting::cdp_rho(epsilon, delta);
    stored.ledger.check(Some(budget), epsilon, rho).map_err(super::ledger::over_budget)
}

/// The planned state: the configuration, defaults filled in, and every computed value either kept
/// from the prior state (nothing it depends on changed) or unknown (apply will set it).
pub fn plan_state(
    prior_value: &Value,
    config_value: &Value,
    facts: &PlanFacts,
) -> Result<(Value, Vec<AttributePath>), Diagnostics> {
    let schema = schema();
    let (prior, config) = (super::read(prior_value)?, super::read(config_value)?);
    let mut with_defaults = config_value.clone();
    plan::fill_defaults(&schema.block, &mut with_defaults);
    let mut p = super::read(&with_defaults)?;

    if p.bucket.is_null() {
        p.bucket =
            Attr::known_or_unknown(p.name.as_deref().map(|n| DatasetLocation::default_bucket(&facts.project, n)));
    }
    let place = p.place();
    p.object = Attr::known_or_unknown(p.name.as_deref().map(names::dataset_object));
    p.id = Attr::known_or_unknown(place.as_ref().map(DatasetLocation::id));
    p.object_uri = Attr::known_or_unknown(place.as_ref().map(DatasetLocation::object_uri));
    p.key_ring = Attr::known_or_unknown(
        p.kms_location.as_deref().zip(p.name.as_deref()).map(|(l, n)| names::key_ring(&facts.project, l, n)),
    );
    p.source_sha256 = Attr::known_or_unknown(facts.source_sha256.clone());
    p.source_rows = Attr::known_or_unknown(facts.source_rows.map(|r| r as i64));

    let requires_replace = plan::replacements(&schema.block, prior_value, &p.clone().into_value());
    let fresh = prior_value.is_null() || !requires_replace.is_empty();
    if fresh {
        // Known only once the dataset exists: a policy planned alongside can then tell "being
        // created" (unknown) from "names a dataset that does not exist" (known, missing).
        p.id = Attr::Unknown;
    }
    // The key stays unless it is gone (a declared rule); a new key means new ciphertext.
    p.crypto_key = Attr::Unknown;
    let mut kept = p.into_value();
    plan::keep_prior_for_unknown(&schema.block, prior_value, &mut kept, fresh);
    let mut p = super::read(&kept)?;
    let keep = |v: &Attr<String>| if fresh || v.is_null() { Attr::Unknown } else { v.clone() };
    let reupload =
        p.crypto_key.is_unknown() || prior.source_sha256 != p.source_sha256 || prior.ciphertext_sha256.is_null();
    p.ciphertext_sha256 = if reupload { Attr::Unknown } else { keep(&prior.ciphertext_sha256) };
    p.object_generation = if reupload { Attr::Unknown } else { keep(&prior.object_generation) };

    let mode = p.stage_mode().map(str::to_string);
    match mode.as_deref() {
        Some("none") => {
            p.stage1_bucket = Attr::Null;
            p.stage1_uri = Attr::Null;
            p.stage1_sha256 = Attr::Null;
        }
        mode => {
            let sample = mode == Some("sample");
            p.stage1_bucket = Attr::known_or_unknown(p.bucket.as_deref().map(names::stage1_bucket));
            p.stage1_uri = Attr::known_or_unknown(place.as_ref().map(DatasetLocation::stage1_uri));
            p.stage1_sha256 = if sample {
                Attr::known_or_unknown(facts.public_sha256.clone())
            } else {
                // Who may read it is not what it holds: readers change without a new stand-in.
                let inputs = |d: &Dataset| {
                    d.programming_stage.as_ref().map(|s| ProgrammingStage { readers: Attr::Null, ..s.clone() })
                };
                let same_data = mode != Some("dp_synthetic") || prior.source_sha256 == p.source_sha256;
                let same_inputs = inputs(&prior) == inputs(&config) && prior.schema == config.schema && same_data;
                if same_inputs { keep(&prior.stage1_sha256) } else { Attr::Unknown }
            };
        }
    }
    p.privacy_ledger_uri = Attr::known_or_unknown(place.as_ref().map(DatasetLocation::ledger_uri));
    // What was spent changes with a new generation; how it is shown, with the budget's δ.
    let generates = mode.as_deref() == Some("dp_synthetic") && p.stage1_sha256.is_unknown();
    let shown_alike = prior.privacy_budget == config.privacy_budget;
    p.privacy_spent = if fresh || generates || !shown_alike { Attr::Unknown } else { prior.privacy_spent.clone() };
    if p.privacy_spent.is_null() {
        p.privacy_spent = Attr::Unknown;
    }
    Ok((p.into_value(), requires_replace))
}

/// The source is gone but its content is uploaded (same path and schema, object present): see
/// [`crate::files::gone_but_recorded`]. Not when a new upload would need it.
fn uploaded_source_gone(prior: &Dataset, config: &Dataset) -> Option<Diagnostic> {
    let source = config.source.as_deref()?;
    let recorded = prior.source_sha256.as_deref()?;
    let unchanged = prior.source.as_deref() == Some(source) && prior.schema == config.schema;
    let uploaded = !prior.object_generation.is_null() && !prior.ciphertext_sha256.is_null();
    crate::files::gone_but_recorded(
        AttributePath::root("source"),
        source,
        unchanged && uploaded,
        "the uploaded data",
        format!(
            "The encrypted object holds the source as last applied (SHA-256 {recorded}). Plans and destroy need no \
             local copy; to upload new data, put the file back at this path or change `source`."
        ),
    )
}

/// Like [`uploaded_source_gone`], for the public sample of `programming_stage`.
fn published_sample_gone(prior: &Dataset, config: &Dataset) -> Option<Diagnostic> {
    let path = config.stage()?.public_source.as_deref()?;
    let published = prior.stage1_sha256.known().is_some()
        && prior.stage().and_then(|s| s.public_source.as_deref()) == Some(path)
        && prior.schema == config.schema;
    crate::files::gone_but_recorded(
        AttributePath::root("programming_stage").attr("public_source"),
        path,
        published,
        "the published sample",
        "The stage-1 bucket holds the sample as last applied; put the file back or change `public_source` to \
         publish a new one."
            .into(),
    )
}

/// Reads and checks a CSV file against the schema (blocking; run on the blocking pool).
fn check_file(at: AttributePath, path: String, schema: DatasetSchema) -> Result<CsvSummary, Diagnostics> {
    let f = crate::files::open_regular(&at, &path)?;
    if let Some(s) = checkcache::lookup(std::path::Path::new(&path), &schema) {
        return Ok(s);
    }
    // The check reads in chunks of its own: no BufReader (it would copy every byte once more).
    let summary = check_csv(f, &schema).map_err(|e| {
        Diagnostics::from(Diagnostic::attribute_error(
            at.clone(),
            format!("{path:?} does not match the schema"),
            format!("{e}. Nothing was uploaded."),
        ))
    })?;
    checkcache::store(std::path::Path::new(&path), &schema, &summary);
    Ok(summary)
}

async fn check_file_async(at: AttributePath, path: String, schema: DatasetSchema) -> Result<CsvSummary, Diagnostics> {
    crate::resources::common::blocking("The file check", move || check_file(at, path, schema)).await
}

#[cfg(test)]
mod tests {
    use super::super::schema::tests::{config, facts, stage};
    use super::*;

    #[test]
    fn create_plans_defaults_and_unknown_results() {
        let (p, rr) = plan_state(&Value::Null, &config(&[]), &facts()).unwrap();
        assert!(rr.is_empty());
        assert_eq!(d(&p).bucket.as_deref(), Some("dcr-local-patients"));
        assert_eq!(d(&p).location.as_deref(), Some("US"));
        assert_eq!(d(&p).object_uri.as_deref(), Some("gs://dcr-local-patients/patients.csv.enc"));
        assert_eq!(d(&p).key_ring.as_deref(), Some("projects/dcr-local/locations/global/keyRings/dcr-patients"));
        assert_eq!(d(&p).source_sha256.as_deref(), Some("aa"));
        assert!(d(&p).crypto_key.is_unknown() && d(&p).ciphertext_sha256.is_unknown());
        assert!(d(&p).stage1_bucket.is_null());
    }

    /// The planned dataset as a model.
    fn d(v: &Value) -> Dataset {
        super::super::read(v).unwrap()
    }

    fn applied(cfg: &Value) -> Value {
        let (s, _) = plan_state(&Value::Null, cfg, &facts()).unwrap();
        let mut s = d(&s);
        assert!(s.id.is_unknown(), "the id is known once the dataset exists");
        s.id = Attr::Known("dcr-local-patients/patients".into());
        s.crypto_key = Attr::Known("k".into());
        s.ciphertext_sha256 = Attr::Known("cc".into());
        s.object_generation = Attr::Known("1".into());
        if s.stage1_sha256.is_unknown() {
            s.stage1_sha256 = Attr::Known("ss".into());
        }
        s.into_value()
    }

    #[test]
    fn unchanged_inputs_plan_no_change() {
        let cfg = config(&[("programming_stage", stage("random", &[("rows", Value::int(5))]))]);
        let prior = applied(&cfg);
        let (p, rr) = plan_state(&prior, &cfg, &facts()).unwrap();
        assert!(rr.is_empty());
        assert_eq!(p, prior);
    }

    #[test]
    fn an_edited_source_plans_a_reupload_not_a_replace() {
        let cfg = config(&[]);
        let prior = applied(&cfg);
        let mut f = facts();
        f.source_sha256 = Some("bb".into());
        let (p, rr) = plan_state(&prior, &cfg, &f).unwrap();
        assert!(rr.is_empty());
        assert!(d(&p).ciphertext_sha256.is_unknown());
        assert_eq!(d(&p).crypto_key.as_deref(), Some("k"));
    }

    /// A DP-synthetic stand-in is generated anew (spending its budget again) only when what it
    /// is drawn from changes: the source, the schema or its settings; not for new readers.
    #[test]
    fn a_dp_stand_in_regenerates_only_when_its_inputs_change() {
        let dp = |extra: &[(&str, Value)]| {
            let mut settings = vec![("epsilon", Value::int(1))];
            settings.extend(extra.iter().cloned());
            config(&[("programming_stage", stage("dp_synthetic", &settings))])
        };
        let prior = applied(&dp(&[]));
        let sha = |cfg: &Value, f: &PlanFacts| d(&plan_state(&prior, cfg, f).unwrap().0).stage1_sha256;
        assert_eq!(sha(&dp(&[]), &facts()).as_deref(), Some("ss"));
        let readers = Value::Set(vec![Value::string("user:a@b.co")]);
        assert_eq!(sha(&dp(&[("readers", readers)]), &facts()).as_deref(), Some("ss"));
        assert!(sha(&dp(&[("epsilon", Value::int(2))]), &facts()).is_unknown());
        assert!(sha(&dp(&[("bins", Value::int(4))]), &facts()).is_unknown());
        let edited = PlanFacts { source_sha256: Some("bb".into()), ..facts() };
        assert!(sha(&dp(&[]), &edited).is_unknown());
    }

    #[test]
    fn drift_from_refresh_plans_the_missing_parts_back() {
        let cfg = config(&[("programming_stage", stage("random", &[]))]);
        let mut prior = applied(&cfg);
        let mut gone = d(&prior);
        gone.ciphertext_sha256 = Attr::Null; // object deleted outside Terraform
        gone.stage1_sha256 = Attr::Null; // stand-in deleted
        prior = gone.into_value();
        let (p, _) = plan_state(&prior, &cfg, &facts()).unwrap();
        assert!(d(&p).ciphertext_sha256.is_unknown());
        assert!(d(&p).stage1_sha256.is_unknown());
    }

    #[test]
    fn a_new_name_or_bucket_replaces() {
        let prior = applied(&config(&[]));
        let (_, rr) = plan_state(&prior, &config(&[("name", Value::string("visits"))]), &facts()).unwrap();
        assert!(rr.contains(&AttributePath::root("name")));
        let (_, rr) = plan_state(&prior, &config(&[("bucket", Value::string("other-bucket"))]), &facts()).unwrap();
        assert!(rr.contains(&AttributePath::root("bucket")));
    }

    #[test]
    fn settle_removes_unknowns() {
        let v = Value::object([("a", Value::Unknown), ("b", Value::string("x"))]);
        assert_eq!(
            crate::resources::common::settle(&v),
            Value::object([("a", Value::Null), ("b", Value::string("x"))])
        );
    }
}
