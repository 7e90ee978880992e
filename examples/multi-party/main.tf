# Two data owners, one study. A hospital holds patients (age, region); a lab holds HbA1c results.
# Neither may see the other's rows, and the research team may see neither: a notebook joining both
# runs in a (simulated) TEE that only the two owners' policies, each pinning the same reviewed image,
# let decrypt the two datasets. Only per-region aggregates leave, checked against both owners'
# output rules.
#
# Written on the clean-room module (modules/clean-room: a data-owner module per owner, one
# analysis module). Run: tests/install-tools.sh && source tests/provider-env.sh, then terraform
# init and apply here (runtime-image/build.sh must have built the base runtime image; tests/run.sh
# does).

terraform {
  required_providers {
    dcr = {
      source = "dcr/dcr"
    }
  }
}

provider "dcr" {}

module "study" {
  source = "../../modules/clean-room"

  owners = {
    # The notebook reads $DCR_INPUTS_DIR/patients.csv and labs.csv: the keys are the input names.
    patients = {
      dataset_name = "hospital-patients"
      policy_name  = "hospital-study"
      source_file  = "${path.module}/data/patients.csv"
      columns = [
        { name = "patient_id", type = "string", max_length = 10 },
        { name = "age", type = "integer", min = 0, max = 120 },
        { name = "region", type = "category", values = ["north", "south", "east", "west"] },
      ]
      allow_debug  = true # the local simulated TEE reports a debug status
      output_rules = { max_bytes = 4096, allowed_extensions = ["csv"] }
    }
    labs = {
      dataset_name = "lab-results"
      policy_name  = "lab-study"
      source_file  = "${path.module}/data/lab_results.csv"
      columns = [
        { name = "patient_id", type = "string", max_length = 10 },
        { name = "hba1c", type = "float", min = 3, max = 20 },
        { name = "glucose", type = "integer", min = 20, max = 600 },
      ]
      allow_debug  = true
      output_rules = { max_bytes = 65536, allowed_extensions = ["csv", "json"] }
    }
  }

  # Both owners review the same notebook and pin the digest of the same image.
  analysis = {
    name          = "hba1c-join"
    notebook      = "${path.module}/join.ipynb"
    output_bucket = "research-joined-results"
  }
}

output "results" {
  value = module.study.output_uri
}

output "attested_image" {
  value = module.study.attestation_claims.image_digest
}

output "policies" {
  value = module.study.policies
}
