//! A DP-synthetic stand-in at apply: generated from the source as plan saw it (on the blocking
//! pool, into an unnamed temporary file only this process can read), then recorded in the privacy
//! ledger — under the budget, before anything is published — and handed back to be uploaded.

use std::io::{BufReader, BufWriter, Read, Seek, Write};

use dcr_attestation::names::DatasetLocation;
use dcr_synth::standin::{MECHANISM, Settings, SynthError, dp_synthetic_csv};
use tfplugin6::model::Attr;
use tfplugin6::value::Number;
use tfplugin6::{AttributePath, Diagnostic, Diagnostics};

use super::DEFAULT_DELTA;
use super::apply::source_as_planned;
use super::columns::dataset_schema;
use super::model::{Dataset, ProgrammingStage, known};
use crate::clients::Clients;
use crate::resources::common::blocking;

/// The generator's settings from the `programming_stage` block (validated at plan).
fn settings(stage: &ProgrammingStage, schema: &dcr_dataset::DatasetSchema) -> Settings {
    let number = |n: &Attr<Number>| n.known().and_then(|n| n.as_f64());
    let whole = |n: &Attr<Number>| n.known().and_then(|n| n.as_i64());
    Settings {
        epsilon: number(&stage.epsilon).unwrap_or(0.0),
        delta: number(&stage.delta).unwrap_or(DEFAULT_DELTA),
        bins: whole(&stage.bins).map(|b| b as usize),
        rows: whole(&stage.rows).map(|r| r as u64),
        max_rows_per_unit: whole(&stage.max_rows_per_unit).unwrap_or(1) as u32,
        unit_column: stage.unit_column.as_deref().and_then(|c| schema.names().iter().position(|n| *n == c)),
    }
}

fn io_diag(e: std::io::Error) -> Diagnostics {
    Diagnostic::error("Cannot hold the DP-synthetic stand-in in a temporary file", e.to_string()).into()
}

/// Generates the stand-in, records it in the ledger (refused if over budget), and returns it,
/// positioned at its start, for the upload.
pub(super) async fn generate_and_record(
    c: &Clients,
    state: &Dataset,
    stage: &ProgrammingStage,
) -> Result<BufReader<std::fs::File>, Diagnostics> {
    let schema = dataset_schema(&state.schema)?
        .ok_or_else(|| Diagnostics::from(Diagnostic::error("schema unknown at apply", "")))?;
    let settings = settings(stage, &schema);
    let epsilon = settings.epsilon;
    let source = known(&state.source, "source")?.to_string();
    let plan_sha = known(&state.source_sha256, "source_sha256")?.to_string();
    let (release, sha, file) = blocking("The DP-synthetic stand-in's generation", move || {
        let verified = source_as_planned(&source, &plan_sha)?;
        let mut file = tempfile::tempfile().map_err(io_diag)?;
        let mut out = BufWriter::new(&mut file);
        let release = dp_synthetic_csv(&schema, verified, &settings, &mut out).map_err(|e| {
            let at = match e {
                SynthError::Unit { .. } => AttributePath::root("programming_stage").attr("max_rows_per_unit"),
                _ => AttributePath::root("source"),
            };
            Diagnostics::from(Diagnostic::attribute_error(
                at,
                "cannot generate the DP-synthetic stand-in",
                format!("{e}. Nothing was published."),
            ))
        })?;
        out.flush().map_err(io_diag)?;
        drop(out);
        file.rewind().map_err(io_diag)?;
        let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(io_diag)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
        file.rewind().map_err(io_diag)?;
        Ok((release, hex::encode(hash.finish().as_ref()), file))
    })
    .await?;
    // Spent before it is published: a failed upload after this wastes budget, never the reverse
    // (a published stand-in the ledger does not know).
    let place = DatasetLocation::new(known(&state.bucket, "bucket")?, known(&state.name, "name")?);
    let entry = dcr_synth::ledger::Entry {
        mechanism: MECHANISM.into(),
        rho: release.rho,
        epsilon,
        delta: release.delta,
        rows: release.rows,
        time: super::ledger::now(),
        stand_in_sha256: sha,
    };
    super::ledger::append(c, &place, super::ledger::budget(state), entry).await?;
    Ok(BufReader::with_capacity(1 << 20, file))
}
