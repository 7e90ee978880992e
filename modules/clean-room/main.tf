# A clean room: N data owners (a dataset and a policy each) and one analysis they all approve.
# Every owner's policy pins the analysis image's digest, and the workload runs once all of them do.
#
# The image's inputs name the datasets by id. Those ids are derived here from the owners'
# variables, not read from the owner modules: a module called with for_each is referenced as a
# whole, so reading its dataset ids would make the image depend on the policies that pin it (a
# cycle). A precondition checks that the derived ids are the datasets' own.

locals {
  dataset_names = { for k, o in var.owners : k => coalesce(o.dataset_name, k) }
  dataset_ids = {
    for k, o in var.owners : k => "${coalesce(o.bucket, "${var.project}-${local.dataset_names[k]}")}/${local.dataset_names[k]}"
  }
  policy_names = { for k, o in var.owners : k => coalesce(o.policy_name, k) }
}

module "owner" {
  source   = "../data-owner"
  for_each = var.owners

  name                          = local.dataset_names[each.key]
  source_file                   = each.value.source_file
  columns                       = each.value.columns
  bucket                        = each.value.bucket
  labels                        = each.value.labels
  stand_in                      = each.value.stand_in
  privacy_budget                = each.value.privacy_budget
  policy_name                   = local.policy_names[each.key]
  allowed_image_digests         = [module.analysis.image_digest]
  allow_debug                   = each.value.allow_debug
  require_confidential_hardware = each.value.require_confidential_hardware
  output_rules                  = each.value.output_rules
}

module "analysis" {
  source = "../analysis"

  name            = var.analysis.name
  notebook        = var.analysis.notebook
  parameters      = var.analysis.parameters
  output_bucket   = var.analysis.output_bucket
  output_prefix   = var.analysis.output_prefix
  max_run_seconds = var.analysis.max_run_seconds
  base_image      = var.analysis.base_image
  registry        = var.analysis.registry
  service_account = var.analysis.service_account
  zone            = var.analysis.zone
  inputs = [for k in sort(keys(var.owners)) : {
    name    = k
    dataset = local.dataset_ids[k]
    policy  = local.policy_names[k]
  }]
  policies_ready = { for k, o in module.owner : k => o.policy_version }
}

# The ids the image names are the datasets' own.
check "dataset_ids" {
  assert {
    condition     = alltrue([for k, o in module.owner : o.dataset_id == local.dataset_ids[k]])
    error_message = "A dataset's id differs from the one the analysis image names: set `project` to the provider's project."
  }
}
