//! A thin Terraform plugin-protocol-6 layer, free of any knowledge of what the provider does.
//!
//! A provider implements the traits in [`provider`] ([`Provider`], [`Resource`], [`DataSource`],
//! [`Function`]) against typed requests carrying cty [`Value`]s, and calls [`serve`] from `main`.
//! This crate does the rest: go-plugin's handshake and AutoMTLS ([`plugin`]), the
//! `tfplugin6.Provider` gRPC service ([`server`]), the cty msgpack/JSON codec ([`value`]), schemas
//! ([`schema`]) and the plan rules they declare ([`plan`]), typed models of values ([`model`]), diagnostics with attribute paths ([`diag`]) and hclog-style logs ([`logging`]).
//! It speaks protocol 6.10 as released in Terraform v1.15.9 and works with Terraform 1.0 and later.

pub mod diag;
pub mod logging;
pub mod model;
pub mod plan;
pub mod plugin;
pub mod provider;
pub mod schema;
mod server;
pub mod validate;
pub mod value;

/// Code generated from our own `.proto` files (see `proto/`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("tfplugin6");
    pub mod plugin {
        tonic::include_proto!("plugin");
    }
}

// The derive names this crate as `::tfplugin6`, here too.
extern crate self as tfplugin6;

pub use diag::{AttributePath, Diagnostic, Diagnostics, Severity};
pub use model::{Attr, FromValue, IntoValue, Model};
pub use plugin::{ServeError, launched_by_terraform, serve};
pub use provider::{
    ApplyRequest, ApplyResponse, DataSource, Function, FunctionError, FunctionSignature, Parameter, PlanRequest,
    PlanResponse, Provider, ReadResponse, Resource,
};
pub use schema::{Attribute, Block, NestedBlock, Schema};
pub use value::{Number, Type, Value};
