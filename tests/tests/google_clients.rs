//! Fidelity anchored by Google's code: Google's official client libraries (google-cloud-storage,
//! google-cloud-kms over REST, google-cloud-compute, google-api-python-client (IAM, STS, Resource
//! Manager, Cloud Logging) and google-auth,
//! pinned in tests/google-clients/requirements.txt) drive a standalone local cloud through every
//! method it serves. The pytest suite in tests/google-clients/ says what each library must be able
//! to do; this test starts the local cloud, mints the attestation token a Confidential Space
//! workload would find on disk, runs the suite, and then reads the local cloud's request log: every
//! request must conform to Google's discovery documents, and every served method must have been
//! answered with a 2xx at least once — by Google's code, not ours.

use std::collections::BTreeSet;

use dcr_attestation::claims::{AttestationClaims, LOCAL_ISSUER, STS_AUDIENCE, SimulatedLaunch};
use dcr_e2e::conformance::{Checker, discovery_dir};
use dcr_e2e::fixtures::PROJECT;
use dcr_e2e::google_clients::{ScratchDir, run_python, suite_dir};
use dcr_e2e::local_cloud::LocalCloudProcess;
use dcr_e2e::workspace::provider_bin;
use dcr_local_cloud::SimulatedIssuer;

const READER: &str = "user:reader@example.com";
const DIGEST: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

/// Every method the local cloud serves, by discovery id (uploads and media downloads as the
/// conformance report counts them). docs/guides/design-notes.md lists the same, with the library
/// that covers each.
const SERVED: &[&str] = &[
    "storage.buckets.insert",
    "storage.buckets.list",
    "storage.buckets.get",
    "storage.buckets.patch",
    "storage.buckets.delete",
    "storage.buckets.getIamPolicy",
    "storage.buckets.setIamPolicy",
    "storage.buckets.testIamPermissions",
    "storage.objects.insert (upload)",
    "storage.objects.insert (resumable chunk)",
    "storage.objects.get",
    "storage.objects.get (media)",
    "storage.objects.list",
    "storage.objects.delete",
    "cloudkms.projects.locations.keyRings.create",
    "cloudkms.projects.locations.keyRings.get",
    "cloudkms.projects.locations.keyRings.list",
    "cloudkms.projects.locations.keyRings.getIamPolicy",
    "cloudkms.projects.locations.keyRings.setIamPolicy",
    "cloudkms.projects.locations.keyRings.cryptoKeys.create",
    "cloudkms.projects.locations.keyRings.cryptoKeys.get",
    "cloudkms.projects.locations.keyRings.cryptoKeys.list",
    "cloudkms.projects.locations.keyRings.cryptoKeys.patch",
    "cloudkms.projects.locations.keyRings.cryptoKeys.encrypt",
    "cloudkms.projects.locations.keyRings.cryptoKeys.decrypt",
    "cloudkms.projects.locations.keyRings.cryptoKeys.getIamPolicy",
    "cloudkms.projects.locations.keyRings.cryptoKeys.setIamPolicy",
    "cloudkms.projects.locations.keyRings.cryptoKeys.cryptoKeyVersions.list",
    "cloudkms.projects.locations.keyRings.cryptoKeys.cryptoKeyVersions.get",
    "cloudkms.projects.locations.keyRings.cryptoKeys.cryptoKeyVersions.destroy",
    "cloudkms.projects.locations.keyRings.cryptoKeys.cryptoKeyVersions.restore",
    "iam.projects.locations.workloadIdentityPools.create",
    "iam.projects.locations.workloadIdentityPools.get",
    "iam.projects.locations.workloadIdentityPools.list",
    "iam.projects.locations.workloadIdentityPools.patch",
    "iam.projects.locations.workloadIdentityPools.delete",
    "iam.projects.locations.workloadIdentityPools.undelete",
    "iam.projects.locations.workloadIdentityPools.operations.get",
    "iam.projects.locations.workloadIdentityPools.providers.create",
    "iam.projects.locations.workloadIdentityPools.providers.get",
    "iam.projects.locations.workloadIdentityPools.providers.list",
    "iam.projects.locations.workloadIdentityPools.providers.patch",
    "iam.projects.locations.workloadIdentityPools.providers.delete",
    "iam.projects.locations.workloadIdentityPools.providers.undelete",
    "iam.projects.locations.workloadIdentityPools.providers.operations.get",
    "sts.token",
    "cloudresourcemanager.projects.get",
    "compute.instances.insert",
    "compute.instances.get",
    "compute.instances.list",
    "compute.instances.stop",
    "compute.instances.delete",
    "compute.instances.getSerialPortOutput",
    "compute.zoneOperations.get",
    "compute.zoneOperations.wait",
    "artifactregistry.projects.locations.repositories.create",
    "artifactregistry.projects.locations.repositories.get",
    "artifactregistry.projects.locations.repositories.getIamPolicy",
    "artifactregistry.projects.locations.repositories.setIamPolicy",
    "artifactregistry.projects.locations.operations.get",
    "logging.entries.list",
];

/// A Confidential Space token as the simulated TEE would write it for a workload of `DIGEST`.
fn attestation_token(issuer: &SimulatedIssuer) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let launch = SimulatedLaunch {
        image_reference: format!("images.dcr.invalid/study@{DIGEST}"),
        image_digest: DIGEST.into(),
        project_id: PROJECT.into(),
        project_number: "1".into(),
        zone: "us-central1-a".into(),
        instance_name: "study".into(),
        instance_id: "1001".into(),
        ..Default::default()
    };
    issuer.mint(&AttestationClaims::simulated(&launch, now, STS_AUDIENCE, &[])).expect("the simulated issuer signs")
}

#[test]
fn google_client_libraries_drive_every_method_the_local_cloud_serves() {
    let scratch = ScratchDir::new("google-clients");
    let state_dir = scratch.path().join("state");
    let cloud =
        LocalCloudProcess::start_logged(&provider_bin(), &state_dir, &[READER], &scratch.path().join("requests.jsonl"));
    let token_file = scratch.path().join("attestation_verifier_claims_token");
    std::fs::write(&token_file, attestation_token(&SimulatedIssuer::open(&state_dir).unwrap())).unwrap();

    let suite = suite_dir();
    let out = run_python(
        &["-m", "pytest", "-p", "no:cacheprovider", "-v", "-rA", "--color=no", suite.to_str().unwrap()],
        &[
            ("DCR_LOCAL_CLOUD", &cloud.endpoint),
            ("DCR_ADMIN_TOKEN", &cloud.admin_token),
            ("DCR_READER", READER),
            ("DCR_READER_TOKEN", &cloud.token_for(READER)),
            ("DCR_PROJECT", PROJECT),
            ("DCR_ATTESTATION_TOKEN_FILE", token_file.to_str().unwrap()),
            ("DCR_IMAGE_DIGEST", DIGEST),
            ("DCR_ATTESTATION_ISSUER", LOCAL_ISSUER),
        ],
        scratch.path(),
    );
    assert!(out.success(), "Google's client libraries failed against the local cloud:\n{out}");
    // pytest's own summary, for the log of a passing run.
    println!("{}", out.stdout.lines().last().unwrap_or(""));

    let log = cloud.request_log.clone().expect("a logged local cloud");
    drop(cloud);
    let report = Checker::new(&discovery_dir()).check_log(&log).unwrap_or_else(|e| panic!("{e}"));
    let violations: Vec<String> = report.violations.iter().map(ToString::to_string).collect();
    assert!(violations.is_empty(), "requests Google's discovery documents do not allow:\n{}", violations.join("\n"));

    let answered: BTreeSet<&str> = report.succeeded.keys().map(String::as_str).collect();
    let uncovered: Vec<&&str> = SERVED.iter().filter(|m| !answered.contains(**m)).collect();
    assert!(uncovered.is_empty(), "served methods no Google client called successfully: {uncovered:?}");
    let unlisted: Vec<&&str> = answered.iter().filter(|m| !SERVED.contains(m)).collect();
    assert!(unlisted.is_empty(), "the local cloud answered methods SERVED does not list: {unlisted:?}");

    // The request shapes the libraries chose, which this suite exists to exercise.
    let text = std::fs::read_to_string(&log).unwrap();
    for shape in [
        r#""uploadType":["multipart"]"#,
        r#""uploadType":["resumable"]"#,
        r#""path":"/download/storage/v1/b/"#,
        r#""$alt":["json;enum-encoding=int"]"#,
        r#""fields":["name"]"#,
    ] {
        assert!(text.contains(shape), "no request in {} carries {shape}", log.display());
    }
    assert!(!text.contains(&std::fs::read_to_string(&token_file).unwrap()), "the attestation token reached the log");
}
