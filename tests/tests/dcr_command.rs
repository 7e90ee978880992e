//! The `dcr` command on the quickstart, as its analyst, consumer and auditor use it: `dcr pull`
//! lays the stand-in out as the workload's input; `dcr results`
//! fetches and verifies `summary.csv`; `dcr verify` passes on the run, from a directory and from
//! its gs:// location, and fails with the failed check's own exit code when one byte of an output,
//! the manifest or the token changes, when the digest is not among the auditor's pins, or when
//! confidential hardware is required of the simulated TEE. An object added to the released run
//! makes `dcr results` refuse, leaving nothing in the target directory.

use std::path::Path;
use std::process::Command;

use dcr_attestation::run::RunCheck;
use dcr_e2e::clean_room::base_image;
use dcr_e2e::fixtures::{PROJECT, quickstart, resource_values, sha256_hex};
use dcr_e2e::google_clients::ScratchDir;
use dcr_e2e::local_cloud::{LocalCloudProcess, encode, suite_request_log};
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::{REQUEST_LOG_ENV, dcr_bin, provider_bin};
use serde_json::Value;

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

fn dcr(state_dir: &Path, args: &[&str]) -> Ran {
    let mut cmd = Command::new(dcr_bin());
    cmd.arg("--state-dir").arg(state_dir).args(args);
    if let Some(log) = suite_request_log() {
        cmd.env(REQUEST_LOG_ENV, log);
    }
    let out = cmd.output().expect("dcr runs");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Verifies a copy of `run` changed by `tamper`, expecting `check` to fail with its exit code.
fn tampered_fails(state_dir: &Path, run: &Path, what: &str, tamper: impl Fn(&Path), extra: &[&str], check: RunCheck) {
    let scratch = ScratchDir::new("dcr-tampered");
    let copy = scratch.path().join("run");
    copy_dir(run, &copy);
    tamper(&copy);
    let mut args = vec!["verify", copy.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = dcr(state_dir, &args);
    assert_eq!(out.code, check.exit_code(), "{what}: {out}");
    assert!(out.stderr.contains(&format!("{} check failed", check.name())), "{what}: {out}");
}

fn flip_byte(path: &Path, at: impl Fn(&[u8]) -> usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = at(&bytes);
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn dcr_results_and_verify_check_the_quickstart_run_and_name_each_tampering() {
    base_image();
    let ws = quickstart(&Terraform::latest());
    ws.init();
    ws.apply();
    let uri = ws.run_ok(&["output", "-raw", "results"]).stdout;
    let state_dir = ws.path().join(".dcr");
    let show = ws.show_json();
    let w = resource_values(&show, "dcr_workload", "study");

    // The analyst: the stand-in, where the notebook will find the real data.
    let scratch = ScratchDir::new("dcr-results");
    let dataset = resource_values(&show, "dcr_dataset", "patients")["id"].as_str().unwrap().to_string();
    let inputs = scratch.path().join("inputs");
    let out = dcr(&state_dir, &["--json", "pull", &dataset, "--to", inputs.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out}");
    let pulled: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(pulled["pulled"][0]["input"], "patients", "{out}");
    let stand_in = std::fs::read_to_string(inputs.join("patients.csv")).unwrap();
    let source = std::fs::read_to_string(ws.path().join("data/patients.csv")).unwrap();
    assert_eq!(stand_in.lines().next(), source.lines().next(), "the stand-in has the source's columns");
    assert!(stand_in.lines().count() > 100, "{stand_in}");
    let ids: Vec<&str> = source.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert!(!ids.iter().any(|id| stand_in.contains(id)), "a patient id reached the stand-in");
    assert_eq!(std::fs::read_dir(&inputs).unwrap().count(), 1, "only patients.csv, no temporary file");
    let out = dcr(&state_dir, &["pull", "cohort=nobody-bucket/patients", "--to", inputs.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("no stage-1 stand-in at gs://nobody-bucket-stage1/patients.csv"), "{out}");

    // The consumer: results land verified.
    let to = scratch.path().join("results");
    let out = dcr(&state_dir, &["--json", "results", &uri, "--to", to.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out}");
    let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["verified"], true, "{out}");
    assert_eq!(report["checks"].as_array().unwrap().len(), RunCheck::ALL.len(), "{out}");
    assert_eq!(report["run"]["policies"], serde_json::json!([["diabetes-study", 1]]), "{out}");
    assert_eq!(report["run"]["image_digest"], w["image_digest"], "{out}");
    assert_eq!(report["run"]["simulated"], true, "{out}");
    let summary = std::fs::read_to_string(to.join("outputs/summary.csv")).unwrap();
    assert!(summary.starts_with("region,patients,"), "{summary}");
    assert_eq!(sha256_hex(&std::fs::read(to.join("output-manifest.json")).unwrap()), w["output_manifest_sha256"]);
    assert!(!std::fs::read_dir(&to).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with('.')));

    // The auditor: the run verifies from the directory and from its location, in words too.
    let out = dcr(&state_dir, &["verify", to.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("held to: diabetes-study (version 1)") && out.stdout.contains("simulated TEE"),
        "{out}"
    );
    assert_eq!(dcr(&state_dir, &["verify", &uri]).code, 0);
    // The auditor rebuilds the image from the notebook (the manifest and parameters as the
    // configuration gives them) and pins what comes out: the same digest, or exit 15.
    let image = resource_values(&show, "dcr_image_digest", "study");
    assert_eq!(image["digest"], w["image_digest"]);
    let workload_manifest = scratch.path().join("workload.json");
    std::fs::write(&workload_manifest, image["manifest"].as_str().unwrap()).unwrap();
    let rebuilt_from = |notebook: &Path| {
        let args =
            ["--notebook", notebook.to_str().unwrap(), "--workload-manifest", workload_manifest.to_str().unwrap()];
        let parameters = image["parameters"].as_str().unwrap();
        dcr(&state_dir, &[&["verify", to.to_str().unwrap()][..], &args, &["--parameters", parameters]].concat())
    };
    let out = rebuilt_from(&ws.path().join("analysis.ipynb"));
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains(&format!("rebuilt the workload image from {}", ws.path().join("analysis.ipynb").display()))
    );
    let edited = scratch.path().join("edited.ipynb");
    let notebook = std::fs::read_to_string(ws.path().join("analysis.ipynb")).unwrap();
    std::fs::write(&edited, notebook.replacen("min_group_size = 10", "min_group_size = 1", 1)).unwrap();
    let out = rebuilt_from(&edited);
    assert_eq!(out.code, RunCheck::ImageDigest.exit_code(), "{out}");

    // The audit trail: the run, verified, with the generation of the data it read; from the
    // command and from Terraform.
    let object_generation = resource_values(&show, "dcr_dataset", "patients")["object_generation"].clone();
    let out = dcr(&state_dir, &["--json", "runs", "gs://research-team-results/"]);
    assert_eq!(out.code, 0, "{out}");
    let listed: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let runs = listed["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{out}");
    assert_eq!((runs[0]["uri"].as_str(), &runs[0]["verified"]), (Some(uri.as_str()), &Value::Bool(true)), "{out}");
    assert_eq!(runs[0]["image_digest"], w["image_digest"]);
    assert_eq!(runs[0]["inputs"][0]["dataset"], dataset.as_str());
    assert_eq!(runs[0]["inputs"][0]["generation"], object_generation);
    // The key accesses: the run's TEE unwrapped the dataset's key, as its pool's principal; Cloud
    // Audit Logs (the local cloud's Data Access log) say so.
    let crypto_key = resource_values(&show, "dcr_dataset", "patients")["crypto_key"].as_str().unwrap().to_string();
    let accesses = listed["key_accesses"].as_array().unwrap_or_else(|| panic!("no key_accesses: {out}"));
    let tee = |a: &Value| {
        a["granted"] == true
            && a["key"] == crypto_key.as_str()
            && a["datasets"] == serde_json::json!([dataset])
            && a["principal"].as_str().is_some_and(|p| {
                p.starts_with("principal://iam.googleapis.com/projects/") && p.contains("/workloadIdentityPools/")
            })
    };
    assert_eq!(accesses.iter().filter(|a| tee(a)).count(), 1, "one decrypt, by the run's TEE: {out}");
    assert_eq!(accesses.len(), 1, "{out}");
    ws.write(
        "runs.tf",
        "data \"dcr_runs\" \"all\" {\n  location = \"gs://research-team-results/\"\n}\n\noutput \"runs\" {\n  value = data.dcr_runs.all.runs\n}\n\noutput \"key_accesses\" {\n  value = data.dcr_runs.all.key_accesses\n}\n",
    );
    ws.apply();
    let from_terraform: Value = serde_json::from_str(&ws.run_ok(&["output", "-json", "runs"]).stdout).unwrap();
    assert_eq!(from_terraform.as_array().map(Vec::len), Some(1), "{from_terraform}");
    let r = &from_terraform[0];
    assert_eq!(
        (r["uri"].as_str(), &r["verified"], &r["failed_check"]),
        (Some(uri.as_str()), &Value::Bool(true), &Value::from(""))
    );
    assert_eq!((&r["image_digest"], &r["inputs"][0]["generation"]), (&w["image_digest"], &object_generation));
    assert!(r["released_at"].as_str().is_some_and(|t| t.starts_with("20") && t.ends_with('Z')), "{r}");
    assert_eq!(r["outputs"], serde_json::json!(["summary.csv"]));
    let from_terraform: Value = serde_json::from_str(&ws.run_ok(&["output", "-json", "key_accesses"]).stdout).unwrap();
    assert_eq!(from_terraform.as_array().map(|a| a.iter().filter(|a| tee(a)).count()), Some(1), "{from_terraform}");

    // One changed byte, each where it belongs.
    let hex_in_outputs = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        s.find("\"sha256\"").map(|i| i + "\"sha256\": \"".len() + 3).unwrap()
    };
    tampered_fails(
        &state_dir,
        &to,
        "an output byte",
        |d| flip_byte(&d.join("outputs/summary.csv"), |b| b.len() - 2),
        &[],
        RunCheck::Outputs,
    );
    tampered_fails(
        &state_dir,
        &to,
        "a manifest byte",
        |d| flip_byte(&d.join("output-manifest.json"), hex_in_outputs),
        &[],
        RunCheck::Nonce,
    );
    tampered_fails(
        &state_dir,
        &to,
        "a token byte",
        |d| flip_byte(&d.join("attestation-token.jwt"), |b| b.len() - 10),
        &[],
        RunCheck::Token,
    );
    let other = format!("sha256:{}", "0".repeat(64));
    tampered_fails(&state_dir, &to, "a digest not pinned", |_| {}, &["--image-digest", &other], RunCheck::ImageDigest);
    tampered_fails(
        &state_dir,
        &to,
        "confidential hardware",
        |_| {},
        &["--require-confidential-hardware"],
        RunCheck::Hardware,
    );
    tampered_fails(
        &state_dir,
        &to,
        "a file not released",
        |d| std::fs::write(d.join("outputs/extra.csv"), "x\n").unwrap(),
        &[],
        RunCheck::Outputs,
    );

    // An object slipped in beside the released files: nothing lands.
    let mallory = "user:mallory@dcr.local";
    let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[mallory]);
    let (bucket, prefix) = uri.trim_start_matches("gs://").split_once('/').unwrap();
    cloud.upload(&cloud.admin_token, bucket, &format!("{prefix}outputs/extra.csv"), b"x\n").unwrap();
    let again = scratch.path().join("again");
    let out = dcr(&state_dir, &["results", &uri, "--to", again.to_str().unwrap()]);
    assert_eq!(out.code, RunCheck::Outputs.exit_code(), "{out}");
    assert!(out.stderr.contains("extra.csv is not in the manifest"), "{out}");
    assert_eq!(std::fs::read_dir(&again).unwrap().count(), 0, "unverified files landed in {}", again.display());
    let out = dcr(&state_dir, &["--json", "runs", "gs://research-team-results/"]);
    let listed: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        (&listed["runs"][0]["verified"], &listed["runs"][0]["failed_check"]),
        (&Value::Bool(false), &Value::from("outputs")),
        "{out}"
    );
    // Someone without the key's role tries it: refused, and on record.
    assert_eq!(cloud.kms_decrypt(&cloud.token_for(mallory), &crypto_key, b"DLK1 any ciphertext", b""), Err(403));
    let out = dcr(&state_dir, &["runs", "gs://research-team-results/"]);
    assert_eq!(out.code, 0, "{out}");
    let refused = out.stdout.lines().find(|l| l.contains("mallory@dcr.local")).unwrap_or_else(|| panic!("{out}"));
    assert!(refused.contains("REFUSED: Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied"), "{out}");
    assert!(refused.contains(&crypto_key) && refused.contains(&dataset), "{out}");
    drop(cloud);

    ws.destroy();
    let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
    cloud.remove_ledgers(PROJECT);
}

/// The launcher's failure line: `dcr-launcher: FAILED (STAGE): MESSAGE`.
fn launcher_failure(log: &str) -> (String, String) {
    let line = log.lines().find_map(|l| l.strip_prefix("dcr-launcher: FAILED (")).unwrap_or_else(|| panic!("{log}"));
    let (stage, message) = line.split_once("): ").unwrap();
    (stage.to_string(), message.to_string())
}

#[test]
fn dcr_run_rehearses_the_notebook_on_the_stand_in_offline_and_fails_as_stage_2_does() {
    base_image();
    let ws = quickstart(&Terraform::latest());
    ws.init();
    ws.apply();
    let state_dir = ws.path().join(".dcr");
    let show = ws.show_json();
    let dataset = resource_values(&show, "dcr_dataset", "patients")["id"].as_str().unwrap().to_string();
    let policy_uri = resource_values(&show, "dcr_policy", "study")["policy_uri"].as_str().unwrap().to_string();
    let scratch = ScratchDir::new("dcr-run");
    let path = |name: &str| scratch.path().join(name).to_str().unwrap().to_string();
    assert_eq!(dcr(&state_dir, &["pull", &dataset, "--to", &path("inputs")]).code, 0);
    let notebook = ws.path().join("analysis.ipynb");
    let rehearse = |notebook: &str, outputs: &str| {
        dcr(
            &state_dir,
            &[
                "--json",
                "run",
                notebook,
                "--inputs",
                &path("inputs"),
                "--policy",
                &policy_uri,
                "--parameters",
                r#"{"min_group_size": 10}"#,
                "--outputs",
                &path(outputs),
                "--executed",
                &path("executed.ipynb"),
            ],
        )
    };

    // The reviewed notebook passes on the stand-in, and its summary is let out.
    let out = rehearse(notebook.to_str().unwrap(), "outputs");
    assert_eq!(out.code, 0, "{out}");
    let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["rehearsal"]["outputs"], serde_json::json!(["summary.csv"]), "{out}");
    assert_eq!(report["rehearsal"]["base_image_digest"], base_image().digest, "{out}");
    let summary = std::fs::read_to_string(scratch.path().join("outputs/summary.csv")).unwrap();
    assert!(summary.starts_with("region,patients,smokers,"), "{summary}");
    let executed: Value =
        serde_json::from_slice(&std::fs::read(scratch.path().join("executed.ipynb")).unwrap()).unwrap();
    assert!(executed["cells"].as_array().is_some_and(|c| !c.is_empty()));

    // No network: the local cloud, on this machine's loopback, is out of reach.
    let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
    let probe = notebook_with_cell(
        &std::fs::read_to_string(&notebook).unwrap(),
        &format!(
            "import urllib.error, urllib.request\ntry:\n    urllib.request.urlopen('{}', timeout=3)\n    reached = 'reached'\nexcept urllib.error.HTTPError:\n    reached = 'reached'\nexcept Exception:\n    reached = 'blocked'\nopen(os.path.join(os.environ['DCR_OUTPUTS_DIR'], 'network.csv'), 'w').write('network\\n' + reached + '\\n')\n",
            cloud.endpoint
        ),
    );
    std::fs::write(scratch.path().join("probe.ipynb"), probe).unwrap();
    let out = rehearse(&path("probe.ipynb"), "probe-outputs");
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("probe-outputs/network.csv")).unwrap(),
        "network\nblocked\n"
    );
    drop(cloud);

    // A text file where the policy lets only csv and json out: the rehearsal fails as stage 2 does.
    let leaking = std::fs::read_to_string(&notebook).unwrap().replace("\\\"summary.csv\\\"", "\\\"summary.txt\\\"");
    assert!(leaking.contains("summary.txt"));
    std::fs::write(&notebook, &leaking).unwrap();
    let out = rehearse(notebook.to_str().unwrap(), "leak-outputs");
    assert_eq!(out.code, 7, "{out}");
    let (stage, rehearsed) = launcher_failure(&out.stderr);
    assert_eq!(stage, "output_rules");
    assert!(rehearsed.contains("allowed_extensions: summary.txt has extension \"txt\""), "{rehearsed}");
    assert!(!scratch.path().join("leak-outputs").exists(), "a refused output left the rehearsal");

    ws.apply_fails();
    let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
    let names = object_names(&cloud, "research-team-results", "");
    let failure = names.iter().find(|n| n.ends_with("/failure.json")).unwrap_or_else(|| panic!("{names:?}"));
    let report: Value =
        serde_json::from_slice(&cloud.download(&cloud.admin_token, "research-team-results", failure).unwrap()).unwrap();
    assert_eq!((report["stage"].as_str().unwrap(), report["exit_code"].as_i64().unwrap()), ("output_rules", 7));
    assert_eq!(report["message"], rehearsed.as_str(), "stage 2 failed otherwise than its rehearsal");
    let out = dcr(&state_dir, &["--json", "runs", "gs://research-team-results/"]);
    let listed: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let states: Vec<(bool, Value)> =
        listed["runs"].as_array().unwrap().iter().map(|r| (r["verified"] == true, r["failed_check"].clone())).collect();
    // Pinning the new digest changed the policy (version 2); the earlier run, held to version 1,
    // still verifies online: the policy bucket keeps every version by its hash.
    assert!(states.contains(&(true, Value::Null)), "the reviewed notebook's run: {out}");
    let policy_uri =
        listed["runs"].as_array().unwrap().iter().find(|r| r["verified"] == true).unwrap()["inputs"][0]["policy_uri"]
            .as_str()
            .unwrap()
            .to_string();
    let (bucket, current) = policy_uri.trim_start_matches("gs://").split_once('/').unwrap();
    let current: Value = serde_json::from_slice(&cloud.download(&cloud.admin_token, bucket, current).unwrap()).unwrap();
    assert_eq!(current["version"], 2, "{current}");
    // And with its version gone from the history, it fails the policy check, naming the change.
    let history = object_names(&cloud, bucket, "history/");
    assert_eq!(history.len(), 2, "versions 1 and 2: {history:?}");
    for name in &history {
        let bytes = cloud.download(&cloud.admin_token, bucket, name).unwrap();
        assert_eq!(format!("history/{}.json", sha256_hex(&bytes)), *name, "a history object is named by its hash");
        if serde_json::from_slice::<Value>(&bytes).unwrap()["version"] == 1 {
            assert!(
                cloud
                    .delete(&cloud.admin_token, &format!("/storage/v1/b/{bucket}/o/{}", encode(name)))
                    .status()
                    .is_success()
            );
        }
    }
    let out = dcr(&state_dir, &["--json", "runs", "gs://research-team-results/"]);
    assert!(out.stdout.contains("\"failed_check\": \"policy\""), "{out}");
    assert!(out.stdout.contains("the policy changed since the run"), "{out}");
    assert!(states.contains(&(false, Value::from("output_rules"))), "the refused run: {out}");
    assert_eq!(states.len(), 2, "{out}");
    drop(cloud);

    ws.destroy();
    let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
    cloud.remove_ledgers(PROJECT);
}

/// The names of the objects under `prefix` in `bucket`.
fn object_names(cloud: &LocalCloudProcess, bucket: &str, prefix: &str) -> Vec<String> {
    let listed = cloud.get(&cloud.admin_token, &format!("/storage/v1/b/{bucket}/o?prefix={}", encode(prefix)));
    listed.json::<Value>().unwrap()["items"]
        .as_array()
        .map(|items| items.iter().map(|o| o["name"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// `notebook` (JSON text) with a code cell appended.
fn notebook_with_cell(notebook: &str, source: &str) -> String {
    let mut nb: Value = serde_json::from_str(notebook).unwrap();
    nb["cells"].as_array_mut().unwrap().push(serde_json::json!({
        "cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [], "source": source
    }));
    nb.to_string()
}
