//! The local cloud judges workload identity conditions with the same CEL library that generates
//! them, so a condition Google's CEL would read differently could pass every other test. Here an
//! independent engine, cel-python, evaluates every attribute condition dcr generates — `dcr_policy`'s
//! for every combination of rules the resource accepts, on both backends, and `dcr_workload`'s
//! output-pool conditions — and the attribute mapping, over the security matrix's claim sets plus
//! malformed ones. Google's STS rules (a mapping must yield a subject; the condition must be `true`;
//! an error refuses) turn cel-python's values into verdicts, which must equal what the local cloud's
//! STS answers over HTTP for a token minted with those claims.

use std::collections::BTreeMap;

use dcr_attestation::cel::map_attributes;
use dcr_attestation::claims::{AttestationClaims, CONFIDENTIAL_HARDWARE, LOCAL_ISSUER, STS_AUDIENCE};
use dcr_attestation::condition::attribute_mapping;
use dcr_e2e::fixtures::PROJECT;
use dcr_e2e::fixtures::simulated_launch;
use dcr_e2e::local_cloud::LocalCloudProcess;
use dcr_e2e::peers::cel_python;
use dcr_e2e::workspace::provider_bin;
use dcr_local_cloud::SimulatedIssuer;
use serde_json::{Value, json};
use terraform_provider_dcr::resources::{policy, workload};
use tfplugin6::Value as TfValue;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
const D4: &str = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
/// Google's `google.subject` limit (iam.v1 discovery document, attributeMapping).
const MAX_SUBJECT_BYTES: usize = 127;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// One generated condition and every configuration that generates it.
struct Condition {
    expr: String,
    sources: Vec<String>,
}

fn add(conditions: &mut Vec<Condition>, expr: String, source: String) {
    match conditions.iter_mut().find(|c| c.expr == expr) {
        Some(c) => c.sources.push(source),
        None => conditions.push(Condition { expr, sources: vec![source] }),
    }
}

fn set(items: &[&str]) -> TfValue {
    TfValue::Set(items.iter().map(|s| TfValue::string(*s)).collect())
}

fn opt_bool(v: Option<bool>) -> TfValue {
    v.map(TfValue::Bool).unwrap_or(TfValue::Null)
}

fn show<T: std::fmt::Debug>(v: &Option<T>) -> String {
    v.as_ref().map(|v| format!("{v:?}")).unwrap_or_else(|| "unset".into())
}

/// Every condition the resources generate: `dcr_policy` over every combination of its rule
/// attributes (unset, or each value) that its validation and backend accept, and `dcr_workload`'s
/// output pool on each backend — through the functions the resources call.
fn generated_conditions() -> Vec<Condition> {
    let digest_lists: [&[&str]; 3] = [&[], &[D1], &[D3, D1, D4]];
    let hardware: [Option<&[&str]>; 4] =
        [None, Some(&["GCP_INTEL_TDX"]), Some(&["GCP_AMD_SEV", "GCP_AMD_SEV_ES"]), Some(&CONFIDENTIAL_HARDWARE)];
    let tri = [None, Some(true), Some(false)];
    let mut out = Vec::new();
    for is_local in [true, false] {
        for digests in digest_lists {
            for require_hw in tri {
                for hw in hardware {
                    for allow_debug in tri {
                        for stable in tri {
                            let mut cfg = TfValue::null_object(&policy::schema().implied_type());
                            cfg.set("name", TfValue::string("study"));
                            cfg.set("datasets", set(&["dcr-local-patients/patients"]));
                            cfg.set("allowed_image_digests", set(digests));
                            cfg.set("require_confidential_hardware", opt_bool(require_hw));
                            cfg.set("allowed_hardware", hw.map(set).unwrap_or(TfValue::Null));
                            cfg.set("allow_debug", opt_bool(allow_debug));
                            cfg.set("require_stable_image", opt_bool(stable));
                            if policy::validate_config(&cfg).has_errors() {
                                continue;
                            }
                            let model = tfplugin6::model::read(&cfg, "policy").expect("a policy configuration");
                            let Ok((rules, _, _)) = policy::effective_rules(&model, is_local) else { continue };
                            let expr = policy::checked_condition(&rules).expect("a few digests fit Google's limit");
                            let source = format!(
                                "dcr_policy on {}: {} digests, require_confidential_hardware {}, allowed_hardware {}, \
                                 allow_debug {}, require_stable_image {}",
                                if is_local { "local" } else { "gcp" },
                                digests.len(),
                                show(&require_hw),
                                show(&hw),
                                show(&allow_debug),
                                show(&stable)
                            );
                            add(&mut out, expr, source);
                        }
                    }
                }
            }
        }
    }
    for is_local in [true, false] {
        let expr = dcr_attestation::condition::attribute_condition(&workload::output_rules(D1, is_local));
        add(&mut out, expr, format!("dcr_workload output pool on {}", if is_local { "local" } else { "gcp" }));
    }
    out
}

/// A production Confidential Space token on `hwmodel` for `digest`, signed by the local issuer.
fn production(digest: &str, hwmodel: &str) -> Value {
    let mut c = AttestationClaims::simulated(&simulated_launch(digest), now(), STS_AUDIENCE, &[]);
    c.hwmodel = hwmodel.into();
    c.swname = "CONFIDENTIAL_SPACE".into();
    c.dbgstat = "disabled-since-boot".into();
    c.secboot = true;
    c.submods.confidential_space.support_attributes = vec!["LATEST".into(), "STABLE".into(), "USABLE".into()];
    serde_json::to_value(c).unwrap()
}

fn simulated(digest: &str) -> Value {
    serde_json::to_value(AttestationClaims::simulated(&simulated_launch(digest), now(), STS_AUDIENCE, &[])).unwrap()
}

/// `base` with `edit` applied to its JSON.
fn with(base: Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = base;
    edit(&mut v);
    v
}

fn remove(v: &mut Value, path: &[&str]) {
    let (last, parents) = path.split_last().unwrap();
    let mut at = v;
    for p in parents {
        at = &mut at[*p];
    }
    at.as_object_mut().unwrap().remove(*last);
}

/// The security matrix's claim sets (tests/tests/policy.rs) and malformed ones: each is a valid,
/// unexpired token for the STS audience, so only the mapping and the condition decide.
fn claim_sets() -> Vec<(&'static str, Value)> {
    let p = || production(D1, "GCP_INTEL_TDX");
    let nonce = "a".repeat(64);
    vec![
        ("production, TDX, pinned digest", p()),
        ("production, SEV", production(D1, "GCP_AMD_SEV")),
        ("production, SEV_ES", production(D1, "GCP_AMD_SEV_ES")),
        ("production, another digest", production(D2, "GCP_INTEL_TDX")),
        ("production, third digest of a list", production(D4, "GCP_INTEL_TDX")),
        ("simulated TEE, pinned digest", simulated(D1)),
        ("simulated TEE, another digest", simulated(D2)),
        ("debug image", with(p(), |c| c["dbgstat"] = json!("enabled"))),
        (
            "no STABLE support attribute",
            with(p(), |c| c["submods"]["confidential_space"]["support_attributes"] = json!(["USABLE"])),
        ),
        (
            "empty support attributes",
            with(p(), |c| c["submods"]["confidential_space"]["support_attributes"] = json!([])),
        ),
        (
            "support_attributes absent",
            with(p(), |c| remove(c, &["submods", "confidential_space", "support_attributes"])),
        ),
        (
            "support_attributes null",
            with(p(), |c| c["submods"]["confidential_space"]["support_attributes"] = Value::Null),
        ),
        (
            "support_attributes a string",
            with(p(), |c| c["submods"]["confidential_space"]["support_attributes"] = json!("STABLE")),
        ),
        (
            "support_attributes a string containing STABLE",
            with(p(), |c| c["submods"]["confidential_space"]["support_attributes"] = json!("UNSTABLE")),
        ),
        ("confidential_space submod absent", with(p(), |c| remove(c, &["submods", "confidential_space"]))),
        ("container submod absent", with(p(), |c| remove(c, &["submods", "container"]))),
        ("gce submod absent", with(p(), |c| remove(c, &["submods", "gce"]))),
        ("submods absent", with(p(), |c| remove(c, &["submods"]))),
        ("hwmodel absent", with(p(), |c| remove(c, &["hwmodel"]))),
        ("swname absent", with(p(), |c| remove(c, &["swname"]))),
        ("dbgstat absent", with(p(), |c| remove(c, &["dbgstat"]))),
        (
            "swname GCE on a Shielded VM",
            with(p(), |c| {
                c["swname"] = json!("GCE");
                c["hwmodel"] = json!("GCP_SHIELDED_VM");
            }),
        ),
        ("swname in lower case", with(p(), |c| c["swname"] = json!("confidential_space"))),
        (
            "image digest in upper case",
            with(p(), |c| c["submods"]["container"]["image_digest"] = json!(D1.to_uppercase())),
        ),
        ("image digest as a list", with(p(), |c| c["submods"]["container"]["image_digest"] = json!([D1]))),
        ("hwmodel as a number", with(p(), |c| c["hwmodel"] = json!(3))),
        ("hwmodel null", with(p(), |c| c["hwmodel"] = Value::Null)),
        ("hwmodel a boolean", with(p(), |c| c["hwmodel"] = json!(true))),
        ("project_number as a number", with(p(), |c| c["submods"]["gce"]["project_number"] = json!(42))),
        ("instance_id absent", with(p(), |c| remove(c, &["submods", "gce", "instance_id"]))),
        ("subject over 127 bytes", with(p(), |c| c["submods"]["gce"]["instance_id"] = json!("9".repeat(130)))),
        ("eat_nonce a string", with(p(), |c| c["eat_nonce"] = json!(nonce))),
        ("eat_nonce an array", with(p(), |c| c["eat_nonce"] = json!([nonce, "b".repeat(64)]))),
        (
            "unknown extra claims",
            with(p(), |c| {
                c["x_extra"] = json!({"nested": [1, 2.5, null]});
                c["submods"]["container"]["x_extra"] = json!(true);
            }),
        ),
    ]
}

/// Where an exchange stops: both engines must refuse a token at the same stage.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    /// The mapping failed or gave no usable `google.subject`.
    Mapping,
    /// The attribute condition was not `true`.
    Condition,
}

#[derive(Clone, Debug, PartialEq)]
enum Verdict {
    Accept,
    Refuse(Stage, String),
}

impl Verdict {
    fn stage(&self) -> Option<Stage> {
        match self {
            Verdict::Accept => None,
            Verdict::Refuse(stage, _) => Some(*stage),
        }
    }
}

/// The local cloud's STS answer, sorted by stage: `unauthorized_client` is the attribute
/// condition's refusal (Google's code for it); the mapping's refusals name the mapping or the
/// subject. Any other refusal means the token itself was wrong — a defect of this test.
fn local_verdict(outcome: Result<String, (u16, Value)>) -> Verdict {
    let (status, body) = match outcome {
        Ok(_) => return Verdict::Accept,
        Err(e) => e,
    };
    assert_eq!(status, 400, "a refusal is a client error: {body}");
    let description = body["error_description"].as_str().unwrap_or("").to_string();
    if body["error"] == "unauthorized_client" {
        Verdict::Refuse(Stage::Condition, description)
    } else if description.contains("attribute mapping") || description.contains("google.subject") {
        Verdict::Refuse(Stage::Mapping, description)
    } else {
        panic!("STS refused the token before the mapping and condition were reached: {body}");
    }
}

/// What a mapping yields for one token: the attributes, or why the exchange fails.
type Mapped = Result<(BTreeMap<String, String>, BTreeMap<String, String>), String>;

/// Google's reading of cel-python's mapping outcomes: a string sets the attribute, a missing
/// claim leaves it unset, anything else fails the exchange; the subject must be there and short.
fn google_mapping(outcomes: &Value) -> Mapped {
    let (mut google, mut attribute) = (BTreeMap::new(), BTreeMap::new());
    for (key, outcome) in outcomes.as_object().expect("mapping outcomes") {
        let value = match (&outcome["value"], &outcome["missing"]) {
            (Value::String(s), _) => s.clone(),
            (_, Value::String(_)) => continue,
            _ => return Err(format!("{key}: {outcome}")),
        };
        let (space, name) = key.split_once('.').expect("google.X or attribute.X");
        let into = if space == "google" { &mut google } else { &mut attribute };
        into.insert(name.to_string(), value);
    }
    Ok((google, attribute))
}

fn google_verdict(mapped: &Mapped, condition: &Value) -> Verdict {
    let (google, _) = match mapped {
        Ok(m) => m,
        Err(e) => return Verdict::Refuse(Stage::Mapping, format!("mapping failed: {e}")),
    };
    match google.get("subject") {
        None => return Verdict::Refuse(Stage::Mapping, "no google.subject".into()),
        Some(s) if s.is_empty() || s.len() > MAX_SUBJECT_BYTES => {
            return Verdict::Refuse(Stage::Mapping, format!("google.subject of {} bytes", s.len()));
        }
        Some(_) => {}
    }
    match condition["value"] {
        Value::Bool(true) => Verdict::Accept,
        _ => Verdict::Refuse(Stage::Condition, format!("condition: {condition}")),
    }
}

/// The local cloud's provider for `expr`: pool `cel-N` in the default project, the local issuer,
/// dcr's attribute mapping. Returns the STS audience naming it.
fn create_provider(cloud: &LocalCloudProcess, number: &str, n: usize, expr: &str) -> String {
    let parent = format!("/iam/v1/projects/{PROJECT}/locations/global/workloadIdentityPools");
    let pool = format!("cel-{n}");
    let r = cloud.post_json(&cloud.admin_token, &format!("{parent}?workloadIdentityPoolId={pool}"), &json!({}));
    assert!(r.status().is_success(), "create pool {pool}: {} {}", r.status(), r.text().unwrap_or_default());
    let body = json!({
        "oidc": {"issuerUri": LOCAL_ISSUER, "allowedAudiences": [STS_AUDIENCE]},
        "attributeMapping": attribute_mapping(),
        "attributeCondition": expr,
    });
    let r = cloud.post_json(
        &cloud.admin_token,
        &format!("{parent}/{pool}/providers?workloadIdentityPoolProviderId=attestation"),
        &body,
    );
    assert!(r.status().is_success(), "create provider for {expr}: {} {}", r.status(), r.text().unwrap_or_default());
    let provider = cloud.get(&cloud.admin_token, &format!("{parent}/{pool}/providers/attestation"));
    let provider: Value = provider.json().unwrap();
    assert_eq!(provider["attributeCondition"], expr, "{provider}");
    format!(
        "//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/{pool}/providers/attestation"
    )
}

#[test]
fn cel_python_agrees_with_the_local_cloud_on_every_generated_condition_and_claim_set() {
    let conditions = generated_conditions();
    let claims = claim_sets();
    let mapping = attribute_mapping();

    let state_dir = std::env::temp_dir().join(format!("dcr-cel-agreement-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
    let issuer = SimulatedIssuer::open(&state_dir).unwrap();
    let project: Value =
        cloud.get(&cloud.admin_token, &format!("/cloudresourcemanager/v1/projects/{PROJECT}")).json().unwrap();
    let number = project["projectNumber"].as_str().expect("projectNumber").to_string();
    let audiences: Vec<String> =
        conditions.iter().enumerate().map(|(n, c)| create_provider(&cloud, &number, n, &c.expr)).collect();
    let tokens: Vec<String> = claims.iter().map(|(_, c)| issuer.mint(c).unwrap()).collect();

    // The independent engine, on every condition and claim set at once.
    let answer = cel_python(&json!({
        "mapping": mapping,
        "conditions": conditions.iter().map(|c| c.expr.clone()).collect::<Vec<_>>(),
        "claims": claims.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
    }));
    let py_mapped: Vec<Mapped> = answer["mappings"].as_array().unwrap().iter().map(google_mapping).collect();

    let mut disagreements = Vec::new();
    // The mapping alone: what the local cloud's STS computes (the function it calls) against
    // cel-python, value for value.
    for ((what, c), py) in claims.iter().zip(&py_mapped) {
        let local = map_attributes(&mapping, c).map(|m| (m.google, m.attribute));
        if local.is_ok() != py.is_ok() || (local.is_ok() && local != *py) {
            disagreements.push(format!("mapping on {what}: local cloud {local:?}, cel-python {py:?}"));
        }
    }
    // Every condition on every token: the local cloud's STS over HTTP against Google's rules
    // applied to cel-python's values.
    let (mut accepted, mut at_mapping, mut at_condition) = (0, 0, 0);
    for (ci, (cond, audience)) in conditions.iter().zip(&audiences).enumerate() {
        let mut accepted_here = 0;
        for (ki, ((what, _), token)) in claims.iter().zip(&tokens).enumerate() {
            let local = local_verdict(cloud.sts_exchange(audience, token));
            let py = google_verdict(&py_mapped[ki], &answer["conditions"][ci][ki]);
            if local.stage() != py.stage() {
                disagreements.push(format!(
                    "condition {:?} ({}) on {what}: local cloud {local:?}, cel-python {py:?}",
                    cond.expr, cond.sources[0]
                ));
            }
            match local.stage() {
                None => {
                    accepted += 1;
                    accepted_here += 1;
                }
                Some(Stage::Mapping) => at_mapping += 1,
                Some(Stage::Condition) => at_condition += 1,
            }
        }
        // Not a degenerate matrix: a condition that pins digests admits some token, and one that
        // pins none admits nothing.
        let pins = !cond.expr.starts_with("assertion.submods.container.image_digest in []");
        assert_eq!(accepted_here > 0, pins, "{} ({}) accepted {accepted_here} claim sets", cond.expr, cond.sources[0]);
    }
    drop(cloud);
    let _ = std::fs::remove_dir_all(&state_dir);

    let cases = conditions.len() * claims.len();
    eprintln!(
        "cel-python vs local cloud: {} conditions (from {} configurations) x {} claim sets = {cases} cases, \
         {accepted} accepted, refused {at_mapping} by the mapping and {at_condition} by the condition, {} \
         disagreements",
        conditions.len(),
        conditions.iter().map(|c| c.sources.len()).sum::<usize>(),
        claims.len(),
        disagreements.len()
    );
    assert!(
        accepted > 0 && at_mapping > 0 && at_condition > 0,
        "the matrix must hold accepted tokens and tokens refused at each stage"
    );
    assert!(disagreements.is_empty(), "cel-python and the local cloud disagree:\n{}", disagreements.join("\n"));
}
