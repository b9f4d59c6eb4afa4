//! Tests of the live monitor.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::*;

fn reference(n: usize) -> Arc<Reference> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Float64, true),
        Field::new("city", DataType::Utf8, true),
    ]));
    let x: Float64Array = (0..n).map(|i| Some((i % 100) as f64)).collect();
    let city: StringArray = (0..n)
        .map(|i| Some(if i % 2 == 0 { "paris" } else { "lyon" }))
        .collect();
    let batch = RecordBatch::try_new(schema, vec![Arc::new(x), Arc::new(city)]).expect("batch");
    Arc::new(Reference::from_batches(&[batch.clone(), batch], 5_000, 7).expect("reference"))
}

fn options() -> LiveOptions {
    LiveOptions {
        window_ms: 60_000,
        step_ms: 10_000,
        max_rows: 6_000,
        min_rows: 100,
        drift: DriftOptions::default(),
        seed: 1,
    }
}

#[test]
fn reference_keeps_a_uniform_sample_and_its_range() {
    let r = reference(4_000);
    assert_eq!(r.table_rows(), 8_000);
    assert_eq!(r.rows(), 5_000);
    assert_eq!(r.columns(), ["x".to_string(), "city".to_string()]);
    let RefColumn::Numeric { min, max, values } = &r.columns[0] else {
        panic!("x is numeric")
    };
    assert_eq!((*min, *max), (0.0, 99.0));
    assert_eq!(values.values.len(), 5_000);
    assert!(Reference::from_batches(&[], 10, 1).is_err());
}

#[test]
fn quality_counts_missing_out_of_range_new_categories_and_wrong_types() {
    let mut m = LiveMonitor::new(reference(1_000), options());
    let t = m.score_track(PREDICTION, None);
    m.observe_row(0, [Observed::Number(5.0), Observed::Text("paris")], Some((t, 0.5)));
    m.observe_row(0, [Observed::Number(500.0), Observed::Text("tokyo")], Some((t, 0.5)));
    // The reference's maximum as float32 rounds it: still in range.
    m.observe_row(
        0,
        [Observed::Number(f64::from(99.0f32) + 1e-5), Observed::Text("lyon")],
        None,
    );
    m.observe_row(0, [Observed::Missing, Observed::Number(3.0)], None);
    m.observe_row(0, [Observed::Text("oops"), Observed::Missing], None);
    m.observe_row(0, [Observed::Number(f64::NAN)], None);
    let q = m.quality();
    assert_eq!(
        q[0].1,
        QualityCounts {
            missing: 2,
            out_of_range: 1,
            new_category: 0,
            wrong_type: 1
        }
    );
    assert_eq!(
        q[1].1,
        QualityCounts {
            missing: 1,
            out_of_range: 0,
            new_category: 1,
            wrong_type: 1
        }
    );
    assert_eq!(m.rows_seen(), 6);
}

#[test]
fn a_shifted_window_drifts_and_a_same_one_does_not() {
    let mut m = LiveMonitor::new(reference(10_000), options());
    let t = m.score_track(PREDICTION, None);
    // Too few rows: nothing to evaluate.
    m.observe_row(1_000, [Observed::Number(1.0), Observed::Text("paris")], Some((t, 0.1)));
    assert!(m.due(10_000));
    assert!(m.prepare(10_000).is_none());
    for i in 0..3_000 {
        let city = if i % 2 == 0 { "paris" } else { "lyon" };
        m.observe_row(
            12_000,
            [Observed::Number((i % 100) as f64), Observed::Text(city)],
            Some((t, 0.2)),
        );
    }
    let report = m.prepare(20_000).expect("enough rows").run().expect("drift");
    assert_eq!(report.features.columns.len(), 2);
    assert!(report.features.drifted_columns.is_empty(), "{:?}", report.features);
    assert!(
        report.predictions.is_empty(),
        "the first full window is the score baseline"
    );
    assert_eq!(
        m.score_tracks(),
        vec![(PREDICTION.to_string(), Baseline::FirstWindow, Some(1_001))]
    );
    // Later rows: x shifted by 60, the city mix changes, the score moves.
    for _ in 0..3_000 {
        m.observe_row(
            75_000,
            [Observed::Number(90.0), Observed::Text("tokyo")],
            Some((t, 0.9)),
        );
    }
    let report = m.prepare(80_000).expect("enough rows").run().expect("drift");
    assert_eq!(
        report.features.drifted_columns,
        vec!["x".to_string(), "city".to_string()]
    );
    let [prediction] = report.predictions.as_slice() else {
        panic!("one score track: {:?}", report.predictions)
    };
    assert!(prediction.drift.drifted);
    assert_eq!(prediction.baseline, Baseline::FirstWindow);
    let signals: HashMap<String, f64> = report.signals().into_iter().collect();
    assert!(signals["x"] > 0.1 && signals["city"] > 0.1 && signals[PREDICTION] > 0.1);
    // The window only holds the buckets of the last 60 s: the 12 s bucket is gone.
    assert_eq!(report.window_rows_seen, 3_000);
}

#[test]
fn the_window_sample_is_bounded() {
    let mut m = LiveMonitor::new(reference(1_000), options());
    for i in 0..50_000 {
        m.observe_row(i / 10, [Observed::Number(1.0), Observed::Text("paris")], Some((0, 0.5)));
    }
    let kept: usize = m.buckets.iter().map(|b| b.kept).sum();
    assert!(kept <= 6_000, "kept {kept}");
    let e = m.prepare(5_000).expect("rows");
    assert_eq!(e.rows_seen, 50_000);
    assert_eq!(e.rows_kept as usize, kept);
}

#[test]
fn score_tracks_compare_with_the_reference_scores_each_on_its_own() {
    let mut m = LiveMonitor::new(reference(10_000), options());
    // The model scored the reference around 0.2 (with a NaN, left out).
    let reference_scores: Vec<f64> = (0..2_000)
        .map(|i| 0.15 + (i % 10) as f64 / 100.0)
        .chain([f64::NAN])
        .collect();
    let a = m.score_track("prediction[a]", Some(reference_scores.clone()));
    let b = m.score_track("prediction[b]", Some(reference_scores));
    assert_eq!(m.score_track("prediction[a]", None), a, "a track is found by name");
    // Variant a answers like the reference, variant b far above it; a track with no
    // finite reference score falls back to its first window.
    let c = m.score_track("prediction[c]", Some(vec![f64::NAN]));
    for i in 0..3_000 {
        let row = [Observed::Number((i % 100) as f64), Observed::Text("paris")];
        m.observe_row(12_000, row, Some((a, 0.15 + (i % 10) as f64 / 100.0)));
        m.observe_row(12_000, row, Some((b, 0.8 + (i % 10) as f64 / 100.0)));
        m.observe_row(12_000, row, Some((c, 0.5)));
        // An unknown track or a NaN score is ignored.
        m.observe_row(12_000, row, Some((9, 0.5)));
        m.observe_row(12_000, row, Some((a, f64::NAN)));
    }
    let report = m.prepare(20_000).expect("enough rows").run().expect("drift");
    let by_name: HashMap<&str, &PredictionDrift> =
        report.predictions.iter().map(|p| (p.drift.name.as_str(), p)).collect();
    assert_eq!(by_name.len(), 2, "c has no baseline yet: {by_name:?}");
    assert!(
        !by_name["prediction[a]"].drift.drifted,
        "{:?}",
        by_name["prediction[a]"]
    );
    assert!(by_name["prediction[b]"].drift.drifted, "{:?}", by_name["prediction[b]"]);
    assert_eq!(by_name["prediction[a]"].baseline, Baseline::Reference);
    assert_eq!(by_name["prediction[a]"].drift.reference_values, 2_000);
    let tracks = m.score_tracks();
    assert_eq!(
        tracks[2],
        ("prediction[c]".to_string(), Baseline::FirstWindow, Some(1_000))
    );
    let signals: HashMap<String, f64> = report.signals().into_iter().collect();
    assert!(signals["prediction[b]"] > signals["prediction[a]"]);
}

#[test]
fn samples_are_uniform_reproducible_and_in_table_order() {
    let r = reference(4_000);
    assert_eq!(r.rows(), 5_000);
    let schema = Arc::new(Schema::new(vec![Field::new("i", DataType::Float64, false)]));
    let batch = |from: usize| {
        let v: Float64Array = (from..from + 1_000).map(|i| Some(i as f64)).collect();
        RecordBatch::try_new(schema.clone(), vec![Arc::new(v)]).expect("batch")
    };
    let batches = [batch(0), batch(1_000), batch(2_000)];
    let a = sample_batches(&batches, 300, 5).expect("sample");
    let b = sample_batches(&batches, 300, 5).expect("sample");
    assert_eq!(a, b);
    let values: Vec<f64> = a
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("f64")
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(values.len(), 300);
    assert!(values.windows(2).all(|w| w[0] < w[1]), "table order, no repeats");
    // Every third of the table is represented (a prefix would not be).
    for third in 0..3 {
        let n = values.iter().filter(|v| (**v as usize) / 1_000 == third).count();
        assert!((50..=150).contains(&n), "{third}: {n}");
    }
    assert_eq!(sample_batches(&batches, 10_000, 5).expect("all").len(), 3);
}
