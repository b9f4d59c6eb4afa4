//! The distributed engine end to end: a Ballista scheduler and two executors started with
//! `keel cluster` as real processes on loopback ports score a lake table with
//! `keel batch score --engine ballista://...`, and the table written equals, row for row, the
//! one an in-process run writes from the same input. Built with `--features cluster` only.

#[allow(dead_code, unused_imports)]
#[path = "e2e/support.rs"]
mod support;

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{Keel, eventually, free_port, repo_file};

/// A `keel cluster` process, killed and reaped on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn start(keel: &Keel, args: &[&str]) -> Process {
        let child = keel
            .command(args)
            .env("KEEL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start keel cluster");
        Process(child)
    }

    /// Fails the test if the process has exited (a bind or startup failure).
    fn running(&mut self) -> Result<(), String> {
        match self.0.try_wait() {
            Ok(Some(status)) => panic!("keel cluster exited early with {status}"),
            _ => Ok(()),
        }
    }
}

/// Waits until something accepts connections on `port` while `process` keeps running.
async fn listening(process: &mut Process, port: u16) {
    eventually(Duration::from_secs(60), Duration::from_millis(50), async || {
        process.running()?;
        std::net::TcpStream::connect(("127.0.0.1", port))
            .map(drop)
            .map_err(|e| format!("nothing listens on {port} within 60 s: {e}"))
    })
    .await;
}

/// Rows of `table` as JSON, every column but the time of scoring, in customer order.
fn rows(keel: &Keel, table: &str) -> Vec<Value> {
    let out = keel.json(&[
        "data",
        "sql",
        &format!("SELECT * EXCLUDE (scored_at) FROM {table} ORDER BY customer_id"),
    ]);
    out.as_array().expect("rows").clone()
}

/// Each column's Arrow type in `table`.
fn types(keel: &Keel, table: &str, columns: &[&str]) -> Vec<Value> {
    let select: Vec<String> = columns
        .iter()
        .map(|c| format!("arrow_typeof(\"{c}\") AS \"{c}\""))
        .collect();
    let out = keel.json(&[
        "data",
        "sql",
        &format!("SELECT {} FROM {table} LIMIT 1", select.join(", ")),
    ]);
    out.as_array().expect("rows").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_and_two_executors_score_a_table_as_the_in_process_run_does() {
    let keel = Keel::quiet();
    keel.json(&[
        "model",
        "push",
        "bc",
        &repo_file("fixtures/models/bc-lr.onnx"),
        "--alias",
        "production",
    ]);
    let expected: Value =
        serde_json::from_slice(&std::fs::read(repo_file("fixtures/models/expected.json")).expect("read"))
            .expect("json");
    let fixture: Vec<Vec<f64>> = serde_json::from_value(expected["models"]["bc-lr"]["rows"].clone()).expect("rows");
    // Four appends: four data files, so the scan is split into tasks the executors share.
    let parts = 4;
    let per_part = 1_500;
    for part in 0..parts {
        let mut csv = String::from("customer_id");
        for j in 0..30 {
            csv.push_str(&format!(",input_{j}"));
        }
        csv.push('\n');
        for r in 0..per_part {
            let i = part * per_part + r;
            csv.push_str(&format!("c{i:06}"));
            for v in &fixture[i % fixture.len()] {
                csv.push_str(&format!(",{}", v + (i % 97) as f64 * 0.01));
            }
            csv.push('\n');
        }
        let file = keel.file(&format!("customers-{part}.csv"), csv);
        keel.json(&["data", "ingest", &file, "--table", "customers"]);
    }
    let total = (parts * per_part) as u64;

    let local = keel.json(&[
        "batch",
        "score",
        "bc",
        "--from",
        "customers",
        "--into",
        "scores_local",
        "--keep",
        "customer_id",
    ]);
    assert_eq!(local["rows"], total, "{local}");
    assert_eq!(local["engine"], "in-process");

    let scheduler_port = free_port();
    let scheduler_bind = format!("127.0.0.1:{scheduler_port}");
    let mut scheduler = Process::start(&keel, &["cluster", "scheduler", "--bind", &scheduler_bind]);
    listening(&mut scheduler, scheduler_port).await;
    let mut executors = Vec::new();
    for _ in 0..2 {
        let (flight, grpc) = (free_port(), free_port());
        let bind = format!("127.0.0.1:{flight}");
        let mut executor = Process::start(
            &keel,
            &[
                "cluster",
                "executor",
                "--scheduler",
                &scheduler_bind,
                "--bind",
                &bind,
                "--grpc-port",
                &grpc.to_string(),
                "--concurrent-tasks",
                "1",
            ],
        );
        // Its Flight service starts once it has joined the scheduler.
        listening(&mut executor, flight).await;
        executors.push(executor);
    }

    let engine = format!("ballista://{scheduler_bind}");
    let args = [
        "batch",
        "score",
        "bc",
        "--from",
        "customers",
        "--into",
        "scores_cluster",
        "--keep",
        "customer_id",
        "--engine",
        &engine,
    ];
    let cluster = keel.json(&args);
    assert_eq!(cluster["rows"], total, "{cluster}");
    assert_eq!(cluster["engine"], engine.as_str());
    assert_eq!(cluster["run_id"], local["run_id"], "the same run id semantics");
    assert_eq!(cluster["model_version"], local["model_version"]);

    let want = rows(&keel, "scores_local");
    let got = rows(&keel, "scores_cluster");
    assert_eq!(want.len() as u64, total);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "row {i}");
    }
    let columns = [
        "customer_id",
        "label",
        "probabilities_0",
        "probabilities_1",
        "model",
        "model_version",
        "run_id",
        "scored_at",
    ];
    assert_eq!(
        types(&keel, "scores_cluster", &columns),
        types(&keel, "scores_local", &columns),
        "the same column types"
    );
    let lineage = keel.json(&["data", "lineage", "table/scores_cluster"]);
    assert!(lineage.to_string().contains("model/bc/1"), "{lineage}");

    // The same run again writes nothing.
    let again = keel.json(&args);
    assert_eq!(again["already_done"], true, "{again}");
    assert_eq!(again["output_version"], cluster["output_version"]);
    assert_eq!(rows(&keel, "scores_cluster").len(), want.len());

    // A cluster that is not there: a clear error, and no output table.
    let closed = format!("ballista://127.0.0.1:{}", free_port());
    let out = keel.run(&[
        "batch",
        "score",
        "bc",
        "--from",
        "customers",
        "--into",
        "scores_nowhere",
        "--engine",
        &closed,
    ]);
    support::assert_refused(&out, &closed);
    let tables = keel.json(&["data", "ls"]);
    assert!(!tables.to_string().contains("scores_nowhere"), "{tables}");
    for executor in &mut executors {
        executor.running().expect("executor still running");
    }
    scheduler.running().expect("scheduler still running");
}
