//! Differentially private synthetic data for dcr's stage-1 stand-ins: MST (McKenna, Miklau,
//! Sheldon, "Winning the NIST Contest", JPC 2021) on a dataset's declared schema, with zCDP
//! accounting and exact discrete noise.
//!
//! Everything the generator knows about a column's domain comes from the declared schema, never
//! from the data; the data reaches it only as counts, and every count it uses is noised first.

pub mod accounting;
pub mod coding;
pub mod counts;
pub mod ledger;
pub mod mst;
pub mod noise;
pub mod standin;
pub mod tree;
