//! Diagnostics and attribute paths: how a provider tells Terraform what went wrong and where.

use std::fmt;

use crate::proto;

/// One step into a value: an attribute, a map key, or a list index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Attr(String),
    Key(String),
    Index(i64),
}

/// A path to an attribute, e.g. `schema.column[2].min`. Terraform underlines the configuration
/// at this path when it shows the diagnostic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttributePath(pub Vec<Step>);

impl AttributePath {
    pub fn root(name: &str) -> AttributePath {
        AttributePath(vec![Step::Attr(name.to_string())])
    }
    pub fn attr(mut self, name: &str) -> AttributePath {
        self.0.push(Step::Attr(name.to_string()));
        self
    }
    pub fn index(mut self, i: usize) -> AttributePath {
        self.0.push(Step::Index(i as i64));
        self
    }
    pub fn key(mut self, k: &str) -> AttributePath {
        self.0.push(Step::Key(k.to_string()));
        self
    }
}

impl fmt::Display for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Step::Attr(a) if i == 0 => write!(f, "{a}")?,
                Step::Attr(a) => write!(f, ".{a}")?,
                Step::Key(k) => write!(f, "[{k:?}]")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub summary: String,
    pub detail: String,
    pub attribute: Option<AttributePath>,
}

impl Diagnostic {
    pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Error, summary: summary.into(), detail: detail.into(), attribute: None }
    }
    pub fn warning(summary: impl Into<String>, detail: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, summary: summary.into(), detail: detail.into(), attribute: None }
    }
    /// An error about one attribute. The summary names the attribute, so the message is clear even
    /// where Terraform cannot underline the configuration (e.g. computed values).
    pub fn attribute_error(path: AttributePath, summary: impl Into<String>, detail: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            summary: format!("Invalid {}: {}", path, summary.into()),
            detail: detail.into(),
            attribute: Some(path),
        }
    }
    pub fn at(mut self, path: AttributePath) -> Diagnostic {
        self.attribute = Some(path);
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// A list of diagnostics; "has errors" decides whether an operation failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Diagnostics {
        Diagnostics(Vec::new())
    }
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Diagnostics {
        Diagnostics(vec![d])
    }
}

impl From<&AttributePath> for proto::AttributePath {
    fn from(p: &AttributePath) -> proto::AttributePath {
        use proto::attribute_path::step::Selector;
        proto::AttributePath {
            steps: p
                .0
                .iter()
                .map(|s| proto::attribute_path::Step {
                    selector: Some(match s {
                        Step::Attr(a) => Selector::AttributeName(a.clone()),
                        Step::Key(k) => Selector::ElementKeyString(k.clone()),
                        Step::Index(i) => Selector::ElementKeyInt(*i),
                    }),
                })
                .collect(),
        }
    }
}

impl From<&Diagnostic> for proto::Diagnostic {
    fn from(d: &Diagnostic) -> proto::Diagnostic {
        proto::Diagnostic {
            severity: match d.severity {
                Severity::Error => proto::diagnostic::Severity::Error,
                Severity::Warning => proto::diagnostic::Severity::Warning,
            } as i32,
            summary: d.summary.clone(),
            detail: d.detail.clone(),
            attribute: d.attribute.as_ref().map(Into::into),
        }
    }
}

/// At most this many diagnostics reach Terraform per response; the rest are counted in one more.
/// A bad file or configuration can produce thousands of findings, and a wall of them hides the
/// first, which is the one to fix.
pub const MAX_DIAGNOSTICS: usize = 20;
/// Summaries and details are cut to this many bytes (at a character boundary): a message that
/// quotes user input (a header of 100,000 columns) must not become a megabyte of output.
pub const MAX_TEXT: usize = 4096;

/// `s` cut to at most `max` bytes, ending in "…" (with the number of bytes left out) when cut.
pub fn truncate_text(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(48);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &s[..end], s.len() - end)
}

pub(crate) fn to_proto(d: &Diagnostics) -> Vec<proto::Diagnostic> {
    let capped = |d: &Diagnostic| {
        let mut p = proto::Diagnostic::from(d);
        p.summary = truncate_text(&p.summary, MAX_TEXT);
        p.detail = truncate_text(&p.detail, MAX_TEXT);
        p
    };
    // Errors first, so a cap never hides the reason an operation failed behind warnings.
    let (errors, warnings): (Vec<&Diagnostic>, Vec<&Diagnostic>) =
        d.0.iter().partition(|d| d.severity == Severity::Error);
    let ordered: Vec<&Diagnostic> = errors.iter().chain(warnings.iter()).copied().collect();
    let mut out: Vec<proto::Diagnostic> = ordered.iter().take(MAX_DIAGNOSTICS).map(|d| capped(d)).collect();
    let rest = &ordered[out.len()..];
    if !rest.is_empty() {
        let rest_errors = rest.iter().filter(|d| d.severity == Severity::Error).count();
        let summary = format!("… and {} more problems of the same kind or others", rest.len());
        let detail = format!(
            "Only the first {MAX_DIAGNOSTICS} problems are shown ({rest_errors} of the {} left out are errors). Fix \
             these and run the command again to see the rest.",
            rest.len()
        );
        out.push(capped(&if rest_errors > 0 {
            Diagnostic::error(summary, detail)
        } else {
            Diagnostic::warning(summary, detail)
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_like_terraform_addresses() {
        let p = AttributePath::root("schema").attr("column").index(2).attr("min");
        assert_eq!(p.to_string(), "schema.column[2].min");
        let d = Diagnostic::attribute_error(p, "min is greater than max", "");
        assert!(d.summary.contains("schema.column[2].min"));
    }

    #[test]
    fn many_diagnostics_are_capped_with_a_count_and_errors_come_first() {
        let mut d = Diagnostics::new();
        d.push(Diagnostic::warning("w", ""));
        for i in 0..100 {
            d.push(Diagnostic::error(format!("e{i}"), ""));
        }
        let p = to_proto(&d);
        assert_eq!(p.len(), MAX_DIAGNOSTICS + 1);
        assert_eq!(p[0].summary, "e0");
        assert!(p.iter().all(|x| x.summary != "w"));
        assert_eq!(p[MAX_DIAGNOSTICS].summary, "… and 81 more problems of the same kind or others");
        assert!(p[MAX_DIAGNOSTICS].detail.contains("80 of the 81 left out are errors"));
        assert_eq!(p[MAX_DIAGNOSTICS].severity, proto::diagnostic::Severity::Error as i32);
        // Few diagnostics pass unchanged.
        assert_eq!(to_proto(&Diagnostics::from(Diagnostic::warning("w", "d"))).len(), 1);
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary_and_say_how_much_was_left_out() {
        let long = "é".repeat(10_000);
        let cut = truncate_text(&long, MAX_TEXT);
        assert!(cut.len() <= MAX_TEXT, "{}", cut.len());
        assert!(cut.ends_with("more bytes)"));
        assert_eq!(truncate_text("short", MAX_TEXT), "short");
        let p = to_proto(&Diagnostics::from(Diagnostic::error("s", "x".repeat(1 << 20))));
        assert!(p[0].detail.len() <= MAX_TEXT);
    }
}
