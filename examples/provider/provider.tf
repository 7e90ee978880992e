terraform {
  required_providers {
    dcr = {
      source = "dcr/dcr"
    }
  }
}

# The embedded local cloud (the default): everything runs on this machine.
provider "dcr" {
  local {
    state_dir = ".dcr"
  }
}

# Google Cloud: credentials from Application Default Credentials. What the project needs first (APIs,
# roles, the VM's service account, network, organization policies): docs/guides/gcp.md.
provider "dcr" {
  alias = "gcp"
  gcp {
    project = "my-project"
    region  = "europe-west4"
  }
}
