//! A decision log damaged before its end, end to end: the server starts and serves the other
//! deployments, says which one failed and why (`/v1/health`; the open readiness probe only counts
//! them), 503 on its routes;
//! `keel deployment verify` finds the offset; `keel deployment repair` moves the damaged part
//! aside, the change log says who did it, and the deployment serves again.

use serde_json::{Value, json};

use crate::support::{Keel, assert_refused, items};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_log_stops_one_deployment_until_verified_and_repaired() {
    let keel = Keel::quiet().env("KEEL_AUTHOR", "tester");
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "thompson_beta"},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
        "seed": 5
    });
    let spec_path = keel.file("spec.json", spec.to_string());
    keel.ok(&["deployment", "apply", "promo", "-f", &spec_path]);
    keel.ok(&["deployment", "apply", "other", "-f", &spec_path]);
    let server = keel.serve(&[]).ready().await;
    for name in ["promo", "other"] {
        for _ in 0..20 {
            let (status, body) = server.post(&format!("/v1/deployments/{name}/decide"), &json!({})).await;
            assert_eq!(status, 200, "{body}");
        }
    }
    server.stop();
    let ok = keel.json(&["deployment", "verify", "promo"]);
    // The revision, the spec it runs under, and 20 decisions.
    assert_eq!(ok["records"], 22, "{ok}");
    assert_eq!(ok["last_seq"], 22, "{ok}");

    // A byte flipped inside record 11.
    let log = keel.home().join("experiments/promo/events.jsonl");
    let mut bytes = std::fs::read(&log).expect("log");
    let at = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(9)
        .map(|(i, _)| i + 1)
        .expect("11 records");
    bytes[at + 40] ^= 0x04;
    std::fs::write(&log, &bytes).expect("write");

    let out = keel.run(&["deployment", "verify", "promo"]);
    assert_refused(&out, &format!("keel deployment repair promo --from-offset {at}"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("DAMAGED at byte {at}")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = keel.run(&["--json", "deployment", "verify", "promo"]);
    assert_eq!(out.status.code(), Some(1));
    let found: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(found["damage"]["offset"], at, "{found}");
    assert_eq!(found["records"], 10, "{found}");

    let server = keel.serve(&[]).ready().await;
    let (status, ready) = server.get("/v2/health/ready").await;
    assert_eq!(status, 200, "the other deployments serve: {ready}");
    assert_eq!(
        ready["deployments_failed"], 1,
        "the open probe counts, and names nothing: {ready}"
    );
    let (status, ready) = server.get("/v1/health").await;
    assert_eq!(status, 200, "{ready}");
    let failed = items(&ready["failed_deployments"]);
    assert_eq!(failed.len(), 1, "{ready}");
    assert_eq!(failed[0]["name"], "promo");
    assert!(
        failed[0]["reason"]
            .as_str()
            .expect("reason")
            .contains(&format!("byte {at}")),
        "{ready}"
    );
    let (status, body) = server.post("/v1/deployments/promo/decide", &json!({})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "deployment_not_serving", "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("keel deployment verify promo"),
        "{body}"
    );
    let (status, _) = server.get("/v1/deployments/promo/health").await;
    assert_eq!(status, 503);
    let (status, body) = server.post("/v1/deployments/other/decide", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    server.stop();
    assert_eq!(std::fs::read(&log).expect("log"), bytes, "every byte kept");

    let done = keel.json(&["deployment", "repair", "promo", "--from-offset", &at.to_string()]);
    let moved = done["moved_to"].as_str().expect("moved_to");
    assert_eq!(std::fs::read(moved).expect("moved"), &bytes[at..]);
    assert_eq!(std::fs::read(&log).expect("log"), &bytes[..at]);
    let changes = keel.json(&["changes"]);
    let repair = items(&changes)
        .iter()
        .find(|c| c["kind"] == "deployment.log_repaired")
        .unwrap_or_else(|| panic!("no repair in {changes:#}"));
    assert_eq!(repair["actor"], "tester");
    assert_eq!(repair["details"]["moved_to"], moved);

    let server = keel.serve(&[]).ready().await;
    let (_, ready) = server.get("/v1/health").await;
    assert_eq!(ready["failed_deployments"], json!([]), "{ready}");
    let (_, probe) = server.get("/v2/health/ready").await;
    assert_eq!(probe, json!({"ready": true}), "{probe}");
    let (status, body) = server.post("/v1/deployments/promo/decide", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (_, report) = server.get("/v1/deployments/promo/report").await;
    let exposures: u64 = items(&report["variants"])
        .iter()
        .map(|v| v["exposures"].as_u64().expect("n"))
        .sum();
    // Records 1-10 are kept: the revision, its spec and 8 decisions.
    assert_eq!(exposures, 9, "the 8 decisions before the damage and the new one");
    server.stop();
}
