//! Google's system parameters, which every method takes besides its own
//! (https://cloud.google.com/apis/docs/system-parameters, and the `parameters` section of each
//! discovery document), and what the local cloud does with each:
//!
//! - `alt` (or `$alt`): `json`, the default; `media`, Storage object downloads only; `proto` is
//!   refused, as the local cloud answers JSON only. Google's generated REST clients for
//!   proto-based APIs send `$alt=json;enum-encoding=int` (google-cloud-kms,
//!   `google/cloud/kms_v1/_compat.py`: `query_params_json["$alt"] = "json;enum-encoding=int"`),
//!   write enums as numbers and read them back as numbers: [`SystemParams::enums_as_numbers`].
//! - `fields` (or `$fields`): a partial response ([`crate::fields`]).
//! - `prettyPrint`, `quotaUser`, `userIp`, `key`, `callback`, `$.xgafv`, `upload_protocol`,
//!   `userProject` (Storage's requester-pays project): accepted and without effect here — the
//!   local cloud has no quotas, billing or JSONP, answers compact JSON, and writes errors in one
//!   shape. `uploadType` belongs to the upload handlers.

use crate::api::ApiError;
use crate::fields::Selection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alt {
    Json,
    Media,
}

#[derive(Debug)]
pub struct SystemParams {
    pub alt: Alt,
    /// `enum-encoding=int`: answer enums with their numbers, as Google's proto-JSON front ends do.
    pub enums_as_numbers: bool,
    pub fields: Option<Selection>,
}

/// The one value of system parameter `name`, given as `name` or `$name`.
fn one<'a>(query: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ApiError> {
    let dollar = format!("${name}");
    let mut values = query.iter().filter(|(k, _)| *k == name || *k == dollar).map(|(_, v)| v.as_str());
    let first = values.next();
    match values.next() {
        Some(second) if Some(second) != first => {
            Err(ApiError::bad_request(format!("The system parameter {name} was given twice with different values.")))
        }
        _ => Ok(first),
    }
}

pub fn parse(query: &[(String, String)]) -> Result<SystemParams, ApiError> {
    let (alt, enums_as_numbers) = match one(query, "alt")? {
        None => (Alt::Json, false),
        Some(value) => {
            let mut parts = value.split(';').map(str::trim);
            let alt = match parts.next().unwrap_or("") {
                "json" => Alt::Json,
                "media" => Alt::Media,
                "proto" => {
                    return Err(ApiError::bad_request(
                        "alt=proto is not served by the local cloud: it answers JSON (alt=json) only.",
                    ));
                }
                other => return Err(ApiError::bad_request(format!("Invalid value for alt: '{other}'."))),
            };
            let mut numbers = false;
            for option in parts {
                match option {
                    "enum-encoding=int" => numbers = true,
                    "enum-encoding=string" | "" => {}
                    other => return Err(ApiError::bad_request(format!("Invalid alt option '{other}' in '{value}'."))),
                }
            }
            (alt, numbers)
        }
    };
    let fields = one(query, "fields")?.map(Selection::parse).transpose().map_err(ApiError::bad_request)?;
    Ok(SystemParams { alt, enums_as_numbers, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn alt_and_its_enum_encoding() {
        let p = parse(&q(&[])).unwrap();
        assert_eq!((p.alt, p.enums_as_numbers), (Alt::Json, false));
        let p = parse(&q(&[("$alt", "json;enum-encoding=int")])).unwrap();
        assert_eq!((p.alt, p.enums_as_numbers), (Alt::Json, true));
        assert_eq!(parse(&q(&[("alt", "media")])).unwrap().alt, Alt::Media);
        assert!(parse(&q(&[("alt", "proto")])).unwrap_err().message.contains("JSON"));
        assert!(parse(&q(&[("alt", "xml")])).is_err());
        assert!(parse(&q(&[("alt", "json;enum-encoding=roman")])).is_err());
        assert!(parse(&q(&[("alt", "json"), ("$alt", "media")])).is_err());
        assert!(parse(&q(&[("alt", "json"), ("$alt", "json")])).is_ok());
    }

    #[test]
    fn fields_under_either_name() {
        assert!(parse(&q(&[("fields", "name")])).unwrap().fields.is_some());
        assert!(parse(&q(&[("$fields", "items(name)")])).unwrap().fields.is_some());
        assert!(parse(&q(&[("fields", "a(")])).is_err());
    }
}
