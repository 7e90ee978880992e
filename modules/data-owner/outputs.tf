output "dataset_id" {
  description = "The dataset's id (`BUCKET/NAME`), for a workload's or an analysis module's inputs."
  value       = dcr_dataset.this.id
}

output "policy_name" {
  description = "The policy's name, for a workload's inputs. It does not depend on the policy resource, so an image can name it while the policy pins that image's digest."
  value       = local.policy_name
}

output "policy_version" {
  description = "The policy document's version. Pass it to the analysis module's `policies_ready`, so its workload runs only once the policy pins the image."
  value       = dcr_policy.this.policy_version
}

output "policy_uri" {
  description = "`gs://` URI of the policy document (auditors and `dcr run --policy` read it)."
  value       = dcr_policy.this.policy_uri
}

output "audience" {
  description = "Where workloads exchange their attestation token; hand it to consumers in other projects."
  value       = dcr_policy.this.audience
}

output "attribute_condition" {
  description = "The CEL condition every attestation token must satisfy."
  value       = dcr_policy.this.attribute_condition
}

output "stage1_uri" {
  description = "`gs://` URI of the stage-1 stand-in (null without one)."
  value       = dcr_dataset.this.stage1_uri
}

output "privacy_spent" {
  description = "The privacy loss DP-synthetic stand-ins of this dataset have spent (its ledger)."
  value       = dcr_dataset.this.privacy_spent
}

output "source_sha256" {
  description = "SHA-256 of the source file."
  value       = dcr_dataset.this.source_sha256
}
