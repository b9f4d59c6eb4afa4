//! Logs and traces: structured logs on stderr (text or JSON), and OpenTelemetry traces of the
//! request path exported over OTLP/gRPC when an endpoint is configured.
//!
//! Request-path spans use the target [`TRACE_TARGET`]: only the OTLP layer listens to it, so
//! without an endpoint those spans are disabled at their call sites and cost nothing, and the log
//! output never carries them.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::trace::TRACE_TARGET;

/// rustls warns about every client that sends an IP address as its TLS server name (wrk, curl
/// with --resolve...): noise, and handshake failures are counted in
/// `keel_tls_handshake_failures_total` anyway.
const SERVER_FILTER: &str = "warn,rustls=error,keel=info,keel_api=info,keel_serving=info,keel_experiments=info,keel_registry=info,keel_lake=info";

/// A command that runs and exits prints its own results; its log keeps to warnings and errors,
/// so lines such as "model loaded" do not interleave with what it reports.
const COMMAND_FILTER: &str = "warn,rustls=error";

/// Which default the log filter starts from when the filter variable is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDefault {
    /// A long-running server (`keel serve`): its lifecycle (models loaded, deployments ready,
    /// snapshots written) at info.
    Server,
    /// A command that runs and exits: warnings and errors only.
    Command,
}

/// Flushes the traces still buffered when dropped (call [`Telemetry::shutdown`] inside the
/// runtime to wait for it).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered; waits at most the exporter's timeout.
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = provider.shutdown() {
                    eprintln!("warning: traces not all exported at shutdown: {e}");
                }
            })
            .await;
        }
    }
}

/// Why logging or tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "--otlp-endpoint {0:?} must be an http:// or https:// URL of an OTLP/gRPC collector, e.g. http://127.0.0.1:4317"
    )]
    InvalidEndpoint(String),
    #[error("cannot set up the OTLP exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
}

/// How the process logs and traces.
#[derive(Debug, Clone, Copy)]
pub struct TelemetryConfig<'a> {
    /// `text` or `json` lines on stderr.
    pub log_format: &'a str,
    /// The environment variable holding a log filter (`tracing` directives), e.g. `KEEL_LOG`.
    pub filter_env: &'a str,
    /// An OTLP/gRPC collector to export traces to; none: no traces.
    pub otlp_endpoint: Option<&'a str>,
    /// The filter used when `filter_env` is not set.
    pub default: LogDefault,
}

/// Sets up logging, and tracing over OTLP when an endpoint is set. Must run inside the Tokio
/// runtime (the OTLP exporter's connection lives there).
pub fn init(config: TelemetryConfig<'_>) -> Result<Telemetry, TelemetryError> {
    let default = match config.default {
        LogDefault::Server => SERVER_FILTER,
        LogDefault::Command => COMMAND_FILTER,
    };
    let filter = EnvFilter::try_from_env(config.filter_env).unwrap_or_else(|_| EnvFilter::new(default));
    // The log layer never shows request-path spans (they are for traces).
    let off = format!("{TRACE_TARGET}=off")
        .parse()
        .expect("a target name is a valid directive");
    let filter = filter.add_directive(off);
    let (format, otlp_endpoint) = (config.log_format, config.otlp_endpoint);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if format == "json" {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let Some(endpoint) = otlp_endpoint.filter(|e| !e.trim().is_empty()) else {
        tracing_subscriber::registry().with(fmt).init();
        return Ok(Telemetry { provider: None });
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(TelemetryError::InvalidEndpoint(endpoint.to_string()));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.to_string(),
            message: e.to_string(),
        })?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "keel".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let tracer = provider.tracer("keel");
    // Traces take the request-path spans and keel's own spans at info and above.
    let trace_filter = EnvFilter::new(format!(
        "warn,{TRACE_TARGET}=info,keel=info,keel_api=info,keel_serving=info,keel_experiments=info"
    ));
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(trace_filter);
    tracing_subscriber::registry().with(fmt).with(otel).init();
    tracing::info!(endpoint, "exporting traces over OTLP/gRPC");
    Ok(Telemetry {
        provider: Some(provider),
    })
}
