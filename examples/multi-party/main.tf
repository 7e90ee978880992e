# Two data owners, one study. A hospital holds patients (age, region); a lab holds HbA1c results.
# Neither may see the other's rows, and the research team may see neither: a notebook joining both
# runs in a (simulated) TEE that only the two owners' policies, each pinning the same reviewed image,
# let decrypt the two datasets. Only per-region aggregates leave, checked against both owners'
# output rules.
#
# Run: tests/install-tools.sh && source tests/provider-env.sh, then terraform init and apply here
# (runtime-image/build.sh must have built the base runtime image; tests/run.sh does).

terraform {
  required_providers {
    dcr = {
      source = "dcr/dcr"
    }
  }
}

provider "dcr" {}

# --- the hospital -------------------------------------------------------------------------------
resource "dcr_dataset" "patients" {
  name   = "hospital-patients"
  source = "${path.module}/data/patients.csv"
  schema {
    column {
      name       = "patient_id"
      type       = "string"
      max_length = 10
    }
    column {
      name = "age"
      type = "integer"
      min  = 0
      max  = 120
    }
    column {
      name   = "region"
      type   = "category"
      values = ["north", "south", "east", "west"]
    }
  }
}

resource "dcr_policy" "hospital" {
  name                  = "hospital-study"
  datasets              = [dcr_dataset.patients.id]
  allowed_image_digests = [data.dcr_image_digest.join.digest]
  allow_debug           = true # the local simulated TEE reports a debug status
  output {
    max_bytes          = 4096
    allowed_extensions = ["csv"]
  }
}

# --- the lab -------------------------------------------------------------------------------------
resource "dcr_dataset" "labs" {
  name   = "lab-results"
  source = "${path.module}/data/lab_results.csv"
  schema {
    column {
      name       = "patient_id"
      type       = "string"
      max_length = 10
    }
    column {
      name = "hba1c"
      type = "float"
      min  = 3
      max  = 20
    }
    column {
      name = "glucose"
      type = "integer"
      min  = 20
      max  = 600
    }
  }
}

resource "dcr_policy" "lab" {
  name                  = "lab-study"
  datasets              = [dcr_dataset.labs.id]
  allowed_image_digests = [data.dcr_image_digest.join.digest]
  allow_debug           = true
  output {
    max_bytes          = 65536
    allowed_extensions = ["csv", "json"]
  }
}

# --- the research team ---------------------------------------------------------------------------
# Both owners review the same notebook and pin the digest of the same image.
data "dcr_image_digest" "join" {
  name     = "hba1c-join"
  notebook = "${path.module}/join.ipynb"
  input {
    name    = "patients"
    dataset = dcr_dataset.patients.id
    policy  = "hospital-study"
  }
  input {
    name    = "labs"
    dataset = dcr_dataset.labs.id
    policy  = "lab-study"
  }
  output {
    bucket = "research-joined-results"
  }
}

resource "dcr_workload" "join" {
  name     = "hba1c-join"
  notebook = "${path.module}/join.ipynb"
  input {
    name    = "patients"
    dataset = dcr_dataset.patients.id
    policy  = "hospital-study"
  }
  input {
    name    = "labs"
    dataset = dcr_dataset.labs.id
    policy  = "lab-study"
  }
  output {
    bucket = "research-joined-results"
  }
  depends_on = [dcr_policy.hospital, dcr_policy.lab]
}

output "results" {
  value = dcr_workload.join.output_uri
}

output "attested_image" {
  value = dcr_workload.join.attestation_claims.image_digest
}
