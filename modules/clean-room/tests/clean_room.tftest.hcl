# The clean-room module on the local backend: two owners, one analysis joining both. Each owner's
# policy pins the analysis image, and the run's attested image is that digest.

provider "dcr" {}

variables {
  owners = {
    patients = {
      dataset_name = "cr-patients"
      policy_name  = "cr-hospital"
      source_file  = "tests/fixtures/patients.csv"
      columns = [
        { name = "patient_id", type = "string", max_length = 10 },
        { name = "age", type = "integer", min = 0, max = 120 },
        { name = "region", type = "category", values = ["north", "south", "east", "west"] },
      ]
      stand_in     = { mode = "dp_synthetic", epsilon = 1, unit_column = "patient_id" }
      allow_debug  = true
      output_rules = { allowed_extensions = ["csv"] }
    }
    labs = {
      dataset_name = "cr-labs"
      policy_name  = "cr-lab"
      source_file  = "tests/fixtures/labs.csv"
      columns = [
        { name = "patient_id", type = "string", max_length = 10 },
        { name = "hba1c", type = "float", min = 3, max = 20 },
      ]
      allow_debug  = true
      output_rules = { max_bytes = 65536 }
    }
  }
  analysis = {
    name          = "cr-join"
    notebook      = "tests/fixtures/join.ipynb"
    output_bucket = "cr-results"
  }
}

run "every_owner_pins_the_one_analysis_and_it_runs" {
  assert {
    condition     = alltrue([for p in output.policies : strcontains(p.attribute_condition, output.image_digest)])
    error_message = "a policy does not pin ${output.image_digest}"
  }
  assert {
    condition     = output.attestation_claims.image_digest == output.image_digest
    error_message = "the run attests ${output.attestation_claims.image_digest}"
  }
  assert {
    condition     = output.datasets == { labs = "dcr-local-cr-labs/cr-labs", patients = "dcr-local-cr-patients/cr-patients" }
    error_message = "datasets: ${jsonencode(output.datasets)}"
  }
  assert {
    condition     = output.stage1_uris.patients == "gs://dcr-local-cr-patients-stage1/cr-patients.csv" && output.stage1_uris.labs == null
    error_message = "stage1_uris: ${jsonencode(output.stage1_uris)}"
  }
  assert {
    condition     = contains(output.attestation_claims.nonces, output.output_manifest_sha256)
    error_message = "the token is not bound to the output manifest"
  }
}

run "an_empty_clean_room_is_refused" {
  command = plan
  variables {
    owners = {}
  }
  expect_failures = [var.owners]
}
