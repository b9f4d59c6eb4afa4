//! Memory per decision waiting for a reward, in steady state: resident memory of this process
//! before and after 1,000,000 decisions inside their attribution window (LinUCB, 5 numeric
//! features: the context is kept until the reward comes), after their rewards arrive (the
//! context is dropped), and after their windows close (the memory is given back). The anchor
//! is the same process before any decision.
//!
//! Run: `cargo bench -p keel-experiments --bench waiting -- [DECISIONS]`.

use std::time::Duration;

use keel_experiments::{Deployments, Durability, RewardIn, UnitContext};
use serde_json::{Value, json};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tmp");
        let store = keel_store::Store::open("sqlite::memory:").await.expect("store");
        let exps = Deployments::open(store, dir.path().to_path_buf(), Durability::Os)
            .await
            .expect("open");
        let context: Vec<Value> = (0..5)
            .map(|i| json!({"type": "numeric", "name": format!("f{i}")}))
            .collect();
        let spec = json!({
            "variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}, {"name": "e"}],
            "policy": {"type": "lin_ucb", "alpha": 0.3},
            "context": context,
            "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 4},
            "seed": 1
        });
        exps.apply("promo", &spec, "bench", None).await.expect("apply");
        // The ids the bench keeps to send rewards later: 16 bytes each, allocated and touched
        // before the baseline so they are not counted as the engine's.
        let mut ids: Vec<u128> = vec![1; n];
        ids.clear();
        let before = rss_kib();
        let started = std::time::Instant::now();
        for chunk in 0..n.div_ceil(20_000) {
            let m = 20_000.min(n - chunk * 20_000);
            let units: Vec<String> = (0..m).map(|i| format!("c{}", chunk * 20_000 + i)).collect();
            let ctx: Vec<serde_json::Map<String, Value>> = (0..m)
                .map(|i| {
                    (0..5)
                        .map(|j| (format!("f{j}"), json!(((i * 7 + j) % 11) as f64 / 11.0)))
                        .collect()
                })
                .collect();
            let rows: Vec<UnitContext<'_>> = units
                .iter()
                .zip(&ctx)
                .map(|(u, c)| UnitContext {
                    unit: u,
                    context: Some(c),
                })
                .collect();
            for d in exps.decide_many("promo", &rows, None).await.expect("decide") {
                let id = uuid::Uuid::parse_str(&d.expect("decided").decision_id).expect("uuid");
                ids.push(id.as_u128());
            }
        }
        let decided_in = started.elapsed();
        let waiting = rss_kib();
        for chunk in ids.chunks(20_000) {
            let rewards: Vec<RewardIn> = chunk
                .iter()
                .map(|id| RewardIn {
                    decision_id: uuid::Uuid::from_u128(*id).to_string(),
                    reward: 0.0,
                })
                .collect();
            exps.feedback("promo", &rewards).await.expect("feedback");
        }
        let rewarded = rss_kib();
        tokio::time::sleep(Duration::from_secs(5)).await;
        exps.close_windows().await.expect("close");
        let closed = rss_kib();
        let per = |kib: u64| (kib.saturating_sub(before) as f64 * 1024.0) / n as f64;
        println!(
            "{}",
            json!({
                "decisions": n,
                "decided_per_s": n as f64 / decided_in.as_secs_f64(),
                "rss_mib_before": before as f64 / 1024.0,
                "bytes_per_waiting_decision": per(waiting),
                "bytes_per_rewarded_decision_in_window": per(rewarded),
                "bytes_per_decision_after_windows_closed": per(closed),
            })
        );
        exps.close();
    });
}
