//! Cloud KMS's JSON conventions: base64 bytes, CRC32C integrity fields, and enums given by
//! name or by number.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult};

pub(super) fn parse_b64(field: &str, v: &Value) -> ApiResult<Vec<u8>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => {
            B64.decode(s).map_err(|_| ApiError::bad_request(format!("Invalid value at '{field}': not base64.")))
        }
        _ => Err(ApiError::bad_request(format!("Invalid value at '{field}'."))),
    }
}

/// A CRC32C as KMS writes it: a `google.protobuf.Int64Value`, which JSON carries as a string.
pub(super) fn crc32c_value(data: &[u8]) -> String {
    crc32c::crc32c(data).to_string()
}

/// KMS's end-to-end integrity check (https://cloud.google.com/kms/docs/data-integrity-guidelines):
/// when the request carries `<field>Crc32c`, the data must match it, and the answer says it was
/// verified (`verifiedPlaintextCrc32c`), which Google's samples require before trusting a result.
pub(super) fn check_crc32c(body: &Value, field: &str, data: &[u8]) -> ApiResult<bool> {
    let key = format!("{field}Crc32c");
    let given = match &body[&key] {
        Value::Null => return Ok(false),
        Value::String(s) => s.parse::<u64>().ok(),
        v => v.as_u64(),
    }
    .ok_or_else(|| ApiError::bad_request(format!("Invalid value at '{key}': expected an unsigned 32-bit CRC32C.")))?;
    if given != u64::from(crc32c::crc32c(data)) {
        return Err(ApiError::bad_request(format!(
            "The checksum in field {} did not match the data in field {}.",
            snake(&key),
            snake(field)
        )));
    }
    Ok(true)
}

fn snake(camel: &str) -> String {
    camel
        .chars()
        .flat_map(|c| if c.is_ascii_uppercase() { vec!['_', c.to_ascii_lowercase()] } else { vec![c] })
        .collect()
}

/// The enum fields of the KMS messages the local cloud serves, with the numbers of the values it
/// serves (google/cloud/kms/v1/resources.proto; google-cloud-kms's `CryptoKey.CryptoKeyPurpose`,
/// `ProtectionLevel`, `CryptoKeyVersion.CryptoKeyVersionAlgorithm` and `CryptoKeyVersionState`
/// carry the same numbers). Google's REST front end reads an enum given as its number (proto3's
/// JSON mapping), and google-cloud-kms's REST transport writes them so
/// (`$alt=json;enum-encoding=int`).
const ENUMS: &[(&str, &[(&str, i64)])] = &[
    ("purpose", &[("CRYPTO_KEY_PURPOSE_UNSPECIFIED", 0), ("ENCRYPT_DECRYPT", 1)]),
    ("protectionLevel", &[("PROTECTION_LEVEL_UNSPECIFIED", 0), ("SOFTWARE", 1)]),
    ("algorithm", &[("CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED", 0), ("GOOGLE_SYMMETRIC_ENCRYPTION", 1)]),
    (
        "state",
        &[
            ("CRYPTO_KEY_VERSION_STATE_UNSPECIFIED", 0),
            ("ENABLED", 1),
            ("DISABLED", 2),
            ("DESTROYED", 3),
            ("DESTROY_SCHEDULED", 4),
        ],
    ),
];

fn enum_values(field: &str) -> Option<&'static [(&'static str, i64)]> {
    ENUMS.iter().find(|(f, _)| *f == field).map(|(_, values)| *values)
}

/// Rewrites enums a request gave as numbers to their names; a number the local cloud does not
/// serve is refused by name of its field. Label maps hold user strings and are left alone.
pub fn enums_from_numbers(v: &mut Value) -> ApiResult<()> {
    let Some(fields) = v.as_object_mut() else {
        if let Some(items) = v.as_array_mut() {
            items.iter_mut().try_for_each(enums_from_numbers)?;
        }
        return Ok(());
    };
    for (key, field) in fields.iter_mut() {
        if key == "labels" {
            continue;
        }
        match (enum_values(key), field.as_i64()) {
            (Some(values), Some(n)) => {
                let name = values.iter().find(|(_, num)| *num == n).map(|(name, _)| *name).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid value at '{key}': enum number {n} is not served by the local cloud (it serves {}).",
                        values.iter().map(|(name, num)| format!("{name} = {num}")).collect::<Vec<_>>().join(", ")
                    ))
                })?;
                *field = json!(name);
            }
            _ => enums_from_numbers(field)?,
        }
    }
    Ok(())
}

/// An answer with its enums as numbers, for a client that asked for `enum-encoding=int`.
pub fn enums_to_numbers(v: Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(enums_to_numbers).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, field)| {
                    let number = enum_values(&key)
                        .zip(field.as_str())
                        .and_then(|(values, name)| values.iter().find(|(n, _)| *n == name))
                        .map(|(_, num)| json!(num));
                    let field = match number {
                        Some(n) => n,
                        None if key == "labels" => field,
                        None => enums_to_numbers(field),
                    };
                    (key, field)
                })
                .collect(),
        ),
        other => other,
    }
}

/// Base64 as KMS writes bytes.
pub(super) fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_travel_as_numbers_both_ways() {
        let mut req = json!({"purpose": 1, "versionTemplate": {"algorithm": 1, "protectionLevel": 1},
                             "labels": {"purpose": "x"}});
        enums_from_numbers(&mut req).unwrap();
        assert_eq!(
            req,
            json!({"purpose": "ENCRYPT_DECRYPT", "labels": {"purpose": "x"},
                   "versionTemplate": {"algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION", "protectionLevel": "SOFTWARE"}})
        );
        let mut named = json!({"purpose": "ENCRYPT_DECRYPT"});
        enums_from_numbers(&mut named).unwrap();
        assert_eq!(named, json!({"purpose": "ENCRYPT_DECRYPT"}));
        let e = enums_from_numbers(&mut json!({"purpose": 5})).unwrap_err();
        assert!(e.message.contains("'purpose'") && e.message.contains("ENCRYPT_DECRYPT = 1"), "{}", e.message);

        let answer = json!({"cryptoKeyVersions": [{"state": "DESTROY_SCHEDULED", "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
                                                   "name": "n"}], "labels": {"state": "ENABLED"}});
        assert_eq!(
            enums_to_numbers(answer),
            json!({"cryptoKeyVersions": [{"state": 4, "algorithm": 1, "name": "n"}], "labels": {"state": "ENABLED"}})
        );
    }

    #[test]
    fn crc32c_fields_are_checked_when_given() {
        assert!(!check_crc32c(&json!({}), "plaintext", b"x").unwrap());
        let crc = crc32c::crc32c(b"data");
        assert!(check_crc32c(&json!({"plaintextCrc32c": crc.to_string()}), "plaintext", b"data").unwrap());
        assert!(check_crc32c(&json!({"plaintextCrc32c": crc}), "plaintext", b"data").unwrap());
        let e = check_crc32c(&json!({"ciphertextCrc32c": "1"}), "ciphertext", b"data").unwrap_err();
        assert_eq!(e.message, "The checksum in field ciphertext_crc32c did not match the data in field ciphertext.");
        assert!(check_crc32c(&json!({"plaintextCrc32c": "x"}), "plaintext", b"data").is_err());
    }
}
