//! Metric names and the per-model handles that keep the request path allocation-free.

use metrics::{Counter, Histogram, counter, histogram};

/// Requests by protocol, model, version and outcome code (`ok` or an error code).
pub const REQUESTS_TOTAL: &str = "keel_inference_requests_total";
/// Request latency in seconds by protocol, model and version.
pub const REQUEST_DURATION: &str = "keel_inference_request_duration_seconds";
/// Requests being processed, by protocol.
pub const IN_FLIGHT: &str = "keel_inference_requests_in_flight";
/// Rows scored, by model and version.
pub const ROWS_TOTAL: &str = "keel_inference_rows_total";

/// The transports, as metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Rest,
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rest => "rest",
            Protocol::Grpc => "grpc",
        }
    }
}

#[derive(Debug)]
struct PerProtocol {
    ok: Counter,
    duration: Histogram,
}

/// Handles registered once per loaded model.
#[derive(Debug)]
pub(crate) struct ModelMetrics {
    rest: PerProtocol,
    grpc: PerProtocol,
    rows: Counter,
}

impl ModelMetrics {
    pub(crate) fn new(model: &str, version: i64) -> ModelMetrics {
        let per = |protocol: Protocol| PerProtocol {
            ok: counter!(REQUESTS_TOTAL, "protocol" => protocol.as_str(), "model" => model.to_string(), "version" => version.to_string(), "code" => "ok"),
            duration: histogram!(REQUEST_DURATION, "protocol" => protocol.as_str(), "model" => model.to_string(), "version" => version.to_string()),
        };
        ModelMetrics {
            rest: per(Protocol::Rest),
            grpc: per(Protocol::Grpc),
            rows: counter!(ROWS_TOTAL, "model" => model.to_string(), "version" => version.to_string()),
        }
    }

    pub(crate) fn record_ok(&self, protocol: Protocol, seconds: f64, rows: u64) {
        let p = match protocol {
            Protocol::Rest => &self.rest,
            Protocol::Grpc => &self.grpc,
        };
        p.ok.increment(1);
        p.duration.record(seconds);
        self.rows.increment(rows);
    }
}

/// Counts a failed request; the model label is kept only for models that are loaded, so
/// unknown names sent by clients cannot grow the label set.
pub(crate) fn record_error(protocol: Protocol, model: Option<(&str, &str)>, code: &'static str, seconds: f64) {
    let (model, version) = model.map_or((String::new(), String::new()), |(m, v)| (m.to_string(), v.to_string()));
    counter!(REQUESTS_TOTAL, "protocol" => protocol.as_str(), "model" => model.clone(), "version" => version.clone(), "code" => code).increment(1);
    histogram!(REQUEST_DURATION, "protocol" => protocol.as_str(), "model" => model, "version" => version)
        .record(seconds);
}
