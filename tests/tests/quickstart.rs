//! README's main job, `examples/quickstart`, end to end on Terraform 1.15.5 and 1.0.3: the data owner's
//! dataset and policy, the reviewed notebook's digest pinned through `data "dcr_image_digest"`, and
//! `dcr_workload` running the notebook in a runc container in the simulated TEE. The released
//! aggregates must equal what the notebook computes on the source data (recomputed here), the
//! attestation token must verify, a second plan must be empty, both Terraforms (separate state
//! directories) must build the same image digest, and no patient id may appear in the image layers,
//! the state, the plan or the provider's logs. README's way of reading the result with
//! google-cloud-storage is run as README shows it.

use std::collections::BTreeMap;
use std::path::Path;

use dcr_e2e::clean_room::base_image;
use dcr_e2e::fixtures::{PROJECT, quickstart, resource_values, sha256_hex};
use dcr_e2e::google_clients::{ScratchDir, readme_python, run_python};
use dcr_e2e::local_cloud::LocalCloudProcess;
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::{Workspace, provider_bin};

/// What analysis.ipynb computes, recomputed from the CSV: per region (with at least 10
/// patients) the count, smokers, and mean age, BMI and systolic pressure.
fn expected_summary(csv: &str) -> BTreeMap<String, (u64, u64, f64, f64, f64)> {
    let mut groups: BTreeMap<String, (u64, u64, f64, f64, f64)> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let g = groups.entry(f[6].to_string()).or_default();
        g.0 += 1;
        g.1 += (f[5] == "yes") as u64;
        g.2 += f[1].parse::<f64>().unwrap();
        g.3 += f[3].parse::<f64>().unwrap();
        g.4 += f[4].parse::<f64>().unwrap();
    }
    groups
        .into_iter()
        .filter(|(_, g)| g.0 >= 10)
        .map(|(k, g)| (k, (g.0, g.1, g.2 / g.0 as f64, g.3 / g.0 as f64, g.4 / g.0 as f64)))
        .collect()
}

fn check_summary(released: &str, csv: &str) {
    let want = expected_summary(csv);
    let mut lines = released.lines();
    assert_eq!(lines.next(), Some("region,patients,smokers,mean_age,mean_bmi,mean_systolic_bp"), "{released}");
    let mut seen = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let w = want.get(f[0]).unwrap_or_else(|| panic!("unexpected group in {released}"));
        assert_eq!((f[1].parse::<u64>().unwrap(), f[2].parse::<u64>().unwrap()), (w.0, w.1), "{line}");
        for (got, want) in [(f[3], w.2), (f[4], w.3), (f[5], w.4)] {
            assert!((got.parse::<f64>().unwrap() - want).abs() <= 0.005 + 1e-9, "{line}: {got} vs {want}");
        }
        seen += 1;
    }
    assert_eq!(seen, want.len(), "{released}");
}

/// Every blob of the local image store but the base image's layers, decompressed where gzip'd: the
/// workload's own layer, configs and manifests.
fn image_store_text(state_dir: &Path) -> String {
    let base: Vec<String> =
        base_image().manifest.layers.iter().map(|l| l.digest.trim_start_matches("sha256:").to_string()).collect();
    let mut out = Vec::new();
    let blobs = state_dir.join("images/blobs/sha256");
    for e in std::fs::read_dir(&blobs).unwrap() {
        let e = e.unwrap();
        if base.iter().any(|b| e.file_name().to_str() == Some(b.as_str())) {
            continue;
        }
        let bytes = std::fs::read(e.path()).unwrap();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut d = flate2::read::GzDecoder::new(&bytes[..]);
            std::io::Read::read_to_end(&mut d, &mut out).unwrap();
        } else {
            out.extend_from_slice(&bytes);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// README's "Reading a released result with standard tools", as written there: the `results`
/// output names the run, and README's Python block downloads its summary.csv with
/// google-cloud-storage through `STORAGE_EMULATOR_HOST`, authenticated by the banner's token.
fn read_summary_as_readme_says(ws: &Workspace, cloud: &LocalCloudProcess, uri: &str, summary: &[u8]) {
    assert_eq!(ws.run_ok(&["output", "-raw", "results"]).stdout, uri);
    let dir = ScratchDir::new("read-summary");
    std::fs::write(dir.path().join("read_summary.py"), readme_python("<!-- read_summary.py:")).unwrap();
    let out = run_python(
        &["read_summary.py"],
        &[("STORAGE_EMULATOR_HOST", &cloud.endpoint), ("DCR_TOKEN", &cloud.admin_token), ("RESULTS", uri)],
        dir.path(),
    );
    assert!(out.success(), "README's read_summary.py failed:\n{out}");
    assert_eq!(std::fs::read(dir.path().join("summary.csv")).unwrap(), summary, "{out}");
    assert!(out.stdout.starts_with("region,patients,"), "{out}");
}

#[test]
fn quickstart_runs_the_reviewed_notebook_and_verifies_its_result_on_every_terraform() {
    base_image();
    let mut digests = Vec::new();
    for tf in Terraform::all() {
        let started = std::time::Instant::now();
        let ws = quickstart(&tf);
        let newest = tf.version == Terraform::latest().version;
        let log = ws.path().join("provider.log");
        if newest {
            ws.env("TF_LOG", "TRACE");
            ws.env("TF_LOG_PATH", log.to_str().unwrap());
            // The provider function checks the released token too (Terraform 1.8 and later).
            ws.write(
                "verify.tf",
                r#"output "function_verified_image" {
  value = nonsensitive(provider::dcr::verify_attestation(dcr_workload.study.attestation_token, {
    issuer       = dcr_policy.study.issuer
    image_digest = data.dcr_image_digest.study.digest
    nonce        = dcr_workload.study.output_manifest_sha256
    audience     = dcr_workload.study.output_uri
  }).image_digest)
}
"#,
            );
        }
        ws.init();
        let plan = ws.plan_json();
        let applied = ws.apply();
        println!("terraform {}: init + plan + apply in {:?}", tf.version, started.elapsed());
        let text = applied.text();
        assert!(text.contains("verified_claims"), "terraform {}: {text}", tf.version);
        ws.assert_no_changes();

        let show = ws.show_json();
        let d = resource_values(&show, "dcr_dataset", "patients");
        let csv = std::fs::read_to_string(ws.path().join("data/patients.csv")).unwrap();
        assert_eq!(d["source_sha256"], sha256_hex(csv.as_bytes()));
        assert_eq!(d["source_rows"], 500);
        assert_eq!(d["object_uri"], format!("gs://{PROJECT}-patients/patients.csv.enc"));
        let w = resource_values(&show, "dcr_workload", "study");
        let digest = w["image_digest"].as_str().unwrap().to_string();
        let policy = resource_values(&show, "dcr_policy", "study");
        assert_eq!(policy["attribute_condition"], format!("assertion.submods.container.image_digest in ['{digest}']"));
        assert_eq!(w["status"], "TERMINATED");
        assert_eq!(w["image"], format!("images.dcr.invalid/diabetes-study@{digest}"));
        let claims = &w["attestation_claims"];
        assert_eq!(claims["image_digest"], digest.as_str());
        assert_eq!(claims["nonces"][0], w["output_manifest_sha256"]);
        assert_eq!(claims["hwmodel"], "DCR_SIMULATED_TEE");
        if newest {
            let outputs = &show["values"]["outputs"];
            assert_eq!(outputs["function_verified_image"]["value"], digest.as_str());
        }

        // The released aggregates are the notebook's result on the source data.
        let state_dir = ws.path().join(".dcr");
        let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
        let uri = w["output_uri"].as_str().unwrap();
        let (bucket, prefix) = uri.trim_start_matches("gs://").split_once('/').unwrap();
        let summary = cloud.download(&cloud.admin_token, bucket, &format!("{prefix}outputs/summary.csv")).unwrap();
        check_summary(std::str::from_utf8(&summary).unwrap(), &csv);
        let manifest = cloud.download(&cloud.admin_token, bucket, &format!("{prefix}output-manifest.json")).unwrap();
        assert_eq!(w["output_manifest_sha256"], sha256_hex(&manifest));
        if newest {
            read_summary_as_readme_says(&ws, &cloud, uri, &summary);
        }

        // No patient id anywhere it must not be.
        let ids: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
        let mut places = vec![
            ("state file", ws.state_file_text()),
            ("plan JSON", plan.to_string()),
            ("show JSON", show.to_string()),
            ("image store", image_store_text(&state_dir)),
        ];
        if newest {
            let logs = std::fs::read_to_string(&log).unwrap();
            assert!(logs.contains("dcr_workload"), "the log captured the provider run");
            places.push(("provider logs", logs));
        }
        for (what, text) in &places {
            if let Some(id) = ids.iter().find(|id| text.contains(*id)) {
                panic!("terraform {}: patient id {id} found in the {what}", tf.version);
            }
        }
        drop(cloud);
        digests.push(digest);

        ws.destroy();
        let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
        // The stand-in is DP-synthetic: its privacy ledger outlives the dataset, and nothing else.
        assert_eq!(cloud.remove_ledgers(PROJECT), ["patients.privacy-ledger.json"], "terraform {}", tf.version);
        assert_eq!(cloud.buckets(PROJECT), Vec::<String>::new(), "terraform {}: destroy left buckets", tf.version);
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "the same inputs in two state directories: {digests:?}");
}
