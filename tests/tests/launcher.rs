//! `dcr-launcher` end to end, outside a container: Terraform creates a dataset and a policy on the
//! local cloud; the test sets up the consumer's side (an output bucket writable only through a
//! workload identity pool) through the API, serves the TEE simulator's teeserver socket in-process
//! for a chosen image digest, and runs the real launcher binary, which runs a real notebook with
//! papermill (the notebook venv tests/install-tools.sh builds from runtime-image/requirements.lock).

use std::path::PathBuf;

use dcr_attestation::claims::{LOCAL_ISSUER, SimulatedLaunch};
use dcr_attestation::workload::{FailureReport, OutputManifest, WorkloadManifest, output_nonce};
use dcr_attestation::{Attested, Expectations, check_attested, verify};
use dcr_e2e::clean_room::{AGGREGATE, AGGREGATE_RESULT, CleanRoom, OUT_BUCKET, notebook, run_prefix};
use dcr_e2e::fixtures::PROJECT;
use dcr_e2e::local_cloud::LocalCloudProcess;
use dcr_e2e::workspace::{launcher_bin, provider_bin};
use dcr_local_cloud::{LocalCloud, SimulatedIssuer, TeeSimulator};
use serde_json::{Value, json};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

struct Cloud {
    /// Runs the TEE simulator while the launcher process runs.
    rt: tokio::runtime::Runtime,
    room: CleanRoom,
    issuer: SimulatedIssuer,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The clean room with its policy pinning D1 (the consumer's pool accepts any simulated TEE, so
/// input refusals can be told apart from output refusals).
fn cloud() -> Cloud {
    let room = CleanRoom::new(&[D1]);
    let issuer = SimulatedIssuer::open(&room.state_dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    Cloud { rt, room, issuer }
}

struct Outcome {
    code: i32,
    stdout: String,
}

/// Runs the launcher on an image directory holding `manifest`, `notebook` and `parameters`, in a
/// TEE that attests `digest`.
fn launch(cloud: &Cloud, tag: &str, digest: &str, manifest: &WorkloadManifest, nb: &str, params: Value) -> Outcome {
    launch_with(cloud, tag, digest, manifest, nb, params, &cloud.room.process.endpoint, &[])
}

/// [`launch`] against the local cloud at `endpoint`, with more environment variables.
#[allow(clippy::too_many_arguments)]
fn launch_with(
    cloud: &Cloud,
    tag: &str,
    digest: &str,
    manifest: &WorkloadManifest,
    nb: &str,
    params: Value,
    endpoint: &str,
    env: &[(&str, &str)],
) -> Outcome {
    let base = cloud.room.ws.path().join(format!("launch-{tag}"));
    let image = base.join("dcr");
    std::fs::create_dir_all(&image).unwrap();
    std::fs::write(image.join("workload.json"), manifest.to_bytes()).unwrap();
    std::fs::write(image.join("notebook.ipynb"), nb).unwrap();
    std::fs::write(image.join("parameters.json"), params.to_string()).unwrap();
    // The run directory must be memory-backed: /dev/shm is a tmpfs.
    let run = PathBuf::from(format!("/dev/shm/dcr-launcher-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    let socket = base.join("teeserver.sock");
    let launch = SimulatedLaunch {
        image_reference: format!("localhost/study@{digest}"),
        image_digest: digest.into(),
        project_id: PROJECT.into(),
        project_number: LocalCloud::project_number(PROJECT),
        zone: "local-a".into(),
        instance_name: format!("dcr-study-{tag}"),
        instance_id: "1".into(),
        ..Default::default()
    };
    let tee = cloud.rt.block_on(TeeSimulator::start(&socket, cloud.issuer.clone(), launch)).unwrap();
    let python = dcr_e2e::tools_dir().join("notebook-venv/bin/python");
    let out = std::process::Command::new(launcher_bin())
        .env("DCR_IMAGE_DIR", &image)
        .env("DCR_RUN_DIR", &run)
        .env("DCR_TEESERVER_SOCKET", &socket)
        .env("DCR_LOCAL_CLOUD", endpoint)
        .env("DCR_NOTEBOOK_PYTHON", &python)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    cloud.rt.block_on(tee.shutdown());
    let _ = std::fs::remove_dir_all(&run);
    let stdout = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("--- launcher {tag} ---\n{stdout}");
    Outcome { code: out.status.code().unwrap_or(-1), stdout }
}

fn object(cloud: &Cloud, name: &str) -> Option<Vec<u8>> {
    cloud.room.output(name)
}

fn listing(cloud: &Cloud, prefix: &str) -> Vec<String> {
    cloud.room.outputs(prefix)
}

#[test]
fn the_launcher_releases_only_what_the_rules_allow_with_a_token_bound_to_it() {
    let cloud = cloud();
    let m = &cloud.room.manifest;
    let prefix = run_prefix;

    // 1. The pinned image: the notebook's aggregate is released with a manifest and a bound token.
    let ok = launch(&cloud, "ok", D1, m, &notebook(AGGREGATE), json!({"output_name": "summary.csv"}));
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    assert!(ok.stdout.contains("starting papermill"), "{}", ok.stdout);
    let p = prefix(D1);
    let summary = object(&cloud, &format!("{p}outputs/summary.csv")).expect("summary released");
    assert_eq!(String::from_utf8(summary.clone()).unwrap(), AGGREGATE_RESULT);
    let manifest_bytes = object(&cloud, &format!("{p}output-manifest.json")).expect("output manifest");
    let om = OutputManifest::from_bytes(&manifest_bytes).unwrap();
    assert_eq!(om.image_digest, D1);
    assert_eq!(om.outputs.len(), 1);
    assert_eq!(om.outputs[0].sha256, dcr_e2e::fixtures::sha256_hex(&summary));
    assert_eq!((om.inputs[0].name.as_str(), om.inputs[0].policy_version), ("trial", 1));
    assert!(!om.inputs[0].generation.is_empty());
    let token = String::from_utf8(object(&cloud, &format!("{p}attestation-token.jwt")).expect("token")).unwrap();
    let jwks = cloud.issuer.jwks().unwrap();
    let mut expect = Expectations::new(LOCAL_ISSUER, now());
    expect.audiences = vec![format!("gs://{OUT_BUCKET}/{p}")];
    let claims = verify(&token, &jwks, &expect).expect("the released token verifies");
    let want =
        Attested { image_digest: Some(D1.into()), nonce: Some(output_nonce(&manifest_bytes)), ..Attested::default() };
    check_attested(&claims, &want).expect("image digest and nonce bind the token to the manifest");
    for text in [ok.stdout.as_str(), std::str::from_utf8(&manifest_bytes).unwrap()] {
        assert!(!text.contains("secret-"), "no source cell in the launcher's log or the manifest");
    }

    // 2. A disallowed extension: nothing is released, the earlier run's objects are cleared, and
    //    the failure report names the rule.
    let bad = launch(&cloud, "ext", D1, m, &notebook(AGGREGATE), json!({"output_name": "summary.txt"}));
    assert_eq!(bad.code, 7, "{}", bad.stdout);
    assert_eq!(listing(&cloud, &p), vec![format!("{p}failure.json")]);
    let report: FailureReport = serde_json::from_slice(&object(&cloud, &format!("{p}failure.json")).unwrap()).unwrap();
    assert_eq!(report.stage, "output_rules");
    assert!(
        report.message.contains("output rule allowed_extensions: summary.txt has extension \"txt\""),
        "{}",
        report.message
    );

    // 3. More than max_bytes (200): refused by the same rule set.
    let big =
        format!("{AGGREGATE}open(os.path.join(os.environ['DCR_OUTPUTS_DIR'], 'pad.csv'), 'w').write('x' * 300)\n");
    let over = launch(&cloud, "big", D1, m, &notebook(&big), json!({"output_name": "summary.csv"}));
    assert_eq!(over.code, 7, "{}", over.stdout);
    assert!(over.stdout.contains("output rule max_bytes"), "{}", over.stdout);
    assert_eq!(listing(&cloud, &p), vec![format!("{p}failure.json")]);

    // 4. An image the policy does not pin: STS refuses, the notebook never runs.
    let refused = launch(&cloud, "unpinned", D2, m, &notebook(AGGREGATE), json!({"output_name": "summary.csv"}));
    assert_eq!(refused.code, 4, "{}", refused.stdout);
    assert!(!refused.stdout.contains("starting papermill"), "{}", refused.stdout);
    let report: FailureReport =
        serde_json::from_slice(&object(&cloud, &format!("{}failure.json", prefix(D2))).unwrap()).unwrap();
    assert_eq!(report.stage, "inputs");
    assert!(report.message.contains("image_digest"), "STS names the failed check: {}", report.message);

    // 5. A notebook that runs past the timeout is stopped.
    let mut slow = m.clone();
    slow.timeout_seconds = 3;
    let timed_out =
        launch(&cloud, "slow", D1, &slow, &notebook(AGGREGATE), json!({"output_name": "s.csv", "sleep_seconds": 60}));
    assert_eq!(timed_out.code, 6, "{}", timed_out.stdout);
    assert!(listing(&cloud, &p).iter().all(|o| !o.contains("outputs/")));

    // 6. A failing cell: exit 5, and the report carries no cell output.
    let failing = "raise ValueError('secret-a1 leaked?')\n";
    let failed = launch(&cloud, "raise", D1, m, &notebook(failing), json!({}));
    assert_eq!(failed.code, 5, "{}", failed.stdout);
    let report = String::from_utf8(object(&cloud, &format!("{p}failure.json")).unwrap()).unwrap();
    assert!(report.contains("\"stage\": \"notebook\"") && report.contains("cell In [2]"), "{report}");
    for text in [&report, &failed.stdout] {
        assert!(!text.contains("secret-"), "the exception message stays inside: {text}");
    }
    drop(cloud);
}

/// A run longer than its tokens live: with federated tokens that expire after 3 seconds and a
/// notebook that sleeps 6, the outputs are still released, because the launcher fetches a fresh
/// attestation token and exchanges it again before the release (issue 9, 1e).
#[test]
fn a_run_that_outlives_its_first_tokens_still_releases() {
    let cloud = cloud();
    let short =
        LocalCloudProcess::start_with(&provider_bin(), &cloud.room.state_dir, &[], &["--federated-token-seconds", "3"]);
    let m = &cloud.room.manifest;
    let run = launch_with(
        &cloud,
        "long",
        D1,
        m,
        &notebook(AGGREGATE),
        json!({"output_name": "summary.csv", "sleep_seconds": 6}),
        &short.endpoint,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    let summary = object(&cloud, &format!("{}outputs/summary.csv", run_prefix(D1))).expect("released after the sleep");
    assert_eq!(String::from_utf8(summary).unwrap(), AGGREGATE_RESULT);
    assert!(object(&cloud, &format!("{}attestation-token.jwt", run_prefix(D1))).is_some());
}

/// IAM changes take a while on Google: a workload whose output grant appears only after it started
/// waits for it (logging why), instead of failing at its first 403 (issue 9, 1f).
#[test]
fn the_launcher_waits_for_a_grant_that_is_still_propagating() {
    let cloud = cloud();
    let p = &cloud.room.process;
    let iam = format!("/storage/v1/b/{OUT_BUCKET}/iam");
    let policy: Value = p.get(&p.admin_token, &iam).json().unwrap();
    let without: Vec<Value> = policy["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["role"] != "roles/storage.objectAdmin")
        .cloned()
        .collect();
    let r = p.put_json(&p.admin_token, &iam, &json!({"bindings": without, "etag": policy["etag"]}));
    assert!(r.status().is_success(), "{}", r.status());
    // The grant comes back three seconds into the run.
    let (endpoint, admin, grant) = (p.endpoint.clone(), p.admin_token.clone(), policy["bindings"].clone());
    let restore = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(3));
        let http = reqwest::blocking::Client::new();
        let now: Value = http.get(format!("{endpoint}{iam}")).bearer_auth(&admin).send().unwrap().json().unwrap();
        let r = http
            .put(format!("{endpoint}{iam}"))
            .bearer_auth(&admin)
            .json(&json!({"bindings": grant, "etag": now["etag"]}))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    });
    let run = launch_with(
        &cloud,
        "propagating",
        D1,
        &cloud.room.manifest,
        &notebook(AGGREGATE),
        json!({"output_name": "summary.csv"}),
        &p.endpoint,
        &[("DCR_IAM_PROPAGATION_SECONDS", "60")],
    );
    restore.join().unwrap();
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("waiting 1 s for IAM to propagate"), "{}", run.stdout);
    assert!(run.stdout.contains("IAM has propagated after"), "{}", run.stdout);
    assert!(object(&cloud, &format!("{}outputs/summary.csv", run_prefix(D1))).is_some());

    // A refusal no waiting changes is not retried: another digest fails at once at the input.
    let refused = launch_with(
        &cloud,
        "refused",
        D2,
        &cloud.room.manifest,
        &notebook(AGGREGATE),
        json!({"output_name": "summary.csv"}),
        &p.endpoint,
        &[("DCR_IAM_PROPAGATION_SECONDS", "60")],
    );
    assert_eq!(refused.code, 4, "{}", refused.stdout);
    assert!(!refused.stdout.contains("waiting"), "{}", refused.stdout);
}
