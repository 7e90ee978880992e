//! `data "dcr_privacy_ledger"`: what the DP-synthetic stand-ins of a dataset have spent, read from
//! the ledger beside its data, for auditors and for budgets shared across configurations.

use std::sync::Arc;

use async_trait::async_trait;
use dcr_attestation::names::DatasetLocation;
use tfplugin6::model::{Attr, IntoValue, Model};
use tfplugin6::schema::{Attribute, Block, Schema};
use tfplugin6::value::Number;
use tfplugin6::{AttributePath, DataSource, Diagnostic, Diagnostics, Type, Value};

use crate::provider::ProviderState;
use crate::resources::dataset::{DEFAULT_DELTA, ledger, parse_id};

pub const TYPE_NAME: &str = "dcr_privacy_ledger";

pub struct PrivacyLedger {
    state: Arc<ProviderState>,
}

impl PrivacyLedger {
    pub fn new(state: Arc<ProviderState>) -> PrivacyLedger {
        PrivacyLedger { state }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct PrivacyLedgerData {
    pub dataset: Attr<String>,
    pub delta: Attr<f64>,
    pub ledger_uri: Attr<String>,
    pub rho_spent: Attr<Number>,
    pub epsilon_spent: Attr<Number>,
    pub entries: Attr<Vec<LedgerEntry>>,
}

#[derive(Clone, Debug, PartialEq, Model)]
pub struct LedgerEntry {
    pub mechanism: String,
    pub rho: Number,
    pub epsilon: Number,
    pub delta: Number,
    pub rows: i64,
    pub time: String,
    pub stand_in_sha256: String,
}

fn entry_type() -> Type {
    Type::object([
        ("mechanism", Type::String),
        ("rho", Type::Number),
        ("epsilon", Type::Number),
        ("delta", Type::Number),
        ("rows", Type::Number),
        ("time", Type::String),
        ("stand_in_sha256", Type::String),
    ])
}

pub fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Reads a dataset's privacy ledger: every DP-synthetic stand-in generated from it, with what each spent, \
             and the total. A dataset that never had one reads as nothing spent.",
        )
        .attr(
            Attribute::required("dataset", Type::String, "The dataset's id (`dcr_dataset.x.id`, `BUCKET/NAME`).")
                .check(|id| parse_id(id).map(|_| ())),
        )
        .attr(
            Attribute::optional("delta", Type::Number, "The δ at which the total is shown as ε.").null_means("`1e-9`"),
        )
        .attr(Attribute::computed("ledger_uri", Type::String, "`gs://` URI of the ledger."))
        .attr(Attribute::computed("rho_spent", Type::Number, "The total spent, in zero-concentrated DP (ρ)."))
        .attr(Attribute::computed("epsilon_spent", Type::Number, "The total spent, as ε at `delta`."))
        .attr(Attribute::computed(
            "entries",
            Type::list(entry_type()),
            "The generations, oldest first: `mechanism`, `rho`, the `epsilon` and `delta` asked, `rows`, `time` \
             (RFC 3339) and the published stand-in's `stand_in_sha256`.",
        )),
    )
}

#[async_trait]
impl DataSource for PrivacyLedger {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn read(&self, config: Value) -> Result<(Value, Diagnostics), Diagnostics> {
        let mut data: PrivacyLedgerData = super::read_checked(&schema().block, &config, TYPE_NAME)?;
        let id = data.dataset.as_deref().unwrap_or_default().to_string();
        let place: DatasetLocation = parse_id(&id).map_err(|e| {
            Diagnostics::from(Diagnostic::attribute_error(AttributePath::root("dataset"), "not a dataset id", e))
        })?;
        let clients = self.state.clients()?;
        let stored = ledger::read(&clients, &place).await?;
        let delta = data.delta.known().copied().unwrap_or(DEFAULT_DELTA);
        data.ledger_uri = Attr::Known(place.ledger_uri());
        // Decimals, so that outputs of them plan no change (see `Number::decimal`).
        data.rho_spent = Attr::Known(Number::decimal(stored.ledger.rho_spent(), 6));
        data.epsilon_spent = Attr::Known(Number::decimal(stored.ledger.epsilon_spent(delta), 6));
        data.entries = Attr::Known(
            stored
                .ledger
                .entries
                .into_iter()
                .map(|e| LedgerEntry {
                    mechanism: e.mechanism,
                    rho: Number::decimal(e.rho, 6),
                    epsilon: Number::decimal(e.epsilon, 6),
                    delta: Number::decimal(e.delta, 6),
                    rows: e.rows as i64,
                    time: e.time,
                    stand_in_sha256: e.stand_in_sha256,
                })
                .collect(),
        );
        Ok((data.into_value(), Diagnostics::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_has_the_schemas_attributes() {
        tfplugin6::model::check_fields::<PrivacyLedgerData>(&schema().block).unwrap();
        tfplugin6::model::check_object_fields::<LedgerEntry>(&entry_type()).unwrap();
    }
}
