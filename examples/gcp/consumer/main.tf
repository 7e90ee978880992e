# The consumer's side of a clean room on Google Cloud: a research team runs its notebook on the
# hospital's data (../owner) in a Confidential Space VM in its own project. The hospital pins the
# digest of exactly this image; apply pushes it to Artifact Registry, runs it, waits, and succeeds
# only when the attestation token released with the results verifies. See ../README.md for the
# hand-off, and docs/guides/gcp.md for what each project needs first.

terraform {
  required_providers {
    dcr = {
      source = "dcr/dcr"
    }
  }
}

variable "project" {
  description = "The consumer's project id: the VM, the output bucket and the image repository live here."
  type        = string
}

variable "region" {
  description = "Region of the VM, the output bucket and the Artifact Registry repository."
  type        = string
  default     = "us-central1"
}

variable "zone" {
  description = "Zone of the VM. Defaults to REGION-a."
  type        = string
  default     = null
}

variable "registry" {
  description = "Artifact Registry repository to push the image to. Defaults to REGION-docker.pkg.dev/PROJECT/dcr (created if missing)."
  type        = string
  default     = null
}

variable "service_account" {
  description = "Service account the VM runs as. Defaults to dcr-workload@PROJECT.iam.gserviceaccount.com (docs/guides/gcp.md creates it)."
  type        = string
  default     = null
}

variable "confidential_type" {
  description = "SEV (n2d-standard-2) or TDX (c3-standard-4)."
  type        = string
  default     = "SEV"
}

# From the hospital: its outputs of the same names (terraform -chdir=../owner output).
variable "dataset" {
  description = "The hospital's dataset id (its `dataset` output)."
  type        = string
}

variable "policy_audience" {
  description = "The hospital's policy audience (its `policy_audience` output)."
  type        = string
}

variable "policy_uri" {
  description = "The hospital's policy document (its `policy_uri` output)."
  type        = string
}

locals {
  zone            = coalesce(var.zone, "${var.region}-a")
  registry        = coalesce(var.registry, "${var.region}-docker.pkg.dev/${var.project}/dcr")
  service_account = coalesce(var.service_account, "dcr-workload@${var.project}.iam.gserviceaccount.com")
  output_bucket   = "${var.project}-dcr-results"
  parameters      = jsonencode({ min_group_size = 10 })
}

# Credentials: Application Default Credentials (gcloud auth application-default login) or
# GOOGLE_OAUTH_ACCESS_TOKEN.
provider "dcr" {
  gcp {
    project = var.project
    region  = var.region
    zone    = local.zone
  }
}

# The image the notebook becomes, computed without running anything: the same attributes as the
# workload below give the same digest. The hospital reviews the notebook and this manifest (what
# the run reads, where results go) and pins the digest.
data "dcr_image_digest" "study" {
  name       = "diabetes-study"
  notebook   = "${path.module}/analysis.ipynb"
  parameters = local.parameters

  input {
    name       = "patients"
    dataset    = var.dataset
    audience   = var.policy_audience
    policy_uri = var.policy_uri
  }

  output {
    bucket = local.output_bucket
  }
}

resource "dcr_workload" "study" {
  name       = "diabetes-study"
  notebook   = "${path.module}/analysis.ipynb"
  parameters = local.parameters

  registry          = local.registry
  service_account   = local.service_account
  confidential_type = var.confidential_type

  input {
    name       = "patients" # the notebook reads $DCR_INPUTS_DIR/patients.csv
    dataset    = var.dataset
    audience   = var.policy_audience
    policy_uri = var.policy_uri
  }

  output {
    bucket = local.output_bucket
  }
}

output "image_digest" {
  description = "The digest the hospital pins (its allowed_image_digests)."
  value       = data.dcr_image_digest.study.digest
}

output "manifest" {
  description = "The workload manifest baked into the image, for the hospital's review."
  value       = data.dcr_image_digest.study.manifest
}

output "results" {
  description = "Where the released results, their manifest and the attestation token are."
  value       = dcr_workload.study.output_uri
}

output "output_manifest_sha256" {
  description = "SHA-256 of the output manifest: the nonce of the attestation token."
  value       = dcr_workload.study.output_manifest_sha256
}

output "attestation_token" {
  description = "The attestation token released with the results (verify it: docs/guides/verify-a-result.md)."
  value       = dcr_workload.study.attestation_token
  sensitive   = true
}

output "verified_claims" {
  description = "What the verified attestation token says about the run."
  value = {
    image_digest = dcr_workload.study.attestation_claims.image_digest
    hwmodel      = dcr_workload.study.attestation_claims.hwmodel
    swname       = dcr_workload.study.attestation_claims.swname
    dbgstat      = dcr_workload.study.attestation_claims.dbgstat
    instance     = dcr_workload.study.attestation_claims.instance_name
  }
}
