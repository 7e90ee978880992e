# Terraform 1.8 and later.
output "attested_hardware" {
  value = provider::dcr::verify_attestation(var.attestation_token, {
    issuer                        = "https://confidentialcomputing.googleapis.com"
    image_digest                  = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b"
    require_confidential_hardware = true
    allow_debug                   = false
  }).hwmodel
}
