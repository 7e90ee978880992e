//! A run on disk, laid out as under its `gs://` prefix: `output-manifest.json`,
//! `attestation-token.jwt` and the released files under `outputs/` (or `failure.json` when the
//! run released nothing). Reading one hashes every released file as a stream; downloading one
//! refuses object names that would land outside the directory.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use dcr_attestation::names::{FAILURE_OBJECT, OUTPUT_MANIFEST_OBJECT, OUTPUTS_DIR, TOKEN_OBJECT};
use dcr_attestation::run::{FoundFile, RunCheck, RunFailure};
use dcr_attestation::workload::FailureReport;

use crate::cloud::{Cloud, gs};
use crate::error::{CliError, unavailable};

/// What a run directory holds, read for verification.
pub struct Evidence {
    pub manifest: Vec<u8>,
    pub token: String,
    pub outputs: Vec<FoundFile>,
}

fn files_failed(detail: String) -> CliError {
    CliError::Check(RunFailure { check: RunCheck::Files, detail })
}

/// Reads `dir` as a run: the manifest, the token and a hash of every file under `outputs/`.
pub fn read(dir: &Path) -> Result<Evidence, CliError> {
    if !dir.is_dir() {
        return Err(CliError::Usage(format!("{} is not a directory (nor a gs:// URI)", dir.display())));
    }
    let manifest = match std::fs::read(dir.join(OUTPUT_MANIFEST_OBJECT)) {
        Ok(m) => m,
        Err(e) => return Err(files_failed(missing_manifest(dir, e))),
    };
    let token = std::fs::read_to_string(dir.join(TOKEN_OBJECT))
        .map_err(|e| files_failed(format!("cannot read {TOKEN_OBJECT} in {}: {e}", dir.display())))?;
    let mut outputs = Vec::new();
    let root = dir.join(OUTPUTS_DIR);
    if root.is_dir() {
        hash_tree(&root, "", &mut outputs)?;
    }
    outputs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Evidence { manifest, token, outputs })
}

/// Why there is no manifest: the run's own failure report when it left one.
fn missing_manifest(dir: &Path, e: std::io::Error) -> String {
    match std::fs::read(dir.join(FAILURE_OBJECT)).ok().and_then(|b| serde_json::from_slice::<FailureReport>(&b).ok()) {
        Some(f) => {
            format!("the run released nothing: it failed at {} ({}), exit code {}", f.stage, f.message, f.exit_code)
        }
        None => format!("cannot read {OUTPUT_MANIFEST_OBJECT} in {}: {e}", dir.display()),
    }
}

fn hash_tree(dir: &Path, prefix: &str, out: &mut Vec<FoundFile>) -> Result<(), CliError> {
    let entries = std::fs::read_dir(dir).map_err(|e| unavailable(format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| unavailable(format!("cannot list {}: {e}", dir.display())))?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().map_err(|e| unavailable(format!("{name}: {e}")))?;
        if kind.is_symlink() {
            return Err(files_failed(format!("outputs/{name} is a symbolic link; a run releases plain files")));
        } else if kind.is_dir() {
            hash_tree(&entry.path(), &format!("{name}/"), out)?;
        } else {
            let (size, sha256) = hash_file(&entry.path())?;
            out.push(FoundFile { name, size, sha256 });
        }
    }
    Ok(())
}

/// Size and hex SHA-256 of a file, read in blocks.
pub fn hash_file(path: &Path) -> Result<(u64, String), CliError> {
    let cannot = |e: std::io::Error| unavailable(format!("cannot read {}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(cannot)?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let (mut buf, mut size) = (vec![0u8; 1 << 16], 0u64);
    loop {
        let n = f.read(&mut buf).map_err(cannot)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(ctx.finish())))
}

/// `name` as a path under a directory, when it is a plain relative path: no `..`, no root, no
/// empty or `.` segments. Object names are the cloud's, not ours: a crafted one must not write
/// outside the directory.
pub fn safe_relative(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('\\') || name.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return None;
    }
    let p = PathBuf::from(name);
    p.components().all(|c| matches!(c, Component::Normal(_))).then_some(p)
}

/// The run prefix of `uri`, ending in `/`.
pub fn run_prefix(uri: &str) -> String {
    if uri.ends_with('/') { uri.to_string() } else { format!("{uri}/") }
}

/// Downloads the run at `uri` (`gs://BUCKET/PREFIX<digest hex>/`) into `dir`, which exists and
/// is empty. Objects under the prefix that are not part of a run's layout are left alone.
pub async fn download(cloud: &Cloud, uri: &str, dir: &Path, quiet: bool) -> Result<Vec<String>, CliError> {
    let prefix_uri = run_prefix(uri);
    let (bucket, prefix) = gs(&prefix_uri)?;
    let objects = cloud.list(&prefix_uri).await?;
    let mut wanted = Vec::new();
    for o in &objects {
        let rel = &o.name[prefix.len().min(o.name.len())..];
        let is_run_file = [OUTPUT_MANIFEST_OBJECT, TOKEN_OBJECT, FAILURE_OBJECT].contains(&rel);
        if is_run_file || rel.strip_prefix(OUTPUTS_DIR).is_some_and(|r| !r.is_empty()) {
            let path = safe_relative(rel).ok_or_else(|| {
                CliError::Check(RunFailure {
                    check: RunCheck::Outputs,
                    detail: format!("the run holds an object named {:?}, which is not a plain file name", o.name),
                })
            })?;
            let size = o.size.as_deref().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            wanted.push((o.name.clone(), rel.to_string(), path, size));
        }
    }
    if wanted.is_empty() {
        return Err(CliError::Usage(format!(
            "nothing was released under {prefix_uri}: give a run's location (a dcr_workload's output_uri)"
        )));
    }
    let bar = crate::progress::bytes(wanted.iter().map(|w| w.3).sum(), "downloading", quiet);
    let mut written = Vec::new();
    for (object, rel, path, _) in wanted {
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| unavailable(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut file = std::fs::File::create(&target)
            .map_err(|e| unavailable(format!("cannot write {}: {e}", target.display())))?;
        cloud
            .download(bucket, &object, |chunk| {
                bar.inc(chunk.len() as u64);
                std::io::Write::write_all(&mut file, chunk)
            })
            .await?;
        written.push(rel);
    }
    bar.finish_and_clear();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_are_accepted() {
        assert_eq!(safe_relative("outputs/summary.csv"), Some(PathBuf::from("outputs/summary.csv")));
        for bad in ["", "/etc/passwd", "outputs/../../x", "outputs//x", "./x", "outputs/.", "a\\b", "outputs/"] {
            assert_eq!(safe_relative(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_directory_is_read_as_a_run_and_its_outputs_hashed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read(dir.path()), Err(CliError::Check(f)) if f.check == RunCheck::Files));
        std::fs::write(dir.path().join(FAILURE_OBJECT), br#"{"format":"dcr-failure-v1","workload":"w","image_digest":"d","stage":"notebook","message":"the notebook raised","exit_code":3}"#).unwrap();
        let Err(CliError::Check(f)) = read(dir.path()) else { panic!("a run without manifest is refused") };
        assert!(f.detail.contains("failed at notebook"), "{f}");
        std::fs::write(dir.path().join(OUTPUT_MANIFEST_OBJECT), b"{}").unwrap();
        std::fs::write(dir.path().join(TOKEN_OBJECT), b"t\n").unwrap();
        std::fs::create_dir_all(dir.path().join("outputs/plots")).unwrap();
        std::fs::write(dir.path().join("outputs/plots/a.csv"), b"abc").unwrap();
        std::fs::write(dir.path().join("outputs/b.csv"), b"").unwrap();
        let e = read(dir.path()).unwrap();
        let names: Vec<&str> = e.outputs.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["b.csv", "plots/a.csv"]);
        assert_eq!(e.outputs[1], FoundFile::of("plots/a.csv", b"abc"));
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("outputs/link")).unwrap();
        assert!(matches!(read(dir.path()), Err(CliError::Check(f)) if f.detail.contains("symbolic link")));
    }
}
