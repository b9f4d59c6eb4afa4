//! Metrics other than the decision metric on a PostgreSQL store (127.0.0.1:5432 or
//! `KEEL_TEST_POSTGRES_URL`), served by two replicas: each (decision, metric) value counts once
//! whichever replica receives it, another value is refused on either, values racing on both
//! replicas count exactly once, every replica (and a restart) reports the same metric figures,
//! and `deployment_metrics` holds exactly the values of the logged events.

use keel_experiments::{DeploymentError, Deployments, FeedbackIn};
use serde_json::{Value, json};

use crate::pg_support::{Database, replica};

fn spec() -> Value {
    json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "reward": {"name": "revenue", "kind": "continuous", "min": 0, "max": 100, "default": null, "window_seconds": 3600},
        "metrics": [
            {"name": "unsubscribe", "kind": "binary", "guardrail": {"better": "lower", "max_loss": 0.5}},
            {"name": "basket", "kind": "continuous", "min": 0, "max": 500}
        ]
    })
}

fn item(decision_id: &str, reward: Option<f64>, metrics: &[(&str, f64)]) -> FeedbackIn {
    FeedbackIn {
        decision_id: decision_id.to_string(),
        reward,
        metrics: metrics.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
    }
}

/// Per metric: the number of values and their sum over the variants, as the report gives them.
fn metric_figures(exps: &Deployments) -> Vec<(String, u64, f64)> {
    let report = serde_json::to_value(exps.report("promo").expect("report")).expect("json");
    report["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .map(|m| {
            let rows = m["variants"].as_array().expect("rows");
            let n: u64 = rows.iter().map(|r| r["n"].as_u64().expect("n")).sum();
            let sum: f64 = rows
                .iter()
                .map(|r| r["mean"].as_f64().unwrap_or(0.0) * r["n"].as_f64().expect("n"))
                .sum();
            (
                m["name"].as_str().expect("name").to_string(),
                n,
                (sum * 1e6).round() / 1e6,
            )
        })
        .collect()
}

/// Both replicas' metric figures once they agree (each polls the other's events).
async fn converged(a: &Deployments, b: &Deployments) -> Vec<(String, u64, f64)> {
    for _ in 0..200 {
        let (fa, fb) = (metric_figures(a), metric_figures(b));
        if fa == fb {
            return fa;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!(
        "replicas did not converge: {:?} vs {:?}",
        metric_figures(a),
        metric_figures(b)
    );
}

async fn table_rows(db: &Database) -> Vec<(String, String, f64)> {
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    sqlx::query_as("SELECT decision_id::text, metric, value FROM deployment_metrics ORDER BY 1, 2")
        .fetch_all(&pool)
        .await
        .expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_once_across_replicas_and_survive_a_restart() {
    let db = Database::new("metrics").await;
    let tmp = tempfile::tempdir().expect("dir");
    let a = replica(&db, &tmp.path().join("a")).await;
    a.apply("promo", &spec(), "ana", None).await.expect("apply");
    let b = replica(&db, &tmp.path().join("b")).await;

    // Decided on a, measured on b (which has not applied the decision yet: it catches up).
    let d = a.decide("promo", Some("u1"), None).await.expect("decide");
    let id = d.decision_id.as_str();
    let r = b
        .feedback_items("promo", &[item(id, Some(12.0), &[("unsubscribe", 1.0)])])
        .await
        .expect("feedback");
    assert!(r[0].as_ref().expect("counted").counted, "{:?}", r[0]);

    // The same values again, on either replica: counted once. A new metric with a known one:
    // counted (the new value only).
    let again = a
        .feedback_items("promo", &[item(id, Some(12.0), &[("unsubscribe", 1.0)])])
        .await
        .expect("again");
    assert!(!again[0].as_ref().expect("duplicate").counted, "{:?}", again[0]);
    let more = a
        .feedback_items("promo", &[item(id, None, &[("unsubscribe", 1.0), ("basket", 40.0)])])
        .await
        .expect("more");
    assert!(more[0].as_ref().expect("new basket").counted, "{:?}", more[0]);

    // Another value of a metric the decision has: refused on either replica, nothing recorded.
    for exps in [&a, &b] {
        let r = exps
            .feedback_items("promo", &[item(id, None, &[("unsubscribe", 0.0)])])
            .await
            .expect("feedback");
        match &r[0] {
            Err(e @ DeploymentError::ConflictingMetric { metric, existing, .. }) => {
                assert_eq!((metric.as_str(), *existing), ("unsubscribe", 1.0));
                assert_eq!(e.code(), "conflicting_metric");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    // Both replicas measure the same fresh decision at once with different values: exactly
    // one counts, the other is refused, and the table keeps the one that counted.
    let race = a.decide("promo", Some("race"), None).await.expect("decide");
    let rid = race.decision_id.as_str();
    let (ten, twenty) = (
        [item(rid, None, &[("basket", 10.0)])],
        [item(rid, None, &[("basket", 20.0)])],
    );
    let (ra, rb) = tokio::join!(a.feedback_items("promo", &ten), b.feedback_items("promo", &twenty));
    let (ra, rb) = (ra.expect("a").remove(0), rb.expect("b").remove(0));
    let counted: Vec<f64> = [(&ra, 10.0), (&rb, 20.0)]
        .iter()
        .filter(|(r, _)| matches!(r, Ok(o) if o.counted))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(counted.len(), 1, "{ra:?} {rb:?}");
    assert_eq!(
        [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Err(DeploymentError::ConflictingMetric { .. })))
            .count(),
        1,
        "{ra:?} {rb:?}"
    );

    let figures = converged(&a, &b).await;
    let basket = figures.iter().find(|f| f.0 == "basket").expect("basket");
    let unsub = figures.iter().find(|f| f.0 == "unsubscribe").expect("unsubscribe");
    assert_eq!((unsub.1, unsub.2), (1, 1.0), "{figures:?}");
    assert_eq!((basket.1, basket.2), (2, 40.0 + counted[0]), "{figures:?}");
    let rows = table_rows(&db).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.contains(&(rid.to_string(), "basket".into(), counted[0])),
        "{rows:?}"
    );

    // A replica started afresh (no snapshot) replays the Metrics events to the same figures.
    a.close();
    let c = replica(&db, &tmp.path().join("c")).await;
    assert_eq!(converged(&c, &b).await, figures);
    b.close();
    c.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_metric_item_leaves_nothing_in_the_table_and_bad_values_are_refused_before_logging() {
    let db = Database::new("metrics_refused").await;
    let tmp = tempfile::tempdir().expect("dir");
    let a = replica(&db, &tmp.path().join("a")).await;
    a.apply("promo", &spec(), "ana", None).await.expect("apply");
    let d = a.decide("promo", Some("u1"), None).await.expect("decide");
    let id = d.decision_id.as_str();
    let first = a
        .feedback_items("promo", &[item(id, None, &[("basket", 5.0)])])
        .await
        .expect("first");
    assert!(first[0].as_ref().expect("counted").counted);
    // One item with a new value and a conflicting one: refused whole (checked on this
    // replica's state before anything is staged).
    let mixed = a
        .feedback_items("promo", &[item(id, None, &[("basket", 6.0), ("unsubscribe", 0.0)])])
        .await
        .expect("mixed");
    assert!(
        matches!(mixed[0], Err(DeploymentError::ConflictingMetric { .. })),
        "{:?}",
        mixed[0]
    );
    // Unknown metric, value out of range: the same clear refusals as on a file store.
    let bad = a
        .feedback_items(
            "promo",
            &[
                item(id, None, &[("clicks", 1.0)]),
                item(id, None, &[("unsubscribe", 3.0)]),
            ],
        )
        .await
        .expect("bad");
    let unknown = bad[0].as_ref().expect_err("unknown").to_string();
    assert!(unknown.contains("'clicks' is not a metric"), "{unknown}");
    assert!(bad[1].is_err(), "{:?}", bad[1]);
    assert_eq!(
        table_rows(&db).await,
        vec![(id.to_string(), "basket".to_string(), 5.0)],
        "only the value that counted"
    );
    let figures = metric_figures(&a);
    assert_eq!(figures.iter().find(|f| f.0 == "unsubscribe").map(|f| f.1), Some(0));
    a.close();
}
