//! Data sources, one per file.

pub mod image_digest;
pub mod privacy_ledger;
pub mod runs;
pub mod verified_attestation;

/// A data source's configuration as its model, once the declared checks of `block` pass (the
/// read runs them again: at validation, values may still have been unknown).
pub fn read_checked<M: tfplugin6::model::FromValue>(
    block: &tfplugin6::schema::Block,
    config: &tfplugin6::Value,
    type_name: &str,
) -> Result<M, tfplugin6::Diagnostics> {
    let d = tfplugin6::validate::declared(block, config);
    if d.has_errors() {
        return Err(d);
    }
    tfplugin6::model::read(config, &format!("{type_name} configuration"))
}
