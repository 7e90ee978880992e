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

  programming_stage {
    mode    = "random"
    rows    = 1000
    readers = ["group:analysts@example.com"]
  }
}
