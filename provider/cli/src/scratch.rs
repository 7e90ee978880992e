//! Temporary directories only this user can enter. tempfile leaves a directory's mode to the
//! umask (0755 under the usual 022), which would let every local user read a run's files, a
//! notebook or a lab's kernel keys while dcr works on them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{CliError, unavailable};

/// A new 0700 directory named `PREFIX…` in `parent` (the system's temporary directory when
/// `None`), removed when dropped.
pub fn private_dir(prefix: &str, parent: Option<&Path>) -> Result<tempfile::TempDir, CliError> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix).permissions(std::fs::Permissions::from_mode(0o700));
    let made = match parent {
        Some(p) => b.tempdir_in(p),
        None => b.tempdir(),
    };
    made.map_err(|e| {
        let at = parent.map(|p| p.display().to_string()).unwrap_or_else(|| std::env::temp_dir().display().to_string());
        unavailable(format!("cannot create a private directory in {at}: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_user_can_enter_it() {
        let parent = tempfile::tempdir().unwrap();
        for dir in [private_dir("dcr-t-", None).unwrap(), private_dir(".dcr-t-", Some(parent.path())).unwrap()] {
            assert_eq!(dir.path().metadata().unwrap().permissions().mode() & 0o777, 0o700, "{}", dir.path().display());
        }
    }
}
