//! The trial study, the clean room most workload tests run: dataset `trial` (the small CSV), a
//! policy `trial-study` pinning the digest of the reviewed notebook `reviewed.ipynb`, and a workload
//! running `run.ipynb` into the consumer's bucket `trial-results`.

use serde_json::Value;

use crate::fixtures::small_config;
use crate::local_cloud::{LocalCloudProcess, encode};
use crate::workspace::{Workspace, provider_bin};

pub const OUT: &str = "trial-results";

/// Dataset `trial`, a data source for the reviewed notebook `reviewed.ipynb`, a policy pinning its
/// digest, and a workload running `run.ipynb`.
pub fn config(max_bytes: u64) -> String {
    config_with(max_bytes, "")
}

/// [`config`] with `workload_extra` inside the workload block.
pub fn config_with(max_bytes: u64, workload_extra: &str) -> String {
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
pub fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn released(ws: &Workspace) -> Vec<String> {
    let cloud = LocalCloudProcess::start(&provider_bin(), &ws.path().join(".dcr"), &[]);
    let r = cloud.get(&cloud.admin_token, &format!("/storage/v1/b/{OUT}/o?prefix={}", encode("trial-study/")));
    let v: Value = r.json().unwrap_or(Value::Null);
    v["items"]
        .as_array()
        .map(|a| a.iter().map(|o| o["name"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}
