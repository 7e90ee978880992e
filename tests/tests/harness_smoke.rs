//! The harness itself, on every installed Terraform: the wrappers run, the CLI configuration
//! parses, and a provider published in the filesystem mirror installs. These need no provider
//! build, so when they fail the harness is at fault, not the provider.

use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::Workspace;

#[test]
fn outputs_apply_on_every_terraform() {
    for tf in Terraform::all() {
        let ws = Workspace::without_provider(&tf);
        ws.write("main.tf", "output \"x\" {\n  value = 1\n}\n");
        ws.init();
        ws.apply();
        let show = ws.show_json();
        assert_eq!(show["values"]["outputs"]["x"]["value"], 1, "terraform {}: {show:#}", tf.version);
        assert!(ws.state_file_text().contains("\"x\""), "terraform {}", tf.version);
        ws.assert_no_changes();
        // Reports carry everything a CI log needs to explain a failure.
        let out = ws.run(&["version"]);
        assert!(out.success(), "{out}");
        assert!(out.stdout.starts_with(&format!("Terraform v{}", tf.version)), "{out}");
    }
}

#[test]
fn a_provider_in_the_mirror_installs_on_every_terraform() {
    for tf in Terraform::all() {
        let stand_in = std::env::temp_dir().join(format!("dcr-e2e/stand-in-provider-{}", std::process::id()));
        std::fs::write(&stand_in, "#!/bin/sh\nexit 1\n").unwrap();
        let ws = Workspace::with_provider_bin(&tf, &stand_in);
        std::fs::remove_file(&stand_in).unwrap();
        ws.write(
            "main.tf",
            "terraform {\n  required_providers {\n    dcr = {\n      source  = \"dcr/dcr\"\n      version = \"0.1.0\"\n    }\n  }\n}\n",
        );
        let init = ws.init();
        let lock = std::fs::read_to_string(ws.path().join(".terraform.lock.hcl"))
            .unwrap_or_else(|e| panic!("terraform {}: no lock file ({e}):\n{init}", tf.version));
        assert!(lock.contains("provider \"registry.terraform.io/dcr/dcr\""), "terraform {}: {lock}", tf.version);
        assert!(lock.contains("version     = \"0.1.0\""), "terraform {}: {lock}", tf.version);
        let installed = ws.path().join(".terraform/providers/registry.terraform.io/dcr/dcr/0.1.0/linux_amd64");
        assert!(installed.exists(), "terraform {}: {} missing:\n{init}", tf.version, installed.display());
    }
}

#[test]
fn a_provider_missing_from_the_mirror_is_not_fetched_from_the_network() {
    for tf in Terraform::all() {
        let ws = Workspace::without_provider(&tf);
        ws.write("main.tf", "terraform {\n  required_providers {\n    dcr = { source = \"dcr/dcr\" }\n  }\n}\n");
        let out = ws.run(&["init", "-input=false", "-no-color"]);
        assert!(!out.success(), "terraform {}: init found a dcr provider in an empty mirror:\n{out}", tf.version);
        // Only the mirror was searched: the registry is never asked for our provider.
        let text = out.text();
        assert!(text.contains("was not found in any of the search") && text.contains(".e2e/mirror"), "{out}");
    }
}
