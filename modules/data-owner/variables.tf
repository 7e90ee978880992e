variable "name" {
  description = "Dataset name: 3 to 24 lowercase letters, digits and `-`, starting with a letter."
  type        = string
}

variable "source_file" {
  description = "Path to the source CSV (its first row names the columns). Read at plan time; encrypted on this machine before upload."
  type        = string
}

variable "columns" {
  description = "The declared schema, one object per column in file order: `name`, `type` (`integer`, `float`, `category`, `string`), `min`/`max` for numbers, `values` for categories, `max_length` for strings, `nullable`."
  type = list(object({
    name       = string
    type       = string
    min        = optional(number)
    max        = optional(number)
    values     = optional(list(string))
    max_length = optional(number)
    nullable   = optional(bool)
  }))
  validation {
    condition     = length(var.columns) > 0
    error_message = "columns must declare at least one column."
  }
  validation {
    condition     = alltrue([for c in var.columns : contains(["integer", "float", "category", "string"], c.type)])
    error_message = "Each column's type must be one of integer, float, category, string."
  }
}

variable "bucket" {
  description = "Bucket of the encrypted data. Default: `PROJECT-NAME`."
  type        = string
  default     = null
}

variable "location" {
  description = "Location of the dataset's buckets. Default: `US`."
  type        = string
  default     = null
}

variable "labels" {
  description = "Labels set on the dataset's buckets."
  type        = map(string)
  default     = {}
}

variable "stand_in" {
  description = "The stage-1 stand-in analysts explore (`programming_stage`): `mode` (`random`, `dp_synthetic`, `sample`, `none`), `readers`, and the mode's settings (`epsilon`, `delta`, `bins`, `rows`, `unit_column`, `max_rows_per_unit`, `public_source`). Null: no stand-in."
  type = object({
    mode              = string
    readers           = optional(set(string))
    epsilon           = optional(number)
    delta             = optional(number)
    bins              = optional(number)
    rows              = optional(number)
    unit_column       = optional(string)
    max_rows_per_unit = optional(number)
    public_source     = optional(string)
  })
  default = null
}

variable "privacy_budget" {
  description = "Cap on what all DP-synthetic stand-ins of the dataset may spend together (`epsilon`, optional `delta`). Null: no cap."
  type = object({
    epsilon = number
    delta   = optional(number)
  })
  default = null
}

variable "policy_name" {
  description = "Name of the policy guarding the dataset: 4 to 28 lowercase letters, digits and `-`. Default: the dataset's name."
  type        = string
  default     = null
}

variable "allowed_image_digests" {
  description = "Digests of the workload images the owner approved (e.g. an analysis module's `image_digest`). Empty: nothing may read the data yet."
  type        = set(string)
  default     = []
}

variable "allow_debug" {
  description = "Accept debug images. The local simulated TEE reports a debug status: local clean rooms set true; refused on Google Cloud."
  type        = bool
  default     = null
}

variable "require_confidential_hardware" {
  description = "Require Confidential Space on confidential hardware. Default: true on Google Cloud (where it cannot be turned off), false locally."
  type        = bool
  default     = null
}

variable "allowed_hardware" {
  description = "Hardware accepted when confidential hardware is required (`GCP_AMD_SEV`, `GCP_AMD_SEV_ES`, `GCP_INTEL_TDX`). Default: all."
  type        = set(string)
  default     = null
}

variable "output_rules" {
  description = "What may leave the TEE from a run reading this dataset: `max_bytes`, `allowed_extensions`, and `readers` who may read released results. Null: the provider's defaults."
  type = object({
    max_bytes          = optional(number)
    allowed_extensions = optional(set(string))
    readers            = optional(set(string))
  })
  default = null
}
