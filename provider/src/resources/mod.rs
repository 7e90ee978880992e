//! Terraform resources, one per file, and the mechanics they share.

pub mod common;
pub mod dataset;
pub mod policy;
pub mod workload;

#[cfg(test)]
mod declared_rules;
