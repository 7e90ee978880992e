//! Bearer tokens: random, stored only as SHA-256 hashes with their principal and expiry, in the
//! shared database so every process over the same state directory accepts them. Federated tokens
//! (issued by STS) also carry the principal sets of their identity and the pool they came from:
//! they stop working when the pool is deleted or disabled, as on Google Cloud.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use rusqlite::OptionalExtension;

use crate::api::{ApiError, unix_now};
use crate::iam::Identity;
use crate::store::{Store, sql};

fn hash(token: &str) -> String {
    hex::encode(digest(&SHA256, token.as_bytes()).as_ref())
}

fn fresh_token() -> String {
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).expect("system randomness");
    format!("dcrl.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

/// Mints a token for `principal`, valid for `ttl_secs`.
pub fn mint(store: &Store, principal: &str, ttl_secs: i64) -> Result<String, crate::LocalCloudError> {
    let token = fresh_token();
    let conn = store.connect()?;
    conn.execute(
        "INSERT INTO tokens (hash, principal, expires) VALUES (?1, ?2, ?3)",
        rusqlite::params![hash(&token), principal, unix_now() + ttl_secs],
    )
    .map_err(|e| store.db_err(e))?;
    // Drop long-expired tokens so the table does not grow without bound.
    let _ = conn.execute("DELETE FROM tokens WHERE expires < ?1", [unix_now() - 86_400]);
    Ok(token)
}

/// Mints a federated access token (what STS returns) for `who`, issued through `pool`.
pub fn mint_federated(
    c: &rusqlite::Connection,
    who: &Identity,
    project_number: &str,
    pool: &str,
    ttl_secs: i64,
) -> Result<String, ApiError> {
    let token = fresh_token();
    c.execute(
        "INSERT INTO federated_tokens (hash, principal, sets, project_number, pool, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        rusqlite::params![
            hash(&token),
            who.principal,
            serde_json::to_string(&who.sets).expect("strings serialise"),
            project_number,
            pool,
            unix_now() + ttl_secs
        ],
    )
    .map_err(sql)?;
    let _ = c.execute("DELETE FROM federated_tokens WHERE expires < ?1", [unix_now() - 86_400]);
    Ok(token)
}

/// The identity a valid, unexpired token stands for.
pub async fn identity_for(store: &Store, token: &str) -> Result<Option<Identity>, ApiError> {
    let h = hash(token);
    store
        .call(move |c| {
            let now = unix_now();
            let plain: Option<String> = c
                .query_row("SELECT principal FROM tokens WHERE hash = ?1 AND expires > ?2", rusqlite::params![h, now], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql)?;
            if let Some(p) = plain {
                return Ok(Some(Identity::new(p)));
            }
            let fed: Option<(String, String, String, String)> = c
                .query_row(
                    "SELECT principal, sets, project_number, pool FROM federated_tokens WHERE hash = ?1 AND expires > ?2",
                    rusqlite::params![h, now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(sql)?;
            let Some((principal, sets, number, pool)) = fed else { return Ok(None) };
            if !crate::wif::pool_usable(c, &number, &pool)? {
                return Ok(None);
            }
            Ok(Some(Identity { principal, sets: serde_json::from_str(&sets).unwrap_or_default() }))
        })
        .await
}
