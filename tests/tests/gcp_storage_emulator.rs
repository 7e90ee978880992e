//! The provider's `gcp` path against a Cloud Storage server nobody here wrote: `dcr_dataset` applied
//! through a `gcp` block whose storage endpoint is gcp-storage-emulator (PyPI, pinned by
//! tests/install-tools.sh) and whose KMS, Resource Manager, IAM and STS endpoints are a standalone
//! local cloud, authenticated with `GOOGLE_OAUTH_ACCESS_TOKEN` as a static token. Every other test
//! runs the storage client against the local cloud, which was written from the same beliefs as the
//! client; here the client has to get along with someone else's reading of the JSON API.

use dcr_e2e::fixtures::{PROJECT, SMALL_CSV, resource_values, sha256_hex};
use dcr_e2e::local_cloud::{LocalCloudProcess, encode};
use dcr_e2e::peers::StorageEmulator;
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::{Workspace, provider_bin};
use dcr_gcp::storage::UPLOAD_CHUNK;
use reqwest::blocking::Client;
use serde_json::Value;

fn config(emulator: &StorageEmulator, cloud: &LocalCloudProcess) -> String {
    let ep = &cloud.endpoint;
    format!(
        r#"terraform {{
  required_providers {{
    dcr = {{ source = "dcr/dcr" }}
  }}
}}
provider "dcr" {{
  gcp {{
    project                   = "{PROJECT}"
    storage_endpoint          = "{}/storage/v1/"
    kms_endpoint              = "{ep}/cloudkms/v1/"
    resource_manager_endpoint = "{ep}/cloudresourcemanager/v1/"
    iam_endpoint              = "{ep}/iam/v1/"
    sts_endpoint              = "{ep}/sts/v1/"
  }}
}}
resource "dcr_dataset" "d" {{
  name   = "emulated"
  source = "data.csv"
{SCHEMA}
}}
resource "dcr_dataset" "big" {{
  name   = "emulated-big"
  source = "big.csv"
{SCHEMA}
}}
"#,
        emulator.base
    )
}

const SCHEMA: &str = r#"  schema {
    column {
      name       = "id"
      type       = "string"
      max_length = 10
    }
    column {
      name = "age"
      type = "integer"
      min  = 0
      max  = 120
    }
  }"#;

/// A CSV whose envelope is larger than one upload chunk, so the upload takes the resumable
/// protocol's intermediate round trips (308 Resume Incomplete and its `Range` header).
fn big_csv() -> String {
    let rows = UPLOAD_CHUNK / 12 + 50_000;
    let mut csv = String::with_capacity(rows * 13 + 8);
    csv.push_str("id,age\n");
    for i in 0..rows {
        csv.push_str(&format!("r{i:07},{}\n", i % 121));
    }
    assert!(csv.len() > UPLOAD_CHUNK + 256 * 1024);
    csv
}

/// An object's bytes from the emulator (it serves media without credentials), or the status.
fn emulator_download(http: &Client, emulator: &StorageEmulator, bucket: &str, object: &str) -> Result<Vec<u8>, u16> {
    let url = format!("{}/storage/v1/b/{bucket}/o/{}?alt=media", emulator.base, encode(object));
    let r = http.get(url).send().expect("emulator answers");
    if !r.status().is_success() {
        return Err(r.status().as_u16());
    }
    Ok(r.bytes().expect("body").to_vec())
}

#[test]
fn dataset_applies_refreshes_and_destroys_through_the_gcp_path_against_gcp_storage_emulator() {
    let big = big_csv();
    for tf in Terraform::all() {
        let ws = Workspace::new(&tf);
        let emulator = StorageEmulator::start(&ws.path().join("emulator.log"));
        let cloud = LocalCloudProcess::start(&provider_bin(), &ws.path().join("cloud"), &[]);
        ws.env("GOOGLE_OAUTH_ACCESS_TOKEN", &cloud.admin_token);
        ws.write("main.tf", &config(&emulator, &cloud));
        ws.write("data.csv", SMALL_CSV);
        ws.write("big.csv", &big);
        ws.init();
        ws.apply();
        ws.assert_no_changes();

        // What the emulator stores is a dcr envelope that only the local cloud's KMS key opens.
        let show = ws.show_json();
        let http = Client::new();
        for (name, source) in [("d", SMALL_CSV), ("big", big.as_str())] {
            let d = resource_values(&show, "dcr_dataset", name);
            let (bucket, object) = (d["bucket"].as_str().unwrap(), d["object"].as_str().unwrap());
            let envelope = emulator_download(&http, &emulator, bucket, object).expect("the object is in the emulator");
            assert_eq!(d["ciphertext_sha256"], sha256_hex(&envelope), "terraform {}: {name}", tf.version);
            assert!(!envelope.windows(9).any(|w| w == b"secret-a1"), "plaintext in the stored object");
            let header = dcr_envelope::read_header(&mut &envelope[..]).expect("a dcr envelope");
            assert_eq!(header.kms_key, d["crypto_key"].as_str().unwrap());
            let aad = format!("dcr-envelope-v1:gs://{bucket}/{object}");
            let wrapped = header.wrapped_key_bytes().unwrap();
            let data_key = cloud
                .kms_decrypt(&cloud.admin_token, &header.kms_key, &wrapped, aad.as_bytes())
                .expect("the local cloud's KMS unwraps the data key");
            assert!(dcr_envelope::open_all(&envelope, &data_key).unwrap() == source.as_bytes(), "{name} round trip");
        }
        let d = resource_values(&show, "dcr_dataset", "d");
        let (bucket, object) = (d["bucket"].as_str().unwrap(), d["object"].as_str().unwrap());

        // Drift: the object deleted behind Terraform's back is noticed and put back.
        let url = format!("{}/storage/v1/b/{bucket}/o/{}", emulator.base, encode(object));
        let r = http.delete(url).send().expect("emulator answers");
        assert!(r.status().is_success(), "delete in the emulator: {}", r.status());
        let drift = ws.plan(&["-detailed-exitcode"]);
        assert_eq!(drift.code(), Some(2), "terraform {}: the deleted object was not noticed:\n{drift}", tf.version);
        ws.apply();
        ws.assert_no_changes();
        let again = emulator_download(&http, &emulator, bucket, object).expect("the object is back");
        assert!(dcr_envelope::read_header(&mut &again[..]).is_ok());
        // The emulator's buckets.insert keeps only the name (it drops iamConfiguration and labels,
        // which Google applies at creation); the repair apply's ensure_bucket patches them in, so
        // by now the bucket must say what dcr asks of every bucket.
        let b: Value = http.get(format!("{}/storage/v1/b/{bucket}", emulator.base)).send().unwrap().json().unwrap();
        assert_eq!(b["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"], true, "{b}");
        assert_eq!(b["iamConfiguration"]["publicAccessPrevention"], "enforced", "{b}");

        ws.destroy();
        for name in ["d", "big"] {
            let bucket = resource_values(&show, "dcr_dataset", name)["bucket"].as_str().unwrap().to_string();
            let r = http.get(format!("{}/storage/v1/b/{bucket}", emulator.base)).send().expect("emulator answers");
            assert_eq!(r.status().as_u16(), 404, "terraform {}: bucket {bucket} outlived destroy", tf.version);
        }
    }
}
