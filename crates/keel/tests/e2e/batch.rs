//! `keel batch score` from the command line: a CSV ingested as a lake table, scored with a
//! registered model into another table (the outputs equal onnxruntime's), and a re-run that
//! writes nothing.

use serde_json::Value;

use crate::support::{Keel, repo_file};

#[test]
fn a_table_is_scored_into_another_and_a_rerun_writes_nothing() {
    let keel = Keel::quiet();
    keel.json(&[
        "model",
        "push",
        "bc",
        &repo_file("fixtures/models/bc-lr.onnx"),
        "--alias",
        "production",
    ]);
    let expected: Value =
        serde_json::from_slice(&std::fs::read(repo_file("fixtures/models/expected.json")).expect("read"))
            .expect("json");
    let rows: Vec<Vec<f64>> = serde_json::from_value(expected["models"]["bc-lr"]["rows"].clone()).expect("rows");
    let mut csv = String::from("customer_id");
    for j in 0..30 {
        csv.push_str(&format!(",input_{j}"));
    }
    csv.push('\n');
    for (i, row) in rows.iter().enumerate() {
        csv.push_str(&format!("c{i}"));
        for v in row {
            csv.push_str(&format!(",{v}"));
        }
        csv.push('\n');
    }
    let file = keel.file("customers.csv", csv);
    keel.json(&["data", "ingest", &file, "--table", "customers"]);

    let args = [
        "batch",
        "score",
        "bc",
        "--from",
        "customers",
        "--into",
        "promo_scores",
        "--keep",
        "customer_id",
    ];
    let report = keel.json(&args);
    assert_eq!(report["rows"], 8, "{report}");
    assert_eq!(report["already_done"], false);
    assert_eq!(report["model_version"], 1);
    let out = keel.json(&[
        "data",
        "sql",
        "SELECT customer_id, label FROM promo_scores ORDER BY customer_id",
    ]);
    let labels: Vec<i64> =
        serde_json::from_value(expected["models"]["bc-lr"]["outputs"]["label"]["data"].clone()).expect("labels");
    let got: Vec<(String, i64)> = out
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["customer_id"].as_str().expect("id").to_owned(),
                r["label"].as_i64().expect("label"),
            )
        })
        .collect();
    let want: Vec<(String, i64)> = (0..8).map(|i| (format!("c{i}"), labels[i])).collect();
    assert_eq!(got, want, "onnxruntime's labels, by customer");

    let again = keel.json(&args);
    assert_eq!(again["already_done"], true, "{again}");
    assert_eq!(again["output_version"], report["output_version"]);
    let lineage = keel.json(&["data", "lineage", "table/promo_scores"]);
    assert!(lineage.to_string().contains("model/bc/1"), "{lineage}");
}
