//! The `dcr_dataset` schema, and the checks of a configuration that need neither files nor a cloud.

use tfplugin6::schema::{Attribute, Block, NestedBlock, Schema};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, Type, Value, model};

use super::model::Dataset;

use super::columns::dataset_schema;
use crate::{timeouts, validate};
use dcr_attestation::names::STAGE1_BUCKET_SUFFIX;

pub fn schema() -> Schema {
    let column = Block::new("One column of the source, in file order.")
        .attr(Attribute::required("name", Type::String, "Column name, exactly as in the CSV header."))
        .attr(Attribute::required("type", Type::String, "Column type: `integer`, `float`, `category` or `string`."))
        .attr(Attribute::optional(
            "min",
            Type::Number,
            "Smallest allowed value (integer and float columns; required for them).",
        ))
        .attr(Attribute::optional(
            "max",
            Type::Number,
            "Largest allowed value (integer and float columns; required for them).",
        ))
        .attr(Attribute::optional(
            "values",
            Type::list(Type::String),
            "Every allowed value (category columns; required for them).",
        ))
        .attr(Attribute::optional(
            "max_length",
            Type::Number,
            "Longest allowed value in characters (string columns; required for them).",
        ))
        .attr(Attribute::optional("nullable", Type::Bool, "Whether empty cells are allowed.").null_means("`false`"));
    Schema::new(
        0,
        Block::new(
            "A confidential dataset: the source CSV is validated against its declared schema, encrypted on this \
             machine with a fresh data key (AES-256-GCM, the key wrapped by Cloud KMS) and stored in a private \
             bucket; a stage-1 stand-in is published for analysts.",
        )
        .attr(Attribute::computed("id", Type::String, "`BUCKET/NAME`; also the import id."))
        .attr(
            Attribute::required(
                "name",
                Type::String,
                "Dataset name: 3 to 24 lowercase letters, digits and `-`, starting with a letter.",
            )
            .requires_replace()
            .check(validate::dataset_name),
        )
        .attr(
            Attribute::required(
                "source",
                Type::String,
                "Path to the source CSV (relative to Terraform's working directory): a regular file, not a pipe or \
             device. Its first row names the columns. It is read at plan time: editing the file plans an update. \
             Limits: a header of 1 MiB, a row of 8 MiB, a cell of 4 MiB. Once uploaded the file is no longer \
             needed: without it, plans keep the uploaded data (with a warning) and destroy works.",
            )
            .check(names_a_file),
        )
        .attr(
            Attribute::optional_computed(
                "bucket",
                Type::String,
                "Name of the private bucket holding the encrypted data.",
            )
            .default_described("`PROJECT-NAME`")
            .requires_replace()
            .check(bucket_with_room_for_stage1),
        )
        .attr(
            Attribute::optional_computed("location", Type::String, "Bucket location.")
                .default(Value::string("US"))
                .requires_replace(),
        )
        .attr(
            Attribute::optional_computed("kms_location", Type::String, "Cloud KMS location of the key ring.")
                .default(Value::string("global"))
                .requires_replace()
                .check(validate::kms_location),
        )
        .attr(Attribute::optional("labels", Type::map(Type::String), "Labels set on the dataset's buckets."))
        .attr(Attribute::computed("object", Type::String, "Name of the encrypted object in `bucket`."))
        .attr(Attribute::computed("object_uri", Type::String, "`gs://` URI of the encrypted object."))
        .attr(Attribute::computed("object_generation", Type::String, "Generation of the encrypted object."))
        .attr(Attribute::computed("key_ring", Type::String, "Full name of the dataset's KMS key ring."))
        .attr(
            Attribute::computed(
                "crypto_key",
                Type::String,
                "Full name of the KMS key that wraps the data key. KMS keys cannot be deleted: destroying the \
                 dataset schedules destruction of its key versions, and a re-created dataset gets a new key in the \
                 same key ring.",
            )
            .use_state_for_unknown(),
        )
        .attr(Attribute::computed("source_sha256", Type::String, "SHA-256 of the source file (hex)."))
        .attr(Attribute::computed("source_rows", Type::Number, "Number of data rows in the source file."))
        .attr(Attribute::computed(
            "ciphertext_sha256",
            Type::String,
            "SHA-256 of the stored envelope (hex), for auditing what was uploaded.",
        ))
        .attr(Attribute::computed("stage1_bucket", Type::String, "Bucket holding the stand-in (`BUCKET-stage1`)."))
        .attr(Attribute::computed("stage1_uri", Type::String, "`gs://` URI of the stage-1 stand-in CSV."))
        .attr(Attribute::computed("stage1_sha256", Type::String, "SHA-256 of the published stand-in (hex)."))
        .attr(Attribute::computed(
            "privacy_ledger_uri",
            Type::String,
            "`gs://` URI of the dataset's privacy ledger: every DP-synthetic stand-in generated from it and what it \
             spent. Written at the first generation; destroying the dataset keeps it (and its bucket), so a \
             re-created dataset does not get its budget back.",
        ))
        .attr(Attribute::computed(
            "privacy_spent",
            Type::Number,
            "The privacy loss all DP-synthetic stand-ins of this dataset have spent, per its ledger, as ε at \
             `privacy_budget.delta` (or 1e-9 without a budget). Costs add up in zero-concentrated DP, which is \
             tighter than adding the ε of each generation.",
        ))
        .block(
            NestedBlock::single(
                "schema",
                Block::new("The declared schema of the source: its columns, each with a type and a domain.")
                    .block(NestedBlock::list("column", column).min_items(1)),
            )
            // A single block with min = max = 1 is how protocol 6 says "required".
            .min_items(1)
            .max_items(1),
        )
        .block(NestedBlock::single("programming_stage", super::stage::block()))
        .block(NestedBlock::single("privacy_budget", super::stage::budget_block()))
        .block(timeouts::block("30m")),
    )
}

fn names_a_file(s: &str) -> Result<(), String> {
    if s.trim().is_empty() { Err("must name a CSV file".into()) } else { Ok(()) }
}

/// A bucket name that leaves room for the stage-1 bucket's suffix.
fn bucket_with_room_for_stage1(s: &str) -> Result<(), String> {
    validate::bucket_name(s)?;
    if s.len() > 56 {
        return Err(format!("{s:?} is longer than 56 characters (the stage-1 bucket adds {STAGE1_BUCKET_SUFFIX:?})"));
    }
    Ok(())
}

/// Everything about the configuration that can be checked without reading files or calling a
/// cloud: the declared validators, then what involves several attributes. Unknown values are skipped; they are checked again at plan time, when known.
pub fn validate_config(config: &Value) -> Diagnostics {
    let m: Dataset = match model::read(config, "dcr_dataset configuration") {
        Ok(m) => m,
        Err(d) => return d,
    };
    let mut d = tfplugin6::validate::declared(&schema().block, config);
    for (k, v) in m.labels.known().into_iter().flatten() {
        if let Some(v) = v.as_deref()
            && let Err(e) = validate::label(k, v)
        {
            d.push(Diagnostic::attribute_error(AttributePath::root("labels").key(k), e, ""));
        }
    }
    if let Err(e) = dataset_schema(&m.schema) {
        d.extend(e);
    }
    d.extend(timeouts::validate(&m.timeouts));
    if let Some(stage) = m.stage() {
        d.extend(super::stage::validate(stage, &m));
    }
    d
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::resources::dataset::columns::tests::{column, schema_block};

    pub fn config(extra: &[(&str, Value)]) -> Value {
        let mut cfg = Value::null_object(&schema().implied_type());
        cfg.set("name", Value::string("patients"));
        cfg.set("source", Value::string("patients.csv"));
        cfg.set(
            "schema",
            schema_block(vec![column("age", "integer", &[("min", Value::int(0)), ("max", Value::int(120))])]),
        );
        for (k, v) in extra {
            cfg.set(k, v.clone());
        }
        cfg
    }

    pub fn stage(mode: &str, extra: &[(&str, Value)]) -> Value {
        let schema = schema();
        let block = &schema.block.nested("programming_stage").expect("programming_stage").block;
        let mut s = Value::null_object(&block.implied_type());
        s.set("mode", Value::string(mode));
        for (k, v) in extra {
            s.set(k, v.clone());
        }
        s
    }

    pub fn facts() -> super::super::PlanFacts {
        super::super::PlanFacts {
            project: "dcr-local".into(),
            source_sha256: Some("aa".into()),
            source_rows: Some(3),
            public_sha256: None,
        }
    }

    pub fn summaries(d: &Diagnostics) -> Vec<String> {
        d.iter().map(|x| x.summary.clone()).collect()
    }

    #[test]
    fn bad_inputs_name_their_attribute() {
        let cases: Vec<(Value, &str)> = vec![
            (config(&[("bucket", Value::string("Bad_Bucket!"))]), "bucket"),
            (config(&[("name", Value::string("Not Valid"))]), "name"),
            (config(&[("programming_stage", stage("synthetic", &[]))]), "programming_stage.mode"),
            (config(&[("programming_stage", stage("dp_synthetic", &[]))]), "programming_stage.epsilon"),
            (
                config(&[("programming_stage", stage("dp_synthetic", &[("epsilon", Value::float(-1.0))]))]),
                "programming_stage.epsilon",
            ),
            (
                config(&[(
                    "programming_stage",
                    stage("dp_synthetic", &[("epsilon", Value::int(1)), ("delta", Value::float(0.1))]),
                )]),
                "programming_stage.delta",
            ),
            (
                config(&[("programming_stage", stage("random", &[("epsilon", Value::int(1))]))]),
                "programming_stage.epsilon",
            ),
            (
                config(&[(
                    "programming_stage",
                    stage("dp_synthetic", &[("epsilon", Value::int(1)), ("max_rows_per_unit", Value::int(3))]),
                )]),
                "programming_stage.max_rows_per_unit",
            ),
            (
                config(&[(
                    "programming_stage",
                    stage("dp_synthetic", &[("epsilon", Value::int(1)), ("unit_column", Value::string("patient"))]),
                )]),
                "programming_stage.unit_column",
            ),
            (
                config(&[(
                    "programming_stage",
                    stage("dp_synthetic", &[("epsilon", Value::int(1)), ("bins", Value::int(1))]),
                )]),
                "programming_stage.bins",
            ),
            (config(&[("programming_stage", stage("random", &[("rows", Value::int(0))]))]), "programming_stage.rows"),
            (config(&[("programming_stage", stage("sample", &[]))]), "programming_stage.public_source"),
            (
                config(&[(
                    "programming_stage",
                    stage("random", &[("readers", Value::Set(vec![Value::string("bob@example.com")]))]),
                )]),
                "programming_stage.readers",
            ),
            (config(&[("labels", Value::Map(BTreeMap::from([("Bad".into(), Value::string("x"))])))]), "labels"),
            (
                config(&[(
                    "timeouts",
                    Value::object([("create", Value::string("5d")), ("update", Value::Null), ("delete", Value::Null)]),
                )]),
                "timeouts.create",
            ),
        ];
        for (cfg, attr) in cases {
            let d = validate_config(&cfg);
            assert!(d.has_errors(), "{attr}: expected an error");
            assert!(summaries(&d).iter().any(|s| s.contains(attr)), "{attr}: {:?}", summaries(&d));
        }
    }

    #[test]
    fn a_good_config_has_no_diagnostics() {
        let cfg = config(&[(
            "programming_stage",
            stage("random", &[("rows", Value::int(10)), ("readers", Value::Set(vec![Value::string("user:a@b.co")]))]),
        )]);
        assert!(validate_config(&cfg).is_empty(), "{:?}", summaries(&validate_config(&cfg)));
        let dp = config(&[(
            "programming_stage",
            stage(
                "dp_synthetic",
                &[
                    ("epsilon", Value::float(0.5)),
                    ("delta", Value::float(1e-8)),
                    ("bins", Value::int(8)),
                    ("unit_column", Value::string("age")),
                    ("max_rows_per_unit", Value::int(2)),
                ],
            ),
        )]);
        assert!(validate_config(&dp).is_empty(), "{:?}", summaries(&validate_config(&dp)));
    }
}
