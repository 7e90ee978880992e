//! `examples/multi-party`: two owners, two datasets, two policies pinning the same reviewed image,
//! one workload joining both, written on the clean-room module. The released aggregates must equal
//! the join recomputed here.

use std::collections::BTreeMap;

use dcr_e2e::clean_room::base_image;
use dcr_e2e::fixtures::{copy_repo_dir, repo_root, resource_at};
use dcr_e2e::local_cloud::LocalCloudProcess;
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::{Workspace, provider_bin};

/// Per region: tested (patients with a lab result), diabetic (HbA1c ≥ 6.5), mean HbA1c; regions
/// with fewer than 10 tested are suppressed.
fn expected(patients: &str, labs: &str) -> BTreeMap<String, (u64, u64, f64)> {
    let region: BTreeMap<&str, &str> =
        patients.lines().skip(1).map(|l| l.split(',').collect::<Vec<_>>()).map(|f| (f[0], f[2])).collect();
    let mut g: BTreeMap<String, (u64, u64, f64)> = BTreeMap::new();
    for l in labs.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let Some(r) = region.get(f[0]) else { continue };
        let h: f64 = f[1].parse().unwrap();
        let e = g.entry(r.to_string()).or_default();
        e.0 += 1;
        e.1 += (h >= 6.5) as u64;
        e.2 += h;
    }
    g.into_iter().filter(|(_, e)| e.0 >= 10).map(|(k, e)| (k, (e.0, e.1, e.2 / e.0 as f64))).collect()
}

#[test]
fn two_owners_two_policies_one_workload_joining_both() {
    base_image();
    let ws = Workspace::new(&Terraform::latest());
    let ex = repo_root().join("examples/multi-party");
    // The example calls the clean-room module by its path in the repository.
    copy_repo_dir(&ws, "modules");
    let main = std::fs::read_to_string(ex.join("main.tf")).unwrap();
    assert!(main.contains("\"../../modules/clean-room\""), "the example is written on the clean-room module");
    ws.write("main.tf", &main.replace("../../modules/", "./modules/"));
    for f in ["join.ipynb", "data/patients.csv", "data/lab_results.csv"] {
        ws.write(f, &std::fs::read_to_string(ex.join(f)).unwrap());
    }
    ws.init();
    ws.apply();
    ws.assert_no_changes();
    let show = ws.show_json();
    let w = resource_at(&show, "module.study.module.analysis.dcr_workload.this");
    let digest = w["image_digest"].as_str().unwrap();
    for owner in ["patients", "labs"] {
        let p = resource_at(&show, &format!("module.study.module.owner[\"{owner}\"].dcr_policy.this"));
        assert_eq!(p["allowed_image_digests"], serde_json::json!([digest]), "{owner}");
    }
    assert_eq!(ws.run_ok(&["output", "-raw", "attested_image"]).stdout, digest);
    let cloud = LocalCloudProcess::start(&provider_bin(), &ws.path().join(".dcr"), &[]);
    let uri = w["output_uri"].as_str().unwrap();
    let (bucket, prefix) = uri.trim_start_matches("gs://").split_once('/').unwrap();
    let csv = cloud.download(&cloud.admin_token, bucket, &format!("{prefix}outputs/hba1c_by_region.csv")).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let want = expected(
        &std::fs::read_to_string(ex.join("data/patients.csv")).unwrap(),
        &std::fs::read_to_string(ex.join("data/lab_results.csv")).unwrap(),
    );
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("region,tested,diabetic,mean_hba1c"), "{csv}");
    let mut seen = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let e = want.get(f[0]).unwrap_or_else(|| panic!("unexpected group: {line}"));
        assert_eq!((f[1].parse::<u64>().unwrap(), f[2].parse::<u64>().unwrap()), (e.0, e.1), "{line}");
        assert!((f[3].parse::<f64>().unwrap() - e.2).abs() <= 0.005 + 1e-9, "{line} vs {e:?}");
        seen += 1;
    }
    assert_eq!(seen, want.len(), "{csv}");
    let manifest = cloud.download(&cloud.admin_token, bucket, &format!("{prefix}output-manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let policies: Vec<&str> = m["inputs"].as_array().unwrap().iter().map(|i| i["policy"].as_str().unwrap()).collect();
    assert_eq!(policies, vec!["lab-study", "hospital-study"], "inputs in name order: labs, patients");
    drop(cloud);
    ws.destroy();
}
