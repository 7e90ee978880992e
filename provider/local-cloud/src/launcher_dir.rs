//! The host side of a simulated VM's `/run/container_launcher`: the teeserver socket and the
//! default attestation token file, which Confidential Space's launcher keeps inside the VM.
//!
//! On a real VM nobody else is on the machine; here every other user of the host is. The token is
//! a bearer credential for an hour (token → STS → the owners' data keys), so the directory is the
//! caller's alone: `TMP/dcr-tee-UID/INSTANCE_ID`, both levels 0700 and owned by the caller,
//! the token file 0600. (Unix socket paths are limited to 108 bytes, which the state directory may
//! exceed, hence a short path of its own.) The directory goes when its run ends, by any path; one
//! left by a process that was killed is reaped by the next local cloud to start, found by the
//! supervisor identity it records.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const SUPERVISOR_FILE: &str = "supervisor";
pub const TOKEN_FILE: &str = "attestation_verifier_claims_token";
pub const TEESERVER_SOCKET: &str = "teeserver.sock";

/// `TMP/dcr-tee-UID`: every launcher directory of this user.
pub fn base() -> PathBuf {
    // SAFETY: geteuid cannot fail and has no preconditions.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("dcr-tee-{uid}"))
}

/// The launcher directory of instance `id`.
pub fn path_of(id: &str) -> PathBuf {
    base().join(id)
}

/// Creates `dir` with mode 0700, or accepts it when it already is a real directory (not a link)
/// owned by us that no one else may enter — anything else in a shared temp dir may be another
/// user's trap, and is refused.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
    // SAFETY: as above.
    let me = unsafe { libc::geteuid() };
    if !m.is_dir() || m.uid() != me || m.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} exists but is not a private directory of uid {me} (a directory, mode 0700, owned by this user); \
             remove it and try again",
            dir.display()
        ));
    }
    Ok(())
}

/// A run's launcher directory, created empty and private.
pub struct LauncherDir {
    path: PathBuf,
}

impl LauncherDir {
    /// Creates the directory of instance `id` for the process `supervisor` (a
    /// `PID:START_TIME` identity), replacing what an earlier run of the same id left.
    pub fn create(id: &str, supervisor: &str) -> Result<LauncherDir, String> {
        private_dir(&base())?;
        let path = path_of(id);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let dir = LauncherDir { path };
        dir.write_private(SUPERVISOR_FILE, supervisor.as_bytes())?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the default token, readable by its owner only.
    pub fn write_token(&self, token: &str) -> Result<(), String> {
        self.write_private(TOKEN_FILE, token.as_bytes())
    }

    fn write_private(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        let path = self.path.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        f.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

impl Drop for LauncherDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes every launcher directory whose supervisor is no longer running (a process that was
/// killed mid-run cannot clean up after itself). `alive` says whether a supervisor identity names
/// a running process.
pub fn reap(alive: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(base()) else { return 0 };
    let mut reaped = 0;
    for entry in entries.flatten() {
        let dir = entry.path();
        let supervisor = match std::fs::read_to_string(dir.join(SUPERVISOR_FILE)) {
            Ok(s) => s,
            // Between its creation and its supervisor file a directory is young: leave it be.
            Err(_) if young(&dir) => continue,
            Err(_) => String::new(),
        };
        if !alive(supervisor.trim()) && std::fs::remove_dir_all(&dir).is_ok() {
            reaped += 1;
        }
    }
    reaped
}

fn young(dir: &Path) -> bool {
    let modified = std::fs::metadata(dir).and_then(|m| m.modified());
    modified.ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() < 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_directories_are_private_and_go_with_their_run() {
        let id = format!("unit-{}", std::process::id());
        let dir = LauncherDir::create(&id, "1:1").unwrap();
        dir.write_token("secret").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&base()), 0o700);
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.path().join(TOKEN_FILE)), 0o600);
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn a_dead_supervisors_directory_is_reaped_and_a_live_ones_kept() {
        let dead = LauncherDir::create(&format!("unit-dead-{}", std::process::id()), "dead:0").unwrap();
        let live = LauncherDir::create(&format!("unit-live-{}", std::process::id()), "live:0").unwrap();
        reap(|s| s != "dead:0");
        assert!(!dead.path().exists());
        assert!(live.path().exists());
    }

    #[test]
    fn a_directory_someone_else_prepared_is_refused() {
        let trap = std::env::temp_dir().join(format!("dcr-trap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&trap);
        std::fs::create_dir(&trap).unwrap();
        std::fs::set_permissions(&trap, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = private_dir(&trap).unwrap_err();
        assert!(err.contains("not a private directory"), "{err}");
        std::fs::remove_dir(&trap).unwrap();
        let link = std::env::temp_dir().join(format!("dcr-trap-link-{}", std::process::id()));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/", &link).unwrap();
        assert!(private_dir(&link).is_err());
        std::fs::remove_file(&link).unwrap();
    }
}
