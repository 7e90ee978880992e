//! The dataset's privacy ledger in its bucket (`NAME.privacy-ledger.json`): read with its
//! generation, checked against the budget, and appended under a generation precondition, so two
//! applies that generate at once cannot both spend what only one may. Destroying the dataset keeps
//! it (and the bucket it is in): a re-created dataset starts from what was already spent.

use dcr_attestation::names::DatasetLocation;
use dcr_gcp::storage::Object;
use dcr_synth::ledger::{Budget, Entry, Ledger, LedgerError};
use futures::StreamExt;
use tfplugin6::model::Attr;
use tfplugin6::value::Number;
use tfplugin6::{AttributePath, Diagnostic, Diagnostics};

use super::DEFAULT_DELTA;
use super::model::Dataset;
use crate::clients::Clients;
use crate::resources::common::gcp_diag;

/// A ledger as stored: its generation is 0 when there is none yet.
pub(crate) struct Stored {
    pub ledger: Ledger,
    pub generation: i64,
}

pub(crate) async fn read(c: &Clients, place: &DatasetLocation) -> Result<Stored, Diagnostics> {
    let (bucket, name) = (&place.bucket, place.ledger_object());
    let what = || format!("Cannot read the privacy ledger {}", place.ledger_uri());
    let object = match c.storage.get_object(bucket, &name).await {
        Ok(o) => o,
        Err(e) if e.is_not_found() => None, // no bucket yet: nothing spent
        Err(e) => return Err(gcp_diag(&what(), e)),
    };
    let Some(generation) = object.and_then(|o| o.generation) else {
        return Ok(Stored { ledger: Ledger::new(&place.id()), generation: 0 });
    };
    let mut bytes = Vec::new();
    let mut stream =
        c.storage.open_download(bucket, &name, Some(&generation)).await.map_err(|e| gcp_diag(&what(), e))?;
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.map_err(|e| gcp_diag(&what(), e))?);
    }
    let ledger = Ledger::parse(&bytes, &place.id()).map_err(|e| {
        Diagnostics::from(Diagnostic::error(
            what(),
            format!("{e}. dcr refuses to spend more of a budget it cannot read; restore the ledger."),
        ))
    })?;
    Ok(Stored { ledger, generation: generation.parse().unwrap_or(0) })
}

/// The budget a configuration sets, if any.
pub(super) fn budget(d: &Dataset) -> Option<Budget> {
    let b = d.privacy_budget.known()?;
    let number = |n: &Attr<Number>| n.known().and_then(|n| n.as_f64());
    Some(Budget { epsilon: number(&b.epsilon)?, delta: number(&b.delta).unwrap_or(DEFAULT_DELTA) })
}

/// What the ledger says was spent, as ε at the budget's δ (or the default δ), to 6 digits.
pub(super) fn spent(ledger: &Ledger, budget: Option<Budget>) -> Number {
    Number::decimal(ledger.epsilon_spent(budget.map_or(DEFAULT_DELTA, |b| b.delta)), 6)
}

/// The refusal of a generation over budget, at the attribute that asks for it.
pub(super) fn over_budget(e: LedgerError) -> Diagnostics {
    Diagnostic::attribute_error(
        AttributePath::root("programming_stage").attr("epsilon"),
        "the privacy budget cannot cover a new stand-in",
        format!(
            "{e}. Lower programming_stage.epsilon, raise privacy_budget.epsilon, or keep the stand-in already \
             published (a new one is generated when the source, the schema or the stand-in settings change)."
        ),
    )
    .into()
}

/// Appends `entry` if the budget covers it, retrying when another apply wrote in between; returns
/// the ledger as written.
pub(super) async fn append(
    c: &Clients,
    place: &DatasetLocation,
    budget: Option<Budget>,
    entry: Entry,
) -> Result<Ledger, Diagnostics> {
    for _ in 0..8 {
        let Stored { mut ledger, generation } = read(c, place).await?;
        ledger.check(budget, entry.epsilon, entry.rho).map_err(over_budget)?;
        ledger.entries.push(entry.clone());
        let meta =
            Object { name: place.ledger_object(), content_type: Some("application/json".into()), ..Object::default() };
        let body = std::io::Cursor::new(ledger.to_bytes());
        match c.storage.upload_object(&place.bucket, &meta, body, Some(generation)).await {
            Ok(_) => return Ok(ledger),
            Err(e) if e.is_precondition_failed() => continue,
            Err(e) => return Err(gcp_diag(&format!("Cannot write the privacy ledger {}", place.ledger_uri()), e)),
        }
    }
    Err(Diagnostic::error(
        format!("Cannot write the privacy ledger {}", place.ledger_uri()),
        "It kept changing under this apply (other applies generating stand-ins of the same dataset); run terraform \
         apply again.",
    )
    .into())
}

/// Now, as the ledger's entries record it (RFC 3339, UTC).
pub(super) fn now() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Empties the dataset's bucket for a destroy, but keeps its privacy ledger (and so the bucket)
/// when there is one; a bucket without a ledger is deleted.
pub(super) async fn empty_keeping_ledger(c: &Clients, bucket: &str, name: Option<&str>) -> Result<(), Diagnostics> {
    let ledger = name.map(|n| DatasetLocation::new(bucket, n).ledger_object());
    crate::resources::common::empty_and_delete_bucket_keeping(c, bucket, ledger.as_deref()).await
}

#[cfg(test)]
mod tests {
    use dcr_synth::accounting::{cdp_eps, cdp_rho};

    use super::*;
    use crate::config::{Backend, LocalConfig};
    use crate::resources::common::{ensure_bucket, private_bucket};

    fn entry(epsilon: f64) -> Entry {
        Entry {
            mechanism: "mst/1".into(),
            rho: cdp_rho(epsilon, 1e-9),
            epsilon,
            delta: 1e-9,
            rows: 10,
            time: now(),
            stand_in_sha256: "ab".repeat(32),
        }
    }

    /// Two applies appending at once: the generation precondition makes the later one re-read,
    /// so no entry is lost, and a budget that covers only one of them admits only one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_lose_nothing_and_spend_no_more_than_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::Local(LocalConfig { state_dir: dir.path().into(), project: "dcr-local".into() });
        let c = Clients::connect(&backend).await.unwrap();
        let place = DatasetLocation::new("dcr-local-race", "race");
        ensure_bucket(&c, &private_bucket(&place.bucket, "US", &Default::default())).await.unwrap();

        let (a, b) = tokio::join!(append(&c, &place, None, entry(1.0)), append(&c, &place, None, entry(1.0)));
        a.unwrap();
        b.unwrap();
        let stored = read(&c, &place).await.unwrap();
        assert_eq!(stored.ledger.entries.len(), 2, "an append was lost");
        assert!(stored.generation > 0);

        // Room for one more generation at ε = 1, not two.
        let room = 2.0 * cdp_rho(1.0, 1e-9) + 1.5 * cdp_rho(1.0, 1e-9);
        let budget = Some(Budget { epsilon: cdp_eps(room, 1e-9), delta: 1e-9 });
        let (a, b) = tokio::join!(append(&c, &place, budget, entry(1.0)), append(&c, &place, budget, entry(1.0)));
        assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "exactly one fits: {a:?} {b:?}");
        let refused = a.err().or(b.err()).unwrap();
        assert!(refused.0[0].detail.contains("left"), "{:?}", refused.0);
        assert_eq!(read(&c, &place).await.unwrap().ledger.entries.len(), 3);
    }
}
