//! OpenTelemetry: when export is on, which the `OTEL_*` variables decide,
//! the spans of a request reach the exporter with their fields as attributes.
//! An in-memory exporter stands in for the OTLP collector.

mod common;

use std::collections::HashMap;

use catalog::CacheMode;
use catalog::telemetry::{TelemetryError, TraceExport};
use common::{TestApp, TestDb, config};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;

fn decide(vars: &[(&str, &str)]) -> Result<TraceExport, TelemetryError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TraceExport::from_lookup(|name| vars.get(name).cloned())
}

#[test]
fn export_is_off_unless_the_environment_asks() {
    assert_eq!(decide(&[]).unwrap(), TraceExport::Off);
    assert_eq!(
        decide(&[("OTEL_SERVICE_NAME", "catalog")]).unwrap(),
        TraceExport::Off
    );
    assert_eq!(
        decide(&[("OTEL_TRACES_EXPORTER", "otlp")]).unwrap(),
        TraceExport::Otlp
    );
    assert_eq!(
        decide(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]).unwrap(),
        TraceExport::Otlp
    );
    assert_eq!(
        decide(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/v1/traces"
        )])
        .unwrap(),
        TraceExport::Otlp
    );
    // An explicit none, or the SDK switched off, wins over an endpoint.
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
    assert_eq!(
        decide(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
        TraceExport::Off
    );
    assert_eq!(
        decide(&[endpoint, ("OTEL_SDK_DISABLED", "true")]).unwrap(),
        TraceExport::Off
    );
    // Empty means unset.
    assert_eq!(
        decide(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]).unwrap(),
        TraceExport::Off
    );
}

#[test]
fn settings_the_service_would_ignore_stop_it() {
    let error = decide(&[("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "OTEL_TRACES_EXPORTER=zipkin is not supported: use otlp or none, or unset it"
    );
    let error = decide(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ])
    .unwrap_err();
    assert!(error.to_string().contains("use http/protobuf"), "{error}");
    let error = decide(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "HTTPS://collector:4318")]).unwrap_err();
    assert!(
        error.to_string().contains("use an http:// endpoint"),
        "{error}"
    );
    // The protocol only matters when exporting.
    assert_eq!(
        decide(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap(),
        TraceExport::Off
    );
    assert_eq!(
        decide(&[
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ])
        .unwrap(),
        TraceExport::Otlp
    );
}

// A current-thread runtime: the server task runs on this thread, where the
// subscriber is installed.
#[tokio::test]
async fn a_request_span_reaches_the_exporter() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(catalog::telemetry::layer(&provider));
    let _installed = tracing::subscriber::set_default(subscriber);

    let db = TestDb::sqlite();
    let app = TestApp::start(&db, &config(CacheMode::Hybrid, None, "telemetry:")).await;
    let response = app
        .http
        .get(app.url("/products?limit=1"))
        .header("x-request-id", "trace-me")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    app.stop().await;
    provider.force_flush().expect("flush");

    let spans = exporter.get_finished_spans().expect("spans");
    let request = spans
        .iter()
        .find(|span| span.name == "request")
        .unwrap_or_else(|| panic!("no request span among {spans:?}"));
    let attribute = |key: &str| {
        request
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attribute("request_id").as_deref(), Some("trace-me"));
    assert_eq!(attribute("method").as_deref(), Some("GET"));
    assert_eq!(attribute("path").as_deref(), Some("/products"));
    // Events inside the span (here the response line) travel with it.
    assert!(
        request.events.iter().count() > 0,
        "the request span carries no event: {request:?}"
    );
}
