//! Where the service's logs and spans go: log lines to stdout, always, and
//! every `tracing` span (the Catalog's and the Strata libraries') to an
//! OpenTelemetry collector when the standard `OTEL_*` environment variables
//! ask for it.
//!
//! Export is off by default. It is on with `OTEL_TRACES_EXPORTER=otlp`, or when
//! that variable is unset and an OTLP endpoint is given
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`);
//! `OTEL_TRACES_EXPORTER=none` and `OTEL_SDK_DISABLED=true` keep it off. The
//! exporter speaks OTLP over HTTP/protobuf (to `http://localhost:4318` unless
//! an endpoint is given): its protobuf code comes pre-generated, so building
//! the service needs no `protoc`, and gRPC would add a second HTTP stack for no
//! gain. It has no TLS (its client's TLS option brings in aws-lc, which the
//! workspace avoids, as the Redis crate's choice of ring says): it sends to a
//! collector beside the service, over plain HTTP. The OpenTelemetry SDK reads
//! its other settings itself: `OTEL_SERVICE_NAME` (default here: `catalog`),
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, the timeouts, the
//! sampler and the batch sizes. The `LOG` filter applies to exported spans as
//! to log lines.
//!
//! This module creates no span: the request span comes from the app's
//! middleware, the cache's from the libraries.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// `service.name` of the exported spans unless `OTEL_SERVICE_NAME` (or
/// `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) says otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "catalog";

/// The one protocol the exporter speaks, as `OTEL_EXPORTER_OTLP_PROTOCOL`
/// names it.
const HTTP_PROTOBUF: &str = "http/protobuf";

/// Whether spans are exported, as the environment decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceExport {
    /// Log lines only.
    Off,
    /// Spans to an OTLP collector over HTTP/protobuf.
    Otlp,
}

impl TraceExport {
    /// Reads the process environment; see [`TraceExport::from_lookup`].
    ///
    /// # Errors
    ///
    /// See [`TraceExport::from_lookup`].
    pub fn from_env() -> Result<Self, TelemetryError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Decides from the variables `var` returns: off unless
    /// `OTEL_TRACES_EXPORTER=otlp`, or an OTLP endpoint is set and
    /// `OTEL_TRACES_EXPORTER` is not; always off with `OTEL_SDK_DISABLED=true`.
    /// Empty values count as unset.
    ///
    /// # Errors
    ///
    /// [`TelemetryError::Unsupported`] for an exporter other than `otlp` or
    /// `none`, an OTLP protocol other than `http/protobuf`, or an `https://`
    /// endpoint, so that a setting the service would not honour stops it at
    /// start-up instead.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let var = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(TraceExport::Off);
        }
        let export = match var("OTEL_TRACES_EXPORTER") {
            Some(exporter) if exporter == "otlp" => TraceExport::Otlp,
            Some(exporter) if exporter == "none" => TraceExport::Off,
            Some(exporter) => {
                return Err(TelemetryError::Unsupported {
                    variable: "OTEL_TRACES_EXPORTER",
                    value: exporter,
                    supported: "otlp or none",
                });
            }
            None if var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() =>
            {
                TraceExport::Otlp
            }
            None => TraceExport::Off,
        };
        if export == TraceExport::Otlp {
            for variable in [
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ] {
                if let Some(endpoint) = var(variable).filter(|e| {
                    e.get(..8)
                        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
                }) {
                    return Err(TelemetryError::Unsupported {
                        variable,
                        value: endpoint,
                        supported: "an http:// endpoint (the exporter has no TLS: send to a \
                                    collector beside the service)",
                    });
                }
            }
            for variable in [
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ] {
                if let Some(protocol) = var(variable).filter(|p| p != HTTP_PROTOBUF) {
                    return Err(TelemetryError::Unsupported {
                        variable,
                        value: protocol,
                        supported: HTTP_PROTOBUF,
                    });
                }
            }
        }
        Ok(export)
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An `OTEL_*` variable asks for something the service does not do.
    #[error("{variable}={value} is not supported: use {supported}, or unset it")]
    Unsupported {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What it may be instead.
        supported: &'static str,
    },
    /// The OTLP exporter rejected its settings (an endpoint that is not a
    /// URL, malformed headers...).
    #[error("cannot set up the OTLP trace exporter; check the OTEL_EXPORTER_OTLP_* variables: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The running export. Call [`Telemetry::shutdown`] before the process
/// exits, or the last spans are lost.
#[derive(Debug)]
#[must_use = "shut it down before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still queued and stops the export. Blocks until the
    /// collector answers or the export timeout passes.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("OpenTelemetry: the last spans may be lost: {error}");
        }
    }
}

/// Installs the process's `tracing` subscriber: log lines filtered by
/// `filter` (`EnvFilter` syntax; `info` when it does not parse), and span
/// export as the environment asks (see the module docs). A second call
/// leaves the first subscriber in place.
///
/// # Errors
///
/// [`TelemetryError`] when the `OTEL_*` variables ask for an export the
/// service cannot set up; nothing is installed then.
pub fn init(filter: &str) -> Result<Telemetry, TelemetryError> {
    let provider = match TraceExport::from_env()? {
        TraceExport::Off => None,
        TraceExport::Otlp => Some(otlp_provider()?),
    };
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colors only on a terminal: container logs stay plain text.
    let log_lines = tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(log_lines)
        .with(provider.as_ref().map(layer))
        .try_init();
    Ok(Telemetry { provider })
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of
/// `provider`: their fields become attributes, their events span events.
pub fn layer<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, SdkTracer>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(DEFAULT_SERVICE_NAME))
}

/// A provider exporting through OTLP/HTTP in batches, from a background
/// thread: a slow collector never holds up a request.
fn otlp_provider() -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build())
}

/// The SDK's resource (it reads `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES`), named [`DEFAULT_SERVICE_NAME`] when they do
/// not name the service.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&Key::from_static_str("service.name"))
        .is_some_and(|name: Value| !name.as_str().starts_with("unknown_service"));
    if named {
        detected
    } else {
        Resource::builder()
            .with_service_name(DEFAULT_SERVICE_NAME)
            .build()
    }
}
