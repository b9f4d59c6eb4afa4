//! Metrics other than the decision metric on a PostgreSQL store (127.0.0.1:5432 or
//! `KEEL_TEST_POSTGRES_URL`): refused with a clear error, since replicas cannot yet keep them
//! exactly once, while rewards go on as before; nothing of a refused item is recorded.

use keel_experiments::FeedbackIn;
use serde_json::json;

mod pg_support;
use pg_support::{Database, replica};

#[tokio::test]
async fn metrics_are_refused_on_postgresql_and_rewards_still_count() {
    let db = Database::new("metrics").await;
    let dir = tempfile::tempdir().expect("dir");
    let exps = replica(&db, dir.path()).await;
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "reward": {"name": "revenue", "kind": "continuous", "min": 0, "max": 100, "default": null, "window_seconds": 3600},
        "metrics": [{"name": "unsubscribe", "kind": "binary", "guardrail": {"better": "lower", "max_loss": 0.01}}]
    });
    exps.apply("promo", &spec, "ana", None).await.expect("apply");
    let d = exps.decide("promo", Some("u1"), None).await.expect("decide");
    let with_metric = FeedbackIn {
        decision_id: d.decision_id.clone(),
        reward: Some(12.0),
        metrics: [("unsubscribe".to_string(), 1.0)].into(),
    };
    let reward_only = FeedbackIn {
        decision_id: d.decision_id.clone(),
        reward: None,
        metrics: [("revenue".to_string(), 12.0)].into(),
    };
    let results = exps
        .feedback_items("promo", &[with_metric, reward_only.clone()])
        .await
        .expect("feedback");
    let err = results[0].as_ref().expect_err("refused");
    assert_eq!(err.code(), "metrics_not_replicated");
    assert!(
        err.to_string().contains("PostgreSQL") && err.to_string().contains("unsubscribe"),
        "{err}"
    );
    assert!(results[1].as_ref().expect("the reward alone").counted);
    let again = exps.feedback_items("promo", &[reward_only]).await.expect("feedback");
    assert!(!again[0].as_ref().expect("duplicate").counted);
    let report = serde_json::to_value(exps.report("promo").expect("report")).expect("json");
    let row = report["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .find(|v| v["name"] == d.variant.as_str())
        .cloned()
        .expect("row");
    assert_eq!(row["rewards"], 1, "{row}");
    assert_eq!(report["metrics"][0]["name"], "unsubscribe");
    let unsub_rows = report["metrics"][0]["variants"].as_array().expect("rows");
    assert!(
        unsub_rows.iter().all(|r| r["n"] == 0),
        "nothing of the refused item: {unsub_rows:?}"
    );
    exps.close();
}
