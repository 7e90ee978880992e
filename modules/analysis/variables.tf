variable "name" {
  description = "Workload name: 3 to 24 lowercase letters, digits and `-`, starting with a letter."
  type        = string
}

variable "notebook" {
  description = "Path of the reviewed notebook (`.ipynb`). Its bytes are in the image: any change gives a new digest, which the owners must pin again."
  type        = string
}

variable "parameters" {
  description = "papermill parameters, as an object (baked into the image)."
  type        = any
  default     = {}
}

variable "inputs" {
  description = "The datasets the notebook reads: `name` (the notebook reads `$DCR_INPUTS_DIR/NAME.csv`), `dataset` (a data-owner module's `dataset_id`), `policy` (its `policy_name`), and for policies of other projects `audience`, `policy_uri`, `policy_project`, `policy_project_number`."
  type = list(object({
    name                  = string
    dataset               = string
    policy                = optional(string)
    audience              = optional(string)
    policy_uri            = optional(string)
    policy_project        = optional(string)
    policy_project_number = optional(string)
  }))
  validation {
    condition     = length(var.inputs) > 0
    error_message = "inputs must name at least one dataset."
  }
}

variable "policies_ready" {
  description = "What the workload waits for before it runs: the owners' policies that pin `image_digest` (e.g. each data-owner module's `policy_version`). The image digest does not wait for them, so the policies can pin it."
  type        = any
  default     = []
}

variable "output_bucket" {
  description = "The consumer's bucket for released results (created if missing)."
  type        = string
}

variable "output_prefix" {
  description = "Object prefix ending in `/`; each run writes under `PREFIX<digest hex>/`. Default: `NAME/`."
  type        = string
  default     = null
}

variable "output_location" {
  description = "Location of the output bucket when it is created."
  type        = string
  default     = null
}

variable "max_run_seconds" {
  description = "Time limit the launcher enforces on the notebook. Default: 3600."
  type        = number
  default     = null
}

variable "base_image" {
  description = "Base runtime image as `oci:LAYOUT_DIR:TAG`. Default: the layout runtime-image/build.sh writes."
  type        = string
  default     = null
}

variable "registry" {
  description = "Registry repository to push the image to (required on Google Cloud)."
  type        = string
  default     = null
}

variable "service_account" {
  description = "Service account the Confidential Space VM runs as (required on Google Cloud)."
  type        = string
  default     = null
}

variable "zone" {
  description = "Zone of the VM."
  type        = string
  default     = null
}

variable "machine_type" {
  description = "Machine type of the VM."
  type        = string
  default     = null
}

variable "confidential_type" {
  description = "`SEV` or `TDX`."
  type        = string
  default     = null
}

variable "network" {
  description = "VPC network of the VM."
  type        = string
  default     = null
}

variable "subnetwork" {
  description = "Subnetwork of the VM."
  type        = string
  default     = null
}

variable "external_ip" {
  description = "Give the VM an ephemeral external IP."
  type        = bool
  default     = null
}
