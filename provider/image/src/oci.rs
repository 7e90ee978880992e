//! The OCI image formats dcr reads and writes (image-spec v1): descriptors, manifests, indexes,
//! and canonical JSON for the documents whose bytes we hash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ImageError;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker's names for the same things, which base images pulled from Docker registries carry.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LAYER_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The annotation naming an image in a layout's index (its tag).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

impl Manifest {
    pub fn parse(bytes: &[u8], what: &str) -> Result<Manifest, ImageError> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| ImageError::Format { what: what.to_string(), detail: e.to_string() })?;
        match m.media_type.as_deref() {
            None | Some(MANIFEST_MEDIA_TYPE | DOCKER_MANIFEST_MEDIA_TYPE) => Ok(m),
            Some(other) => Err(ImageError::Format {
                what: what.to_string(),
                detail: format!("media type {other} is not a single-platform image manifest"),
            }),
        }
    }
}

/// JSON with object keys sorted at every level and no insignificant whitespace: the same document
/// always gives the same bytes, whatever order its keys were read or built in.
pub fn canonical_json(v: &Value) -> Vec<u8> {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sorted(v)).expect("JSON values serialise")
}

/// Canonical bytes of a serialisable document.
pub fn canonical<T: Serialize>(doc: &T) -> Vec<u8> {
    canonical_json(&serde_json::to_value(doc).expect("OCI documents serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [{"q": 1, "p": 2}], "x": null}}"#).unwrap();
        assert_eq!(String::from_utf8(canonical_json(&a)).unwrap(), r#"{"a":{"x":null,"y":[{"p":2,"q":1}]},"b":1}"#);
    }

    #[test]
    fn index_manifests_are_refused_where_an_image_is_expected() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":{"mediaType":"x","digest":"sha256:0","size":0},"layers":[]}"#;
        assert!(Manifest::parse(index, "base").is_err());
    }
}
