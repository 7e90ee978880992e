resource "dcr_dataset" "patients" {
  name   = "patients"
  source = "${path.module}/data/patients.csv"

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
  }

  # Analysts explore rows drawn from a differentially private model of the data: its statistics
  # survive, and no one patient's presence changes it by more than epsilon allows.
  programming_stage {
    mode        = "dp_synthetic"
    epsilon     = 1
    unit_column = "patient_id"
    readers     = ["group:analysts@example.com"]
  }

  # All stand-ins of this dataset together may spend at most this; the ledger beside the data
  # keeps the count, even across destroy and re-create.
  privacy_budget {
    epsilon = 3
  }
}
