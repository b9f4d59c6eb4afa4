//! Two `keel serve` replicas on one PostgreSQL store (127.0.0.1:5432, or
//! `KEEL_TEST_POSTGRES_URL`), each test in a database of its own: decide on one, reward on the
//! other, SIGKILL one mid-traffic: the other keeps answering, nothing acknowledged is lost, and
//! the restarted replica converges with the survivor. And the kill -9 test of the file log, on
//! PostgreSQL.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Keel, assert_refused, eventually, items};

fn admin_url() -> String {
    std::env::var("KEEL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `psql URL -tAc SQL`, which must succeed: its output, trimmed.
fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .expect("psql (the PostgreSQL client) on PATH");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A fresh PostgreSQL database, dropped with the value.
struct Database {
    name: String,
    url: String,
}

impl Database {
    fn new() -> Database {
        let name = format!("keel_e2e_{}", uuid_like());
        psql(&admin_url(), &format!("CREATE DATABASE {name}"));
        let admin = admin_url();
        let server = &admin[..admin.rfind('/').expect("a database in the url")];
        Database {
            url: format!("{server}/{name}"),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &admin_url(),
                "-tAc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{}_{nanos}", std::process::id())
}

fn spec() -> Value {
    json!({
        "variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "policy": {"type": "thompson_beta"},
        "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 3600},
        "seed": 5
    })
}

/// Exposures and rewards per variant, from `GET .../report`.
fn counts(report: &Value) -> Vec<(String, u64, u64)> {
    items(&report["variants"])
        .iter()
        .map(|v| {
            (
                v["name"].as_str().expect("name").to_string(),
                v["exposures"].as_u64().expect("exposures"),
                v["rewards"].as_u64().expect("rewards"),
            )
        })
        .collect()
}

async fn post(client: &reqwest::Client, url: String, body: &Value) -> Result<Value, String> {
    let r = client.post(url).json(body).send().await.map_err(|e| e.to_string())?;
    let status = r.status();
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status} {body}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_decide_and_reward_across_and_survive_a_kill_9() {
    let db = Database::new();
    // Two machines: each replica has its own home folder; they share only the store.
    let keel = Keel::quiet().env("KEEL_STORE_URL", db.url.clone());
    let other = Keel::quiet().env("KEEL_STORE_URL", db.url.clone());
    let spec_path = keel.file("spec.json", spec().to_string());
    keel.ok(&["deployment", "apply", "promo", "-f", &spec_path]);
    let mut a = keel.serve(&[]).ready().await;
    let b = other.serve(&[]).ready().await;

    // Eight clients: each decides on one replica and rewards the decision on the other; once a
    // replica stops answering, the client goes on with the survivor. A request that failed is
    // sent again to the survivor, so what it acknowledges is known exactly.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..8 {
        let client = reqwest::Client::new();
        let (base_a, base_b) = (a.base.clone(), b.base.clone());
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        workers.push(tokio::spawn(async move {
            let mut bases = if w % 2 == 0 {
                [base_a, base_b]
            } else {
                [base_b.clone(), base_a]
            };
            let mut decided = Vec::new();
            let mut rewarded = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let body = json!({"unit_id": format!("w{w}-{i}")});
                let d = match post(&client, format!("{}/v1/deployments/promo/decide", bases[0]), &body).await {
                    Ok(d) => d,
                    Err(_) => {
                        // This replica is gone: both halves go to the other from now on.
                        bases[0] = bases[1].clone();
                        continue;
                    }
                };
                let id = d["decision_id"].as_str().expect("decision id").to_string();
                decided.push(id.clone());
                let reward = f64::from(i % 3 == 0);
                let body = json!({"decision_id": id, "reward": reward});
                let url = |base: &str| format!("{base}/v1/deployments/promo/feedback");
                if post(&client, url(&bases[1]), &body).await.is_err() {
                    bases[1] = bases[0].clone();
                    post(&client, url(&bases[1]), &body)
                        .await
                        .expect("the survivor takes the reward the dead replica may have logged");
                }
                rewarded.push((id, reward));
                acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            (decided, rewarded)
        }));
    }
    // Traffic on both, then the kill, then traffic on the survivor alone: waits on acknowledged
    // pairs, not on time.
    let pairs = |n: usize| {
        let acknowledged = acknowledged.clone();
        async move {
            eventually(Duration::from_secs(180), Duration::from_millis(20), async || {
                let got = acknowledged.load(Ordering::Relaxed);
                if got >= n {
                    Ok(())
                } else {
                    Err(format!("{got} pairs acknowledged, waiting for {n}"))
                }
            })
            .await
        }
    };
    pairs(150).await;
    a.kill();
    let at_kill = b.get("/v1/deployments/promo/report").await.1;
    let after_kill = acknowledged.load(Ordering::Relaxed);
    pairs(after_kill + 100).await;
    stop.store(true, Ordering::Relaxed);
    let (mut decided, mut rewarded) = (Vec::new(), Vec::new());
    for w in workers {
        let (d, r) = w.await.expect("worker");
        decided.extend(d);
        rewarded.extend(r);
    }
    let report = b.get("/v1/deployments/promo/report").await.1;
    let (exposures, rewards): (u64, u64) = counts(&report).iter().fold((0, 0), |(e, r), c| (e + c.1, r + c.2));
    let before: u64 = counts(&at_kill).iter().map(|c| c.1).sum();
    assert!(rewarded.len() > 100, "too little traffic: {}", rewarded.len());
    assert!(
        exposures > before,
        "the survivor kept deciding after the kill: {before} -> {exposures}"
    );
    // Nothing acknowledged is lost: in the survivor's state, and in PostgreSQL.
    assert!(exposures >= decided.len() as u64, "{exposures} < {}", decided.len());
    assert!(rewards >= rewarded.len() as u64, "{rewards} < {}", rewarded.len());
    let stored: u64 = psql(
        &db.url,
        "SELECT COUNT(*) FROM deployment_log WHERE deployment = 'promo' AND body LIKE '{\"t\":\"decision\"%'",
    )
    .parse()
    .expect("count");
    assert!(
        stored >= decided.len() as u64,
        "{stored} stored < {} acknowledged",
        decided.len()
    );
    let stored_rewards: u64 = psql(
        &db.url,
        "SELECT COUNT(*) FROM deployment_rewards WHERE deployment = 'promo'",
    )
    .parse()
    .expect("count");
    assert!(stored_rewards >= rewarded.len() as u64);
    // Every acknowledged reward is known to the survivor: again, it counts nothing.
    let batch: Vec<Value> = rewarded
        .iter()
        .map(|(id, r)| json!({"decision_id": id, "reward": r}))
        .collect();
    let (_, again) = b
        .post("/v1/deployments/promo/feedback/batch", &json!({"events": batch}))
        .await;
    assert_eq!(again["failed"], 0, "{again}");
    assert_eq!(again["counted"], 0, "{again}");

    // The killed replica comes back on its addresses and converges with the survivor.
    a = keel.serve_on(a.ports, &[], &[]).ready().await;
    let expected = counts(&b.get("/v1/deployments/promo/report").await.1);
    eventually(Duration::from_secs(10), Duration::from_millis(50), async || {
        let got = counts(&a.get("/v1/deployments/promo/report").await.1);
        if got == expected {
            Ok(())
        } else {
            Err(format!("restarted replica {got:?} != survivor {expected:?}"))
        }
    })
    .await;
    // A reward for a decision made a moment ago on the other replica is taken, not unknown.
    let (_, d) = b
        .post("/v1/deployments/promo/decide", &json!({"unit_id": "late"}))
        .await;
    let (status, r) = a
        .post(
            "/v1/deployments/promo/feedback",
            &json!({"decision_id": d["decision_id"], "reward": 1}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_decision_or_reward_on_postgres() {
    let db = Database::new();
    let keel = Keel::quiet()
        .env("KEEL_AUTHOR", "tester")
        .env("KEEL_STORE_URL", db.url.clone());
    crate::restart::kill_9_scenario(keel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_repair_a_damaged_log_in_postgres_from_the_cli() {
    let db = Database::new();
    let keel = Keel::quiet()
        .env("KEEL_AUTHOR", "tester")
        .env("KEEL_STORE_URL", db.url.clone());
    let spec_path = keel.file("spec.json", spec().to_string());
    keel.ok(&["deployment", "apply", "promo", "-f", &spec_path]);
    let server = keel.serve(&[]).ready().await;
    for i in 0..8 {
        let (status, d) = server
            .post("/v1/deployments/promo/decide", &json!({"unit_id": format!("u{i}")}))
            .await;
        assert_eq!(status, 200, "{d}");
    }
    server.stop();
    let clean = keel.json(&["deployment", "verify", "promo"]);
    assert_eq!(clean["problems"], 0, "{clean}");
    // The revision, its spec, then the 8 decisions.
    assert_eq!(clean["last_seq"], 10, "{clean}");

    psql(
        &db.url,
        "UPDATE deployment_log SET body = replace(body, '\"p\":', '\"p\": ') WHERE deployment = 'promo' AND seq = 5",
    );
    let out = keel.run(&["deployment", "verify", "promo"]);
    assert_refused(&out, "damaged at seq 5");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("DAMAGED at seq 5 (written by replica"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_refused(
        &keel.run(&["deployment", "repair", "promo", "--from-offset", "5"]),
        "--from-seq",
    );

    let done = keel.json(&["deployment", "repair", "promo", "--from-seq", "5"]);
    assert_eq!(done["moved_rows"], 6, "{done}");
    assert_eq!(done["after"]["problems"], 0, "{done}");
    assert_eq!(
        psql(
            &db.url,
            "SELECT COUNT(*) FROM deployment_log_repaired WHERE deployment = 'promo'"
        ),
        "6"
    );
    assert_eq!(
        psql(
            &db.url,
            "SELECT actor || ' ' || (details::json->>'from_seq') FROM change_events WHERE kind = 'deployment.log_repaired'"
        ),
        "tester 5"
    );
    keel.ok(&["deployment", "verify", "promo"]);
    // It serves again from the records kept: 2 decisions, then new ones.
    let server = keel.serve(&[]).ready().await;
    let (status, d) = server
        .post("/v1/deployments/promo/decide", &json!({"unit_id": "after"}))
        .await;
    assert_eq!(status, 200, "{d}");
    let report = server.get("/v1/deployments/promo/report").await.1;
    assert_eq!(counts(&report).iter().map(|c| c.1).sum::<u64>(), 3, "{report}");
}
