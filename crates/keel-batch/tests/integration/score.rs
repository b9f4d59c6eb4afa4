//! `keel_batch::score` on a real lake, catalog and registry with the breast-cancer fixture
//! model: outputs equal onnxruntime's (fixtures/models/expected.json), keys kept, chunks on all
//! cores, one commit, idempotent re-runs, lineage, and bad columns refused before any write.

use std::path::PathBuf;
use std::sync::Arc;

use keel_batch::{BatchError, ScoreJob, score};
use keel_catalog::Catalog;
use keel_data::{Caller, Workspace};
use keel_lake::arrow::array::{Array, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use keel_lake::arrow::datatypes::{DataType, Field, Schema};
use keel_lake::{Lake, WriteMode};
use keel_registry::{PushRequest, Registry};
use keel_store::Store;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

struct Fixture {
    ws: Workspace,
    registry: Registry,
    caller: Caller,
    expected: serde_json::Value,
    _dir: tempfile::TempDir,
}

/// `rows` customers cycling through the fixture's 8 rows, features as FP64 columns
/// `input_0..input_29` (the model takes FP32: the job casts).
async fn fixture(rows: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&format!("sqlite://{}", dir.path().join("keel.db").display()))
        .await
        .expect("store");
    let registry =
        Registry::open(store.clone(), &dir.path().join("artifacts").display().to_string()).expect("registry");
    let bytes = std::fs::read(fixtures().join("bc-lr.onnx")).expect("fixture");
    registry
        .push(
            PushRequest {
                name: "bc-lr".into(),
                author: "ana".into(),
                ..Default::default()
            },
            bytes.into(),
        )
        .await
        .expect("push");
    let lake = Lake::open(&dir.path().join("lake")).expect("lake");
    let ws = Workspace::new(Catalog::new(store), lake);
    let caller = ws.cli_caller("ana").await.expect("the first principal is the admin");
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).expect("expected")).expect("json");
    let fixture_rows: Vec<Vec<f64>> =
        serde_json::from_value(expected["models"]["bc-lr"]["rows"].clone()).expect("rows");
    let mut fields = vec![Field::new("customer_id", DataType::Utf8, false)];
    let mut columns: Vec<Arc<dyn Array>> = vec![Arc::new(StringArray::from(
        (0..rows).map(|i| format!("c{i}")).collect::<Vec<_>>(),
    ))];
    // Column j gathers feature j of every row: the index is the point.
    #[allow(clippy::needless_range_loop)]
    for j in 0..30 {
        fields.push(Field::new(format!("input_{j}"), DataType::Float64, false));
        columns.push(Arc::new(Float64Array::from(
            (0..rows)
                .map(|i| fixture_rows[i % fixture_rows.len()][j])
                .collect::<Vec<_>>(),
        )));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch");
    let pass = ws
        .check_create(&caller, "customers", None, serde_json::json!({}))
        .await
        .expect("pass");
    let version = ws.write(&pass, vec![batch], WriteMode::Append).await.expect("write");
    ws.record_commit(&pass, version, false, serde_json::json!({}))
        .await
        .expect("record");
    Fixture {
        ws,
        registry,
        caller,
        expected,
        _dir: dir,
    }
}

/// A text column as read back from the lake (which may hand out any string layout).
fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let column = batch.column_by_name(name).unwrap_or_else(|| panic!("column {name}"));
    let utf8 = keel_lake::arrow::compute::cast(column, &DataType::Utf8).expect("cast to utf8");
    let utf8 = utf8.as_any().downcast_ref::<StringArray>().expect("utf8");
    (0..utf8.len()).map(|i| utf8.value(i).to_owned()).collect()
}

fn job(into: &str) -> ScoreJob {
    ScoreJob {
        model: "bc-lr".into(),
        from: "customers".into(),
        into: into.into(),
        keep: vec!["customer_id".into()],
        features: Vec::new(),
        run_id: None,
        batch_rows: 64,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_is_scored_once_with_onnxruntimes_answers_and_its_lineage() {
    let f = fixture(1_000).await;
    let heard = std::sync::Mutex::new(Vec::new());
    let report = score(&f.ws, &f.registry, &f.caller, &job("scores"), &|done| {
        heard.lock().expect("lock").push(done);
    })
    .await
    .expect("scored");
    assert_eq!(report.rows, 1_000);
    assert_eq!(report.run_id, "bc-lr-v1-customers-v0");
    assert!(!report.already_done);
    let heard = heard.into_inner().expect("lock");
    assert_eq!(heard.len(), 16, "1,000 rows in chunks of 64");
    assert_eq!(heard.last(), Some(&1_000));

    let out = f.ws.lake().scan("scores", None).await.expect("scan");
    let rows: usize = out.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 1_000);
    assert_eq!(
        f.ws.lake().history("scores").await.expect("history").len(),
        1,
        "one commit for the whole run"
    );
    let outputs = &f.expected["models"]["bc-lr"]["outputs"];
    let labels: Vec<i64> = serde_json::from_value(outputs["label"]["data"].clone()).expect("labels");
    let probabilities: Vec<f32> =
        serde_json::from_value(outputs["probabilities"]["data"].clone()).expect("probabilities");
    let mut checked = 0;
    for batch in &out {
        let id = strings(batch, "customer_id");
        let label = batch
            .column_by_name("label")
            .expect("label")
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64");
        let p1 = batch
            .column_by_name("probabilities_1")
            .expect("probabilities_1")
            .as_any()
            .downcast_ref::<Float32Array>()
            .expect("fp32");
        let run = strings(batch, "run_id");
        for r in 0..batch.num_rows() {
            let i: usize = id[r][1..].parse().expect("customer number");
            assert_eq!(label.value(r), labels[i % 8], "customer {i}");
            assert!(
                (p1.value(r) - probabilities[(i % 8) * 2 + 1]).abs() < 1e-5,
                "customer {i}"
            );
            assert_eq!(run[r], report.run_id);
            checked += 1;
        }
    }
    assert_eq!(checked, 1_000);

    let (up, down) = f.ws.catalog().store().lineage("model/bc-lr/1").await.expect("lineage");
    assert_eq!(
        up.iter().map(|e| e.source.as_str()).collect::<Vec<_>>(),
        vec!["table/customers@v0"]
    );
    assert_eq!(
        down.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
        vec!["table/scores@v0"]
    );

    // The same model version over the same table version again: nothing scored or written.
    let again = score(&f.ws, &f.registry, &f.caller, &job("scores"), &|_| {})
        .await
        .expect("again");
    assert!(again.already_done);
    assert_eq!((again.rows, again.output_version), (1_000, Some(0)));
    assert_eq!(f.ws.lake().history("scores").await.expect("history").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_columns_are_refused_before_anything_is_written() {
    let f = fixture(10).await;
    let mut wrong = job("never");
    wrong.features = vec!["input_0".into(), "input_1".into()];
    let err = score(&f.ws, &f.registry, &f.caller, &wrong, &|_| {})
        .await
        .expect_err("2 of 30");
    assert!(matches!(err, BatchError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("30 values per row"), "{err}");
    let mut missing = job("never");
    missing.keep = vec!["email".into()];
    let err = score(&f.ws, &f.registry, &f.caller, &missing, &|_| {})
        .await
        .expect_err("no email");
    assert!(err.to_string().contains("\"email\""), "{err}");
    let mut bad_run = job("never");
    bad_run.run_id = Some("x'; DROP".into());
    let err = score(&f.ws, &f.registry, &f.caller, &bad_run, &|_| {})
        .await
        .expect_err("bad id");
    assert_eq!(err.kind(), keel_types::ErrorKind::InvalidArgument);
    assert!(!f.ws.lake().exists("never").await.expect("exists"), "nothing written");
    let mut unknown = job("never");
    unknown.model = "nope".into();
    let err = score(&f.ws, &f.registry, &f.caller, &unknown, &|_| {})
        .await
        .expect_err("no model");
    assert_eq!(err.kind(), keel_types::ErrorKind::NotFound, "{err}");
}
