//! Reading a `dcr_workload`: a run is a record, so refresh keeps what it released as it was
//! recorded, and a run cannot be imported.

use tfplugin6::{Diagnostic, Diagnostics, Value};

use super::TYPE_NAME;
use crate::provider::ProviderState;

/// A run is a record: what it released stays as it was recorded.
pub(super) async fn refresh(_: &ProviderState, state: Value) -> Result<Value, Diagnostics> {
    Ok(state)
}

pub(super) async fn import(_: &ProviderState, id: &str) -> Result<Value, Diagnostics> {
    Err(Diagnostic::error(
        format!("Cannot import {TYPE_NAME} {id:?}"),
        "A workload is a run, recorded when it happens; it cannot be imported. Apply the configuration to run it.",
    )
    .into())
}
