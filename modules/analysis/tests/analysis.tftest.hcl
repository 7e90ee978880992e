# The analysis module on the local backend: its digest is known at plan; an owner (the data-owner
# module) pins it; the workload then runs, and its attested image is that digest.

provider "dcr" {}

variables {
  owner_columns = [
    { name = "patient_id", type = "string", max_length = 10 },
    { name = "age", type = "integer", min = 0, max = 120 },
    { name = "region", type = "category", values = ["north", "south", "east", "west"] },
  ]
}

run "owner" {
  module {
    source = "../data-owner"
  }
  variables {
    name        = "analysis-test"
    source_file = "tests/fixtures/patients.csv"
    columns     = var.owner_columns
    allow_debug = true
  }
}

run "digest_known_at_plan" {
  command = plan
  variables {
    name          = "count-test"
    notebook      = "tests/fixtures/count.ipynb"
    parameters    = { min_group_size = 10 }
    inputs        = [{ name = "patients", dataset = run.owner.dataset_id, policy = run.owner.policy_name }]
    output_bucket = "analysis-test-results"
  }
  assert {
    condition     = can(regex("^sha256:[0-9a-f]{64}$", output.image_digest))
    error_message = "image_digest is ${output.image_digest}"
  }
}

run "owner_pins_the_digest" {
  module {
    source = "../data-owner"
  }
  variables {
    name                  = "analysis-test"
    source_file           = "tests/fixtures/patients.csv"
    columns               = var.owner_columns
    allow_debug           = true
    allowed_image_digests = [run.digest_known_at_plan.image_digest]
  }
}

run "the_workload_runs_the_pinned_image" {
  variables {
    name           = "count-test"
    notebook       = "tests/fixtures/count.ipynb"
    parameters     = { min_group_size = 10 }
    inputs         = [{ name = "patients", dataset = run.owner.dataset_id, policy = run.owner.policy_name }]
    output_bucket  = "analysis-test-results"
    policies_ready = [run.owner_pins_the_digest.policy_version]
  }
  assert {
    condition     = output.image_digest == run.digest_known_at_plan.image_digest
    error_message = "the image changed between plan and apply"
  }
  assert {
    condition     = output.status == "TERMINATED" && output.attestation_claims.image_digest == output.image_digest
    error_message = "status ${output.status}, attested ${output.attestation_claims.image_digest}"
  }
  assert {
    condition     = output.output_uri == "gs://analysis-test-results/count-test/${trimprefix(output.image_digest, "sha256:")}/"
    error_message = "output_uri is ${output.output_uri}"
  }
  assert {
    condition     = contains(output.attestation_claims.nonces, output.output_manifest_sha256)
    error_message = "the token is not bound to the output manifest"
  }
}
