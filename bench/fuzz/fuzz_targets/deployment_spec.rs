//! A `PUT /v1/deployments/{name}` body (`{"spec": ..., "author": ..., "reason": ...}`): the
//! name check and `DeploymentSpec::from_json`, the parse-and-validate step `Deployments::apply`
//! and `prepare_revision` run before anything is recorded. A spec that validates is then
//! opened as a real engine (policy built, decision log in a fresh temporary folder) and asked
//! for one decision on a context that fits its features: a valid spec must be servable.
#![no_main]

use std::sync::LazyLock;

use keel_experiments::{Deployment, DeploymentSpec, Durability};
use keel_fuzz::{assert_user_fault, runtime};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// The REST handler's body (crates/keel-api/src/experiments.rs, private there), with the
/// deployment name the URL would carry.
#[derive(Deserialize)]
struct ApplyRequest {
    #[serde(default)]
    name: Option<String>,
    spec: serde_json::Value,
}

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(runtime);

/// A context every feature of `spec` accepts: 0.5 for numbers, the first level for categories.
fn fitting_context(spec: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for f in spec.get("context").and_then(|c| c.as_array()).into_iter().flatten() {
        let Some(name) = f.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        let value = match f.get("levels").and_then(|l| l.get(0)) {
            Some(level) => level.clone(),
            None => serde_json::json!(0.5),
        };
        out.insert(name.to_string(), value);
    }
    out
}

fuzz_target!(|body: &[u8]| {
    let Ok(request) = serde_json::from_slice::<ApplyRequest>(body) else {
        return;
    };
    if let Some(name) = &request.name
        && let Err(e) = keel_experiments::validate_name(name)
    {
        assert_user_fault("deployment_spec name", e.kind(), &e);
        return;
    }
    let spec = match DeploymentSpec::from_json(&request.spec) {
        Ok(spec) => spec,
        Err(e) => {
            assert_user_fault("deployment_spec", e.kind(), &e);
            return;
        }
    };
    // Model variants need a registry and a runtime to resolve: the parse above is all they get.
    if spec.variants.iter().any(|v| v.model.is_some()) {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let deployment = match Deployment::open("fuzz", spec, 1, dir.path(), Durability::Os) {
        Ok(d) => d,
        Err(e) => {
            assert_user_fault("deployment_spec open", e.kind(), &e);
            return;
        }
    };
    let context = fitting_context(&request.spec);
    let decided = RT.block_on(deployment.decide(Some("unit-1"), Some(&context)));
    if let Err(e) = decided {
        assert_user_fault("deployment_spec decide", e.kind(), &e);
    }
    deployment.close();
});
