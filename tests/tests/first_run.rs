//! What a first `terraform plan` on Google Cloud checks before it touches anything, planned
//! through a `gcp` provider block whose endpoints all point at a standalone local cloud (its admin
//! token as `GOOGLE_OAUTH_ACCESS_TOKEN`): Confidential Space needs a service account (issue 9, 1c),
//! the provider's zone and region are honoured (1h), a data owner's policy in another project is
//! named without reading that project (1g), and default bucket names that Google would refuse fail
//! the plan naming `bucket` (1h).

use dcr_e2e::clean_room::{AGGREGATE, base_image, notebook};
use dcr_e2e::fixtures::PROJECT;
use dcr_e2e::local_cloud::LocalCloudProcess;
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::{Workspace, provider_bin};
use serde_json::Value;

const SA: &str = "dcr-vm@dcr-local.iam.gserviceaccount.com";
const OWNER_AUDIENCE: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/dcr-owners-study/providers/attestation";

/// A provider block for Google Cloud with every endpoint on `cloud`; `extra` goes inside `gcp`.
fn gcp_provider(cloud: &LocalCloudProcess, project: &str, extra: &str) -> String {
    format!(
        "terraform {{\n  required_providers {{\n    dcr = {{ source = \"dcr/dcr\" }}\n  }}\n}}\n\
         provider \"dcr\" {{\n  gcp {{\n    project = \"{project}\"\n{}{extra}  }}\n}}\n",
        cloud.gcp_endpoints()
    )
}

/// A workload reading `bucket/patients` under a policy; `input_extra` and `extra` go in the input
/// and workload blocks.
fn workload(input_extra: &str, extra: &str) -> String {
    format!(
        "resource \"dcr_workload\" \"study\" {{\n  name = \"study\"\n  notebook = \"run.ipynb\"\n  \
         registry = \"us-docker.pkg.dev/{PROJECT}/clean-room\"\n  input {{\n    name = \"patients\"\n    \
         dataset = \"owner-data/patients\"\n{input_extra}  }}\n  output {{\n    bucket = \"study-results\"\n  }}\n{extra}}}\n"
    )
}

fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn workspace(cloud: &LocalCloudProcess) -> Workspace {
    let ws = Workspace::new(&Terraform::latest());
    ws.env("GOOGLE_OAUTH_ACCESS_TOKEN", &cloud.admin_token);
    ws.write("run.ipynb", &notebook(AGGREGATE));
    ws
}

fn planned_workload(plan: &Value) -> Value {
    plan["planned_values"]["root_module"]["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["type"] == "dcr_workload"))
        .map(|r| r["values"].clone())
        .unwrap_or_else(|| panic!("no planned dcr_workload: {plan}"))
}

#[test]
fn gcp_plans_need_a_service_account_and_take_zone_and_region_from_the_provider() {
    base_image();
    let dir = tempdir("first-run-sa");
    let cloud = LocalCloudProcess::start(&provider_bin(), &dir, &[]);
    let ws = workspace(&cloud);
    ws.write("main.tf", &format!("{}{}", gcp_provider(&cloud, PROJECT, ""), workload("    policy = \"study\"\n", "")));
    ws.init();

    // No service account: named, with the roles it needs.
    let out = ws.plan(&[]);
    let text = flat(&out.text());
    assert!(!out.success(), "{text}");
    assert!(text.contains("a service account is required on the gcp backend"), "{text}");
    assert!(text.contains("service_account") && text.contains("roles/confidentialcomputing.workloadUser"), "{text}");

    // A region and no zone: the zone is asked for, not guessed.
    let sa = format!("  service_account = \"{SA}\"\n");
    ws.write(
        "main.tf",
        &format!(
            "{}{}",
            gcp_provider(&cloud, PROJECT, "    region = \"europe-west4\"\n"),
            workload("    policy = \"study\"\n", &sa)
        ),
    );
    let text = flat(&ws.plan(&[]).text());
    assert!(text.contains("no zone for the VM"), "{text}");

    // Zone and region from the provider: the VM's zone, and the output bucket's location.
    ws.write(
        "main.tf",
        &format!(
            "{}{}",
            gcp_provider(&cloud, PROJECT, "    region = \"europe-west4\"\n    zone = \"europe-west4-b\"\n"),
            workload("    policy = \"study\"\n", &sa)
        ),
    );
    let w = planned_workload(&ws.plan_json());
    assert_eq!(w["zone"], "europe-west4-b", "{w}");
    assert_eq!(w["output"]["location"], "EUROPE-WEST4", "{w}");
    assert_eq!(w["external_ip"], true, "{w}");
    assert!(w["image_digest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{w}");

    // A bad network URL is named at plan.
    ws.write(
        "main.tf",
        &format!(
            "{}{}",
            gcp_provider(&cloud, PROJECT, "    zone = \"europe-west4-b\"\n"),
            workload("    policy = \"study\"\n", &format!("{sa}  subnetwork = \"private\"\n"))
        ),
    );
    let text = flat(&ws.plan(&[]).text());
    assert!(
        text.contains("\"private\" is not a subnetwork URL") && text.contains("regions/REGION/subnetworks/NAME"),
        "{text}"
    );
}

#[test]
fn a_policy_in_the_data_owners_project_is_named_by_its_audience_without_reading_that_project() {
    base_image();
    let dir = tempdir("first-run-owner");
    let cloud = LocalCloudProcess::start(&provider_bin(), &dir, &[]);
    let ws = workspace(&cloud);
    let sa = format!("  service_account = \"{SA}\"\n");
    let provider = gcp_provider(&cloud, PROJECT, "    zone = \"us-central1-a\"\n");
    // `owner-project` does not exist here: reading its number (projects.get) would fail the plan.
    let by_audience = format!(
        "    policy_project = \"owner-project\"\n    audience = \"{OWNER_AUDIENCE}\"\n    \
         policy_uri = \"gs://owner-policies/policy.json\"\n"
    );
    ws.write("main.tf", &format!("{provider}{}", workload(&by_audience, &sa)));
    ws.init();
    let w = planned_workload(&ws.plan_json());
    assert!(w["image_digest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{w}");

    // Only the project, and neither audience nor number: the plan says what to add.
    ws.write(
        "main.tf",
        &format!("{provider}{}", workload("    policy = \"study\"\n    policy_project = \"owner-project\"\n", &sa)),
    );
    let text = flat(&ws.plan(&[]).text());
    assert!(
        text.contains("policy_project")
            && text.contains("Set audience to the audience the data owner's dcr_policy exports"),
        "{text}"
    );

    // An audience that is not a dcr_policy's.
    ws.write(
        "main.tf",
        &format!("{provider}{}", workload("    audience = \"//iam.googleapis.com/projects/1/pools/x\"\n", &sa)),
    );
    let text = flat(&ws.plan(&[]).text());
    assert!(text.contains("not a dcr_policy audience"), "{text}");
}

#[test]
fn default_bucket_names_google_would_refuse_fail_the_plan_naming_bucket() {
    let dir = tempdir("first-run-buckets");
    let cloud = LocalCloudProcess::start(&provider_bin(), &dir, &[]);
    let ws = workspace(&cloud);
    ws.write("data.csv", dcr_e2e::fixtures::SMALL_CSV);
    let dataset = "resource \"dcr_dataset\" \"d\" {\n  name = \"patients\"\n  source = \"data.csv\"\n  schema {\n    \
                   column {\n      name = \"id\"\n      type = \"string\"\n      max_length = 10\n    }\n    column {\n      name = \"age\"\n      \
                   type = \"integer\"\n      min = 0\n      max = 120\n    }\n  }\n}\n";
    // A domain-scoped project id: `example.com:clean-room-patients` holds ':' and '.'.
    ws.write("main.tf", &format!("{}{dataset}", gcp_provider(&cloud, "example.com:clean-room", "")));
    ws.init();
    let text = flat(&ws.plan(&[]).text());
    assert!(text.contains("the default bucket name \"example.com:clean-room-patients\""), "{text}");
    assert!(text.contains("Set `bucket`"), "{text}");
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dcr-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
