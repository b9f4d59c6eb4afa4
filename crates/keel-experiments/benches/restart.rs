//! Restart of a deployment with a long history: time until it serves and the peak resident
//! memory of the restarting process, with snapshots (keel's default) against the anchor of a
//! full replay of the same log (what every start did before snapshots), in the same run.
//!
//! The history is written the way a server writes it: decisions in batches with a contextual
//! policy (LinUCB, 5 variants, 5 numeric features), every decision rewarded (3 % conversions),
//! a 2-second attribution window closed by the upkeep loop, snapshots taken by the upkeep
//! loop with the default settings (every 100,000 records, or as many as wait in open windows, or 5 minutes), fsync'd group commits.
//! Then the writing process stops the way a crash does (no snapshot at close), and a fresh
//! process (this binary again) opens the deployment and reports.
//!
//! Run: `cargo bench -p keel-experiments --bench restart -- [DECISIONS] [ANCHOR_DECISIONS]`
//! (defaults 10,000,000 and 1,000,000: the full-replay anchor on the longer history would
//! take minutes and gigabytes, which is the point). Needs about 400 bytes of disk per decision.

use std::path::{Path, PathBuf};
use std::time::Instant;

use keel_experiments::{Deployments, LogOptions, RewardIn, UnitContext};
use serde_json::{Value, json};

const K: usize = 5;
const D: usize = 5;
const BATCH: usize = 20_000;

fn spec() -> Value {
    let context: Vec<Value> = (0..D)
        .map(|i| json!({"type": "numeric", "name": format!("f{i}")}))
        .collect();
    let variants: Vec<Value> = (0..K).map(|i| json!({"name": format!("promo_{i}")})).collect();
    json!({
        "variants": variants,
        "policy": {"type": "lin_ucb", "alpha": 0.3},
        "context": context,
        "control": {"variant": "promo_0", "share": 0.05},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 2},
        "seed": 1
    })
}

async fn store(dir: &Path) -> keel_store::Store {
    keel_store::Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store")
}

/// Writes `n` decisions and their rewards through a running set of deployments.
async fn write_history(dir: &Path, n: usize) {
    let exps = Deployments::open(store(dir).await, dir.join("experiments"), LogOptions::default())
        .await
        .expect("open");
    exps.apply("promo", &spec(), "bench", None).await.expect("apply");
    exps.spawn_upkeep();
    let started = Instant::now();
    let mut rng_state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        (rng_state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut done = 0;
    while done < n {
        let m = BATCH.min(n - done);
        let units: Vec<String> = (done..done + m).map(|i| format!("c{i}")).collect();
        let contexts: Vec<serde_json::Map<String, Value>> = (0..m)
            .map(|_| (0..D).map(|j| (format!("f{j}"), json!(next()))).collect())
            .collect();
        let rows: Vec<UnitContext<'_>> = units
            .iter()
            .zip(&contexts)
            .map(|(u, c)| UnitContext {
                unit: u,
                context: Some(c),
            })
            .collect();
        let decided = exps.decide_many("promo", &rows, None).await.expect("decide");
        let rewards: Vec<RewardIn> = decided
            .into_iter()
            .map(|d| RewardIn {
                decision_id: d.expect("decided").decision_id,
                reward: if next() < 0.03 { 1.0 } else { 0.0 },
            })
            .collect();
        exps.feedback("promo", &rewards).await.expect("feedback");
        done += m;
        if done % 1_000_000 == 0 {
            eprintln!(
                "  {done} decisions and rewards written ({:.0}/s)",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    // Stop as a crash does, right after the last acknowledged write: no snapshot at close,
    // so the restart replays whatever followed the upkeep loop's last periodic snapshot.
    drop(exps);
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// In a fresh process: open the deployments and report time to ready and peak memory.
async fn restart(dir: &Path) {
    let started = Instant::now();
    let exps = Deployments::open(store(dir).await, dir.join("experiments"), LogOptions::default())
        .await
        .expect("open");
    let ready = started.elapsed();
    let engine = exps.get("promo").expect("serving");
    let report = exps.report("promo").expect("report");
    let exposures: u64 = report.variants.iter().map(|v| v.exposures).sum();
    // Every decision and reward the history acknowledged, policy-driven and control group.
    let control = report.control_group.as_ref();
    let decisions = report.treated_group.exposures + control.map_or(0, |c| c.exposures);
    let rewards = report.treated_group.rewards + control.map_or(0, |c| c.rewards);
    println!(
        "{}",
        json!({
            "ready_ms": ready.as_secs_f64() * 1000.0,
            "peak_rss_mib": peak_rss_kib() as f64 / 1024.0,
            "opened": engine.opened(),
            "exposures": exposures,
            "decisions": decisions,
            "rewards": rewards,
            "waiting_for_reward": report.waiting_for_reward,
        })
    );
}

fn measure(dir: &Path) -> Value {
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .arg("--restart")
        .arg(dir)
        .output()
        .expect("restart process");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

fn disk_bytes(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p).map_or(0, |d| {
            d.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
    }
    walk(dir)
}

fn scenario(n: usize, with_anchor: bool) {
    let tmp = tempfile::tempdir_in(std::env::var_os("KEEL_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from))
        .expect("tmp");
    let dir = tmp.path();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    rt.block_on(write_history(dir, n));
    drop(rt);
    eprintln!(
        "history of {n} decisions + {n} rewards written in {:.1} s, {:.0} MB on disk",
        started.elapsed().as_secs_f64(),
        disk_bytes(dir) as f64 / 1e6
    );
    let snapshot = measure(dir);
    println!("restart from snapshot, {n} decisions in history: {snapshot}");
    assert_eq!(
        snapshot["decisions"], n as u64,
        "every acknowledged decision is in the state"
    );
    assert_eq!(
        snapshot["rewards"], n as u64,
        "every acknowledged reward is in the state"
    );
    if with_anchor {
        let snaps = dir.join("experiments/promo/snapshots");
        std::fs::rename(&snaps, dir.join("snapshots-aside")).expect("move snapshots aside");
        let full = measure(dir);
        println!("anchor, full replay of the same log: {full}");
        let ratio = full["ready_ms"].as_f64().unwrap_or(0.0) / snapshot["ready_ms"].as_f64().unwrap_or(1.0);
        let mem = full["peak_rss_mib"].as_f64().unwrap_or(0.0) / snapshot["peak_rss_mib"].as_f64().unwrap_or(1.0);
        println!("full replay / snapshot: {ratio:.1}x the time, {mem:.1}x the peak memory");
        assert_eq!(full["exposures"], snapshot["exposures"], "both give the same state");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("--restart") {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(restart(Path::new(&args[1])));
        return;
    }
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let anchor: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    scenario(anchor, true);
    if n != anchor {
        scenario(n, false);
    }
}
