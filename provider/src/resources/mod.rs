//! Terraform resources, one per file.

pub mod dataset;
