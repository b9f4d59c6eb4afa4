//! Shutdown drains background work: an alert webhook that answers slowly (a real HTTP server on
//! loopback) is still delivered when shutdown is called, and shutdown returns only after it has
//! been.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keel_experiments::{Deployments, Durability};
use keel_store::Store;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How long the webhook takes to answer.
const DELAY: Duration = Duration::from_millis(1500);

/// A webhook that reads one request, waits `DELAY`, answers 200 and then sets `answered`;
/// `received` is set as soon as the request has arrived.
async fn slow_webhook() -> (String, Arc<AtomicBool>, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (received, answered) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (r, a) = (received.clone(), answered.clone());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then the body by its Content-Length.
        loop {
            let n = socket.read(&mut buf).await.expect("read");
            assert!(n > 0, "the client closed before sending the request");
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
        }
        r.store(true, Ordering::SeqCst);
        tokio::time::sleep(DELAY).await;
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .expect("answer");
        socket.flush().await.expect("flush");
        a.store(true, Ordering::SeqCst);
    });
    (url, received, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_slow_webhook() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(&format!("sqlite://{}", dir.path().join("keel.db").display()))
        .await
        .expect("store");
    let deployments = Deployments::open(store, dir.path().join("deployments"), Durability::Fsync)
        .await
        .expect("deployments");
    let (url, received, answered) = slow_webhook().await;
    // Every decision is slower than 0.001 ms: the SLO burns at once and the alert fires.
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "slo": {"latency_ms": 0.001, "objective": 0.99, "window_seconds": 60},
        "alerts": [{
            "name": "slow",
            "condition": {"type": "slo_burn_rate", "above": 1.0},
            "notify": [{"url": url, "format": "json", "timeout_seconds": 10}]
        }]
    });
    deployments.apply("promos", &spec, "ana", None).await.expect("apply");
    for _ in 0..5 {
        deployments.decide("promos", None, None).await.expect("decide");
    }
    let events = deployments.watch_tick().await;
    assert_eq!(events.len(), 1, "the alert fires: {events:?}");
    assert_eq!(events[0].status, "firing");
    // The notification is under way (the webhook has it, and has not answered yet).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !received.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the webhook never received the alert");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!answered.load(Ordering::SeqCst));

    let started = Instant::now();
    let drained = deployments.shutdown(Duration::from_secs(10)).await;
    assert!(drained, "every background task finished within the bound");
    assert!(
        answered.load(Ordering::SeqCst),
        "shutdown returned after {:?}, before the webhook had answered",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_tasks_after_its_bound() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open("sqlite::memory:").await.expect("store");
    let deployments = Deployments::open(store, dir.path().join("deployments"), Durability::Fsync)
        .await
        .expect("deployments");
    let (url, received, _) = slow_webhook().await;
    let spec = json!({
        "variants": [{"name": "a"}],
        "policy": {"type": "fixed_weights", "weights": [1]},
        "slo": {"latency_ms": 0.001, "objective": 0.99, "window_seconds": 60},
        "alerts": [{"name": "slow", "condition": {"type": "slo_burn_rate", "above": 1.0},
                    "notify": [{"url": url, "timeout_seconds": 10}]}]
    });
    deployments.apply("promos", &spec, "ana", None).await.expect("apply");
    deployments.decide("promos", None, None).await.expect("decide");
    assert_eq!(deployments.watch_tick().await.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !received.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the webhook never received the alert");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    assert!(
        !deployments.shutdown(Duration::from_millis(100)).await,
        "the webhook is still waiting"
    );
    assert!(started.elapsed() < DELAY, "the bound was kept");
}
