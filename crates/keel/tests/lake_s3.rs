//! The `keel` binary with its lake in an S3-compatible bucket (`--lake s3://...` or
//! $KEEL_LAKE): moto's S3 server (not written by keel's authors) on loopback, from the
//! repository's `.venv`. Skipped, saying why, only when moto is not installed (never under CI,
//! where scripts/test installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// moto's S3 server with `bucket` created, or `None` (test skipped) when moto is not installed
/// outside CI.
async fn moto(bucket: &str) -> Option<Moto> {
    let installed = Command::new(python())
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto is not installed in .venv: scripts/python-env dev installs it"
        );
        eprintln!("SKIPPED: moto is not installed in .venv (run scripts/python-env dev)");
        return None;
    }
    let port = free_port();
    let child = Command::new(python())
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto's S3 server");
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.put(format!("{}/{bucket}", moto.endpoint)).send().await
            && r.status().is_success()
        {
            return Some(moto);
        }
        assert!(Instant::now() < deadline, "moto did not start within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `keel` with the S3 settings in the standard AWS_* variables and the lake in `lake`
/// (passed as $KEEL_LAKE).
fn keel_in(home: &Path, endpoint: &str, lake: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("KEEL_AUTHOR", "tester")
        .env("KEEL_LOG", "warn")
        .env_remove("KEEL_STORE_URL")
        .env_remove("KEEL_ARTIFACTS")
        .env("KEEL_LAKE", lake)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("run keel")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

struct Workspace<'a> {
    home: &'a Path,
    endpoint: String,
    lake: String,
}

impl Workspace<'_> {
    fn run(&self, args: &[&str]) -> Output {
        keel_in(self.home, &self.endpoint, &self.lake, args)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(out.status.success(), "keel {args:?} failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    fn file(&self, name: &str, body: &str) -> String {
        let path = self.home.join(name);
        std::fs::write(&path, body).expect("write");
        path.to_str().expect("utf-8 path").to_string()
    }
}

async fn listing(endpoint: &str, bucket: &str) -> String {
    reqwest::get(format!("{endpoint}/{bucket}?list-type=2"))
        .await
        .expect("list")
        .text()
        .await
        .expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_commands_on_a_lake_in_a_bucket() {
    let Some(moto) = moto("keel-lake").await else {
        return;
    };
    let home = tempfile::tempdir().expect("tmp");
    let ws = Workspace {
        home: home.path(),
        endpoint: moto.endpoint.clone(),
        lake: "s3://keel-lake/ws".into(),
    };

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
    let objects = listing(&moto.endpoint, "keel-lake").await;
    assert!(
        objects.contains("ws/sales/_delta_log/00000000000000000001.json") && objects.contains("ws/sales/region=eu/"),
        "{objects}"
    );
    assert!(!home.path().join("lake").exists());

    // Reads: ls, versions, head by version and by time, SQL, show.
    let listed = ws.json(&["data", "ls"]);
    assert_eq!(listed[0]["name"], "sales", "{listed}");
    let versions = ws.json(&["data", "versions", "sales"]);
    assert_eq!(
        versions
            .as_array()
            .expect("list")
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
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the table is unchanged") && stderr(&out).contains("line 3"),
        "{}",
        stderr(&out)
    );
    let conflict = ws.file("conflict.csv", "id,region\n8,eu\n");
    let out = ws.run(&["data", "ingest", &conflict, "--table", "sales"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("conflicts with table"), "{}", stderr(&out));
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
    let denied = ws.run(&["--user", "ana", "data", "head", "sales"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(stderr(&denied).contains("no read grant"), "{}", stderr(&denied));
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
    let reference = ws.file("ref.csv", &rows(0.0));
    let current = ws.file("cur.csv", &rows(25.0));
    ws.json(&["data", "ingest", &reference, "--table", "reference"]);
    ws.json(&["data", "ingest", &current, "--table", "current"]);
    let drift = ws.json(&["data", "drift", "reference", "current"]);
    assert_eq!(drift["reference_rows"], 500);
    assert_eq!(drift["current_rows"], 500);
    assert_eq!(drift["drifted_columns"], json!(["a"]), "{drift}");
    let same = ws.json(&["data", "drift", "reference@v0", "reference"]);
    assert_eq!(same["drifted_columns"], json!([]), "{same}");
    let out = ws.run(&["data", "drift", "reference", "no_such_table"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no_such_table"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_bucket_or_endpoint_is_a_clear_error() {
    let Some(moto) = moto("keel-lake").await else {
        return;
    };
    let home = tempfile::tempdir().expect("tmp");
    let out = keel_in(home.path(), &moto.endpoint, "s3://no-such-bucket/ws", &["data", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(
        msg.contains("s3://no-such-bucket/ws") && msg.contains("bucket") && !msg.contains("panicked"),
        "{msg}"
    );

    let closed = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = keel_in(home.path(), &closed, "s3://keel-lake/ws", &["data", "sql", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(msg.contains("AWS_ENDPOINT_URL") && !msg.contains("panicked"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );

    let out = keel_in(home.path(), &moto.endpoint, "gs://bucket/ws", &["data", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("s3://bucket/prefix"), "{}", stderr(&out));
}

/// `keel serve --lake s3://...` logs predictions to the bucket, and the CLI reads them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_logs_predictions_to_the_bucket() {
    let Some(moto) = moto("keel-lake").await else {
        return;
    };
    let home = tempfile::tempdir().expect("tmp");
    let ws = Workspace {
        home: home.path(),
        endpoint: moto.endpoint.clone(),
        lake: "s3://keel-lake/served".into(),
    };
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/bc-lr.onnx");
    ws.json(&["model", "push", "bc-lr", model.to_str().expect("p")]);
    let (http, grpc) = (free_port(), free_port());
    let mut server = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--home")
        .arg(home.path())
        .args([
            "serve",
            "--http-addr",
            &format!("127.0.0.1:{http}"),
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--log-flush-ms",
            "100",
        ])
        .env("KEEL_AUTHOR", "tester")
        .env("KEEL_LOG", "error")
        .env("KEEL_LAKE", &ws.lake)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start keel serve");
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{base}/v2/health/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "server not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for seed in 0..5 {
        let data: Vec<f64> = (0..30).map(|i| ((i * 7 + seed * 13) % 50) as f64 / 10.0).collect();
        let body = json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": data}]});
        let r = client
            .post(format!("{base}/v2/models/bc-lr/infer"))
            .json(&body)
            .send()
            .await
            .expect("infer");
        assert_eq!(r.status(), 200);
    }
    // The data routes read the same lake: wait for the log table to appear there.
    let token = ws.json(&["access", "token", "create"])["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed: serde_json::Value = client
            .get(format!("{base}/v1/data/tables"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("tables")
            .json()
            .await
            .expect("json");
        if listed.to_string().contains("predictions_bc-lr") {
            break;
        }
        assert!(Instant::now() < deadline, "no prediction table listed: {listed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert!(server.wait().expect("wait").success());
    let n = ws.json(&["data", "sql", "SELECT count(*) AS n FROM \"predictions_bc-lr\""]);
    assert_eq!(n[0]["n"], 5);
    assert!(
        listing(&moto.endpoint, "keel-lake")
            .await
            .contains("served/predictions_bc-lr/_delta_log/")
    );
    assert!(!home.path().join("lake").exists());
}
