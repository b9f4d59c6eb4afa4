//! Batch decide and feedback over REST (`decide:batch`, `feedback:batch`): one result per item
//! in order, a bad item reported at its index without failing or losing the others, every
//! decision durable before the answer (a restarted server takes rewards for all of them), a
//! batch past the limit refused with 413, model variants decided per item with their inputs,
//! and the scopes of single decide.

use serde_json::{Value, json};

use crate::support::{Keel, items, repo_file};

fn results(body: &Value) -> &[Value] {
    items(&body["results"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_decides_every_good_item_durably_and_reports_the_bad_ones_by_index() {
    let keel = Keel::quiet();
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "thompson_beta"},
        "context": [{"type": "numeric", "name": "age"}],
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
        "seed": 3
    });
    keel.ok(&[
        "deployment",
        "apply",
        "promo",
        "-f",
        &keel.file("spec.json", spec.to_string()),
    ]);
    let server = keel.serve(&[]).ready().await;

    // All plain (a unit each): one lock and one durable wait for the batch.
    let mut requests: Vec<Value> = (0..50)
        .map(|i| json!({"unit_id": format!("u{i}"), "context": {"age": i}}))
        .collect();
    requests[7] = json!({"unit_id": "u7", "context": {"age": "old"}});
    let (status, plain) = server
        .post("/v1/deployments/promo/decide:batch", &json!({"requests": requests}))
        .await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(
        (plain["ok"].clone(), plain["failed"].clone()),
        (json!(49), json!(1)),
        "{plain}"
    );
    let listed = results(&plain);
    assert_eq!(listed.len(), 50);
    for (i, r) in listed.iter().enumerate() {
        assert_eq!(r["index"], i, "{r}");
    }
    assert_eq!(listed[7]["code"], "invalid_request", "{}", listed[7]);
    assert!(
        listed[7]["error"].as_str().expect("error").contains("age"),
        "{}",
        listed[7]
    );

    // Mixed: no unit, eligibility, a malformed item; decided item by item.
    let mixed = json!({"requests": [
        {"context": {"age": 1}},
        {"unit_id": "x", "eligible": ["b"], "context": {"age": 2}},
        {"unit_id": 5},
        {"unit_id": "y", "colour": "red"},
        {"unit_id": "z", "context": {"age": 3}}
    ]});
    let (status, mixed) = server.post("/v1/deployments/promo/decide:batch", &mixed).await;
    assert_eq!(status, 200, "{mixed}");
    let listed_mixed = results(&mixed);
    assert_eq!(listed_mixed[1]["decision"]["variant"], "b", "{mixed}");
    assert_eq!(listed_mixed[1]["decision"]["propensity"], 1.0, "{mixed}");
    assert!(
        listed_mixed[0]["decision"]["decision_id"].is_string(),
        "no unit: drawn at random {mixed}"
    );
    for bad in [2, 3] {
        assert_eq!(listed_mixed[bad]["index"], bad);
        assert!(listed_mixed[bad]["error"].is_string(), "{mixed}");
    }
    assert_eq!(mixed["ok"], 3, "{mixed}");

    // Acknowledged = logged: after a restart every decision takes its reward.
    let mut ids: Vec<String> = listed
        .iter()
        .chain(listed_mixed)
        .filter_map(|r| r["decision"]["decision_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 52);
    server.stop();
    let server = keel.serve(&[]).ready().await;
    let mut events: Vec<Value> = ids.iter().map(|id| json!({"decision_id": id, "reward": 1})).collect();
    events.insert(
        3,
        // An id of now that no decision has (a fixed one would fall out of the window in time).
        json!({"decision_id": uuid::Uuid::now_v7().to_string(), "reward": 1}),
    );
    events.insert(5, json!({"decision_id": ids[0], "reward": "lots"}));
    let (status, fed) = server
        .post("/v1/deployments/promo/feedback:batch", &json!({"events": events}))
        .await;
    assert_eq!(status, 200, "{fed}");
    assert_eq!(
        (fed["counted"].clone(), fed["failed"].clone()),
        (json!(52), json!(2)),
        "{fed}"
    );
    let listed = results(&fed);
    assert_eq!(listed[3]["code"], "unknown_decision", "{}", listed[3]);
    assert!(
        listed[5]["error"]
            .as_str()
            .expect("error")
            .contains("malformed feedback"),
        "{}",
        listed[5]
    );
    assert_eq!(listed[4]["decision_id"], ids[3].as_str());
    // The same rewards again are not counted twice.
    ids.truncate(3);
    let again: Vec<Value> = ids.iter().map(|id| json!({"decision_id": id, "reward": 1})).collect();
    let (_, fed) = server
        .post("/v1/deployments/promo/feedback:batch", &json!({"events": again}))
        .await;
    assert_eq!(
        (fed["ok"].clone(), fed["counted"].clone()),
        (json!(3), json!(0)),
        "{fed}"
    );

    // Whole-request refusals.
    let too_many: Vec<Value> = (0..10_001).map(|i| json!({"unit_id": format!("u{i}")})).collect();
    let (status, body) = server
        .post("/v1/deployments/promo/decide:batch", &json!({"requests": too_many}))
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (413, json!("batch_too_large")),
        "{body}"
    );
    let (status, body) = server
        .post("/v1/deployments/nope/decide:batch", &json!({"requests": []}))
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .post("/v1/deployments/promo/feedback:batch", &json!({"rewards": []}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().expect("error").contains("events"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_variants_are_decided_per_item_with_their_inputs_and_the_scope_is_decide() {
    let keel = Keel::quiet();
    keel.ok(&["model", "push", "bc-lr", &repo_file("fixtures/models/bc-lr.onnx")]);
    let spec =
        json!({"variants": [{"name": "lr", "model": "bc-lr"}], "policy": {"type": "fixed_weights", "weights": [1]}});
    keel.ok(&[
        "deployment",
        "apply",
        "scored",
        "-f",
        &keel.file("spec.json", spec.to_string()),
    ]);
    let decider = keel.json(&["access", "token", "create", "app", "--scope", "decide"])["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let viewer = keel.json(&["access", "token", "create", "dash", "--scope", "view"])["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let server = keel.serve(&["--auth", "required"]).ready().await;
    // The fixture's first two rows, which bc-lr labels 0 and 1.
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_file("fixtures/models/expected.json")).expect("expected"))
            .expect("json");
    let rows = &expected["models"]["bc-lr"]["rows"];
    let row = |i: usize| json!({"unit_id": format!("u{i}"), "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": rows[i]}]});
    let body = json!({"requests": [row(0), {"unit_id": "no-inputs"}, row(1)]});
    let url = server.url("/v1/deployments/scored/decide:batch");
    let send = |token: Option<&str>| {
        let mut req = server.client.post(&url).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    assert_eq!(send(None).await.expect("request").status().as_u16(), 401);
    assert_eq!(send(Some(&viewer)).await.expect("request").status().as_u16(), 403);
    let answer = send(Some(&decider)).await.expect("request");
    assert_eq!(answer.status().as_u16(), 200);
    let answer: Value = answer.json().await.expect("json");
    let listed = results(&answer);
    assert_eq!(
        listed[0]["decision"]["prediction"]["label"]["data"],
        json!([0]),
        "{answer}"
    );
    assert_eq!(
        listed[2]["decision"]["prediction"]["label"]["data"],
        json!([1]),
        "{answer}"
    );
    assert!(
        listed[1]["error"].as_str().expect("error").contains("inputs"),
        "{answer}"
    );
}
