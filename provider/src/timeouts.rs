//! The conventional `timeouts` block (`create`, `update`, `delete`): how long an operation may run
//! before the provider gives up, leaving state that the next apply resumes from.

use std::time::Duration;

use tfplugin6::model::{Attr, Model};
use tfplugin6::schema::{Attribute, Block, NestedBlock};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, Type};

pub const OPERATIONS: [&str; 3] = ["create", "update", "delete"];

/// The `timeouts` block of a resource's configuration or state.
#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct Timeouts {
    pub create: Attr<String>,
    pub update: Attr<String>,
    pub delete: Attr<String>,
}

impl Timeouts {
    /// The limit written for `op` (one of [`OPERATIONS`]), if known.
    fn written(&self, op: &str) -> Option<&str> {
        match op {
            "create" => self.create.as_deref(),
            "update" => self.update.as_deref(),
            "delete" => self.delete.as_deref(),
            _ => None,
        }
    }
}

pub fn block(default: &str) -> NestedBlock {
    block_described(&format!("`{default}`"))
}

/// A `timeouts` block whose default is described in words (it depends on other attributes).
pub fn block_described(default: &str) -> NestedBlock {
    let mut b = Block::new(&format!(
        "How long each operation may take, as a number and a unit (`s`, `m`, `h`), e.g. `\"30m\"`. Defaults to {default}."
    ));
    for op in OPERATIONS {
        b = b.attr(Attribute::optional(op, Type::String, &format!("Time limit for {op}. Defaults to {default}.")));
    }
    NestedBlock::single("timeouts", b)
}

/// The longest limit accepted: a year of hours. Longer values are almost surely typos, and the
/// cap keeps the arithmetic (and tokio's timer, which panics near `u64::MAX` ms) far from overflow.
pub const MAX_HOURS: u64 = 8784;

/// Parses `"90s"`, `"30m"`, `"2h"`, `"1h30m"`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{s:?} is not a duration such as \"30s\", \"20m\" or \"1h30m\" (whole numbers with the units s, m, h; \
             more than 0s and at most {MAX_HOURS}h)"
        )
    };
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        total = n.checked_mul(unit).and_then(|secs| total.checked_add(secs)).ok_or_else(bad)?;
    }
    if !num.is_empty() || total == 0 || total > MAX_HOURS * 3600 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

pub fn validate(timeouts: &Attr<Timeouts>) -> Diagnostics {
    let mut d = Diagnostics::new();
    let Some(t) = timeouts.known() else { return d };
    for op in OPERATIONS {
        if let Some(s) = t.written(op)
            && let Err(e) = parse(s)
        {
            d.push(Diagnostic::attribute_error(AttributePath::root("timeouts").attr(op), e, ""));
        }
    }
    d
}

/// The limit for `op` from the block, or `default`.
pub fn limit(timeouts: &Attr<Timeouts>, op: &str, default: Duration) -> Duration {
    timeouts.known().and_then(|t| t.written(op)).and_then(|s| parse(s).ok()).unwrap_or(default)
}

/// Runs `fut` within `limit`; on expiry, the diagnostic says what timed out and that the next
/// apply picks up where this one stopped.
pub async fn run<T>(op: &str, what: &str, limit: Duration, fut: impl Future<Output = T>) -> Result<T, Diagnostics> {
    tokio::time::timeout(limit, fut).await.map_err(|_| {
        Diagnostic::error(
            format!("Timed out: {op} of {what} took longer than {}s", limit.as_secs()),
            "What finished is recorded in state; run terraform apply again to continue, or raise the limit in \
             the resource's timeouts block.",
        )
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse("10").is_err());
        assert!(parse("5d").is_err());
        assert!(parse("").is_err());
        assert!(parse("0s").is_err());
        assert_eq!(parse("8784h").unwrap(), Duration::from_secs(8784 * 3600));
        assert!(parse("8784h1s").is_err());
        // Overflowing u64 is an error naming the rule, not a panic or a wrap-around.
        let e = parse("18446744073709551615h").unwrap_err();
        assert!(e.contains("at most 8784h"), "{e}");
        assert!(parse("99999999999999999999999s").is_err());
    }

    #[test]
    fn limits_come_from_the_block_and_bad_ones_are_named() {
        let t = Attr::Known(Timeouts {
            create: Attr::Known("2m".into()),
            delete: Attr::Known("5d".into()),
            ..Default::default()
        });
        let default = Duration::from_secs(7);
        assert_eq!(limit(&t, "create", default), Duration::from_secs(120));
        assert_eq!(limit(&t, "update", default), default);
        assert_eq!(limit(&t, "delete", default), default);
        assert_eq!(limit(&Attr::Null, "create", default), default);
        let d = validate(&t);
        assert_eq!(d.0.len(), 1);
        assert_eq!(d.0[0].attribute, Some(AttributePath::root("timeouts").attr("delete")));
        assert!(validate(&Attr::Unknown).0.is_empty());
    }

    #[tokio::test]
    async fn an_operation_over_its_limit_fails_with_a_clear_diagnostic() {
        let r =
            run("create", "dcr_dataset.x", Duration::from_millis(10), tokio::time::sleep(Duration::from_secs(5))).await;
        assert!(r.unwrap_err().0[0].summary.contains("Timed out: create of dcr_dataset.x"));
        assert_eq!(run("create", "x", Duration::from_secs(5), async { 7 }).await.unwrap(), 7);
    }
}
