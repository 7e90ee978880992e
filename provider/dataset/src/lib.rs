//! What a dataset is, independent of Terraform and of any cloud: its declared schema (columns
//! with types and domains), the check a source CSV must pass (streamed, hashed as it is read), a
//! cache of check results, and the stage-1 stand-ins derived from the schema.
//!
//! The provider reads its `schema` block into a [`DatasetSchema`] and runs these; the coming `dcr`
//! command runs the same check and generates the same stand-ins without Terraform.

pub mod checkcache;
pub mod csvcheck;
pub mod csvscan;
pub mod schema;
pub mod standin;

pub use csvcheck::{CsvError, CsvSummary, HashingReader, check_csv};
pub use schema::DatasetSchema;
