//! `dcr_workload` refusals end to end: a notebook changed after review gets a new digest that the
//! policy does not pin, and the run is refused at STS inside the TEE; notebooks that break the
//! output rules release nothing. Each time the apply fails, naming the cause, with no output released.

use dcr_e2e::clean_room::{AGGREGATE, base_image, notebook};
use dcr_e2e::fixtures::{SMALL_CSV, resource_values, small_config};
use dcr_e2e::local_cloud::{LocalCloudProcess, encode};
use dcr_e2e::registry::Registry;
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::{Workspace, provider_bin};
use serde_json::Value;

const OUT: &str = "trial-results";

/// Dataset `trial`, a data source for the reviewed notebook `reviewed.ipynb`, a policy pinning its
/// digest, and a workload running `run.ipynb`.
fn config(max_bytes: u64) -> String {
    config_with(max_bytes, "")
}

/// [`config`] with `workload_extra` inside the workload block.
fn config_with(max_bytes: u64, workload_extra: &str) -> String {
    let image = |kind: &str, label: &str, nb: &str| {
        format!(
            r#"{kind} "{label}" "study" {{
  name     = "trial-study"
  notebook = "{nb}"
  parameters = jsonencode({{ output_name = "summary.csv" }})
  input {{
    name    = "trial"
    dataset = dcr_dataset.d.id
    policy  = "trial-study"
  }}
  output {{
    bucket = "{OUT}"
  }}
{extra}}}
"#,
            extra = if kind == "resource" {
                format!("  depends_on = [dcr_policy.study]\n{workload_extra}\n")
            } else {
                String::new()
            }
        )
    };
    format!(
        "{}\n{}\nresource \"dcr_policy\" \"study\" {{\n  name = \"trial-study\"\n  datasets = [dcr_dataset.d.id]\n  \
         allowed_image_digests = [data.dcr_image_digest.study.digest]\n  allow_debug = true\n  output {{\n    \
         max_bytes = {max_bytes}\n    allowed_extensions = [\"csv\"]\n  }}\n}}\n{}",
        small_config("trial", None, ""),
        image("data", "dcr_image_digest", "reviewed.ipynb"),
        image("resource", "dcr_workload", "run.ipynb"),
    )
}

/// Terraform wraps diagnostics to the terminal width: compare text with single spaces.
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn released(ws: &Workspace) -> Vec<String> {
    let cloud = LocalCloudProcess::start(&provider_bin(), &ws.path().join(".dcr"), &[]);
    let r = cloud.get(&cloud.admin_token, &format!("/storage/v1/b/{OUT}/o?prefix={}", encode("trial-study/")));
    let v: Value = r.json().unwrap_or(Value::Null);
    v["items"]
        .as_array()
        .map(|a| a.iter().map(|o| o["name"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn a_notebook_changed_after_review_is_refused_end_to_end() {
    base_image();
    let ws = Workspace::new(&Terraform::latest());
    ws.write("main.tf", &config(10_000));
    ws.write("data.csv", SMALL_CSV);
    ws.write("reviewed.ipynb", &notebook(AGGREGATE));
    // One byte more: a space inside a call.
    ws.write("run.ipynb", &notebook(&AGGREGATE.replace("round(", "round( ")));
    ws.init();
    let failed = flat(&ws.apply_fails().text());
    assert!(failed.contains("The workload failed (inputs); nothing was released"), "{failed}");
    assert!(failed.contains("rejected by the attribute condition"), "STS's refusal is named: {failed}");
    assert!(failed.contains("image_digest"), "{failed}");
    assert!(!failed.contains("secret-"), "{failed}");
    let show = ws.show_json();
    let pinned = resource_values(&show, "dcr_policy", "study")["allowed_image_digests"][0].clone();
    let ran = resource_values(&show, "dcr_workload", "study")["image_digest"].clone();
    assert_ne!(pinned, ran, "the changed notebook has a new digest");
    let objects = released(&ws);
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(objects[0].ends_with("/failure.json"), "{objects:?}");

    // Running the reviewed notebook instead: the same digest as pinned, and it passes.
    ws.write("run.ipynb", &notebook(AGGREGATE));
    ws.apply();
    let show = ws.show_json();
    assert_eq!(resource_values(&show, "dcr_workload", "study")["image_digest"], pinned);
    ws.destroy();
}

#[test]
fn outputs_that_break_a_rule_are_not_released_and_the_apply_names_the_rule() {
    base_image();
    let ws = Workspace::new(&Terraform::latest());
    ws.write("data.csv", SMALL_CSV);
    // A text file where only csv may leave.
    let txt = notebook(&AGGREGATE.replace("output_name), index=False)", "'summary.txt'), index=False)"));
    ws.write("main.tf", &config(10_000));
    ws.write("reviewed.ipynb", &txt);
    ws.write("run.ipynb", &txt);
    ws.init();
    let failed = flat(&ws.apply_fails().text());
    assert!(failed.contains("The workload failed (output_rules); nothing was released"), "{failed}");
    assert!(failed.contains("output rule allowed_extensions: summary.txt has extension \"txt\""), "{failed}");
    assert!(released(&ws).iter().all(|o| o.ends_with("/failure.json")));

    // More than max_bytes.
    let big = notebook(&format!(
        "{AGGREGATE}open(os.path.join(os.environ['DCR_OUTPUTS_DIR'], 'pad.csv'), 'w').write('x' * 300)\n"
    ));
    ws.write("main.tf", &config(100));
    ws.write("reviewed.ipynb", &big);
    ws.write("run.ipynb", &big);
    let failed = flat(&ws.apply_fails().text());
    assert!(failed.contains("output rule max_bytes: the outputs total"), "{failed}");
    assert!(released(&ws).iter().all(|o| o.ends_with("/failure.json")), "{:?}", released(&ws));
    ws.destroy();
}

#[test]
fn with_a_registry_the_image_is_pushed_and_the_vm_pulls_it_by_digest() {
    base_image();
    let ws = Workspace::new(&Terraform::latest());
    let registry = Registry::start(&ws.path().join("registry"));
    ws.write("main.tf", &config_with(10_000, &format!("  registry = \"{}/dcr\"", registry.addr)));
    ws.write("data.csv", SMALL_CSV);
    ws.write("reviewed.ipynb", &notebook(AGGREGATE));
    ws.write("run.ipynb", &notebook(AGGREGATE));
    ws.init();
    ws.apply();
    let show = ws.show_json();
    let w = resource_values(&show, "dcr_workload", "study");
    let digest = w["image_digest"].as_str().unwrap();
    assert_eq!(w["image"], format!("{}/dcr/trial-study@{digest}", registry.addr));
    assert_eq!(w["attestation_claims"]["image_digest"], digest);
    // The registry holds the exact manifest the VM ran.
    let url = format!("http://{}/v2/dcr/trial-study/manifests/{digest}", registry.addr);
    let r = reqwest::blocking::Client::new()
        .get(url)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["docker-content-digest"], digest);
    ws.destroy();
}
