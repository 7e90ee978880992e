//! What several end-to-end tests share: the repository's paths, a small dataset configuration
//! and its CSV, and reading resources out of `terraform show -json`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::terraform::Terraform;
use crate::workspace::Workspace;

/// The local backend's default project.
pub const PROJECT: &str = "dcr-local";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use std::fmt::Write;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Copies the repository's `DIR` (e.g. `modules`) into the workspace, under the same name, file by
/// file (a module test writes its state and `.terraform` there, not in the repository).
pub fn copy_repo_dir(ws: &Workspace, dir: &str) {
    fn walk(from: &std::path::Path, rel: &str, ws: &Workspace) {
        for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
            let e = e.unwrap();
            let name = format!("{rel}/{}", e.file_name().to_string_lossy());
            if name.contains("/.terraform") || name.contains("/.dcr") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), &name, ws);
            } else {
                ws.write_bytes(&name, &std::fs::read(e.path()).unwrap());
            }
        }
    }
    walk(&repo_root().join(dir), dir, ws);
}

/// A workspace holding a copy of examples/quickstart.
pub fn quickstart(tf: &Terraform) -> Workspace {
    let ws = Workspace::new(tf);
    let ex = repo_root().join("examples/quickstart");
    ws.write("main.tf", &std::fs::read_to_string(ex.join("main.tf")).expect("quickstart main.tf"));
    ws.write("data/patients.csv", &std::fs::read_to_string(ex.join("data/patients.csv")).expect("quickstart csv"));
    ws.write("analysis.ipynb", &std::fs::read_to_string(ex.join("analysis.ipynb")).expect("quickstart notebook"));
    ws
}

/// The values of resource `TYPE.NAME` in `terraform show -json` output.
pub fn resource_values(show: &Value, type_name: &str, name: &str) -> Value {
    let resources = show["values"]["root_module"]["resources"].as_array().cloned().unwrap_or_default();
    resources
        .into_iter()
        .find(|r| r["type"] == type_name && r["name"] == name)
        .map(|r| r["values"].clone())
        .unwrap_or_else(|| panic!("no {type_name}.{name} in state: {show}"))
}

/// The values of the resource at `address` (`module.a.module.b["k"].TYPE.NAME`) in
/// `terraform show -json` output, in whichever module it is.
pub fn resource_at(show: &Value, address: &str) -> Value {
    fn find(module: &Value, address: &str) -> Option<Value> {
        let here = module["resources"].as_array().and_then(|rs| rs.iter().find(|r| r["address"] == address));
        here.map(|r| r["values"].clone())
            .or_else(|| module["child_modules"].as_array()?.iter().find_map(|m| find(m, address)))
    }
    find(&show["values"]["root_module"], address).unwrap_or_else(|| panic!("no {address} in state: {show}"))
}

/// A config with one small `dcr_dataset.d` (columns `id`, `age`), on the default local backend or
/// on `state_dir`; `extra` goes inside the resource block.
pub fn small_config(name: &str, state_dir: Option<&Path>, extra: &str) -> String {
    let provider = match state_dir {
        Some(d) => format!("provider \"dcr\" {{\n  local {{\n    state_dir = \"{}\"\n  }}\n}}\n", d.display()),
        None => "provider \"dcr\" {}\n".to_string(),
    };
    format!(
        r#"terraform {{
  required_providers {{
    dcr = {{ source = "dcr/dcr" }}
  }}
}}
{provider}
resource "dcr_dataset" "d" {{
  name   = "{name}"
  source = "data.csv"
  schema {{
    column {{
      name = "id"
      type = "string"
      max_length = 10
    }}
    column {{
      name = "age"
      type = "integer"
      min  = 0
      max  = 120
    }}
  }}
{extra}
}}
"#
    )
}

/// The CSV `small_config` reads (`data.csv`); its `secret-` cells must never leak.
pub const SMALL_CSV: &str = "id,age\nsecret-a1,34\nsecret-b2,71\nsecret-c3,5\n";

/// A launch of the notebook image `digest` on a simulated VM, as the attestation tests mint tokens
/// for it.
pub fn simulated_launch(digest: &str) -> dcr_attestation::claims::SimulatedLaunch {
    dcr_attestation::claims::SimulatedLaunch {
        image_reference: format!("localhost/notebook@{digest}"),
        image_digest: digest.into(),
        project_id: "operator".into(),
        project_number: "42".into(),
        zone: "local-a".into(),
        instance_name: "job-1".into(),
        instance_id: "1001".into(),
        ..Default::default()
    }
}
