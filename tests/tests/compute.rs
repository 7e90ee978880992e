//! The local cloud's Compute API running Confidential Space-shaped VMs for real: a workload image
//! (the base runtime image plus a notebook layer) is stored in the local image store, an instance
//! is inserted with Confidential Space metadata, and the simulated VM runs the image with runc —
//! the launcher inside fetches the input through the policy, runs papermill and releases the
//! result with a token whose image digest is the digest the VM actually launched.

use std::time::{Duration, Instant};

use dcr_attestation::claims::LOCAL_ISSUER;
use dcr_attestation::workload::{FailureReport, OutputManifest, output_nonce};
use dcr_attestation::{Attested, Expectations, check_attested, verify};
use dcr_e2e::clean_room::{AGGREGATE, AGGREGATE_RESULT, CleanRoom, OUT_BUCKET, base_image, notebook, run_prefix};
use dcr_e2e::fixtures::PROJECT;
use dcr_image::FileEntry;
use dcr_image::layout::Layout;
use dcr_local_cloud::SimulatedIssuer;
use serde_json::{Value, json};

const ZONE: &str = "local-a";

/// Builds the workload image for `nb` and stores it in the local cloud's image store.
fn workload_image(room: &CleanRoom, nb: &str) -> String {
    let base = base_image();
    let files = vec![
        FileEntry::new("dcr/workload.json", 0o644, room.manifest.to_bytes()),
        FileEntry::new("dcr/notebook.ipynb", 0o644, nb.as_bytes().to_vec()),
        FileEntry::new("dcr/parameters.json", 0o644, br#"{"output_name": "summary.csv"}"#.to_vec()),
    ];
    let image = dcr_image::build(&base, &files, "dcr compute test").unwrap();
    let store = Layout::create(&dcr_local_cloud::image_store(&room.state_dir)).unwrap();
    image.write_to(&store, "study").unwrap();
    image.digest
}

fn instance_body(name: &str, room: &CleanRoom, digest: &str, extra: &[(&str, &str)]) -> Value {
    let mut items = vec![
        json!({"key": "tee-image-reference", "value": format!("images.dcr.invalid/study@{digest}")}),
        json!({"key": "tee-restart-policy", "value": "Never"}),
        json!({"key": "tee-container-log-redirect", "value": "true"}),
        json!({"key": "tee-env-DCR_LOCAL_CLOUD", "value": room.process.endpoint}),
        json!({"key": "tee-mount", "value": "type=tmpfs,source=tmpfs,destination=/run/dcr"}),
    ];
    items.extend(extra.iter().map(|(k, v)| json!({"key": k, "value": v})));
    json!({
        "name": name,
        "machineType": format!("zones/{ZONE}/machineTypes/n2d-standard-2"),
        "confidentialInstanceConfig": {"confidentialInstanceType": "SEV"},
        "shieldedInstanceConfig": {"enableSecureBoot": true},
        "scheduling": {"onHostMaintenance": "TERMINATE", "automaticRestart": false},
        "disks": [{"boot": true, "autoDelete": true, "initializeParams": {
            "sourceImage": "projects/confidential-space-images/global/images/family/confidential-space-debug"}}],
        "networkInterfaces": [{"network": "global/networks/default"}],
        "metadata": {"items": items},
        "labels": {"dcr-workload": "study"},
    })
}

fn instances_path() -> String {
    format!("/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances")
}

/// Inserts the instance, polls its operation to DONE and the VM to TERMINATED; returns the VM and
/// its serial console.
fn run(room: &CleanRoom, body: &Value) -> (Value, String) {
    let admin = &room.process.admin_token;
    let seed = body["name"].as_str().unwrap().bytes().fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
    let rid = format!("8c4b8f4e-0a43-4d5c-9a55-{:012x}", seed & 0xffff_ffff_ffff);
    let r = room.process.post_json(admin, &format!("{}?requestId={rid}", instances_path()), body);
    assert!(r.status().is_success(), "insert: {}", r.text().unwrap_or_default());
    let op: Value = r.json().unwrap();
    assert_eq!(op["status"], "RUNNING");
    let op_path = format!("/compute/v1/projects/{PROJECT}/zones/{ZONE}/operations/{}", op["name"].as_str().unwrap());
    let polled: Value = room.process.get(admin, &op_path).json().unwrap();
    assert_eq!(polled["status"], "DONE", "{polled}");
    let name = body["name"].as_str().unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    let vm = loop {
        let vm: Value = room.process.get(admin, &format!("{}/{name}", instances_path())).json().unwrap();
        let status = vm["status"].as_str().unwrap_or("").to_string();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "TERMINATED" {
            break vm;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{name} still {status} after 300 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        seen.iter().all(|s| ["PROVISIONING", "STAGING", "RUNNING", "TERMINATED"].contains(&s.as_str())),
        "{seen:?}"
    );
    let serial: Value =
        room.process.get(admin, &format!("{}/{name}/serialPort?port=1&start=0", instances_path())).json().unwrap();
    let text = serial["contents"].as_str().unwrap_or("").to_string();
    println!("--- serial console of {name} ({seen:?}) ---\n{text}");
    (vm, text)
}

#[test]
fn a_confidential_space_vm_runs_the_pinned_image_with_runc_and_attests_its_digest() {
    let room = CleanRoom::new(&[]);
    let digest = workload_image(&room, &notebook(AGGREGATE));
    room.pin(&[&digest]);

    // 1. The pinned image runs to completion; its output and token are released.
    let (vm, serial) = run(&room, &instance_body("dcr-study", &room, &digest, &[]));
    assert_eq!(vm["statusMessage"], "The workload exited with code 0.", "{serial}");
    assert!(serial.contains(&format!("Image Digest: {digest}")), "{serial}");
    assert!(serial.contains("starting papermill"), "the container's log reaches the console: {serial}");
    assert!(serial.contains("workload task ended and returned 0"));
    let p = run_prefix(&digest);
    assert_eq!(room.output(&format!("{p}outputs/summary.csv")).as_deref(), Some(AGGREGATE_RESULT.as_bytes()));
    let manifest = room.output(&format!("{p}output-manifest.json")).unwrap();
    assert_eq!(OutputManifest::from_bytes(&manifest).unwrap().image_digest, digest);
    let token = String::from_utf8(room.output(&format!("{p}attestation-token.jwt")).unwrap()).unwrap();
    let jwks = SimulatedIssuer::open(&room.state_dir).unwrap().jwks().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut expect = Expectations::new(LOCAL_ISSUER, now);
    expect.audiences = vec![format!("gs://{OUT_BUCKET}/{p}")];
    let claims = verify(&token, &jwks, &expect).unwrap();
    let want =
        Attested { image_digest: Some(digest.clone()), nonce: Some(output_nonce(&manifest)), ..Default::default() };
    check_attested(&claims, &want).expect("the token attests the launched digest and binds the manifest");
    assert_eq!(claims["submods"]["gce"]["instance_name"], "dcr-study");
    assert_eq!(claims["submods"]["container"]["env"]["DCR_LOCAL_CLOUD"], room.process.endpoint.as_str());

    // 2. One byte changed in the notebook: a new digest the policy does not pin. STS refuses it
    //    inside the VM, and the failure report says so.
    let changed = workload_image(&room, &notebook(&AGGREGATE.replace("round(", "round( ")));
    assert_ne!(changed, digest);
    let (vm, serial) = run(&room, &instance_body("dcr-study-changed", &room, &changed, &[]));
    assert_eq!(vm["statusMessage"], "The workload exited with code 4.", "{serial}");
    assert!(!serial.contains("starting papermill"), "{serial}");
    let report: FailureReport =
        serde_json::from_slice(&room.output(&format!("{}failure.json", run_prefix(&changed))).unwrap()).unwrap();
    assert_eq!(report.stage, "inputs");
    assert!(report.message.contains("image_digest"), "{}", report.message);
    assert!(room.outputs(&run_prefix(&changed)).iter().all(|o| !o.contains("outputs/")));

    // 3. A launch the image's policy forbids never starts the container.
    let (vm, serial) = run(&room, &instance_body("dcr-study-env", &room, &digest, &[("tee-env-PYTHONPATH", "/tmp")]));
    let message = vm["statusMessage"].as_str().unwrap();
    assert!(message.contains("env override PYTHONPATH is not allowed"), "{message}");
    assert!(!serial.contains("workload task started"), "{serial}");

    // 4. Delete: the operation completes and the VM is gone.
    let admin = &room.process.admin_token;
    let r = room.process.delete(admin, &format!("{}/dcr-study", instances_path()));
    assert!(r.status().is_success());
    let gone = room.process.get(admin, &format!("{}/dcr-study", instances_path()));
    assert_eq!(gone.status().as_u16(), 404);
    let listed: Value = room.process.get(admin, &instances_path()).json().unwrap();
    let names: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["dcr-study-changed", "dcr-study-env"]);
}
