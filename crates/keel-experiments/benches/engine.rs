//! Decision plus feedback in process, on one core: the whole engine (context encoding, policy,
//! decision log append, waiting-decision bookkeeping, reward update) versus the bare policy
//! (`keel-bandit` decide + update) as the anchor, in the same run.
//!
//! K = 5 actions, 10 numeric features, SquareCB and LinUCB. The log is written with
//! `Durability::Os` (a group commit without fsync) so the figure is CPU, not the disk.
//! Run: `cargo bench -p keel-experiments --bench engine`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_bandit::{PolicyConfig, PolicyState};
use keel_experiments::{Deployments, Durability, RewardIn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

const K: usize = 5;
const D: usize = 10;

fn spec(policy: serde_json::Value) -> serde_json::Value {
    let context: Vec<serde_json::Value> = (0..D)
        .map(|i| json!({"type": "numeric", "name": format!("f{i}")}))
        .collect();
    let variants: Vec<serde_json::Value> = (0..K).map(|i| json!({"name": format!("promo_{i}")})).collect();
    json!({
        "variants": variants,
        "policy": policy,
        "context": context,
        "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 3600},
        "seed": 1
    })
}

fn bare_policy(config: PolicyConfig, n: usize) -> f64 {
    let mut state = PolicyState::new(config, K, D).expect("policy");
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let contexts: Vec<Vec<f64>> = (0..1024)
        .map(|_| (0..D).map(|_| rng.random::<f64>()).collect())
        .collect();
    let started = Instant::now();
    for i in 0..n {
        let x = &contexts[i % contexts.len()];
        let d = state.decide(Some(x), &mut rng).expect("decide");
        let r = if rng.random::<f64>() < 0.03 { 1.0 } else { 0.0 };
        state.update(d.action, Some(x), r).expect("update");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn engine(policy: serde_json::Value, n: usize) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tmp");
        let store = keel_store::Store::open("sqlite::memory:").await.expect("store");
        let exps = Deployments::open(store, dir.path().to_path_buf(), Durability::Os)
            .await
            .expect("open");
        exps.apply("bench", &spec(policy), "bench", None).await.expect("apply");
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let contexts: Vec<serde_json::Map<String, serde_json::Value>> = (0..1024)
            .map(|_| (0..D).map(|i| (format!("f{i}"), json!(rng.random::<f64>()))).collect())
            .collect();
        let contexts = Arc::new(contexts);
        let started = Instant::now();
        // 64 concurrent callers on one thread: group commit amortises the log writes.
        let per = n / 64;
        let mut tasks = Vec::new();
        for t in 0..64 {
            let (exps, contexts) = (exps.clone(), contexts.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = ChaCha8Rng::seed_from_u64(t);
                for i in 0..per {
                    let ctx = &contexts[(t as usize * 31 + i) % contexts.len()];
                    let d = exps.decide("bench", None, Some(ctx)).await.expect("decide");
                    let r = if rng.random::<f64>() < 0.03 { 1.0 } else { 0.0 };
                    exps.feedback(
                        "bench",
                        &[RewardIn {
                            decision_id: d.decision_id,
                            reward: r,
                        }],
                    )
                    .await
                    .expect("feedback");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let rate = (per * 64) as f64 / started.elapsed().as_secs_f64();
        exps.close();
        rate
    })
}

fn main() {
    let n = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000usize);
    println!("decision + feedback per second, K={K}, d={D}, one thread, {n} pairs");
    println!(
        "{:<12} {:>16} {:>16} {:>8}",
        "policy", "bare policy", "keel engine", "ratio"
    );
    for (name, config, json) in [
        (
            "square_cb",
            PolicyConfig::SquareCb {
                gamma: 400.0,
                floor: 0.01,
                half_life: None,
            },
            json!({"type": "square_cb", "gamma": 400.0, "floor": 0.01}),
        ),
        (
            "lin_ucb",
            PolicyConfig::LinUcb {
                alpha: 0.5,
                floor: 0.01,
                half_life: None,
                shared: false,
            },
            json!({"type": "lin_ucb", "alpha": 0.5, "floor": 0.01}),
        ),
    ] {
        let bare = bare_policy(config, n);
        let full = engine(json, n);
        println!("{name:<12} {bare:>16.0} {full:>16.0} {:>8.2}", full / bare);
    }
    std::thread::sleep(Duration::from_millis(10));
}
