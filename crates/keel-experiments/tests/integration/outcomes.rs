//! A deployment's outcomes table over a real lake folder and catalog.
#![cfg(feature = "lake")]

use std::sync::Arc;

use keel_catalog::Catalog;
use keel_data::Workspace;
use keel_experiments::offline::outcomes;
use keel_lake::Lake;
use keel_lake::arrow::array::TimestampMicrosecondArray;
use keel_lake::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use keel_store::Store;

const DEPLOYMENT: &str = "email-promos-contextual";

fn decisions() -> RecordBatch {
    let n = 120usize;
    let deployment = |i: usize| if i < 100 { DEPLOYMENT } else { "other" };
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "ts",
            Arc::new(
                TimestampMicrosecondArray::from(
                    (0..n)
                        .map(|i| 1_700_000_000_000_000 + i as i64 * 60_000_000)
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
        ),
        (
            "decision_id",
            Arc::new(StringArray::from((0..n).map(|i| format!("d{i}")).collect::<Vec<_>>())),
        ),
        (
            "deployment",
            Arc::new(StringArray::from((0..n).map(deployment).collect::<Vec<_>>())),
        ),
        (
            "variant",
            Arc::new(StringArray::from(
                (0..n).map(|i| format!("promo-{}", i % 5)).collect::<Vec<_>>(),
            )),
        ),
        ("propensity", Arc::new(Float64Array::from(vec![0.2; n]))),
        ("policy_version", Arc::new(Int64Array::from(vec![1; n]))),
        (
            "control",
            Arc::new(BooleanArray::from((0..n).map(|i| i % 10 == 0).collect::<Vec<_>>())),
        ),
    ];
    RecordBatch::try_from_iter(cols).expect("decisions")
}

fn feedback() -> RecordBatch {
    let ids: Vec<String> = (0..120).filter(|i| i % 3 == 0).map(|i| format!("d{i}")).collect();
    let n = ids.len();
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("decision_id", Arc::new(StringArray::from(ids))),
        ("reward", Arc::new(Float64Array::from(vec![1.0; n]))),
    ];
    RecordBatch::try_from_iter(cols).expect("feedback")
}

#[tokio::test]
async fn outcomes_join_decisions_with_rewards_catalogue_and_assess() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open("sqlite::memory:").await.expect("store");
    let lake = Lake::open(&dir.path().join("lake")).expect("lake");
    let ws = Workspace::new(Catalog::new(store), lake.clone());
    let caller = ws.cli_caller("ana").await.expect("caller");

    let none = outcomes::build(&ws, &caller, DEPLOYMENT, "email_outcomes")
        .await
        .expect("build");
    assert!(none.is_none(), "no logged tables: nothing to build");

    lake.append("decisions", vec![decisions()], &[])
        .await
        .expect("decisions");
    lake.append("feedback", vec![feedback()], &[]).await.expect("feedback");
    let bad = outcomes::build(&ws, &caller, "x' OR '1'='1", "email_outcomes").await;
    assert_eq!(
        bad.expect_err("invalid name").kind(),
        keel_types::ErrorKind::InvalidArgument
    );

    let o = outcomes::build(&ws, &caller, DEPLOYMENT, "email_outcomes")
        .await
        .expect("build")
        .expect("outcomes");
    assert_eq!((o.table.as_str(), o.rows), ("email_outcomes", 100));
    let lift = keel_lake::pretty(&o.lift).expect("pretty");
    assert!(
        lift.contains("| false   | 90 ") && lift.contains("| true    | 10 "),
        "{lift}"
    );
    assert!(!o.assessment.reasons.is_empty() || format!("{:?}", o.assessment.verdict) == "Ready");
    let entry = ws
        .catalog()
        .store()
        .table_entry("email_outcomes")
        .await
        .expect("entry")
        .expect("catalogued");
    assert_eq!(
        entry.description.as_deref(),
        Some("e-mail campaign: promotion chosen, control group, conversion")
    );

    let again = outcomes::build(&ws, &caller, DEPLOYMENT, "email_outcomes")
        .await
        .expect("rebuild")
        .expect("outcomes");
    assert_eq!(again.rows, 100, "a rerun overwrites, it does not append");
    assert_eq!(again.version, o.version + 1);
    let rows = lake
        .sql_on("SELECT count(*) AS n FROM email_outcomes", &["email_outcomes".into()])
        .await
        .expect("sql");
    assert!(keel_lake::pretty(&rows).expect("pretty").contains("| 100 |"));
}
