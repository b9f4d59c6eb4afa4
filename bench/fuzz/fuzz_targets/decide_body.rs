//! A `POST /v1/deployments/{name}/decide` body, read as the REST handler reads it (the same
//! `DecideBody` shape, its `inputs` decoded by the V2 request decoder), then decided on by a
//! real deployment engine (contextual LinUCB with a control group, decision log in a temporary
//! folder): context encoding, the policy and the durable log all see the fuzzed values.
#![no_main]

use std::sync::LazyLock;

use keel_experiments::Deployment;
use keel_fuzz::{assert_user_fault, contextual_spec, open_deployment, runtime};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// The REST handler's body (crates/keel-api/src/experiments.rs, private there).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    #[serde(default)]
    unit_id: Option<String>,
    #[serde(default)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    inputs: Option<serde::de::IgnoredAny>,
}

struct Fixture {
    _dir: tempfile::TempDir,
    deployment: Deployment,
    rt: tokio::runtime::Runtime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let deployment = open_deployment(&contextual_spec(), dir.path());
    Fixture {
        _dir: dir,
        deployment,
        rt: runtime(),
    }
});

fuzz_target!(|body: &[u8]| {
    // Malformed JSON is refused with InvalidRequest (400) by the handler: nothing to check.
    let Ok(decide) = serde_json::from_slice::<DecideBody>(body) else {
        return;
    };
    if decide.inputs.is_some()
        && let Err(e) = keel_serving::protocol::decode_json_request(body, None)
    {
        assert_user_fault("decide_body inputs", e.kind(), &e);
        return;
    }
    let f = &*FIXTURE;
    let decided =
        f.rt.block_on(f.deployment.decide(decide.unit_id.as_deref(), decide.context.as_ref()));
    match decided {
        Ok((out, _)) => {
            assert!(
                out.propensity > 0.0 && out.propensity <= 1.0,
                "propensity {}",
                out.propensity
            );
        }
        Err(e) => assert_user_fault("decide_body", e.kind(), &e),
    }
});
