//! The assessment end to end on Parquet files written here: profile figures computed by hand,
//! leakage, freshness with an injected "now", and clear errors for bad input.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use chrono::{TimeZone, Utc};
use keel_assess::{AssessOptions, ProfileOptions, Status, Verdict, assess, profile};
use parquet::arrow::ArrowWriter;

fn write(dir: &Path, name: &str, columns: Vec<(&str, ArrayRef)>) -> PathBuf {
    let path = dir.join(name);
    let batch = RecordBatch::try_from_iter(columns).expect("batch");
    let file = std::fs::File::create(&path).expect("create");
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    path
}

/// Deterministic pseudo-random numbers in [0, 1).
fn u(i: u64, seed: u64) -> f64 {
    let mut z = (i ^ seed.rotate_left(32)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

const T0: i64 = 1_700_000_000_000_000; // 2023-11-14T22:13:20Z in microseconds

/// n rows: `signal` raises the odds of y, `leak` equals y, `noise`, a category with signal, a time
/// every 60 s, an entity of 10 rows each, a constant and a copy of `noise`.
fn table(dir: &Path, n: usize) -> PathBuf {
    let signal: Vec<f64> = (0..n).map(|i| u(i as u64, 1) * 4.0 - 2.0).collect();
    let y: Vec<i64> = (0..n)
        .map(|i| i64::from(u(i as u64, 2) < 1.0 / (1.0 + (-(signal[i] * 1.5 - 1.0)).exp())))
        .collect();
    let noise: Vec<f64> = (0..n).map(|i| u(i as u64, 3)).collect();
    let color: Vec<&str> = (0..n)
        .map(|i| {
            if y[i] == 1 && u(i as u64, 4) < 0.6 {
                "red"
            } else {
                ["blue", "green", "red"][i % 3]
            }
        })
        .collect();
    let ts: Vec<i64> = (0..n as i64).map(|i| T0 + i * 60_000_000).collect();
    let entity: Vec<i64> = (0..n as i64).map(|i| i / 10).collect();
    write(
        dir,
        "t.parquet",
        vec![
            ("y", Arc::new(Int64Array::from(y.clone())) as ArrayRef),
            ("signal", Arc::new(Float64Array::from(signal))),
            (
                "leak",
                Arc::new(Float64Array::from(y.iter().map(|v| *v as f64).collect::<Vec<_>>())),
            ),
            ("noise", Arc::new(Float64Array::from(noise.clone()))),
            ("noise_copy", Arc::new(Float64Array::from(noise))),
            ("color", Arc::new(StringArray::from(color))),
            ("constant", Arc::new(Int64Array::from(vec![7i64; n]))),
            ("ts", Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC"))),
            ("customer", Arc::new(Int64Array::from(entity))),
        ],
    )
}

#[test]
fn profile_figures_match_hand_computation() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = write(
        dir.path(),
        "a.parquet",
        vec![
            (
                "x",
                Arc::new(Float64Array::from(vec![Some(1.0), Some(2.0), None, Some(4.0)])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), Some("a"), None])),
            ),
            ("k", Arc::new(Int64Array::from(vec![5, 5, 5, 5]))),
            ("b", Arc::new(BooleanArray::from(vec![true, false, true, true]))),
        ],
    );
    let b = write(
        dir.path(),
        "b.parquet",
        vec![
            (
                "x",
                Arc::new(Float64Array::from(vec![Some(10.0), Some(f64::NAN)])) as ArrayRef,
            ),
            ("s", Arc::new(StringArray::from(vec![Some("a"), Some("c")]))),
            ("k", Arc::new(Int64Array::from(vec![5, 5]))),
            ("b", Arc::new(BooleanArray::from(vec![true, false]))),
        ],
    );
    let p = profile(&[a, b], &ProfileOptions::default()).expect("profile");
    assert_eq!(p.rows, 6);
    assert_eq!(p.files, 2);
    let x = p.column("x").expect("x");
    assert_eq!((x.count, x.missing, x.distinct), (4, 2, 4));
    let n = x.numeric.as_ref().expect("numeric");
    // values 1, 2, 4, 10: mean 4.25; sample std sqrt((10.5625 + 5.0625 + 0.0625 + 33.0625) / 3)
    assert_eq!((n.min, n.max, n.mean), (1.0, 10.0, 4.25));
    assert!((n.std - (48.75f64 / 3.0).sqrt()).abs() < 1e-12);
    // numpy.quantile([1, 2, 4, 10], [.01, .25, .5, .75, .99]) = 1.03, 1.75, 3, 5.5, 9.82
    assert!((n.p01 - 1.03).abs() < 1e-12 && (n.p25 - 1.75).abs() < 1e-12);
    assert!((n.p50 - 3.0).abs() < 1e-12 && (n.p75 - 5.5).abs() < 1e-12 && (n.p99 - 9.82).abs() < 1e-12);
    let s = p.column("s").expect("s");
    assert_eq!((s.count, s.missing, s.distinct), (5, 1, 3));
    assert_eq!((s.top[0].value.as_str(), s.top[0].count), ("a", 3));
    assert!(p.column("k").expect("k").constant);
    assert!(!x.constant);
    assert_eq!(p.column("b").expect("b").distinct, 2);
    assert_eq!(p.duplicate_rows, Some(0));
    assert!(p.duplicate_columns.is_empty(), "{:?}", p.duplicate_columns);
}

#[test]
fn duplicate_rows_and_columns() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(
        dir.path(),
        "d.parquet",
        vec![
            ("a", Arc::new(Int64Array::from(vec![1, 2, 1, 1])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["x", "y", "x", "x"]))),
            ("a2", Arc::new(Int64Array::from(vec![1, 2, 1, 1]))),
            ("b2", Arc::new(StringArray::from(vec!["x", "y", "x", "x"]))),
        ],
    );
    let p = profile(&[f], &ProfileOptions::default()).expect("profile");
    assert_eq!(p.duplicate_rows, Some(2));
    assert_eq!(
        p.duplicate_columns,
        vec![
            vec!["a".to_string(), "a2".to_string()],
            vec!["b".to_string(), "b2".to_string()]
        ]
    );
}

fn options(now_offset_hours: i64) -> AssessOptions {
    let mut o = AssessOptions::new("y");
    o.time = Some("ts".into());
    o.entity = Some("customer".into());
    // The table's newest row is at T0 + (n - 1) minutes.
    o.now = Utc.timestamp_micros(T0).single().expect("t") + chrono::Duration::hours(now_offset_hours);
    o
}

#[test]
fn a_copy_of_the_target_is_flagged_and_fails_the_verdict() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = table(dir.path(), 6000);
    let a = assess(&[f], &options(100)).expect("assess");
    assert_eq!(a.rows, 6000);
    let leak = a.features.iter().find(|x| x.name == "leak").expect("leak");
    assert!(leak.leakage && leak.auc == 1.0, "{leak:?}");
    assert_eq!(a.features[0].name, "leak");
    let signal = a.features.iter().find(|x| x.name == "signal").expect("signal");
    assert!(signal.strength > 0.7 && !signal.leakage, "{signal:?}");
    let noise = a.features.iter().find(|x| x.name == "noise").expect("noise");
    assert!(noise.strength < 0.55, "{noise:?}");
    let color = a.features.iter().find(|x| x.name == "color").expect("color");
    assert_eq!(color.auc_method, "out_of_fold_target_encoding");
    assert!(color.strength > 0.6, "{color:?}");
    // Target, time and entity are not features.
    assert!(
        a.features
            .iter()
            .all(|x| !["y", "ts", "customer"].contains(&x.name.as_str()))
    );
    assert_eq!(a.verdict, Verdict::NotReady);
    assert!(
        a.reasons.iter().any(|r| r.contains("leakage") && r.contains("leak")),
        "{:?}",
        a.reasons
    );
    let b = a.baseline.as_ref().expect("baseline");
    assert!(b.excluded.iter().any(|e| e.starts_with("leak")), "{:?}", b.excluded);
    assert!(b.auc_mean > 0.7 && b.auc_mean < 0.98, "{}", b.auc_mean);
    assert!(b.log_loss_mean < b.prior_log_loss_mean);
    assert_eq!(b.fold_auc.len(), 5);
    // `leak` holds the target's values (as floats): numerically the same column.
    assert_eq!(
        a.profile.duplicate_columns,
        vec![
            vec!["y".to_string(), "leak".to_string()],
            vec!["noise".to_string(), "noise_copy".to_string()]
        ]
    );
    let e = a.entities.as_ref().expect("entities");
    assert_eq!((e.entities, e.max_rows_per_entity), (600, 10));
    // Renderings hold the verdict.
    assert!(a.to_terminal().contains("VERDICT: NOT READY"));
    assert!(a.to_markdown().contains("## Verdict: NOT READY"));
    let html = a.to_html();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg") && !html.contains("<script"));
    let json = serde_json::to_value(&a).expect("json");
    assert_eq!(json["verdict"], "NotReady");
}

#[test]
fn freshness_uses_the_injected_now() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = table(dir.path(), 3000);
    // Newest row at T0 + 2999 min (about 50 h): now 60 h after T0 is fresh, 200 h is stale.
    let fresh = assess(std::slice::from_ref(&f), &options(60)).expect("assess");
    let r = fresh.arrival.as_ref().expect("arrival");
    assert!((r.freshness_seconds - (60.0 * 3600.0 - 2999.0 * 60.0)).abs() < 1e-6);
    assert_eq!(r.empty_buckets, 0);
    assert_eq!(r.median_interarrival_seconds, 60.0);
    let check =
        |a: &keel_assess::Assessment, name: &str| a.checks.iter().find(|c| c.name == name).expect("check").status;
    assert_eq!(check(&fresh, "freshness"), Status::Pass);
    let stale = assess(&[f], &options(200)).expect("assess");
    assert_eq!(check(&stale, "freshness"), Status::Fail);
    assert!(
        stale
            .reasons
            .iter()
            .any(|r| r.contains("freshness") && r.contains("threshold")),
        "{:?}",
        stale.reasons
    );
}

#[test]
fn string_times_parse_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let y = Arc::new(Int64Array::from(vec![0, 1, 0, 1])) as ArrayRef;
    let good = write(
        dir.path(),
        "g.parquet",
        vec![
            ("y", y.clone()),
            (
                "ts",
                Arc::new(StringArray::from(vec![
                    "2019-11-24 00:00:20.110351+00:00",
                    "2019-11-24 00:01:20+00:00",
                    "2019-11-24T00:02:20Z",
                    "2019-11-24 00:03:20",
                ])),
            ),
        ],
    );
    let mut o = AssessOptions::new("y");
    o.time = Some("ts".into());
    o.baseline = false;
    let a = assess(&[good], &o).expect("assess");
    assert_eq!(a.arrival.as_ref().expect("arrival").last, "2019-11-24T00:03:20Z");
    let bad = write(
        dir.path(),
        "b.parquet",
        vec![
            ("y", y),
            (
                "ts",
                Arc::new(StringArray::from(vec!["2019-11-24", "x", "tomorrow", "2019-11-25"])),
            ),
        ],
    );
    let err = assess(std::slice::from_ref(&bad), &o).unwrap_err();
    assert_eq!(err.code(), "assess.time_parse");
    assert!(
        err.to_string().contains("row 1") && err.to_string().contains("\"x\""),
        "{err}"
    );
    o.time = Some("y".into());
    o.target = "ts".into();
    let err = assess(&[bad], &o).unwrap_err();
    assert_eq!(err.code(), "assess.time_type", "{err}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(
        dir.path(),
        "f.parquet",
        vec![
            ("one", Arc::new(Int64Array::from(vec![1, 1, 1])) as ArrayRef),
            ("three", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            ("name", Arc::new(StringArray::from(vec!["a", "b", "a"]))),
            ("y", Arc::new(Int64Array::from(vec![0, 1, 0]))),
            ("x", Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5]))),
        ],
    );
    let run = |target: &str, time: Option<&str>| {
        let mut o = AssessOptions::new(target);
        o.time = time.map(str::to_string);
        assess(std::slice::from_ref(&f), &o).unwrap_err()
    };
    let e = run("nope", None);
    assert_eq!(e.code(), "assess.unknown_column");
    assert!(
        e.to_string().contains("nope") && e.to_string().contains("one, three"),
        "{e}"
    );
    assert_eq!(run("one", None).code(), "assess.target_one_class");
    assert!(run("one", None).to_string().contains("single class"));
    assert_eq!(run("three", None).code(), "assess.target_not_binary");
    assert_eq!(run("name", None).code(), "assess.target_type");
    assert_eq!(run("y", Some("x")).code(), "assess.time_type");
    assert_eq!(run("y", Some("missing")).code(), "assess.unknown_column");

    let empty = write(
        dir.path(),
        "e.parquet",
        vec![("y", Arc::new(Int64Array::from(Vec::<i64>::new())) as ArrayRef)],
    );
    assert_eq!(
        assess(std::slice::from_ref(&empty), &AssessOptions::new("y"))
            .unwrap_err()
            .code(),
        "assess.empty_table"
    );
    assert_eq!(
        profile(&[empty], &ProfileOptions::default()).unwrap_err().code(),
        "assess.empty_table"
    );
    assert_eq!(
        profile(&[], &ProfileOptions::default()).unwrap_err().code(),
        "assess.no_files"
    );
    let missing = assess(&[dir.path().join("no.parquet")], &AssessOptions::new("y")).unwrap_err();
    assert_eq!(missing.code(), "assess.io");
    assert!(missing.to_string().contains("no.parquet"), "{missing}");
    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"not parquet at all").expect("write");
    let e = assess(&[junk], &AssessOptions::new("y")).unwrap_err();
    assert_eq!(e.code(), "assess.bad_parquet");
    assert!(e.to_string().contains("junk.parquet"), "{e}");
}

#[test]
fn a_small_clean_table_is_ready_or_cautious_never_a_panic() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = table(dir.path(), 2500);
    let mut o = options(50);
    o.entity = None;
    let a = assess(&[f], &o).expect("assess");
    // The leak still fails it; every check names a figure.
    assert!(a.checks.iter().all(|c| !c.figure.is_empty()));
    assert_ne!(a.verdict, Verdict::Ready);
}
