//! A lake in an S3-compatible bucket: moto's S3 server (a server keel's authors did not write)
//! on loopback, from the repository's `.venv` (scripts/python-env dev installs it). Skipped,
//! saying why, only when moto is not installed (never under CI, where scripts/test installs it).
#![allow(clippy::unwrap_used)] // tests may unwrap (helpers outside #[test] included)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deltalake::kernel::transaction::TransactionError;
use deltalake::logstore::CommitOrBytes;
use keel_lake::arrow::array::{Int64Array, RecordBatch};
use keel_lake::{IngestOptions, Lake, LakeError, VersionOrTimestamp, WriteMode};

use crate::moto::Moto;

fn config(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("aws_endpoint", endpoint.to_string()),
        ("aws_allow_http", "true".into()),
        ("aws_access_key_id", "test".into()),
        ("aws_secret_access_key", "test".into()),
        ("aws_region", "us-east-1".into()),
    ]
}

async fn open(endpoint: &str, location: &str) -> keel_lake::Result<Lake> {
    let config = config(endpoint);
    let pairs: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Lake::open_location_with(location, &pairs).await
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn count(batches: &[RecordBatch]) -> i64 {
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_in_a_bucket_ingest_time_travel_sql_and_refusals() {
    let Some(moto) = Moto::start(&["lake"], true).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lake = open(&moto.endpoint, "s3://lake/team-a").await.unwrap();
    assert_eq!(lake.location(), "s3://lake/team-a/");
    assert!(lake.local_root().is_none());
    assert!(lake.tables().await.unwrap().is_empty());

    // Version 0 from CSV, partitioned; version 1 appended from JSON lines.
    let opts = IngestOptions {
        partition_by: Some("region".into()),
        ..IngestOptions::default()
    };
    let csv = write(
        dir.path(),
        "a.csv",
        "id,region,amount\n1,eu,10.5\n2,us,20.25\n3,eu,30.0\n",
    );
    let r0 = lake.ingest("sales", &csv, &opts).await.unwrap();
    assert_eq!((r0.rows, r0.version), (3, 0));
    // Commit times come from the objects' Last-Modified, which S3 gives to the second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let jsonl = write(
        dir.path(),
        "b.jsonl",
        "{\"id\":4,\"region\":\"eu\",\"amount\":1.5}\n{\"id\":5,\"region\":\"apac\",\"amount\":2.5}\n",
    );
    let r1 = lake.ingest("sales", &jsonl, &opts).await.unwrap();
    assert_eq!((r1.rows, r1.version), (2, 1));

    // The objects are in the bucket under the prefix, partitioned, and nothing is local.
    let objects = moto.listing("lake");
    for key in [
        "team-a/sales/_delta_log/00000000000000000000.json",
        "team-a/sales/_delta_log/00000000000000000001.json",
        "team-a/sales/region=apac/",
    ] {
        assert!(objects.contains(key), "{key} missing from {objects}");
    }
    assert!(
        !objects.contains("commit-check"),
        "the commit check cleans up: {objects}"
    );

    assert_eq!(lake.tables().await.unwrap(), vec!["sales".to_string()]);
    let n = lake
        .sql("SELECT count(*) FROM sales WHERE region = 'eu'")
        .await
        .unwrap();
    assert_eq!(count(&n), 3);
    let old = lake
        .sql_on("SELECT count(*) FROM \"sales@v0\"", &["sales".to_string()])
        .await
        .unwrap();
    assert_eq!(count(&old), 3);
    let rows = |b: &[RecordBatch]| b.iter().map(RecordBatch::num_rows).sum::<usize>();
    assert_eq!(rows(&lake.scan("sales", None).await.unwrap()), 5);
    let v0 = lake.scan("sales", Some(VersionOrTimestamp::Version(0))).await.unwrap();
    assert_eq!(rows(&v0), 3);
    let at = lake
        .head("sales", Some(VersionOrTimestamp::Timestamp(between)), 100)
        .await
        .unwrap();
    assert_eq!(rows(&at), 3, "the table as it was between the two commits");
    let before = chrono::Utc::now() - chrono::Duration::days(1);
    assert!(matches!(
        lake.head("sales", Some(VersionOrTimestamp::Timestamp(before)), 1).await,
        Err(LakeError::VersionNotFound { .. })
    ));
    assert!(matches!(
        lake.scan("sales", Some(VersionOrTimestamp::Version(7))).await,
        Err(LakeError::VersionNotFound { .. })
    ));
    let history = lake.history("sales").await.unwrap();
    assert_eq!(history.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 0]);
    assert_eq!(history[0].rows_added, Some(2));

    // The data files as local copies (partition folders kept), gone once dropped.
    let files = lake.files("sales", None).await.unwrap();
    assert!(files.is_copy());
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(files.iter().all(|p| {
        p.is_file()
            && p.extension().is_some_and(|e| e == "parquet")
            && p.parent()
                .and_then(Path::file_name)
                .is_some_and(|d| d.to_string_lossy().starts_with("region="))
    }));
    let copy = files[0].clone();
    drop(files);
    assert!(!copy.exists());

    // Bad input is refused and the table stays at version 1.
    let bad = write(dir.path(), "bad.csv", "id,region,amount\n6,eu,1.0\n7,eu,lots\n");
    let msg = lake.ingest("sales", &bad, &opts).await.unwrap_err().to_string();
    assert!(msg.contains("bad.csv") && msg.contains("line 3"), "{msg}");
    let conflict = write(dir.path(), "c.csv", "id,region\n8,eu\n");
    let err = lake.ingest("sales", &conflict, &opts).await.unwrap_err();
    assert!(matches!(err, LakeError::SchemaConflict { .. }), "{err}");
    assert_eq!(lake.history("sales").await.unwrap()[0].version, 1);
    assert_eq!(rows(&lake.scan("sales", None).await.unwrap()), 5);
    // A new table whose first file is bad is not created.
    let typed = IngestOptions {
        schema: Some("id:int64,region:string,amount:double".into()),
        ..IngestOptions::default()
    };
    let err = lake.ingest("fresh", &bad, &typed).await.unwrap_err();
    assert!(matches!(err, LakeError::Input { .. }), "{err}");
    assert!(matches!(
        lake.history("fresh").await,
        Err(LakeError::TableNotFound { .. })
    ));
    assert_eq!(lake.tables().await.unwrap(), vec!["sales".to_string()]);

    // Overwrite: a new version with the new rows; the old one stays readable.
    let replace = write(dir.path(), "r.csv", "id,region,amount\n9,us,9.0\n");
    let over = IngestOptions {
        mode: WriteMode::Overwrite,
        ..opts.clone()
    };
    assert_eq!(lake.ingest("sales", &replace, &over).await.unwrap().version, 2);
    assert_eq!(rows(&lake.scan("sales", None).await.unwrap()), 1);
    assert_eq!(
        rows(&lake.scan("sales", Some(VersionOrTimestamp::Version(1))).await.unwrap()),
        5
    );

    // Arrow batches: append with a new column (schema merge), then delete and vacuum.
    let batch = lake.scan("sales", None).await.unwrap();
    let v = lake.append("copy", batch, &[]).await.unwrap();
    assert_eq!(v, 0);
    let (deleted, _) = lake.delete_where("copy", "id = 9").await.unwrap();
    assert_eq!(deleted, Some(1));
    assert_eq!(rows(&lake.scan("copy", None).await.unwrap()), 0);

    // Another lake under another prefix of the same bucket sees none of these tables.
    let other = open(&moto.endpoint, "s3://lake/team-b").await.unwrap();
    assert!(other.tables().await.unwrap().is_empty());
}

/// Two writers racing: the bucket's conditional put lets exactly one create a version's commit
/// file; delta-rs moves the other to the next version, so no write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_commits_never_both_win() {
    let Some(moto) = Moto::start(&["race"], true).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lake = open(&moto.endpoint, "s3://race").await.unwrap();
    let csv = write(dir.path(), "a.csv", "id\n1\n2\n");
    lake.ingest("t", &csv, &IngestOptions::default()).await.unwrap();

    // The log store itself: version 1's commit file can be created once, never replaced.
    let delta = lake.delta_table("t").await.unwrap();
    let store = delta.log_store();
    let entry = |op: &str| {
        CommitOrBytes::LogBytes(format!("{{\"commitInfo\":{{\"timestamp\":1,\"operation\":\"{op}\"}}}}\n").into())
    };
    let first = store.write_commit_entry(1, entry("FIRST"), uuid::Uuid::new_v4()).await;
    assert!(first.is_ok(), "{first:?}");
    let second = store.write_commit_entry(1, entry("SECOND"), uuid::Uuid::new_v4()).await;
    assert!(
        matches!(second, Err(TransactionError::VersionAlreadyExists(1))),
        "{second:?}"
    );
    let kept = store.read_commit_entry(1).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&kept).contains("FIRST"));

    // Writers through separate clients, all at once: every append lands, each in its own version.
    let mut tasks = Vec::new();
    for i in 0..4 {
        let endpoint = moto.endpoint.clone();
        let file = write(dir.path(), &format!("w{i}.csv"), &format!("id\n{}\n", 10 + i));
        tasks.push(tokio::spawn(async move {
            let lake = open(&endpoint, "s3://race").await.unwrap();
            lake.ingest("t", &file, &IngestOptions::default())
                .await
                .unwrap()
                .version
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, vec![2, 3, 4, 5]);
    assert_eq!(count(&lake.sql("SELECT count(*) FROM t").await.unwrap()), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_bucket_or_endpoint_says_what_to_fix() {
    let Some(moto) = Moto::start(&["real"], true).await else {
        return;
    };
    let err = open(&moto.endpoint, "s3://no-such-bucket/lake").await.unwrap_err();
    assert_eq!(err.code(), "storage_error", "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("s3://no-such-bucket/lake") && msg.contains("bucket"),
        "{msg}"
    );

    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = open(&format!("http://127.0.0.1:{port}"), "s3://real/lake")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.code(), "storage_error", "{msg}");
    assert!(msg.contains("AWS_ENDPOINT_URL"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    for bad in ["s3://", "gs://bucket/lake", "s3://bucket/lake?endpoint=x"] {
        let err = open(&moto.endpoint, bad).await.unwrap_err();
        assert_eq!(err.code(), "unsupported_root", "{bad}: {err}");
    }
    let err = Lake::open_location_with("s3://real/lake", &[("aws_no_such_setting", "1")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("aws_no_such_setting"), "{err}");
}
