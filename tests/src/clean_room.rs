//! A clean room set up for workload tests without `dcr_workload`: Terraform creates the data
//! owner's dataset and policy; the consumer's side (an output bucket writable only through a
//! workload identity pool that accepts simulated TEEs) is made through the API, as `dcr_workload`
//! will make it. Also the notebook the workload tests run, and the base runtime image they build on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dcr_attestation::workload::{Backend, WORKLOAD_FORMAT, WorkloadInput, WorkloadManifest, WorkloadOutput};
use serde_json::{Value, json};

use crate::fixtures::{PROJECT, SMALL_CSV, resource_values, small_config};
use crate::local_cloud::{LocalCloudProcess, encode};
use crate::terraform::Terraform;
use crate::workspace::{Workspace, provider_bin};

pub const OUT_BUCKET: &str = "consumer-results";
pub const OUT_POOL: &str = "dcr-out-study";
const LOCAL_ISSUER: &str = "https://simulated-tee.dcr.invalid";

pub struct CleanRoom {
    pub ws: Workspace,
    pub process: LocalCloudProcess,
    /// A manifest reading the dataset as input `trial` under policy `study`, writing to
    /// `gs://consumer-results/results/`.
    pub manifest: WorkloadManifest,
    pub state_dir: PathBuf,
}

fn check(r: reqwest::blocking::Response, what: &str) -> Value {
    let status = r.status();
    let body: Value = r.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{what}: {status} {body}");
    body
}

fn policy_hcl(pinned: &[&str]) -> String {
    let digests: Vec<String> = pinned.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "resource \"dcr_policy\" \"study\" {{\n  name = \"study\"\n  datasets = [dcr_dataset.d.id]\n  \
         allowed_image_digests = [{}]\n  allow_debug = true\n  output {{\n    max_bytes = 200\n    \
         allowed_extensions = [\"csv\"]\n  }}\n}}\n",
        digests.join(", ")
    )
}

impl CleanRoom {
    /// The dataset `trial` (SMALL_CSV) and policy `study` pinning `pinned` (output: csv, ≤ 200 bytes).
    pub fn new(pinned: &[&str]) -> CleanRoom {
        let tf = Terraform::latest();
        let ws = Workspace::new(&tf);
        ws.write("main.tf", &format!("{}\n{}", small_config("trial", None, ""), policy_hcl(pinned)));
        ws.write("data.csv", SMALL_CSV);
        ws.init();
        ws.apply();
        let show = ws.show_json();
        let d = resource_values(&show, "dcr_dataset", "d");
        let p = resource_values(&show, "dcr_policy", "study");

        let state_dir = ws.path().join(".dcr");
        let process = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
        let admin = process.admin_token.clone();
        let number = dcr_local_cloud::LocalCloud::project_number(PROJECT);
        let pools = format!("/iam/v1/projects/{PROJECT}/locations/global/workloadIdentityPools");
        check(process.post_json(&admin, &format!("{pools}?workloadIdentityPoolId={OUT_POOL}"), &json!({})), "pool");
        let provider = json!({
            "oidc": {"issuerUri": LOCAL_ISSUER, "allowedAudiences": ["https://sts.googleapis.com"]},
            "attributeMapping": {"google.subject": "assertion.sub"},
            "attributeCondition": "assertion.swname == 'DCR_SIMULATED_CONFIDENTIAL_SPACE'",
        });
        let path = format!("{pools}/{OUT_POOL}/providers?workloadIdentityPoolProviderId=attestation");
        check(process.post_json(&admin, &path, &provider), "provider");
        check(
            process.post_json(&admin, &format!("/storage/v1/b?project={PROJECT}"), &json!({"name": OUT_BUCKET})),
            "bucket",
        );
        let member = format!(
            "principalSet://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/{OUT_POOL}/*"
        );
        let iam = check(process.get(&admin, &format!("/storage/v1/b/{OUT_BUCKET}/iam")), "get iam");
        let mut bindings = iam["bindings"].as_array().cloned().unwrap_or_default();
        bindings.push(json!({"role": "roles/storage.objectAdmin", "members": [member]}));
        let body = json!({"bindings": bindings, "etag": iam["etag"]});
        check(process.put_json(&admin, &format!("/storage/v1/b/{OUT_BUCKET}/iam"), &body), "set iam");

        let manifest = WorkloadManifest {
            format: WORKLOAD_FORMAT.into(),
            name: "study".into(),
            backend: Backend::Local,
            timeout_seconds: 120,
            inputs: BTreeMap::from([(
                "trial".to_string(),
                WorkloadInput {
                    dataset: d["id"].as_str().unwrap().into(),
                    object_uri: format!("gs://{}/{}", d["bucket"].as_str().unwrap(), d["object"].as_str().unwrap()),
                    policy: "study".into(),
                    policy_uri: p["policy_uri"].as_str().unwrap().into(),
                    audience: p["audience"].as_str().unwrap().into(),
                },
            )]),
            output: WorkloadOutput {
                uri: format!("gs://{OUT_BUCKET}/results/"),
                audience: format!(
                    "//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/{OUT_POOL}/providers/attestation"
                ),
            },
        };
        CleanRoom { ws, process, manifest, state_dir }
    }

    /// Re-applies the policy pinning `pinned` instead.
    pub fn pin(&self, pinned: &[&str]) {
        self.ws.write("main.tf", &format!("{}\n{}", small_config("trial", None, ""), policy_hcl(pinned)));
        self.ws.apply();
    }

    /// An object of the output bucket (as the admin).
    pub fn output(&self, name: &str) -> Option<Vec<u8>> {
        self.process.download(&self.process.admin_token, OUT_BUCKET, name).ok()
    }

    /// Object names of the output bucket under `prefix`.
    pub fn outputs(&self, prefix: &str) -> Vec<String> {
        let r = self
            .process
            .get(&self.process.admin_token, &format!("/storage/v1/b/{OUT_BUCKET}/o?prefix={}", encode(prefix)));
        let v = check(r, "list");
        v["items"]
            .as_array()
            .map(|a| a.iter().map(|o| o["name"].as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }
}

/// `results/<digest hex>/`: where a run of the image `digest` writes.
pub fn run_prefix(digest: &str) -> String {
    format!("results/{}/", digest.trim_start_matches("sha256:"))
}

/// A notebook with a `parameters` cell (`output_name`, `sleep_seconds`) and `body`.
pub fn notebook(body: &str) -> String {
    let cell = |tags: Value, source: &str| {
        json!({"cell_type": "code", "execution_count": null, "id": format!("c{}", source.len()),
               "metadata": {"tags": tags}, "outputs": [], "source": source})
    };
    let nb = json!({
        "cells": [
            cell(json!(["parameters"]), "output_name = 'default.csv'\nsleep_seconds = 0"),
            cell(json!([]), body),
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    serde_json::to_string_pretty(&nb).unwrap()
}

/// Aggregates of the `trial` input (rows, mean age) into `outputs/<output_name>`; on SMALL_CSV the
/// result is [`AGGREGATE_RESULT`].
pub const AGGREGATE: &str = "import os, time\nimport pandas as pd\n\
    time.sleep(sleep_seconds)\n\
    df = pd.read_csv(os.path.join(os.environ['DCR_INPUTS_DIR'], 'trial.csv'))\n\
    out = pd.DataFrame({'rows': [len(df)], 'mean_age': [round(df['age'].mean(), 2)]})\n\
    out.to_csv(os.path.join(os.environ['DCR_OUTPUTS_DIR'], output_name), index=False)\n";
pub const AGGREGATE_RESULT: &str = "rows,mean_age\n3,36.67\n";

/// The tag `runtime-image/build.sh` gives the base image.
pub const BASE_TAG: &str = "dcr-runtime:0.1.0";

/// Where `runtime-image/build.sh` puts the base image by default.
pub fn base_layout() -> PathBuf {
    dcr_image::build::cache_dir().join("runtime-image/layout")
}

/// Runs `runtime-image/build.sh` with `args`; returns the digest it prints last.
pub fn build_base_image(args: &[&std::ffi::OsStr]) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let out = std::process::Command::new(root.join("runtime-image/build.sh"))
        .args(args)
        .output()
        .expect("run runtime-image/build.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "build.sh failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let digest = stdout.lines().last().unwrap_or_default().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{stdout}");
    digest
}

/// The base runtime image in its default layout, built once when it is not there yet (tests in
/// one process share the build; a file lock serialises test processes).
pub fn base_image() -> dcr_image::BaseImage {
    static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let layout = base_layout();
    if !*built {
        std::fs::create_dir_all(layout.parent().unwrap()).unwrap();
        let lock = std::fs::File::create(layout.parent().unwrap().join(".test-build.lock")).unwrap();
        lock.lock().expect("lock the base image build");
        if dcr_image::BaseImage::from_layout(&layout, Some(BASE_TAG)).is_err() {
            build_base_image(&[]);
        }
        *built = true;
    }
    dcr_image::BaseImage::from_layout(&layout, Some(BASE_TAG)).expect("the base runtime image")
}
