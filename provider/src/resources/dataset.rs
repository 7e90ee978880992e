//! `dcr_dataset`: a private bucket, a KMS key, the source file validated against its schema and
//! stored with envelope encryption, and a stage-1 stand-in that named readers may see.
//!
//! Apply is "converge": every step checks what exists and does only what is missing, so an apply
//! that failed halfway is finished by the next one. Plan reads the source file (hash and schema
//! check) so an edited file shows up as an update, and a file that breaks its schema fails the plan
//! before anything is created.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dcr_attestation::names::{self, DatasetLocation, STAGE1_BUCKET_SUFFIX};
use dcr_gcp::kms::CryptoKey;
use dcr_gcp::storage::Object;
use tfplugin6::plan;
use tfplugin6::schema::{Attribute, Block, NestedBlock, Schema};
use tfplugin6::{
    ApplyRequest, ApplyResponse, AttributePath, Diagnostic, Diagnostics, PlanRequest, PlanResponse, ReadResponse,
    Resource, Type, Value,
};

use crate::clients::Clients;
use crate::dataset::standin::{MAX_RANDOM_ROWS, random_csv};
use crate::dataset::{DatasetSchema, HashingReader, check_csv, checkcache};
use crate::provider::ProviderState;
use crate::resources::common::{
    apply_converging, empty_and_delete_bucket, ensure_bucket, gcp_diag, object_sha256, private_bucket, read_response,
    settle,
};
use crate::{timeouts, validate};

pub const TYPE_NAME: &str = "dcr_dataset";
/// Default limit of each operation (large sources take a while to encrypt and upload).
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
const MODES: [&str; 3] = ["random", "sample", "none"];
const OBJECT_VIEWER: &str = "roles/storage.objectViewer";
/// Custom object metadata keys (everything needed to import the dataset; no data).
const META_FORMAT: &str = "dcr-format";
const META_KMS_KEY: &str = "dcr-kms-key";
const META_SOURCE_SHA: &str = "dcr-source-sha256";
const META_SOURCE_PATH: &str = "dcr-source-path";
const META_SOURCE_ROWS: &str = "dcr-source-rows";
const META_SCHEMA: &str = "dcr-schema";
const META_STAGE: &str = "dcr-programming-stage";

pub struct DatasetResource {
    state: Arc<ProviderState>,
}

impl DatasetResource {
    pub fn new(state: Arc<ProviderState>) -> DatasetResource {
        DatasetResource { state }
    }
}

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
    let stage = Block::new(
        "The stage-1 stand-in analysts explore before their notebook runs on the real data. Without this \
         block no stand-in is published.",
    )
    .attr(Attribute::required(
        "mode",
        Type::String,
        "`random` (rows drawn uniformly from the declared schema domains: no information from the data), \
         `sample` (a public file the owner supplies, published as is) or `none`. `dp_synthetic` is reserved \
         and not yet supported.",
    ))
    .attr(
        Attribute::optional("rows", Type::Number, "Number of rows of a `random` stand-in (1 to 1000000).")
            .null_means("`1000`"),
    )
    .attr(Attribute::optional(
        "public_source",
        Type::String,
        "Path to the public CSV published as the `sample` stand-in; it must conform to the schema.",
    ))
    .attr(Attribute::optional(
        "readers",
        Type::set(Type::String),
        "IAM members allowed to read the stand-in (`user:`, `group:`, `serviceAccount:`, `domain:`, \
         `principal://`, `principalSet://`). Public members are refused.",
    ));
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
            .requires_replace(),
        )
        .attr(Attribute::required(
            "source",
            Type::String,
            "Path to the source CSV (relative to Terraform's working directory): a regular file, not a pipe or \
             device. Its first row names the columns. It is read at plan time: editing the file plans an update. \
             Limits: a header of 1 MiB, a row of 8 MiB, a cell of 4 MiB. Once uploaded the file is no longer \
             needed: without it, plans keep the uploaded data (with a warning) and destroy works.",
        ))
        .attr(
            Attribute::optional_computed(
                "bucket",
                Type::String,
                "Name of the private bucket holding the encrypted data.",
            )
            .default_described("`PROJECT-NAME`")
            .requires_replace(),
        )
        .attr(
            Attribute::optional_computed("location", Type::String, "Bucket location.")
                .default(Value::string("US"))
                .requires_replace(),
        )
        .attr(
            Attribute::optional_computed("kms_location", Type::String, "Cloud KMS location of the key ring.")
                .default(Value::string("global"))
                .requires_replace(),
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
        .block(NestedBlock::single("programming_stage", stage))
        .block(timeouts::block("30m")),
    )
}

// ---------------------------------------------------------------------------------------------
// configuration checks (pure)

/// Everything about the configuration that can be checked without reading files or calling a
/// cloud. Unknown values are skipped; they are checked again at plan time, when known.
pub fn validate_config(config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    let mut check = |attr: AttributePath, v: &Value, f: &dyn Fn(&str) -> Result<(), String>| {
        if let Some(s) = v.as_str()
            && let Err(e) = f(s)
        {
            d.push(Diagnostic::attribute_error(attr.clone(), e, ""));
        }
    };
    check(AttributePath::root("name"), config.get("name"), &validate::dataset_name);
    check(AttributePath::root("bucket"), config.get("bucket"), &|s| {
        validate::bucket_name(s)?;
        if s.len() > 56 {
            return Err(format!(
                "{s:?} is longer than 56 characters (the stage-1 bucket adds {STAGE1_BUCKET_SUFFIX:?})"
            ));
        }
        Ok(())
    });
    check(AttributePath::root("kms_location"), config.get("kms_location"), &validate::kms_location);
    check(AttributePath::root("source"), config.get("source"), &|s| {
        if s.trim().is_empty() { Err("must name a CSV file".into()) } else { Ok(()) }
    });
    if let Some(labels) = config.get("labels").entries() {
        for (k, v) in labels {
            if let Some(v) = v.as_str()
                && let Err(e) = validate::label(k, v)
            {
                d.push(Diagnostic::attribute_error(AttributePath::root("labels").key(k), e, ""));
            }
        }
    }
    if let Err(e) = DatasetSchema::from_config(config.get("schema")) {
        d.extend(e);
    }
    d.extend(timeouts::validate(config));
    let stage = config.get("programming_stage");
    if !stage.is_null() {
        let p = |a: &str| AttributePath::root("programming_stage").attr(a);
        let mode = stage.get("mode").as_str();
        match mode {
            Some("dp_synthetic") => d.push(Diagnostic::attribute_error(
                p("mode"),
                "\"dp_synthetic\" is not yet supported",
                "Differentially private synthetic stand-ins are planned but not available in this version; use \
                 \"random\" (no information from the data) or \"sample\" (a public file you supply).",
            )),
            Some(m) if !MODES.contains(&m) => d.push(Diagnostic::attribute_error(
                p("mode"),
                format!("unknown mode {m:?}"),
                format!("Allowed modes: {}.", MODES.join(", ")),
            )),
            _ => {}
        }
        if let Some(rows) = stage.get("rows").as_f64()
            && (rows < 1.0 || rows > MAX_RANDOM_ROWS as f64 || rows.fract() != 0.0)
        {
            d.push(Diagnostic::attribute_error(
                p("rows"),
                format!("{rows} is not a whole number between 1 and {MAX_RANDOM_ROWS}"),
                "",
            ));
        }
        if mode == Some("random") && !stage.get("public_source").is_null() {
            d.push(Diagnostic::attribute_error(
                p("public_source"),
                "public_source applies only to mode = \"sample\"",
                "",
            ));
        }
        if mode == Some("sample") {
            if stage.get("public_source").is_null() {
                d.push(Diagnostic::attribute_error(
                    p("public_source"),
                    "mode = \"sample\" needs public_source",
                    "Name the public CSV file to publish as the stand-in.",
                ));
            }
            if !stage.get("rows").is_null() {
                d.push(Diagnostic::attribute_error(p("rows"), "rows applies only to mode = \"random\"", ""));
            }
        }
        for r in stage.get("readers").elements() {
            if let Some(m) = r.as_str()
                && let Err(e) = validate::reader_member(m)
            {
                d.push(Diagnostic::attribute_error(p("readers"), e, ""));
            }
        }
    }
    d
}

fn stage_mode(config: &Value) -> Option<String> {
    let stage = config.get("programming_stage");
    if stage.is_null() {
        return Some("none".into());
    }
    stage.get("mode").as_str().map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// planning (pure)

/// What plan learned from the files it read.
#[derive(Clone, Debug, Default)]
pub struct PlanFacts {
    pub project: String,
    pub source_sha256: Option<String>,
    pub source_rows: Option<u64>,
    pub public_sha256: Option<String>,
}

fn known_or_unknown(v: Option<String>) -> Value {
    v.map(Value::String).unwrap_or(Value::Unknown)
}

/// The planned state: the configuration, defaults filled in, and every computed value either kept
/// from the prior state (nothing it depends on changed) or unknown (apply will set it).
pub fn plan_state(prior: &Value, config: &Value, facts: &PlanFacts) -> (Value, Vec<AttributePath>) {
    let schema = schema();
    let mut planned = config.clone();
    plan::fill_defaults(&schema.block, &mut planned);
    let name = config.get("name").as_str().map(str::to_string);
    let bucket = match config.get("bucket") {
        Value::Null => name
            .as_ref()
            .map(|n| Value::string(DatasetLocation::default_bucket(&facts.project, n)))
            .unwrap_or(Value::Unknown),
        v => v.clone(),
    };
    planned.set("bucket", bucket.clone());
    let kms_location = planned.get("kms_location").clone();

    let b = bucket.as_str();
    let place = b.zip(name.as_deref()).map(|(b, n)| DatasetLocation::new(b, n));
    let named = |f: fn(&DatasetLocation) -> String| known_or_unknown(place.as_ref().map(f));
    planned.set("object", known_or_unknown(name.as_deref().map(names::dataset_object)));
    planned.set("id", named(DatasetLocation::id));
    planned.set("object_uri", named(DatasetLocation::object_uri));
    planned.set(
        "key_ring",
        known_or_unknown(
            kms_location.as_str().zip(name.as_deref()).map(|(l, n)| names::key_ring(&facts.project, l, n)),
        ),
    );
    planned.set("source_sha256", known_or_unknown(facts.source_sha256.clone()));
    planned.set("source_rows", facts.source_rows.map(|r| Value::int(r as i64)).unwrap_or(Value::Unknown));

    let requires_replace = plan::replacements(&schema.block, prior, &planned);
    let fresh = prior.is_null() || !requires_replace.is_empty();
    if fresh {
        // Known only once the dataset exists: a policy planned alongside can then tell "being
        // created" (unknown) from "names a dataset that does not exist" (known, missing).
        planned.set("id", Value::Unknown);
    }
    let keep = |attr: &str| -> Value {
        let v = prior.get(attr);
        if fresh || v.is_null() { Value::Unknown } else { v.clone() }
    };

    // The key stays unless it is gone; a new key means new ciphertext.
    planned.set("crypto_key", Value::Unknown);
    plan::keep_prior_for_unknown(&schema.block, prior, &mut planned, fresh);
    let reupload = planned.get("crypto_key").is_unknown()
        || prior.get("source_sha256") != planned.get("source_sha256")
        || prior.get("ciphertext_sha256").is_null();
    planned.set("ciphertext_sha256", if reupload { Value::Unknown } else { keep("ciphertext_sha256") });
    planned.set("object_generation", if reupload { Value::Unknown } else { keep("object_generation") });

    match stage_mode(config).as_deref() {
        Some("none") => {
            planned.set("stage1_bucket", Value::Null);
            planned.set("stage1_uri", Value::Null);
            planned.set("stage1_sha256", Value::Null);
        }
        mode => {
            planned.set("stage1_bucket", known_or_unknown(b.map(names::stage1_bucket)));
            planned.set("stage1_uri", named(DatasetLocation::stage1_uri));
            let sha = match mode {
                Some("sample") => known_or_unknown(facts.public_sha256.clone()),
                _ => {
                    let same_inputs = prior.get("programming_stage").get("mode")
                        == config.get("programming_stage").get("mode")
                        && prior.get("programming_stage").get("rows") == config.get("programming_stage").get("rows")
                        && prior.get("schema") == config.get("schema");
                    if same_inputs { keep("stage1_sha256") } else { Value::Unknown }
                }
            };
            planned.set("stage1_sha256", sha);
        }
    }
    (planned, requires_replace)
}

fn str_attr(v: &Value, a: &str) -> Result<String, Diagnostics> {
    crate::resources::common::str_attr("dcr_dataset", v, a)
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.get("labels")
        .entries()
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}

/// The source is gone but its content is uploaded (same path and schema, object present): see
/// [`crate::files::gone_but_recorded`]. Not when a new upload would need it.
fn uploaded_source_gone(prior: &Value, config: &Value) -> Option<Diagnostic> {
    let source = config.get("source").as_str()?;
    let recorded = prior.get("source_sha256").as_str()?;
    let unchanged = prior.get("source").as_str() == Some(source) && prior.get("schema") == config.get("schema");
    let uploaded = !prior.get("object_generation").is_null() && !prior.get("ciphertext_sha256").is_null();
    crate::files::gone_but_recorded(
        AttributePath::root("source"),
        source,
        unchanged && uploaded,
        "the uploaded data",
        format!(
            "The encrypted object holds the source as last applied (SHA-256 {recorded}). Plans and destroy need no \
             local copy; to upload new data, put the file back at this path or change `source`."
        ),
    )
}

/// Like [`uploaded_source_gone`], for the public sample of `programming_stage`.
fn published_sample_gone(prior: &Value, config: &Value) -> Option<Diagnostic> {
    let path = config.get("programming_stage").get("public_source").as_str()?;
    let published = prior.get("stage1_sha256").as_str().is_some()
        && prior.get("programming_stage").get("public_source").as_str() == Some(path)
        && prior.get("schema") == config.get("schema");
    crate::files::gone_but_recorded(
        AttributePath::root("programming_stage").attr("public_source"),
        path,
        published,
        "the published sample",
        "The stage-1 bucket holds the sample as last applied; put the file back or change `public_source` to \
         publish a new one."
            .into(),
    )
}

/// Reads and checks a CSV file against the schema (blocking; run on the blocking pool).
fn check_file(
    at: AttributePath,
    path: String,
    schema: DatasetSchema,
) -> Result<crate::dataset::CsvSummary, Diagnostics> {
    let f = crate::files::open_regular(&at, &path)?;
    if let Some(s) = checkcache::lookup(std::path::Path::new(&path), &schema) {
        return Ok(s);
    }
    // The check reads in chunks of its own: no BufReader (it would copy every byte once more).
    let summary = check_csv(f, &schema).map_err(|e| {
        Diagnostics::from(Diagnostic::attribute_error(
            at.clone(),
            format!("{path:?} does not match the schema"),
            format!("{e}. Nothing was uploaded."),
        ))
    })?;
    checkcache::store(std::path::Path::new(&path), &schema, &summary);
    Ok(summary)
}

async fn check_file_async(
    at: AttributePath,
    path: String,
    schema: DatasetSchema,
) -> Result<crate::dataset::CsvSummary, Diagnostics> {
    tokio::task::spawn_blocking(move || check_file(at, path, schema))
        .await
        .unwrap_or_else(|e| Err(Diagnostic::error("file check failed", e.to_string()).into()))
}

// ---------------------------------------------------------------------------------------------
// cloud steps

/// The key ring (created when missing) and a usable crypto key: the one in state if its primary
/// version is still enabled, else a new one with a fresh suffix (KMS never frees key names).
async fn ensure_key(
    c: &Clients,
    key_ring: &str,
    current: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> Result<String, Diagnostics> {
    if c.kms.get_key_ring(key_ring).await.map_err(|e| gcp_diag("Cannot read key ring", e))?.is_none() {
        let (parent, id) = key_ring.rsplit_once("/keyRings/").unwrap_or((key_ring, ""));
        match c.kms.create_key_ring(parent, id).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(gcp_diag(&format!("Cannot create key ring {key_ring}"), e)),
        }
    }
    if let Some(name) = current
        && let Some(key) = c.kms.get_crypto_key(name).await.map_err(|e| gcp_diag("Cannot read crypto key", e))?
        && key.primary.as_ref().is_some_and(|p| p.state == "ENABLED")
    {
        return Ok(name.to_string());
    }
    let mut suffix = [0u8; 3];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|_| Diagnostics::from(Diagnostic::error("no randomness", "")))?;
    let id = format!("data-{}", hex::encode(suffix));
    let key =
        CryptoKey { purpose: Some("ENCRYPT_DECRYPT".into()), labels: Some(labels.clone()), ..CryptoKey::default() };
    let created = c
        .kms
        .create_crypto_key(key_ring, &id, &key)
        .await
        .map_err(|e| gcp_diag(&format!("Cannot create crypto key {key_ring}/cryptoKeys/{id}"), e))?;
    Ok(created.name)
}

/// Where a [`hashed_upload`] leaves the SHA-256 of what it streamed, once it reached the end.
type HashSlot = Arc<Mutex<Option<String>>>;

/// Wraps an upload's body so that the hex SHA-256 of every byte sent lands in the returned slot.
fn hashed_upload<R: std::io::Read>(body: R) -> (HashingReader<R>, HashSlot) {
    let sha = HashSlot::default();
    let slot = sha.clone();
    let reader = HashingReader::on_eof(
        body,
        Box::new(move |hex, _| {
            *slot.lock().expect("hash slot") = Some(hex.to_string());
            Ok(())
        }),
    );
    (reader, sha)
}

struct Uploaded {
    generation: String,
    ciphertext_sha256: String,
}

/// Encrypts the source with a fresh data key and streams it up. The source must still hash to
/// what plan saw: a file edited between plan and apply aborts the upload before it completes.
async fn upload_encrypted(c: &Clients, state: &Value, crypto_key: &str) -> Result<Uploaded, Diagnostics> {
    let bucket = str_attr(state, "bucket")?;
    let object = str_attr(state, "object")?;
    let source = str_attr(state, "source")?;
    let expected_sha = str_attr(state, "source_sha256")?;

    let data_key = dcr_envelope::generate_data_key();
    let wrapped = c
        .kms
        .encrypt(crypto_key, &data_key, Some(&dcr_envelope::wrap_aad(&bucket, &object)))
        .await
        .map_err(|e| gcp_diag("Cannot wrap the data key with KMS", e))?;
    let header = dcr_envelope::Header::new(crypto_key, &wrapped.ciphertext, dcr_envelope::DEFAULT_CHUNK_SIZE);

    let file = crate::files::open_regular(&AttributePath::root("source"), &source)?;
    let src_path = source.clone();
    let verified = HashingReader::on_eof(
        std::io::BufReader::with_capacity(1 << 20, file),
        Box::new(move |sha, _| {
            if sha == expected_sha {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "{src_path:?} changed after the plan was made (sha256 {sha}, plan saw {expected_sha}); run terraform plan again"
                )))
            }
        }),
    );
    let encrypting = dcr_envelope::EncryptingReader::new(verified, &data_key, &header)
        .map_err(|e| Diagnostics::from(Diagnostic::error("Cannot start encryption", e.to_string())))?;
    let (hashed, cipher_sha) = hashed_upload(encrypting);

    let mut metadata = BTreeMap::from([
        (META_FORMAT.to_string(), "dcr-envelope-v1".to_string()),
        (META_KMS_KEY.to_string(), crypto_key.to_string()),
        (META_SOURCE_SHA.to_string(), str_attr(state, "source_sha256")?),
        (META_SOURCE_PATH.to_string(), source.clone()),
        (META_SCHEMA.to_string(), tfplugin6::value::to_json(state.get("schema")).to_string()),
        (META_STAGE.to_string(), tfplugin6::value::to_json(state.get("programming_stage")).to_string()),
    ]);
    if let Some(rows) = state.get("source_rows").as_i64() {
        metadata.insert(META_SOURCE_ROWS.to_string(), rows.to_string());
    }
    let meta = Object {
        name: object.clone(),
        content_type: Some("application/octet-stream".into()),
        metadata: Some(metadata),
        ..Object::default()
    };
    let uploaded = c
        .storage
        .upload_object(&bucket, &meta, hashed, None)
        .await
        .map_err(|e| gcp_diag(&format!("Cannot upload gs://{bucket}/{object}"), e))?;
    let ciphertext_sha256 = cipher_sha.lock().expect("hash slot").clone().unwrap_or_default();
    Ok(Uploaded { generation: uploaded.generation.unwrap_or_default(), ciphertext_sha256 })
}

/// Publishes the stage-1 stand-in and grants its readers; returns the stand-in's SHA-256.
async fn publish_stage1(c: &Clients, state: &Value, upload: bool) -> Result<Option<String>, Diagnostics> {
    let s1 = str_attr(state, "stage1_bucket")?;
    let name = str_attr(state, "name")?;
    ensure_bucket(c, &private_bucket(&s1, &str_attr(state, "location")?, &labels_of(state))).await?;
    let readers: Vec<String> = state
        .get("programming_stage")
        .get("readers")
        .elements()
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    dcr_gcp::iam::read_modify_write(&c.storage.bucket_iam(&s1), |p| p.set_role_members(OBJECT_VIEWER, &readers))
        .await
        .map_err(|e| gcp_diag(&format!("Cannot grant readers on bucket {s1:?}"), e))?;
    if !upload {
        return Ok(None);
    }
    let stage = state.get("programming_stage");
    // Both stand-ins stream: a public sample may be large, and is hashed as it goes up.
    let body: Box<dyn std::io::Read + Send> = match stage.get("mode").as_str() {
        Some("sample") => {
            let path = str_attr(stage, "public_source")?;
            let at = AttributePath::root("programming_stage").attr("public_source");
            Box::new(std::io::BufReader::with_capacity(1 << 20, crate::files::open_regular(&at, &path)?))
        }
        _ => {
            let schema = DatasetSchema::from_config(state.get("schema"))?
                .ok_or_else(|| Diagnostics::from(Diagnostic::error("schema unknown at apply", "")))?;
            let rows = stage.get("rows").as_i64().unwrap_or(1000) as u64;
            let mut buf = Vec::new();
            random_csv(&schema, rows, &mut rand::rng(), &mut buf)
                .map_err(|e| Diagnostics::from(Diagnostic::error("Cannot generate the stand-in", e.to_string())))?;
            Box::new(std::io::Cursor::new(buf))
        }
    };
    let (hashed, sha) = hashed_upload(body);
    let meta = Object { name: names::stage1_object(&name), content_type: Some("text/csv".into()), ..Object::default() };
    c.storage
        .upload_object(&s1, &meta, hashed, None)
        .await
        .map_err(|e| gcp_diag(&format!("Cannot upload the stand-in to {s1:?}"), e))?;
    let sha = sha.lock().expect("hash slot").clone();
    Ok(sha)
}

async fn destroy_key_versions(c: &Clients, key: &str) -> Result<(), Diagnostics> {
    let versions = match c.kms.list_versions(key).await {
        Ok(v) => v,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(gcp_diag("Cannot list key versions", e)),
    };
    for v in versions.iter().filter(|v| v.state == "ENABLED" || v.state == "DISABLED") {
        c.kms.destroy_version(&v.name).await.map_err(|e| gcp_diag("Cannot schedule key version destruction", e))?;
    }
    Ok(())
}

/// Where a dataset's data lives and which key wraps its data key: what a policy grants access to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocatedDataset {
    pub location: DatasetLocation,
    pub crypto_key: String,
}

/// Splits a dataset id `BUCKET/NAME`, checking both parts.
pub fn parse_id(id: &str) -> Result<DatasetLocation, String> {
    let l = DatasetLocation::from_id(id)
        .ok_or_else(|| format!("{id:?} is not a dataset id (BUCKET/NAME, the `id` of a dcr_dataset)"))?;
    validate::bucket_name(&l.bucket).map_err(|e| format!("{id:?} is not a dataset id: {e}"))?;
    validate::dataset_name(&l.name).map_err(|e| format!("{id:?} is not a dataset id: {e}"))?;
    Ok(l)
}

/// Finds the dataset `id` in the cloud: `None` when there is no dcr dataset there.
pub async fn locate(c: &Clients, id: &str) -> Result<Option<LocatedDataset>, Diagnostics> {
    let location = parse_id(id).map_err(|e| Diagnostics::from(Diagnostic::error("Invalid dataset id", e)))?;
    let Some(o) = c
        .storage
        .get_object(&location.bucket, &location.object())
        .await
        .map_err(|e| gcp_diag("Cannot read the dataset object", e))?
    else {
        return Ok(None);
    };
    let meta = o.metadata.unwrap_or_default();
    match (meta.get(META_FORMAT).map(String::as_str), meta.get(META_KMS_KEY)) {
        (Some("dcr-envelope-v1"), Some(key)) => Ok(Some(LocatedDataset { location, crypto_key: key.clone() })),
        _ => Ok(None),
    }
}

impl DatasetResource {
    /// Brings the cloud to `planned`, filling computed values into the returned state as each step
    /// completes; on error the state says what exists so far.
    async fn converge(&self, prior: &Value, planned: &Value) -> (Value, Diagnostics) {
        let mut state = planned.clone();
        let result: Result<(), Diagnostics> = async {
            let c = self.state.clients()?;
            state.set("id", Value::string(format!("{}/{}", str_attr(planned, "bucket")?, str_attr(planned, "name")?)));
            let labels = labels_of(planned);
            ensure_bucket(&c, &private_bucket(&str_attr(planned, "bucket")?, &str_attr(planned, "location")?, &labels))
                .await?;
            let key =
                ensure_key(&c, &str_attr(planned, "key_ring")?, planned.get("crypto_key").as_str(), &labels).await?;
            let new_key = planned.get("crypto_key").as_str() != Some(key.as_str());
            state.set("crypto_key", Value::string(&key));
            if state.get("ciphertext_sha256").is_unknown() || new_key {
                let what = format!("the upload of {}", str_attr(planned, "source")?);
                let up = self.state.stop.unless_stopped(&what, upload_encrypted(&c, &state, &key)).await??;
                state.set("object_generation", Value::string(up.generation));
                state.set("ciphertext_sha256", Value::string(up.ciphertext_sha256));
            }
            match stage_mode(planned).as_deref() {
                Some("none") => {
                    if let Some(old) = prior.get("stage1_bucket").as_str() {
                        empty_and_delete_bucket(&c, old).await?;
                    }
                }
                _ => {
                    let needs_upload = state.get("stage1_sha256").is_unknown()
                        || prior.get("stage1_sha256") != planned.get("stage1_sha256");
                    if let Some(sha) = publish_stage1(&c, &state, needs_upload).await? {
                        state.set("stage1_sha256", Value::string(sha));
                    }
                }
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => (state, Diagnostics::new()),
            Err(d) => (settle(&state), d),
        }
    }

    async fn delete(&self, prior: &Value) -> Result<(), Diagnostics> {
        let c = self.state.clients()?;
        if let Some(s1) = prior.get("stage1_bucket").as_str() {
            empty_and_delete_bucket(&c, s1).await?;
        }
        if let Some(b) = prior.get("bucket").as_str() {
            empty_and_delete_bucket(&c, b).await?;
        }
        if let Some(k) = prior.get("crypto_key").as_str() {
            destroy_key_versions(&c, k).await?;
        }
        Ok(())
    }

    /// Compares the cloud with the state and records drift: anything missing becomes null, which
    /// the next plan turns into work.
    async fn refresh(&self, mut state: Value) -> Result<Value, Diagnostics> {
        let c = self.state.clients()?;
        let bucket = str_attr(&state, "bucket")?;
        let object = str_attr(&state, "object")?;
        match c.storage.get_bucket(&bucket).await.map_err(|e| gcp_diag("Cannot read bucket", e))? {
            None => {
                state.set("object_generation", Value::Null);
                state.set("ciphertext_sha256", Value::Null);
            }
            Some(b) => {
                let labels = b.labels.unwrap_or_default();
                if !(labels.is_empty() && state.get("labels").is_null()) {
                    state.set("labels", Value::Map(labels.into_iter().map(|(k, v)| (k, Value::String(v))).collect()));
                }
                match c.storage.get_object(&bucket, &object).await.map_err(|e| gcp_diag("Cannot read object", e))? {
                    None => {
                        state.set("object_generation", Value::Null);
                        state.set("ciphertext_sha256", Value::Null);
                    }
                    Some(o) => {
                        let generation = o.generation.unwrap_or_default();
                        if state.get("object_generation").as_str() != Some(generation.as_str()) {
                            // Replaced outside Terraform, or imported: hash what is there.
                            let sha = object_sha256(&c, &bucket, &object)
                                .await
                                .map_err(|e| gcp_diag("Cannot read object", e))?;
                            let meta = o.metadata.unwrap_or_default();
                            let ours =
                                meta.get(META_SOURCE_SHA).map(String::as_str) == state.get("source_sha256").as_str();
                            state.set("object_generation", Value::string(generation));
                            state.set("ciphertext_sha256", if ours { Value::string(sha) } else { Value::Null });
                        }
                    }
                }
            }
        }
        if let Some(k) = state.get("crypto_key").as_str().map(str::to_string) {
            let usable = c
                .kms
                .get_crypto_key(&k)
                .await
                .map_err(|e| gcp_diag("Cannot read crypto key", e))?
                .and_then(|key| key.primary)
                .is_some_and(|p| p.state == "ENABLED");
            if !usable {
                state.set("crypto_key", Value::Null);
            }
        }
        if let (Some(s1), Some(name)) =
            (state.get("stage1_bucket").as_str().map(str::to_string), state.get("name").as_str().map(str::to_string))
        {
            let present = match c.storage.get_bucket(&s1).await.map_err(|e| gcp_diag("Cannot read bucket", e))? {
                None => false,
                Some(_) => c
                    .storage
                    .get_object(&s1, &names::stage1_object(&name))
                    .await
                    .map_err(|e| gcp_diag("Cannot read object", e))?
                    .is_some(),
            };
            if !present {
                state.set("stage1_sha256", Value::Null);
            }
        }
        Ok(state)
    }
}

#[async_trait]
impl Resource for DatasetResource {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        validate_config(config)
    }

    async fn read(&self, state: Value, private: Vec<u8>) -> ReadResponse {
        let refreshed = self.refresh(state.clone()).await;
        read_response(state, private, refreshed)
    }

    async fn plan(&self, req: PlanRequest) -> PlanResponse {
        if req.proposed_new_state.is_null() {
            return PlanResponse::default();
        }
        let mut d = validate_config(&req.config);
        if d.has_errors() {
            return PlanResponse { diagnostics: d, ..Default::default() };
        }
        let clients = match self.state.clients() {
            Ok(c) => c,
            Err(e) => return PlanResponse { diagnostics: e, ..Default::default() },
        };
        if let (Value::Null, Some(name)) = (req.config.get("bucket"), req.config.get("name").as_str())
            && let Some(e) = crate::validate::default_bucket_diagnostic(
                AttributePath::root("bucket"),
                &DatasetLocation::default_bucket(&clients.project, name),
                "PROJECT-NAME",
            )
        {
            return PlanResponse { diagnostics: e.into(), ..Default::default() };
        }
        let mut facts = PlanFacts { project: clients.project.clone(), ..Default::default() };
        let schema = match DatasetSchema::from_config(req.config.get("schema")) {
            Ok(s) => s,
            Err(e) => return PlanResponse { diagnostics: e, ..Default::default() },
        };
        if let (Some(schema), Some(source)) = (&schema, req.config.get("source").as_str()) {
            if let Some(warning) = uploaded_source_gone(&req.prior_state, &req.config) {
                facts.source_sha256 = req.prior_state.get("source_sha256").as_str().map(str::to_string);
                facts.source_rows = req.prior_state.get("source_rows").as_i64().map(|r| r as u64);
                d.push(warning);
            } else {
                match check_file_async(AttributePath::root("source"), source.to_string(), schema.clone()).await {
                    Ok(s) => {
                        facts.source_sha256 = Some(s.sha256);
                        facts.source_rows = Some(s.rows);
                    }
                    Err(e) => d.extend(e),
                }
            }
            if let Some(warning) = published_sample_gone(&req.prior_state, &req.config) {
                facts.public_sha256 = req.prior_state.get("stage1_sha256").as_str().map(str::to_string);
                d.push(warning);
            } else if let Some(public) = req.config.get("programming_stage").get("public_source").as_str() {
                match check_file_async(
                    AttributePath::root("programming_stage").attr("public_source"),
                    public.to_string(),
                    schema.clone(),
                )
                .await
                {
                    Ok(s) => facts.public_sha256 = Some(s.sha256),
                    Err(e) => d.extend(e),
                }
            }
        }
        if d.has_errors() {
            return PlanResponse { diagnostics: d, ..Default::default() };
        }
        let (planned_state, requires_replace) = plan_state(&req.prior_state, &req.config, &facts);
        PlanResponse { planned_state, requires_replace, planned_private: Vec::new(), diagnostics: d }
    }

    async fn apply(&self, req: ApplyRequest) -> ApplyResponse {
        let delete = self.delete(&req.prior_state);
        let converge = self.converge(&req.prior_state, &req.planned_state);
        let (state, diagnostics) = apply_converging(TYPE_NAME, &req, DEFAULT_TIMEOUT, delete, converge).await;
        // A create that failed before anything was written leaves nothing to track.
        let nothing_created =
            req.prior_state.is_null() && diagnostics.has_errors() && state.get("crypto_key").is_null();
        let new_state = if nothing_created && !bucket_exists(&self.state, &state).await { Value::Null } else { state };
        ApplyResponse { new_state, private: Vec::new(), diagnostics }
    }

    async fn import(&self, id: &str) -> Result<Value, Diagnostics> {
        let c = self.state.clients()?;
        let (bucket, name) = match id.split_once('/') {
            Some((b, n)) => (b.to_string(), n.to_string()),
            None => (DatasetLocation::default_bucket(&c.project, id), id.to_string()),
        };
        let bad_id = || {
            Diagnostics::from(Diagnostic::error(
                format!("Cannot import dcr_dataset {id:?}"),
                "The import id is the dataset name (when the bucket has its default name) or BUCKET/NAME.",
            ))
        };
        validate::dataset_name(&name).map_err(|_| bad_id())?;
        let place = DatasetLocation::new(&bucket, &name);
        let object = place.object();
        let o = c
            .storage
            .get_object(&bucket, &object)
            .await
            .map_err(|e| gcp_diag("Cannot read the dataset object", e))?
            .ok_or_else(|| {
                Diagnostics::from(Diagnostic::error(
                    format!("Cannot import dcr_dataset {id:?}"),
                    format!("gs://{bucket}/{object} does not exist."),
                ))
            })?;
        let b =
            c.storage.get_bucket(&bucket).await.map_err(|e| gcp_diag("Cannot read bucket", e))?.ok_or_else(bad_id)?;
        let meta = o.metadata.unwrap_or_default();
        if meta.get(META_FORMAT).map(String::as_str) != Some("dcr-envelope-v1") {
            return Err(Diagnostic::error(
                format!("Cannot import dcr_dataset {id:?}"),
                format!("gs://{bucket}/{object} was not written by dcr."),
            )
            .into());
        }
        let ty = schema().block;
        let block_json = |key: &str, nested: &str| -> Value {
            let t = ty.nested(nested).map(|n| n.block.implied_type()).unwrap_or(Type::Dynamic);
            meta.get(key)
                .and_then(|s| serde_json::from_str(s).ok())
                .and_then(|j| tfplugin6::value::from_json(&j, &t).ok())
                .unwrap_or(Value::Null)
        };
        let key = meta.get(META_KMS_KEY).cloned().unwrap_or_default();
        let kms_location = key.split('/').nth(3).unwrap_or("global").to_string();
        let labels = b.labels.unwrap_or_default();
        let mut state = Value::null_object(&schema().implied_type());
        let stage = block_json(META_STAGE, "programming_stage");
        let has_stage = !stage.is_null() && stage.get("mode").as_str() != Some("none");
        state.set("id", Value::string(place.id()));
        state.set("name", Value::string(&name));
        state.set("bucket", Value::string(&bucket));
        state.set("location", Value::opt_string(b.location));
        state.set("kms_location", Value::string(&kms_location));
        if !labels.is_empty() {
            state.set("labels", Value::Map(labels.into_iter().map(|(k, v)| (k, Value::String(v))).collect()));
        }
        state.set("source", Value::opt_string(meta.get(META_SOURCE_PATH).cloned()));
        state.set("schema", block_json(META_SCHEMA, "schema"));
        state.set("programming_stage", stage);
        state.set("object", Value::string(&object));
        state.set("object_uri", Value::string(place.object_uri()));
        state.set("key_ring", Value::string(key.split("/cryptoKeys/").next().unwrap_or_default()));
        state.set("crypto_key", Value::string(&key));
        state.set("source_sha256", Value::opt_string(meta.get(META_SOURCE_SHA).cloned()));
        state.set(
            "source_rows",
            meta.get(META_SOURCE_ROWS).and_then(|r| r.parse::<i64>().ok()).map(Value::int).unwrap_or(Value::Null),
        );
        if has_stage {
            state.set("stage1_bucket", Value::string(place.stage1_bucket()));
            state.set("stage1_uri", Value::string(place.stage1_uri()));
            match object_sha256(&c, &place.stage1_bucket(), &place.stage1_object()).await {
                Ok(sha) => state.set("stage1_sha256", Value::string(sha)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(gcp_diag("Cannot read the stand-in", e)),
            }
        }
        Ok(state)
    }
}

async fn bucket_exists(state: &ProviderState, v: &Value) -> bool {
    let (Ok(c), Some(b)) = (state.clients(), v.get("bucket").as_str()) else { return false };
    matches!(c.storage.get_bucket(b).await, Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::columns::tests::{column, schema_block};

    fn config(extra: &[(&str, Value)]) -> Value {
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

    fn stage(mode: &str, extra: &[(&str, Value)]) -> Value {
        let mut s = Value::object([
            ("mode", Value::string(mode)),
            ("rows", Value::Null),
            ("public_source", Value::Null),
            ("readers", Value::Null),
        ]);
        for (k, v) in extra {
            s.set(k, v.clone());
        }
        s
    }

    fn facts() -> PlanFacts {
        PlanFacts {
            project: "dcr-local".into(),
            source_sha256: Some("aa".into()),
            source_rows: Some(3),
            public_sha256: None,
        }
    }

    fn summaries(d: &Diagnostics) -> Vec<String> {
        d.iter().map(|x| x.summary.clone()).collect()
    }

    #[test]
    fn bad_inputs_name_their_attribute() {
        let cases: Vec<(Value, &str)> = vec![
            (config(&[("bucket", Value::string("Bad_Bucket!"))]), "bucket"),
            (config(&[("name", Value::string("Not Valid"))]), "name"),
            (config(&[("programming_stage", stage("dp_synthetic", &[]))]), "programming_stage.mode"),
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
    }

    #[test]
    fn create_plans_defaults_and_unknown_results() {
        let (p, rr) = plan_state(&Value::Null, &config(&[]), &facts());
        assert!(rr.is_empty());
        assert_eq!(p.get("bucket").as_str(), Some("dcr-local-patients"));
        assert_eq!(p.get("location").as_str(), Some("US"));
        assert_eq!(p.get("object_uri").as_str(), Some("gs://dcr-local-patients/patients.csv.enc"));
        assert_eq!(p.get("key_ring").as_str(), Some("projects/dcr-local/locations/global/keyRings/dcr-patients"));
        assert_eq!(p.get("source_sha256").as_str(), Some("aa"));
        assert!(p.get("crypto_key").is_unknown() && p.get("ciphertext_sha256").is_unknown());
        assert!(p.get("stage1_bucket").is_null());
    }

    fn applied(cfg: &Value) -> Value {
        let (mut s, _) = plan_state(&Value::Null, cfg, &facts());
        assert!(s.get("id").is_unknown(), "the id is known once the dataset exists");
        s.set("id", Value::string("dcr-local-patients/patients"));
        s.set("crypto_key", Value::string("k"));
        s.set("ciphertext_sha256", Value::string("cc"));
        s.set("object_generation", Value::string("1"));
        if s.get("stage1_sha256").is_unknown() {
            s.set("stage1_sha256", Value::string("ss"));
        }
        s
    }

    #[test]
    fn unchanged_inputs_plan_no_change() {
        let cfg = config(&[("programming_stage", stage("random", &[("rows", Value::int(5))]))]);
        let prior = applied(&cfg);
        let (p, rr) = plan_state(&prior, &cfg, &facts());
        assert!(rr.is_empty());
        assert_eq!(p, prior);
    }

    #[test]
    fn an_edited_source_plans_a_reupload_not_a_replace() {
        let cfg = config(&[]);
        let prior = applied(&cfg);
        let mut f = facts();
        f.source_sha256 = Some("bb".into());
        let (p, rr) = plan_state(&prior, &cfg, &f);
        assert!(rr.is_empty());
        assert!(p.get("ciphertext_sha256").is_unknown());
        assert_eq!(p.get("crypto_key").as_str(), Some("k"));
    }

    #[test]
    fn drift_from_refresh_plans_the_missing_parts_back() {
        let cfg = config(&[("programming_stage", stage("random", &[]))]);
        let mut prior = applied(&cfg);
        prior.set("ciphertext_sha256", Value::Null); // object deleted outside Terraform
        prior.set("stage1_sha256", Value::Null); // stand-in deleted
        let (p, _) = plan_state(&prior, &cfg, &facts());
        assert!(p.get("ciphertext_sha256").is_unknown());
        assert!(p.get("stage1_sha256").is_unknown());
    }

    #[test]
    fn a_new_name_or_bucket_replaces() {
        let prior = applied(&config(&[]));
        let (_, rr) = plan_state(&prior, &config(&[("name", Value::string("visits"))]), &facts());
        assert!(rr.contains(&AttributePath::root("name")));
        let (_, rr) = plan_state(&prior, &config(&[("bucket", Value::string("other-bucket"))]), &facts());
        assert!(rr.contains(&AttributePath::root("bucket")));
    }

    #[test]
    fn settle_removes_unknowns() {
        let v = Value::object([("a", Value::Unknown), ("b", Value::string("x"))]);
        assert_eq!(settle(&v), Value::object([("a", Value::Null), ("b", Value::string("x"))]));
    }
}
