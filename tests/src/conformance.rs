//! Checks the requests our local cloud served against Google's discovery documents, the published
//! description of each REST API. The local cloud accepts what the provider and the launcher send; this
//! check is what says Google would accept it too: the method exists at that path with that verb, every
//! query parameter is declared and well typed, and every body field is declared, well typed and within
//! its enum.
//!
//! Input is a JSONL log, one request a line:
//! `{"service":"storage","method":"POST","path":"/storage/v1/b","query":{"project":["p"]},
//! "content_type":"application/json","body":{...},"status":200}`. `path` is the raw (percent-encoded)
//! path; segments are decoded one by one, so `a%2Fb` stays a single object name.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Where the discovery documents are: `$DCR_DISCOVERY_DIR`, else `<tools>/discovery` as
/// `tests/install-tools.sh` lays it out.
pub fn discovery_dir() -> PathBuf {
    match std::env::var_os("DCR_DISCOVERY_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => crate::tools_dir().join("discovery"),
    }
}

/// Why a log could not be checked at all (as opposed to a request that breaks the API).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: not a request record: {reason}")]
    BadRecord { path: PathBuf, line: usize, reason: String },
    #[error("discovery document {path}: {reason}")]
    Discovery { path: PathBuf, reason: String },
}

/// One way a logged request breaks the published API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// 1-based line of the request in the log.
    pub line: usize,
    /// `POST /storage/v1/b`: the verb and raw path.
    pub request: String,
    /// The HTTP status our local cloud answered with; a 2xx here means it accepted what Google
    /// would not, so the local cloud needs fixing too.
    pub status: Option<u16>,
    /// The discovery method id, when the path and verb named one.
    pub method: Option<String>,
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.request)?;
        if let Some(status) = self.status {
            write!(f, " (answered {status})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What a log held and what was wrong with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub requests: usize,
    /// Requests per discovery method id; uploads are counted as `storage.objects.insert (upload)`
    /// and `storage.objects.insert (resumable chunk)`, media downloads as `storage.objects.get
    /// (media)`.
    pub by_method: BTreeMap<String, usize>,
    /// The same count, for requests the local cloud answered with a 2xx.
    pub succeeded: BTreeMap<String, usize>,
    pub violations: Vec<Violation>,
}

/// Checks `log` against the discovery documents in `discovery_dir`.
pub fn check_log(log: &Path, discovery_dir: &Path) -> Result<Report, Error> {
    Checker::new(discovery_dir).check_log(log)
}

/// A local cloud service: which discovery document describes it and where its paths live.
struct Service {
    name: &'static str,
    doc: &'static str,
    /// What the local cloud puts in front of Google's own path. Google serves KMS, IAM and STS at
    /// `/v1/...` on their own hosts; one loopback server needs the service name to tell them apart.
    mount: &'static str,
    /// Matched against the methods' media upload paths instead of their REST paths.
    upload: bool,
    /// gRPC-transcoded APIs end a path with a custom verb (`:encrypt`) that no path variable can
    /// swallow, so `.../cryptoKeys/k:frobnicate` is no method rather than a GET of key
    /// `k:frobnicate`. Storage object names may hold colons. The same APIs parse JSON by proto3's
    /// mapping, which takes an enum as its name or its number
    /// (https://protobuf.dev/programming-guides/json/), and Google's generated REST clients send
    /// numbers (`$alt=json;enum-encoding=int`); Storage and Compute enums are strings only.
    proto: bool,
    /// Storage's media download host path (`/download/storage/v1/...`, google-cloud-storage's
    /// `_DOWNLOAD_URL_TEMPLATE` and every `mediaLink`): only methods with
    /// `useMediaDownloadService`, only with `alt=media`.
    download: bool,
}

const SERVICES: &[Service] = &[
    Service { name: "storage", doc: "storage.v1.json", mount: "", upload: false, proto: false, download: false },
    Service { name: "storage-upload", doc: "storage.v1.json", mount: "", upload: true, proto: false, download: false },
    Service {
        name: "storage-download",
        doc: "storage.v1.json",
        mount: "/download",
        upload: false,
        proto: false,
        download: true,
    },
    Service {
        name: "cloudkms",
        doc: "cloudkms.v1.json",
        mount: "/cloudkms",
        upload: false,
        proto: true,
        download: false,
    },
    Service { name: "iam", doc: "iam.v1.json", mount: "/iam", upload: false, proto: true, download: false },
    Service { name: "sts", doc: "sts.v1.json", mount: "/sts", upload: false, proto: true, download: false },
    Service {
        name: "cloudresourcemanager",
        doc: "cloudresourcemanager.v1.json",
        mount: "/cloudresourcemanager",
        upload: false,
        proto: true,
        download: false,
    },
    Service { name: "logging", doc: "logging.v2.json", mount: "/logging", upload: false, proto: true, download: false },
    Service { name: "compute", doc: "compute.v1.json", mount: "", upload: false, proto: false, download: false },
    Service {
        name: "artifactregistry",
        doc: "artifactregistry.v1.json",
        mount: "/artifactregistry",
        upload: false,
        proto: true,
        download: false,
    },
];

/// Loads each discovery document once, however many logs it checks (compute.v1.json is 5 MB).
pub struct Checker {
    dir: PathBuf,
    apis: HashMap<&'static str, Api>,
}

impl Checker {
    pub fn new(discovery_dir: &Path) -> Checker {
        Checker { dir: discovery_dir.to_path_buf(), apis: HashMap::new() }
    }

    pub fn check_log(&mut self, log: &Path) -> Result<Report, Error> {
        let text = std::fs::read_to_string(log).map_err(|source| Error::Io { path: log.to_path_buf(), source })?;
        let mut report = Report::default();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = serde_json::from_str(line).map_err(|e| Error::BadRecord {
                path: log.to_path_buf(),
                line: index + 1,
                reason: e.to_string(),
            })?;
            report.requests += 1;
            let mut checked = self.check_record(&record)?;
            checked.reasons.extend(secrets_in(line));
            if let Some(method) = &checked.counted_as {
                *report.by_method.entry(method.clone()).or_default() += 1;
                if record.status.is_some_and(|s| (200..300).contains(&s)) {
                    *report.succeeded.entry(method.clone()).or_default() += 1;
                }
            }
            report.violations.extend(checked.reasons.into_iter().map(|reason| Violation {
                line: index + 1,
                request: format!("{} {}", record.method, record.path),
                status: record.status,
                method: checked.method.clone(),
                reason,
            }));
        }
        Ok(report)
    }

    fn api(&mut self, doc: &'static str) -> Result<&Api, Error> {
        if !self.apis.contains_key(doc) {
            let api = Api::load(&self.dir.join(doc))?;
            self.apis.insert(doc, api);
        }
        Ok(&self.apis[doc])
    }

    fn check_record(&mut self, record: &Record) -> Result<Checked, Error> {
        let Some(service) = SERVICES.iter().find(|s| s.name == record.service) else {
            let known: Vec<&str> = SERVICES.iter().map(|s| s.name).collect();
            return Ok(Checked::unmatched(format!(
                "unknown service `{}` (known: {})",
                record.service,
                known.join(", ")
            )));
        };
        let api = self.api(service.doc)?;
        Ok(RequestCheck::new(api, service, record).run())
    }
}

/// Secrets a request-log line must never hold (issue 10, item 5): bearer tokens of the local cloud
/// (`dcrl.…`), JWTs (attestation and OIDC tokens), and KMS key material or protected data not
/// replaced by the log's marker. The whole raw line is searched, so a secret in any field counts.
pub fn secrets_in(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    if line.contains("dcrl.") {
        found.push("the request log keeps a local cloud bearer token (dcrl.…)".to_string());
    }
    let jwt = line.split(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c))).any(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        w.starts_with("eyJ") && parts.len() == 3 && parts.iter().all(|p| p.len() >= 4)
    });
    if jwt {
        found.push("the request log keeps a JWT (an attestation or identity token)".to_string());
    }
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        let mut stack = vec![&v];
        while let Some(node) = stack.pop() {
            match node {
                Value::Object(m) => {
                    for (k, field) in m {
                        let secret = ["plaintext", "ciphertext", "additionalAuthenticatedData"].contains(&k.as_str());
                        if secret && field.is_string() && field != "UkVEQUNURUQ=" {
                            found.push(format!("the request log keeps KMS `{k}` unredacted"));
                        }
                        stack.push(field);
                    }
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
    }
    found
}

#[derive(Deserialize)]
struct Record {
    service: String,
    method: String,
    path: String,
    #[serde(default)]
    query: BTreeMap<String, QueryValues>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    body: Value,
    #[serde(default)]
    status: Option<u16>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum QueryValues {
    Many(Vec<String>),
    One(String),
}

impl QueryValues {
    fn values(&self) -> Vec<&str> {
        match self {
            QueryValues::Many(v) => v.iter().map(String::as_str).collect(),
            QueryValues::One(v) => vec![v.as_str()],
        }
    }
}

struct Checked {
    method: Option<String>,
    counted_as: Option<String>,
    reasons: Vec<String>,
}

impl Checked {
    fn unmatched(reason: String) -> Checked {
        Checked { method: None, counted_as: None, reasons: vec![reason] }
    }
}

/// One discovery document, with its methods flattened out of the resource tree.
struct Api {
    doc: Value,
    /// "" for KMS, IAM and STS; "storage/v1/" for Storage.
    service_path: String,
    methods: Vec<Method>,
}

struct Method {
    id: String,
    http_method: String,
    /// `flatPath` when there is one: `v1/{+name}:encrypt` would match every KMS resource, while
    /// `v1/projects/{projectsId}/.../cryptoKeys/{cryptoKeysId}:encrypt` names exactly one.
    template: Template,
    /// Media upload paths by protocol (`simple`, `resumable`).
    uploads: Vec<(String, Template)>,
    def: Value,
}

impl Api {
    fn load(path: &Path) -> Result<Api, Error> {
        let discovery = |reason: String| Error::Discovery { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| {
            discovery(format!("{e}; run tests/install-tools.sh, or point DCR_DISCOVERY_DIR at the documents"))
        })?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| discovery(format!("not JSON: {e}")))?;
        let service_path = doc["servicePath"].as_str().unwrap_or_default().to_string();
        let mut methods = Vec::new();
        collect_methods(&doc, &mut methods);
        if methods.is_empty() {
            return Err(discovery("declares no methods".into()));
        }
        Ok(Api { doc, service_path, methods })
    }

    fn schema(&self, name: &str) -> Option<&Value> {
        self.doc["schemas"].get(name)
    }
}

fn collect_methods(node: &Value, out: &mut Vec<Method>) {
    for def in node["methods"].as_object().into_iter().flat_map(Map::values) {
        let (Some(id), Some(http_method)) = (def["id"].as_str(), def["httpMethod"].as_str()) else { continue };
        let Some(template) = def["flatPath"].as_str().or(def["path"].as_str()) else { continue };
        let uploads = def["mediaUpload"]["protocols"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(protocol, p)| Some((protocol.clone(), Template::parse(p["path"].as_str()?))))
            .collect();
        out.push(Method {
            id: id.to_string(),
            http_method: http_method.to_string(),
            template: Template::parse(template),
            uploads,
            def: def.clone(),
        });
    }
    for resource in node["resources"].as_object().into_iter().flat_map(Map::values) {
        collect_methods(resource, out);
    }
}

/// A discovery path template: `{name}` is one path segment (or part of one, as in
/// `{cryptoKeysId}:encrypt`), `{+name}` is a reserved expansion that may span segments.
struct Template {
    text: String,
    elems: Vec<TElem>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TElem {
    Sep,
    Lit(char),
    Param { reserved: bool },
}

/// A request path, decoded per segment: a `/` inside a decoded segment is a character, not a
/// separator.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PElem {
    Sep,
    Ch(char),
}

impl Template {
    fn parse(text: &str) -> Template {
        let mut elems = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '/' => elems.push(TElem::Sep),
                '{' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    elems.push(TElem::Param { reserved: name.starts_with('+') });
                }
                c => elems.push(TElem::Lit(c)),
            }
        }
        Template { text: text.to_string(), elems }
    }

    fn matches(&self, path: &[PElem], custom_verbs: bool) -> bool {
        match_elems(&self.elems, path, custom_verbs)
    }

    /// How much of the template is fixed: among templates that match, the most specific is meant
    /// (`.../cryptoKeys/{id}:getIamPolicy` over `.../cryptoKeys/{id}`).
    fn specificity(&self) -> usize {
        self.elems.iter().filter(|e| !matches!(e, TElem::Param { .. })).count()
    }
}

fn match_elems(template: &[TElem], path: &[PElem], custom_verbs: bool) -> bool {
    match template.split_first() {
        None => path.is_empty(),
        Some((TElem::Sep, rest)) => path.first() == Some(&PElem::Sep) && match_elems(rest, &path[1..], custom_verbs),
        Some((TElem::Lit(c), rest)) => {
            path.first() == Some(&PElem::Ch(*c)) && match_elems(rest, &path[1..], custom_verbs)
        }
        Some((TElem::Param { reserved }, rest)) => {
            // A parameter takes at least one character; a plain one stops at a separator.
            for taken in 1..=path.len() {
                let last = path[taken - 1];
                if last == PElem::Sep && (!reserved || taken == 1) || custom_verbs && last == PElem::Ch(':') {
                    break;
                }
                if match_elems(rest, &path[taken..], custom_verbs) {
                    return true;
                }
            }
            false
        }
    }
}

fn decode_path(raw: &str) -> Vec<PElem> {
    let mut out = Vec::new();
    for (i, segment) in raw.split('/').enumerate() {
        if i > 0 {
            out.push(PElem::Sep);
        }
        out.extend(percent_encoding::percent_decode_str(segment).decode_utf8_lossy().chars().map(PElem::Ch));
    }
    out
}

/// The checks of one request against one API.
struct RequestCheck<'a> {
    api: &'a Api,
    service: &'a Service,
    record: &'a Record,
    query: BTreeMap<String, Vec<String>>,
    reasons: Vec<String>,
}

/// How the request reached its method.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Rest,
    /// A media upload to the method's `simple` or `resumable` upload path.
    Upload {
        resumable_path: bool,
    },
    /// A chunk (PUT) or cancellation (DELETE) sent to a resumable session URI.
    Chunk,
}

impl<'a> RequestCheck<'a> {
    fn new(api: &'a Api, service: &'a Service, record: &'a Record) -> RequestCheck<'a> {
        let query_in_path = record.path.split_once('?').map_or("", |(_, q)| q);
        let mut query: BTreeMap<String, Vec<String>> =
            record.query.iter().map(|(k, v)| (k.clone(), v.values().into_iter().map(String::from).collect())).collect();
        // Tolerate a logger that left the query string on the path.
        for (k, v) in url::form_urlencoded::parse(query_in_path.as_bytes()) {
            query.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        RequestCheck { api, service, record, query, reasons: Vec::new() }
    }

    fn raw_path(&self) -> &str {
        self.record.path.split_once('?').map_or(&self.record.path, |(p, _)| p)
    }

    fn run(mut self) -> Checked {
        let (method, route) = match self.find_method() {
            Ok(found) => found,
            Err(reason) => return Checked::unmatched(reason),
        };
        self.check_query(method, route);
        self.check_body(method, route);
        let counted_as = match route {
            Route::Rest if self.alt() == Some("media") => format!("{} (media)", method.id),
            Route::Rest => method.id.clone(),
            Route::Upload { .. } => format!("{} (upload)", method.id),
            Route::Chunk => format!("{} (resumable chunk)", method.id),
        };
        Checked { method: Some(method.id.clone()), counted_as: Some(counted_as), reasons: self.reasons }
    }

    fn find_method(&self) -> Result<(&'a Method, Route), String> {
        let api = self.api;
        let service = self.service;
        let verb = self.record.method.to_ascii_uppercase();
        let raw = self.raw_path();
        let no_match = format!("no method matches {verb} {raw}");
        let Some(rest) = raw.strip_prefix(service.mount) else {
            return Err(format!("{no_match}: {} paths start with {}/", service.name, service.mount));
        };
        let mut candidates: Vec<(&'a Method, Route, &'a Template)> = Vec::new();
        if service.upload {
            let path = decode_path(rest);
            for method in &api.methods {
                for (protocol, template) in &method.uploads {
                    if template.matches(&path, service.proto) {
                        candidates.push((method, Route::Upload { resumable_path: protocol == "resumable" }, template));
                    }
                }
            }
        } else {
            let prefix = format!("/{}", api.service_path);
            let Some(relative) = rest.strip_prefix(prefix.as_str()) else {
                return Err(format!("{no_match}: {} paths start with {}{prefix}", service.name, service.mount));
            };
            let path = decode_path(relative);
            candidates.extend(
                api.methods
                    .iter()
                    .filter(|m| m.template.matches(&path, service.proto))
                    .map(|m| (m, Route::Rest, &m.template)),
            );
        }
        if candidates.is_empty() {
            return Err(no_match);
        }
        let chunk = self.query.contains_key("upload_id") && (verb == "PUT" || verb == "DELETE");
        let best = candidates
            .iter()
            .filter_map(|&(method, route, template)| match route {
                _ if method.http_method == verb => Some((method, route, template)),
                Route::Upload { .. } if chunk => Some((method, Route::Chunk, template)),
                _ => None,
            })
            .max_by_key(|(_, _, template)| template.specificity());
        match best {
            Some((method, route, _)) => Ok((method, route)),
            None if service.upload && verb == "PUT" => Err(format!(
                "{no_match}: a PUT to an upload path is a chunk of a resumable upload and must carry upload_id"
            )),
            None => {
                let takes: Vec<String> = candidates
                    .iter()
                    .map(|(m, _, template)| format!("{} {} ({})", m.http_method, template.text, m.id))
                    .collect();
                Err(format!("{no_match}: that path takes {}", takes.join(", ")))
            }
        }
    }

    fn check_query(&mut self, method: &Method, route: Route) {
        let id = &method.id;
        let declared = method.def["parameters"].as_object();
        let standard = self.api.doc["parameters"].as_object();
        let mut reasons = Vec::new();
        for (name, values) in &self.query {
            if name == "upload_id" {
                if route != Route::Chunk {
                    reasons.push(format!(
                        "unknown query parameter `upload_id` for {id}: only chunks of a resumable upload, sent \
                         with PUT to the session URI, carry it"
                    ));
                }
                continue;
            }
            // System parameters may also be written with a `$` (`$alt`, `$fields`):
            // https://cloud.google.com/apis/docs/system-parameters
            let system = name.strip_prefix('$').filter(|n| standard.is_some_and(|p| p.contains_key(*n)));
            let spec = declared
                .and_then(|p| p.get(name))
                .or_else(|| standard.and_then(|p| p.get(name)))
                .or_else(|| system.and_then(|n| standard.and_then(|p| p.get(n))));
            let Some(spec) = spec else {
                reasons.push(format!("unknown query parameter `{name}` for {id}"));
                continue;
            };
            if system.unwrap_or(name) == "alt" {
                for value in values {
                    if let Err(why) = self.check_alt(spec, value) {
                        reasons.push(format!("query parameter `{name}` of {id}: {why}"));
                    }
                }
                if values.iter().any(|v| alt_base(v) == "media") && method.def["supportsMediaDownload"] != true {
                    reasons.push(format!("alt=media on {id}, which has no media download"));
                }
                if values.len() > 1 {
                    reasons.push(format!("query parameter `{name}` given {} times; {id} takes it once", values.len()));
                }
                continue;
            }
            if spec["location"] == "path" {
                reasons.push(format!("`{name}` is a path parameter of {id}, not a query parameter"));
                continue;
            }
            if values.len() > 1 && spec["repeated"] != true {
                reasons.push(format!("query parameter `{name}` given {} times; {id} takes it once", values.len()));
            }
            for value in values {
                if let Err(why) = check_param_value(spec, value, self.service.proto) {
                    reasons.push(format!("query parameter `{name}` of {id}: {why}"));
                }
                if spec["format"] == "google-fieldmask"
                    && let Some(request) = method.def["request"]["$ref"].as_str()
                {
                    for why in check_field_mask(self.api, request, value) {
                        reasons.push(format!("query parameter `{name}` of {id}: {why}"));
                    }
                }
            }
        }
        if self.service.download {
            if method.def["useMediaDownloadService"] != true {
                reasons.push(format!("{id} is not served on the media download path"));
            }
            if self.alt() != Some("media") {
                reasons.push(format!("the media download path serves {id} with alt=media only"));
            }
        }
        if route != Route::Chunk {
            for (name, spec) in declared.into_iter().flatten() {
                if spec["required"] == true && spec["location"] == "query" && !self.query.contains_key(name) {
                    reasons.push(format!("missing required query parameter `{name}` for {id}"));
                }
            }
        }
        if let Route::Upload { resumable_path } = route {
            const UPLOAD_TYPES: &[&str] = &["media", "multipart", "resumable"];
            match self.upload_type() {
                None => reasons.push(format!("upload to {id} without uploadType (one of media, multipart, resumable)")),
                Some(t) if !UPLOAD_TYPES.contains(&t) => {
                    reasons.push(format!("uploadType `{t}` for {id} is not one of media, multipart, resumable"))
                }
                Some(t) if resumable_path && t != "resumable" => {
                    reasons.push(format!("uploadType `{t}` on the resumable upload path of {id}"))
                }
                Some(_) => {}
            }
        }
        self.reasons.extend(reasons);
    }

    /// The `alt` system parameter's format (`json`, `media`), however it was written.
    fn alt(&self) -> Option<&str> {
        self.query.get("alt").or_else(|| self.query.get("$alt")).and_then(|v| v.first()).map(|v| alt_base(v))
    }

    /// `alt` is `json` or `media` (the discovery enum), optionally followed by
    /// `;enum-encoding=int`, which Google's generated REST clients send to proto-based APIs
    /// (google-cloud-kms `kms_v1/_compat.py`) and those answer with numbered enums.
    fn check_alt(&self, spec: &Value, value: &str) -> Result<(), String> {
        let mut parts = value.split(';');
        check_param_value(spec, parts.next().unwrap_or(""), false)?;
        for option in parts {
            match option {
                "enum-encoding=int" if self.service.proto => {}
                "enum-encoding=int" => {
                    return Err(format!("`{value}`: {} takes enums as strings only", self.service.name));
                }
                other => return Err(format!("`{value}`: unknown alt option `{}`", clip(other))),
            }
        }
        Ok(())
    }

    fn upload_type(&self) -> Option<&str> {
        self.query.get("uploadType").and_then(|v| v.first()).map(String::as_str)
    }

    fn check_body(&mut self, method: &Method, route: Route) {
        let body = &self.record.body;
        if body.is_null() || route == Route::Chunk {
            return;
        }
        // With uploadType=media the body is the object's bytes, not metadata.
        if matches!(route, Route::Upload { .. }) && self.upload_type() == Some("media") {
            return;
        }
        let id = &method.id;
        let content_type = self.record.content_type.as_deref().unwrap_or("");
        let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let json = media_type == "application/json" || media_type.ends_with("+json");
        // STS takes OAuth 2.0 token exchange (RFC 8693) form posts; multipart uploads carry their
        // metadata as the first part.
        let form = media_type == "application/x-www-form-urlencoded" && self.service.name == "sts";
        let multipart = media_type.starts_with("multipart/") && matches!(route, Route::Upload { .. });
        let Some(reference) = method.def["request"]["$ref"].as_str() else {
            if json || form {
                self.reasons.push(format!("{id} takes no request body, but one was sent"));
            }
            return;
        };
        if !(json || form || multipart) {
            let shown = if content_type.is_empty() { "no Content-Type" } else { content_type };
            self.reasons.push(format!("request body of {id} sent with {shown}; it takes application/json"));
            return;
        }
        let body = match body.as_str() {
            Some(text) if form => Value::Object(
                url::form_urlencoded::parse(text.as_bytes())
                    .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                    .collect(),
            ),
            _ => body.clone(),
        };
        if !body.is_object() {
            self.reasons.push(format!("request body of {id} is {}, not a JSON object", json_type(&body)));
            return;
        }
        match self.api.schema(reference) {
            Some(schema) => {
                let dialect = Dialect { form, numeric_enums: self.service.proto };
                validate(self.api, schema, &body, reference, dialect, &mut self.reasons)
            }
            None => self.reasons.push(format!("{id}: the discovery document has no schema `{reference}`")),
        }
    }
}

/// How a request body was written.
#[derive(Clone, Copy)]
struct Dialect {
    /// Form fields are checked by name only (every form value is a string), and may use the proto
    /// field name (`subject_token`) as Google's form endpoints accept.
    form: bool,
    /// Enums may be given by number ([`Service::proto`]).
    numeric_enums: bool,
}

/// Checks `value` against a schema node; `at` names where it sits (`Bucket.iamConfiguration`).
fn validate(api: &Api, node: &Value, value: &Value, at: &str, dialect: Dialect, out: &mut Vec<String>) {
    let form = dialect.form;
    // null is how a JSON request clears a field.
    if value.is_null() {
        return;
    }
    if let Some(reference) = node["$ref"].as_str() {
        match api.schema(reference) {
            Some(schema) => validate(api, schema, value, at, dialect, out),
            None => out.push(format!("{at}: the discovery document has no schema `{reference}`")),
        }
        return;
    }
    let expected = node["type"].as_str().unwrap_or("any");
    if form && expected != "object" && expected != "string" {
        return;
    }
    let mismatch =
        |out: &mut Vec<String>, what: &str| out.push(format!("{at}: expected {what}, got {}", json_type(value)));
    match expected {
        "object" => {
            let Some(fields) = value.as_object() else { return mismatch(out, "object") };
            let properties = node["properties"].as_object();
            let additional = node.get("additionalProperties");
            for (key, field) in fields {
                let declared = properties.and_then(|p| {
                    p.get(key).map(|s| (key.clone(), s)).or_else(|| {
                        let camel = snake_to_camel(key);
                        p.get(&camel).filter(|_| form).map(|s| (camel, s))
                    })
                });
                match (declared, additional) {
                    (Some((name, schema)), _) => validate(api, schema, field, &format!("{at}.{name}"), dialect, out),
                    (None, Some(schema)) => validate(api, schema, field, &format!("{at}[{key:?}]"), dialect, out),
                    (None, None) => out.push(format!("unknown body field `{key}` in {at}")),
                }
            }
        }
        "array" => {
            let Some(items) = value.as_array() else { return mismatch(out, "array") };
            for (i, item) in items.iter().enumerate() {
                validate(api, &node["items"], item, &format!("{at}[{i}]"), dialect, out);
            }
        }
        "string" => {
            if dialect.numeric_enums && node["enum"].is_array() && value.as_i64().is_some() {
                if let Err(why) = check_enum_number(value.as_i64().unwrap_or_default()) {
                    out.push(format!("{at}: {why}"));
                }
                return;
            }
            let Some(text) = value.as_str() else {
                let what = node["format"].as_str().map_or("string".to_string(), |f| format!("string ({f})"));
                return mismatch(out, &what);
            };
            if let Err(why) = check_format(node["format"].as_str(), text).and_then(|()| check_enum(node, text)) {
                out.push(format!("{at}: {why}"));
            }
        }
        "integer" => match value.as_f64() {
            Some(n) if value.is_i64() || value.is_u64() || n.fract() == 0.0 => {
                if let Err(why) = check_integer_range(node, n) {
                    out.push(format!("{at}: {why}"));
                }
            }
            _ => mismatch(out, "integer"),
        },
        "number" if !value.is_number() => mismatch(out, "number"),
        "boolean" if !value.is_boolean() => mismatch(out, "boolean"),
        _ => {}
    }
}

/// An enum given by number: proto3 enums are open and 32-bit, so any int32 parses (the service
/// then judges the value, as it judges a name).
fn check_enum_number(n: i64) -> Result<(), String> {
    if i32::try_from(n).is_ok() { Ok(()) } else { Err(format!("enum number {n} is out of range for int32")) }
}

/// A query parameter's value, which arrives as text, against its declared type; `numeric_enums`
/// as in [`Dialect`].
fn check_param_value(spec: &Value, value: &str, numeric_enums: bool) -> Result<(), String> {
    if numeric_enums
        && spec["enum"].is_array()
        && let Ok(n) = value.parse::<i64>()
    {
        return check_enum_number(n);
    }
    match spec["type"].as_str().unwrap_or("string") {
        "integer" => {
            let n: i64 = value.parse().map_err(|_| format!("`{}` is not an integer", clip(value)))?;
            check_integer_range(spec, n as f64)
        }
        "number" => value.parse::<f64>().map(drop).map_err(|_| format!("`{}` is not a number", clip(value))),
        "boolean" => match value {
            "true" | "false" => Ok(()),
            _ => Err(format!("`{}` is not true or false", clip(value))),
        },
        _ => check_format(spec["format"].as_str(), value).and_then(|()| check_enum(spec, value)),
    }
}

/// `json` of `json;enum-encoding=int`.
fn alt_base(value: &str) -> &str {
    value.split(';').next().unwrap_or(value)
}

fn check_enum(spec: &Value, value: &str) -> Result<(), String> {
    let Some(allowed) = spec["enum"].as_array() else { return Ok(()) };
    if allowed.iter().any(|a| a == value) {
        return Ok(());
    }
    let allowed: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
    Err(format!("bad enum value `{}` (allowed: {})", clip(value), allowed.join(", ")))
}

fn check_integer_range(spec: &Value, n: f64) -> Result<(), String> {
    let (low, high) = match spec["format"].as_str() {
        Some("int32") => (f64::from(i32::MIN), f64::from(i32::MAX)),
        Some("uint32") => (0.0, f64::from(u32::MAX)),
        _ => (i64::MIN as f64, i64::MAX as f64),
    };
    // Discovery writes bounds as strings: "minimum": "0".
    let bound = |key: &str| spec[key].as_str().and_then(|b| b.parse::<f64>().ok());
    let low = bound("minimum").map_or(low, |b| b.max(low));
    let high = bound("maximum").map_or(high, |b| b.min(high));
    if n < low || n > high {
        let format = spec["format"].as_str().unwrap_or("integer");
        return Err(format!("{n} is out of range for {format} [{low}, {high}]"));
    }
    Ok(())
}

/// String formats as Google's JSON mapping writes them: 64-bit integers and bytes travel as strings.
fn check_format(format: Option<&str>, value: &str) -> Result<(), String> {
    let ok = match format {
        Some("int64") => value.parse::<i64>().is_ok(),
        Some("uint64") => value.parse::<u64>().is_ok(),
        Some("int32") => value.parse::<i32>().is_ok(),
        Some("uint32") => value.parse::<u32>().is_ok(),
        Some("byte") => is_base64(value),
        Some("date-time" | "google-datetime") => is_rfc3339(value),
        Some("date") => is_date(value.as_bytes()),
        Some("google-duration") => is_duration(value),
        _ => true,
    };
    if ok { Ok(()) } else { Err(format!("`{}` is not a valid {}", clip(value), format.unwrap_or("string"))) }
}

/// Every path of an update mask must name a field of the request's resource.
fn check_field_mask(api: &Api, request: &str, mask: &str) -> Vec<String> {
    let mut problems = Vec::new();
    'paths: for path in mask.split(',').map(str::trim).filter(|p| !p.is_empty() && *p != "*") {
        let mut node = api.schema(request).unwrap_or(&Value::Null);
        let mut at = request.to_string();
        for segment in path.split('.') {
            while let Some(reference) = node["$ref"].as_str() {
                node = api.schema(reference).unwrap_or(&Value::Null);
            }
            let properties = node["properties"].as_object();
            match properties.and_then(|p| p.get(segment).or_else(|| p.get(&snake_to_camel(segment)))) {
                Some(field) => {
                    node = field;
                    at = format!("{at}.{segment}");
                }
                // The rest is a key of a map.
                None if node.get("additionalProperties").is_some() => continue 'paths,
                None if properties.is_some() => {
                    problems.push(format!("update mask path `{path}` names no field of {at}"));
                    continue 'paths;
                }
                None => {
                    problems.push(format!("update mask path `{path}` goes below {at}, which is not a message"));
                    continue 'paths;
                }
            }
        }
    }
    problems
}

fn snake_to_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Values in messages are cut short: a violation about a 1 MB base64 field should still be one line.
fn clip(value: &str) -> String {
    const MAX: usize = 60;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_string(),
    }
}

fn is_base64(value: &str) -> bool {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    // Google accepts both alphabets, padded or not.
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD].iter().any(|engine| engine.decode(value).is_ok())
}

fn all_digits(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit)
}

fn is_date(b: &[u8]) -> bool {
    b.len() == 10
        && all_digits(&b[0..4])
        && b[4] == b'-'
        && all_digits(&b[5..7])
        && b[7] == b'-'
        && all_digits(&b[8..10])
}

/// RFC 3339: `2026-11-25T03:00:00Z`, `2026-11-25T03:00:00.123456+01:00`.
fn is_rfc3339(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() < 20 || !is_date(&b[..10]) || !matches!(b[10], b'T' | b't') {
        return false;
    }
    let time = &b[11..];
    if !(all_digits(&time[0..2])
        && time[2] == b':'
        && all_digits(&time[3..5])
        && time[5] == b':'
        && all_digits(&time[6..8]))
    {
        return false;
    }
    let mut rest = &time[8..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &fraction[digits..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => all_digits(&[*h1, *h2, *m1, *m2]),
        _ => false,
    }
}

/// google-duration: `3.5s`, `-10s`, up to nine fractional digits.
fn is_duration(value: &str) -> bool {
    let Some(number) = value.strip_suffix('s') else { return false };
    let number = number.strip_prefix('-').unwrap_or(number);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, "1"));
    all_digits(whole.as_bytes()) && all_digits(fraction.as_bytes()) && fraction.len() <= 9
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Checks the given records (one per line) against the real discovery documents.
    fn check(records: &[Value]) -> Report {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join("dcr-e2e");
        std::fs::create_dir_all(&dir).unwrap();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.join(format!("conformance-unit-{}-{n}.jsonl", std::process::id()));
        let text: String = records.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(&log, text).unwrap();
        let report = check_log(&log, &discovery_dir()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_file(&log).unwrap();
        assert_eq!(report.requests, records.len());
        report
    }

    fn request(service: &str, method: &str, path: &str, query: Value, body: Value) -> Value {
        let content_type = if body.is_null() { Value::Null } else { json!("application/json") };
        json!({"service": service, "method": method, "path": path, "query": query,
               "content_type": content_type, "body": body, "status": 200})
    }

    #[test]
    fn secrets_in_a_log_line_are_violations() {
        let kms = request(
            "kms",
            "POST",
            "/kms/v1/projects/p/locations/eu/keyRings/r/cryptoKeys/k:encrypt",
            json!({}),
            json!({"plaintext": "c2VjcmV0LWtleS1ieXRlcw=="}),
        );
        let report = check(&[kms]);
        assert!(
            report.violations.iter().any(|v| v.reason.contains("KMS `plaintext` unredacted")),
            "{:?}",
            report.violations
        );
        let redacted = request(
            "kms",
            "POST",
            "/kms/v1/projects/p/locations/eu/keyRings/r/cryptoKeys/k:encrypt",
            json!({}),
            json!({"plaintext": "UkVEQUNURUQ="}),
        );
        assert!(secrets_in(&redacted.to_string()).is_empty());
        let token = request("storage", "GET", "/storage/v1/b/x", json!({"access_token": ["dcrl.AAAA"]}), Value::Null);
        assert!(!secrets_in(&token.to_string()).is_empty());
        let jwt = json!({"body": {"note": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}});
        assert!(secrets_in(&jwt.to_string())[0].contains("JWT"));
    }

    fn bucket_insert(query: Value, body: Value) -> Value {
        request("storage", "POST", "/storage/v1/b", query, body)
    }

    fn valid_bucket() -> Value {
        json!({
            "name": "dcr-local-patients",
            "location": "EU",
            "storageClass": "STANDARD",
            "labels": {"dcr-dataset": "patients"},
            "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": true}, "publicAccessPrevention": "enforced"},
            "versioning": {"enabled": true},
            "lifecycle": {"rule": [{"action": {"type": "Delete"}, "condition": {"age": 30}}]},
            "retentionPolicy": null
        })
    }

    fn reasons(report: &Report) -> Vec<&str> {
        report.violations.iter().map(|v| v.reason.as_str()).collect()
    }

    /// Exactly one violation, on line 1, and its reason.
    fn only_reason(report: &Report) -> String {
        assert_eq!(report.violations.len(), 1, "{:#?}", report.violations);
        assert_eq!(report.violations[0].line, 1);
        report.violations[0].reason.clone()
    }

    #[test]
    fn a_valid_bucket_insert_passes() {
        let report = check(&[bucket_insert(json!({"project": ["dcr-local"], "alt": ["json"]}), valid_bucket())]);
        assert_eq!(reasons(&report), Vec::<&str>::new());
        assert_eq!(report.by_method, BTreeMap::from([("storage.buckets.insert".to_string(), 1)]));
    }

    #[test]
    fn an_unknown_body_field_is_named_with_where_it_sits() {
        let mut body = valid_bucket();
        body["iamConfiguration"]["foo"] = json!(true);
        let report = check(&[bucket_insert(json!({"project": ["p"]}), body)]);
        assert_eq!(only_reason(&report), "unknown body field `foo` in Bucket.iamConfiguration");
        assert_eq!(report.violations[0].method.as_deref(), Some("storage.buckets.insert"));
        assert_eq!(
            report.violations[0].to_string(),
            "line 1: POST /storage/v1/b (answered 200): unknown body field `foo` in Bucket.iamConfiguration"
        );
    }

    #[test]
    fn an_unknown_query_parameter_is_named() {
        let report = check(&[bucket_insert(json!({"project": ["p"], "bar": ["1"]}), valid_bucket())]);
        assert_eq!(only_reason(&report), "unknown query parameter `bar` for storage.buckets.insert");
    }

    #[test]
    fn a_missing_required_query_parameter_is_named() {
        let report = check(&[bucket_insert(json!({}), valid_bucket())]);
        assert_eq!(only_reason(&report), "missing required query parameter `project` for storage.buckets.insert");
    }

    #[test]
    fn wrong_types_are_reported_in_body_and_query() {
        let mut body = valid_bucket();
        body["versioning"]["enabled"] = json!("yes");
        body["lifecycle"]["rule"][0]["condition"]["age"] = json!("30");
        body["labels"]["n"] = json!(1);
        let report = check(&[
            bucket_insert(json!({"project": ["p"]}), body),
            request("storage", "GET", "/storage/v1/b/b/o/x", json!({"ifGenerationMatch": ["abc"]}), Value::Null),
            request(
                "storage",
                "GET",
                "/storage/v1/b/b/o",
                json!({"maxResults": ["-1"], "versions": ["yes"]}),
                Value::Null,
            ),
        ]);
        assert_eq!(
            reasons(&report),
            vec![
                "Bucket.labels[\"n\"]: expected string, got number",
                "Bucket.lifecycle.rule[0].condition.age: expected integer, got string",
                "Bucket.versioning.enabled: expected boolean, got string",
                "query parameter `ifGenerationMatch` of storage.objects.get: `abc` is not a valid int64",
                "query parameter `maxResults` of storage.objects.list: -1 is out of range for uint32 [0, 4294967295]",
                "query parameter `versions` of storage.objects.list: `yes` is not true or false",
            ]
        );
        assert_eq!(report.violations.iter().map(|v| v.line).collect::<Vec<_>>(), [1, 1, 1, 2, 3, 3]);
    }

    #[test]
    fn int64_and_bytes_travel_as_strings() {
        let key = "/cloudkms/v1/projects/p/locations/global/keyRings/r/cryptoKeys/k:encrypt";
        let report = check(&[
            // The log's redaction marker is valid base64; anything else in `plaintext` is also a leak.
            request("cloudkms", "POST", key, json!({}), json!({"plaintext": "UkVEQUNURUQ=", "plaintextCrc32c": "123"})),
            request("cloudkms", "POST", key, json!({}), json!({"plaintext": "not base64!", "plaintextCrc32c": 123})),
        ]);
        assert_eq!(
            reasons(&report),
            vec![
                "EncryptRequest.plaintext: `not base64!` is not a valid byte",
                "EncryptRequest.plaintextCrc32c: expected string (int64), got number",
                "the request log keeps KMS `plaintext` unredacted",
            ]
        );
    }

    #[test]
    fn bad_enum_values_are_reported_with_the_allowed_ones() {
        let create = "/cloudkms/v1/projects/p/locations/global/keyRings/r/cryptoKeys";
        let report = check(&[
            bucket_insert(json!({"project": ["p"], "predefinedAcl": ["bogus"]}), valid_bucket()),
            request(
                "cloudkms",
                "POST",
                create,
                json!({"cryptoKeyId": ["data"]}),
                json!({"purpose": "SCRAMBLE", "versionTemplate": {"algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION"}}),
            ),
        ]);
        let reasons = reasons(&report);
        assert_eq!(reasons.len(), 2, "{reasons:#?}");
        assert!(
            reasons[0].starts_with(
                "query parameter `predefinedAcl` of storage.buckets.insert: bad enum value `bogus` (allowed: authenticatedRead, private,"
            ),
            "{}",
            reasons[0]
        );
        assert!(reasons[1].starts_with("CryptoKey.purpose: bad enum value `SCRAMBLE` (allowed: "), "{}", reasons[1]);
        assert!(reasons[1].contains("ENCRYPT_DECRYPT"), "{}", reasons[1]);
        assert_eq!(report.by_method["cloudkms.projects.locations.keyRings.cryptoKeys.create"], 1);
    }

    #[test]
    fn an_unknown_path_or_verb_matches_no_method() {
        let report = check(&[
            request("storage", "POST", "/storage/v1/bx", json!({}), json!({})),
            request("storage", "PATCH", "/storage/v1/b", json!({}), Value::Null),
            request("storage", "GET", "/storage/v2/b", json!({}), Value::Null),
            request("storage", "GET", "/storage/v1/b/bkt/o/a/b", json!({}), Value::Null),
            request("bigquery", "GET", "/bigquery/v2/projects", json!({}), Value::Null),
        ]);
        let reasons = reasons(&report);
        assert_eq!(reasons[0], "no method matches POST /storage/v1/bx");
        assert!(reasons[1].starts_with("no method matches PATCH /storage/v1/b: that path takes "), "{}", reasons[1]);
        assert!(reasons[1].contains("POST b (storage.buckets.insert)"), "{}", reasons[1]);
        assert_eq!(reasons[2], "no method matches GET /storage/v2/b: storage paths start with /storage/v1/");
        // An object name's slash must be encoded: unencoded, it is two segments and no method.
        assert_eq!(reasons[3], "no method matches GET /storage/v1/b/bkt/o/a/b");
        assert!(reasons[4].starts_with("unknown service `bigquery`"), "{}", reasons[4]);
        assert!(report.by_method.is_empty(), "{:?}", report.by_method);
        assert!(report.violations.iter().all(|v| v.method.is_none()));
    }

    #[test]
    fn an_encoded_object_name_is_one_segment() {
        let report = check(&[
            request(
                "storage",
                "GET",
                "/storage/v1/b/bkt/o/data%2Fpatients.csv.enc",
                json!({"alt": ["media"]}),
                Value::Null,
            ),
            request("storage", "GET", "/storage/v1/b/bkt", json!({"alt": ["media"]}), Value::Null),
        ]);
        assert_eq!(reasons(&report), vec!["alt=media on storage.buckets.get, which has no media download"]);
        assert_eq!(report.by_method["storage.objects.get (media)"], 1);
    }

    #[test]
    fn the_media_download_path_serves_object_media_only() {
        let object = "/download/storage/v1/b/bkt/o/runs%2F1%2Fsummary.csv";
        let report = check(&[
            request("storage-download", "GET", object, json!({"alt": ["media"], "generation": ["7"]}), Value::Null),
            request("storage-download", "GET", object, json!({}), Value::Null),
            request("storage-download", "GET", "/download/storage/v1/b/bkt", json!({"alt": ["media"]}), Value::Null),
        ]);
        assert_eq!(
            reasons(&report),
            vec![
                "the media download path serves storage.objects.get with alt=media only",
                "alt=media on storage.buckets.get, which has no media download",
                "storage.buckets.get is not served on the media download path",
            ]
        );
        assert_eq!(report.by_method["storage.objects.get (media)"], 1);
        assert_eq!(report.succeeded["storage.objects.get (media)"], 1);
    }

    #[test]
    fn system_parameters_may_carry_a_dollar_and_proto_apis_take_numbered_enums() {
        let keys = "/cloudkms/v1/projects/p/locations/global/keyRings/r/cryptoKeys";
        let numbered = json!({"$alt": ["json;enum-encoding=int"], "cryptoKeyId": ["k"]});
        let report = check(&[
            // What google-cloud-kms's REST transport sends.
            request(
                "cloudkms",
                "POST",
                keys,
                numbered.clone(),
                json!({"purpose": 1, "versionTemplate": {"algorithm": 1}}),
            ),
            request(
                "cloudkms",
                "GET",
                keys,
                json!({"$fields": ["cryptoKeys(name)"], "$prettyPrint": ["false"]}),
                Value::Null,
            ),
            request("cloudkms", "POST", keys, numbered, json!({"purpose": 1_i64 << 40})),
            request(
                "cloudkms",
                "GET",
                keys,
                json!({"$alt": ["json;enum-encoding=roman"], "$nonsense": ["1"]}),
                Value::Null,
            ),
            // Storage and Compute enums are strings, and they take no enum encoding.
            request(
                "storage",
                "GET",
                "/storage/v1/b",
                json!({"project": ["p"], "$alt": ["json;enum-encoding=int"]}),
                Value::Null,
            ),
            request(
                "storage",
                "POST",
                "/storage/v1/b",
                json!({"project": ["p"]}),
                json!({"name": "b", "iamConfiguration": {"publicAccessPrevention": 1}}),
            ),
        ]);
        let m = "cloudkms.projects.locations.keyRings.cryptoKeys";
        assert_eq!(
            reasons(&report),
            vec![
                "CryptoKey.purpose: enum number 1099511627776 is out of range for int32".to_string(),
                format!("query parameter `$alt` of {m}.list: `json;enum-encoding=roman`: unknown alt option `enum-encoding=roman`"),
                format!("unknown query parameter `$nonsense` for {m}.list"),
                "query parameter `$alt` of storage.buckets.list: `json;enum-encoding=int`: storage takes enums as strings only"
                    .to_string(),
                "Bucket.iamConfiguration.publicAccessPrevention: expected string, got number".to_string(),
            ]
        );
        assert_eq!(report.violations.iter().map(|v| v.line).collect::<Vec<_>>(), vec![3, 4, 4, 5, 6]);
    }

    #[test]
    fn kms_custom_verbs_are_recognised() {
        let key = "/cloudkms/v1/projects/p/locations/global/keyRings/r/cryptoKeys/k";
        let report = check(&[
            request("cloudkms", "POST", &format!("{key}:encrypt"), json!({}), json!({"plaintext": "UkVEQUNURUQ="})),
            request("cloudkms", "POST", &format!("{key}:decrypt"), json!({}), json!({"ciphertext": "UkVEQUNURUQ="})),
            request(
                "cloudkms",
                "GET",
                &format!("{key}:getIamPolicy"),
                json!({"options.requestedPolicyVersion": ["3"]}),
                Value::Null,
            ),
            request("cloudkms", "GET", key, json!({}), Value::Null),
            request("cloudkms", "POST", &format!("{key}:frobnicate"), json!({}), json!({})),
        ]);
        let m = "cloudkms.projects.locations.keyRings.cryptoKeys";
        assert_eq!(
            report.by_method,
            BTreeMap::from([
                (format!("{m}.encrypt"), 1),
                (format!("{m}.decrypt"), 1),
                (format!("{m}.getIamPolicy"), 1),
                (format!("{m}.get"), 1),
            ])
        );
        assert_eq!(reasons(&report), vec![format!("no method matches POST {key}:frobnicate").as_str()]);
    }

    #[test]
    fn kms_update_masks_name_fields_of_the_resource() {
        let key = "/cloudkms/v1/projects/p/locations/global/keyRings/r/cryptoKeys/k";
        let report = check(&[
            request(
                "cloudkms",
                "PATCH",
                key,
                json!({"updateMask": ["rotationPeriod,next_rotation_time,labels.team"]}),
                json!({"rotationPeriod": "7776000s", "nextRotationTime": "2026-12-01T00:00:00Z", "labels": {"team": "x"}}),
            ),
            request(
                "cloudkms",
                "PATCH",
                key,
                json!({"updateMask": ["rotationPeriod,colour"]}),
                json!({"rotationPeriod": "90 days"}),
            ),
        ]);
        assert_eq!(
            reasons(&report),
            vec![
                "query parameter `updateMask` of cloudkms.projects.locations.keyRings.cryptoKeys.patch: update mask path `colour` names no field of CryptoKey",
                "CryptoKey.rotationPeriod: `90 days` is not a valid google-duration",
            ]
        );
        assert_eq!(report.violations[0].line, 2);
    }

    #[test]
    fn resumable_uploads_and_their_chunks_are_recognised() {
        let upload = "/upload/storage/v1/b/dcr-local-patients/o";
        let start = json!({"service": "storage-upload", "method": "POST", "path": upload,
            "query": {"uploadType": ["resumable"], "name": ["patients.csv.enc"], "ifGenerationMatch": ["0"]},
            "content_type": "application/json; charset=UTF-8",
            "body": {"name": "patients.csv.enc", "contentType": "application/octet-stream", "metadata": {"dcr-key": "k"}},
            "status": 200});
        let chunk = json!({"service": "storage-upload", "method": "PUT", "path": upload,
            "query": {"uploadType": ["resumable"], "name": ["patients.csv.enc"], "upload_id": ["session-1"]},
            "content_type": "application/octet-stream", "body": null, "status": 308});
        let simple = json!({"service": "storage-upload", "method": "POST", "path": upload,
            "query": {"uploadType": ["media"], "name": ["a/b.csv"]},
            "content_type": "text/csv", "body": null, "status": 200});
        let report = check(&[start, chunk, simple]);
        assert_eq!(reasons(&report), Vec::<&str>::new());
        assert_eq!(
            report.by_method,
            BTreeMap::from([
                ("storage.objects.insert (resumable chunk)".to_string(), 1),
                ("storage.objects.insert (upload)".to_string(), 2),
            ])
        );
    }

    #[test]
    fn upload_mistakes_are_named() {
        let upload = "/upload/storage/v1/b/bkt/o";
        let report = check(&[
            request("storage-upload", "PUT", upload, json!({"uploadType": ["resumable"]}), Value::Null),
            request("storage-upload", "POST", upload, json!({"uploadType": ["chunky"], "name": ["x"]}), Value::Null),
            request(
                "storage-upload",
                "POST",
                upload,
                json!({"uploadType": ["resumable"]}),
                json!({"name": "x", "colour": "red"}),
            ),
            request(
                "storage-upload",
                "POST",
                upload,
                json!({"uploadType": ["media"], "upload_id": ["s"]}),
                Value::Null,
            ),
        ]);
        let reasons = reasons(&report);
        assert_eq!(
            reasons,
            vec![
                "no method matches PUT /upload/storage/v1/b/bkt/o: a PUT to an upload path is a chunk of a resumable upload and must carry upload_id",
                "uploadType `chunky` for storage.objects.insert is not one of media, multipart, resumable",
                "unknown body field `colour` in Object",
                "unknown query parameter `upload_id` for storage.objects.insert: only chunks of a resumable upload, sent with PUT to the session URI, carry it",
            ]
        );
    }

    #[test]
    fn iam_and_sts_requests_are_checked() {
        let pools = "/iam/v1/projects/p/locations/global/workloadIdentityPools";
        let provider = json!({
            "displayName": "dcr",
            "attributeMapping": {"google.subject": "assertion.sub"},
            "attributeCondition": "assertion.swname == 'CONFIDENTIAL_SPACE'",
            "oidc": {"issuerUri": "https://confidentialcomputing.googleapis.com/", "allowedAudiences": ["https://sts.googleapis.com"]}
        });
        let form = json!({"service": "sts", "method": "POST", "path": "/sts/v1/token", "query": {},
            "content_type": "application/x-www-form-urlencoded",
            "body": "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&audience=%2F%2Fiam.googleapis.com%2Fx&subject_token=t&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform",
            "status": 200});
        let report = check(&[
            request(
                "iam",
                "POST",
                pools,
                json!({"workloadIdentityPoolId": ["dcr-pool"]}),
                json!({"displayName": "dcr"}),
            ),
            request(
                "iam",
                "POST",
                &format!("{pools}/dcr-pool/providers"),
                json!({"workloadIdentityPoolProviderId": ["attest"]}),
                provider,
            ),
            request("iam", "GET", &format!("{pools}/dcr-pool/operations/op-1"), json!({}), Value::Null),
            form,
            request("sts", "POST", "/sts/v1/token", json!({}), json!({"grantType": "x", "subject_token": "t"})),
        ]);
        assert_eq!(
            reasons(&report),
            vec!["unknown body field `subject_token` in GoogleIdentityStsV1ExchangeTokenRequest"]
        );
        assert_eq!(report.violations[0].line, 5);
        let pool = "iam.projects.locations.workloadIdentityPools";
        assert_eq!(
            report.by_method,
            BTreeMap::from([
                (format!("{pool}.create"), 1),
                (format!("{pool}.operations.get"), 1),
                (format!("{pool}.providers.create"), 1),
                ("sts.token".to_string(), 2),
            ])
        );
    }

    #[test]
    fn compute_instance_insert_is_checked() {
        let instance = json!({
            "name": "dcr-run-1",
            "machineType": "zones/us-central1-a/machineTypes/n2d-standard-2",
            "confidentialInstanceConfig": {"enableConfidentialCompute": true, "confidentialInstanceType": "SEV"},
            "scheduling": {"onHostMaintenance": "TERMINATE", "automaticRestart": false},
            "metadata": {"items": [{"key": "tee-image-reference", "value": "reg/img@sha256:00"}, {"key": "tee-restart-policy", "value": "Never"}]},
            "shieldedInstanceConfig": {"enableSecureBoot": true}
        });
        let mut bad = instance.clone();
        bad["scheduling"]["onHostMaintenance"] = json!("WHATEVER");
        let path = "/compute/v1/projects/p/zones/us-central1-a/instances";
        let report = check(&[
            request("compute", "POST", path, json!({"requestId": ["r"]}), instance),
            request("compute", "POST", path, json!({}), bad),
            request("compute", "GET", &format!("{path}/dcr-run-1"), json!({}), Value::Null),
        ]);
        let reasons = reasons(&report);
        assert_eq!(reasons.len(), 1, "{reasons:#?}");
        assert!(
            reasons[0].starts_with("Instance.scheduling.onHostMaintenance: bad enum value `WHATEVER`"),
            "{}",
            reasons[0]
        );
        assert_eq!(report.by_method["compute.instances.insert"], 2);
        assert_eq!(report.by_method["compute.instances.get"], 1);
    }

    #[test]
    fn a_body_sent_where_none_is_taken_or_with_the_wrong_type_is_reported() {
        let report = check(&[
            request("storage", "DELETE", "/storage/v1/b/bkt", json!({}), json!({"force": true})),
            json!({"service": "storage", "method": "POST", "path": "/storage/v1/b", "query": {"project": ["p"]},
                   "content_type": "text/plain", "body": {"name": "x"}, "status": 400}),
        ]);
        assert_eq!(
            reasons(&report),
            vec![
                "storage.buckets.delete takes no request body, but one was sent",
                "request body of storage.buckets.insert sent with text/plain; it takes application/json",
            ]
        );
        assert!(report.violations[1].to_string().starts_with("line 2: POST /storage/v1/b (answered 400): "));
    }

    #[test]
    fn a_malformed_log_line_is_an_error_not_a_violation() {
        let dir = std::env::temp_dir().join("dcr-e2e");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("conformance-bad-{}.jsonl", std::process::id()));
        std::fs::write(&log, "\n{\"service\":\"storage\"}\n").unwrap();
        let err = check_log(&log, &discovery_dir()).unwrap_err();
        std::fs::remove_file(&log).unwrap();
        assert!(matches!(err, Error::BadRecord { line: 2, .. }), "{err}");
        let missing = check_log(Path::new("/nonexistent/log.jsonl"), &discovery_dir()).unwrap_err();
        assert!(matches!(missing, Error::Io { .. }), "{missing}");
    }

    #[test]
    fn a_missing_discovery_directory_says_how_to_get_one() {
        let mut checker = Checker::new(Path::new("/nonexistent/discovery"));
        let record: Record =
            serde_json::from_value(request("storage", "GET", "/storage/v1/b/x", json!({}), Value::Null)).unwrap();
        let Err(err) = checker.check_record(&record) else { panic!("expected an error") };
        assert!(err.to_string().contains("run tests/install-tools.sh"), "{err}");
    }

    #[test]
    fn templates_match_segments_and_reserved_expansions() {
        let rest = |t: &Template, p: &str| t.matches(&decode_path(p), false);
        let grpc = |t: &Template, p: &str| t.matches(&decode_path(p), true);
        let key = Template::parse("v1/{+name}:encrypt");
        assert!(grpc(&key, "v1/projects/p/locations/l/keyRings/r/cryptoKeys/k:encrypt"));
        assert!(!grpc(&key, "v1/:encrypt"));
        let flat = Template::parse("v1/projects/{projectsId}/locations/{locationsId}");
        assert!(grpc(&flat, "v1/projects/p/locations/l"));
        assert!(!grpc(&flat, "v1/projects/p/x/locations/l"));
        assert!(!grpc(&flat, "v1/projects//locations/l"), "a parameter is never empty");
        assert!(!grpc(&flat, "v1/projects/p/locations/l:get"), "a custom verb is not part of an id");
        let object = Template::parse("b/{bucket}/o/{object}");
        assert!(rest(&object, "b/bkt/o/a%2Fb%3Ac"));
        assert!(rest(&object, "b/bkt/o/a:b"), "object names may hold colons");
        assert!(!rest(&object, "b/bkt/o/a/b"));
    }

    #[test]
    fn formats_follow_googles_json_mapping() {
        for ok in ["2026-11-25T03:00:00Z", "2026-11-25T03:00:00.123456789+01:00", "2026-11-25t03:00:00z"] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in ["2026-11-25", "2026-11-25T03:00:00", "2026-11-25T03:00:00.Z", "yesterday at noon"] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
        for ok in ["3s", "-1.5s", "0.000000001s"] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in ["3", "s", "1.0000000001s", "1h"] {
            assert!(!is_duration(bad), "{bad}");
        }
        assert!(is_base64("aGVsbG8=") && is_base64("aGVsbG8") && is_base64("-_-_"));
        assert_eq!(snake_to_camel("subject_token_type"), "subjectTokenType");
        assert_eq!(clip(&"x".repeat(100)).len(), 63);
    }
}
