//! What may leave the TEE: the output files, checked against every input policy's output rules.
//! Nothing is released unless every file passes every rule.

use std::path::Path;

use dcr_attestation::policy::OutputRules;

/// One file the notebook left in the outputs directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Path relative to the outputs directory, `/`-separated.
    pub name: String,
    pub size: u64,
}

/// Lists the outputs directory. Only regular files are candidates: a symbolic link could point at
/// an input, so one is a violation, as is anything that is not a file or directory.
pub fn collect(dir: &Path) -> Result<Vec<Candidate>, String> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&path).map_err(|e| format!("cannot list {}: {e}", path.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", path.display()))?;
            let name = entry.file_name().into_string().map_err(|n| {
                format!("an output file name is not UTF-8 ({}); only UTF-8 names are released", n.to_string_lossy())
            })?;
            let rel_name = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let kind = entry.file_type().map_err(|e| format!("cannot inspect outputs/{rel_name}: {e}"))?;
            if kind.is_dir() {
                stack.push((entry.path(), rel_name));
            } else if kind.is_file() {
                let size = entry.metadata().map_err(|e| format!("cannot inspect outputs/{rel_name}: {e}"))?.len();
                out.push(Candidate { name: rel_name, size });
            } else if kind.is_symlink() {
                return Err(format!("outputs/{rel_name} is a symbolic link; only regular files are released"));
            } else {
                return Err(format!("outputs/{rel_name} is not a regular file; only regular files are released"));
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn extension(name: &str) -> Option<&str> {
    let file = name.rsplit('/').next().unwrap_or(name);
    let (stem, ext) = file.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then_some(ext)
}

/// Every violation of every policy's rules, each naming the policy, the rule and the file.
pub fn violations(files: &[Candidate], policies: &[(String, OutputRules)]) -> Vec<String> {
    let mut found = Vec::new();
    if files.is_empty() {
        found.push("the notebook wrote no files to the outputs directory: there is nothing to release".to_string());
        return found;
    }
    let total: u64 = files.iter().map(|f| f.size).sum();
    for (policy, rules) in policies {
        if total > rules.max_bytes {
            found.push(format!(
                "policy {policy:?}, output rule max_bytes: the outputs total {total} bytes; at most {} are allowed",
                rules.max_bytes
            ));
        }
        for f in files {
            let allowed =
                extension(&f.name).is_some_and(|e| rules.allowed_extensions.iter().any(|a| a.eq_ignore_ascii_case(e)));
            if !allowed {
                let has = extension(&f.name)
                    .map(|e| format!("has extension {e:?}"))
                    .unwrap_or_else(|| "has no extension".into());
                found.push(format!(
                    "policy {policy:?}, output rule allowed_extensions: {} {has}; allowed: {}",
                    f.name,
                    rules.allowed_extensions.join(", ")
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(max: u64, ext: &[&str]) -> OutputRules {
        OutputRules { max_bytes: max, allowed_extensions: ext.iter().map(|e| e.to_string()).collect(), readers: vec![] }
    }
    fn file(name: &str, size: u64) -> Candidate {
        Candidate { name: name.into(), size }
    }

    #[test]
    fn every_file_must_pass_every_policy() {
        let policies = vec![("a".to_string(), rules(100, &["csv", "json"])), ("b".to_string(), rules(50, &["csv"]))];
        assert!(violations(&[file("summary.csv", 40)], &policies).is_empty());
        let v = violations(&[file("summary.csv", 40), file("stats.json", 20)], &policies);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("policy \"b\", output rule max_bytes: the outputs total 60 bytes; at most 50"), "{v:?}");
        assert!(
            v[1].contains(
                "policy \"b\", output rule allowed_extensions: stats.json has extension \"json\"; allowed: csv"
            )
        );
        let v = violations(&[file("dump", 1), file("dir/x.CSV", 1)], &policies);
        assert_eq!(v.iter().filter(|m| m.contains("dump has no extension")).count(), 2, "{v:?}");
        assert!(!v.iter().any(|m| m.contains("x.CSV")), "extensions compare without case: {v:?}");
        assert!(violations(&[], &policies)[0].contains("nothing to release"));
    }

    #[test]
    fn extensions_are_the_last_dot_of_the_file_name() {
        assert_eq!(extension("a/b.tar.gz"), Some("gz"));
        assert_eq!(extension("v1.2/readme"), None);
        assert_eq!(extension(".hidden"), None);
        assert_eq!(extension("x."), None);
    }

    #[test]
    fn links_and_special_files_are_not_released() {
        let dir = std::env::temp_dir().join(format!("dcr-rules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/b.csv"), b"12").unwrap();
        std::fs::write(dir.join("a.csv"), b"1").unwrap();
        assert_eq!(collect(&dir).unwrap(), vec![file("a.csv", 1), file("sub/b.csv", 2)]);
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link.csv")).unwrap();
        assert!(collect(&dir).unwrap_err().contains("link.csv is a symbolic link"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
