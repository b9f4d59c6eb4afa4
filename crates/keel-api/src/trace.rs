//! Server spans for traces: one per HTTP or gRPC request, continuing the caller's W3C
//! `traceparent` when it sends one. Spans use [`TRACE_TARGET`], which only an OpenTelemetry
//! layer enables: without one they are disabled at the call site and the request path pays a
//! single check.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::Extractor;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub use keel_serving::TRACE_TARGET;

/// Reads W3C trace-context headers.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    let _ = span.set_parent(parent);
}

/// Axum middleware: the server span of a REST request, named after its route.
pub async fn http(req: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        target: TRACE_TARGET,
        "http.request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        http.request.method = %req.method(),
        url.path = %req.uri().path(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    if span.is_disabled() {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |m| m.as_str().to_owned());
    span.record("otel.name", format!("{} {route}", req.method()));
    span.record("http.route", route.as_str());
    continue_trace(&span, req.headers());
    let response = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", i64::from(response.status().as_u16()));
    response
}

/// tonic's `trace_fn`: the server span of a gRPC call, named after its method.
pub fn grpc(req: &axum::http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        target: TRACE_TARGET,
        "grpc.request",
        otel.name = %req.uri().path().trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
    );
    if !span.is_disabled() {
        continue_trace(&span, req.headers());
    }
    span
}
