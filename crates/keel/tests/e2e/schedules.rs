//! `keel schedule` with a real server: a schedule's command runs as a child of `keel serve`,
//! on the same workspace, as the schedule's creator; its run and outcome are recorded and in
//! the change log; bad schedules are refused before anything is stored.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Keel, assert_refused, eventually, items, repo_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_is_taken_by_the_server_and_recorded() {
    let keel = Keel::new().env("KEEL_LOG", "warn");
    keel.json(&["model", "push", "bc", &repo_file("fixtures/models/bc-lr.onnx")]);

    // Refused before anything is stored.
    assert_refused(
        &keel.run(&["schedule", "create", "bad", "--cron", "0 6 * *", "--", "model", "ls"]),
        "0 6 * * MON",
    );
    assert_refused(
        &keel.run(&["schedule", "create", "srv", "--cron", "0 6 * * MON", "--", "serve"]),
        "cannot be scheduled",
    );
    assert_refused(
        &keel.run(&[
            "schedule",
            "create",
            "tok",
            "--cron",
            "0 6 * * MON",
            "--",
            "model",
            "ls",
            "--token",
            "keel_x",
        ]),
        "token",
    );
    assert!(items(&keel.json(&["schedule", "ls"])).is_empty());

    let created = keel.json(&[
        "--user",
        "ana",
        "schedule",
        "create",
        "weekly-models",
        "--cron",
        "0 6 * * MON",
        "--",
        "model",
        "ls",
    ]);
    assert_eq!(created["created_by"], "ana", "{created}");
    assert_eq!(created["args"], serde_json::json!(["model", "ls"]));
    keel.ok(&["schedule", "run-now", "weekly-models"]);
    // A subscriber to schedule.run (nothing listens there: its delivery fails and is recorded).
    keel.ok(&["webhook", "add", "http://127.0.0.1:9/hooks", "--events", "schedule.run"]);

    let server = keel.serve(&["--webhook-attempts", "1"]).ready().await;
    let run: Value = eventually(Duration::from_secs(30), Duration::from_millis(200), async || {
        let runs = keel.json(&["schedule", "runs", "weekly-models"]);
        match items(&runs).first() {
            Some(r) if r["status"] == "succeeded" => Ok(r.clone()),
            other => Err(format!("not run yet: {other:?}")),
        }
    })
    .await;
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["attempts"], 1);
    let delivery: Value = eventually(Duration::from_secs(30), Duration::from_millis(200), async || {
        let deliveries = keel.json(&["webhook", "deliveries"]);
        match items(&deliveries).first() {
            Some(d) if d["delivery"]["status"] == "failed" => Ok(d.clone()),
            other => Err(format!("not attempted yet: {other:?}")),
        }
    })
    .await;
    assert_eq!(delivery["delivery"]["event"], "schedule.run", "{delivery}");
    assert_eq!(delivery["delivery"]["payload"]["data"]["schedule"], "weekly-models");
    assert_eq!(delivery["delivery"]["payload"]["data"]["status"], "succeeded");
    assert_eq!(delivery["attempts"].as_array().map(Vec::len), Some(1), "{delivery}");
    server.stop();

    let changes = keel.json(&["changes"]);
    let outcome = items(&changes)
        .iter()
        .find(|c| c["kind"] == "schedule.run_succeeded")
        .unwrap_or_else(|| panic!("the outcome is in the change log: {changes}"));
    assert_eq!(
        outcome["actor"], "ana",
        "attributed to the schedule's creator: {outcome}"
    );

    keel.ok(&["schedule", "pause", "weekly-models"]);
    let shown = keel.json(&["schedule", "show", "weekly-models"]);
    assert_eq!(shown["schedule"]["paused"], true, "{shown}");
    keel.ok(&["schedule", "delete", "weekly-models"]);
    assert_refused(&keel.run(&["schedule", "show", "weekly-models"]), "does not exist");
}
