//! Checks on names and members that Google enforces, run at plan time so mistakes surface in
//! `terraform plan` with the attribute named, not halfway through an apply.

/// Cloud Storage bucket naming rules (the subset that applies to names without dots, which are
/// the only ones dcr creates: dotted names need domain verification).
pub fn bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err(format!("{name:?} must be 3 to 63 characters long"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')) {
        return Err(format!(
            "{name:?} contains {c:?}; bucket names may contain only lowercase letters, digits, '-' and '_'"
        ));
    }
    let first = name.chars().next().unwrap_or('-');
    let last = name.chars().last().unwrap_or('-');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(format!("{name:?} must start and end with a letter or digit"));
    }
    if name.starts_with("goog") || name.contains("google") || name.contains("g00gle") {
        return Err(format!("{name:?} may not start with \"goog\" or contain \"google\""));
    }
    Ok(())
}

/// A bucket name dcr derives from the project id when `bucket` is not set (`PROJECT-NAME`,
/// `PROJECT-policy-NAME`). Checked at plan, so a long project id (ids have up to 30 characters) or a
/// domain-scoped one (`example.com:proj`, whose `:` and `.` bucket names cannot hold) fails the plan
/// naming `bucket` instead of failing the apply with Google's 400.
pub fn default_bucket_diagnostic(
    at: tfplugin6::AttributePath,
    bucket: &str,
    pattern: &str,
) -> Option<tfplugin6::Diagnostic> {
    bucket_name(bucket).err().map(|e| {
        tfplugin6::Diagnostic::attribute_error(
            at,
            format!("the default bucket name {bucket:?} ({pattern}) is not a valid bucket name"),
            format!("{e}. Set `bucket` to a name of your choice (3 to 63 lowercase letters, digits, '-' and '_')."),
        )
    })
}

/// A dataset name: it becomes part of bucket, object and key ring ids, so it is kept to
/// characters all of them accept, and short enough that the longest derived id (the key ring
/// `dcr-NAME-…`, the stage-1 bucket) stays within Google's limits.
pub const DATASET_NAME_MAX: usize = 24;

/// A dataset name (see [`DATASET_NAME_MAX`]).
pub fn dataset_name(name: &str) -> Result<(), String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let last_ok = name.chars().last().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=DATASET_NAME_MAX).contains(&name.len()) || !ok_chars || !first_ok || !last_ok {
        return Err(format!(
            "{name:?} must be 3 to {DATASET_NAME_MAX} characters of lowercase letters, digits and '-', starting with a \
             letter and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Cloud KMS location ids (`global`, `us`, `europe-west1`, ...).
pub fn kms_location(loc: &str) -> Result<(), String> {
    if loc.is_empty() || !loc.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(format!("{loc:?} is not a Cloud KMS location id (e.g. \"global\", \"us\", \"europe-west1\")"));
    }
    Ok(())
}

/// Google Cloud label keys and values.
pub fn label(key: &str, value: &str) -> Result<(), String> {
    let key_ok = (1..=63).contains(&key.chars().count())
        && key.chars().next().is_some_and(|c| c.is_lowercase())
        && key.chars().all(|c| c.is_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !key_ok {
        return Err(format!(
            "label key {key:?} must be 1 to 63 lowercase letters, digits, '_' or '-', starting with a letter"
        ));
    }
    let value_ok = value.chars().count() <= 63
        && value.chars().all(|c| c.is_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !value_ok {
        return Err(format!("label value {value:?} must be at most 63 lowercase letters, digits, '_' or '-'"));
    }
    Ok(())
}

fn email(s: &str) -> bool {
    let mut parts = s.splitn(2, '@');
    let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "@._+-".contains(c))
}

/// An IAM member that may be granted read access to a stage-1 stand-in. Public members are refused:
/// stand-in buckets enforce public access prevention.
pub fn reader_member(m: &str) -> Result<(), String> {
    let good = if let Some(e) =
        m.strip_prefix("user:").or_else(|| m.strip_prefix("serviceAccount:")).or_else(|| m.strip_prefix("group:"))
    {
        email(e)
    } else if let Some(d) = m.strip_prefix("domain:") {
        d.contains('.') && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    } else if let Some(rest) = m
        .strip_prefix("principal://iam.googleapis.com/")
        .or_else(|| m.strip_prefix("principalSet://iam.googleapis.com/"))
    {
        rest.starts_with("projects/") || rest.starts_with("locations/")
    } else if m == "allUsers" || m == "allAuthenticatedUsers" {
        return Err(format!(
            "{m:?} would make the data public, which public access prevention on dcr's buckets forbids; \
             name the people or groups who may read it"
        ));
    } else {
        false
    };
    if good {
        Ok(())
    } else {
        Err(format!(
            "{m:?} is not an IAM member; use user:EMAIL, group:EMAIL, serviceAccount:EMAIL, domain:DOMAIN, \
             principal://... or principalSet://..."
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bucket_names_of_long_or_domain_scoped_projects_are_refused_naming_bucket() {
        let at = tfplugin6::AttributePath::root("bucket");
        assert!(default_bucket_diagnostic(at.clone(), "my-project-patients", "PROJECT-NAME").is_none());
        let long = format!("{}-policy-{}", "p".repeat(30), "n".repeat(28));
        for bad in [long.as_str(), "example.com:proj-patients"] {
            let d = default_bucket_diagnostic(at.clone(), bad, "PROJECT-policy-NAME").expect(bad);
            assert_eq!(d.attribute, Some(at.clone()));
            assert!(d.detail.contains("Set `bucket`"), "{}", d.detail);
        }
    }

    #[test]
    fn bucket_names() {
        assert!(bucket_name("dcr-local-patients").is_ok());
        assert!(bucket_name("Bad_Name").is_err());
        assert!(bucket_name("has space").is_err());
        assert!(bucket_name("ab").is_err());
        assert!(bucket_name("-leading").is_err());
        assert!(bucket_name("my-google-data").is_err());
        assert!(bucket_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn dataset_names() {
        assert!(dataset_name("patients").is_ok());
        assert!(dataset_name("p2-visits").is_ok());
        assert!(dataset_name("2p").is_err());
        assert!(dataset_name("Patients").is_err());
        assert!(dataset_name("trailing-").is_err());
        assert!(dataset_name(&"a".repeat(24)).is_ok());
        let e = dataset_name(&"a".repeat(25)).unwrap_err();
        assert!(e.contains("3 to 24 characters"), "{e}");
    }

    #[test]
    fn members() {
        assert!(reader_member("user:ana@example.com").is_ok());
        assert!(reader_member("group:analysts@example.org").is_ok());
        assert!(reader_member("serviceAccount:ci@p.iam.gserviceaccount.com").is_ok());
        assert!(reader_member("domain:example.com").is_ok());
        assert!(reader_member("ana@example.com").is_err());
        assert!(reader_member("user:not-an-email").is_err());
        assert!(reader_member("allUsers").unwrap_err().contains("public"));
    }

    #[test]
    fn labels() {
        assert!(label("team", "clean-room").is_ok());
        assert!(label("Team", "x").is_err());
        assert!(label("team", "Has Space").is_err());
    }
}
