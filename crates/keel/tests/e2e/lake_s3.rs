//! The `keel` binary with its lake in an S3-compatible bucket (`--lake s3://...` or
//! $KEEL_LAKE): moto's S3 server (not written by keel's authors) on loopback, from the
//! repository's `.venv`. Skipped, saying why, only when moto is not installed (never under CI,
//! where scripts/test installs it).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    Keel, Moto, Ports, READY, assert_refused, assert_says, eventually, free_port, items, repo_file, s3_env, stderr,
};

/// A workspace whose lake is `lake` in moto's bucket: the S3 settings in the standard AWS_*
/// variables, the lake in $KEEL_LAKE.
fn in_bucket(moto: &Moto, lake: &str) -> Keel {
    Keel::new().env("KEEL_LOG", "warn").envs(s3_env(&moto.endpoint, lake))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_commands_on_a_lake_in_a_bucket() {
    let Some(moto) = Moto::start(&["keel-lake"], false).await else {
        return;
    };
    let ws = in_bucket(&moto, "s3://keel-lake/ws");

    // Ingest: CSV partitioned, then JSON lines appended; the --lake flag works like $KEEL_LAKE.
    let csv = ws.file("sales.csv", "id,region,amount\n1,eu,10.5\n2,us,20.25\n3,eu,30.0\n");
    let r = ws.json(&["data", "ingest", &csv, "--table", "sales", "--partition-by", "region"]);
    assert_eq!((r["rows"].as_u64(), r["version"].as_u64()), (Some(3), Some(0)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let between = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let jsonl = ws.file(
        "more.jsonl",
        "{\"id\":4,\"region\":\"eu\",\"amount\":1.5}\n{\"id\":5,\"region\":\"apac\",\"amount\":2.5}\n",
    );
    let r = ws.json(&[
        "--lake",
        "s3://keel-lake/ws",
        "data",
        "ingest",
        &jsonl,
        "--table",
        "sales",
    ]);
    assert_eq!(r["version"], 1);

    // The tables are in the bucket, under the prefix; the workspace folder holds none.
    let objects = moto.listing("keel-lake");
    assert!(
        objects.contains("ws/sales/_delta_log/00000000000000000001.json") && objects.contains("ws/sales/region=eu/"),
        "{objects}"
    );
    assert!(!ws.home().join("lake").exists());

    // Reads: ls, versions, head by version and by time, SQL, show.
    let listed = ws.json(&["data", "ls"]);
    assert_eq!(listed[0]["name"], "sales", "{listed}");
    let versions = ws.json(&["data", "versions", "sales"]);
    assert_eq!(
        items(&versions)
            .iter()
            .map(|v| v["version"].as_u64())
            .collect::<Vec<_>>(),
        vec![Some(1), Some(0)]
    );
    let v0 = ws.json(&["data", "head", "sales", "--version", "0"]);
    assert_eq!(v0.as_array().map(Vec::len), Some(3));
    let at = ws.json(&["data", "head", "sales", "--at", &between]);
    assert_eq!(at.as_array().map(Vec::len), Some(3), "{at}");
    let n = ws.json(&["data", "sql", "SELECT count(*) AS n, sum(amount) AS total FROM sales"]);
    assert_eq!(n, json!([{"n": 5, "total": 64.75}]));
    let old = ws.json(&["data", "sql", "SELECT count(*) AS n FROM \"sales@v0\""]);
    assert_eq!(old[0]["n"], 3);
    let shown = ws.json(&["data", "show", "sales"]);
    assert_eq!(shown["catalog"]["owner_team"].as_str().map(str::is_empty), Some(false));
    assert_eq!(shown["versions"].as_array().map(Vec::len), Some(2));

    // Bad input is refused and leaves the table at version 1.
    let bad = ws.file("bad.csv", "id,region,amount\n6,eu,1.0\n7,eu,lots\n");
    let out = ws.run(&["data", "ingest", &bad, "--table", "sales"]);
    assert_refused(&out, "the table is unchanged");
    assert_says(&out, "line 3");
    let conflict = ws.file("conflict.csv", "id,region\n8,eu\n");
    assert_refused(
        &ws.run(&["data", "ingest", &conflict, "--table", "sales"]),
        "conflicts with table",
    );
    assert_eq!(
        ws.json(&["data", "versions", "sales"]).as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(ws.json(&["data", "sql", "SELECT count(*) AS n FROM sales"])[0]["n"], 5);

    // Overwrite.
    let replace = ws.file("replace.csv", "id,region,amount\n9,us,9.0\n");
    let r = ws.json(&["data", "ingest", &replace, "--table", "sales", "--overwrite"]);
    assert_eq!(r["version"], 2);
    assert_eq!(ws.json(&["data", "sql", "SELECT count(*) AS n FROM sales"])[0]["n"], 1);

    // Access checks hold as on a local lake: ana has no grant.
    assert_refused(&ws.run(&["--user", "ana", "data", "head", "sales"]), "no read grant");
    let listed = ws.json(&["--user", "ana", "data", "ls"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0));

    // Assessment of a table in the bucket (its files are fetched to a temporary folder).
    let mut events = String::from("ts,x,y\n");
    for i in 0..400 {
        let x = (i * 37 % 101) as f64 / 50.0 - 1.0;
        let y = u8::from(x + ((i * 13 % 7) as f64 - 3.0) / 6.0 > 0.0);
        let ts = chrono::DateTime::from_timestamp(1_704_067_200 + i * 60, 0).expect("time");
        events.push_str(&format!("{},{x:.4},{y}\n", ts.to_rfc3339()));
    }
    let events = ws.file("events.csv", &events);
    ws.json(&["data", "ingest", &events, "--table", "events"]);
    let report = ws.json(&[
        "data",
        "assess",
        "events",
        "--target",
        "y",
        "--time",
        "ts",
        "--no-baseline",
        "--now",
        "2024-01-02T00:00:00Z",
    ]);
    assert_eq!(report["rows"], 400);
    assert_eq!(report["target"]["column"], "y");

    // Drift between two lake tables (and a table at an older version).
    let rows = |shift: f64| {
        let mut s = String::from("a,b\n");
        for i in 0..500 {
            s.push_str(&format!("{},{}\n", (i % 50) as f64 + shift, i % 7));
        }
        s
    };
    let reference = ws.file("ref.csv", rows(0.0));
    let current = ws.file("cur.csv", rows(25.0));
    ws.json(&["data", "ingest", &reference, "--table", "reference"]);
    ws.json(&["data", "ingest", &current, "--table", "current"]);
    let drift = ws.json(&["data", "drift", "reference", "current"]);
    assert_eq!(drift["reference_rows"], 500);
    assert_eq!(drift["current_rows"], 500);
    assert_eq!(drift["drifted_columns"], json!(["a"]), "{drift}");
    let same = ws.json(&["data", "drift", "reference@v0", "reference"]);
    assert_eq!(same["drifted_columns"], json!([]), "{same}");
    assert_refused(
        &ws.run(&["data", "drift", "reference", "no_such_table"]),
        "no_such_table",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_bucket_or_endpoint_is_a_clear_error() {
    let Some(moto) = Moto::start(&["keel-lake"], false).await else {
        return;
    };
    let keel = Keel::new().env("KEEL_LOG", "warn");
    // `keel ARGS...` with the lake `lake` behind the S3 endpoint `endpoint`.
    let run = |endpoint: &str, lake: &str, args: &[&str]| {
        keel.command(args)
            .envs(s3_env(endpoint, lake))
            .output()
            .expect("run keel")
    };
    let out = run(&moto.endpoint, "s3://no-such-bucket/ws", &["data", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(
        msg.contains("s3://no-such-bucket/ws") && msg.contains("bucket") && !msg.contains("panicked"),
        "{msg}"
    );

    let closed = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = run(&closed, "s3://keel-lake/ws", &["data", "sql", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(msg.contains("AWS_ENDPOINT_URL") && !msg.contains("panicked"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );

    assert_refused(
        &run(&moto.endpoint, "gs://bucket/ws", &["data", "ls"]),
        "s3://bucket/prefix",
    );
}

/// `keel serve --lake s3://...` logs predictions to the bucket, and the CLI reads them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_logs_predictions_to_the_bucket() {
    let Some(moto) = Moto::start(&["keel-lake"], false).await else {
        return;
    };
    let ws = in_bucket(&moto, "s3://keel-lake/served");
    ws.json(&["model", "push", "bc-lr", &repo_file("fixtures/models/bc-lr.onnx")]);
    let server = ws.serve_on(Ports::free(), &["--log-flush-ms", "100"], &[("KEEL_LOG", "error")]);
    server.wait_for(READY, Duration::from_secs(60)).await;
    for seed in 0..5 {
        let data: Vec<f64> = (0..30).map(|i| ((i * 7 + seed * 13) % 50) as f64 / 10.0).collect();
        let body = json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": data}]});
        let (status, body) = server.post("/v2/models/bc-lr/infer", &body).await;
        assert_eq!(status, 200, "{body}");
    }
    // The data routes read the same lake: wait for the log table to appear there.
    let token = ws.json(&["access", "token", "create", "--scope", "data:read"])["token"]
        .as_str()
        .expect("token")
        .to_owned();
    eventually(Duration::from_secs(30), Duration::from_millis(200), async || {
        let listed: serde_json::Value = server
            .client
            .get(server.url("/v1/data/tables"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("tables")
            .json()
            .await
            .expect("json");
        if listed.to_string().contains("predictions_bc-lr") {
            Ok(())
        } else {
            Err(format!("no prediction table listed: {listed}"))
        }
    })
    .await;
    server.stop();
    let n = ws.json(&["data", "sql", "SELECT count(*) AS n FROM \"predictions_bc-lr\""]);
    assert_eq!(n[0]["n"], 5);
    assert!(
        moto.listing("keel-lake")
            .contains("served/predictions_bc-lr/_delta_log/")
    );
    assert!(!ws.home().join("lake").exists());
}
