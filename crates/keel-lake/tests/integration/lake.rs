//! Integration tests: real files in temp dirs, real Delta tables on the local filesystem.
#![allow(clippy::unwrap_used)] // tests may unwrap (helpers outside #[test] included)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_lake::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use keel_lake::arrow::datatypes::{DataType, Field, Schema};
use keel_lake::{IngestOptions, Lake, LakeError, VersionOrTimestamp, WriteMode};

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&dir.path().join("lake")).unwrap();
    (dir, lake)
}

fn one_i64(batches: &[RecordBatch]) -> i64 {
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_csv_json_and_parquet() {
    let (dir, lake) = lake();
    let csv = write(dir.path(), "a.csv", "id,name,score\n1,ann,0.5\n2,bob,1.5\n3,cy,2.5\n");
    let report = lake.ingest("people", &csv, &IngestOptions::default()).await.unwrap();
    assert_eq!((report.rows, report.version), (3, 0));
    assert!(report.bytes > 0);

    let json = write(
        dir.path(),
        "b.jsonl",
        "{\"id\":4,\"name\":\"dee\",\"score\":3.5}\n{\"id\":5,\"name\":\"eve\",\"score\":4.5}\n",
    );
    let report = lake.ingest("people", &json, &IngestOptions::default()).await.unwrap();
    assert_eq!((report.rows, report.version), (2, 1));

    // A Parquet file written with the same schema.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![6, 7, 8])),
            Arc::new(StringArray::from(vec!["f", "g", "h"])),
            Arc::new(Float64Array::from(vec![5.5, 6.5, 7.5])),
        ],
    )
    .unwrap();
    let pq = dir.path().join("c.parquet");
    let mut w =
        keel_lake::parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&pq).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let report = lake.ingest("people", &pq, &IngestOptions::default()).await.unwrap();
    assert_eq!((report.rows, report.version), (3, 2));

    assert_eq!(rows(&lake.scan("people", None).await.unwrap()), 8);
    assert_eq!(lake.tables().await.unwrap(), vec!["people".to_string()]);
    let history = lake.history("people").await.unwrap();
    assert_eq!(history.iter().map(|h| h.version).collect::<Vec<_>>(), vec![2, 1, 0]);
    assert_eq!(history[0].rows_added, Some(3));
    assert_eq!(lake.latest_version("people").await.unwrap(), 2);
    assert!(
        lake.latest_version("nobody").await.is_err(),
        "an unknown table is an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_schema_append_then_overwrite() {
    let (dir, lake) = lake();
    let opts = IngestOptions {
        schema: Some("id:int64,v:string".into()),
        ..IngestOptions::default()
    };
    let a = write(dir.path(), "a.csv", "id,v\n1,x\n2,y\n");
    lake.ingest("t", &a, &opts).await.unwrap();
    lake.ingest("t", &a, &opts).await.unwrap();
    assert_eq!(rows(&lake.scan("t", None).await.unwrap()), 4);
    let b = write(dir.path(), "b.csv", "id,v\n9,z\n");
    let r = lake
        .ingest(
            "t",
            &b,
            &IngestOptions {
                mode: WriteMode::Overwrite,
                ..opts.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(rows(&lake.scan("t", None).await.unwrap()), 1);
    // The overwritten data is still readable at version 1.
    assert_eq!(
        rows(&lake.scan("t", Some(VersionOrTimestamp::Version(1))).await.unwrap()),
        4
    );
    // The data files of a version: two appends at version 1, one file after the overwrite.
    let v1 = lake.files("t", Some(VersionOrTimestamp::Version(1))).await.unwrap();
    assert_eq!(v1.len(), 2, "{v1:?}");
    assert!(
        v1.iter()
            .all(|p| p.is_file() && p.extension().is_some_and(|e| e == "parquet"))
    );
    assert_eq!(lake.files("t", None).await.unwrap().len(), 1);
    assert!(matches!(
        lake.files("nope", None).await,
        Err(LakeError::TableNotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_table() {
    let (dir, lake) = lake();
    let f = write(dir.path(), "p.csv", "day,region,n\n1,eu,1\n2,us,2\n3,eu,3\n");
    let opts = IngestOptions {
        partition_by: Some("region".into()),
        ..IngestOptions::default()
    };
    lake.ingest("sales", &f, &opts).await.unwrap();
    let table_dir = lake.local_root().unwrap().join("sales");
    assert!(table_dir.join("region=eu").is_dir() && table_dir.join("region=us").is_dir());
    let out = lake.sql("SELECT sum(n) FROM sales WHERE region = 'eu'").await.unwrap();
    assert_eq!(one_i64(&out), 4);
    let bad = IngestOptions {
        partition_by: Some("nope".into()),
        ..IngestOptions::default()
    };
    assert!(matches!(
        lake.ingest("sales", &f, &bad).await,
        Err(LakeError::InvalidOptions(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_by_version_and_timestamp() {
    let (dir, lake) = lake();
    let f = write(dir.path(), "a.csv", "x\n1\n2\n");
    lake.ingest("t", &f, &IngestOptions::default()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    lake.ingest("t", &f, &IngestOptions::default()).await.unwrap();

    assert_eq!(
        rows(&lake.scan("t", Some(VersionOrTimestamp::Version(0))).await.unwrap()),
        2
    );
    assert_eq!(
        rows(
            &lake
                .scan("t", Some(VersionOrTimestamp::Timestamp(between)))
                .await
                .unwrap()
        ),
        2
    );
    assert_eq!(rows(&lake.scan("t", None).await.unwrap()), 4);
    assert!(matches!(
        lake.scan("t", Some(VersionOrTimestamp::Version(7))).await,
        Err(LakeError::VersionNotFound { .. })
    ));
    let before = chrono::Utc::now() - chrono::Duration::days(1);
    let r = lake.scan("t", Some(VersionOrTimestamp::Timestamp(before))).await;
    assert!(matches!(r, Err(LakeError::VersionNotFound { .. })), "{r:?}");
    // SQL over an older version by name.
    let out = lake.sql(r#"SELECT count(*) FROM "t@v0""#).await.unwrap();
    assert_eq!(one_i64(&out), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_aggregate_and_pretty() {
    let (dir, lake) = lake();
    let f = write(dir.path(), "a.csv", "g,v\na,1\na,2\nb,10\n");
    lake.ingest("m", &f, &IngestOptions::default()).await.unwrap();
    let out = lake
        .sql("SELECT g, sum(v) AS s FROM m GROUP BY g ORDER BY g")
        .await
        .unwrap();
    let text = keel_lake::pretty(&out).unwrap();
    assert!(text.contains("| a | 3  |") && text.contains("| b | 10 |"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_csv_names_line_and_keeps_version() {
    let (dir, lake) = lake();
    let good = write(dir.path(), "good.csv", "id,v\n1,2\n");
    lake.ingest("t", &good, &IngestOptions::default()).await.unwrap();
    // Row 4 of the file (line 4, counting the header) has a non-integer id. Small batches make the
    // error surface after earlier batches were already handed to the writer.
    let bad = write(dir.path(), "bad.csv", "id,v\n3,4\n5,6\nseven,8\n9,10\n");
    let opts = IngestOptions {
        batch_size: 1,
        ..IngestOptions::default()
    };
    let err = lake.ingest("t", &bad, &opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LakeError::Input { .. }), "{msg}");
    assert!(msg.contains("bad.csv") && msg.contains("line 4"), "{msg}");
    let history = lake.history("t").await.unwrap();
    assert_eq!(history[0].version, 0, "a failed ingest must not commit");
    assert_eq!(rows(&lake.scan("t", None).await.unwrap()), 1);

    // Wrong number of fields is reported with its line too.
    let ragged = write(dir.path(), "ragged.csv", "id,v\n1,2\n3\n");
    let msg = lake
        .ingest("t", &ragged, &IngestOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("ragged.csv") && msg.contains("line 3"), "{msg}");
    assert_eq!(lake.history("t").await.unwrap()[0].version, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_conflict_is_refused() {
    let (dir, lake) = lake();
    let a = write(dir.path(), "a.csv", "id,v\n1,2\n");
    lake.ingest("t", &a, &IngestOptions::default()).await.unwrap();
    let b = write(dir.path(), "b.csv", "id,w\n1,hello\n");
    let err = lake.ingest("t", &b, &IngestOptions::default()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LakeError::SchemaConflict { .. }), "{msg}");
    assert!(
        msg.contains("file schema: [id:Int64, w:Utf8]") && msg.contains("table schema: [id:Int64, v:Int64]"),
        "{msg}"
    );
    assert_eq!(lake.history("t").await.unwrap()[0].version, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_roots_refused() {
    let (dir, lake) = lake();
    let a = write(dir.path(), "a.csv", "id\n1\n");
    for name in ["../x", "a/b", "", "Upper", ".hidden"] {
        let err = lake.ingest(name, &a, &IngestOptions::default()).await.unwrap_err();
        assert!(matches!(err, LakeError::InvalidTableName { .. }), "{name}: {err}");
        assert!(err.to_string().contains("invalid table name"));
    }
    assert!(!dir.path().join("x").exists());
    assert!(matches!(
        lake.scan("missing", None).await,
        Err(LakeError::TableNotFound { .. })
    ));
    assert!(matches!(
        Lake::open(Path::new("s3://bucket/lake")),
        Err(LakeError::UnsupportedRoot { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_csv_with_explicit_schema_on_new_table() {
    let (dir, lake) = lake();
    let bad = write(dir.path(), "bad.csv", "id,v\n1,2\n3,x\n");
    let opts = IngestOptions {
        schema: Some("id:int64,v:int64".into()),
        ..IngestOptions::default()
    };
    let msg = lake.ingest("t", &bad, &opts).await.unwrap_err().to_string();
    assert!(msg.contains("bad.csv") && msg.contains("line 3"), "{msg}");
    assert!(matches!(lake.history("t").await, Err(LakeError::TableNotFound { .. })));
}

/// A log's batch usually falls within one day: it goes straight to that day's partition (no
/// split); a batch across midnight is split. Either way each row lands in its own day's
/// partition, with the right partition value, as other readers see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appender_writes_one_day_batches_whole_and_splits_batches_across_days() {
    use keel_lake::arrow::array::Date32Array;
    let (_dir, lake) = lake();
    let batch = |days: Vec<i32>, first_id: i64| {
        let ids: Vec<i64> = (first_id..first_id + days.len() as i64).collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("date", DataType::Date32, false),
                Field::new("id", DataType::Int64, false),
            ])),
            vec![Arc::new(Date32Array::from(days)), Arc::new(Int64Array::from(ids))],
        )
        .unwrap()
    };
    // 20_000 is 2024-10-04, 20_001 the day after.
    let mut appender = lake.appender("log", &["date"]);
    assert_eq!(appender.append(vec![batch(vec![20_000; 3], 1)]).await.unwrap(), 0);
    assert_eq!(appender.append(vec![batch(vec![20_000; 4], 4)]).await.unwrap(), 1);
    assert_eq!(
        appender
            .append(vec![batch(vec![20_000, 20_001, 20_000, 20_001, 20_001], 8)])
            .await
            .unwrap(),
        2
    );
    let out = lake
        .sql("SELECT CAST(date AS VARCHAR) AS day, count(*) AS n, sum(id) AS ids FROM log GROUP BY date ORDER BY date")
        .await
        .unwrap();
    let text = keel_lake::pretty(&out).unwrap();
    // 2024-10-04: ids 1..=7, 8 and 10; 2024-10-05: ids 9, 11 and 12
    assert!(text.contains("| 2024-10-04 | 9 | 46  |"), "{text}");
    assert!(text.contains("| 2024-10-05 | 3 | 32  |"), "{text}");
    let files = lake.files("log", None).await.unwrap();
    let paths: Vec<String> = files.paths().iter().map(|p| p.to_string_lossy().into_owned()).collect();
    assert_eq!(paths.len(), 4, "{paths:?}");
    assert_eq!(
        paths.iter().filter(|p| p.contains("date=2024-10-04")).count(),
        3,
        "{paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|p| p.contains("date=2024-10-05")).count(),
        1,
        "{paths:?}"
    );
    // Partition pruning reads the files' partition values: a wrong one would lose rows here.
    let pruned = lake
        .sql("SELECT count(*) AS n FROM log WHERE date = DATE '2024-10-05'")
        .await
        .unwrap();
    assert!(keel_lake::pretty(&pruned).unwrap().contains("| 3 |"));
}

/// An appender keeps the table open between appends: each append is one version, partitioned
/// like the table; a batch with a new column takes the general path (the schema evolves) and
/// the appender goes on from there; another writer's commits in between are not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appender_appends_versions_and_evolves_the_schema() {
    let (_dir, lake) = lake();
    let batch = |day: &str, ids: Vec<i64>, extra: bool| {
        let mut fields = vec![
            Field::new("day", DataType::Utf8, true),
            Field::new("id", DataType::Int64, true),
            Field::new("score", DataType::Float64, true),
        ];
        let n = ids.len();
        let mut columns: Vec<keel_lake::arrow::array::ArrayRef> = vec![
            Arc::new(StringArray::from(vec![day; n])),
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Float64Array::from(
                ids.iter().map(|i| *i as f64 / 2.0).collect::<Vec<_>>(),
            )),
        ];
        if extra {
            fields.push(Field::new("note", DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from(vec!["new"; n])));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    };
    let mut appender = lake.appender("log", &["day"]);
    assert_eq!(appender.append(vec![batch("d1", vec![1, 2], false)]).await.unwrap(), 0);
    assert_eq!(appender.append(vec![batch("d1", vec![3], false)]).await.unwrap(), 1);
    assert_eq!(appender.append(vec![batch("d2", vec![4, 5], false)]).await.unwrap(), 2);
    // Another writer commits meanwhile: the appender's next version comes after it.
    lake.append("log", vec![batch("d2", vec![6], false)], &["day"])
        .await
        .unwrap();
    assert_eq!(appender.append(vec![batch("d3", vec![7], false)]).await.unwrap(), 4);
    // A new column: the schema evolves, old rows read it as null.
    assert_eq!(appender.append(vec![batch("d3", vec![8], true)]).await.unwrap(), 5);
    assert_eq!(appender.append(vec![batch("d3", vec![9], true)]).await.unwrap(), 6);
    let out = lake
        .sql("SELECT count(*) AS n, count(note) AS notes, count(DISTINCT day) AS days, sum(id) AS ids FROM log")
        .await
        .unwrap();
    let text = keel_lake::pretty(&out).unwrap();
    assert!(text.contains("| 9 | 2     | 3    | 45  |"), "{text}");
    let files = lake.files("log", None).await.unwrap();
    assert!(
        files.paths().iter().all(|p| p.to_string_lossy().contains("day=")),
        "partitioned"
    );
    assert_eq!(files.paths().len(), 7, "one file per partition per append");
    assert!(appender.append(vec![]).await.is_err());

    // Compaction: one file per partition, the same rows, a new version; then nothing to do.
    let report = lake.compact("log", None, None).await.unwrap();
    assert!(report.changed && report.version == 7, "{report:?}");
    assert_eq!(
        (report.files_removed, report.files_added, report.files_vacuumed),
        (7, 3, 0)
    );
    assert_eq!(lake.files("log", None).await.unwrap().paths().len(), 3);
    let again = lake.sql("SELECT count(*) AS n, sum(id) AS ids FROM log").await.unwrap();
    let text = keel_lake::pretty(&again).unwrap();
    assert!(text.contains("| 9 | 45  |"), "{text}");
    let before = lake.scan("log", Some(VersionOrTimestamp::Version(6))).await.unwrap();
    assert_eq!(rows(&before), 9, "older versions stay readable");
    let report = lake.compact("log", None, Some(0)).await.unwrap();
    assert!(!report.changed, "{report:?}");
    assert_eq!(
        report.files_vacuumed, 7,
        "the small files are deleted once nothing keeps them"
    );
    // The appender goes on after compaction (the vacuum logged its start and end: 8 and 9).
    appender.reopen();
    assert_eq!(appender.append(vec![batch("d3", vec![10], true)]).await.unwrap(), 10);
}
