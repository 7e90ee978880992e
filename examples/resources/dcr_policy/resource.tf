# On Google Cloud: only the reviewed notebook image, in Confidential Space on confidential
# hardware, can read the dataset. Approving another notebook is adding its digest here.
resource "dcr_policy" "study" {
  provider = dcr.gcp

  name     = "diabetes-study"
  datasets = [dcr_dataset.patients.id]

  allowed_image_digests = [
    "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
  ]
  allowed_hardware = ["GCP_INTEL_TDX", "GCP_AMD_SEV"]

  output {
    max_bytes          = 1048576
    allowed_extensions = ["csv", "json"]
    readers            = ["group:study-team@example.com"]
  }
}

# On the local backend the simulated TEE is not confidential hardware and reports a debug
# status; a local policy accepts it explicitly.
resource "dcr_policy" "local" {
  name                  = "diabetes-study"
  datasets              = [dcr_dataset.patients.id]
  allowed_image_digests = []
  allow_debug           = true
}
