//! The writer and the lake tables for real: Delta tables in temp dirs, SQL over them.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use keel_lake::Lake;
use keel_lake::arrow::array::{Float64Array, Int64Array};
use keel_predlog::lake_sink::LakeSink;
use keel_predlog::performance::{Bucket, PerformanceOptions, performance};
use keel_predlog::{
    Entry, FeedbackRecord, LabelRecord, LogConfig, PredictionLog, PredictionRecord, Routing, Sink, TableBatch, now_us,
};
use keel_types::{Tensor, TensorData};

fn lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&dir.path().join("lake")).unwrap();
    (dir, lake)
}

fn prediction(id: &str, version: i64, ts_us: i64, x: [f32; 2], score: f32) -> Entry {
    Entry::Prediction(Box::new(PredictionRecord {
        ts_us,
        prediction_id: id.to_string(),
        request_id: None,
        model: "m".into(),
        version,
        routing: None,
        latency_us: 10,
        inputs: vec![(
            "x".into(),
            Tensor {
                shape: vec![1, 2],
                data: TensorData::Fp32(x.to_vec()),
            },
        )],
        outputs: vec![
            (
                "label".into(),
                Tensor {
                    shape: vec![1],
                    data: TensorData::Int64(vec![i64::from(score >= 0.5)]),
                },
            ),
            (
                "probabilities".into(),
                Tensor {
                    shape: vec![1, 2],
                    data: TensorData::Fp32(vec![1.0 - score, score]),
                },
            ),
        ],
    }))
}

fn count(batches: &[keel_lake::arrow::array::RecordBatch]) -> i64 {
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

/// Writes records straight through the sink, as the writer does with a table's share.
async fn write(sink: &LakeSink, table: &str, entries: &[Entry]) -> keel_predlog::Result<()> {
    let rows = entries.iter().map(Entry::rows).sum();
    sink.write(&TableBatch {
        table,
        entries,
        encoded: &[],
        rows,
    })
    .await
}

async fn wait_for(log: &PredictionLog, what: impl Fn(&keel_predlog::LogStats) -> bool) {
    for _ in 0..600 {
        if what(&log.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition never held: {:?}", log.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_batches_by_rows_and_flushes_on_shutdown() {
    let (_dir, lake) = lake();
    let sink = Arc::new(LakeSink::new(lake.clone(), None));
    let config = LogConfig {
        batch_rows: 3,
        flush: Duration::from_secs(3600),
        ..LogConfig::default()
    };
    let log = PredictionLog::start(sink, config).unwrap();
    for i in 0..3 {
        assert!(log.log(prediction(&format!("p{i}"), 1, now_us(), [i as f32, 0.0], 0.5)));
    }
    // A full batch of 3 is written without waiting for the (one hour) flush time...
    wait_for(&log, |s| s.rows_written == 3).await;
    assert_eq!(log.stats().batches_written, 1);
    // ...one more row waits (the writer polls every 20 ms, so ten polls pass)...
    assert!(log.log(prediction("p3", 1, now_us(), [3.0, 0.0], 0.5)));
    wait_for(&log, |s| s.logged == 4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(log.stats().rows_written, 3);
    // ...and is written on shutdown.
    log.shutdown().await;
    let s = log.stats();
    assert_eq!(
        (s.rows_written, s.batches_written, s.logged, s.dropped_queue_full),
        (4, 2, 4, 0)
    );
    let n = lake.sql("SELECT count(*) FROM \"predictions_m\"").await.unwrap();
    assert_eq!(count(&n), 4);
    let cols = lake
        .sql("SELECT x_0, out_probabilities_1, out_label FROM \"predictions_m\" WHERE prediction_id = 'p3'")
        .await
        .unwrap();
    let x0 = cols[0].column(0).as_any().downcast_ref::<Float64Array>().unwrap();
    assert_eq!(x0.value(0), 3.0);
    // After shutdown, entries are refused (and counted), never queued.
    assert!(!log.log(prediction("late", 1, now_us(), [0.0, 0.0], 0.5)));
}

/// Many threads logging at once, each into its lane, while the writer takes lanes and writes:
/// every prediction lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_from_many_threads_land_exactly_once() {
    let (_dir, lake) = lake();
    let sink = Arc::new(LakeSink::new(lake.clone(), None));
    let config = LogConfig {
        batch_rows: 256,
        flush: Duration::from_millis(50),
        ..LogConfig::default()
    };
    let log = PredictionLog::start(sink, config).unwrap();
    let (threads, per_thread) = (12, 400);
    std::thread::scope(|s| {
        for t in 0..threads {
            let log = &log;
            s.spawn(move || {
                for i in 0..per_thread {
                    let id = format!("t{t}-{i}");
                    assert!(log.log(prediction(&id, 1, now_us(), [t as f32, i as f32], 0.5)));
                }
            });
        }
    });
    log.shutdown().await;
    let s = log.stats();
    let total = (threads * per_thread) as u64;
    assert_eq!(
        (s.logged, s.rows_written, s.dropped_queue_full),
        (total, total, 0),
        "{s:?}"
    );
    let n = lake
        .sql("SELECT count(DISTINCT prediction_id) FROM \"predictions_m\" WHERE x_1 < 400")
        .await
        .unwrap();
    assert_eq!(count(&n), total as i64);
    // After shutdown nothing is accepted, from any thread.
    let late = std::thread::spawn(move || log.log(prediction("late", 1, now_us(), [0.0, 0.0], 0.5)));
    assert!(!late.join().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_is_retried_then_counted_and_a_full_queue_drops() {
    let (dir, lake) = lake();
    // The table's folder is a file: every write to predictions_m fails.
    std::fs::write(dir.path().join("lake").join("predictions_m"), b"not a folder").unwrap();
    let sink = Arc::new(LakeSink::new(lake.clone(), None));
    let config = LogConfig {
        queue: 1,
        batch_rows: 1,
        retries: 2,
        backoff: Duration::from_secs(1),
        ..LogConfig::default()
    };
    let log = PredictionLog::start(sink, config).unwrap();
    assert!(log.log(prediction("a", 1, now_us(), [0.0, 0.0], 0.5)));
    // The writer is now retrying with a one second backoff: the queue (1) fills, the rest drop.
    wait_for(&log, |s| s.write_failures >= 1).await;
    let accepted = (0..50)
        .filter(|i| log.log(prediction(&format!("b{i}"), 1, now_us(), [0.0, 0.0], 0.5)))
        .count();
    assert!(accepted <= 2, "accepted {accepted}");
    // The refusals are counted while the writer is still retrying its first batch (3 s of
    // backoff), not once it gets to the lanes again.
    wait_for(&log, |s| s.dropped_queue_full + s.logged >= 51).await;
    let s = log.stats();
    assert_eq!(
        s.dropped_write_failed, 0,
        "the first batch's retries are over already: {s:?}"
    );
    assert_eq!(s.logged, 1 + accepted as u64, "{s:?}");
    log.shutdown().await;
    let s = log.stats();
    assert!(s.dropped_queue_full >= 48, "{s:?}");
    // every batch that reached the writer was tried 3 times, then dropped and counted
    assert_eq!(s.write_failures, 3 * (1 + accepted as u64), "{s:?}");
    assert_eq!(s.dropped_write_failed, 1 + accepted as u64, "{s:?}");
    assert_eq!(s.rows_written, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_and_feedback_join_to_predictions_and_performance_is_right() {
    let (_dir, lake) = lake();
    let sink = LakeSink::new(lake.clone(), None);
    let t0 = 1_714_521_600_000_000; // 2024-05-01T00:00:00Z
    let hour = 3_600_000_000;
    // version 1, first hour: scores 0.8, 0.4, 0.6, 0.2 with labels 1, 1, 0, 0 (AUC 3/4)
    // version 2, second hour: scores 0.9, 0.1, labels by feedback through their decisions: 1, 0
    let mut v1 = Vec::new();
    for (i, s) in [0.8f32, 0.4, 0.6, 0.2].into_iter().enumerate() {
        v1.push(prediction(&format!("a{i}"), 1, t0 + i as i64, [0.0, 0.0], s));
    }
    write(&sink, "predictions_m", &v1).await.unwrap();
    let mut v2 = Vec::new();
    for (i, s) in [0.9f32, 0.1].into_iter().enumerate() {
        let Entry::Prediction(mut p) = prediction(&format!("b{i}"), 2, t0 + hour + i as i64, [1.0, 1.0], s) else {
            unreachable!()
        };
        p.routing = Some(Routing {
            deployment: "d".into(),
            variant: "v2".into(),
            decision_id: format!("dec{i}"),
            shadow: false,
        });
        // version 2 has one more input: the table gains its column
        p.inputs.push((
            "extra_feature".into(),
            Tensor {
                shape: vec![1],
                data: TensorData::Fp64(vec![7.0]),
            },
        ));
        v2.push(Entry::Prediction(p));
    }
    write(&sink, "predictions_m", &v2).await.unwrap();
    let labels: Vec<LabelRecord> = [("a0", 1.0), ("a1", 1.0), ("a2", 0.0), ("a3", 0.0), ("nope", 1.0)]
        .into_iter()
        .map(|(id, y)| LabelRecord {
            ts_us: t0 + 2 * hour,
            prediction_id: id.into(),
            row: 0,
            label: y,
        })
        .collect();
    sink.write_labels(&labels).await.unwrap();
    // a corrected label: the latest one wins (a3 stays 0 here: same value)
    let feedback: Vec<Entry> = [("dec0", 1.0), ("dec1", 0.0)]
        .into_iter()
        .map(|(id, r)| {
            Entry::Feedback(FeedbackRecord {
                ts_us: t0 + 2 * hour,
                decision_id: id.into(),
                deployment: "d".into(),
                reward: r,
            })
        })
        .collect();
    write(&sink, "feedback", &feedback).await.unwrap();

    let old_rows = lake
        .sql("SELECT count(*) FROM \"predictions_m\" WHERE extra_feature IS NULL")
        .await
        .unwrap();
    assert_eq!(count(&old_rows), 4, "version 1 rows read the new column as null");

    let options = PerformanceOptions {
        bucket: Bucket::Hour,
        ..PerformanceOptions::default()
    };
    let r = performance(&lake, "m", &options).await.unwrap();
    assert_eq!(r.score_column, "out_probabilities_1");
    assert_eq!(r.versions.len(), 2);
    let v1 = &r.versions[0];
    assert_eq!((v1.version, v1.predictions, v1.labelled), (1, 4, 4));
    assert!((v1.auc.unwrap() - 0.75).abs() < 1e-9);
    let want_ll = -((0.8f64).ln() + (0.4f64).ln() + (0.4f64).ln() + (0.8f64).ln()) / 4.0;
    assert!((v1.log_loss.unwrap() - want_ll).abs() < 1e-6, "{:?}", v1.log_loss);
    assert!((v1.positive_rate.unwrap() - 0.5).abs() < 1e-12);
    // bins of width 0.1: each score alone; ECE = mean |y - s| = (0.2 + 0.6 + 0.6 + 0.2) / 4
    assert!((v1.ece.unwrap() - 0.4).abs() < 1e-6, "{:?}", v1.ece);
    let v2 = &r.versions[1];
    assert_eq!((v2.version, v2.labelled), (2, 2));
    assert_eq!(v2.auc, Some(1.0));
    assert_eq!(r.buckets.len(), 2);
    assert!(
        r.buckets[0].bucket.as_deref().unwrap().starts_with("2024-05-01T00"),
        "{:?}",
        r.buckets[0].bucket
    );
    assert_eq!(
        (r.unmatched_labels, r.unmatched_examples.clone()),
        (1, vec!["nope".to_string()])
    );

    // An unknown model is a clear error.
    let err = performance(&lake, "other", &options).await.unwrap_err();
    assert_eq!(err.code(), "no_predictions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_days_only() {
    let (_dir, lake) = lake();
    let sink = LakeSink::new(lake.clone(), None);
    let day = 86_400_000_000i64;
    let now = now_us();
    let entries = vec![
        prediction("old", 1, now - 10 * day, [0.0, 0.0], 0.5),
        prediction("new", 1, now, [0.0, 0.0], 0.5),
    ];
    write(&sink, "predictions_m", &entries).await.unwrap();
    sink.write_labels(&[LabelRecord {
        ts_us: now - 10 * day,
        prediction_id: "old".into(),
        row: 0,
        label: 1.0,
    }])
    .await
    .unwrap();
    let removed = keel_predlog::retention::apply(&lake, 3, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(removed.iter().all(|r| r.files >= 1), "{removed:?}");
    let left = lake
        .sql("SELECT count(*) FROM \"predictions_m\" WHERE prediction_id = 'new'")
        .await
        .unwrap();
    assert_eq!(count(&left), 1);
    let all = lake.sql("SELECT count(*) FROM \"predictions_m\"").await.unwrap();
    assert_eq!(count(&all), 1);
    assert_eq!(count(&lake.sql("SELECT count(*) FROM labels").await.unwrap()), 0);
    // a second run has nothing left to do
    let again = keel_predlog::retention::apply(&lake, 3, chrono::Utc::now())
        .await
        .unwrap();
    assert!(again.iter().all(|r| r.rows.unwrap_or(0) == 0), "{again:?}");
}
