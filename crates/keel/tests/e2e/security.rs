//! `keel serve`'s gate as a user meets it: credentials demanded on a network address, tokens
//! created, used and revoked with the CLI, refusing to run open on a network, and a flood far
//! past the server's limits answered at once with 503s while memory stays bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Keel, Ports, eventually, repo_file};

fn bc_request() -> Value {
    json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": vec![0.5; 30]}]})
}

/// A workspace with `bc` registered at `@production`.
fn workspace() -> Keel {
    let keel = Keel::quiet();
    keel.json(&[
        "model",
        "push",
        "bc",
        &repo_file("fixtures/models/bc-lr.onnx"),
        "--alias",
        "production",
    ]);
    keel
}

fn token(keel: &Keel, args: &[&str]) -> (String, String) {
    let mut all = vec!["access", "token", "create"];
    all.extend_from_slice(args);
    let out = keel.json(&all);
    (
        out["token"].as_str().expect("secret").to_owned(),
        out["id"].as_str().expect("id").to_owned(),
    )
}

#[tokio::test]
async fn a_network_listener_requires_a_credential_that_the_cli_creates_and_revokes() {
    let keel = workspace();
    let (secret, id) = token(&keel, &["inference-client", "--scope", "infer"]);
    let (viewer, _) = token(&keel, &["dashboard", "--scope", "view", "--expires", "1h"]);
    // All interfaces: reachable from the network, so --auth auto requires credentials.
    let ports = Ports::free();
    let server = keel
        .serve_on(
            ports,
            &[
                "--http-addr",
                &format!("0.0.0.0:{}", ports.http),
                "--token-cache-ms",
                "0",
            ],
            &[],
        )
        .ready()
        .await;
    let infer = server.url("/v2/models/bc/infer");
    let anonymous = server
        .client
        .post(&infer)
        .json(&bc_request())
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status().as_u16(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let body: Value = anonymous.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("keel access token create"),
        "{body}"
    );

    let ok = server
        .client
        .post(&infer)
        .bearer_auth(&secret)
        .json(&bc_request())
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status().as_u16(), 200);
    let wrong = server
        .client
        .post(&infer)
        .bearer_auth(&viewer)
        .json(&bc_request())
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status().as_u16(), 403);
    let body: Value = wrong.json().await.expect("json");
    assert!(
        body["error"].as_str().expect("error").contains("--scope infer"),
        "{body}"
    );

    // Listing shows the token but never its secret.
    let listed = keel.json(&["access", "token", "ls"]);
    let text = listed.to_string();
    assert!(text.contains(&id) && !text.contains(&secret[5..]), "{text}");

    // Revoked with the CLI (another process): refused from the next request on.
    keel.ok(&["access", "token", "revoke", &id]);
    let after = server
        .client
        .post(&infer)
        .bearer_auth(&secret)
        .json(&bc_request())
        .send()
        .await
        .expect("request");
    assert_eq!(after.status().as_u16(), 401);
    let body: Value = after.json().await.expect("json");
    assert!(body["error"].as_str().expect("error").contains("revoked"), "{body}");

    // Refusals are in the audit log (written by a background writer: wait for it), attributed
    // and without the secret.
    let refused = |audit: &Value| -> Vec<Value> {
        audit
            .as_array()
            .expect("array")
            .iter()
            .filter(|e| e["action"] == "request.refused")
            .cloned()
            .collect()
    };
    let audit = eventually(Duration::from_secs(10), Duration::from_millis(100), async || {
        let audit = keel.json(&["access", "audit", "--limit", "100"]);
        match refused(&audit).len() {
            3 => Ok(audit),
            n => Err(format!("{n} refusals audited, expected 3: {audit}")),
        }
    })
    .await;
    let refusals = refused(&audit);
    assert!(refusals.iter().any(|e| e["actor"] == "dashboard"), "{audit}");
    assert!(!audit.to_string().contains(&secret[5..]));
    // Probes stay open.
    assert_eq!(server.get("/v2/health/live").await.0, 200);
}

#[tokio::test]
async fn serving_without_authentication_on_a_network_address_needs_an_explicit_flag() {
    let keel = workspace();
    let ports = Ports::free();
    let open = [
        "--http-addr".to_owned(),
        format!("0.0.0.0:{}", ports.http),
        "--auth".into(),
        "off".into(),
    ];
    let grpc = format!("127.0.0.1:{}", ports.grpc);
    let mut refused = keel
        .command(&["serve", "--grpc-addr", &grpc, &open[0], &open[1], &open[2], &open[3]])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut exited = None;
    for _ in 0..300 {
        exited = refused.try_wait().expect("try_wait");
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(exited) = exited else {
        let _ = refused.kill();
        let _ = refused.wait();
        panic!("keel serve kept running open on a network address");
    };
    let mut said = String::new();
    std::io::Read::read_to_string(refused.stderr.as_mut().expect("stderr"), &mut said).expect("stderr");
    assert_eq!(exited.code(), Some(1), "{said}");
    assert!(said.contains("--allow-unauthenticated-network-access"), "{said}");
    let server = keel
        .serve_on(
            ports,
            &[
                &open[0],
                &open[1],
                &open[2],
                &open[3],
                "--allow-unauthenticated-network-access",
            ],
            &[],
        )
        .ready()
        .await;
    let (status, _) = server.post("/v2/models/bc/infer", &bc_request()).await;
    assert_eq!(status, 200, "explicitly open");
}

/// Peak resident memory of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1024.0
}

/// The bound this test states for a flooded server's peak memory.
const FLOOD_RSS_BOUND_MIB: f64 = 512.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_far_past_the_limits_gets_503s_at_once_and_memory_stays_bounded() {
    let keel = workspace();
    let server = keel
        .serve(&[
            "--max-in-flight-inference",
            "8",
            "--max-in-flight",
            "16",
            "--no-log-predictions",
        ])
        .ready()
        .await;
    let pid = server.pid();
    // Warm up, then flood: 1,000 concurrent clients, each sending 8 requests, half of them with
    // a 256 KiB body (rows of the model's input), so queued bodies would show in memory.
    let small = serde_json::to_vec(&bc_request()).expect("json");
    let rows = 1_000;
    let big = serde_json::to_vec(
        &json!({"inputs": [{"name": "input", "shape": [rows, 30], "datatype": "FP32", "data": vec![0.5; rows * 30]}]}),
    )
    .expect("json");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1_000)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let url = server.url("/v2/models/bc/infer");
    let (ok, shed, other, hung) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..1_000 {
        let (client, url, small, big) = (client.clone(), url.clone(), small.clone(), big.clone());
        let (ok, shed, other, hung) = (ok.clone(), shed.clone(), other.clone(), hung.clone());
        tasks.spawn(async move {
            for i in 0..8 {
                let body = if (c + i) % 2 == 0 { big.clone() } else { small.clone() };
                match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => match r.status().as_u16() {
                        200 => drop(ok.fetch_add(1, Ordering::Relaxed)),
                        503 => {
                            assert!(r.headers().contains_key("retry-after"), "a 503 says when to retry");
                            shed.fetch_add(1, Ordering::Relaxed);
                        }
                        s => {
                            eprintln!("unexpected status {s}: {:?}", r.text().await);
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    Err(e) if e.is_timeout() => drop(hung.fetch_add(1, Ordering::Relaxed)),
                    Err(e) => panic!("request failed: {e}"),
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("client task");
    }
    let (ok, shed, other, hung) = (
        ok.load(Ordering::Relaxed),
        shed.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
        hung.load(Ordering::Relaxed),
    );
    let peak = peak_rss_mib(pid);
    eprintln!("flood: {ok} answered, {shed} shed (503), {other} other, {hung} hung; peak RSS {peak:.0} MiB");
    assert_eq!(ok + shed + other + hung, 8_000);
    assert_eq!(other, 0, "every answer is 200 or 503");
    assert_eq!(hung, 0, "no request hangs");
    assert!(
        shed > 0,
        "the flood went past the limit (8 inference requests in flight)"
    );
    assert!(ok > 0, "the server kept answering within its limit");
    assert!(
        peak < FLOOD_RSS_BOUND_MIB,
        "peak RSS {peak:.0} MiB is over the stated bound of {FLOOD_RSS_BOUND_MIB} MiB"
    );
    // Still healthy afterwards.
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || match server.post("/v2/models/bc/infer", &bc_request()).await.0 {
            200 => Ok(()),
            s => Err(format!("status {s} after the flood")),
        },
    )
    .await;
}
