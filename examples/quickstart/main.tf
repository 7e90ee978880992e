# The dcr quickstart: a hospital publishes a confidential patient table as a dcr_dataset on the
# embedded local cloud (no cloud account needed). The file is validated against its schema,
# encrypted on this machine under a KMS-wrapped data key, and stored in a private bucket; analysts
# get a DP-synthetic stand-in: rows drawn from a model of the table fitted with differential privacy
# (epsilon = 1), recorded in a privacy ledger beside the data.
# A dcr_policy says which workloads may ever read the real data: only attested images whose digest
# the hospital approved, exchanging their attestation token through workload identity federation.
# A research team's notebook (analysis.ipynb) is baked into a workload image; the hospital pins
# its digest, and dcr_workload runs it in a runc container in a simulated TEE, releases only the
# aggregates the policy allows, and verifies the attestation token bound to them.
#
# Run it with examples/quickstart/run.sh (it builds the provider and points Terraform at it).

terraform {
  required_providers {
    dcr = {
      source = "dcr/dcr"
    }
  }
}

# No block: the embedded local cloud, with its state in ./.dcr
provider "dcr" {}

resource "dcr_dataset" "patients" {
  name   = "patients"
  source = "${path.module}/data/patients.csv"

  labels = {
    owner = "hospital-a"
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

  programming_stage {
    mode        = "dp_synthetic"
    epsilon     = 1
    unit_column = "patient_id" # one patient per id: the guarantee covers each patient
    readers     = ["user:analyst@example.com"]
  }
}

# The image the research team's notebook becomes: the same attributes as dcr_workload below give
# the same digest, computed here without running anything. The hospital reviews the notebook (and
# the manifest: what it reads, where results go) and pins this digest.
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

# Who may read the real data: only the reviewed notebook's image. `terraform plan` shows the
# attribute condition generated from this list.
resource "dcr_policy" "study" {
  name                  = "diabetes-study"
  datasets              = [dcr_dataset.patients.id]
  allowed_image_digests = [data.dcr_image_digest.study.digest]

  # The local backend runs workloads in a simulated TEE: not confidential hardware, and open to
  # whoever owns this machine, so its tokens report a debug status. A local policy accepts that
  # explicitly; on Google Cloud this line is refused.
  allow_debug = true

  output {
    max_bytes          = 65536
    allowed_extensions = ["csv", "json"]
    readers            = ["user:analyst@example.com"]
  }
}

# The run: the notebook in a simulated Confidential Space VM on the real data. Apply waits for it
# and verifies the released attestation token before it succeeds.
resource "dcr_workload" "study" {
  name     = "diabetes-study"
  notebook = "${path.module}/analysis.ipynb"
  parameters = jsonencode({
    min_group_size = 10
  })

  input {
    name    = "patients"
    dataset = dcr_dataset.patients.id
    # The policy by name: the policy pins this workload's digest, so it cannot depend on it.
    policy = "diabetes-study"
  }

  output {
    bucket = "research-team-results"
  }

  depends_on = [dcr_policy.study]
}

output "results" {
  description = "Where the released aggregates, their manifest and the attestation token are."
  value       = dcr_workload.study.output_uri
}

output "output_manifest_sha256" {
  description = "SHA-256 of the output manifest: the nonce of the attestation token."
  value       = dcr_workload.study.output_manifest_sha256
}

output "verified_claims" {
  description = "What the verified attestation token says about the run."
  value = {
    image_digest = dcr_workload.study.attestation_claims.image_digest
    nonces       = dcr_workload.study.attestation_claims.nonces
    hwmodel      = dcr_workload.study.attestation_claims.hwmodel
    swname       = dcr_workload.study.attestation_claims.swname
    dbgstat      = dcr_workload.study.attestation_claims.dbgstat
    instance     = dcr_workload.study.attestation_claims.instance_name
  }
}

output "encrypted_object" {
  description = "Where the encrypted source lives."
  value       = dcr_dataset.patients.object_uri
}

output "crypto_key" {
  description = "The KMS key that wraps the data key."
  value       = dcr_dataset.patients.crypto_key
}

output "source_sha256" {
  value = dcr_dataset.patients.source_sha256
}

output "stage1_uri" {
  description = "The DP-synthetic stand-in analysts may read."
  value       = dcr_dataset.patients.stage1_uri
}

output "privacy_spent" {
  description = "The privacy loss the dataset's stand-ins have spent (its ledger outlives destroy)."
  value       = dcr_dataset.patients.privacy_spent
}

output "policy_audience" {
  description = "Where an attested workload exchanges its token for access to the data."
  value       = dcr_policy.study.audience
}

output "attribute_condition" {
  description = "What every attestation token must satisfy (generated from the policy)."
  value       = dcr_policy.study.attribute_condition
}
