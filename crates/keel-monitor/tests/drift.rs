//! Integration tests on real Parquet files written to temp dirs, plus goldens against Evidently's numbers.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule); helpers outside #[test] need it spelled out

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use keel_monitor::{DriftOptions, Method, MonitorError, TestKind, drift_files};
use parquet::arrow::ArrowWriter;

/// Small deterministic generator (SplitMix64 + Box-Muller), so the tests need no rand crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        mean + sd * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn category(&mut self, weights: &[f64]) -> String {
        let total: f64 = weights.iter().sum();
        let mut x = self.uniform() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return format!("c{i}");
            }
            x -= w;
        }
        format!("c{}", weights.len() - 1)
    }
}

fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// Reference and current tables: `stable`/`color` same distribution, `shifted` mean +1 sd, `size` re-weighted.
fn synthetic(dir: &Path, rows: usize) -> (PathBuf, PathBuf) {
    let make = |seed: u64, drift: bool| -> Vec<(&'static str, ArrayRef)> {
        let mut rng = Rng(seed);
        let stable: Vec<f64> = (0..rows).map(|_| rng.normal(10.0, 2.0)).collect();
        let shifted: Vec<f64> = (0..rows)
            .map(|_| rng.normal(if drift { 1.0 } else { 0.0 }, 1.0))
            .collect();
        let counts: Vec<i64> = (0..rows).map(|_| (rng.uniform() * 50.0) as i64).collect();
        let color: Vec<String> = (0..rows).map(|_| rng.category(&[5.0, 3.0, 2.0])).collect();
        let size_w: &[f64] = if drift { &[1.0, 2.0, 7.0] } else { &[7.0, 2.0, 1.0] };
        let size: Vec<String> = (0..rows).map(|_| rng.category(size_w)).collect();
        vec![
            ("stable", Arc::new(Float64Array::from(stable)) as ArrayRef),
            ("shifted", Arc::new(Float64Array::from(shifted))),
            ("counts", Arc::new(Int64Array::from(counts))),
            ("color", Arc::new(StringArray::from(color))),
            ("size", Arc::new(StringArray::from(size))),
        ]
    };
    let (r, c) = (dir.join("ref.parquet"), dir.join("cur.parquet"));
    write(&r, make(1, false));
    write(&c, make(2, true));
    (r, c)
}

fn column<'a>(report: &'a keel_monitor::DriftReport, name: &str) -> &'a keel_monitor::ColumnDrift {
    report.columns.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn large_sample_flags_exactly_the_shifted_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (r, c) = synthetic(dir.path(), 5000);
    let report = drift_files(&r, &c, &DriftOptions::default()).unwrap();
    assert_eq!(report.drifted_columns, ["shifted", "size"]);
    assert_eq!(column(&report, "stable").method, TestKind::WassersteinNorm);
    assert_eq!(column(&report, "counts").method, TestKind::WassersteinNorm);
    assert_eq!(column(&report, "color").method, TestKind::JensenShannon);
    assert!(
        (column(&report, "shifted").score - 1.0).abs() < 0.1,
        "W1/std of a 1-sd shift is about 1"
    );
    assert!((report.share_drifted - 0.4).abs() < 1e-12);
    assert!(!report.dataset_drift);
    assert_eq!(report.reference_rows, 5000);
}

#[test]
fn small_sample_uses_p_value_tests() {
    let dir = tempfile::tempdir().unwrap();
    let (r, c) = synthetic(dir.path(), 400);
    let report = drift_files(&r, &c, &DriftOptions::default()).unwrap();
    assert_eq!(column(&report, "stable").method, TestKind::Ks);
    assert_eq!(column(&report, "color").method, TestKind::ChiSquare);
    assert_eq!(report.drifted_columns, ["shifted", "size"]);
    assert!(column(&report, "shifted").score < 1e-6);
    assert!(column(&report, "stable").score > 0.05);
}

#[test]
fn binary_small_sample_uses_z_test() {
    let dir = tempfile::tempdir().unwrap();
    let flag = |n_yes: usize| -> ArrayRef {
        Arc::new(StringArray::from(
            (0..300)
                .map(|i| if i < n_yes { "yes" } else { "no" })
                .collect::<Vec<_>>(),
        ))
    };
    let (r, c) = (dir.path().join("r.parquet"), dir.path().join("c.parquet"));
    write(&r, vec![("flag", flag(100))]);
    write(&c, vec![("flag", flag(200))]);
    let report = drift_files(&r, &c, &DriftOptions::default()).unwrap();
    let col = column(&report, "flag");
    assert_eq!(col.method, TestKind::ZTest);
    assert!(col.drifted && col.score < 1e-10);
}

#[test]
fn psi_and_ks_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let (r, c) = synthetic(dir.path(), 5000);
    let psi = drift_files(
        &r,
        &c,
        &DriftOptions {
            method: Method::Psi,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(psi.columns.iter().all(|c| c.method == TestKind::Psi));
    assert_eq!(psi.drifted_columns, ["shifted", "size"]);
    assert!(column(&psi, "stable").score >= 0.0 && column(&psi, "stable").score < 0.05);
    let ks = drift_files(
        &r,
        &c,
        &DriftOptions {
            method: Method::Ks,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(column(&ks, "stable").method, TestKind::Ks);
    assert_eq!(
        column(&ks, "color").method,
        TestKind::JensenShannon,
        "categorical keeps its default"
    );
    assert!(column(&ks, "shifted").drifted);
    assert!(!column(&ks, "stable").drifted);
}

#[test]
fn column_in_one_file_only_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (r, c) = (dir.path().join("r.parquet"), dir.path().join("c.parquet"));
    let v = || Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])) as ArrayRef;
    write(&r, vec![("a", v()), ("only_ref", v())]);
    write(&c, vec![("a", v()), ("only_cur", v())]);
    let err = drift_files(&r, &c, &DriftOptions::default()).unwrap_err();
    match &err {
        MonitorError::ColumnMismatch {
            only_in_reference,
            only_in_current,
        } => {
            assert_eq!(only_in_reference, &["only_ref"]);
            assert_eq!(only_in_current, &["only_cur"]);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("only_ref") && err.to_string().contains("only_cur"));
    // selecting the common column works
    let ok = drift_files(
        &r,
        &c,
        &DriftOptions {
            columns: Some(vec!["a".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ok.columns.len(), 1);
}

#[test]
fn empty_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (r, c) = (dir.path().join("r.parquet"), dir.path().join("c.parquet"));
    write(
        &r,
        vec![("a", Arc::new(Float64Array::from(vec![1.0, 2.0])) as ArrayRef)],
    );
    write(
        &c,
        vec![("a", Arc::new(Float64Array::from(Vec::<f64>::new())) as ArrayRef)],
    );
    let err = drift_files(&r, &c, &DriftOptions::default()).unwrap_err();
    assert!(matches!(err, MonitorError::EmptyFile { .. }), "{err}");
    assert_eq!(err.code(), "monitor.empty_file");
}

#[test]
fn nan_null_and_inf_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(7);
    let base: Vec<f64> = (0..3000).map(|_| rng.normal(0.0, 1.0)).collect();
    let cur: Vec<f64> = (0..3000).map(|_| rng.normal(0.2, 1.0)).collect();
    let mut dirty: Vec<Option<f64>> = base.iter().map(|v| Some(*v)).collect();
    dirty.extend([None, Some(f64::NAN), Some(f64::NAN), Some(f64::INFINITY), None]);
    let (r_clean, r_dirty, c) = (
        dir.path().join("rc.parquet"),
        dir.path().join("rd.parquet"),
        dir.path().join("c.parquet"),
    );
    write(&r_clean, vec![("x", Arc::new(Float64Array::from(base)) as ArrayRef)]);
    write(&r_dirty, vec![("x", Arc::new(Float64Array::from(dirty)) as ArrayRef)]);
    write(&c, vec![("x", Arc::new(Float64Array::from(cur)) as ArrayRef)]);
    let clean = drift_files(&r_clean, &c, &DriftOptions::default()).unwrap();
    let dirty = drift_files(&r_dirty, &c, &DriftOptions::default()).unwrap();
    let (a, b) = (column(&clean, "x"), column(&dirty, "x"));
    assert_eq!(a.score, b.score);
    assert_eq!(b.quality.reference_missing, 4);
    assert_eq!(b.quality.reference_infinite, 1);
    assert_eq!(b.reference_values, 3000);
    // a column that is all missing on one side is a clear error
    let all_nan = dir.path().join("nan.parquet");
    write(
        &all_nan,
        vec![("x", Arc::new(Float64Array::from(vec![f64::NAN; 10])) as ArrayRef)],
    );
    let err = drift_files(&r_clean, &all_nan, &DriftOptions::default()).unwrap_err();
    assert!(
        matches!(err, MonitorError::EmptyColumn { side: "current", .. }),
        "{err}"
    );
}

#[test]
fn quality_reports_out_of_range_and_new_categories() {
    let dir = tempfile::tempdir().unwrap();
    let (r, c) = (dir.path().join("r.parquet"), dir.path().join("c.parquet"));
    let nums = |v: Vec<f64>| Arc::new(Float64Array::from(v)) as ArrayRef;
    let cats = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
    write(
        &r,
        vec![
            ("x", nums(vec![0.0, 1.0, 2.0, 3.0])),
            ("k", cats(vec![Some("a"), Some("b"), Some("a"), None])),
        ],
    );
    write(
        &c,
        vec![
            ("x", nums(vec![-1.0, 1.0, 2.0, 9.0])),
            ("k", cats(vec![Some("a"), Some("z"), Some("z"), None])),
        ],
    );
    let report = drift_files(&r, &c, &DriftOptions::default()).unwrap();
    let x = column(&report, "x");
    assert_eq!(x.quality.current_out_of_range, Some(2));
    assert_eq!(
        (x.quality.reference_min, x.quality.reference_max),
        (Some(0.0), Some(3.0))
    );
    let k = column(&report, "k");
    assert_eq!(k.quality.new_categories, ["z"]);
    assert_eq!(k.quality.current_rows_in_new_categories, Some(2));
    assert_eq!((k.quality.reference_missing, k.quality.current_missing), (1, 1));
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn golden_scores(file: &str) -> Vec<(String, f64, bool)> {
    let json: serde_json::Value = serde_json::from_reader(File::open(fixture(file)).unwrap()).unwrap();
    json["columns"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["score"].as_f64().unwrap(), v["drifted"].as_bool().unwrap()))
        .collect()
}

fn assert_matches_golden(reference: &str, current: &str, golden: &str, tolerance: f64) {
    let report = drift_files(&fixture(reference), &fixture(current), &DriftOptions::default()).unwrap();
    let expected = golden_scores(golden);
    assert_eq!(expected.len(), report.columns.len());
    for (name, score, drifted) in expected {
        let got = column(&report, &name);
        assert!(
            (got.score - score).abs() < tolerance,
            "{name}: keel {} vs golden {score}",
            got.score
        );
        assert_eq!(got.drifted, drifted, "{name}");
    }
}

/// gen_data.py 2000 rows; scores of ref_impl_drift.py (the numpy port of Evidently's defaults).
#[test]
fn golden_refimpl_2000_rows() {
    assert_matches_golden("ref_2000.parquet", "cur_2000.parquet", "refimpl_2000.json", 1e-9);
}

/// Same files; scores of Evidently 0.7.23 itself (bench_evidently.py).
#[test]
fn golden_evidently_2000_rows() {
    assert_matches_golden("ref_2000.parquet", "cur_2000.parquet", "evidently_2000.json", 1e-9);
}

/// First 500 rows: the small-sample branch (KS p-values for numeric, chi-squared for categorical) of Evidently.
#[test]
fn golden_evidently_500_rows_small_sample() {
    assert_matches_golden("ref_500.parquet", "cur_500.parquet", "evidently_500.json", 1e-9);
}

/// Reads a Parquet file back as its record batches.
fn batches(path: &Path) -> Vec<RecordBatch> {
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .with_batch_size(150)
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn in_memory_batches_give_the_same_report_as_their_files() {
    let dir = tempfile::tempdir().unwrap();
    for rows in [400, 5000] {
        let (r, c) = synthetic(dir.path(), rows);
        let options = DriftOptions::default();
        let from_files = drift_files(&r, &c, &options).unwrap();
        let (rb, cb) = (batches(&r), batches(&c));
        assert!(rb.len() > 1, "several batches per side");
        let from_batches = keel_monitor::drift_batches(&rb, &cb, &options).unwrap();
        let strip = |mut report: keel_monitor::DriftReport| {
            report.seconds = 0.0;
            serde_json::to_value(report).unwrap()
        };
        assert_eq!(strip(from_batches), strip(from_files));
    }
    let (r, c) = synthetic(dir.path(), 50);
    let (rb, cb) = (batches(&r), batches(&c));
    let only = DriftOptions {
        columns: Some(vec!["missing".into()]),
        ..DriftOptions::default()
    };
    assert!(matches!(
        keel_monitor::drift_batches(&rb, &cb, &only),
        Err(MonitorError::UnknownColumn(c)) if c == "missing"
    ));
    assert!(matches!(
        keel_monitor::drift_batches(&rb, &[], &DriftOptions::default()),
        Err(MonitorError::EmptyBatches { side: "current" })
    ));
    assert!(matches!(
        keel_monitor::drift_batches(&rb[..0], &cb, &DriftOptions::default()),
        Err(MonitorError::EmptyBatches { side: "reference" })
    ));
}

#[test]
fn an_unknown_method_is_a_typed_invalid_argument() {
    assert_eq!("JS".parse::<Method>(), Ok(Method::JensenShannon));
    let e = "median".parse::<Method>().unwrap_err();
    assert_eq!(e, keel_monitor::UnknownMethod("median".into()));
    assert_eq!(e.code(), "monitor.unknown_method");
    assert_eq!(e.kind(), keel_types::ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("use auto, psi, ks"), "{e}");
}
