//! `keel_batch::decide` against the online decide: the same deployment (same spec, seed and
//! learned state) deciding the same rows in the same order, once as a batch run in small chunks
//! (so the chunks' reused buffers and context maps serve many chunks) and once row by row through
//! `Deployments::decide` with each row's context built as a client would send it, logs the same
//! decision for every unit (variant, propensity, policy version, control group, the encoded
//! context and the policy's distribution), refuses the same rows, and the output table holds
//! exactly the run's logged decisions.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use keel_batch::{Control, DecideJob, decide};
use keel_catalog::Catalog;
use keel_data::{Caller, Workspace};
use keel_experiments::{Deployments, Event, LogOptions, RewardIn};
use keel_lake::arrow::array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use keel_lake::arrow::compute::cast;
use keel_lake::arrow::datatypes::{DataType, Field, Schema};
use keel_lake::{Lake, WriteMode};
use keel_store::Store;
use serde_json::{Map, Value, json};

fn spec() -> Value {
    json!({
        "variants": [{"name": "none"}, {"name": "discount"}, {"name": "free_dessert"}, {"name": "double_points"}],
        "policy": {"type": "lin_ucb", "alpha": 1.0, "floor": 0.05},
        "context": [
            {"name": "age", "type": "numeric"},
            {"name": "spend", "type": "numeric"},
            {"name": "segment", "type": "categorical", "levels": ["new", "loyal", "lapsed"]}
        ],
        "control": {"variant": "none", "share": 0.1},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 604800},
        "seed": 3
    })
}

const SEGMENTS: [&str; 3] = ["new", "loyal", "lapsed"];

/// One input row: unit, age, spend, segment (`None`: null).
type Input = (Option<String>, Option<i64>, Option<f64>, Option<String>);

/// Rows with every kind of value a row can have: repeated units, a null unit, null features, a
/// non-finite number, an unknown level.
fn inputs(n: usize) -> Vec<Input> {
    (0..n)
        .map(|i| {
            let unit = match i {
                _ if i % 29 == 5 => None,
                _ if i % 13 == 7 => Some(format!("c{}", i - 7)),
                _ => Some(format!("c{i}")),
            };
            let age = (i % 17 != 3).then_some(18 + (i * 7 % 60) as i64);
            let spend = match i % 19 {
                4 => None,
                9 => Some(f64::NAN),
                _ => Some((i * 37 % 200) as f64 + 0.25),
            };
            let segment = match i % 23 {
                6 => None,
                11 => Some("vip".to_string()),
                _ => Some(SEGMENTS[i % 3].to_string()),
            };
            (unit, age, spend, segment)
        })
        .collect()
}

/// The row's context as a client would send it (a null left out, a NaN as JSON null).
fn context(row: &Input) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(age) = row.1 {
        m.insert("age".into(), json!(age as f64));
    }
    if let Some(spend) = row.2 {
        m.insert(
            "spend".into(),
            serde_json::Number::from_f64(spend).map_or(Value::Null, Value::Number),
        );
    }
    if let Some(segment) = &row.3 {
        m.insert("segment".into(), json!(segment));
    }
    m
}

async fn store(dir: &Path) -> Store {
    Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store")
}

/// A deployment with some learning behind it (so the encoded context moves the policy's
/// distribution), identical in every directory it is built in.
async fn deployments(dir: &Path, store: Store) -> Arc<Deployments> {
    let exps = Deployments::open(store, dir.join("experiments"), LogOptions::default())
        .await
        .expect("open");
    exps.apply("promo", &spec(), "ana", None).await.expect("apply");
    for i in 0..200usize {
        let row: Input = (
            None,
            Some(18 + (i * 11 % 60) as i64),
            Some((i * 53 % 200) as f64),
            Some(SEGMENTS[i % 3].to_string()),
        );
        let d = exps
            .decide("promo", Some(&format!("t{i}")), Some(&context(&row)))
            .await
            .expect("decide");
        let reward = if (d.variant == "discount") == (i % 3 == 1) {
            1.0
        } else {
            0.0
        };
        let done = exps
            .feedback(
                "promo",
                &[RewardIn {
                    decision_id: d.decision_id,
                    reward,
                }],
            )
            .await
            .expect("feedback");
        assert!(done[0].as_ref().expect("counted").counted);
    }
    exps
}

/// The decisions logged for units in the folder of deployment `promo`: unit -> (variant,
/// propensity, policy version, held back, encoded context, distribution), and the decision ids.
type Logged = (Option<usize>, f64, u64, bool, Vec<f64>, Vec<f64>);

fn logged(dir: &Path, prefix: &str) -> (BTreeMap<String, Logged>, BTreeMap<String, String>) {
    let folder = dir.join("experiments/promo");
    let mut files: Vec<_> = std::fs::read_dir(folder.join("segments"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.push(folder.join("events.jsonl"));
    let text: String = files.iter().map(|f| std::fs::read_to_string(f).expect("log")).collect();
    let mut decisions = BTreeMap::new();
    let mut ids = BTreeMap::new();
    for line in text.lines() {
        // `<seq> <xxh3> <len> <json>`
        let json = line.splitn(4, ' ').nth(3).expect("a framed record");
        if let Event::Decision {
            id,
            unit: Some(unit),
            v,
            p,
            pv,
            hold,
            x,
            probs,
            ..
        } = serde_json::from_str::<Event>(json).expect("an event")
            && unit.starts_with(prefix)
        {
            ids.insert(unit.clone(), id.to_string());
            assert!(
                decisions.insert(unit, (v, p, pv, hold, x, probs)).is_none(),
                "decided twice"
            );
        }
    }
    (decisions, ids)
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let column = cast(batch.column_by_name(name).expect("column"), &DataType::Utf8).expect("cast");
    let column = column.as_any().downcast_ref::<StringArray>().expect("utf8");
    (0..column.len())
        .map(|i| (!column.is_null(i)).then(|| column.value(i).to_owned()))
        .collect()
}

async fn table(ws: &Workspace, caller: &Caller, rows: &[Input]) {
    let fields = vec![
        Field::new("customer_id", DataType::Utf8, true),
        Field::new("age", DataType::Int64, true),
        Field::new("spend", DataType::Float64, true),
        Field::new("segment", DataType::Utf8, true),
    ];
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        vec![
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0.as_deref()))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.3.as_deref()))),
        ],
    )
    .expect("batch");
    let pass = ws
        .check_create(caller, "customers", None, json!({}))
        .await
        .expect("pass");
    let version = ws.write(&pass, vec![batch], WriteMode::Append).await.expect("write");
    ws.record_commit(&pass, version, false, json!({}))
        .await
        .expect("record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_run_decides_every_row_as_the_online_decide_would() {
    let rows = inputs(300);

    // The batch run, in chunks of 7 rows.
    let batch_dir = tempfile::tempdir().expect("dir");
    let batch_store = store(batch_dir.path()).await;
    let batch_exps = deployments(batch_dir.path(), batch_store.clone()).await;
    let ws = Workspace::new(
        Catalog::new(batch_store),
        Lake::open(&batch_dir.path().join("lake")).expect("lake"),
    );
    let caller = ws.cli_caller("ana").await.expect("admin");
    table(&ws, &caller, &rows).await;
    let job = DecideJob {
        deployment: "promo".into(),
        from: "customers".into(),
        unit_column: "customer_id".into(),
        into: "sends".into(),
        run_id: None,
        batch_rows: 7,
    };
    let report = decide(&ws, &batch_exps, &caller, &job, &Control::new())
        .await
        .expect("batch decide");
    batch_exps.shutdown(std::time::Duration::from_secs(5)).await;

    // The same rows, one online decide each.
    let online_dir = tempfile::tempdir().expect("dir");
    let online_exps = deployments(online_dir.path(), store(online_dir.path()).await).await;
    let mut seen = HashSet::new();
    let (mut decided, mut refused, mut duplicates, mut null_units) = (0, 0, 0, 0);
    for row in &rows {
        let Some(unit) = &row.0 else {
            null_units += 1;
            continue;
        };
        if !seen.insert(unit.clone()) {
            duplicates += 1;
            continue;
        }
        match online_exps.decide("promo", Some(unit), Some(&context(row))).await {
            Ok(_) => decided += 1,
            Err(e) => {
                assert!(!e.kind().is_server_fault(), "{e}");
                refused += 1;
            }
        }
    }
    online_exps.shutdown(std::time::Duration::from_secs(5)).await;

    assert_eq!(report.rows, 300);
    assert_eq!(report.decided, decided);
    assert_eq!(report.refused, refused + null_units);
    assert_eq!(report.duplicates, duplicates);
    assert!(refused > 10 && duplicates > 10 && null_units > 5 && decided > 200);
    assert_eq!(report.written, decided);

    let (batch, batch_ids) = logged(batch_dir.path(), "c");
    let (online, _) = logged(online_dir.path(), "c");
    assert_eq!(batch.len() as u64, decided);
    assert_eq!(batch, online);
    let contexts: HashSet<Vec<u64>> = batch
        .values()
        .map(|d| d.4.iter().map(|x| x.to_bits()).collect())
        .collect();
    assert!(contexts.len() > 100, "the rows' contexts differ");

    // The output: one row per logged decision of the run, as logged.
    let out = ws
        .sql(
            &caller,
            "SELECT unit, decision_id, variant, propensity, policy_version, control, no_action, run_id FROM sends",
        )
        .await
        .expect("read the output");
    let variants: Vec<String> = spec()["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["name"].as_str().expect("name").to_owned())
        .collect();
    let mut written = 0;
    for b in &out {
        let units = strings(b, "unit");
        let ids = strings(b, "decision_id");
        let chosen = strings(b, "variant");
        let runs = strings(b, "run_id");
        let p = b.column_by_name("propensity").expect("propensity");
        let p = p.as_any().downcast_ref::<Float64Array>().expect("f64");
        // Delta has no unsigned types: the lake hands the column back as signed.
        let pv = cast(b.column_by_name("policy_version").expect("pv"), &DataType::UInt64).expect("cast");
        let pv = pv.as_any().downcast_ref::<UInt64Array>().expect("u64");
        let control = b.column_by_name("control").expect("control");
        let control = control.as_any().downcast_ref::<BooleanArray>().expect("bool");
        let no_action = b.column_by_name("no_action").expect("no_action");
        let no_action = no_action.as_any().downcast_ref::<BooleanArray>().expect("bool");
        for i in 0..b.num_rows() {
            let unit = units[i].as_deref().expect("unit");
            let (v, lp, lpv, hold, _, _) = &batch[unit];
            assert_eq!(ids[i].as_ref(), Some(&batch_ids[unit]));
            assert_eq!(chosen[i], v.map(|v| variants[v].clone()));
            assert_eq!(p.value(i), *lp);
            assert_eq!(pv.value(i), *lpv);
            assert_eq!(control.value(i), *hold);
            assert!(!no_action.value(i));
            assert_eq!(runs[i].as_deref(), Some(report.run_id.as_str()));
            written += 1;
        }
    }
    assert_eq!(written, decided);
}
