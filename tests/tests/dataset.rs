//! `dcr_dataset` end to end: real Terraform (1.15.5 and 1.0.3) drives the freshly built provider
//! against its embedded local cloud; a standalone local cloud over the same state directory then
//! checks what was left behind, as the admin and as a principal without access.

use std::path::Path;

use dcr_e2e::fixtures::{PROJECT, SMALL_CSV, resource_values, sha256_hex, small_config};
use dcr_e2e::local_cloud::LocalCloudProcess;
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::{Workspace, provider_bin};
use serde_json::Value;

/// The dataset resource in `terraform show -json` output.
fn dataset(show: &Value, name: &str) -> Value {
    resource_values(show, "dcr_dataset", name)
}

#[test]
fn stored_object_decrypts_to_the_source_only_for_an_authorised_principal() {
    let tf = Terraform::latest();
    let ws = Workspace::new(&tf);
    ws.write("main.tf", &small_config("decrypt", None, ""));
    ws.write("data.csv", SMALL_CSV);
    ws.init();
    ws.apply();
    let d = dataset(&ws.show_json(), "d");
    let bucket = d["bucket"].as_str().unwrap().to_string();
    let object = d["object"].as_str().unwrap().to_string();
    let key = d["crypto_key"].as_str().unwrap().to_string();

    let mallory = "user:mallory@example.com";
    let cloud = LocalCloudProcess::start(&provider_bin(), &ws.path().join(".dcr"), &[mallory]);
    let envelope = cloud.download(&cloud.admin_token, &bucket, &object).expect("admin reads the object");
    assert_eq!(d["ciphertext_sha256"], sha256_hex(&envelope));
    assert!(!envelope.windows(9).any(|w| w == b"secret-a1"), "plaintext in the stored object");

    let mut r = &envelope[..];
    let header = dcr_envelope::read_header(&mut r).expect("a dcr envelope");
    assert_eq!(header.kms_key, key);
    let aad = format!("dcr-envelope-v1:gs://{bucket}/{object}");
    let wrapped = header.wrapped_key_bytes().unwrap();
    let data_key = cloud.kms_decrypt(&cloud.admin_token, &key, &wrapped, aad.as_bytes()).expect("admin may decrypt");
    let plain = dcr_envelope::open_all(&envelope, &data_key).expect("decrypts");
    assert_eq!(plain, SMALL_CSV.as_bytes());

    // A principal without decrypt permission is refused by KMS and by Storage.
    assert_eq!(cloud.kms_decrypt(&cloud.token_for(mallory), &key, &wrapped, aad.as_bytes()), Err(403));
    assert_eq!(cloud.download(&cloud.token_for(mallory), &bucket, &object), Err(403));
    drop(cloud);
    ws.destroy();
}

#[test]
fn no_plaintext_data_key_or_token_reaches_state_plan_or_logs() {
    let tf = Terraform::latest();
    let ws = Workspace::new(&tf);
    ws.write("main.tf", &small_config("secrets", None, ""));
    ws.write("data.csv", SMALL_CSV);
    let log = ws.path().join("provider.log");
    ws.env("TF_LOG", "TRACE");
    ws.env("TF_LOG_PATH", log.to_str().unwrap());
    ws.init();
    let plan = ws.plan_json();
    ws.apply();
    let state_text = ws.state_file_text();
    let show = ws.show_json().to_string();
    let logs = std::fs::read_to_string(&log).expect("TF_LOG_PATH log");
    assert!(logs.contains("dcr_dataset"), "the log captured the provider run");

    // The data key, recovered through KMS, must appear nowhere either.
    let d = dataset(&ws.show_json(), "d");
    let cloud = LocalCloudProcess::start(&provider_bin(), &ws.path().join(".dcr"), &[]);
    let (bucket, object, key) =
        (d["bucket"].as_str().unwrap(), d["object"].as_str().unwrap(), d["crypto_key"].as_str().unwrap());
    let envelope = cloud.download(&cloud.admin_token, bucket, object).unwrap();
    let header = dcr_envelope::read_header(&mut &envelope[..]).unwrap();
    let aad = format!("dcr-envelope-v1:gs://{bucket}/{object}");
    let data_key =
        cloud.kms_decrypt(&cloud.admin_token, key, &header.wrapped_key_bytes().unwrap(), aad.as_bytes()).unwrap();
    use base64::Engine;
    let key_forms = [
        base64::engine::general_purpose::STANDARD.encode(&data_key),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&data_key),
        data_key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ];

    for (what, text) in
        [("state file", &state_text), ("plan JSON", &plan.to_string()), ("show JSON", &show), ("logs", &logs)]
    {
        for cell in ["secret-a1", "secret-b2", "secret-c3"] {
            assert!(!text.contains(cell), "plaintext cell {cell:?} found in the {what}");
        }
        for k in &key_forms {
            assert!(!text.contains(k.as_str()), "the data key found in the {what}");
        }
        assert!(!text.contains(&cloud.admin_token), "an access token found in the {what}");
        // Every token the local cloud mints (the provider's own included) starts with this prefix.
        assert!(!text.contains("dcrl."), "a local cloud access token found in the {what}");
        assert!(!text.to_ascii_lowercase().contains("bearer "), "an Authorization header found in the {what}");
    }
    drop(cloud);
    ws.destroy();
}

#[test]
fn bad_inputs_fail_the_plan_naming_the_attribute_and_create_nothing() {
    let tf = Terraform::latest();
    let stage = |body: &str| format!("  programming_stage {{\n{body}\n  }}");
    let cases: Vec<(&str, String, Option<&str>, &str)> = vec![
        ("bad bucket name", small_config("bad1", None, "  bucket = \"Bad_Bucket!\""), None, "Invalid bucket"),
        (
            "unknown column type",
            small_config("bad2", None, "").replace("type = \"string\"", "type = \"datetime\""),
            None,
            "schema.column[0].type",
        ),
        (
            "min greater than max",
            small_config("bad3", None, "").replace("min  = 0\n      max  = 120", "min  = 130\n      max  = 120"),
            None,
            "schema.column[1].min",
        ),
        ("missing source", small_config("bad4", None, "").replace("data.csv", "nope.csv"), None, "Invalid source"),
        (
            "source breaking its schema",
            small_config("bad5", None, ""),
            Some("id,age\nx,34\ny,999\n"),
            "row 2 (line 3), column \"age\"",
        ),
        (
            "rows = 0",
            small_config("bad6", None, &stage("    mode = \"random\"\n    rows = 0")),
            None,
            "programming_stage.rows",
        ),
        (
            "sample without public_source",
            small_config("bad7", None, &stage("    mode = \"sample\"")),
            None,
            "programming_stage.public_source",
        ),
        (
            "both backends",
            small_config("bad8", None, "")
                .replace("provider \"dcr\" {}", "provider \"dcr\" {\n  local {}\n  gcp {\n    project = \"p\"\n  }\n}"),
            None,
            "both `local` and `gcp`",
        ),
        (
            "malformed reader member",
            small_config("bad9", None, &stage("    mode = \"random\"\n    readers = [\"bob@example.com\"]")),
            None,
            "programming_stage.readers",
        ),
        (
            "unusable state directory",
            small_config("bad10", Some(Path::new("not-a-dir/state")), ""),
            None,
            "local.state_dir",
        ),
        (
            "duplicate column names",
            small_config("bad11", None, "").replace("name = \"age\"", "name = \"id\""),
            None,
            "duplicate column name",
        ),
        (
            "dp_synthetic without epsilon",
            small_config("bad12", None, &stage("    mode = \"dp_synthetic\"")),
            None,
            "Invalid programming_stage.epsilon",
        ),
        ("invalid dataset name", small_config("Bad Name", None, ""), None, "Invalid name"),
        ("bad label", small_config("bad14", None, "  labels = {\n    Owner = \"x\"\n  }"), None, "labels[\"Owner\"]"),
    ];
    assert!(cases.len() >= 12);
    for (what, config, csv, expected) in cases {
        let ws = Workspace::new(&tf);
        ws.write("main.tf", &config);
        ws.write("data.csv", csv.unwrap_or(SMALL_CSV));
        // A regular file where the state directory's parent should be.
        ws.write("not-a-dir", "this is a file");
        ws.init();
        let out = ws.run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
        let text = out.text();
        assert_ne!(out.status.code(), Some(0), "{what}: apply succeeded:\n{text}");
        assert!(text.contains(expected), "{what}: expected {expected:?} in:\n{text}");
        // Nothing was created: no resource in state, no bucket in the local cloud.
        let state = ws.state_file_text();
        assert!(!state.contains("dcr_dataset"), "{what}: state records a dataset:\n{state}");
        let state_dir = ws.path().join(".dcr");
        if state_dir.exists() {
            let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
            assert_eq!(cloud.buckets(PROJECT), Vec::<String>::new(), "{what}: a bucket was created");
        }
    }
}

#[test]
fn two_configurations_sharing_a_state_dir_apply_in_parallel() {
    let tf = Terraform::latest();
    let shared = std::env::temp_dir().join(format!("dcr-e2e-shared-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&shared);
    let workspaces: Vec<Workspace> = ["alpha", "beta"]
        .iter()
        .map(|name| {
            let ws = Workspace::new(&tf);
            ws.write(
                "main.tf",
                &small_config(name, Some(&shared), "  programming_stage {\n    mode = \"random\"\n    rows = 50\n  }"),
            );
            ws.write("data.csv", SMALL_CSV);
            ws.init();
            ws
        })
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = workspaces.iter().map(|ws| s.spawn(move || ws.apply())).collect();
        for h in handles {
            h.join().expect("parallel apply panicked");
        }
    });
    let cloud = LocalCloudProcess::start(&provider_bin(), &shared, &[]);
    let mut buckets = cloud.buckets(PROJECT);
    buckets.sort();
    assert_eq!(
        buckets,
        vec![
            format!("{PROJECT}-alpha"),
            format!("{PROJECT}-alpha-stage1"),
            format!("{PROJECT}-beta"),
            format!("{PROJECT}-beta-stage1")
        ]
    );
    drop(cloud);
    std::thread::scope(|s| {
        for ws in &workspaces {
            s.spawn(move || ws.destroy());
        }
    });
    let cloud = LocalCloudProcess::start(&provider_bin(), &shared, &[]);
    assert!(cloud.buckets(PROJECT).is_empty());
    drop(cloud);
    let _ = std::fs::remove_dir_all(&shared);
}

#[test]
fn edits_drift_and_import_converge() {
    for tf in Terraform::all() {
        let ws = Workspace::new(&tf);
        ws.write(
            "main.tf",
            &small_config("life", None, "  programming_stage {\n    mode = \"random\"\n    rows = 10\n  }"),
        );
        ws.write("data.csv", SMALL_CSV);
        ws.init();
        ws.apply();
        let before = dataset(&ws.show_json(), "d");

        // An edited source plans an in-place update, not a replacement.
        ws.write("data.csv", &format!("{SMALL_CSV}secret-d4,40\n"));
        let plan = ws.plan_json();
        let change = &plan["resource_changes"][0]["change"];
        assert_eq!(change["actions"], serde_json::json!(["update"]), "terraform {}: {plan}", tf.version);
        ws.apply();
        let after = dataset(&ws.show_json(), "d");
        assert_eq!(after["source_rows"], 4);
        assert_eq!(after["crypto_key"], before["crypto_key"]);
        assert_ne!(after["ciphertext_sha256"], before["ciphertext_sha256"]);

        // Drift: the encrypted object and the stand-in deleted outside Terraform come back.
        let bucket = after["bucket"].as_str().unwrap().to_string();
        {
            let cloud = LocalCloudProcess::start(&provider_bin(), &ws.path().join(".dcr"), &[]);
            let r = cloud.delete(&cloud.admin_token, &format!("/storage/v1/b/{bucket}/o/life.csv.enc"));
            assert!(r.status().is_success(), "delete object: {}", r.status());
            let r = cloud.delete(&cloud.admin_token, &format!("/storage/v1/b/{bucket}-stage1/o/life.csv"));
            assert!(r.status().is_success(), "delete stand-in: {}", r.status());
        }
        let plan = ws.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
        assert_eq!(plan.status.code(), Some(2), "terraform {}: drift not detected:\n{}", tf.version, plan.text());
        ws.apply();
        {
            let cloud = LocalCloudProcess::start(&provider_bin(), &ws.path().join(".dcr"), &[]);
            assert!(cloud.download(&cloud.admin_token, &bucket, "life.csv.enc").is_ok(), "object restored");
            assert!(
                cloud.download(&cloud.admin_token, &format!("{bucket}-stage1"), "life.csv").is_ok(),
                "stand-in restored"
            );
        }

        // Import: forget the resource, import it by name, and the plan is empty again.
        let rm = ws.run(&["state", "rm", "dcr_dataset.d"]);
        assert!(rm.status.success(), "{}", rm.text());
        ws.import("dcr_dataset.d", "life");
        let plan = ws.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "terraform {}: plan after import not empty:\n{}",
            tf.version,
            plan.text()
        );
        ws.destroy();
    }
}

/// A `dp_synthetic` stand-in: published, in the declared schema, with no cell of the source (the
/// free-text id column is drawn, never copied); an unchanged configuration plans nothing, so
/// nothing is generated (and spent) again; a unit with more rows than allowed is refused.
#[test]
fn a_dp_synthetic_stand_in_follows_the_schema_and_copies_no_cell() {
    let tf = Terraform::latest();
    let ws = Workspace::new(&tf);
    let stage = |extra: &str| {
        format!("  programming_stage {{\n    mode = \"dp_synthetic\"\n    epsilon = 1\n    rows = 40\n{extra}  }}")
    };
    ws.write("main.tf", &small_config("dpstage", None, &stage("    unit_column = \"id\"\n")));
    ws.write("data.csv", SMALL_CSV);
    ws.init();
    ws.apply();
    let d = dataset(&ws.show_json(), "d");
    let bucket = d["stage1_bucket"].as_str().unwrap().to_string();
    let cloud = LocalCloudProcess::start(&provider_bin(), &ws.path().join(".dcr"), &[]);
    let stand_in = cloud.download(&cloud.admin_token, &bucket, "dpstage.csv").expect("the stand-in");
    drop(cloud);
    assert_eq!(d["stage1_sha256"], sha256_hex(&stand_in));
    let text = String::from_utf8(stand_in).expect("UTF-8");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,age"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 40);
    for row in rows {
        let (id, age) = row.split_once(',').expect("two cells");
        assert!(!id.is_empty() && !id.starts_with("secret"), "{row}");
        assert!(age.parse::<i64>().is_ok_and(|a| (0..=120).contains(&a)), "{row}");
    }
    let plan = ws.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
    assert_eq!(plan.status.code(), Some(0), "an unchanged stand-in plans nothing:\n{}", plan.text());

    // Two rows of one person, where one is allowed: refused at apply, naming the attribute.
    ws.write("data.csv", &format!("{SMALL_CSV}secret-a1,35\n"));
    let out = ws.run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert!(!out.status.success(), "{}", out.text());
    assert!(out.text().contains("programming_stage.max_rows_per_unit"), "{}", out.text());
    assert!(!out.text().contains("secret-a1"), "the unit is not named: {}", out.text());
    ws.write("data.csv", SMALL_CSV);
    ws.destroy();
}

/// The privacy ledger: each DP-synthetic generation is recorded beside the data; the budget
/// refuses at plan a generation it cannot cover, naming the attribute and what is left; destroy
/// keeps the ledger, and a re-created dataset spends from where the old one stopped.
#[test]
fn the_privacy_budget_refuses_at_plan_and_the_ledger_outlives_the_dataset() {
    let tf = Terraform::latest();
    let ws = Workspace::new(&tf);
    let config = |epsilon: &str| {
        let stage = format!(
            "  programming_stage {{\n    mode = \"dp_synthetic\"\n    epsilon = {epsilon}\n    rows = 10\n  }}\n  \
             privacy_budget {{\n    epsilon = 1.5\n  }}\n"
        );
        small_config("ledger", None, &stage)
            + "data \"dcr_privacy_ledger\" \"l\" {\n  dataset = dcr_dataset.d.id\n}\n\
               output \"generations\" {\n  value = length(data.dcr_privacy_ledger.l.entries)\n}\n"
    };
    let outputs = |ws: &Workspace| -> Value {
        serde_json::from_str(&ws.run_ok(&["output", "-json"]).text()).expect("terraform output -json")
    };
    ws.write("main.tf", &config("1"));
    ws.write("data.csv", SMALL_CSV);
    ws.init();
    ws.apply();
    let spent = dataset(&ws.show_json(), "d")["privacy_spent"].as_f64().expect("privacy_spent");
    assert!(spent > 0.9 && spent <= 1.0 + 1e-6, "spent {spent}");
    assert_eq!(outputs(&ws)["generations"]["value"], 1);

    // More than the budget has left: refused at plan, at the attribute, saying what is left.
    ws.write("main.tf", &config("1.2"));
    let plan = ws.run(&["plan", "-input=false", "-no-color"]);
    assert!(!plan.status.success(), "{}", plan.text());
    let text = plan.text();
    assert!(text.contains("programming_stage.epsilon") && text.contains("left"), "{text}");

    // Destroy keeps the ledger; a re-created dataset spends on top of it.
    ws.write("main.tf", &config("1"));
    ws.destroy();
    let bucket = format!("{PROJECT}-ledger");
    {
        let cloud = LocalCloudProcess::start(&provider_bin(), &ws.path().join(".dcr"), &[]);
        let ledger = cloud.download(&cloud.admin_token, &bucket, "ledger.privacy-ledger.json").expect("the ledger");
        let ledger: Value = serde_json::from_slice(&ledger).expect("JSON");
        assert_eq!(ledger["entries"].as_array().map(Vec::len), Some(1), "{ledger}");
        assert!(cloud.download(&cloud.admin_token, &bucket, "ledger.csv.enc").is_err(), "the data is gone");
    }
    ws.write("main.tf", &config("0.5"));
    ws.apply();
    let again = dataset(&ws.show_json(), "d")["privacy_spent"].as_f64().expect("privacy_spent");
    assert!(again > spent, "a re-created dataset starts from what was spent: {again} after {spent}");
    assert_eq!(outputs(&ws)["generations"]["value"], 2);
    ws.destroy();
}
