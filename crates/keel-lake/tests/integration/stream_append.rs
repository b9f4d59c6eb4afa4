//! `Lake::append_stream`: many batches, one version, bounded memory; nothing commits unless
//! the producer finishes. Real Delta tables in temp dirs.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;

use keel_lake::Lake;
use keel_lake::arrow::array::{Int64Array, RecordBatch, StringArray};
use keel_lake::arrow::datatypes::{DataType, Field, Schema};

fn batch(from: i64, n: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let ids: Vec<i64> = (from..from + n).collect();
    let names: Vec<String> = ids.iter().map(|i| format!("c{i}")).collect();
    RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))],
    )
    .unwrap()
}

async fn count_and_sum(lake: &Lake, table: &str) -> (i64, i64) {
    let out = lake
        .sql(&format!("SELECT COUNT(*), SUM(id) FROM {table}"))
        .await
        .unwrap();
    let column = |i: usize| out[0].column(i).as_any().downcast_ref::<Int64Array>().unwrap().value(0);
    (column(0), column(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_batches_become_one_version_of_a_new_table() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&dir.path().join("lake")).unwrap();
    let mut sink = lake.append_stream("scores").unwrap();
    for chunk in 0..20 {
        sink.send(batch(chunk * 1000, 1000)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), Some(0));
    assert_eq!(count_and_sum(&lake, "scores").await, (20_000, (0..20_000).sum()));

    // A second stream appends one more version.
    let mut sink = lake.append_stream("scores").unwrap();
    sink.send(batch(20_000, 10)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), Some(1));
    assert_eq!(count_and_sum(&lake, "scores").await.0, 20_010);

    // Nothing sent: nothing committed.
    let sink = lake.append_stream("scores").unwrap();
    assert_eq!(sink.finish().await.unwrap(), None);
    assert_eq!(lake.history("scores").await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_dropped_before_finish_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&dir.path().join("lake")).unwrap();
    let mut sink = lake.append_stream("scores").unwrap();
    sink.send(batch(0, 100)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), Some(0));

    // A job that fails half-way drops its stream: the table stays at version 0.
    let mut sink = lake.append_stream("scores").unwrap();
    for chunk in 1..10 {
        sink.send(batch(chunk * 100, 100)).await.unwrap();
    }
    drop(sink);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(lake.history("scores").await.unwrap().len(), 1);
    assert_eq!(count_and_sum(&lake, "scores").await.0, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_table_name_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&dir.path().join("lake")).unwrap();
    let refused = lake.append_stream("../escape").err().unwrap();
    assert!(refused.to_string().contains("escape"), "{refused}");
    assert!(!dir.path().join("escape").exists());
}
