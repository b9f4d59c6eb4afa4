//! `POST /v1/deployments/{name}/feedback` (one `RewardIn`) and `.../feedback/batch`
//! (`{"events": [...]}`) bodies, read as the REST handlers read them, then recorded by a real
//! deployment engine that has made a few decisions. A `decision_id` of the form `#N` stands
//! for the id of the engine's decision N (mod their count), so rewards reach real decisions.
#![no_main]

use std::sync::LazyLock;

use keel_experiments::{Deployment, RewardIn};
use keel_fuzz::{assert_user_fault, contextual_spec, open_deployment, runtime};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    events: Vec<RewardIn>,
}

struct Fixture {
    _dir: tempfile::TempDir,
    deployment: Deployment,
    decisions: Vec<String>,
    rt: tokio::runtime::Runtime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let deployment = open_deployment(&contextual_spec(), dir.path());
    let rt = runtime();
    let context = serde_json::json!({"age": 30, "segment": "new"});
    let decisions = (0..16)
        .map(|i| {
            let unit = format!("u{i}");
            let (out, _) = rt
                .block_on(deployment.decide(Some(&unit), context.as_object()))
                .expect("the fixture decides");
            out.decision_id
        })
        .collect();
    Fixture {
        _dir: dir,
        deployment,
        decisions,
        rt,
    }
});

fn resolve(f: &Fixture, mut item: RewardIn) -> RewardIn {
    if let Some(n) = item.decision_id.strip_prefix('#').and_then(|n| n.parse::<usize>().ok()) {
        item.decision_id = f.decisions[n % f.decisions.len()].clone();
    }
    item
}

fuzz_target!(|body: &[u8]| {
    let items: Vec<RewardIn> = if let Ok(one) = serde_json::from_slice::<RewardIn>(body) {
        vec![one]
    } else if let Ok(batch) = serde_json::from_slice::<BatchRequest>(body) {
        batch.events
    } else {
        // Malformed JSON is refused with InvalidRequest (400) by the handlers.
        return;
    };
    let f = &*FIXTURE;
    let items: Vec<RewardIn> = items.into_iter().map(|i| resolve(f, i)).collect();
    match f.rt.block_on(f.deployment.feedback(&items)) {
        Ok((results, _)) => {
            assert_eq!(results.len(), items.len());
            for r in results {
                if let Err(e) = r {
                    assert_user_fault("feedback_body item", e.kind(), &e);
                }
            }
        }
        Err(e) => assert_user_fault("feedback_body", e.kind(), &e),
    }
});
