# Verify a result's attestation token on any Terraform version: the apply fails, naming the
# check, unless the token was signed by the policy's issuer for the approved image.
data "dcr_verified_attestation" "result" {
  token        = var.attestation_token
  issuer       = dcr_policy.study.issuer
  image_digest = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b"
  nonce        = var.output_manifest_sha256
}

output "attested_image" {
  value = data.dcr_verified_attestation.result.claims.image_digest
}
