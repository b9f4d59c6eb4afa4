//! A no-action control group end to end over REST on `keel serve`: bad control specs are 400s
//! that say what to write; held back units get `"variant": null, "no_action": true`, sticky;
//! their feedback counts toward the control group; the report names the control and its lifts
//! agree with the arithmetic done here on the counts; `keel experiment report` prints them.

use serde_json::{Value, json};

use crate::support::Keel;

async fn put(server: &crate::support::Server, name: &str, spec: &Value) -> (u16, Value) {
    let r = server
        .client
        .put(server.url(&format!("/v1/deployments/{name}")))
        .json(&json!({ "spec": spec }))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

fn spec(control: Value) -> Value {
    json!({
        "variants": [{"name": "voucher"}, {"name": "dessert"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "control": control,
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
        "seed": 3
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_action_control_group_over_rest() {
    let keel = Keel::quiet();
    let server = keel.serve(&[]).ready().await;
    for (control, says) in [
        (
            json!({"policy": "none", "variant": "voucher", "share": 0.1}),
            "has both",
        ),
        (
            json!({"policy": "none", "share": 1.5}),
            "control.share 1.5 must be in [0, 1)",
        ),
        (
            json!({"policy": {"variant": "cake"}, "share": 0.1}),
            "control variant 'cake' is not a variant",
        ),
        (json!({"policy": "nothing", "share": 0.1}), "unknown variant `nothing`"),
    ] {
        let (status, body) = put(&server, "promo", &spec(control)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "invalid_deployment", "{body}");
        assert!(
            body["error"].as_str().expect("message").contains(says),
            "'{says}' not in {body}"
        );
    }
    let (status, body) = put(&server, "promo", &spec(json!({"policy": "none", "share": 0.2}))).await;
    assert_eq!(status, 200, "{body}");

    // Held back units convert 1 in 10, the others 1 in 4.
    let (mut held, mut held_conv, mut treated, mut treated_conv) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..600 {
        let unit = format!("cust-{i}");
        let (status, d) = server
            .post("/v1/deployments/promo/decide", &json!({ "unit_id": unit }))
            .await;
        assert_eq!(status, 200, "{d}");
        let no_action = d["no_action"].as_bool().expect("no_action");
        assert_eq!(d["control"], json!(no_action), "{d}");
        if no_action {
            assert_eq!((&d["variant"], &d["propensity"]), (&Value::Null, &json!(0.2)), "{d}");
        } else {
            assert!(d["variant"] == "voucher" || d["variant"] == "dessert", "{d}");
        }
        let (_, again) = server
            .post("/v1/deployments/promo/decide", &json!({ "unit_id": unit }))
            .await;
        assert_eq!(
            (&again["variant"], &again["no_action"]),
            (&d["variant"], &d["no_action"])
        );
        let converts = if no_action { i % 10 == 0 } else { i % 4 == 0 };
        let (status, f) = server
            .post(
                "/v1/deployments/promo/feedback",
                &json!({"decision_id": d["decision_id"], "reward": u8::from(converts)}),
            )
            .await;
        assert_eq!((status, &f["counted"]), (200, &json!(true)), "{f}");
        let (n, c) = if no_action {
            (&mut held, &mut held_conv)
        } else {
            (&mut treated, &mut treated_conv)
        };
        *n += 1;
        *c += u64::from(converts);
    }
    assert!((70..=170).contains(&held), "about a fifth held back: {held} of 600");

    let (status, report) = server.get("/v1/deployments/promo/report").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["control"],
        json!({"kind": "none", "variant": null, "share": 0.2, "description": "no action"})
    );
    assert_eq!(report["control_group"]["rewards"], json!(held), "{report}");
    let lift = &report["lifts"]["over_control"];
    assert_eq!(lift["baseline"], "control group: no action");
    assert_eq!(
        (&lift["treated_rewards"], &lift["baseline_rewards"]),
        (&json!(treated), &json!(held))
    );
    // By hand: rates, difference, ratio and the delta-method interval of the ratio.
    let rate = |c: u64, n: u64| c as f64 / n as f64;
    let var_of_mean = |c: u64, n: u64| {
        let (c, n) = (c as f64, n as f64);
        (c - c * c / n) / (n - 1.0) / n
    };
    let (t, b) = (rate(treated_conv, treated), rate(held_conv, held));
    let (vt, vb) = (var_of_mean(treated_conv, treated), var_of_mean(held_conv, held));
    let close = |v: &Value, x: f64| assert!((v.as_f64().expect("number") - x).abs() < 1e-12, "{v} != {x}");
    close(&lift["treated_rate"], t);
    close(&lift["baseline_rate"], b);
    close(&lift["difference"][0], t - b);
    close(&lift["difference"][2], t - b + 1.959_963_984_540_054 * (vt + vb).sqrt());
    let ratio_half = 1.959_963_984_540_054 * (vt / (b * b) + t * t * vb / (b * b * b * b)).sqrt();
    close(&lift["relative"][0], t / b - 1.0);
    close(&lift["relative"][1], t / b - 1.0 - ratio_half);
    for other in ["over_uniform", "over_best_variant"] {
        assert_eq!(report["lifts"][other]["treated_rewards"], json!(treated), "{report}");
    }
    server.stop();

    let out = keel.ok(&["experiment", "report", "promo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for says in [
        "control group (no action, 20.00% of units)",
        "over control (control group: no action)",
        "over uniform (uniform: the average of the 2 variants' rates)",
        "over best variant (variant",
    ] {
        assert!(text.contains(says), "'{says}' not in:\n{text}");
    }
}
