//! Destroy and refresh never need local files, and drift of the stored data converges
//! (issue 10, item 4): with the source CSV and the notebook deleted, refresh and destroy work; a
//! deleted encrypted object, or its backing file lost from the local cloud's disk, is detected by
//! refresh and re-uploaded by the next apply, and a policy over that dataset plans meanwhile.

use dcr_e2e::fixtures::{PROJECT, SMALL_CSV, quickstart, resource_values, small_config};
use dcr_e2e::local_cloud::{LocalCloudProcess, encode};
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::{Workspace, provider_bin};

fn policy_over_d() -> String {
    "resource \"dcr_policy\" \"p\" {\n  name     = \"files-policy\"\n  datasets = [dcr_dataset.d.id]\n  \
     allowed_image_digests = []\n}\n"
        .to_string()
}

#[test]
fn destroy_and_refresh_need_no_source_file() {
    for tf in Terraform::all() {
        let ws = Workspace::new(&tf);
        ws.write("main.tf", &format!("{}\n{}", small_config("nosource", None, ""), policy_over_d()));
        ws.write("data.csv", SMALL_CSV);
        ws.init();
        ws.apply();
        std::fs::remove_file(ws.path().join("data.csv")).unwrap();

        // Plan keeps the uploaded data and says why; nothing changes.
        let plan = ws.plan(&["-detailed-exitcode"]);
        assert_eq!(plan.code(), Some(0), "terraform {}: plan without the source:\n{plan}", tf.version);
        assert!(plan.text().contains("is not here; keeping the uploaded data"), "{plan}");
        let refresh = ws.plan(&["-refresh-only", "-detailed-exitcode"]);
        assert_eq!(refresh.code(), Some(0), "terraform {}: refresh without the source:\n{refresh}", tf.version);

        ws.destroy();
        let cloud = LocalCloudProcess::start(&provider_bin(), &ws.path().join(".dcr"), &[]);
        assert_eq!(cloud.buckets(PROJECT), Vec::<String>::new(), "terraform {}: buckets left", tf.version);
    }
}

#[test]
fn destroy_of_the_quickstart_needs_neither_the_notebook_nor_the_data() {
    let tf = Terraform::latest();
    let ws = quickstart(&tf);
    ws.init();
    ws.apply();
    std::fs::remove_file(ws.path().join("analysis.ipynb")).unwrap();
    std::fs::remove_file(ws.path().join("data/patients.csv")).unwrap();

    // Exit code 2: the outputs that show the digest change to null; the resources match.
    let refresh = ws.plan(&["-refresh-only", "-detailed-exitcode"]);
    assert_eq!(refresh.code(), Some(2), "refresh without the notebook and data:\n{refresh}");
    assert!(refresh.text().contains("infrastructure still matches the configuration"), "{refresh}");
    assert!(refresh.text().contains("its digest reads as null"), "{refresh}");
    // A digest cannot be computed without its notebook: the plan says so (a warning, since
    // Terraform plans this way before every destroy too), and an apply is refused.
    let plan = ws.plan(&[]);
    assert_eq!(plan.code(), Some(0), "{plan}");
    assert!(plan.text().contains("\"./analysis.ipynb\" is not here"), "{plan}");
    assert!(plan.text().contains("an element is null; applying this policy would fail"), "{plan}");
    let apply = ws.apply_fails();
    assert!(apply.text().contains("Invalid allowed_image_digests: an element is null"), "{apply}");

    ws.destroy();
    let cloud = LocalCloudProcess::start(&provider_bin(), &ws.path().join(".dcr"), &[]);
    assert_eq!(cloud.remove_ledgers(PROJECT), ["patients.privacy-ledger.json"], "only the privacy ledger stays");
    assert_eq!(cloud.buckets(PROJECT), Vec::<String>::new(), "buckets left after destroy");
    assert!(cloud.pools(PROJECT).iter().all(|p| p["state"] == "DELETED"), "pools left: {:?}", cloud.pools(PROJECT));
}

/// Removes the dataset's encrypted object behind Terraform's back, in one of two ways.
enum Loss {
    /// Deleted through the Storage API, as `gcloud storage rm` would.
    Object,
    /// Its data file deleted from the local cloud's disk (metadata left behind).
    BackingFile,
}

fn lose_the_object_then_converge(loss: Loss) {
    let tf = Terraform::latest();
    let ws = Workspace::new(&tf);
    ws.write("main.tf", &format!("{}\n{}", small_config("restore", None, ""), policy_over_d()));
    ws.write("data.csv", SMALL_CSV);
    ws.init();
    ws.apply();
    let d = resource_values(&ws.show_json(), "dcr_dataset", "d");
    let (bucket, object) = (d["bucket"].as_str().unwrap().to_string(), d["object"].as_str().unwrap().to_string());
    let state_dir = ws.path().join(".dcr");
    {
        let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
        match loss {
            Loss::Object => {
                let r = cloud.delete(&cloud.admin_token, &format!("/storage/v1/b/{bucket}/o/{}", encode(&object)));
                assert_eq!(r.status().as_u16(), 204, "delete the object");
            }
            Loss::BackingFile => {
                let before = cloud.download(&cloud.admin_token, &bucket, &object).expect("the object reads");
                let objects = find_object_dir(&state_dir);
                let file = std::fs::read_dir(&objects)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| std::fs::read(p).is_ok_and(|b| b == before))
                    .unwrap_or_else(|| panic!("no data file of {object} under {}", objects.display()));
                std::fs::remove_file(&file).unwrap();
            }
        }
        assert_eq!(cloud.download(&cloud.admin_token, &bucket, &object).err(), Some(404), "the object is gone");
    }

    // The plan sees the loss, and the policy over the dataset plans instead of failing.
    let plan = ws.plan(&["-detailed-exitcode"]);
    assert_eq!(plan.code(), Some(2), "the plan should restore the object:\n{plan}");
    assert!(plan.text().contains("dcr_dataset.d will be updated in-place"), "{plan}");
    ws.apply();
    ws.assert_no_changes();
    let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
    assert!(cloud.download(&cloud.admin_token, &bucket, &object).is_ok(), "the object is back");
    drop(cloud);
    ws.destroy();
}

/// The directory that holds the local cloud's object data files.
fn find_object_dir(state_dir: &std::path::Path) -> std::path::PathBuf {
    let mut stack = vec![state_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "objects") {
                    return p;
                }
                stack.push(p);
            }
        }
    }
    panic!("no objects directory under {}", state_dir.display())
}

#[test]
fn a_policy_over_a_dataset_whose_object_was_deleted_plans_and_the_apply_restores_it() {
    lose_the_object_then_converge(Loss::Object);
}

#[test]
fn a_lost_backing_file_is_seen_by_refresh_and_restored_by_apply() {
    lose_the_object_then_converge(Loss::BackingFile);
}
