//! Opening the local files a configuration names (`source`, `public_source`, `notebook`).
//!
//! They must be regular files. A FIFO would block plan forever on open or read, a device such as
//! `/dev/zero` never ends, a directory cannot be read: each is refused with a diagnostic naming the
//! attribute. The file is checked twice — by path before opening, so a FIFO is never opened, and by
//! descriptor after, so a path swapped in between is caught too — and opened with `O_NONBLOCK`,
//! which a regular file ignores but which keeps a FIFO swapped in at that moment from blocking.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

use tfplugin6::{AttributePath, Diagnostic, Diagnostics};

/// What kind of thing a path is, in words, when it is not a regular file.
fn not_regular(m: &Metadata) -> Option<&'static str> {
    let t = m.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

fn error(at: &AttributePath, path: &str, what: impl std::fmt::Display, detail: &str) -> Diagnostics {
    Diagnostic::attribute_error(at.clone(), format!("cannot read {path:?}: {what}"), detail.to_string()).into()
}

const REGULAR_ONLY: &str = "It must be a regular file (not a directory, pipe or device); paths are relative to \
                            Terraform's working directory.";

/// Whether nothing is at `path` (as opposed to something unreadable, which is an error to report).
pub fn is_missing(path: &str) -> bool {
    matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// When nothing is at `path` (the value of `at`) but what it held is recorded and still in use, a
/// plan keeps the record instead of failing: refresh, plan and destroy then work on a machine
/// without the file (a CI runner, an auditor's checkout). The warning says so, naming what is
/// kept and how to change it. `None` unless `recorded` holds and the file is missing.
pub fn gone_but_recorded(
    at: AttributePath,
    path: &str,
    recorded: bool,
    kept: &str,
    detail: String,
) -> Option<Diagnostic> {
    (recorded && is_missing(path))
        .then(|| Diagnostic::warning(format!("{at} {path:?} is not here; keeping {kept}"), detail).at(at))
}

/// Opens `path` for reading if it is a regular file, else a diagnostic at `at`.
pub fn open_regular(at: &AttributePath, path: &str) -> Result<File, Diagnostics> {
    let before = std::fs::metadata(path).map_err(|e| error(at, path, e, REGULAR_ONLY))?;
    if let Some(kind) = not_regular(&before) {
        return Err(error(at, path, format!("it is {kind}"), REGULAR_ONLY));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| error(at, path, e, REGULAR_ONLY))?;
    let after = file.metadata().map_err(|e| error(at, path, e, REGULAR_ONLY))?;
    if let Some(kind) = not_regular(&after) {
        return Err(error(at, path, format!("it is {kind}"), REGULAR_ONLY));
    }
    Ok(file)
}

/// Reads a whole regular file of at most `max` bytes: larger files are refused before any byte is
/// read, and a file that grows while being read stops at `max + 1` bytes.
pub fn read_regular(at: &AttributePath, path: &str, max: u64) -> Result<Vec<u8>, Diagnostics> {
    let file = open_regular(at, path)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let too_large = |len: u64| {
        error(at, path, format!("it is larger than {max} bytes ({len} bytes)"), "That is the limit for this attribute.")
    };
    if len > max {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| error(at, path, e, REGULAR_ONLY))?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(r: Result<impl Sized, Diagnostics>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(d) => d.0[0].summary.clone(),
        }
    }

    #[test]
    fn only_regular_files_are_opened_and_the_refusal_names_the_attribute() {
        let at = AttributePath::root("source");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Opening a FIFO for reading would block until a writer comes: this must return at once.
        let s = summary(open_regular(&at, fifo.to_str().unwrap()));
        assert!(s.starts_with("Invalid source: cannot read") && s.contains("named pipe"), "{s}");
        let s = summary(open_regular(&at, "/dev/zero"));
        assert!(s.contains("it is a device"), "{s}");
        let s = summary(open_regular(&at, dir.path().to_str().unwrap()));
        assert!(s.contains("it is a directory"), "{s}");
        let s = summary(open_regular(&at, dir.path().join("missing").to_str().unwrap()));
        assert!(s.contains("No such file"), "{s}");
        let file = dir.path().join("f.csv");
        std::fs::write(&file, "a\n").unwrap();
        assert_eq!(summary(open_regular(&at, file.to_str().unwrap())), "ok");
    }

    #[test]
    fn reads_are_capped() {
        let at = AttributePath::root("notebook");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.ipynb");
        std::fs::write(&file, vec![b'x'; 100]).unwrap();
        assert_eq!(read_regular(&at, file.to_str().unwrap(), 100).unwrap().len(), 100);
        let s = summary(read_regular(&at, file.to_str().unwrap(), 99));
        assert!(s.contains("larger than 99 bytes (100 bytes)"), "{s}");
    }
}
