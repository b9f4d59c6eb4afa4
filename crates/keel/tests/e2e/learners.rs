//! `keel simulate email` on a world drawn from a seed whose promotions' appeal shifts half-way,
//! against `keel serve`: the deployment written `{"type": "contextual"}` is recorded as the
//! learner keel recommends and beats uniform rotation through the public API.

use crate::support::Keel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_learner_through_a_drifting_simulation() {
    let keel = Keel::quiet();
    let server = keel.serve(&[]).ready().await;
    let report = keel.json(&[
        "simulate",
        "email",
        "--url",
        &server.base,
        "--customers",
        "3000",
        "--drawn-world",
        "--seed",
        "2",
        "--drift-at",
        "1500",
        "--policies",
        "uniform,contextual",
        // One customer at a time: every decision sees every earlier reward, so the run is the
        // same on a loaded machine (with several in flight, how far learning lags depends on
        // the schedule, and under load the lift measured here varied from 1.2x to 2x).
        "--concurrency",
        "1",
    ]);
    let rate = |policy: &str| {
        report["results"]
            .as_array()
            .expect("results")
            .iter()
            .find(|r| r["policy"] == policy)
            .and_then(|r| r["expected_rate"].as_f64())
            .expect("an expected rate")
    };
    eprintln!(
        "expected conversion: contextual {} uniform {}",
        rate("contextual"),
        rate("uniform")
    );
    assert!(
        rate("contextual") > rate("uniform") * 1.3,
        "contextual {} uniform {}",
        rate("contextual"),
        rate("uniform")
    );
    // A drawn world is not keel's own: its promotions are a draw from the eight.
    assert_eq!(report["world"]["promotions"].as_array().expect("promotions").len(), 5);
    let deployment: serde_json::Value = server
        .client
        .get(server.url("/v1/deployments/email-promos-contextual"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        deployment["spec"]["policy"]["type"], "logistic_thompson",
        "the recorded revision names the learner: {}",
        deployment["spec"]["policy"]
    );
}
