//! Tests of `lake_sink`.

use super::*;
use crate::encoded::EncodedChunk;
use crate::record::{PredictionRecord, Routing};
use keel_types::{Tensor, TensorData};

fn tensor(shape: Vec<i64>, data: TensorData) -> Tensor {
    Tensor { shape, data }
}

#[test]
fn input_columns_are_named_as_the_log_names_them() {
    assert_eq!(input_columns("input", 1), vec!["input".to_string()]);
    assert_eq!(input_columns("x-y", 2), vec!["x_y_0".to_string(), "x_y_1".to_string()]);
    assert_eq!(input_columns("ts", 1), vec!["in_ts".to_string()]);
    assert!(input_columns("wide", MAX_WIDTH + 1).is_empty());
}

#[test]
fn predictions_flatten_into_columns() {
    let p = PredictionRecord {
        ts_us: 86_400_000_000 + 5,
        prediction_id: "p1".into(),
        request_id: Some("r".into()),
        model: "m".into(),
        version: 2,
        routing: Some(Routing {
            deployment: "d".into(),
            variant: "a".into(),
            decision_id: "x".into(),
            shadow: false,
        }),
        latency_us: 40,
        inputs: vec![
            (
                "float_input".into(),
                tensor(vec![2, 2], TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0])),
            ),
            ("row".into(), tensor(vec![2], TensorData::Int64(vec![7, 8]))),
        ],
        outputs: vec![
            ("label".into(), tensor(vec![2], TensorData::Int64(vec![0, 1]))),
            (
                "p".into(),
                tensor(vec![2, 2], TensorData::Fp32(vec![0.75, 0.25, 0.5, 0.5])),
            ),
        ],
    };
    // Serving logs the encoded form: it must give the very same batch as the record.
    let mut chunk = EncodedChunk::default();
    assert!(chunk.push_record(&p));
    let records: Vec<&[u8]> = chunk.records_iter().map(|(_, r)| r).collect();
    let share = |entries, encoded| TableBatch {
        table: "predictions_m",
        entries,
        encoded,
        rows: 2,
    };
    let encoded = to_batch(&share(&[], &records)).expect("encoded batch");
    let b = to_batch(&share(&[Entry::Prediction(Box::new(p))], &[])).expect("batch");
    assert_eq!(encoded, b);
    assert_eq!(b.num_rows(), 2);
    let names: Vec<String> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
    for want in [
        "float_input_0",
        "float_input_1",
        "in_row",
        "out_label",
        "out_p_0",
        "out_p_1",
        "extra",
    ] {
        assert!(names.contains(&want.to_string()), "{want} in {names:?}");
    }
    let col = b
        .column_by_name("out_p_1")
        .expect("col")
        .as_any()
        .downcast_ref::<keel_lake::arrow::array::Float64Array>()
        .expect("f64");
    assert_eq!(col.value(0), 0.25);
    assert_eq!(col.value(1), 0.5);
    let dates = b
        .column_by_name("date")
        .expect("date")
        .as_any()
        .downcast_ref::<keel_lake::arrow::array::Date32Array>()
        .expect("date32");
    assert_eq!(dates.value(0), 1);
}
