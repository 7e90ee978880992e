# The data owner's side of a clean room on Google Cloud: a hospital publishes its patient table as a
# dcr_dataset in its own project and says, in a dcr_policy, which workload images may ever read it.
# The research team runs its notebook from another project (../consumer). See ../README.md for the
# hand-off between the two, and docs/guides/gcp.md for what each project needs first.

terraform {
  required_providers {
    dcr = {
      source = "dcr/dcr"
    }
  }
}

variable "project" {
  description = "The data owner's project id."
  type        = string
}

variable "region" {
  description = "Where the data lives: the buckets' location and the KMS key ring's."
  type        = string
  default     = "us-central1"
}

variable "allowed_image_digests" {
  description = "Digests of the workload images the hospital approved (the consumer's image_digest output, after review). Empty: nothing may read the data yet."
  type        = list(string)
  default     = []
}

variable "readers" {
  description = "IAM members who may read the results a run releases, besides the consumer (e.g. [\"group:hospital-analysts@example.com\"])."
  type        = set(string)
  default     = null
}

# Credentials: Application Default Credentials (gcloud auth application-default login) or
# GOOGLE_OAUTH_ACCESS_TOKEN.
provider "dcr" {
  gcp {
    project = var.project
    region  = var.region
  }
}

resource "dcr_dataset" "patients" {
  name         = "patients"
  source       = "${path.module}/data/patients.csv"
  location     = var.region
  kms_location = var.region

  labels = {
    owner = "hospital"
  }

  schema {
    column {
      name       = "patient_id"
      type       = "string"
      max_length = 12
    }
    column {
      name = "age"
      type = "integer"
      min  = 0
      max  = 110
    }
    column {
      name   = "sex"
      type   = "category"
      values = ["F", "M"]
    }
    column {
      name = "bmi"
      type = "float"
      min  = 10
      max  = 70
    }
    column {
      name = "systolic_bp"
      type = "integer"
      min  = 60
      max  = 250
    }
    column {
      name   = "smoker"
      type   = "category"
      values = ["no", "yes"]
    }
    column {
      name   = "region"
      type   = "category"
      values = ["north", "south", "east", "west"]
    }
  }
}

# Only images whose digest is listed, attested by Confidential Space on confidential hardware with a
# production image Google still supports, can exchange their token for decrypt on the dataset's key
# and read on its bucket. `terraform plan` shows the generated attribute condition.
resource "dcr_policy" "study" {
  name                  = "diabetes-study"
  datasets              = [dcr_dataset.patients.id]
  allowed_image_digests = var.allowed_image_digests
  location              = var.region

  output {
    max_bytes          = 65536
    allowed_extensions = ["csv", "json"]
    readers            = var.readers
  }
}

# What the hospital hands to the research team: with these three values the consumer's workload
# finds the data and the policy without reading anything in this project.
output "dataset" {
  description = "The dataset's id, the consumer's `dataset` variable."
  value       = dcr_dataset.patients.id
}

output "policy_audience" {
  description = "Where an attested workload exchanges its token for access: the consumer's `policy_audience` variable."
  value       = dcr_policy.study.audience
}

output "policy_uri" {
  description = "The policy document the workload checks its output rules against: the consumer's `policy_uri` variable."
  value       = dcr_policy.study.policy_uri
}

output "attribute_condition" {
  description = "What every attestation token must satisfy (generated from the policy)."
  value       = dcr_policy.study.attribute_condition
}
