//! The CI recipe's scripts (`examples/ci/scripts`), run as its workflows run them: every script a
//! workflow calls is exercised here. `install_dcr.sh` installs the provider where `terraform init`
//! finds it; `plan_summary.py` shows a changed notebook's new image digest and the policy pinning
//! it (the attribute condition before and after); `verify_run.sh` passes on the quickstart's run
//! and fails, with dcr's exit code, on a digest the auditor did not pin.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use dcr_attestation::run::RunCheck;
use dcr_e2e::clean_room::base_image;
use dcr_e2e::fixtures::{quickstart, repo_root, resource_values};
use dcr_e2e::google_clients::ScratchDir;
use dcr_e2e::local_cloud::LocalCloudProcess;
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::{Workspace, dcr_bin, provider_bin};

const TESTED: [&str; 3] = ["install_dcr.sh", "plan_summary.py", "verify_run.sh"];

fn script(name: &str) -> std::path::PathBuf {
    repo_root().join("examples/ci/scripts").join(name)
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("the script runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn every_script_a_workflow_calls_is_tested_here() {
    let mut called = BTreeSet::new();
    for who in ["consumer", "owner", "auditor"] {
        let dir = repo_root().join("examples/ci").join(who).join(".github/workflows");
        for e in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            for (i, _) in text.match_indices("examples/ci/scripts/") {
                let rest = &text[i + "examples/ci/scripts/".len()..];
                called.insert(rest.split(|c: char| c.is_whitespace() || c == '"').next().unwrap().to_string());
            }
        }
    }
    assert_eq!(called, TESTED.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
    for s in TESTED {
        assert!(script(s).is_file(), "{s}");
    }
}

#[test]
fn install_dcr_puts_the_provider_where_terraform_init_finds_it() {
    let scratch = ScratchDir::new("install-dcr");
    let dest = scratch.path().join("dcr-ci");
    let github_env = scratch.path().join("github-env");
    let bins = provider_bin().parent().unwrap().to_path_buf();
    let (code, stdout, stderr) = run(Command::new(script("install_dcr.sh"))
        .arg(repo_root())
        .arg(&dest)
        .env("DCR_BINARIES", &bins)
        .env("GITHUB_ENV", &github_env)
        .env("GITHUB_PATH", scratch.path().join("github-path")));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let tfrc = dest.join("dcr.tfrc");
    assert!(std::fs::read_to_string(&github_env).unwrap().contains(&format!("TF_CLI_CONFIG_FILE={}", tfrc.display())));
    assert!(dest.join("bin/dcr").is_file());
    let ws = Workspace::new(&Terraform::latest());
    ws.write("main.tf", "terraform {\n  required_providers {\n    dcr = { source = \"dcr/dcr\" }\n  }\n}\n");
    ws.env("TF_CLI_CONFIG_FILE", tfrc.to_str().unwrap());
    let out = ws.init();
    assert!(out.stdout.contains("Installing dcr/dcr"), "{out}");
}

#[test]
fn plan_summary_shows_the_new_digest_and_the_condition_pinning_it_and_verify_run_checks_the_run() {
    base_image();
    let ws = quickstart(&Terraform::latest());
    ws.init();
    ws.apply();
    let old = resource_values(&ws.show_json(), "dcr_workload", "study")["image_digest"].as_str().unwrap().to_string();

    // The auditor's step on the run.
    let uri = ws.run_ok(&["output", "-raw", "results"]).stdout;
    let scratch = ScratchDir::new("ci-recipe");
    let verify = |extra: &[&str]| {
        let summary = scratch.path().join("step-summary.md");
        let _ = std::fs::remove_file(&summary);
        let (code, stdout, stderr) = run(Command::new(script("verify_run.sh"))
            .arg(&uri)
            .args(extra)
            .current_dir(scratch.path())
            .env("DCR", dcr_bin())
            .env("DCR_STATE_DIR", ws.path().join(".dcr"))
            .env("GITHUB_STEP_SUMMARY", &summary));
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(scratch.path().join("verify-report.json")).unwrap()).unwrap();
        (code, std::fs::read_to_string(&summary).unwrap_or_default(), report, format!("{stdout}{stderr}"))
    };
    let (code, summary, report, out) = verify(&[]);
    assert_eq!(code, 0, "{out}\n{summary}");
    assert_eq!(report["verified"], true);
    assert!(
        summary.contains("Verified: workload `diabetes-study`") && summary.contains("diabetes-study v1"),
        "{summary}"
    );
    let other = format!("sha256:{}", "1".repeat(64));
    let (code, summary, _, out) = verify(&["--image-digest", &other]);
    assert_eq!(code, RunCheck::ImageDigest.exit_code(), "{out}\n{summary}");
    assert!(summary.contains("❌ **image-digest**") && summary.contains("Not verified (exit 15)"), "{summary}");

    // The consumer's pull request: a changed notebook gives a new image, which the policy pins.
    let notebook = ws.path().join("analysis.ipynb");
    let changed = std::fs::read_to_string(&notebook).unwrap().replace("min_group_size", "min_group_size ");
    std::fs::write(&notebook, changed).unwrap();
    ws.run_ok(&["plan", "-input=false", "-no-color", "-out=plan.out"]);
    let plan = ws.run_ok(&["show", "-json", "plan.out"]).stdout;
    let plan_json = ws.path().join("plan.json");
    std::fs::write(&plan_json, &plan).unwrap();
    let (code, md, stderr) = run(Command::new("python3").arg(script("plan_summary.py")).arg(&plan_json));
    assert_eq!(code, 0, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let new = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "dcr_workload.study")
        .map(|r| r["change"]["after"]["image_digest"].as_str().unwrap().to_string())
        .unwrap();
    assert_ne!(new, old);
    assert!(md.contains(&format!("| `dcr_workload.study` | `{old}` | `{new}` |")), "{md}");
    assert!(md.contains("### `dcr_policy.study` (update)"), "{md}");
    assert!(md.contains(&format!("- pins `{new}`")) && md.contains(&format!("- unpins `{old}`")), "{md}");
    assert!(md.contains(&format!("- assertion.submods.container.image_digest in ['{old}']")), "{md}");
    assert!(md.contains(&format!("+ assertion.submods.container.image_digest in ['{new}']")), "{md}");

    // Nothing to say about a plan without clean-room changes.
    std::fs::write(&plan_json, r#"{"resource_changes": []}"#).unwrap();
    let (_, md, _) = run(Command::new("python3").arg(script("plan_summary.py")).arg(&plan_json));
    assert_eq!(md, "No clean-room change.\n");

    ws.destroy();
    remove_ledgers(&ws.path().join(".dcr"));
}

fn remove_ledgers(state_dir: &Path) {
    let cloud = LocalCloudProcess::start(&provider_bin(), state_dir, &[]);
    cloud.remove_ledgers(dcr_e2e::fixtures::PROJECT);
}
