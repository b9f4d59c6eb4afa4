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
        vec![(PREDICTION.to_string(), Baseline::FirstWindow, Some(3_001))]
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
        assert!(m.window.kept() <= 6_000, "kept {} after {i} rows", m.window.kept());
    }
    let kept = m.window.kept();
    assert!(kept >= 3_000, "the sample halves at most once per overflow: {kept}");
    let e = m.prepare(5_000).expect("rows");
    assert_eq!(e.rows_seen, 50_000);
    assert_eq!(e.rows_kept as usize, kept, "one bucket: every kept row is compared");
}

fn x_values(e: &Evaluation) -> &[f64] {
    match &e.current[0] {
        Buf::Num(v) => v,
        Buf::Cat(_) => panic!("x is numeric"),
    }
}

#[test]
fn a_burst_inside_a_long_window_of_short_steps_is_kept_whole() {
    // One hour sliding by one second: 3,600 buckets. 120 rows served within a second are all
    // compared (a fixed share per bucket kept 5 of them).
    let mut m = LiveMonitor::new(
        reference(1_000),
        LiveOptions {
            window_ms: 3_600_000,
            step_ms: 1_000,
            max_rows: 20_000,
            min_rows: 40,
            ..options()
        },
    );
    for i in 0..120 {
        let x = if i >= 80 { 300.0 + i as f64 } else { (i % 100) as f64 };
        let city = if i % 2 == 0 { "paris" } else { "lyon" };
        m.observe_row(5_000 + i, [Observed::Number(x), Observed::Text(city)], None);
    }
    let e = m.prepare(6_000).expect("enough rows");
    assert_eq!((e.rows_seen, e.rows_kept), (120, 120));
    let report = e.run().expect("drift");
    assert_eq!(
        report.features.drifted_columns,
        vec!["x".to_string()],
        "{:?}",
        report.features
    );
}

#[test]
fn a_busy_bucket_weighs_by_its_rows_not_as_one_bucket() {
    // 1,000 rows of 0 in one step, 9,000 rows of 1 in the next; 2,000 rows kept at most. A
    // uniform sample of the window holds about 90 % ones (a fixed share per bucket held 50 %).
    let mut m = LiveMonitor::new(
        reference(1_000),
        LiveOptions {
            max_rows: 2_000,
            ..options()
        },
    );
    for _ in 0..1_000 {
        m.observe_row(1_000, [Observed::Number(0.0), Observed::Text("paris")], None);
    }
    for _ in 0..9_000 {
        m.observe_row(11_000, [Observed::Number(1.0), Observed::Text("paris")], None);
    }
    let e = m.prepare(20_000).expect("rows");
    assert_eq!(e.rows_seen, 10_000);
    let x = x_values(&e);
    assert!((900..=2_000).contains(&x.len()), "compared {}", x.len());
    let ones = x.iter().filter(|v| **v == 1.0).count() as f64 / x.len() as f64;
    assert!((0.86..=0.94).contains(&ones), "share of the busy bucket's rows: {ones}");
    // Once the busy bucket has left the window (60 s after its step ended), new rows fill the
    // sample up again.
    for _ in 0..3_000 {
        m.observe_row(85_000, [Observed::Number(2.0), Observed::Text("paris")], None);
    }
    let e = m.prepare(90_000).expect("rows");
    assert_eq!(e.rows_seen, 3_000);
    assert!(e.rows_kept >= 1_000, "a quiet window refills: {}", e.rows_kept);
    assert!(x_values(&e).iter().all(|v| *v == 2.0));
}

#[test]
fn the_same_seed_and_rows_give_the_same_sample() {
    let run = || {
        let mut m = LiveMonitor::new(
            reference(1_000),
            LiveOptions {
                max_rows: 500,
                ..options()
            },
        );
        for i in 0..5_000 {
            m.observe_row(i, [Observed::Number((i % 97) as f64), Observed::Text("paris")], None);
        }
        x_values(&m.prepare(6_000).expect("rows")).to_vec()
    };
    let a = run();
    assert!(!a.is_empty() && a.len() <= 500);
    assert_eq!(a, run());
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
    // c's first window is its scores in the window's sample (15,000 rows served, 6,000 kept at
    // most: about a fifth of c's 3,000).
    let tracks = m.score_tracks();
    let (name, kind, held) = &tracks[2];
    assert_eq!((name.as_str(), *kind), ("prediction[c]", Baseline::FirstWindow));
    assert!(held.is_some_and(|n| (300..=1_500).contains(&n)), "{held:?}");
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
