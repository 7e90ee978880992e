# The digest the workload below will run, for the data owner to review and pin. Same attributes as
# the dcr_workload resource; nothing is pushed or run.
data "dcr_image_digest" "study" {
  name     = "diabetes-study"
  notebook = "${path.module}/analysis.ipynb"
  parameters = jsonencode({
    min_group_size = 10
  })

  input {
    name    = "patients"
    dataset = dcr_dataset.patients.id
    policy  = "diabetes-study"
  }

  output {
    bucket = "research-team-results"
  }
}

resource "dcr_policy" "study" {
  name                  = "diabetes-study"
  datasets              = [dcr_dataset.patients.id]
  allowed_image_digests = [data.dcr_image_digest.study.digest]
  allow_debug           = true # local backend only
}
