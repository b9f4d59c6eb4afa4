//! Approvals and webhook events end to end, over a real `keel serve --auth required` on
//! loopback and a real webhook receiver that checks every signature with its own HMAC: a policy
//! applied from a folder holds a production alias move as pending (202); the requester may not
//! approve it (403), nor may a token without the `registry` scope; another person approves it
//! and the alias moves as them, with both people in the change log; a change whose target moved
//! is refused as stale; the CLI lists and rejects; the receiver gets the events signed, a
//! failed delivery is retried, and every attempt is recorded.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Keel, Ports, eventually, repo_file};

const SECRET: &str = "whsec-test-2f9c";

fn token(keel: &Keel, name: &str, scopes: &str) -> String {
    let out = keel.json(&["access", "token", "create", name, "--scope", scopes]);
    out["token"].as_str().expect("secret").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_move_waits_for_a_second_person_and_events_arrive_signed() {
    let keel = Keel::quiet();
    let model = |f: &str| repo_file(&format!("fixtures/models/{f}.onnx"));
    keel.ok(&["model", "push", "bc", &model("bc-lr"), "--alias", "production"]);
    keel.ok(&["model", "push", "bc", &model("bc-rf")]);
    let alice = token(&keel, "alice", "registry view");
    let bob = token(&keel, "bob", "registry view");
    let viewer = token(&keel, "dashboard", "view");
    let admin = token(&keel, "root", "admin");
    let folder = keel.home().join("declared");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(
        folder.join("policy.json"),
        r#"{"approvals": {"aliases": ["production"]}}"#,
    )
    .expect("policy");
    std::fs::write(folder.join("aliases.json"), r#"{"bc": {"production": 1}}"#).expect("aliases");
    keel.ok(&["--user", "ops", "apply", folder.to_str().expect("utf-8"), "--yes"]);

    let (url, got) = crate::receiver::start(SECRET, "/hooks/keel", true).await;
    let url = format!("{url}?token=abc");
    let events = "alias.moved,change.pending,change.approved,change.rejected";
    let hook = keel.json(&[
        "webhook",
        "add",
        &url,
        "--events",
        events,
        "--secret-env",
        "HOOK_SECRET",
    ]);
    assert!(
        !hook.to_string().contains("token=abc"),
        "the URL's secret part is not shown: {hook}"
    );
    let server = keel
        .serve_on(
            Ports::free(),
            &["--auth", "required", "--webhook-backoff", "0.2"],
            &[("HOOK_SECRET", SECRET)],
        )
        .ready()
        .await;
    let call = |method: reqwest::Method, path: &str, body: Option<Value>, token: &str| {
        let mut req = server.client.request(method, server.url(path)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move {
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let alias_of = || async {
        let (_, v) = call(
            reqwest::Method::GET,
            "/v1/models/bc/versions/@production",
            None,
            &viewer,
        )
        .await;
        v["version"].as_i64()
    };

    // Subscriptions over REST: admin only; the secret's variable is a name, never a secret.
    let (status, _) = call(reqwest::Method::GET, "/v1/webhooks", None, &alice).await;
    assert_eq!(status, 403);
    let bad = json!({"url": url, "events": ["alias.moved"], "secret_env": "my secret!"});
    let (status, body) = call(reqwest::Method::POST, "/v1/webhooks", Some(bad), &admin).await;
    assert_eq!(status, 400, "{body}");
    let (status, hooks) = call(reqwest::Method::GET, "/v1/webhooks", None, &admin).await;
    assert_eq!((status, hooks.as_array().map(Vec::len)), (200, Some(1)), "{hooks}");
    assert!(!hooks.to_string().contains("token=abc"), "{hooks}");

    // Alice's move is held: 202 with the change and who must approve it.
    let (status, held) = call(
        reqwest::Method::PUT,
        "/v1/models/bc/aliases/production",
        Some(json!({"version": 2, "reason": "rf wins offline"})),
        &alice,
    )
    .await;
    assert_eq!(status, 202, "{held}");
    assert_eq!(held["status"], "pending");
    let id = held["change"]["id"].as_i64().expect("id");
    assert_eq!(held["change"]["requested_by"], "alice");
    assert_eq!(held["change"]["diff"], json!(["version 1 -> 2"]));
    let message = held["message"].as_str().expect("message");
    assert!(
        message.contains("someone other than alice") && message.contains("registry"),
        "{message}"
    );
    assert_eq!(alias_of().await, Some(1));
    let (status, listed) = call(reqwest::Method::GET, "/v1/changes/pending", None, &viewer).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().map(|a| a.len()), Some(1), "{listed}");

    // Not by the requester, not without the change's scope.
    let approve = format!("/v1/changes/pending/{id}/approve");
    let (status, body) = call(reqwest::Method::POST, &approve, None, &alice).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().expect("error").contains("another person"),
        "{body}"
    );
    let (status, body) = call(reqwest::Method::POST, &approve, None, &viewer).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().expect("error").contains("`registry` scope"),
        "{body}"
    );
    assert_eq!(alias_of().await, Some(1));

    let (status, done) = call(reqwest::Method::POST, &approve, None, &bob).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (done["status"].as_str(), done["decided_by"].as_str()),
        (Some("approved"), Some("bob"))
    );
    assert_eq!(alias_of().await, Some(2));
    let (status, again) = call(reqwest::Method::POST, &approve, None, &bob).await;
    assert_eq!(status, 409, "{again}");
    let log = keel.json(&["changes", "--subject", "model/bc/alias/production", "--limit", "5"]);
    let approved = log
        .as_array()
        .expect("log")
        .iter()
        .find(|c| c["kind"] == "change.approved")
        .expect("approved entry");
    assert_eq!(
        (approved["details"]["requested_by"].as_str(), approved["actor"].as_str()),
        (Some("alice"), Some("bob"))
    );
    let moved = log
        .as_array()
        .expect("log")
        .iter()
        .find(|c| c["kind"] == "alias.set")
        .expect("move");
    assert_eq!(moved["actor"], "bob");

    // Two requests on the same alias: once one applies, the other is stale.
    let (status, removal) = call(
        reqwest::Method::DELETE,
        "/v1/models/bc/aliases/production",
        Some(json!({"reason": "retire bc"})),
        &alice,
    )
    .await;
    assert_eq!(status, 202, "{removal}");
    let (status, back) = call(
        reqwest::Method::PUT,
        "/v1/models/bc/aliases/production",
        Some(json!({"version": 1})),
        &alice,
    )
    .await;
    assert_eq!(status, 202, "{back}");
    let pending = keel.json(&["changes", "pending"]);
    assert_eq!(pending.as_array().map(|a| a.len()), Some(2), "{pending}");
    let removal_id = removal["change"]["id"].as_i64().expect("id");
    keel.ok(&["--user", "carol", "approve", &removal_id.to_string()]);
    assert_eq!(alias_of().await, None);
    let history = keel.json(&["model", "history", "bc", "--alias", "production"]);
    let last = history.as_array().and_then(|h| h.last()).expect("event").clone();
    assert!(
        last.to_string().contains("retire bc"),
        "the removal's reason is kept: {last}"
    );
    let back_id = back["change"]["id"].as_i64().expect("id");
    let stale = keel.run(&["--user", "carol", "approve", &back_id.to_string()]);
    assert!(!stale.status.success());
    let said = String::from_utf8_lossy(&stale.stderr);
    assert!(
        said.contains("stale") && said.contains("request the change again"),
        "{said}"
    );
    let own = keel.run(&["--user", "alice", "approve", &back_id.to_string()]);
    assert!(
        String::from_utf8_lossy(&own.stderr).contains("another person must approve"),
        "{own:?}"
    );
    keel.ok(&["--user", "carol", "reject", &back_id.to_string(), "--reason", "stale"]);
    assert_eq!(keel.json(&["changes", "pending"]), json!([]));

    // Events: every request signed and fresh; the first attempt failed and was retried. The
    // wait ends on keel's own record, not on what the receiver saw: the receiver counts a
    // request before keel has stored the attempt's outcome, and the retry comes after the
    // backoff, so seeing every event at the receiver does not yet mean the record is complete.
    let wanted = ["change.pending", "change.approved", "alias.moved", "change.rejected"];
    let deliveries = eventually(Duration::from_secs(20), Duration::from_millis(100), async || {
        let deliveries = keel.json(&["webhook", "deliveries"]);
        let all = deliveries.as_array().cloned().unwrap_or_default();
        let events: Vec<&str> = all.iter().filter_map(|d| d["delivery"]["event"].as_str()).collect();
        let settled = all.iter().all(|d| d["delivery"]["status"] == "delivered");
        let retried = all
            .iter()
            .any(|d| d["attempts"].as_array().is_some_and(|a| a.len() == 2));
        if wanted.iter().all(|k| events.contains(k)) && settled && retried {
            Ok(deliveries)
        } else {
            Err(format!("deliveries so far: {deliveries}"))
        }
    })
    .await;
    let seen = got.lock().expect("lock").clone();
    let kinds: Vec<&str> = seen.iter().map(|(e, _, _)| e.as_str()).collect();
    assert!(wanted.iter().all(|k| kinds.contains(k)), "the receiver got {kinds:?}");
    assert_eq!(
        seen.len(),
        deliveries.as_array().map_or(0, Vec::len) + 1,
        "one request per delivery, plus the retry: {kinds:?}"
    );
    assert!(
        seen.iter().all(|(_, _, valid)| *valid),
        "a signature did not verify: {seen:?}"
    );
    let moved_event = seen.iter().find(|(e, _, _)| e == "alias.moved").expect("alias.moved");
    assert_eq!(moved_event.1["event"], "alias.moved");
    assert_eq!(moved_event.1["data"]["model"], "bc");
    let all = deliveries.as_array().expect("deliveries");
    let retried = all
        .iter()
        .find(|d| d["attempts"].as_array().is_some_and(|a| a.len() == 2))
        .expect("a retried delivery");
    assert_eq!(retried["attempts"][0]["status_code"], 500);
    assert_eq!(retried["delivery"]["status"], "delivered");
    assert!(!deliveries.to_string().contains(SECRET), "the secret is never shown");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_change_waits_and_the_approval_switches_the_running_deployment() {
    let keel = Keel::quiet();
    let spec = |weights: [f64; 2]| json!({"variants": [{"name": "a"}, {"name": "b"}], "policy": {"type": "fixed_weights", "weights": weights}});
    let file = keel.file("promo.json", spec([1.0, 0.0]).to_string());
    keel.ok(&["deployment", "apply", "promo", "-f", &file]);
    let folder = keel.home().join("declared");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(
        folder.join("policy.json"),
        r#"{"approvals": {"deployment_traffic": ["*"]}}"#,
    )
    .expect("policy");
    keel.ok(&["--user", "ops", "apply", folder.to_str().expect("utf-8"), "--yes"]);
    let alice = token(&keel, "alice", "deploy decide view");
    let bob = token(&keel, "bob", "deploy view");
    let server = keel.serve(&["--auth", "required"]).ready().await;
    let call = |method: reqwest::Method, path: &str, body: Option<Value>, token: &str| {
        let mut req = server.client.request(method, server.url(path)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move {
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let body = json!({"spec": spec([0.0, 1.0]), "reason": "all to b"});
    let (status, held) = call(reqwest::Method::PUT, "/v1/deployments/promo", Some(body), &alice).await;
    assert_eq!(status, 202, "{held}");
    assert!(held["change"]["diff"].to_string().contains("policy.weights"), "{held}");
    let (_, d) = call(
        reqwest::Method::POST,
        "/v1/deployments/promo/decide",
        Some(json!({"unit_id": "u1"})),
        &alice,
    )
    .await;
    assert_eq!(d["variant"], "a", "still the old traffic: {d}");
    // A bad spec is refused at once, not held.
    let (status, _) = call(
        reqwest::Method::PUT,
        "/v1/deployments/promo",
        Some(json!({"spec": {"variants": []}})),
        &alice,
    )
    .await;
    assert_eq!(status, 400);

    let id = held["change"]["id"].as_i64().expect("id");
    let (status, done) = call(
        reqwest::Method::POST,
        &format!("/v1/changes/pending/{id}/approve"),
        None,
        &bob,
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let (_, current) = call(reqwest::Method::GET, "/v1/deployments/promo", None, &bob).await;
    assert_eq!(
        (current["revision"].as_i64(), current["created_by"].as_str()),
        (Some(2), Some("bob"))
    );
    assert!(
        current["reason"]
            .as_str()
            .is_some_and(|r| r.contains("requested by alice: all to b")),
        "{current}"
    );
    // The running deployment switched: every unit now gets b.
    let (_, d) = call(
        reqwest::Method::POST,
        "/v1/deployments/promo/decide",
        Some(json!({"unit_id": "u2"})),
        &alice,
    )
    .await;
    assert_eq!(d["variant"], "b", "{d}");
    server.stop();
}
