# A data owner's side of a clean room: the dataset (validated, encrypted here, stored privately,
# with its stage-1 stand-in) and the policy saying which workload images may ever read it.

locals {
  policy_name = coalesce(var.policy_name, var.name)
}

resource "dcr_dataset" "this" {
  name     = var.name
  source   = var.source_file
  bucket   = var.bucket
  location = var.location
  labels   = length(var.labels) > 0 ? var.labels : null

  schema {
    dynamic "column" {
      for_each = var.columns
      content {
        name       = column.value.name
        type       = column.value.type
        min        = column.value.min
        max        = column.value.max
        values     = column.value.values
        max_length = column.value.max_length
        nullable   = column.value.nullable
      }
    }
  }

  dynamic "programming_stage" {
    for_each = var.stand_in == null ? [] : [var.stand_in]
    content {
      mode              = programming_stage.value.mode
      readers           = programming_stage.value.readers
      epsilon           = programming_stage.value.epsilon
      delta             = programming_stage.value.delta
      bins              = programming_stage.value.bins
      rows              = programming_stage.value.rows
      unit_column       = programming_stage.value.unit_column
      max_rows_per_unit = programming_stage.value.max_rows_per_unit
      public_source     = programming_stage.value.public_source
    }
  }

  dynamic "privacy_budget" {
    for_each = var.privacy_budget == null ? [] : [var.privacy_budget]
    content {
      epsilon = privacy_budget.value.epsilon
      delta   = privacy_budget.value.delta
    }
  }
}

resource "dcr_policy" "this" {
  name                          = local.policy_name
  datasets                      = [dcr_dataset.this.id]
  allowed_image_digests         = var.allowed_image_digests
  allow_debug                   = var.allow_debug
  require_confidential_hardware = var.require_confidential_hardware
  allowed_hardware              = var.allowed_hardware

  dynamic "output" {
    for_each = var.output_rules == null ? [] : [var.output_rules]
    content {
      max_bytes          = output.value.max_bytes
      allowed_extensions = output.value.allowed_extensions
      readers            = output.value.readers
    }
  }
}
