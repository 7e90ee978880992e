terraform {
  # optional() object attributes.
  required_version = ">= 1.3"
  required_providers {
    dcr = {
      source = "dcr/dcr"
    }
  }
}
