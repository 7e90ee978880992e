# The data-owner module on the local backend: a dataset with a random stand-in and the policy that
# guards it; pinning a digest changes the policy; a bad column type is refused at plan.

provider "dcr" {}

variables {
  name        = "owner-test"
  source_file = "tests/fixtures/patients.csv"
  columns = [
    { name = "patient_id", type = "string", max_length = 10 },
    { name = "age", type = "integer", min = 0, max = 120 },
    { name = "region", type = "category", values = ["north", "south", "east", "west"] },
  ]
  stand_in     = { mode = "random", rows = 50, readers = ["user:analyst@example.com"] }
  allow_debug  = true
  output_rules = { max_bytes = 4096, allowed_extensions = ["csv"] }
}

run "a_dataset_and_the_policy_guarding_it" {
  assert {
    condition     = output.dataset_id == "dcr-local-owner-test/owner-test"
    error_message = "dataset_id is ${output.dataset_id}"
  }
  assert {
    condition     = output.policy_name == "owner-test" && output.policy_version == 1
    error_message = "policy ${output.policy_name} version ${output.policy_version}"
  }
  assert {
    condition     = output.stage1_uri == "gs://dcr-local-owner-test-stage1/owner-test.csv"
    error_message = "stage1_uri is ${output.stage1_uri}"
  }
  assert {
    condition     = output.policy_uri == "gs://dcr-local-policy-owner-test/policy.json"
    error_message = "policy_uri is ${output.policy_uri}"
  }
  assert {
    condition     = output.source_sha256 == filesha256("tests/fixtures/patients.csv")
    error_message = "source_sha256 is not the file's"
  }
}

run "pinning_a_digest_changes_only_the_policy" {
  variables {
    allowed_image_digests = ["sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b"]
  }
  assert {
    condition     = output.policy_version == 2
    error_message = "policy version ${output.policy_version}"
  }
  assert {
    condition     = strcontains(output.attribute_condition, "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b")
    error_message = "the condition does not pin the digest: ${output.attribute_condition}"
  }
  assert {
    condition     = output.source_sha256 == run.a_dataset_and_the_policy_guarding_it.source_sha256
    error_message = "the dataset changed"
  }
}

run "a_column_type_outside_the_list_is_refused_at_plan" {
  command = plan
  variables {
    columns = [{ name = "patient_id", type = "date" }]
  }
  expect_failures = [var.columns]
}
