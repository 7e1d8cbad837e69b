//! Logging and tracing set-up, the same for every process, and the W3C trace context
//! that travels between them.
//!
//! Logs go to standard output (text or JSON lines). Traces are exported over OTLP/HTTP
//! (protobuf) only when the setting `OTEL_EXPORTER_OTLP_ENDPOINT` is given (the
//! collector's base URL, e.g. `http://127.0.0.1:4318`; spans go to `<base>/v1/traces`,
//! under the service's name). Without it nothing is exported and the trace-context
//! helpers below cost nothing.
//!
//! The trace context crosses every hop as a W3C `traceparent` value: the router sends
//! it to the subgraphs it calls ([`TRACEPARENT`] header), subgraphs read it from that
//! header ([`follow`]), an event written while serving a request carries it
//! (`Event::trace`), a consumer handles that event under it, and a notification's
//! deliveries keep it. So an expense, the budget alert it causes and the notification
//! sent for it form one trace.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The header (and the field of stored records) carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The variable that turns trace export on: the OTLP/HTTP collector's base URL.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" | "pretty" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected text or json, got {other:?}")),
        }
    }
}

/// Whether spans are being exported (set once, by the first [`init`]).
static EXPORTING: AtomicBool = AtomicBool::new(false);
/// The exporting provider, kept to flush it.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber once (`RUST_LOG` wins over `level`), exporting
/// `service`'s spans to the OTLP/HTTP collector at `otlp_endpoint` (a base URL) when one
/// is given; later calls are no-ops (tests start many apps in one process).
pub fn init(service: &str, level: &str, format: LogFormat, otlp_endpoint: Option<&str>) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| install(service, level, format, otlp_endpoint));
}

/// Reads the value of [`OTLP_ENDPOINT_VAR`]: unset or blank is off; otherwise an
/// http(s) base URL.
pub fn otlp_endpoint_setting(value: Option<String>) -> Result<Option<String>, String> {
    let Some(v) = value.map(|v| v.trim().trim_end_matches('/').to_string()) else {
        return Ok(None);
    };
    if v.is_empty() {
        return Ok(None);
    }
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(Some(v))
    } else {
        Err(format!(
            "must be the http(s) base URL of an OTLP/HTTP collector, not {v:?}"
        ))
    }
}

fn install(service: &str, level: &str, format: LogFormat, otlp_endpoint: Option<&str>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
    }
    .with_filter(filter);
    let mut export_error = None;
    let spans = otlp_endpoint.and_then(|base| match exporter(base) {
        Ok(exporter) => {
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder_empty()
                        .with_service_name(service.to_string())
                        .build(),
                )
                .build();
            let tracer = provider.tracer("smart-expense-tracker");
            let _ = PROVIDER.set(provider);
            EXPORTING.store(true, Ordering::Release);
            // The product's own spans are at INFO; libraries' debug spans stay out.
            Some(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(LevelFilter::INFO),
            )
        }
        Err(e) => {
            export_error = Some(e);
            None
        }
    });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    if let Some(e) = export_error {
        tracing::warn!(error = %e, "trace export is off: {OTLP_ENDPOINT_VAR} is not usable");
    } else if let Some(base) = otlp_endpoint {
        tracing::info!(endpoint = %base, "exporting traces over OTLP/HTTP");
    }
}

fn exporter(base: &str) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let base = otlp_endpoint_setting(Some(base.to_string()))?.unwrap_or_default();
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(BlockingHttp::default())
        .with_endpoint(format!("{base}/v1/traces"))
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())
}

/// Sends every span exported so far (tests, and before a process exits).
pub fn flush() {
    if let Some(p) = PROVIDER.get()
        && let Err(e) = p.force_flush()
    {
        tracing::warn!(error = %e, "trace export failed");
    }
}

/// Whether spans are exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Acquire)
}

/// The `traceparent` of `span` (`None` when nothing is exported).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` of the current span, to send on or store with a record made now.
pub fn traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// Makes `span` a child of the trace a `traceparent` value names (a malformed or absent
/// value leaves `span` the root of a new trace).
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(value) = traceparent.filter(|_| exporting()) else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_string(), value.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// [`follow`] with the `traceparent` header of an incoming request.
pub fn follow_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    follow(span, headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()));
}

/// The trace id of a `traceparent` value (32 hex digits), if it is well formed.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The OTLP exporter's HTTP client: the batch processor runs exports on its own thread,
/// outside any async runtime, so a blocking client (made on that thread) sends them.
#[derive(Debug, Default)]
struct BlockingHttp(OnceLock<reqwest::blocking::Client>);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for BlockingHttp {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = match self.0.get() {
            Some(c) => c,
            None => {
                let c = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()?;
                self.0.get_or_init(|| c)
            }
        };
        let (parts, body) = request.into_parts();
        let mut req = client
            .request(parts.method, parts.uri.to_string())
            .body(body.to_vec());
        for (name, value) in &parts.headers {
            req = req.header(name, value);
        }
        let answer = req.send()?;
        let status = answer.status();
        // A collector's answer is small; more than 64 KiB of it is not read.
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(answer, 64 * 1024), &mut bytes)?;
        Ok(http::Response::builder()
            .status(status)
            .body(bytes::Bytes::from(bytes))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_read_from_well_formed_values_only() {
        assert_eq!(
            trace_id_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id_of("00-xyz-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id_of(""), None);
    }

    #[test]
    fn the_endpoint_setting_is_off_when_blank_and_a_url_otherwise() {
        assert_eq!(otlp_endpoint_setting(None), Ok(None));
        assert_eq!(otlp_endpoint_setting(Some("  ".into())), Ok(None));
        assert_eq!(
            otlp_endpoint_setting(Some("http://jaeger:4318/".into())),
            Ok(Some("http://jaeger:4318".into()))
        );
        assert!(otlp_endpoint_setting(Some("jaeger:4318".into())).is_err());
    }

    #[test]
    fn nothing_is_propagated_when_nothing_is_exported() {
        let span = tracing::info_span!("quiet");
        follow(
            &span,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(traceparent_of(&span), None);
    }
}
