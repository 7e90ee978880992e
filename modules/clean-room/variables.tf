variable "project" {
  description = "The provider's project (`dcr-local` on the local backend): datasets without a `bucket` are in `PROJECT-DATASET`."
  type        = string
  default     = "dcr-local"
}

variable "owners" {
  description = "The data owners, by input name (the notebook reads `$DCR_INPUTS_DIR/KEY.csv`). Each: `source_file`, `columns` (as the data-owner module's), and optionally `dataset_name` and `policy_name` (default: the key), `bucket`, `stand_in`, `privacy_budget`, `output_rules`, `allow_debug`, `require_confidential_hardware`, `labels`."
  type = map(object({
    source_file = string
    columns = list(object({
      name       = string
      type       = string
      min        = optional(number)
      max        = optional(number)
      values     = optional(list(string))
      max_length = optional(number)
      nullable   = optional(bool)
    }))
    dataset_name = optional(string)
    policy_name  = optional(string)
    bucket       = optional(string)
    labels       = optional(map(string), {})
    stand_in = optional(object({
      mode              = string
      readers           = optional(set(string))
      epsilon           = optional(number)
      delta             = optional(number)
      bins              = optional(number)
      rows              = optional(number)
      unit_column       = optional(string)
      max_rows_per_unit = optional(number)
      public_source     = optional(string)
    }))
    privacy_budget = optional(object({
      epsilon = number
      delta   = optional(number)
    }))
    output_rules = optional(object({
      max_bytes          = optional(number)
      allowed_extensions = optional(set(string))
      readers            = optional(set(string))
    }))
    allow_debug                   = optional(bool)
    require_confidential_hardware = optional(bool)
  }))
  validation {
    condition     = length(var.owners) > 0
    error_message = "owners must name at least one data owner."
  }
}

variable "analysis" {
  description = "The one workload every owner approves: `name`, `notebook`, `output_bucket`, and optionally `parameters`, `output_prefix`, `max_run_seconds`, `base_image`, and on Google Cloud `registry`, `service_account`, `zone`."
  type = object({
    name            = string
    notebook        = string
    output_bucket   = string
    parameters      = optional(any, {})
    output_prefix   = optional(string)
    max_run_seconds = optional(number)
    base_image      = optional(string)
    registry        = optional(string)
    service_account = optional(string)
    zone            = optional(string)
  })
}
