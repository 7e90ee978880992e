output "image_digest" {
  description = "Digest of the analysis image every owner pinned."
  value       = module.analysis.image_digest
}

output "output_uri" {
  description = "Where the run's results are: `dcr results` and `dcr verify` take it."
  value       = module.analysis.output_uri
}

output "output_manifest_sha256" {
  description = "SHA-256 of the run's output manifest."
  value       = module.analysis.output_manifest_sha256
}

output "attestation_claims" {
  description = "The verified claims of the run's attestation token."
  value       = module.analysis.attestation_claims
}

output "datasets" {
  description = "Each owner's dataset id, by input name."
  value       = { for k, o in module.owner : k => o.dataset_id }
}

output "policies" {
  description = "Each owner's policy: name, version, document URI and attribute condition, by input name."
  value = { for k, o in module.owner : k => {
    name                = o.policy_name
    version             = o.policy_version
    policy_uri          = o.policy_uri
    attribute_condition = o.attribute_condition
  } }
}

output "stage1_uris" {
  description = "Each owner's stage-1 stand-in, by input name (null without one)."
  value       = { for k, o in module.owner : k => o.stage1_uri }
}
