//! A no-action control group over gRPC and REST on a real server: the same unit gets the same
//! answer on both transports (no variant, `no_action`, the control marker, the share as its
//! propensity), and the report (gRPC `report_json`) names the control and carries the lifts.

use keel_api::experiments_proto::experiments_client::ExperimentsClient;
use keel_api::experiments_proto::{DecideRequest, ReportRequest};
use serde_json::json;

use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_action_over_grpc_and_rest() {
    let server = TestServer::start(&[]).await;
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "control": {"policy": "none", "share": 0.25},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 600}
    });
    let (put_status, put) = server.put_json("/v1/deployments/promo", &json!({ "spec": spec })).await;
    assert_eq!(put_status, 200, "{put}");
    let mut client = ExperimentsClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect");
    let (mut held, mut served) = (0, 0);
    for i in 0..200 {
        let unit = format!("u{i}");
        let d = client
            .decide(DecideRequest {
                deployment: "promo".into(),
                unit_id: unit.clone(),
                context: Default::default(),
                inputs: None,
                eligible: vec![],
            })
            .await
            .expect("decide")
            .into_inner();
        let (status, rest) = server
            .post_json("/v1/deployments/promo/decide", &json!({ "unit_id": unit }))
            .await;
        assert_eq!(status, 200, "{rest}");
        assert_eq!(
            rest["no_action"],
            json!(d.no_action),
            "sticky across transports: {rest}"
        );
        if d.no_action {
            held += 1;
            assert!(d.control && d.variant.is_empty(), "{d:?}");
            assert!((d.propensity - 0.25).abs() < 1e-12, "{d:?}");
            assert_eq!((&rest["variant"], &rest["control"]), (&json!(null), &json!(true)));
        } else {
            served += 1;
            assert!(!d.control && (d.variant == "a" || d.variant == "b"), "{d:?}");
            assert!((d.propensity - 0.375).abs() < 1e-12, "{d:?}");
            assert_eq!(rest["variant"], json!(d.variant));
        }
    }
    assert!(held > 20 && served > 100, "about a quarter held back: {held} of 200");
    let report = client
        .report(ReportRequest {
            deployment: "promo".into(),
        })
        .await
        .expect("report")
        .into_inner();
    let report: serde_json::Value = serde_json::from_str(&report.report_json).expect("json");
    assert_eq!(
        report["control"],
        json!({"kind": "none", "variant": null, "share": 0.25, "description": "no action"})
    );
    assert_eq!(report["control_group"]["exposures"], json!(2 * held), "{report}");
    for lift in ["over_control", "over_uniform", "over_best_variant"] {
        assert!(report["lifts"].get(lift).is_some(), "{lift} in {report}");
    }
}
