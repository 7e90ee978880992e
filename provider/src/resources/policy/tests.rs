//! Checks of the pure parts of `dcr_policy`: configuration, rules, plans.
use dcr_attestation::claims::{CONFIDENTIAL_HARDWARE, GOOGLE_ISSUER, LOCAL_ISSUER};
use tfplugin6::model::{Attr, IntoValue};
use tfplugin6::{AttributePath, Diagnostics, Value};

use super::model::Policy;
use super::*;

/// A value as the policy model.
fn m(v: &Value) -> Policy {
    super::read(v).unwrap()
}

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn digest(i: usize) -> String {
    format!("sha256:{i:064x}")
}

fn config(extra: &[(&str, Value)]) -> Value {
    let mut cfg = Value::null_object(&schema().implied_type());
    cfg.set("name", Value::string("study"));
    cfg.set("datasets", Value::Set(vec![Value::string("dcr-local-patients/patients")]));
    cfg.set("allowed_image_digests", Value::Set(vec![Value::string(D1)]));
    for (k, v) in extra {
        cfg.set(k, v.clone());
    }
    cfg
}

fn output(pairs: &[(&str, Value)]) -> Value {
    let mut o =
        Value::object([("max_bytes", Value::Null), ("allowed_extensions", Value::Null), ("readers", Value::Null)]);
    for (k, v) in pairs {
        o.set(k, v.clone());
    }
    o
}

fn summaries(d: &Diagnostics) -> Vec<String> {
    d.iter().map(|x| x.summary.clone()).collect()
}

#[test]
fn bad_inputs_name_their_attribute() {
    let set = |items: &[&str]| Value::Set(items.iter().map(|s| Value::string(*s)).collect());
    let cases: Vec<(Value, &str)> = vec![
        (config(&[("name", Value::string("x"))]), "name"),
        (config(&[("name", Value::string("Bad_Name"))]), "name"),
        (config(&[("datasets", set(&[]))]), "datasets"),
        (config(&[("datasets", set(&["no-slash"]))]), "datasets"),
        (config(&[("allowed_image_digests", set(&["sha256:abc"]))]), "allowed_image_digests"),
        (config(&[("allowed_image_digests", set(&["latest"]))]), "allowed_image_digests"),
        (config(&[("allowed_hardware", set(&["GCP_QUANTUM"]))]), "allowed_hardware"),
        (
            config(&[
                ("allowed_hardware", set(&["GCP_INTEL_TDX"])),
                ("require_confidential_hardware", Value::Bool(false)),
            ]),
            "allowed_hardware",
        ),
        (config(&[("issuer", Value::string("http://issuer.example"))]), "issuer"),
        (config(&[("bucket", Value::string("Bad Bucket"))]), "bucket"),
        (config(&[("output", output(&[("max_bytes", Value::int(0))]))]), "output.max_bytes"),
        (config(&[("output", output(&[("allowed_extensions", set(&[".csv"]))]))]), "output.allowed_extensions"),
        (config(&[("output", output(&[("readers", set(&["allUsers"]))]))]), "output.readers"),
    ];
    for (cfg, attr) in cases {
        let d = validate_config(&cfg);
        assert!(d.has_errors(), "{attr}: expected an error");
        assert!(summaries(&d).iter().any(|s| s.contains(attr)), "{attr}: {:?}", summaries(&d));
    }
    assert!(validate_config(&config(&[])).is_empty());
}

#[test]
fn the_backend_decides_defaults_and_refusals() {
    let (rules, issuer, warnings) = effective_rules(&m(&config(&[])), false).unwrap();
    assert!(rules.require_confidential_hardware && rules.require_stable_image && !rules.allow_debug);
    assert_eq!(rules.allowed_hardware.len(), CONFIDENTIAL_HARDWARE.len());
    assert_eq!(issuer, GOOGLE_ISSUER);
    assert!(warnings.is_empty());

    let on_gcp = |extra: &[(&str, Value)]| effective_rules(&m(&config(extra)), false).err().map(|d| summaries(&d));
    let e = on_gcp(&[("require_confidential_hardware", Value::Bool(false))]).unwrap();
    assert!(e[0].contains("require_confidential_hardware"), "{e:?}");
    let e = on_gcp(&[("allow_debug", Value::Bool(true))]).unwrap();
    assert!(e[0].contains("allow_debug"), "{e:?}");

    let (rules, issuer, warnings) = effective_rules(&m(&config(&[])), true).unwrap();
    assert!(!rules.require_confidential_hardware && !rules.require_stable_image);
    assert_eq!(issuer, LOCAL_ISSUER);
    assert!(!warnings.has_errors() && !warnings.is_empty(), "a local policy refusing the simulator is warned about");
    let (_, _, warnings) = effective_rules(&m(&config(&[("allow_debug", Value::Bool(true))])), true).unwrap();
    assert!(warnings.is_empty());
}

#[test]
fn a_condition_over_googles_limit_is_refused_naming_the_digests() {
    let many = Value::Set((0..60).map(|i| Value::string(digest(i))).collect());
    let (rules, _, _) = effective_rules(&m(&config(&[("allowed_image_digests", many)])), false).unwrap();
    let d = checked_condition(&rules).unwrap_err();
    assert!(summaries(&d)[0].contains("allowed_image_digests"), "{:?}", summaries(&d));
    let few = Value::Set((0..10).map(|i| Value::string(digest(i))).collect());
    let (rules, _, _) = effective_rules(&m(&config(&[("allowed_image_digests", few)])), false).unwrap();
    assert!(checked_condition(&rules).unwrap().len() <= dcr_attestation::cel::MAX_CONDITION_CHARS);
}

fn facts(known: bool) -> PlanFacts {
    PlanFacts {
        project: "dcr-local".into(),
        project_number: "123".into(),
        is_local: true,
        datasets: known.then(|| {
            vec![crate::resources::dataset::LocatedDataset {
                location: dcr_attestation::names::DatasetLocation::new("dcr-local-patients", "patients"),
                crypto_key: "projects/dcr-local/locations/global/keyRings/dcr-patients/cryptoKeys/data-1".into(),
            }]
        }),
    }
}

fn plan(prior: &Value, cfg: &Value, known: bool) -> (Value, Vec<AttributePath>) {
    let (rules, issuer, _) = effective_rules(&m(cfg), true).unwrap();
    let cond = checked_condition(&rules).unwrap();
    plan_state(prior, cfg, &rules, &issuer, Some(&cond), &facts(known)).unwrap()
}

#[test]
fn plans_name_everything_and_version_the_document_by_content() {
    let cfg = config(&[("allow_debug", Value::Bool(true))]);
    let (p, rr) = plan(&Value::Null, &cfg, true);
    assert!(rr.is_empty());
    assert_eq!(m(&p).pool.as_deref(), Some("projects/123/locations/global/workloadIdentityPools/dcr-study"));
    assert_eq!(
        m(&p).audience.as_deref(),
        Some(
            "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/dcr-study/providers/attestation"
        )
    );
    assert_eq!(
        m(&p).attribute_condition.as_deref(),
        Some(format!("assertion.submods.container.image_digest in ['{D1}']").as_str())
    );
    assert_eq!(m(&p).bucket.as_deref(), Some("dcr-local-policy-study"));
    assert_eq!(m(&p).policy_version.known().copied(), Some(1));
    assert!(m(&p).policy_sha256.as_deref().is_some());

    // Unchanged: the same plan.
    let (again, _) = plan(&p, &cfg, true);
    assert_eq!(again, p);
    // A new digest: a new condition and document version.
    let cfg2 = config(&[
        ("allow_debug", Value::Bool(true)),
        ("allowed_image_digests", Value::Set(vec![Value::string(D1), Value::string(digest(2))])),
    ]);
    let (p2, rr) = plan(&p, &cfg2, true);
    assert!(rr.is_empty());
    assert_eq!(m(&p2).policy_version.known().copied(), Some(2));
    assert_ne!(m(&p2).policy_sha256, m(&p).policy_sha256);
    // The document gone (refresh recorded a null hash): rewritten as the next version.
    let mut gone = m(&p);
    gone.policy_sha256 = Attr::Null;
    let gone = gone.into_value();
    assert_eq!(m(&plan(&gone, &cfg, true).0).policy_version.known().copied(), Some(2));
    // A renamed policy is a new pool: replaced.
    let (_, rr) = plan(&p, &config(&[("allow_debug", Value::Bool(true)), ("name", Value::string("other"))]), true);
    assert_eq!(rr, vec![AttributePath::root("name"), AttributePath::root("bucket")]);
    // Datasets not yet created: the document waits for apply.
    let (p, _) = plan(&Value::Null, &cfg, false);
    assert!(m(&p).policy_sha256.is_unknown() && m(&p).dataset_keys.is_unknown());
}

#[test]
fn configured_values_are_kept_even_when_unknown() {
    let cfg = config(&[
        ("allow_debug", Value::Unknown),
        ("output", output(&[("readers", Value::Set(vec![Value::string("user:a@b.co")]))])),
    ]);
    let (rules, issuer, _) = effective_rules(&m(&cfg), true).unwrap();
    let (p, _) = plan_state(&Value::Null, &cfg, &rules, &issuer, None, &facts(true)).unwrap();
    assert!(m(&p).allow_debug.is_unknown());
    assert!(m(&p).attribute_condition.is_unknown());
    assert!(m(&p).policy_sha256.is_unknown());
    assert_eq!(
        m(&p).output.known().and_then(|o| o.max_bytes.known().and_then(|n| n.as_i64())),
        Some(DEFAULT_MAX_OUTPUT_BYTES as i64)
    );
}
