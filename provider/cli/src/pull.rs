//! `dcr pull`: the stage-1 stand-ins of datasets, into a directory laid out as the launcher lays
//! out a workload's inputs (`NAME.csv`), so a notebook explored on them finds its files where the
//! TEE will put the real ones.

use std::path::Path;

use dcr_attestation::names::DatasetLocation;
use dcr_attestation::workload::{is_input_name, split_gs_uri};

use crate::cloud::Cloud;
use crate::error::{CliError, unavailable};

/// One dataset to pull: `INPUT=BUCKET/NAME`, or `BUCKET/NAME` (the input is then named `NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub input: String,
    pub dataset: DatasetLocation,
}

impl Wanted {
    pub fn parse(arg: &str) -> Result<Wanted, CliError> {
        let (input, id) = match arg.split_once('=') {
            Some((i, id)) => (Some(i), id),
            None => (None, arg),
        };
        let dataset =
            DatasetLocation::from_id(id).filter(|d| !d.bucket.is_empty() && !d.name.is_empty()).ok_or_else(|| {
                CliError::Usage(format!(
                    "{arg:?} is not a dataset id: give a dcr_dataset's id, BUCKET/NAME, or INPUT=BUCKET/NAME"
                ))
            })?;
        let input = input.unwrap_or(&dataset.name).to_string();
        if !is_input_name(&input) {
            return Err(CliError::Usage(format!(
                "input name {input:?} is not a plain file name (letters, digits, '_' and '-', at most 63)"
            )));
        }
        Ok(Wanted { input, dataset })
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Pulled {
    pub input: String,
    pub dataset: String,
    pub uri: String,
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Downloads each stand-in into `to/INPUT.csv`, through a temporary file renamed into place, so a
/// failed pull leaves no half-written input.
pub async fn pull(cloud: &Cloud, wanted: &[Wanted], to: &Path, quiet: bool) -> Result<Vec<Pulled>, CliError> {
    let mut inputs: Vec<&str> = wanted.iter().map(|w| w.input.as_str()).collect();
    inputs.sort_unstable();
    if let Some(pair) = inputs.windows(2).find(|p| p[0] == p[1]) {
        return Err(CliError::Usage(format!(
            "two datasets would both be input {:?}: name one INPUT=BUCKET/NAME",
            pair[0]
        )));
    }
    std::fs::create_dir_all(to).map_err(|e| unavailable(format!("cannot create {}: {e}", to.display())))?;
    let mut pulled = Vec::new();
    for w in wanted {
        let uri = w.dataset.stage1_uri();
        let (bucket, object) = split_gs_uri(&uri).expect("stage-1 URIs are gs://");
        if !cloud.exists(bucket, object).await? {
            return Err(unavailable(format!(
                "dataset {} has no stage-1 stand-in at {uri}, or you may not read it (its programming_stage readers may)",
                w.dataset.id()
            )));
        }
        let temp = tempfile::NamedTempFile::new_in(to)
            .map_err(|e| unavailable(format!("cannot write in {}: {e}", to.display())))?;
        let mut file = temp.as_file();
        let bar = crate::progress::bytes(0, &w.input, quiet);
        cloud
            .download(bucket, object, |chunk| {
                bar.inc(chunk.len() as u64);
                std::io::Write::write_all(&mut file, chunk)
            })
            .await?;
        bar.finish_and_clear();
        let path = to.join(format!("{}.csv", w.input));
        temp.persist(&path).map_err(|e| unavailable(format!("cannot write {}: {e}", path.display())))?;
        let (bytes, sha256) = crate::run_dir::hash_file(&path)?;
        pulled.push(Pulled {
            input: w.input.clone(),
            dataset: w.dataset.id(),
            uri,
            path: path.display().to_string(),
            bytes,
            sha256,
        });
    }
    Ok(pulled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_are_named_by_id_and_optionally_by_input() {
        let w = Wanted::parse("dcr-local-patients/patients").unwrap();
        assert_eq!(
            (w.input.as_str(), w.dataset.stage1_uri().as_str()),
            ("patients", "gs://dcr-local-patients-stage1/patients.csv")
        );
        assert_eq!(Wanted::parse("cohort=b/patients").unwrap().input, "cohort");
        for bad in ["patients", "/patients", "b/", "../x=b/n", "a.b=b/n"] {
            assert!(matches!(Wanted::parse(bad), Err(CliError::Usage(_))), "{bad}");
        }
    }
}
