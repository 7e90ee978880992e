//! Logs in the shape Terraform shows with `TF_LOG`: go-plugin reads a plugin's stderr and treats
//! each JSON line with `@level`, `@message` and `@timestamp` as a structured log entry at that level
//! (hclog's JSON format). Stdout belongs to the handshake and must never carry logs.

use std::fmt;

use serde_json::{Map, Value as Json};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs a global subscriber writing hclog JSON lines to stderr. The level comes from
/// `TF_LOG_PROVIDER` or `TF_LOG` (Terraform's own variables); `info` otherwise.
pub fn init() {
    let level = std::env::var("TF_LOG_PROVIDER")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("TF_LOG").ok())
        .map(|s| s.to_ascii_lowercase());
    let filter = match level.as_deref() {
        Some("trace") | Some("json") => "trace",
        Some("debug") => "debug",
        Some("warn") => "warn",
        Some("error") => "error",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("{filter},h2=info,hyper=info,tower=info,rustls=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(HclogJson)
        .try_init();
}

/// Formats one tracing event as one hclog JSON line.
pub struct HclogJson;

impl<S, N> FormatEvent<S, N> for HclogJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        writeln!(w, "{}", hclog_line(event))
    }
}

fn hclog_line(event: &Event<'_>) -> String {
    let mut fields = Fields(Map::new());
    event.record(&mut fields);
    let mut obj = fields.0;
    let message = obj.remove("message").unwrap_or(Json::String(String::new()));
    obj.insert("@message".into(), message);
    obj.insert("@level".into(), Json::from(level_name(event.metadata().level())));
    obj.insert("@module".into(), Json::from(event.metadata().target().replace("::", ".")));
    let ts = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    obj.insert("@timestamp".into(), Json::from(ts));
    Json::Object(obj).to_string()
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

struct Fields(Map<String, Json>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Json::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Json::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Json::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Json::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), Json::from(format!("{value:?}")));
    }
}
