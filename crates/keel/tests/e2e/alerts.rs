//! An alert reaches a team's webhook: a deployment whose SLO burns at once (every decision is
//! slower than 0.001 ms) fires its `slo_burn_rate` rule inside a real `keel serve`; the
//! `alert.fired` event is queued in the store's outbox and delivered by the server's deliverer
//! to a real receiver on loopback, which checks the HMAC signature over the raw body. The test
//! waits on keel's own delivery record (`GET /v1/webhooks/deliveries`), then checks what the
//! receiver got.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Keel, Ports, eventually};

const SECRET: &str = "whsec-alerts-77a1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_reaches_the_webhook_signed() {
    let keel = Keel::quiet();
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "slo": {"latency_ms": 0.001, "objective": 0.99, "window_seconds": 60},
        "alerts": [{"name": "slow", "condition": {"type": "slo_burn_rate", "above": 1.0}}]
    });
    let file = keel.file("promo.json", spec.to_string());
    keel.ok(&["deployment", "apply", "promo", "-f", &file]);
    let (url, got) = crate::receiver::start(SECRET, "/alerts", false).await;
    keel.ok(&[
        "webhook",
        "add",
        &url,
        "--events",
        "alert.fired",
        "--secret-env",
        "HOOK_SECRET",
    ]);
    let server = keel
        .serve_on(Ports::free(), &["--webhook-backoff", "0.2"], &[("HOOK_SECRET", SECRET)])
        .ready()
        .await;
    for i in 0..5 {
        let (status, body) = server
            .post("/v1/deployments/promo/decide", &json!({"unit_id": format!("u{i}")}))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    // keel's own record says the event was delivered (the receiver answered 2xx).
    let delivery = eventually(Duration::from_secs(30), Duration::from_millis(100), async || {
        let (status, all) = server.get("/v1/webhooks/deliveries").await;
        if status != 200 {
            return Err(format!("deliveries: {status} {all}"));
        }
        let fired = all
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["delivery"]["event"] == "alert.fired")
            .cloned();
        match fired {
            Some(d) if d["delivery"]["status"] == "delivered" => Ok(d),
            other => Err(format!("no delivered alert.fired yet: {other:?}")),
        }
    })
    .await;
    assert_eq!(delivery["delivery"]["last_status_code"], 204, "{delivery}");
    let payload = &delivery["delivery"]["payload"];
    assert_eq!(payload["event"], "alert.fired");
    assert_eq!(
        (
            payload["data"]["deployment"].as_str(),
            payload["data"]["rule"].as_str(),
            payload["data"]["status"].as_str()
        ),
        (Some("promo"), Some("slow"), Some("firing")),
        "{payload}"
    );
    assert!(payload["data"]["value"].as_f64().is_some_and(|v| v > 1.0), "{payload}");

    // The receiver got the same event, signed with the shared secret.
    let seen = got.lock().expect("lock").clone();
    let fired: Vec<&(String, Value, bool)> = seen.iter().filter(|(e, _, _)| e == "alert.fired").collect();
    assert_eq!(fired.len(), 1, "one firing, one delivery: {seen:?}");
    let (_, body, valid) = fired[0];
    assert!(*valid, "the signature did not verify: {body}");
    assert_eq!(body, payload, "the receiver got what keel recorded");
    assert!(!delivery.to_string().contains(SECRET), "the secret is never shown");
    server.stop();
}
