//! Loading a new version while traffic flows drops no request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use keel_registry::VersionSelector;

use crate::support::{TestServer, bc_request, fixture, push};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_versions_under_load_drops_no_request() {
    let server = Arc::new(TestServer::start(&["bc-lr"]).await);
    // Version 2 of the same name: a different model with the same signature.
    let v2 = push(&server.registry, "bc-lr", &fixture("bc-rf")).await;
    assert_eq!(v2.version, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let seen_v2 = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (server, stop, ok, seen_v2) = (server.clone(), stop.clone(), ok.clone(), seen_v2.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = server.post_json("/v2/models/bc-lr/infer", &bc_request(4)).await;
                if status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                    if body["model_version"] == "2" {
                        seen_v2.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    failures.push((status, body));
                }
            }
            failures
        }));
    }
    // Swap back and forth between versions while the workers run.
    for i in 0..10 {
        let version = if i % 2 == 0 { "2" } else { "1" };
        let (status, body) = server
            .post_json(
                "/v2/repository/models/bc-lr/load",
                &serde_json::json!({"parameters": {"version": version}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    server
        .registry
        .set_alias(
            "bc-lr",
            "production",
            &VersionSelector::Number(2),
            "test",
            Some("promote"),
        )
        .await
        .expect("alias");
    let (status, body) = server
        .post_json("/v2/repository/models/bc-lr/load", &serde_json::json!({}))
        .await;
    assert_eq!((status, body["version"].clone()), (200, serde_json::json!("2")));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let failures = w.await.expect("worker");
        assert!(failures.is_empty(), "requests failed during swaps: {failures:?}");
    }
    assert!(ok.load(Ordering::Relaxed) > 50, "too little traffic to prove anything");
    assert!(seen_v2.load(Ordering::Relaxed) > 0, "version 2 never answered");
    let (_, body) = server.post_json("/v2/models/bc-lr/infer", &bc_request(1)).await;
    assert_eq!(
        body["model_version"], "2",
        "@production (2) is served after the final load"
    );
}
