//! The reusable modules (`modules/`), each through its own `terraform test` files on Terraform
//! 1.15.5 against the local cloud: `data-owner` (a dataset and its policy; a digest pinned; a bad
//! column refused at plan), `analysis` (the digest known at plan, pinned by an owner, then run and
//! attested) and `clean-room` (two owners pinning one analysis that joins both).

use dcr_e2e::clean_room::base_image;
use dcr_e2e::fixtures::copy_repo_dir;
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::Workspace;

fn terraform_test(module: &str) {
    let ws = Workspace::new(&Terraform::latest());
    copy_repo_dir(&ws, "modules");
    let chdir = format!("-chdir=modules/{module}");
    ws.run_ok(&[&chdir, "init", "-input=false", "-no-color"]);
    let out = ws.run_ok(&[&chdir, "test", "-no-color"]);
    let runs = out.stdout.matches("... pass").count();
    assert!(out.stdout.contains("Success!") && runs >= 2, "{out}");
    println!("modules/{module}: {runs} run blocks and files passed in {:?}", out.duration);
}

#[test]
fn data_owner_module_passes_its_terraform_tests() {
    terraform_test("data-owner");
}

#[test]
fn analysis_module_passes_its_terraform_tests() {
    base_image();
    terraform_test("analysis");
}

#[test]
fn clean_room_module_passes_its_terraform_tests() {
    base_image();
    terraform_test("clean-room");
}
