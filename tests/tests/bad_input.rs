//! Bad input never hangs, never grows memory without bound and never panics (issue 10, item 3):
//! files that are not regular files, numbers outside what a column can check, absurd time limits
//! and enormous headers each fail the plan promptly with a diagnostic naming the attribute; and
//! numbers Terraform accepts round-trip exactly through plan, apply and state.

use std::time::Duration;

use dcr_e2e::fixtures::{SMALL_CSV, resource_values, small_config};
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::Workspace;

/// Long enough for a cold provider start, far shorter than a hang.
const PROMPTLY: Duration = Duration::from_secs(60);

/// The diagnostics of a failed plan are short: the cap (20 diagnostics, 4 KiB each) holds.
const MAX_OUTPUT: usize = 64 * 1024;

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

#[test]
fn unusable_files_and_numbers_fail_the_plan_promptly_naming_the_attribute() {
    let tf = Terraform::latest();
    let stage = |body: &str| format!("  programming_stage {{\n{body}\n  }}");
    let wide_header: String = (0..100_000).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",") + "\n1,2\n";
    let cases: Vec<(&str, String, Option<String>, &str)> = vec![
        ("a device as source", small_config("dev", None, "").replace("data.csv", "/dev/zero"), None, "Invalid source"),
        ("a FIFO as source", small_config("fifo", None, "").replace("data.csv", "pipe"), None, "named pipe"),
        ("a directory as source", small_config("dir", None, "").replace("data.csv", "adir"), None, "a directory"),
        (
            "a FIFO as public sample",
            small_config("pub", None, &stage("    mode = \"sample\"\n    public_source = \"pipe\"")),
            None,
            "programming_stage.public_source",
        ),
        (
            "an integer bound below -2^63",
            small_config("low", None, "").replace("min  = 0", "min  = -9223372036854775809"),
            None,
            "schema.column[1].min",
        ),
        (
            "an integer bound that is not whole",
            small_config("frac", None, "").replace("max  = 120", "max  = 120.5"),
            None,
            "schema.column[1].max",
        ),
        (
            "an infinite float bound",
            small_config("inf", None, "")
                .replace("type = \"integer\"", "type = \"float\"")
                .replace("max  = 120", "max  = 1e400"),
            None,
            "schema.column[1].max",
        ),
        (
            "a float range that overflows",
            small_config("range", None, "")
                .replace("type = \"integer\"", "type = \"float\"")
                .replace("min  = 0\n      max  = 120", "min  = -1.7e308\n      max  = 1.7e308"),
            None,
            "max - min",
        ),
        (
            "a time limit that overflows",
            small_config("time", None, "  timeouts {\n    create = \"99999999999999999999h\"\n  }"),
            None,
            "timeouts.create",
        ),
        ("a header of 100,000 columns", small_config("wide", None, ""), Some(wide_header), "(100000 columns)"),
    ];
    for (what, config, csv, expected) in cases {
        let ws = Workspace::new(&tf);
        ws.write("main.tf", &config);
        ws.write("data.csv", csv.as_deref().unwrap_or(SMALL_CSV));
        mkfifo(&ws.path().join("pipe"));
        std::fs::create_dir(ws.path().join("adir")).unwrap();
        ws.init();
        let out = ws.plan(&[]);
        let text = out.text();
        assert!(!out.timed_out, "{what}: plan hung:\n{out}");
        assert_eq!(out.code(), Some(1), "{what}: plan did not fail:\n{out}");
        assert!(out.duration < PROMPTLY, "{what}: plan took {:?}", out.duration);
        assert!(text.contains(expected), "{what}: expected {expected:?} in:\n{text}");
        assert!(text.len() < MAX_OUTPUT, "{what}: {} bytes of output", text.len());
        assert!(!text.contains("panicked") && !text.contains("bug in the provider"), "{what}:\n{text}");
    }
}

/// A dataset whose column bounds span the whole range each type allows.
const EXTREME_BOUNDS: &str = r#"terraform {
  required_providers {
    dcr = { source = "dcr/dcr" }
  }
}
provider "dcr" {}
resource "dcr_dataset" "d" {
  name   = "extremes"
  source = "data.csv"
  schema {
    column {
      name = "i"
      type = "integer"
      min  = -9223372036854775808
      max  = 9223372036854775807
    }
    column {
      name = "f"
      type = "float"
      min  = -1e300
      max  = 1e300
    }
    column {
      name = "g"
      type = "float"
      min  = 0.1
      max  = 12345678901234567890.123
    }
    column {
      name = "h"
      type = "float"
      min  = 1e-300
      max  = 0.30000000000000004
    }
  }
}
output "schema" {
  value = dcr_dataset.d.schema
}
"#;

#[test]
fn numbers_of_any_magnitude_round_trip_through_plan_apply_and_state() {
    for tf in Terraform::all() {
        let ws = Workspace::new(&tf);
        ws.write("main.tf", EXTREME_BOUNDS);
        ws.write("data.csv", "i,f,g,h\n-9223372036854775808,-1e300,0.1,1e-300\n9223372036854775807,1e300,5,0.3\n");
        ws.init();
        ws.apply();
        // The plan after apply is empty: every bound came back from the provider as Terraform sent it.
        ws.assert_no_changes();
        let d = resource_values(&ws.show_json(), "dcr_dataset", "d");
        let schema = if d["schema"].is_array() { &d["schema"][0] } else { &d["schema"] };
        let columns = schema["column"].as_array().unwrap_or_else(|| panic!("columns in {d}")).clone();
        let bound = |i: usize, b: &str| columns[i][b].to_string();
        assert_eq!(bound(0, "min"), "-9223372036854775808", "terraform {}", tf.version);
        assert_eq!(bound(0, "max"), "9223372036854775807", "terraform {}", tf.version);
        assert_eq!(bound(2, "min"), "0.1", "terraform {}", tf.version);
        // A refresh-only cycle changes nothing either.
        let refresh = ws.plan(&["-refresh-only", "-detailed-exitcode"]);
        assert_eq!(refresh.code(), Some(0), "terraform {}: refresh found drift:\n{refresh}", tf.version);
        ws.destroy();
    }
}
