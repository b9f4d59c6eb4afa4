//! A webhook receiver on loopback for the event tests: it checks `keel-signature`
//! (`t=...,v1=` HMAC-SHA256 of `"{t}.{body}"`) with its own HMAC over the raw body, not with
//! keel's code, and records what it got.

use std::sync::{Arc, Mutex};

use hmac::{KeyInit, Mac};
use serde_json::Value;

/// What the receiver got: (event header, body, signature valid and fresh).
pub type Received = Arc<Mutex<Vec<(String, Value, bool)>>>;

/// Starts a receiver at `http://127.0.0.1:PORT{path}` verifying with `secret`; it answers 500
/// to its very first request when `fail_first` (to see a retry), then 204.
pub async fn start(secret: &'static str, path: &str, fail_first: bool) -> (String, Received) {
    let got: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}{path}", listener.local_addr().expect("addr"));
    let state = got.clone();
    let app = axum::Router::new().route(
        path,
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let (t, v1) = header("keel-signature")
                    .split_once(",v1=")
                    .map(|(t, v)| (t.trim_start_matches("t=").to_string(), v.to_string()))
                    .unwrap_or_default();
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
                mac.update(format!("{t}.").as_bytes());
                mac.update(&body);
                let valid = hex::decode(&v1).is_ok_and(|v| mac.verify_slice(&v).is_ok());
                let fresh = t
                    .parse::<i64>()
                    .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut all = state.lock().expect("lock");
                all.push((header("keel-event"), value, valid && fresh));
                if fail_first && all.len() == 1 {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
    (url, got)
}
