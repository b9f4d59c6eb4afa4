//! Load for `bench/replicas/run.sh`: durable decide+feedback pairs over HTTP against keel
//! replicas. `CONNECTIONS` workers (default 64) each loop: `POST .../decide` on one replica, then
//! `POST .../feedback` for that decision on the other replica (`MODE=cross`, default) or on the
//! same one (`MODE=same`); workers are spread evenly over the replicas. Every answer is checked
//! (a refused request stops the run). Prints one JSON line: pairs, seconds, pairs/s.
//!
//! `cargo bench -p keel-experiments --bench http_load -- DEPLOYMENT URL [URL...]`, with
//! `DURATION` (seconds, default 10), `WARMUP` (seconds, default 2).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let Some((deployment, urls)) = args.split_first().filter(|(_, u)| !u.is_empty()) else {
        eprintln!("usage: http_load DEPLOYMENT URL [URL...]");
        std::process::exit(2);
    };
    let connections = env("CONNECTIONS", 64) as usize;
    let (duration, warmup) = (env("DURATION", 10), env("WARMUP", 2));
    let cross = std::env::var("MODE").map_or(true, |m| m != "same");
    let pairs = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..connections {
        let decide_url = format!("{}/v1/deployments/{deployment}/decide", urls[w % urls.len()]);
        let other = if cross { w + 1 } else { w };
        let feedback_url = format!("{}/v1/deployments/{deployment}/feedback", urls[other % urls.len()]);
        let (pairs, stop) = (pairs.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            // One kept-alive connection per worker and replica.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let body = serde_json::json!({"unit_id": format!("w{w}-{i}")});
                let r = client.post(&decide_url).json(&body).send().await.expect("decide");
                assert!(r.status().is_success(), "decide: {}", r.status());
                let d: serde_json::Value = r.json().await.expect("decide body");
                let body =
                    serde_json::json!({"decision_id": d["decision_id"], "reward": u8::from(i.is_multiple_of(3))});
                let r = client.post(&feedback_url).json(&body).send().await.expect("feedback");
                let status = r.status();
                assert!(
                    status.is_success(),
                    "feedback: {status} {}",
                    r.text().await.unwrap_or_default()
                );
                pairs.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    let (start, from) = (Instant::now(), pairs.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs(duration)).await;
    let (seconds, done) = (start.elapsed().as_secs_f64(), pairs.load(Ordering::Relaxed) - from);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    println!(
        "{}",
        serde_json::json!({
            "pairs": done, "seconds": seconds, "pairs_per_second": done as f64 / seconds,
            "connections": connections, "replicas": urls.len(), "mode": if cross { "cross" } else { "same" },
        })
    );
}
