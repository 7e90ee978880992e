//! The `programming_stage` block of a `dcr_dataset`: which stand-in analysts get in stage 1, and
//! the settings of each kind (the rows of a random one, the privacy parameters of a DP-synthetic
//! one, the file of a public sample), with the checks that involve several of them.

use dcr_dataset::standin::MAX_RANDOM_ROWS;
use tfplugin6::schema::{Attribute, Block};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, Type};

use super::columns::dataset_schema;
use super::model::{Dataset, ProgrammingStage};
use crate::validate;

const MODES: [&str; 4] = ["random", "dp_synthetic", "sample", "none"];

pub(super) fn block() -> Block {
    Block::new(
        "The stage-1 stand-in analysts explore before their notebook runs on the real data. Without this \
         block no stand-in is published.",
    )
    .attr(
        Attribute::required(
            "mode",
            Type::String,
            "`random` (rows drawn uniformly from the declared schema domains: no information from the data), \
             `dp_synthetic` (rows drawn from a model of the data fitted with differential privacy: its \
             statistics survive, any one person's influence is bounded by `epsilon`), `sample` (a public file \
             the owner supplies, published as is) or `none`.",
        )
        .one_of(&MODES),
    )
    .attr(
        Attribute::optional(
            "rows",
            Type::Number,
            "Number of rows of a `random` or `dp_synthetic` stand-in. Without it a `random` stand-in has 1000 \
             rows and a `dp_synthetic` one as many as the source, counted with noise.",
        )
        .whole_number(1, MAX_RANDOM_ROWS),
    )
    .attr(
        Attribute::optional(
            "epsilon",
            Type::Number,
            "`dp_synthetic` (required): the privacy loss allowed for this stand-in. Smaller is more private and \
             noisier; 1 is a common choice. Each generation spends it again: a changed source, stand-in \
             setting or a replaced dataset generates anew.",
        )
        .check_number(positive_epsilon),
    )
    .attr(
        Attribute::optional(
            "delta",
            Type::Number,
            "`dp_synthetic`: the probability allowed for the guarantee to fail outright; keep it far below \
             1/rows.",
        )
        .null_means("`1e-9`")
        .check_number(small_delta),
    )
    .attr(
        Attribute::optional(
            "bins",
            Type::Number,
            "`dp_synthetic`: ranges each numeric column is cut into (of its declared bounds). Without it dcr \
             chooses from the noisy row count and `epsilon`.",
        )
        .whole_number(2, dcr_synth::coding::FINE_BINS as i64),
    )
    .attr(Attribute::optional(
        "unit_column",
        Type::String,
        "`dp_synthetic`: the column naming the person each row belongs to. Without it every row is taken to \
             be a different person.",
    ))
    .attr(
        Attribute::optional(
            "max_rows_per_unit",
            Type::Number,
            "`dp_synthetic`: the most rows one person may have (with `unit_column`); the noise grows with it. \
             A source with more rows for some person is refused.",
        )
        .null_means("`1`")
        .whole_number(1, 1000),
    )
    .attr(Attribute::optional(
        "public_source",
        Type::String,
        "Path to the public CSV published as the `sample` stand-in; it must conform to the schema.",
    ))
    .attr(
        Attribute::optional(
            "readers",
            Type::set(Type::String),
            "IAM members allowed to read the stand-in (`user:`, `group:`, `serviceAccount:`, `domain:`, \
             `principal://`, `principalSet://`). Public members are refused.",
        )
        .check(validate::reader_member),
    )
}

/// `privacy_budget`: the cap on what all stand-ins of the dataset may spend.
pub(super) fn budget_block() -> Block {
    Block::new(
        "A cap on the privacy loss all DP-synthetic stand-ins of this dataset may spend together, kept in the \
         dataset's privacy ledger. A new stand-in that would go over it fails the plan, saying what is left.",
    )
    .attr(
        Attribute::required("epsilon", Type::Number, "The total privacy loss allowed.").check_number(positive_epsilon),
    )
    .attr(
        Attribute::optional("delta", Type::Number, "The δ at which the total is counted.")
            .null_means("`1e-9`")
            .check_number(small_delta),
    )
}

/// The checks of the block that involve several attributes (each attribute's own are declared).
pub(super) fn validate(stage: &ProgrammingStage, m: &Dataset) -> Diagnostics {
    let mut d = Diagnostics::new();
    let p = |a: &str| AttributePath::root("programming_stage").attr(a);
    let mode = stage.mode.as_deref();
    d.extend(validate_dp_settings(stage, mode, m));
    if matches!(mode, Some("random" | "dp_synthetic")) && !stage.public_source.is_null() {
        d.push(Diagnostic::attribute_error(p("public_source"), "public_source applies only to mode = \"sample\"", ""));
    }
    if mode == Some("sample") {
        if stage.public_source.is_null() {
            d.push(Diagnostic::attribute_error(
                p("public_source"),
                "mode = \"sample\" needs public_source",
                "Name the public CSV file to publish as the stand-in.",
            ));
        }
        if !stage.rows.is_null() {
            d.push(Diagnostic::attribute_error(
                p("rows"),
                "rows applies only to mode = \"random\" or \"dp_synthetic\"",
                "",
            ));
        }
    }
    d
}

fn positive_epsilon(e: f64) -> Result<(), String> {
    if e > 0.0 && e <= 100.0 { Ok(()) } else { Err(format!("{e} is not an epsilon between 0 (exclusive) and 100")) }
}

fn small_delta(d: f64) -> Result<(), String> {
    if d > 0.0 && d <= 1e-3 { Ok(()) } else { Err(format!("{d} is not a delta between 0 (exclusive) and 0.001")) }
}

/// The `dp_synthetic` settings: `epsilon` required with it, the others only with it, and the unit
/// column a declared column.
fn validate_dp_settings(stage: &ProgrammingStage, mode: Option<&str>, m: &Dataset) -> Diagnostics {
    let mut d = Diagnostics::new();
    let p = |a: &str| AttributePath::root("programming_stage").attr(a);
    let dp_only = [
        ("epsilon", stage.epsilon.is_null()),
        ("delta", stage.delta.is_null()),
        ("bins", stage.bins.is_null()),
        ("unit_column", stage.unit_column.is_null()),
        ("max_rows_per_unit", stage.max_rows_per_unit.is_null()),
    ];
    match mode {
        Some("dp_synthetic") => {
            if stage.epsilon.is_null() {
                d.push(Diagnostic::attribute_error(
                    p("epsilon"),
                    "mode = \"dp_synthetic\" needs epsilon",
                    "Set the privacy loss this stand-in may spend, e.g. epsilon = 1.",
                ));
            }
            let more_than_one = stage.max_rows_per_unit.known().and_then(|n| n.as_i64()).is_some_and(|n| n > 1);
            if more_than_one && stage.unit_column.is_null() {
                d.push(Diagnostic::attribute_error(
                    p("max_rows_per_unit"),
                    "max_rows_per_unit above 1 needs unit_column",
                    "Name the column that says which person each row belongs to.",
                ));
            }
            if let Some(column) = stage.unit_column.as_deref()
                && let Ok(Some(schema)) = dataset_schema(&m.schema)
                && !schema.names().contains(&column)
            {
                d.push(Diagnostic::attribute_error(
                    p("unit_column"),
                    format!("{column:?} is not a declared column"),
                    format!("Declared columns: {}.", schema.names().join(", ")),
                ));
            }
        }
        Some(other) => {
            for (attr, null) in dp_only {
                if !null {
                    d.push(Diagnostic::attribute_error(
                        p(attr),
                        format!("{attr} applies only to mode = \"dp_synthetic\", not {other:?}"),
                        "",
                    ));
                }
            }
        }
        None => {}
    }
    d
}
