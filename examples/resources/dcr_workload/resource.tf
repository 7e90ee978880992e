# The research team's notebook, run on the hospital's data. The hospital's policy pins the digest
# of exactly this image (see the dcr_image_digest data source), so the run waits for the policy.
resource "dcr_workload" "study" {
  name     = "diabetes-study"
  notebook = "${path.module}/analysis.ipynb"
  parameters = jsonencode({
    min_group_size = 10
  })

  input {
    name    = "patients" # the notebook reads $DCR_INPUTS_DIR/patients.csv
    dataset = dcr_dataset.patients.id
    policy  = "diabetes-study" # by name: the policy pins this image, not the other way round
  }

  output {
    bucket = "research-team-results"
  }

  depends_on = [dcr_policy.study]
}

output "results" {
  value = dcr_workload.study.output_uri
}

output "attested_image" {
  value = dcr_workload.study.attestation_claims.image_digest
}
