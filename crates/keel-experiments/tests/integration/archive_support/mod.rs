//! What the archive tests share (files and PostgreSQL): the deployment, its traffic, the clock
//! and the lake table's rows.
// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use keel_experiments::archive::TABLE;
use keel_experiments::{Deployments, RewardIn, UnitContext};
use keel_lake::Lake;
use serde_json::json;

pub const HOUR_MS: i64 = 3_600_000;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Deployment `promo`: three promotions, a one-hour window.
pub fn spec() -> serde_json::Value {
    json!({
        "variants": [{"name": "dessert"}, {"name": "voucher"}, {"name": "plain"}],
        "policy": {"type": "epsilon_greedy", "epsilon": 0.2},
        "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 3600},
        "seed": 11
    })
}

/// `n` decisions of `promo` from unit `from` on (in region north or south, when `regions`), a
/// conversion for every third, each reward counted.
pub async fn traffic(exps: &Deployments, from: usize, n: usize, regions: bool) {
    let units: Vec<String> = (from..from + n).map(|i| format!("u{i}")).collect();
    let contexts: Vec<serde_json::Map<String, serde_json::Value>> = ["north", "south"]
        .iter()
        .map(|r| json!({"region": r}).as_object().cloned().expect("object"))
        .collect();
    let rows: Vec<UnitContext<'_>> = units
        .iter()
        .enumerate()
        .map(|(i, u)| UnitContext {
            unit: u,
            context: regions.then(|| &contexts[i % 2]),
        })
        .collect();
    let decided = exps.decide_many("promo", &rows, None).await.expect("decide");
    let rewards: Vec<RewardIn> = decided
        .into_iter()
        .enumerate()
        .map(|(i, d)| RewardIn {
            decision_id: d.expect("decided").decision_id,
            reward: f64::from((from + i).is_multiple_of(3)),
        })
        .collect();
    for r in exps.feedback("promo", &rewards).await.expect("feedback") {
        assert!(r.expect("counted").counted);
    }
}

/// Rows of `promo` in the lake's archive table.
pub async fn lake_rows(lake: &Lake) -> u64 {
    let batches = lake
        .sql(&format!("SELECT seq FROM {TABLE} WHERE deployment = 'promo'"))
        .await
        .expect("sql");
    batches.iter().map(|b| b.num_rows() as u64).sum()
}
