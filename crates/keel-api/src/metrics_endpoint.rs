use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
///
/// If another recorder was installed first (a test harness, say), a recorder that is not
/// global is returned so `/metrics` still answers.
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = || {
                PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Suffix("_seconds".to_string()),
                        &[
                            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                            0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                        ],
                    )
                    .expect("static bucket list is not empty")
            };
            match builder().install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder was already installed; /metrics shows a private one");
                    builder().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// Counts decisions answered: `keel_decisions_total{deployment, api}` (`rest`, `rest_batch`,
/// `grpc`), so a dashboard shows decisions per second per deployment.
pub(crate) fn count_decisions(deployment: &str, api: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!("keel_decisions_total", "deployment" => deployment.to_string(), "api" => api)
            .increment(n as u64);
    }
}

/// Counts feedback events: `keel_feedback_total{deployment, result}` with `counted` (a new
/// reward), `duplicate` (already recorded) and `failed` (refused).
pub(crate) fn count_feedback(deployment: &str, counted: usize, duplicate: usize, failed: usize) {
    for (result, n) in [("counted", counted), ("duplicate", duplicate), ("failed", failed)] {
        if n > 0 {
            metrics::counter!("keel_feedback_total", "deployment" => deployment.to_string(), "result" => result)
                .increment(n as u64);
        }
    }
}
