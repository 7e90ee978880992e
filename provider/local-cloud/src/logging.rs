//! Cloud Audit Logs and the Cloud Logging v2 method that reads them, `entries.list`.
//!
//! Services record a Data Access entry ([`record_data_access`]) as Google's do: only when the
//! project's IAM policy turns that log type on for the service (`auditConfigs`; Data Access logs
//! are off by default, https://cloud.google.com/logging/docs/audit/configure-data-access), in the
//! project's `cloudaudit.googleapis.com%2Fdata_access` log, with the caller in
//! `authenticationInfo` (`principalEmail` for accounts, `principalSubject` for federated
//! identities) and the outcome in `status`. Cloud KMS `Decrypt` is a DATA_READ method
//! (https://cloud.google.com/kms/docs/logging).
//!
//! `entries.list` serves the subset of the Logging query language dcr and its users need for
//! audit queries: comparisons (`=`, `!=`, `:`, `<`, `<=`, `>`, `>=`) of a field path with a value,
//! joined by `AND` or white space (https://cloud.google.com/logging/docs/view/logging-query-language).
//! `OR`, `NOT` and parentheses are refused with a 400 that says so, never silently misread.

use base64::Engine;
use rusqlite::Connection;
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, Req, check_fields, json_response, now_rfc3339};
use crate::app::App;
use crate::iam::Identity;
use crate::store::sql;

/// Where Data Access entries go in `project`.
pub fn data_access_log(project: &str) -> String {
    format!("projects/{project}/logs/cloudaudit.googleapis.com%2Fdata_access")
}

/// One data access to record: what was called on what, by whom, and how it ended.
pub struct DataAccess<'a> {
    pub project: &'a str,
    /// `cloudkms.googleapis.com`.
    pub service: &'a str,
    /// `Decrypt`.
    pub method: &'a str,
    pub resource_name: &'a str,
    pub permission: &'a str,
    /// The monitored resource: `{"type": "cloudkms_cryptokey", "labels": {...}}`.
    pub resource: Value,
    /// The request message's full type name.
    pub request_type: &'a str,
    pub caller: &'a Identity,
}

/// Records `access` with the outcome `result`, when the project's policy asks for DATA_READ
/// entries of the service and does not exempt the caller.
pub fn record_data_access<T>(c: &Connection, access: DataAccess, result: &ApiResult<T>) -> ApiResult<()> {
    let policy = crate::resource_manager::project_policy(c, access.project)?.unwrap_or(Value::Null);
    if !logs_data_read(&policy, access.service, &access.caller.principal) {
        return Ok(());
    }
    let (status, severity, granted) = match result {
        Ok(_) => (json!({}), "INFO", true),
        Err(e) => (json!({"code": e.rpc_code(), "message": e.message}), "ERROR", e.status != 403),
    };
    let who = &access.caller.principal;
    let authentication = match who.split_once(':') {
        Some(("user" | "serviceAccount", email)) => json!({"principalEmail": email}),
        _ => json!({"principalSubject": who}),
    };
    let now = now_rfc3339();
    let log_name = data_access_log(access.project);
    let entry = json!({
        "logName": log_name,
        "insertId": uuid::Uuid::new_v4().simple().to_string(),
        "timestamp": now,
        "receiveTimestamp": now,
        "severity": severity,
        "resource": access.resource,
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "status": status,
            "authenticationInfo": authentication,
            "requestMetadata": {"callerIp": "127.0.0.1"},
            "serviceName": access.service,
            "methodName": access.method,
            "authorizationInfo": [{"resource": access.resource_name, "permission": access.permission,
                                   "granted": granted, "resourceAttributes": {}}],
            "resourceName": access.resource_name,
            "request": {"@type": access.request_type, "name": access.resource_name},
        },
    });
    c.execute(
        "INSERT INTO log_entries (project, log_name, timestamp, entry) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![access.project, log_name, now, entry.to_string()],
    )
    .map_err(sql)?;
    Ok(())
}

/// Whether `policy`'s `auditConfigs` turn on DATA_READ logs of `service` (directly or through
/// `allServices`) for `member`.
pub fn logs_data_read(policy: &Value, service: &str, member: &str) -> bool {
    let configs = policy["auditConfigs"].as_array().map(Vec::as_slice).unwrap_or_default();
    let read_configs: Vec<&Value> = configs
        .iter()
        .filter(|c| c["service"] == service || c["service"] == "allServices")
        .flat_map(|c| c["auditLogConfigs"].as_array().map(Vec::as_slice).unwrap_or_default())
        .filter(|l| l["logType"] == "DATA_READ")
        .collect();
    // The union of the configs: any of them enables the type, and an exemption in any exempts.
    !read_configs.is_empty()
        && !read_configs
            .iter()
            .any(|l| l["exemptedMembers"].as_array().is_some_and(|ms| ms.iter().any(|m| m.as_str() == Some(member))))
}

/// The audit configuration the local project starts with: Data Access (DATA_READ) logs of Cloud
/// KMS on, as dcr's guide asks of a Google Cloud project, so every use of a dataset's key is on
/// record.
pub fn default_audit_configs() -> Value {
    json!([{"service": "cloudkms.googleapis.com", "auditLogConfigs": [{"logType": "DATA_READ"}]}])
}

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

/// `POST /logging/v2/entries:list`.
pub async fn handle(app: &App, r: &Req, body: Option<Value>) -> ApiResult<axum::response::Response> {
    if r.raw_path != "/logging/v2/entries:list" || r.method != axum::http::Method::POST {
        return Err(ApiError::unimplemented(r.method.as_str(), &r.raw_path, "Cloud Logging"));
    }
    let body = body.unwrap_or(json!({}));
    check_fields(
        &body,
        &["resourceNames", "projectIds", "filter", "orderBy", "pageSize", "pageToken"],
        "ListLogEntriesRequest",
    )?;
    let mut projects = Vec::new();
    for name in body["resourceNames"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = name.as_str().unwrap_or_default();
        match name.strip_prefix("projects/") {
            Some(p) if !p.is_empty() && !p.contains('/') => projects.push(p.to_string()),
            _ if name.starts_with("organizations/")
                || name.starts_with("folders/")
                || name.starts_with("billingAccounts/") =>
            {
                return Err(ApiError::unimplemented("POST", &format!("{} for {name}", r.raw_path), "Cloud Logging"));
            }
            _ => return Err(ApiError::bad_request(format!("Invalid resource name: {name:?}."))),
        }
    }
    for id in body["projectIds"].as_array().map(Vec::as_slice).unwrap_or_default() {
        projects.push(id.as_str().unwrap_or_default().to_string());
    }
    if projects.is_empty() {
        return Err(ApiError::bad_request(
            "resourceNames is required: name the projects to read, projects/PROJECT_ID.",
        ));
    }
    let filter = Filter::parse(body["filter"].as_str().unwrap_or_default()).map_err(ApiError::bad_request)?;
    let newest_first = match body["orderBy"].as_str().unwrap_or("timestamp asc") {
        "" | "timestamp asc" => false,
        "timestamp desc" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "Invalid orderBy {other:?}: only \"timestamp asc\" and \"timestamp desc\" are allowed."
            )));
        }
    };
    let page_size = match body["pageSize"].as_i64() {
        None | Some(0) => DEFAULT_PAGE_SIZE,
        Some(n) if n < 0 => return Err(ApiError::bad_request("pageSize must not be negative.")),
        Some(n) => (n as usize).min(MAX_PAGE_SIZE),
    };
    let skip = match body["pageToken"].as_str().filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => parse_page_token(t).ok_or_else(|| ApiError::bad_request("Invalid page token."))?,
    };
    let who = r.principal.clone();
    let v = app
        .store
        .call(move |c| {
            let mut entries = Vec::new();
            for project in &projects {
                let policy = crate::resource_manager::project_policy(c, project)?;
                let allowed = |perm: &str| policy.as_ref().is_some_and(|p| crate::iam::allows(p, &who, perm));
                if !allowed("logging.logEntries.list") {
                    return Err(ApiError::forbidden(format!(
                        "Permission 'logging.logEntries.list' denied on resource 'projects/{project}' (or it may not exist)."
                    )));
                }
                let private = allowed("logging.privateLogEntries.list");
                if !private && filter.names_log(&data_access_log(project)) {
                    return Err(ApiError::forbidden(format!(
                        "Permission 'logging.privateLogEntries.list' denied on resource 'projects/{project}': Data Access audit logs need roles/logging.privateLogViewer."
                    )));
                }
                let mut stmt = c
                    .prepare("SELECT log_name, entry FROM log_entries WHERE project = ?1 ORDER BY seq")
                    .map_err(sql)?;
                let rows = stmt
                    .query_map([project], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                    .map_err(sql)?;
                for row in rows {
                    let (log_name, text) = row.map_err(sql)?;
                    // Audit logs other than Admin Activity are private.
                    if !private && !log_name.ends_with("%2Factivity") {
                        continue;
                    }
                    let entry: Value = serde_json::from_str(&text).map_err(|e| ApiError::internal(e.to_string()))?;
                    if filter.matches(&entry) {
                        entries.push(entry);
                    }
                }
            }
            if newest_first {
                entries.reverse();
            }
            let more = entries.len() > skip + page_size;
            let page: Vec<Value> = entries.into_iter().skip(skip).take(page_size).collect();
            let mut out = json!({"entries": page});
            if more {
                out["nextPageToken"] = json!(page_token(skip + page_size));
            }
            Ok(out)
        })
        .await?;
    Ok(json_response(v))
}

fn page_token(skip: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("skip:{skip}"))
}

fn parse_page_token(t: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t).ok()?;
    String::from_utf8(bytes).ok()?.strip_prefix("skip:")?.parse().ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Has,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
struct Comparison {
    field: String,
    op: Op,
    value: String,
}

/// A conjunction of comparisons.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    terms: Vec<Comparison>,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Op(Op),
}

fn tokens(filter: &str) -> Result<Vec<Token>, String> {
    let unsupported = |what: &str| {
        format!("The local cloud's Logging filters support comparisons joined by AND; {what} is not supported.")
    };
    let mut out = Vec::new();
    let mut chars = filter.chars().peekable();
    while let Some(&ch) = chars.peek() {
        match ch {
            c if c.is_whitespace() => {
                chars.next();
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => s.push(chars.next().ok_or("Unterminated string in the filter.")?),
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err("Unterminated string in the filter.".into()),
                    }
                }
                out.push(Token::Text(s));
            }
            '(' | ')' => return Err(unsupported("a parenthesis")),
            '=' | ':' | '<' | '>' | '!' => {
                chars.next();
                let eq = chars.peek() == Some(&'=');
                let op = match (ch, eq) {
                    ('=', _) => Op::Eq,
                    (':', _) => Op::Has,
                    ('!', true) => Op::Ne,
                    ('<', true) => Op::Le,
                    ('<', false) => Op::Lt,
                    ('>', true) => Op::Ge,
                    ('>', false) => Op::Gt,
                    _ => return Err("Unexpected '!' in the filter.".into()),
                };
                if eq && ch != '=' {
                    chars.next();
                }
                out.push(Token::Op(op));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "\"()=:<>!".contains(c) {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                if matches!(w.as_str(), "OR" | "NOT") || w.starts_with('-') {
                    return Err(unsupported(&format!("{w:?}")));
                }
                out.push(Token::Word(w));
            }
        }
    }
    Ok(out)
}

impl Filter {
    pub fn parse(filter: &str) -> Result<Filter, String> {
        let mut terms = Vec::new();
        let mut it = tokens(filter)?.into_iter().peekable();
        while let Some(t) = it.next() {
            let field = match t {
                Token::Word(w) if w == "AND" && !terms.is_empty() => continue,
                Token::Word(w) => w,
                other => return Err(format!("Expected a field name in the filter, found {other:?}.")),
            };
            let Some(Token::Op(op)) = it.next() else {
                return Err(format!(
                    "The local cloud's Logging filters need a comparison after {field:?} (a bare search term is not supported)."
                ));
            };
            let value = match it.next() {
                Some(Token::Text(s) | Token::Word(s)) => s,
                _ => return Err(format!("Expected a value after {field:?} in the filter.")),
            };
            terms.push(Comparison { field, op, value });
        }
        Ok(Filter { terms })
    }

    /// Whether the filter selects the log `name` by an equality on `logName` (a query of it).
    fn names_log(&self, name: &str) -> bool {
        self.terms.iter().any(|t| t.field == "logName" && matches!(t.op, Op::Eq | Op::Has) && t.value.contains(name))
    }

    pub fn matches(&self, entry: &Value) -> bool {
        self.terms.iter().all(|t| {
            let found = t.field.split('.').try_fold(entry, |v, k| v.get(k));
            let text = match found {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => return t.op == Op::Ne,
                Some(other) => other.to_string(),
            };
            match t.op {
                Op::Eq => text == t.value,
                Op::Ne => text != t.value,
                Op::Has => text.to_lowercase().contains(&t.value.to_lowercase()),
                Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                    let ord = compare(&text, &t.value);
                    match t.op {
                        Op::Lt => ord.is_lt(),
                        Op::Le => ord.is_le(),
                        Op::Gt => ord.is_gt(),
                        _ => ord.is_ge(),
                    }
                }
            }
        })
    }
}

/// Timestamps compare as instants (their fractions may differ in length), anything else as text.
fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    let instant = |s: &str| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok();
    match (instant(a), instant(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Value {
        json!({"logName": data_access_log("p"), "timestamp": "2026-12-05T06:00:00.250Z",
               "protoPayload": {"methodName": "Decrypt", "resourceName": "projects/p/locations/global/keyRings/r/cryptoKeys/k",
                                "status": {"code": 7}}})
    }

    #[test]
    fn filters_select_by_equality_substring_and_time() {
        let f = |s: &str| Filter::parse(s).unwrap().matches(&entry());
        assert!(f(""));
        assert!(f(&format!("logName=\"{}\" AND protoPayload.methodName=\"Decrypt\"", data_access_log("p"))));
        assert!(f("protoPayload.methodName=Decrypt\nprotoPayload.resourceName:\"cryptoKeys/K\""));
        assert!(!f("protoPayload.methodName=\"Encrypt\""));
        assert!(f("protoPayload.status.code=7"));
        assert!(f("protoPayload.methodName!=\"Encrypt\" protoPayload.missing!=1"));
        // A shorter fraction is an earlier instant though it sorts later as text.
        assert!(f("timestamp>=\"2026-12-05T06:00:00Z\" AND timestamp<\"2026-12-05T06:00:00.3Z\""));
        assert!(!f("timestamp>\"2026-12-05T06:00:01Z\""));
        assert!(f(r#"protoPayload.resourceName="projects/p/locations/global/keyRings/r/cryptoKeys/k""#));
    }

    #[test]
    fn what_the_subset_cannot_read_is_refused_not_misread() {
        for bad in ["a=1 OR b=2", "NOT a=1", "-a=1", "(a=1)", "Decrypt", "a=", "a=\"open"] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn data_read_logs_follow_the_policys_audit_configs() {
        let on = json!({"auditConfigs": default_audit_configs()});
        assert!(logs_data_read(&on, "cloudkms.googleapis.com", "user:a@x"));
        assert!(!logs_data_read(&on, "storage.googleapis.com", "user:a@x"));
        assert!(!logs_data_read(&json!({"bindings": []}), "cloudkms.googleapis.com", "user:a@x"));
        let all = json!({"auditConfigs": [
            {"service": "allServices", "auditLogConfigs": [{"logType": "DATA_READ", "exemptedMembers": ["user:b@x"]}]},
            {"service": "cloudkms.googleapis.com", "auditLogConfigs": [{"logType": "ADMIN_READ"}]}]});
        assert!(logs_data_read(&all, "cloudkms.googleapis.com", "user:a@x"));
        assert!(!logs_data_read(&all, "cloudkms.googleapis.com", "user:b@x"));
    }

    #[test]
    fn page_tokens_round_trip() {
        assert_eq!(parse_page_token(&page_token(1000)), Some(1000));
        assert_eq!(parse_page_token("bm9wZQ"), None);
    }
}
