//! `dcr_workload` refusals end to end: a notebook changed after review gets a new digest that the
//! policy does not pin, and the run is refused at STS inside the TEE; notebooks that break the
//! output rules release nothing. Each time the apply fails, naming the cause, with no output released.

use dcr_e2e::clean_room::{AGGREGATE, base_image, notebook};
use dcr_e2e::fixtures::{SMALL_CSV, resource_values, small_config};
use dcr_e2e::local_cloud::{LocalCloudProcess, vm_containers};
use dcr_e2e::registry::Registry;
use dcr_e2e::terraform::Terraform;
use dcr_e2e::trial_study::{OUT, config, config_with, flat, released};
use dcr_e2e::workspace::{Workspace, provider_bin};
use serde_json::Value;

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
    let genuine = released(&ws);
    let run = format!("trial-study/{}/", pinned.as_str().unwrap().trim_start_matches("sha256:"));
    assert!(genuine.contains(&format!("{run}outputs/summary.csv")), "{genuine:?}");

    // Tampered again after the genuine run: a new run in place (issue 10, item 2), refused, and the
    // genuine results and their record are still there.
    ws.write("run.ipynb", &notebook(&AGGREGATE.replace("round(", "round( ")));
    let plan = flat(&ws.plan(&[]).text());
    assert!(plan.contains("0 to add, 1 to change, 0 to destroy"), "a new run is not a replacement: {plan}");
    let failed = flat(&ws.apply_fails().text());
    assert!(failed.contains("rejected by the attribute condition"), "{failed}");
    let after = released(&ws);
    for object in &genuine {
        assert!(after.contains(object), "the refused run deleted {object}: {after:?}");
    }
    let w = resource_values(&ws.show_json(), "dcr_workload", "study");
    assert_eq!(w["image_digest"], pinned, "the state still records the genuine run");
    assert_eq!(w["status"], "TERMINATED");
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

/// Applies the reviewed notebook's workload with its image in `registry`; returns the workload's state.
fn apply_with_registry(ws: &Workspace, registry: &Registry) -> Value {
    ws.write("main.tf", &config_with(10_000, &format!("  registry = \"{}/dcr\"", registry.addr)));
    ws.write("data.csv", SMALL_CSV);
    ws.write("reviewed.ipynb", &notebook(AGGREGATE));
    ws.write("run.ipynb", &notebook(AGGREGATE));
    ws.init();
    ws.apply();
    resource_values(&ws.show_json(), "dcr_workload", "study")
}

#[test]
fn with_a_registry_the_image_is_pushed_and_the_vm_pulls_it_by_digest() {
    base_image();
    let ws = Workspace::new(&Terraform::latest());
    let registry = Registry::start(&ws.path().join("registry"));
    let w = apply_with_registry(&ws, &registry);
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

/// A policy that keeps its document in a bucket of its own, and names a reader: the consumer's
/// input points at the exported `policy_uri`, the run reads it there, and the reader may then read
/// this run's results — and nothing else in the output bucket (issue 9, 1g and 1i). The VM asked for
/// an external IP and a Balanced PD boot disk (1b, 1h).
#[test]
fn a_policy_in_its_own_bucket_shares_the_run_with_its_readers_only() {
    base_image();
    let ws = Workspace::new(&Terraform::latest());
    let input = "  input {\n    name    = \"trial\"\n    dataset = dcr_dataset.d.id\n    policy  = \"trial-study\"\n    \
                 policy_uri = \"gs://trial-study-policies/policy.json\"\n  }\n";
    let image = |kind: &str, label: &str| {
        format!(
            "{kind} \"{label}\" \"study\" {{\n  name = \"trial-study\"\n  notebook = \"run.ipynb\"\n  \
             parameters = jsonencode({{ output_name = \"summary.csv\" }})\n{input}  output {{\n    bucket = \"{OUT}\"\n  }}\n{}}}\n",
            if kind == "resource" { "  depends_on = [dcr_policy.study]\n" } else { "" }
        )
    };
    ws.write(
        "main.tf",
        &format!(
            "{}\n{}\nresource \"dcr_policy\" \"study\" {{\n  name = \"trial-study\"\n  bucket = \"trial-study-policies\"\n  \
             datasets = [dcr_dataset.d.id]\n  allowed_image_digests = [data.dcr_image_digest.study.digest]\n  \
             allow_debug = true\n  output {{\n    readers = [\"user:reader@example.com\"]\n  }}\n}}\n{}",
            small_config("trial", None, ""),
            image("data", "dcr_image_digest"),
            image("resource", "dcr_workload"),
        ),
    );
    ws.write("data.csv", SMALL_CSV);
    ws.write("run.ipynb", &notebook(AGGREGATE));
    ws.init();
    ws.apply();
    ws.assert_no_changes();
    let show = ws.show_json();
    let w = resource_values(&show, "dcr_workload", "study");
    assert_eq!(resource_values(&show, "dcr_policy", "study")["policy_uri"], "gs://trial-study-policies/policy.json");
    assert_eq!(w["shared_with"], serde_json::json!(["user:reader@example.com"]));
    let run = w["output_uri"].as_str().unwrap().trim_start_matches(&format!("gs://{OUT}/")).to_string();

    let cloud = LocalCloudProcess::start(
        &provider_bin(),
        &ws.path().join(".dcr"),
        &["user:reader@example.com", "user:stranger@example.com"],
    );
    let reader = cloud.token_for("user:reader@example.com");
    let summary = cloud.download(&reader, OUT, &format!("{run}outputs/summary.csv")).expect("the reader reads the run");
    assert_eq!(String::from_utf8(summary).unwrap(), dcr_e2e::clean_room::AGGREGATE_RESULT);
    assert!(cloud.download(&reader, OUT, &format!("{run}output-manifest.json")).is_ok());
    // Nothing else: not another object of the bucket, not the listing; and nobody else.
    let admin = cloud.admin_token.clone();
    let other = format!("/upload/storage/v1/b/{OUT}/o?uploadType=media&name=elsewhere.csv");
    let r = reqwest::blocking::Client::new()
        .post(format!("{}{other}", cloud.endpoint))
        .bearer_auth(&admin)
        .body("private")
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(cloud.download(&reader, OUT, "elsewhere.csv").is_err(), "outside the run's prefix");
    assert_eq!(cloud.get(&reader, &format!("/storage/v1/b/{OUT}/o")).status(), 403, "no listing");
    let stranger = cloud.token_for("user:stranger@example.com");
    assert!(cloud.download(&stranger, OUT, &format!("{run}outputs/summary.csv")).is_err());

    // The VM as Compute holds it: an external IP (ONE_TO_ONE_NAT) and a Balanced PD boot disk.
    let vm: Value = cloud
        .get(
            &admin,
            &format!("/compute/v1/projects/{}/zones/local-a/instances/dcr-trial-study", dcr_e2e::fixtures::PROJECT),
        )
        .json()
        .unwrap();
    assert_eq!(vm["networkInterfaces"][0]["accessConfigs"][0]["type"], "ONE_TO_ONE_NAT", "{vm}");
    assert_eq!(vm["disks"][0]["initializeParams"]["diskType"], "zones/local-a/diskTypes/pd-balanced", "{vm}");
    drop(cloud);
    ws.destroy();
}

/// A registry that needs a login, with the login in a Docker credential helper (as `gcloud auth
/// configure-docker` sets up for Artifact Registry): the image is pushed and the VM pulls it, both
/// through the helper (issue 9, 1d).
#[test]
fn a_registry_login_from_a_credential_helper_is_used_for_push_and_pull() {
    base_image();
    let ws = Workspace::new(&Terraform::latest());
    let registry = Registry::start_with_login(&ws.path().join("registry"), "pusher", "s3cret-pw");
    let helpers = ws.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let helper = helpers.join("docker-credential-dcrtest");
    std::fs::write(
        &helper,
        "#!/bin/sh\n# Docker's credential-helper protocol: `get`, the server on stdin, JSON on stdout.\n\
         [ \"$1\" = get ] || exit 1\nserver=$(cat)\n\
         printf '{\"ServerURL\":\"%s\",\"Username\":\"pusher\",\"Secret\":\"s3cret-pw\"}' \"$server\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let docker = ws.path().join("docker-config");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(docker.join("config.json"), format!("{{\"credHelpers\": {{\"{}\": \"dcrtest\"}}}}", registry.addr))
        .unwrap();
    ws.env("DOCKER_CONFIG", docker.to_str().unwrap());
    ws.env("PATH", &format!("{}:{}", helpers.display(), std::env::var("PATH").unwrap_or_default()));
    let w = apply_with_registry(&ws, &registry);
    let digest = w["image_digest"].as_str().unwrap().to_string();
    let url = format!("http://{}/v2/dcr/trial-study/manifests/{digest}", registry.addr);
    let http = reqwest::blocking::Client::new();
    let accept = "application/vnd.oci.image.manifest.v1+json";
    assert_eq!(http.get(&url).header("accept", accept).send().unwrap().status(), 401, "the registry needs the login");
    let r = http.get(&url).header("accept", accept).basic_auth("pusher", Some("s3cret-pw")).send().unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    ws.destroy();
}

/// Ctrl-C while the VM runs: the provider stops waiting, deletes the VM (no container goes on with
/// the data), records the run as interrupted, and the next apply converges (issue 9, 1j).
#[test]
fn ctrl_c_stops_the_run_promptly_and_the_next_apply_converges() {
    base_image();
    let ws = Workspace::new(&Terraform::get("1.0.3"));
    let slow = AGGREGATE.replace("time.sleep(sleep_seconds)", "time.sleep(600)");
    ws.write("main.tf", &config(10_000));
    ws.write("data.csv", SMALL_CSV);
    ws.write("reviewed.ipynb", &notebook(&slow));
    ws.write("run.ipynb", &notebook(&slow));
    ws.init();
    let state_dir = ws.path().join(".dcr");
    let mut apply = ws.spawn(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    // Wait until the VM runs the notebook.
    let started = std::time::Instant::now();
    let running = || vm_containers(&state_dir).len();
    while running() == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(300), "the VM never started");
        assert!(apply.try_wait().unwrap().is_none(), "terraform ended before the VM started");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    // Ctrl-C: SIGINT to Terraform's process group, as a terminal sends it.
    // SAFETY: kill(2) on the process group of a child we started and have not reaped.
    assert_eq!(unsafe { libc::kill(-(apply.id() as i32), libc::SIGINT) }, 0);
    let out = apply.wait_with_output().unwrap();
    let text = flat(&format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("Interrupted: the run was stopped"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(500), "the notebook's 600 s did not run out");
    assert_eq!(running(), 0, "no container is left running");
    let show = ws.show_json();
    assert_eq!(resource_values(&show, "dcr_workload", "study")["status"], "INTERRUPTED");

    // The next apply (a quick notebook this time) replaces the interrupted run and converges.
    ws.write("reviewed.ipynb", &notebook(AGGREGATE));
    ws.write("run.ipynb", &notebook(AGGREGATE));
    ws.apply();
    ws.assert_no_changes();
    ws.destroy();
}

/// `timeouts { create }` running out while the VM runs: the VM goes with the apply — nothing keeps
/// running on the data unsupervised — the run is recorded as interrupted, and the next apply
/// converges (issue 10, item 2).
#[test]
fn a_create_timeout_stops_the_run() {
    base_image();
    let ws = Workspace::new(&Terraform::latest());
    let slow = AGGREGATE.replace("time.sleep(sleep_seconds)", "time.sleep(600)");
    ws.write("main.tf", &config_with(10_000, "  timeouts {\n    create = \"60s\"\n  }"));
    ws.write("data.csv", SMALL_CSV);
    ws.write("reviewed.ipynb", &notebook(&slow));
    ws.write("run.ipynb", &notebook(&slow));
    ws.init();
    let state_dir = ws.path().join(".dcr");
    let started = std::time::Instant::now();
    let mut apply = ws.spawn(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    let mut seen_running = false;
    while apply.try_wait().unwrap().is_none() {
        seen_running |= !vm_containers(&state_dir).is_empty();
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let out = apply.wait_with_output().unwrap();
    let text = flat(&format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    assert!(!out.status.success(), "{text}");
    assert!(seen_running, "the VM never ran, so the timeout stopped nothing: {text}");
    assert!(text.contains("Timed out: create of dcr_workload"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(200), "the notebook's 600 s did not run out");
    assert!(vm_containers(&state_dir).is_empty(), "the run went on after the timeout");
    assert_eq!(resource_values(&ws.show_json(), "dcr_workload", "study")["status"], "INTERRUPTED");
    ws.write("main.tf", &config(10_000));
    ws.write("reviewed.ipynb", &notebook(AGGREGATE));
    ws.write("run.ipynb", &notebook(AGGREGATE));
    ws.apply();
    ws.assert_no_changes();
    ws.destroy();
}
