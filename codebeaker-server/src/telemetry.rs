//! OpenTelemetry traces: with an OTLP endpoint (`--otlp-endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables), the
//! server's `tracing` spans (request > command > the backend's work) are exported over
//! OTLP/HTTP (protobuf), and a client's W3C `traceparent` makes its own span their parent.
//!
//! Off by default, at no cost: no layer is installed and no `traceparent` is parsed.
//! Export never holds a command: finished spans wait in a bounded queue
//! ([`EXPORT_QUEUE`]) drained by the exporter's own thread; past it they are dropped and
//! counted (`codebeaker_trace_spans_dropped_total`), whatever the collector does (down,
//! slow, refusing).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor, Tracer,
};
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Finished spans waiting for the exporter, at most; more are dropped and counted.
pub const EXPORT_QUEUE: usize = 4096;

/// How long one export may take before it is abandoned (a collector that never answers).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The service name when `OTEL_SERVICE_NAME` does not set one.
const SERVICE_NAME: &str = "codebeaker-server";

/// Longest `traceparent` or `tracestate` value read from a client (the W3C limits are
/// 55 and 512 characters).
const MAX_CONTEXT_LEN: usize = 1024;

/// Spans dropped because the export queue was full, for `/metrics`.
pub static DROPPED_SPANS: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Whether spans are exported (set once, by [`Telemetry::start`]).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Where traces go, from the flags and the environment.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// `--otlp-endpoint`: the collector's base URL (`/v1/traces` is appended unless the
    /// URL already ends with it). `None`: the standard variables decide.
    pub endpoint: Option<String>,
}

impl TelemetryConfig {
    /// Whether traces are to be exported: an endpoint was given, by flag or by one of the
    /// standard variables, and `OTEL_SDK_DISABLED` is not `true`.
    pub fn enabled(&self) -> bool {
        let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
        let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|value| value.trim() == "true");
        !disabled
            && (self.endpoint.as_deref().is_some_and(|url| !url.trim().is_empty())
                || set(OTEL_EXPORTER_OTLP_ENDPOINT)
                || set(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT))
    }

    /// The URL spans are posted to, when given by flag.
    fn traces_url(&self) -> Option<String> {
        let base = self.endpoint.as_deref()?.trim().trim_end_matches('/');
        Some(if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") })
    }
}

/// The exporting pipeline, while traces are exported: flushes and stops at
/// [`Telemetry::shutdown`].
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

/// Why export could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces: {0}")]
pub struct TelemetryError(String);

impl Telemetry {
    /// Starts exporting as `config` says; `Ok(None)` when it says not to. The tracer goes
    /// to [`crate::logging::init`], which installs its layer.
    pub fn start(config: &TelemetryConfig) -> Result<Option<(Telemetry, Tracer)>, TelemetryError> {
        if !config.enabled() {
            return Ok(None);
        }
        let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_timeout(EXPORT_TIMEOUT);
        if let Some(url) = config.traces_url() {
            exporter = exporter.with_endpoint(url);
        }
        let exporter = exporter.build().map_err(|e| TelemetryError(e.to_string()))?;
        let pending = Arc::new(AtomicUsize::new(0));
        let batch = BatchConfigBuilder::default().with_max_queue_size(EXPORT_QUEUE).build();
        let processor = BatchSpanProcessor::builder(Settled { inner: exporter, pending: pending.clone() })
            .with_batch_config(batch)
            .build();
        let mut resource = Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").is_err() {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Gate { inner: processor, pending })
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("codebeaker-server");
        EXPORTING.store(true, Ordering::Release);
        Ok(Some((Telemetry { provider }, tracer)))
    }

    /// Exports what is queued and stops (on a blocking thread: the HTTP client blocks).
    pub async fn shutdown(self) {
        let provider = self.provider;
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = stopped {
            tracing::warn!(%error, "the trace exporter did not shut down cleanly");
        }
    }
}

/// Makes the span a client's `traceparent` (and `tracestate`) names the parent of `span`,
/// which must not have been entered yet. Does nothing when traces are not exported or the
/// value is not a valid W3C trace context.
pub fn adopt(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    let Some(parent) = traceparent.filter(|value| EXPORTING.load(Ordering::Acquire) && value.len() <= MAX_CONTEXT_LEN)
    else {
        return;
    };
    let mut carrier = HashMap::from([("traceparent".to_owned(), parent.to_owned())]);
    if let Some(state) = tracestate.filter(|value| value.len() <= MAX_CONTEXT_LEN) {
        carrier.insert("tracestate".to_owned(), state.to_owned());
    }
    // An invalid value extracts to an empty context: the span keeps the parent it has
    // (none that is exported: the request starts a trace of its own).
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}

/// The W3C trace context of the current span (`traceparent`, and `tracestate` when
/// there is one) to hand to another cluster node, so its spans join this trace; `None`
/// when traces are not exported.
pub fn current_context() -> Option<HashMap<String, String>> {
    if !EXPORTING.load(Ordering::Acquire) {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    carrier.contains_key("traceparent").then_some(carrier)
}

/// Runs an HTTP request (the file routes, `/mcp`) in a span of its own, `http.request`
/// (method and route template, never the path itself), whose parent is the client's span
/// when a `traceparent` header names one (see [`adopt`]).
pub async fn http_span(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use tracing::Instrument as _;
    let span = request_span(&request);
    next.run(request).instrument(span).await
}

/// The span of [`http_span`].
fn request_span(request: &axum::extract::Request) -> tracing::Span {
    let route = request.extensions().get::<axum::extract::MatchedPath>().map_or("", |path| path.as_str());
    let span = tracing::info_span!("http.request", "http.request.method" = %request.method(), "http.route" = route);
    let header = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok());
    adopt(&span, header("traceparent"), header("tracestate"));
    span
}

/// The exporter, counting down the spans it has taken (exported or failed).
#[derive(Debug)]
struct Settled<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for Settled<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let taken = batch.len();
        let exported = self.inner.export(batch);
        let pending = self.pending.clone();
        async move {
            let result = exported.await;
            pending.fetch_sub(taken, Ordering::AcqRel);
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The batch processor behind a gate that counts what it drops: a finished span enters
/// only while fewer than [`EXPORT_QUEUE`] wait or are being exported.
#[derive(Debug)]
struct Gate {
    inner: BatchSpanProcessor,
    pending: Arc<AtomicUsize>,
}

impl SpanProcessor for Gate {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= EXPORT_QUEUE {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            DROPPED_SPANS.inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
