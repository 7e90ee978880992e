//! Remembers files that passed their schema check. Terraform plans every resource twice — at
//! `plan` and again during `apply` — so without this a large source is parsed twice. The key is the
//! file's identity and metadata (device, inode, size, modification time) plus the schema; a file
//! edited in a way that keeps all of those is still caught, because the upload verifies the SHA-256
//! that plan recorded. Cache failures are never errors: the check simply runs again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{CsvSummary, DatasetSchema};

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DCR_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("dcr"))
}

fn key(path: &Path, schema: &DatasetSchema) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let canonical = std::fs::canonicalize(path).ok()?;
    let schema = serde_json::to_string(schema).ok()?;
    let material = format!(
        "v1\n{}\n{}\n{}\n{}\n{}.{}\n{schema}",
        canonical.display(),
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    );
    Some(hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material.as_bytes()).as_ref()))
}

fn entry(cache: &Path, path: &Path, schema: &DatasetSchema) -> Option<PathBuf> {
    Some(cache.join("csv-checks").join(key(path, schema)?))
}

/// A summary recorded for this exact file and schema, if any.
pub fn lookup(path: &Path, schema: &DatasetSchema) -> Option<CsvSummary> {
    lookup_in(&cache_dir()?, path, schema)
}

/// Records a successful check (best effort).
pub fn store(path: &Path, schema: &DatasetSchema, s: &CsvSummary) {
    if let Some(cache) = cache_dir() {
        store_in(&cache, path, schema, s);
    }
}

fn lookup_in(cache: &Path, path: &Path, schema: &DatasetSchema) -> Option<CsvSummary> {
    let text = std::fs::read_to_string(entry(cache, path, schema)?).ok()?;
    let mut parts = text.split_whitespace();
    let sha256 = parts.next()?.to_string();
    let rows = parts.next()?.parse().ok()?;
    let bytes = parts.next()?.parse().ok()?;
    (sha256.len() == 64).then_some(CsvSummary { rows, bytes, sha256 })
}

fn store_in(cache: &Path, path: &Path, schema: &DatasetSchema, s: &CsvSummary) {
    let Some(e) = entry(cache, path, schema) else { return };
    if let Some(dir) = e.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let tmp = e.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, format!("{} {} {}\n", s.sha256, s.rows, s.bytes)).is_ok() {
            let _ = std::fs::rename(&tmp, &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tests::sample_schema;

    #[test]
    fn a_recorded_check_is_found_only_for_the_same_file_and_schema() {
        let dir = std::env::temp_dir().join(format!("dcr-checkcache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cache = dir.join("cache");
        let file = dir.join("a.csv");
        std::fs::write(&file, "age,sex,bmi,note\n1,F,20,\n").unwrap();
        let schema = sample_schema();
        assert!(lookup_in(&cache, &file, &schema).is_none());
        let s = CsvSummary { rows: 1, bytes: 26, sha256: "a".repeat(64) };
        store_in(&cache, &file, &schema, &s);
        assert_eq!(lookup_in(&cache, &file, &schema), Some(s));
        // Any change to the file's metadata misses the cache.
        std::fs::write(&file, "age,sex,bmi,note\n1,F,20,\n2,M,21,\n").unwrap();
        assert!(lookup_in(&cache, &file, &schema).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
