# A research team's side of a clean room: the digest of the image that bakes in the reviewed
# notebook (known at plan time, for the owners to pin), and the workload that runs it once they
# have. The digest and the workload take the same attributes, so they describe the same image.

locals {
  parameters = jsonencode(var.parameters)
}

data "dcr_image_digest" "this" {
  name            = var.name
  notebook        = var.notebook
  parameters      = local.parameters
  max_run_seconds = var.max_run_seconds
  base_image      = var.base_image

  dynamic "input" {
    for_each = var.inputs
    content {
      name                  = input.value.name
      dataset               = input.value.dataset
      policy                = input.value.policy
      audience              = input.value.audience
      policy_uri            = input.value.policy_uri
      policy_project        = input.value.policy_project
      policy_project_number = input.value.policy_project_number
    }
  }

  output {
    bucket = var.output_bucket
    prefix = var.output_prefix
  }
}

resource "dcr_workload" "this" {
  name              = var.name
  notebook          = var.notebook
  parameters        = local.parameters
  max_run_seconds   = var.max_run_seconds
  base_image        = var.base_image
  registry          = var.registry
  service_account   = var.service_account
  zone              = var.zone
  machine_type      = var.machine_type
  confidential_type = var.confidential_type
  network           = var.network
  subnetwork        = var.subnetwork
  external_ip       = var.external_ip

  dynamic "input" {
    for_each = var.inputs
    content {
      name                  = input.value.name
      dataset               = input.value.dataset
      policy                = input.value.policy
      audience              = input.value.audience
      policy_uri            = input.value.policy_uri
      policy_project        = input.value.policy_project
      policy_project_number = input.value.policy_project_number
    }
  }

  output {
    bucket   = var.output_bucket
    prefix   = var.output_prefix
    location = var.output_location
  }

  lifecycle {
    postcondition {
      condition     = self.image_digest == data.dcr_image_digest.this.digest
      error_message = "The workload's image is not the one whose digest the owners pinned: the data source and the workload must be given the same attributes."
    }
  }

  depends_on = [var.policies_ready]
}
