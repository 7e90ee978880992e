//! dcr's simulated attestation issuer: an OIDC issuer (`dcr_attestation::claims::LOCAL_ISSUER`)
//! whose RS256 key lives in the state directory's database. It publishes its discovery document
//! and JWKS over HTTP (`/simulated-tee/...`, no authentication, as any OIDC issuer) and as files
//! under `<state_dir>/simulated-tee/`, so verifiers without a running local cloud find the keys.
//!
//! The simulated TEE mints its tokens here; nothing else in the local cloud signs attestations.

use std::path::{Path, PathBuf};

use dcr_attestation::SigningKey;
use dcr_attestation::claims::LOCAL_ISSUER;
use jsonwebtoken::jwk::JwkSet;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use crate::LocalCloudError;
use crate::api::{ApiError, ApiResult, unix_now};
use crate::store::{Store, sql};

/// Where the issuer's documents are served on the local cloud's port.
pub const HTTP_PREFIX: &str = "/simulated-tee";
/// The directory under the state directory holding the published documents.
pub const PUBLISHED_DIR: &str = "simulated-tee";
pub const JWKS_FILE: &str = "jwks.json";

/// The issuer's current signing key, created on first use. Processes sharing a state directory
/// agree on it: the first to commit wins and the others read its key.
fn signing_key(c: &mut Connection) -> ApiResult<SigningKey> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
    let existing: Option<Vec<u8>> = tx
        .query_row("SELECT pkcs8 FROM issuer_keys ORDER BY created DESC, kid LIMIT 1", [], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    let key = match existing {
        Some(der) => SigningKey::from_pkcs8(&der).map_err(|e| ApiError::internal(e.to_string()))?,
        None => {
            let key = SigningKey::generate().map_err(|e| ApiError::internal(e.to_string()))?;
            tx.execute(
                "INSERT INTO issuer_keys (kid, pkcs8, created) VALUES (?1, ?2, ?3)",
                params![key.kid(), key.pkcs8(), unix_now()],
            )
            .map_err(sql)?;
            key
        }
    };
    tx.commit().map_err(sql)?;
    Ok(key)
}

/// Every public key the issuer has signed with (verifiers select by `kid`).
pub fn jwks(c: &mut Connection) -> ApiResult<JwkSet> {
    signing_key(c)?;
    let mut st = c.prepare("SELECT pkcs8 FROM issuer_keys ORDER BY created, kid").map_err(sql)?;
    let ders: Vec<Vec<u8>> = st.query_map([], |r| r.get(0)).map_err(sql)?.filter_map(Result::ok).collect();
    let keys = ders
        .iter()
        .map(|d| SigningKey::from_pkcs8(d).map(|k| k.jwk()).map_err(|e| ApiError::internal(e.to_string())))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(JwkSet { keys })
}

/// The OIDC discovery document, pointing at the JWKS under `base` (this server's URL).
pub fn discovery(base: &str) -> Value {
    json!({
        "issuer": LOCAL_ISSUER,
        "jwks_uri": format!("{}{HTTP_PREFIX}/jwks", base.trim_end_matches('/')),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "dbgstat", "eat_nonce",
                             "google_service_accounts", "hwmodel", "oemid", "secboot", "submods", "swname", "swversion"],
    })
}

/// The published JWKS file of the issuer whose state directory is `state_dir`.
pub fn published_jwks_path(state_dir: &Path) -> PathBuf {
    state_dir.join(PUBLISHED_DIR).join(JWKS_FILE)
}

/// The JWKS the local cloud of `state_dir` publishes for its simulated issuer: what verifies its
/// tokens without the local cloud running (the provider's functions, `dcr verify`).
pub fn read_published_jwks(state_dir: &Path) -> Result<JwkSet, String> {
    let path = published_jwks_path(state_dir);
    let bytes = std::fs::read(&path).map_err(|e| {
        format!("cannot read the simulated issuer's keys at {}: {e} (has the local cloud run there?)", path.display())
    })?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not a JWK set: {e}", path.display()))
}

/// Writes the JWKS into the state directory (atomically: readers never see half a file). Every
/// provider start calls this; it writes only when the keys changed.
pub fn publish(store: &Store) -> Result<(), LocalCloudError> {
    let mut c = store.connect()?;
    let set = jwks(&mut c).map_err(|e| LocalCloudError::Database { path: store.dir.clone(), message: e.message })?;
    let state_err = |e: std::io::Error| LocalCloudError::StateDir { path: store.dir.clone(), source: e };
    let dir = store.dir.join(PUBLISHED_DIR);
    let bytes = serde_json::to_vec_pretty(&set).expect("a JWKS serialises");
    if std::fs::read(dir.join(JWKS_FILE)).is_ok_and(|have| have == bytes) {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(state_err)?;
    let tmp = dir.join(format!(".{JWKS_FILE}.{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(state_err)?;
    std::fs::rename(&tmp, dir.join(JWKS_FILE)).map_err(state_err)?;
    Ok(())
}

/// The simulated issuer of one state directory, for the code that mints tokens in-process (the
/// TEE simulator; tests).
#[derive(Clone)]
pub struct SimulatedIssuer {
    store: Store,
}

impl SimulatedIssuer {
    /// Opens the issuer of `state_dir` (creating the state directory and key when missing).
    pub fn open(state_dir: &Path) -> Result<SimulatedIssuer, LocalCloudError> {
        let store = Store::open(state_dir)?;
        publish(&store)?;
        Ok(SimulatedIssuer { store })
    }

    pub(crate) fn from_store(store: Store) -> SimulatedIssuer {
        SimulatedIssuer { store }
    }

    /// Signs `claims` with the issuer's key. The caller decides the claims: the TEE simulator
    /// always writes simulated hardware (`AttestationClaims::simulated`).
    pub fn mint(&self, claims: &impl serde::Serialize) -> Result<String, LocalCloudError> {
        let db_err = |message: String| LocalCloudError::Database { path: self.store.dir.clone(), message };
        let mut c = self.store.connect()?;
        let key = signing_key(&mut c).map_err(|e| db_err(e.message))?;
        key.sign(claims).map_err(|e| db_err(e.to_string()))
    }

    pub fn jwks(&self) -> Result<JwkSet, LocalCloudError> {
        let mut c = self.store.connect()?;
        jwks(&mut c).map_err(|e| LocalCloudError::Database { path: self.store.dir.clone(), message: e.message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_persists_and_verifies_what_it_signs() {
        let dir = std::env::temp_dir().join(format!("dcr-issuer-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let issuer = SimulatedIssuer::open(&dir).unwrap();
        let now = unix_now();
        let claims = json!({"iss": LOCAL_ISSUER, "sub": "s", "aud": "a", "iat": now, "exp": now + 60});
        let token = issuer.mint(&claims).unwrap();
        let again = SimulatedIssuer::open(&dir).unwrap();
        let published: JwkSet = serde_json::from_slice(&std::fs::read(published_jwks_path(&dir)).unwrap()).unwrap();
        assert_eq!(published.keys.len(), 1);
        assert_eq!(again.jwks().unwrap().keys.len(), 1, "one key, reused");
        let got = dcr_attestation::verify(&token, &published, &dcr_attestation::Expectations::new(LOCAL_ISSUER, now))
            .unwrap();
        assert_eq!(got["sub"], "s");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
