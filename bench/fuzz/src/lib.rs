//! What every fuzz target checks, and the fixtures some of them share.
//!
//! The invariant: a decoder given any bytes either decodes them or answers an error whose
//! [`ErrorKind`] is the caller's fault (a 4xx), never a panic and never a server fault (a 5xx).

use std::fmt::Display;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use keel_experiments::{Deployment, DeploymentSpec, Durability};
use keel_types::ErrorKind;

/// Panics (so libFuzzer records a crash) when a decoder blamed itself for bad input.
pub fn assert_user_fault(target: &str, kind: ErrorKind, error: &dyn Display) {
    assert!(
        !kind.is_server_fault(),
        "{target}: bad input was classified as a server fault ({kind:?}): {error}"
    );
}

/// The same for a gRPC status: only the codes keel maps from server-fault kinds are refused.
pub fn assert_user_status(target: &str, status: &tonic::Status) {
    use tonic::Code;
    assert!(
        !matches!(
            status.code(),
            Code::Internal | Code::Unavailable | Code::Unknown | Code::DataLoss
        ),
        "{target}: bad input answered {:?}: {}",
        status.code(),
        status.message()
    );
}

/// A one-thread runtime to drive the async decide/feedback calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// A contextual deployment (LinUCB over a numeric and a categorical feature, with a control
/// group and guardrails), the shape of the richest decide path that needs no model.
pub fn contextual_spec() -> serde_json::Value {
    serde_json::json!({
        "variants": [{"name": "promo_a"}, {"name": "promo_b"}, {"name": "none"}],
        "policy": {"type": "lin_ucb", "alpha": 1.0, "floor": 0.05},
        "context": [
            {"name": "age", "type": "numeric"},
            {"name": "segment", "type": "categorical", "levels": ["new", "loyal"]}
        ],
        "control": {"variant": "none", "share": 0.1},
        "reward": {"kind": "continuous", "min": -10.0, "max": 100.0, "default": null, "window_seconds": 3600}
    })
}

/// Opens `spec` as a running deployment engine under `dir` (its decision log lives there).
pub fn open_deployment(spec: &serde_json::Value, dir: &Path) -> Deployment {
    let spec = DeploymentSpec::from_json(spec).expect("the fixture spec is valid");
    Deployment::open("fuzz", spec, 1, dir, Durability::Os).expect("the fixture deployment opens")
}

/// A served model (`bc-lr`, 30 FP32 features) behind the real serving operations, when ONNX
/// Runtime is found (`KEEL_ORT_LIB`, as for keel itself); `None` otherwise, and the V2 targets
/// then check decoding only.
pub struct Served {
    pub service: Arc<keel_serving::InferenceService>,
    pub rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

pub static SERVED: LazyLock<Option<Served>> = LazyLock::new(|| {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/models/bc-lr.onnx")).ok()?;
    let dir = tempfile::tempdir().ok()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .ok()?;
    let service = rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("keel.db").display());
        let store = keel_store::Store::open(&url).await.ok()?;
        let artifacts = dir.path().join("artifacts").display().to_string();
        let registry = keel_registry::Registry::open(store, &artifacts).ok()?;
        let request = keel_registry::PushRequest {
            name: "bc-lr".into(),
            author: "fuzz".into(),
            ..Default::default()
        };
        let version = registry.push(request, bytes.into()).await.ok()?;
        let selector = keel_registry::VersionSelector::Number(version.version);
        registry
            .set_alias("bc-lr", "production", &selector, "fuzz", None)
            .await
            .ok()?;
        let repository = keel_serving::ModelRepository::new(registry, keel_runtime::ModelOptions::default());
        let service = keel_serving::InferenceService::new(repository);
        service.load_all().await.is_empty().then_some(service)
    })?;
    Some(Served { service, rt, _dir: dir })
});

/// Validates a decoded request against the served model and runs it, as the infer route does:
/// a request the decoder accepted may still be refused, but only as the caller's fault.
pub fn check_against_model(target: &str, request: keel_serving::InferRequest) {
    let Some(served) = &*SERVED else { return };
    let model = served.service.model("bc-lr", None).expect("bc-lr is loaded");
    if let Err(e) = keel_serving::validate(&model, &request) {
        assert_user_fault(target, e.kind(), &e);
        return;
    }
    let protocol = keel_serving::metrics::Protocol::Rest;
    if let Err(e) = served
        .rt
        .block_on(served.service.infer_on(protocol, model, request, None))
    {
        assert_user_fault(target, e.kind(), &e);
    }
}
