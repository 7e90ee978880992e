//! Bearer tokens: random, stored only as SHA-256 hashes with their principal and expiry, in the
//! shared database so every process over the same state directory accepts them.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use rusqlite::OptionalExtension;

use crate::api::{ApiError, unix_now};
use crate::store::{Store, sql};

fn hash(token: &str) -> String {
    hex::encode(digest(&SHA256, token.as_bytes()).as_ref())
}

/// Mints a token for `principal`, valid for `ttl_secs`.
pub fn mint(store: &Store, principal: &str, ttl_secs: i64) -> Result<String, crate::LocalCloudError> {
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).expect("system randomness");
    let token = format!("dcrl.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
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

/// The principal a valid, unexpired token stands for.
pub async fn principal_for(store: &Store, token: &str) -> Result<Option<String>, ApiError> {
    let h = hash(token);
    store
        .call(move |c| {
            c.query_row(
                "SELECT principal FROM tokens WHERE hash = ?1 AND expires > ?2",
                rusqlite::params![h, unix_now()],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
        })
        .await
}
