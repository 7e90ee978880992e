//! What a dataset is, independent of Terraform and of any cloud: its declared schema, the checks a
//! source file must pass, and the stage-1 stand-ins derived from the schema.

pub mod checkcache;
pub mod columns;
pub mod csvcheck;
pub mod csvscan;
pub mod standin;

pub use columns::DatasetSchema;
pub use csvcheck::{CsvError, CsvSummary, HashingReader, check_csv};
