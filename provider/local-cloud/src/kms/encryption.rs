//! `cryptoKeys.encrypt` and `decrypt`, with real AES-256-GCM under the version's key material.
//! Local ciphertexts are: magic, version number, nonce, then the AES-256-GCM output.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde_json::{Value, json};

use super::wire::{b64, check_crc32c, crc32c_value, parse_b64};
use super::{Scope, rows};
use crate::api::{ApiError, ApiResult, check_fields};
use crate::logging::{DataAccess, record_data_access};
use crate::store::Store;

const MAX_PLAINTEXT: usize = 64 * 1024;
const CIPHERTEXT_MAGIC: &[u8; 4] = b"DLK1";

pub(super) async fn encrypt(store: &Store, scope: Scope, key: String, body: Value) -> ApiResult<Value> {
    check_fields(
        &body,
        &["plaintext", "additionalAuthenticatedData", "plaintextCrc32c", "additionalAuthenticatedDataCrc32c"],
        "EncryptRequest",
    )?;
    let plaintext = parse_b64("plaintext", &body["plaintext"])?;
    let aad = parse_b64("additionalAuthenticatedData", &body["additionalAuthenticatedData"])?;
    let verified_plaintext = check_crc32c(&body, "plaintext", &plaintext)?;
    let verified_aad = check_crc32c(&body, "additionalAuthenticatedData", &aad)?;
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(ApiError::bad_request("The plaintext exceeds the 64 KiB limit."));
    }
    store
        .call(move |c| {
            audited(c, &scope, &key, "Encrypt", "cloudkms.cryptoKeyVersions.useToEncrypt", |c| {
                seal_with_primary(c, &key, &plaintext, &aad, verified_plaintext, verified_aad)
            })
        })
        .await
}

fn seal_with_primary(
    c: &rusqlite::Connection,
    key: &str,
    plaintext: &[u8],
    aad: &[u8],
    verified_plaintext: bool,
    verified_aad: bool,
) -> ApiResult<Value> {
    let vname = format!("{key}/cryptoKeyVersions/1");
    let primary = rows::version(c, &vname)?.ok_or_else(|| {
        if rows::key(c, key).ok().flatten().is_some() {
            ApiError::failed_precondition(format!("{key} has no primary version."))
        } else {
            ApiError::not_found(format!("CryptoKey {key} not found."))
        }
    })?;
    if primary.state != "ENABLED" {
        return Err(ApiError::failed_precondition(format!(
            "{vname} is not enabled, current state is: {}.",
            primary.state
        )));
    }
    let ct = seal(&primary.material, 1, plaintext, aad)?;
    Ok(json!({"name": vname, "ciphertext": b64(&ct), "ciphertextCrc32c": crc32c_value(&ct),
              "protectionLevel": "SOFTWARE", "verifiedPlaintextCrc32c": verified_plaintext,
              "verifiedAdditionalAuthenticatedDataCrc32c": verified_aad}))
}

pub(super) async fn decrypt(store: &Store, scope: Scope, key: String, body: Value) -> ApiResult<Value> {
    check_fields(
        &body,
        &["ciphertext", "additionalAuthenticatedData", "ciphertextCrc32c", "additionalAuthenticatedDataCrc32c"],
        "DecryptRequest",
    )?;
    let ct = parse_b64("ciphertext", &body["ciphertext"])?;
    let aad = parse_b64("additionalAuthenticatedData", &body["additionalAuthenticatedData"])?;
    check_crc32c(&body, "ciphertext", &ct)?;
    check_crc32c(&body, "additionalAuthenticatedData", &aad)?;
    store
        .call(move |c| {
            audited(c, &scope, &key, "Decrypt", "cloudkms.cryptoKeyVersions.useToDecrypt", |c| {
                unwrap(c, &key, &ct, &aad)
            })
        })
        .await
}

/// Checks the caller's `permission` on `key` and runs `op`, a use of the key (Encrypt and Decrypt
/// are DATA_READ methods, https://cloud.google.com/kms/docs/logging), then records the call in
/// the project's Data Access log, granted or refused: every use of a dataset's key is one its
/// owner can audit.
fn audited(
    c: &rusqlite::Connection,
    scope: &Scope,
    key: &str,
    method: &str,
    permission: &str,
    op: impl FnOnce(&rusqlite::Connection) -> ApiResult<Value>,
) -> ApiResult<Value> {
    let result = scope.require(c, Some(key), permission, key).and_then(|()| op(c));
    let access = DataAccess {
        project: &scope.project,
        service: "cloudkms.googleapis.com",
        method,
        resource_name: key,
        permission,
        resource: key_resource(key),
        request_type: &format!("type.googleapis.com/google.cloud.kms.v1.{method}Request"),
        caller: &scope.principal,
    };
    record_data_access(c, access, &result)?;
    result
}

fn unwrap(c: &rusqlite::Connection, key: &str, ct: &[u8], aad: &[u8]) -> ApiResult<Value> {
    let bad = || ApiError::bad_request("Decryption failed: the ciphertext is invalid.");
    let number = version_of(ct).ok_or_else(bad)?;
    let vname = format!("{key}/cryptoKeyVersions/{number}");
    let version = rows::version(c, &vname)?.ok_or_else(bad)?;
    if version.state != "ENABLED" {
        return Err(ApiError::failed_precondition(format!(
            "The request cannot be fulfilled: {vname} is not enabled, current state is: {}.",
            version.state
        )));
    }
    let plain = open(&version.material, number, ct, aad).ok_or_else(bad)?;
    Ok(json!({"plaintext": b64(&plain), "plaintextCrc32c": crc32c_value(&plain),
              "usedPrimary": number == 1, "protectionLevel": "SOFTWARE"}))
}

/// The monitored resource of a key's audit entries, `cloudkms_cryptokey`
/// (https://cloud.google.com/logging/docs/api/v2/resource-list).
fn key_resource(key: &str) -> Value {
    let parts: Vec<&str> = key.split('/').collect();
    let at = |i: usize| parts.get(i).copied().unwrap_or_default();
    json!({"type": "cloudkms_cryptokey", "labels": {"project_id": at(1), "location": at(3),
           "key_ring_id": at(5), "crypto_key_id": at(7)}})
}

/// The version number a local ciphertext names, if it is one.
fn version_of(ct: &[u8]) -> Option<u32> {
    if ct.len() < 4 + 4 + 12 + 16 || &ct[..4] != CIPHERTEXT_MAGIC {
        return None;
    }
    Some(u32::from_be_bytes(ct[4..8].try_into().ok()?))
}

fn gcm(material: &[u8]) -> ApiResult<LessSafeKey> {
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, material).map_err(|_| ApiError::internal("bad key material"))?))
}

fn seal(material: &[u8], number: u32, plaintext: &[u8], aad: &[u8]) -> ApiResult<Vec<u8>> {
    let mut nonce = [0u8; 12];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| ApiError::internal("no randomness"))?;
    let mut out = Vec::with_capacity(4 + 4 + 12 + plaintext.len() + 16);
    out.extend_from_slice(CIPHERTEXT_MAGIC);
    out.extend_from_slice(&number.to_be_bytes());
    out.extend_from_slice(&nonce);
    let mut buf = plaintext.to_vec();
    gcm(material)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
        .map_err(|_| ApiError::internal("seal failed"))?;
    out.extend_from_slice(&buf);
    Ok(out)
}

fn open(material: &[u8], number: u32, ct: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if ct.len() < 20 + 16 || ct[4..8] != number.to_be_bytes() {
        return None;
    }
    let nonce: [u8; 12] = ct[8..20].try_into().ok()?;
    let mut buf = ct[20..].to_vec();
    let key = gcm(material).ok()?;
    let plain = key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf).ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphertexts_round_trip_and_bind_the_aad() {
        let m = [7u8; 32];
        let ct = seal(&m, 1, b"data key", b"aad").unwrap();
        assert_eq!(open(&m, 1, &ct, b"aad").unwrap(), b"data key");
        assert!(open(&m, 1, &ct, b"other").is_none());
        assert!(open(&[8u8; 32], 1, &ct, b"aad").is_none());
        assert_eq!(version_of(&ct), Some(1));
        assert_eq!(version_of(b"DLK1"), None);
    }
}
