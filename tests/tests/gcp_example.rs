//! `examples/gcp`: the data owner's and the consumer's root configurations, each in its own project,
//! planned through its own `gcp` provider block against two standalone local clouds, one per
//! project. The examples stay as a user reads them: the test copies them and adds one override file,
//! the example's own provider block with every endpoint pointed at that party's local cloud
//! (Terraform's override files replace a nested block whole, so it is the example's block plus the
//! endpoints). The plans follow the README's hand-off — owner, consumer's digest, owner's pin — on
//! every Terraform, and the consumer's plan must not touch the owner's project. Also: both
//! configurations validate as they are, and `tests/gcp-live.sh` skips cleanly without projects and
//! passes ShellCheck.

use std::path::{Path, PathBuf};
use std::process::Command;

use dcr_e2e::clean_room::base_image;
use dcr_e2e::fixtures::repo_root;
use dcr_e2e::local_cloud::LocalCloudProcess;
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::{Workspace, provider_bin};
use serde_json::Value;

const OWNER: &str = "hospital-data";
const CONSUMER: &str = "research-team";
const REGION: &str = "europe-west4";
const READER: &str = "group:hospital-analysts@example.com";

fn example_dir(party: &str) -> PathBuf {
    repo_root().join("examples/gcp").join(party)
}

/// Every file under `dir`, links followed, as paths relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files_under(&path).into_iter().map(|p| Path::new(&path.file_name().unwrap()).join(p)));
        } else {
            out.push(PathBuf::from(path.file_name().unwrap()));
        }
    }
    out
}

/// The byte range of the block opening at the first `{` at or after `from`, braces included.
fn block_at(text: &str, from: usize) -> std::ops::Range<usize> {
    let open = from + text[from..].find('{').expect("an opening brace");
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open..open + i + 1;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced braces after byte {from}")
}

/// The example's `provider "dcr"` block with `endpoints` added at the end of its `gcp` block.
fn provider_with_endpoints(main_tf: &str, endpoints: &str) -> String {
    let start = main_tf.find("provider \"dcr\" {").expect("the example configures provider \"dcr\"");
    let provider = &main_tf[start..block_at(main_tf, start).end];
    let gcp = provider.find("gcp {").expect("the example's provider has a gcp block");
    let close = block_at(provider, gcp).end - 1;
    format!("{}{endpoints}  {}\n", provider[..close].trim_end_matches(' '), &provider[close..])
}

/// A workspace holding a copy of `examples/gcp/NAME`; with `cloud`, its provider's endpoints are
/// there and its token is the cloud's admin token.
fn party(tf: &Terraform, name: &str, cloud: Option<&LocalCloudProcess>) -> Workspace {
    let ws = Workspace::new(tf);
    let dir = example_dir(name);
    for rel in files_under(&dir) {
        let rel_str = rel.to_str().expect("utf-8 path");
        ws.write_bytes(rel_str, &std::fs::read(dir.join(&rel)).unwrap_or_else(|e| panic!("{rel_str}: {e}")));
    }
    if let Some(cloud) = cloud {
        let main = std::fs::read_to_string(dir.join("main.tf")).expect("main.tf");
        ws.write("endpoints_override.tf", &provider_with_endpoints(&main, &cloud.gcp_endpoints()));
        ws.env("GOOGLE_OAUTH_ACCESS_TOKEN", &cloud.admin_token);
    }
    ws
}

/// The workspace's variables, as a user sets them: `terraform.tfvars.json`.
fn set_vars(ws: &Workspace, vars: Value) {
    ws.write("terraform.tfvars.json", &vars.to_string());
}

/// The planned values of the managed resource `TYPE.NAME`, checking it is planned for creation.
fn created(plan: &Value, address: &str) -> Value {
    let change = plan["resource_changes"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["address"] == address))
        .unwrap_or_else(|| panic!("{address} is not in the plan: {}", plan["resource_changes"]));
    assert_eq!(change["change"]["actions"], serde_json::json!(["create"]), "{address}");
    change["change"]["after"].clone()
}

/// The addresses of the managed resources the plan changes.
fn managed(plan: &Value) -> Vec<String> {
    let mut out: Vec<String> = plan["resource_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["mode"] == "managed")
        .map(|r| r["address"].as_str().unwrap_or("?").to_string())
        .collect();
    out.sort();
    out
}

/// A planned output's value; it must be known at plan.
fn output(plan: &Value, name: &str) -> String {
    plan["planned_values"]["outputs"][name]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("output {name} is not known at plan: {}", plan["planned_values"]["outputs"]))
        .to_string()
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dcr-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_examples_validate_on_every_terraform() {
    for tf in Terraform::all() {
        for name in ["owner", "consumer"] {
            let ws = party(&tf, name, None);
            ws.init();
            let out = ws.run_ok(&["validate", "-no-color"]);
            assert!(out.stdout.contains("The configuration is valid"), "{name} on {}: {out}", tf.version);
        }
    }
}

#[test]
fn owner_and_consumer_plan_in_their_own_projects_and_hand_off_the_digest() {
    base_image();
    let scratch = tempdir("gcp-example");
    let bin = provider_bin();
    let owner_cloud = LocalCloudProcess::start_with(&bin, &scratch.join("owner"), &[], &["--project", OWNER]);
    let consumer_cloud = LocalCloudProcess::start_logged_with(
        &bin,
        &scratch.join("consumer"),
        &[],
        &scratch.join("consumer-requests.jsonl"),
        &["--project", CONSUMER],
    );
    let owner_number = dcr_local_cloud::LocalCloud::project_number(OWNER);
    let consumer_number = dcr_local_cloud::LocalCloud::project_number(CONSUMER);
    for tf in Terraform::all() {
        // 1. The owner publishes under a policy that admits nothing yet.
        let owner = party(&tf, "owner", Some(&owner_cloud));
        set_vars(&owner, serde_json::json!({"project": OWNER, "region": REGION, "readers": [READER]}));
        owner.init();
        let plan = owner.plan_json();
        assert_eq!(managed(&plan), ["dcr_dataset.patients", "dcr_policy.study"]);
        let dataset = created(&plan, "dcr_dataset.patients");
        assert_eq!(dataset["bucket"], format!("{OWNER}-patients"));
        assert_eq!((&dataset["location"], &dataset["kms_location"]), (&REGION.into(), &REGION.into()));
        assert_eq!(dataset["key_ring"], format!("projects/{OWNER}/locations/{REGION}/keyRings/dcr-patients"));
        let policy = created(&plan, "dcr_policy.study");
        assert_eq!(policy["allowed_image_digests"], serde_json::json!([]), "{policy}");
        assert_eq!(policy["output"]["readers"], serde_json::json!([READER]), "{policy}");
        assert_eq!(policy["output"]["max_bytes"], 65536, "{policy}");
        let audience = output(&plan, "policy_audience");
        assert_eq!(
            audience,
            format!(
                "//iam.googleapis.com/projects/{owner_number}/locations/global/workloadIdentityPools/dcr-diabetes-study/providers/attestation"
            )
        );
        let policy_uri = output(&plan, "policy_uri");
        assert_eq!(policy_uri, format!("gs://{OWNER}-policy-diabetes-study/policy.json"));
        // The dataset's id (`BUCKET/NAME`) is known once the dataset exists: the owner hands it over
        // after the apply.
        assert!(plan["planned_values"]["outputs"]["dataset"].get("value").is_none(), "{}", plan["planned_values"]);
        let dataset_id = format!("{OWNER}-patients/patients");

        // 2. The consumer plans its run from the three values the owner hands over, in its own project.
        let consumer = party(&tf, "consumer", Some(&consumer_cloud));
        set_vars(
            &consumer,
            serde_json::json!({
                "project": CONSUMER, "region": REGION,
                "dataset": dataset_id, "policy_audience": audience, "policy_uri": policy_uri,
            }),
        );
        consumer.init();
        let plan = consumer.plan_json();
        assert_eq!(managed(&plan), ["dcr_workload.study"]);
        let digest = output(&plan, "image_digest");
        let w = created(&plan, "dcr_workload.study");
        assert_eq!(w["image_digest"], digest, "the data source's digest is the one that runs");
        assert_eq!(w["zone"], format!("{REGION}-a"));
        assert_eq!(w["registry"], format!("{REGION}-docker.pkg.dev/{CONSUMER}/dcr"));
        assert_eq!(w["image"], format!("{REGION}-docker.pkg.dev/{CONSUMER}/dcr/diabetes-study@{digest}"));
        assert_eq!(w["service_account"], format!("dcr-workload@{CONSUMER}.iam.gserviceaccount.com"));
        assert_eq!((&w["confidential_type"], &w["machine_type"]), (&"SEV".into(), &"n2d-standard-2".into()));
        assert_eq!(w["external_ip"], true);
        assert_eq!(w["output"]["bucket"], format!("{CONSUMER}-dcr-results"));
        assert_eq!(w["output"]["location"], REGION.to_uppercase());
        let manifest: Value = serde_json::from_str(&output(&plan, "manifest")).expect("manifest JSON");
        let input = &manifest["inputs"]["patients"];
        assert_eq!(input["audience"], audience, "{manifest}");
        assert_eq!(input["policy_uri"], policy_uri, "{manifest}");
        assert_eq!(input["object_uri"], format!("gs://{OWNER}-patients/patients.csv.enc"), "{manifest}");
        assert_eq!(manifest["backend"], "gcp", "{manifest}");
        assert_eq!(
            manifest["output"]["audience"],
            format!(
                "//iam.googleapis.com/projects/{consumer_number}/locations/global/workloadIdentityPools/dcr-out-diabetes-study/providers/attestation"
            ),
            "{manifest}"
        );
        // Everything the consumer's plan asked was about its own project; nothing named the owner's.
        let requests = consumer_cloud.logged_requests();
        assert!(requests.contains(&format!("GET /cloudresourcemanager/v1/projects/{CONSUMER}")), "{requests:?}");
        for r in &requests {
            assert!(r.starts_with("GET "), "a plan changes nothing: {r}");
            assert!(
                !r.contains(OWNER) && !r.contains(&owner_number),
                "the consumer's plan touched the owner's project: {r}"
            );
        }

        // 3. The owner pins the digest; the hand-off values do not move.
        set_vars(
            &owner,
            serde_json::json!({"project": OWNER, "region": REGION, "readers": [READER], "allowed_image_digests": [digest]}),
        );
        let plan = owner.plan_json();
        let policy = created(&plan, "dcr_policy.study");
        assert_eq!(policy["allowed_image_digests"], serde_json::json!([digest]));
        let condition = policy["attribute_condition"].as_str().expect("condition known at plan");
        assert!(condition.contains(&format!("'{digest}'")) && condition.contains("'STABLE' in"), "{condition}");
        assert_eq!(output(&plan, "policy_audience"), audience);
        assert_eq!(output(&plan, "policy_uri"), policy_uri);
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Runs tests/gcp-live.sh with only `vars` of its own variables set.
fn live_script(vars: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("tests/gcp-live.sh"));
    for (k, _) in std::env::vars() {
        if k.starts_with("DCR_LIVE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(vars.iter().copied()).output().expect("run tests/gcp-live.sh")
}

#[test]
fn the_live_run_skips_without_projects_and_refuses_half_a_setup() {
    let out = live_script(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    assert!(
        stdout.starts_with("gcp-live: skipped: DCR_LIVE_OWNER_PROJECT and DCR_LIVE_CONSUMER_PROJECT are not set"),
        "{stdout}"
    );
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    for (set, missing) in [
        ("DCR_LIVE_OWNER_PROJECT", "DCR_LIVE_CONSUMER_PROJECT"),
        ("DCR_LIVE_CONSUMER_PROJECT", "DCR_LIVE_OWNER_PROJECT"),
    ] {
        let out = live_script(&[(set, "some-project")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("{missing} is not set")), "{stderr}");
        assert!(out.stdout.is_empty(), "nothing ran: {}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn the_live_script_is_shellcheck_clean() {
    let out = Command::new("shellcheck")
        .args(["-x", "-P", "SCRIPTDIR"])
        .arg(repo_root().join("tests/gcp-live.sh"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run shellcheck ({e}): tests/install-tools.sh installs it"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
