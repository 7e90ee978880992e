output "image_digest" {
  description = "Digest of the workload image, known at plan time: what the owners pin (`allowed_image_digests`)."
  value       = data.dcr_image_digest.this.digest
}

output "output_uri" {
  description = "Where the run's results are (`gs://BUCKET/PREFIX<digest hex>/`): `dcr results` and `dcr verify` take it."
  value       = dcr_workload.this.output_uri
}

output "output_manifest_sha256" {
  description = "SHA-256 of the run's output manifest: the attestation token's nonce."
  value       = dcr_workload.this.output_manifest_sha256
}

output "attestation_claims" {
  description = "The verified claims of the run's attestation token."
  value       = dcr_workload.this.attestation_claims
}

output "status" {
  description = "The VM's last status (`TERMINATED` once the run ended)."
  value       = dcr_workload.this.status
}

output "shared_with" {
  description = "Members every input policy lets read the results; they were granted read access to this run's objects."
  value       = dcr_workload.this.shared_with
}
