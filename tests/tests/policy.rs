//! `dcr_policy` end to end: Terraform creates datasets and policies on the embedded local cloud;
//! the test then plays the workload — it mints attestation tokens with the local cloud's simulated
//! issuer (as the TEE simulator will), exchanges them at STS over real HTTP, and tries to unwrap the
//! dataset's data key with KMS. Only tokens that pass every rule of the policy get that far.

use std::path::Path;

use dcr_attestation::claims::{AttestationClaims, STS_AUDIENCE};
use dcr_e2e::fixtures::simulated_launch;
use dcr_e2e::fixtures::{PROJECT, SMALL_CSV, resource_values, small_config};
use dcr_e2e::local_cloud::LocalCloudProcess;
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::{Workspace, provider_bin};
use dcr_local_cloud::SimulatedIssuer;
use serde_json::{Value, json};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The small dataset plus `policies` (HCL blocks).
fn config(policies: &str) -> String {
    format!("{}\n{policies}", small_config("trial", None, ""))
}

fn policy(name: &str, body: &str) -> String {
    format!(
        "resource \"dcr_policy\" \"{name}\" {{\n  name     = \"{name}\"\n  datasets = [dcr_dataset.d.id]\n{body}\n}}\n"
    )
}

/// A token as Confidential Space issues it for a production image on TDX, but signed by the
/// local issuer: what a policy requiring confidential hardware accepts.
fn production_claims(digest: &str) -> AttestationClaims {
    let mut c = AttestationClaims::simulated(&simulated_launch(digest), now(), STS_AUDIENCE, &[]);
    c.hwmodel = "GCP_INTEL_TDX".into();
    c.swname = "CONFIDENTIAL_SPACE".into();
    c.dbgstat = "disabled-since-boot".into();
    c.secboot = true;
    c.submods.confidential_space.support_attributes = vec!["LATEST".into(), "STABLE".into(), "USABLE".into()];
    c
}

/// The data key of the dataset `d`, wrapped, and what KMS needs to unwrap it.
struct WrappedKey {
    key: String,
    wrapped: Vec<u8>,
    aad: Vec<u8>,
    envelope: Vec<u8>,
}

fn wrapped_key(cloud: &LocalCloudProcess, d: &Value) -> WrappedKey {
    let (bucket, object) = (d["bucket"].as_str().unwrap(), d["object"].as_str().unwrap());
    let envelope = cloud.download(&cloud.admin_token, bucket, object).expect("admin reads the envelope");
    let header = dcr_envelope::read_header(&mut &envelope[..]).expect("a dcr envelope");
    WrappedKey {
        key: header.kms_key.clone(),
        wrapped: header.wrapped_key_bytes().unwrap(),
        aad: format!("dcr-envelope-v1:gs://{bucket}/{object}").into_bytes(),
        envelope,
    }
}

/// Exchanges `claims` (signed by the local issuer) at `audience`; on refusal returns STS's
/// description of what failed.
fn exchange(
    cloud: &LocalCloudProcess,
    issuer: &SimulatedIssuer,
    audience: &str,
    claims: &AttestationClaims,
) -> Result<String, String> {
    cloud.sts_exchange(audience, &issuer.mint(claims).unwrap()).map_err(|(status, body)| {
        assert_eq!(status, 400, "{body}");
        assert!(body.get("access_token").is_none(), "a refusal carries no token: {body}");
        format!("{}: {}", body["error"].as_str().unwrap_or(""), body["error_description"].as_str().unwrap_or(""))
    })
}

#[test]
fn security_matrix_only_a_pinned_digest_with_acceptable_claims_reaches_the_data_key() {
    let tf = Terraform::latest();
    let ws = Workspace::new(&tf);
    let strict = policy(
        "strict",
        &format!(
            "  allowed_image_digests         = [\"{D1}\"]\n  require_confidential_hardware = true\n  \
             allowed_hardware              = [\"GCP_INTEL_TDX\"]\n  require_stable_image          = true"
        ),
    );
    let local =
        |digests: &str| policy("local", &format!("  allowed_image_digests = [{digests}]\n  allow_debug = true"));
    ws.write("main.tf", &config(&format!("{strict}\n{}", local(&format!("\"{D1}\"")))));
    ws.write("data.csv", SMALL_CSV);
    ws.init();
    ws.apply();
    let show = ws.show_json();
    let d = resource_values(&show, "dcr_dataset", "d");
    let strict_aud = resource_values(&show, "dcr_policy", "strict")["audience"].as_str().unwrap().to_string();
    let local_aud = resource_values(&show, "dcr_policy", "local")["audience"].as_str().unwrap().to_string();

    let state_dir = ws.path().join(".dcr");
    let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
    let issuer = SimulatedIssuer::open(&state_dir).unwrap();
    let k = wrapped_key(&cloud, &d);

    // Accepted: the pinned digest with production claims → STS → KMS unwraps the data key, which
    // decrypts the dataset.
    let token = exchange(&cloud, &issuer, &strict_aud, &production_claims(D1)).expect("a pinned digest is admitted");
    let data_key = cloud.kms_decrypt(&token, &k.key, &k.wrapped, &k.aad).expect("the federated principal may decrypt");
    assert_eq!(dcr_envelope::open_all(&k.envelope, &data_key).unwrap(), SMALL_CSV.as_bytes());
    let bucket = d["bucket"].as_str().unwrap();
    assert!(cloud.download(&token, bucket, d["object"].as_str().unwrap()).is_ok(), "and read the object");
    // The simulated TEE's own tokens pass the policy written for it.
    let sim = AttestationClaims::simulated(&simulated_launch(D1), now(), STS_AUDIENCE, &[]);
    assert!(exchange(&cloud, &issuer, &local_aud, &sim).is_ok());

    // Refused, each naming the failed check, and never reaching a data key.
    let mut cases: Vec<(&str, AttestationClaims, &str)> = Vec::new();
    cases.push(("another digest", production_claims(D2), "image_digest"));
    cases.push(("simulated hardware", sim.clone(), "assertion.swname == 'CONFIDENTIAL_SPACE'"));
    let mut debug = production_claims(D1);
    debug.dbgstat = "enabled".into();
    cases.push(("debug image", debug, "assertion.dbgstat == 'disabled-since-boot'"));
    let mut expired = production_claims(D1);
    (expired.iat, expired.nbf, expired.exp) = (now() - 7200, Some(now() - 7200), now() - 3600);
    cases.push(("expired", expired, "expiry check failed"));
    let mut wrong_aud = production_claims(D1);
    wrong_aud.aud = json!("https://relying-party.example");
    cases.push(("wrong audience", wrong_aud, "audience check failed"));
    let mut future = production_claims(D1);
    (future.iat, future.nbf, future.exp) = (now() + 3600, None, now() + 7200);
    cases.push(("iat in the future", future, "issued-at check failed"));
    for (what, claims, named) in &cases {
        let refusal = exchange(&cloud, &issuer, &strict_aud, claims).expect_err(what);
        assert!(refusal.contains(named), "{what}: {refusal}");
    }
    // Signed by a key not in the issuer's JWKS.
    let rogue = dcr_attestation::SigningKey::generate().unwrap();
    let kid = issuer.jwks().unwrap().keys[0].common.key_id.clone().unwrap();
    for (token, named) in [
        (rogue.sign_as(&production_claims(D1), &kid).unwrap(), "signature check failed"),
        (rogue.sign(&production_claims(D1)).unwrap(), "key id check failed"),
    ] {
        let (status, body) = cloud.sts_exchange(&strict_aud, &token).expect_err("a forged token is refused");
        assert_eq!(status, 400);
        assert!(body["error_description"].as_str().unwrap().contains(named), "{body}");
    }
    // Without a federated token KMS gives nothing.
    assert_eq!(cloud.kms_decrypt("not-a-token", &k.key, &k.wrapped, &k.aad), Err(401));
    drop(cloud);

    // Revocation: a later apply removes the digest; the same workload is refused from then on.
    ws.write("main.tf", &config(&format!("{strict}\n{}", local(&format!("\"{D2}\"")))));
    let plan = ws.plan(&[]);
    assert!(plan.text().contains(D2), "the plan shows the new condition:\n{plan}");
    ws.apply();
    let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
    let refusal = exchange(&cloud, &issuer, &local_aud, &sim).expect_err("a revoked digest is refused");
    assert!(refusal.contains("image_digest"), "{refusal}");
    assert!(
        exchange(
            &cloud,
            &issuer,
            &local_aud,
            &AttestationClaims::simulated(&simulated_launch(D2), now(), STS_AUDIENCE, &[])
        )
        .is_ok()
    );
    drop(cloud);
    ws.destroy();
}

#[test]
fn plan_shows_the_condition_and_apply_import_drift_and_recreate_converge_on_every_terraform() {
    for tf in Terraform::all() {
        let ws = Workspace::new(&tf);
        let p = policy("study", &format!("  allowed_image_digests = [\"{D1}\"]\n  allow_debug = true"));
        ws.write("main.tf", &config(&p));
        ws.write("data.csv", SMALL_CSV);
        ws.init();
        let plan = ws.plan(&[]);
        assert!(plan.success(), "{plan}");
        let condition = format!("assertion.submods.container.image_digest in ['{D1}']");
        assert!(plan.stdout.contains(&format!("attribute_condition           = \"{condition}\"")), "{plan}");
        ws.apply();
        ws.assert_no_changes();

        let show = ws.show_json();
        let pol = resource_values(&show, "dcr_policy", "study");
        let number = pol["project_number"].as_str().unwrap().to_string();
        let pool = format!("projects/{number}/locations/global/workloadIdentityPools/dcr-study");
        assert_eq!(pol["pool"], pool.as_str());
        assert_eq!(pol["attribute_condition"], condition.as_str());
        assert_eq!(pol["policy_version"], 1);
        assert_eq!(pol["policy_uri"], format!("gs://{PROJECT}-policy-study/policy.json"));
        let state = ws.state_file_text();
        assert!(!state.contains("dcrl."), "terraform {}: a local cloud token reached the state", tf.version);

        // The policy document is there for workloads to read.
        let state_dir = ws.path().join(".dcr");
        let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
        let doc: Value = serde_json::from_slice(
            &cloud.download(&cloud.admin_token, &format!("{PROJECT}-policy-study"), "policy.json").unwrap(),
        )
        .unwrap();
        assert_eq!(doc["format"], "dcr-policy-v1");
        assert_eq!(doc["rules"]["allowed_image_digests"], json!([D1]));
        assert_eq!(doc["audience"], pol["audience"]);
        assert_eq!(doc["output"]["allowed_extensions"], json!(["csv", "json", "txt"]));

        // Drift: the provider deleted outside Terraform comes back (undeleted: its id is blocked).
        let provider = format!("/iam/v1/{pool}/providers/attestation");
        assert!(cloud.delete(&cloud.admin_token, &provider).status().is_success());
        drop(cloud);
        let drift = ws.plan(&["-detailed-exitcode"]);
        assert_eq!(drift.code(), Some(2), "terraform {}: drift not detected:\n{drift}", tf.version);
        ws.apply();
        ws.assert_no_changes();
        let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
        let live: Value = cloud.get(&cloud.admin_token, &provider).json().unwrap();
        assert_eq!(live["state"], "ACTIVE", "{live}");
        drop(cloud);

        // Import.
        ws.run_ok(&["state", "rm", "dcr_policy.study"]);
        ws.import("dcr_policy.study", "study");
        ws.assert_no_changes();

        // Destroy soft-deletes pool and provider; applying again undeletes them.
        ws.destroy();
        let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
        let pools = cloud.pools(PROJECT);
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0]["state"], "DELETED");
        drop(cloud);
        ws.apply();
        ws.assert_no_changes();
        let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
        assert_eq!(cloud.pools(PROJECT)[0]["state"], "ACTIVE");
        drop(cloud);
        ws.destroy();
    }
}

#[test]
fn bad_policy_inputs_fail_naming_the_attribute_and_create_nothing() {
    let tf = Terraform::latest();
    let many: Vec<String> = (0..60).map(|i| format!("\"sha256:{i:064x}\"")).collect();
    let local = |body: &str| config(&policy("bad-policy", body));
    let gcp = |body: &str| {
        format!(
            "terraform {{\n  required_providers {{\n    dcr = {{ source = \"dcr/dcr\" }}\n  }}\n}}\n\
             provider \"dcr\" {{\n  gcp {{\n    project = \"my-project\"\n  }}\n}}\n\
             resource \"dcr_policy\" \"bad\" {{\n  name     = \"bad-policy\"\n  datasets = [\"my-project-patients/patients\"]\n{body}\n}}\n"
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed digest", local("  allowed_image_digests = [\"sha256:1234\"]"), "Invalid allowed_image_digests"),
        ("a tag, not a digest", local("  allowed_image_digests = [\"latest\"]"), "Invalid allowed_image_digests"),
        (
            "unknown hardware",
            local(&format!(
                "  allowed_image_digests = [\"{D1}\"]\n  require_confidential_hardware = true\n  allowed_hardware = [\"GCP_QUANTUM\"]"
            )),
            "Invalid allowed_hardware",
        ),
        (
            "debug with confidential hardware on gcp",
            gcp(&format!("  allowed_image_digests = [\"{D1}\"]\n  allow_debug = true")),
            "Invalid allow_debug",
        ),
        (
            "no confidential hardware on gcp",
            gcp(&format!("  allowed_image_digests = [\"{D1}\"]\n  require_confidential_hardware = false")),
            "Invalid require_confidential_hardware",
        ),
        (
            "condition over the length limit",
            local(&format!("  allowed_image_digests = [{}]", many.join(", "))),
            "Invalid allowed_image_digests",
        ),
        (
            "dataset that does not exist",
            config(
                "resource \"dcr_policy\" \"bad\" {\n  name = \"bad-policy\"\n  datasets = [\"dcr-local-nope/nope\"]\n  allowed_image_digests = []\n}\n",
            ),
            "Invalid datasets",
        ),
        (
            "invalid name",
            local("  allowed_image_digests = []").replace("name     = \"bad-policy\"", "name     = \"Bad_Name\""),
            "Invalid name",
        ),
        (
            "plain http issuer",
            local("  allowed_image_digests = []\n  issuer = \"http://issuer.example\""),
            "Invalid issuer",
        ),
        (
            "extension with a dot",
            local("  allowed_image_digests = []\n  output {\n    allowed_extensions = [\".csv\"]\n  }"),
            "Invalid output.allowed_extensions",
        ),
        (
            "public readers",
            local("  allowed_image_digests = []\n  output {\n    readers = [\"allUsers\"]\n  }"),
            "Invalid output.readers",
        ),
    ];
    for (what, cfg, named) in cases {
        let ws = Workspace::new(&tf);
        ws.env("GOOGLE_OAUTH_ACCESS_TOKEN", "not-a-real-token");
        ws.write("main.tf", &cfg);
        ws.write("data.csv", SMALL_CSV);
        ws.init();
        let out = ws.apply_fails();
        assert!(out.text().contains(named), "{what}: expected {named:?}:\n{out}");
        assert!(!ws.state_file_text().contains("dcr_policy"), "{what}: a policy reached the state");
        let errors = out.text().matches("Error: ").count();
        assert_eq!(errors, 1, "{what}: exactly the one mistake is reported:\n{out}");
        let state_dir = ws.path().join(".dcr");
        if Path::new(&state_dir).exists() {
            let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
            assert!(cloud.pools(PROJECT).is_empty(), "{what}: a pool was created");
        }
    }
}

#[test]
fn verify_attestation_as_function_and_data_source() {
    for tf in Terraform::all() {
        let ws = Workspace::new(&tf);
        let issuer = SimulatedIssuer::open(&ws.path().join(".dcr")).unwrap();
        let token = issuer
            .mint(&AttestationClaims::simulated(
                &simulated_launch(D1),
                now(),
                "https://verifier.example",
                &["a".repeat(64)],
            ))
            .unwrap();
        let function = tf.version != "1.0.3";
        let check = |expected: &str| {
            let mut cfg = format!(
                "terraform {{\n  required_providers {{\n    dcr = {{ source = \"dcr/dcr\" }}\n  }}\n}}\n\
                 variable \"token\" {{\n  type = string\n}}\n\
                 data \"dcr_verified_attestation\" \"t\" {{\n  token  = var.token\n  issuer = \"https://simulated-tee.dcr.invalid\"\n{expected}\n}}\n\
                 output \"ds_digest\" {{\n  value = data.dcr_verified_attestation.t.claims.image_digest\n}}\n"
            );
            if function {
                let object = expected.lines().map(|l| l.trim()).collect::<Vec<_>>().join("\n    ");
                cfg.push_str(&format!(
                    "output \"fn_hwmodel\" {{\n  value = provider::dcr::verify_attestation(var.token, {{\n    issuer = \"https://simulated-tee.dcr.invalid\"\n    {object}\n  }}).hwmodel\n}}\n"
                ));
            }
            ws.write("main.tf", &cfg);
            ws.write("terraform.tfvars", &format!("token = \"{token}\"\n"));
        };
        check(&format!(
            "  image_digest = \"{D1}\"\n  nonce = \"{}\"\n  audience = \"https://verifier.example\"",
            "a".repeat(64)
        ));
        ws.init();
        let out = ws.apply();
        let outputs: Value = serde_json::from_str(&ws.run_ok(&["output", "-json"]).stdout).unwrap();
        assert_eq!(outputs["ds_digest"]["value"], D1, "{out}");
        if function {
            assert_eq!(outputs["fn_hwmodel"]["value"], "DCR_SIMULATED_TEE");
        }
        // Expectations the token does not meet fail, naming the check.
        check(&format!("  image_digest = \"{D2}\""));
        let out = ws.apply_fails();
        assert!(out.text().contains("image digest check failed"), "terraform {}:\n{out}", tf.version);
        check("  require_confidential_hardware = true");
        let out = ws.apply_fails();
        assert!(out.text().contains("hardware check failed"), "terraform {}:\n{out}", tf.version);
    }
}
