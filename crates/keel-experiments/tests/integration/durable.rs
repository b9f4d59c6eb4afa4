//! Bounded restarts on real files: the log rolls into segments, snapshots hold the state, a
//! restart restores the newest good snapshot and replays only the records after it, and the
//! state it rebuilds is the state a replay of the whole log rebuilds. Damaged snapshots are
//! set aside (never deleted) and the log covers for them; damage in a segment a start needs
//! stops that deployment with the file named.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_experiments::{Deployments, LogOptions, RewardIn, UnitContext};
use keel_store::Store;
use serde_json::{Value, json};

async fn store(dir: &Path) -> Store {
    Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store")
}

/// Small segments and snapshots by hand only, so the tests see every moving part.
fn options() -> LogOptions {
    LogOptions {
        segment_bytes: 16 * 1024,
        snapshot_every_records: u64::MAX,
        snapshot_every: std::time::Duration::from_secs(3600),
        ..LogOptions::default()
    }
}

async fn open(dir: &Path) -> Arc<Deployments> {
    Deployments::open(store(dir).await, dir.join("experiments"), options())
        .await
        .expect("open")
}

fn spec() -> Value {
    json!({
        "variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "policy": {"type": "lin_ucb", "alpha": 0.5},
        "context": [{"type": "numeric", "name": "x"}],
        "control": {"variant": "a", "share": 0.1},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
        "seed": 11
    })
}

fn deployment_dir(dir: &Path) -> PathBuf {
    dir.join("experiments").join("promo")
}

/// `n` decisions for units `from..from+n` (in one batch), every third one rewarded.
async fn traffic(exps: &Deployments, from: usize, n: usize) {
    let units: Vec<String> = (from..from + n).map(|i| format!("u{i}")).collect();
    let contexts: Vec<serde_json::Map<String, Value>> = (from..from + n)
        .map(|i| {
            let mut m = serde_json::Map::new();
            m.insert("x".into(), json!((i % 17) as f64 / 17.0));
            m
        })
        .collect();
    let rows: Vec<UnitContext<'_>> = units
        .iter()
        .zip(&contexts)
        .map(|(u, c)| UnitContext {
            unit: u,
            context: Some(c),
        })
        .collect();
    let out = exps.decide_many("promo", &rows, None).await.expect("decide");
    let rewards: Vec<RewardIn> = out
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(i, d)| RewardIn {
            decision_id: d.as_ref().expect("decided").decision_id.clone(),
            reward: (i % 2) as f64,
        })
        .collect();
    for r in exps.feedback("promo", &rewards).await.expect("feedback") {
        assert!(r.expect("counted").counted);
    }
}

fn report(exps: &Deployments) -> Value {
    serde_json::to_value(exps.report("promo").expect("report")).expect("json")
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The report without the parts that depend on when it is asked.
fn comparable(mut r: Value) -> Value {
    r.as_object_mut().map(|o| o.remove("generated_at"));
    r
}

#[tokio::test]
async fn a_restart_replays_only_what_follows_the_snapshot_and_rebuilds_the_same_state() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    exps.apply("promo", &spec(), "ana", None).await.expect("apply");
    traffic(&exps, 0, 600).await;
    let snap = exps.get("promo").expect("running").snapshot().await.expect("snapshot");
    let snap_seq = snap.expect("something to snapshot");
    traffic(&exps, 600, 150).await;
    let before = comparable(report(&exps));
    // A crash, as far as the log is concerned: no snapshot at close.
    drop(exps);

    let segments = files(&deployment_dir(dir.path()).join("segments"));
    assert!(segments.len() >= 3, "the log rolled into segments: {segments:?}");
    assert_eq!(files(&deployment_dir(dir.path()).join("snapshots")).len(), 1);

    let exps = open(dir.path()).await;
    let opened = exps.get("promo").expect("running").opened();
    assert_eq!(opened.snapshot, Some(snap_seq), "{opened:?}");
    // 150 decisions and 50 rewards after the snapshot, nothing before it.
    assert_eq!(opened.replayed, 200, "{opened:?}");
    assert_eq!(
        comparable(report(&exps)),
        before,
        "the snapshot and the tail give the state"
    );
    exps.close();

    // The same log replayed from its first record gives the same state.
    let aside = dir.path().join("snapshots-aside");
    std::fs::rename(deployment_dir(dir.path()).join("snapshots"), &aside).expect("move");
    let exps = open(dir.path()).await;
    let opened = exps.get("promo").expect("running").opened();
    assert_eq!(opened.snapshot, None);
    assert!(opened.replayed > 1000, "{opened:?}");
    assert_eq!(comparable(report(&exps)), before, "a full replay agrees");
    // Decisions go on after a restart, and OPE reads every segment.
    traffic(&exps, 750, 30).await;
    exps.close();
    let spec = keel_experiments::DeploymentSpec::from_json(&spec()).expect("spec");
    let logged = keel_experiments::offline::ope::deployment_log(&deployment_dir(dir.path()), &spec).expect("log");
    assert_eq!(
        logged.rewards.len(),
        200 + 50 + 10,
        "every rewarded decision, from every segment"
    );
}

#[tokio::test]
async fn a_clean_close_snapshots_so_the_next_start_replays_almost_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    exps.apply("promo", &spec(), "ana", None).await.expect("apply");
    traffic(&exps, 0, 300).await;
    let before = comparable(report(&exps));
    exps.close();
    let exps = open(dir.path()).await;
    let opened = exps.get("promo").expect("running").opened();
    assert!(opened.snapshot.is_some(), "{opened:?}");
    assert_eq!(opened.replayed, 0, "{opened:?}");
    assert_eq!(comparable(report(&exps)), before);
    // A revision that changes only the alerting parts keeps using snapshots.
    let mut revised = spec();
    revised["description"] = json!("weekly promotions");
    exps.apply("promo", &revised, "ana", None).await.expect("apply");
    let opened = exps.get("promo").expect("running").opened();
    assert!(
        opened.snapshot.is_some(),
        "a revision restarts from the close snapshot: {opened:?}"
    );
    assert!(opened.replayed <= 1, "{opened:?}");
    let after = comparable(report(&exps));
    assert_eq!(after["variants"], before["variants"], "the learned state is kept");
    exps.close();
}

#[tokio::test]
async fn a_truncated_snapshot_is_set_aside_and_the_log_covers_for_it() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    exps.apply("promo", &spec(), "ana", None).await.expect("apply");
    traffic(&exps, 0, 300).await;
    exps.get("promo").expect("running").snapshot().await.expect("snapshot");
    traffic(&exps, 300, 90).await;
    let before = comparable(report(&exps));
    exps.close();
    let snaps = deployment_dir(dir.path()).join("snapshots");
    let newest = snaps.join(files(&snaps).last().expect("a snapshot"));
    let bytes = std::fs::read(&newest).expect("read");
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).expect("truncate");

    let exps = open(dir.path()).await;
    let opened = exps.get("promo").expect("running").opened();
    assert!(opened.snapshot.is_some(), "the older snapshot is used: {opened:?}");
    assert_eq!(opened.replayed, 120, "90 decisions and 30 rewards after it: {opened:?}");
    assert_eq!(comparable(report(&exps)), before, "nothing acknowledged is lost");
    exps.close();
    let kept: Vec<String> = files(&snaps).into_iter().filter(|n| n.contains(".damaged-")).collect();
    assert_eq!(
        kept.len(),
        1,
        "the damaged snapshot's bytes are kept: {:?}",
        files(&snaps)
    );
    let aside = snaps.join(&kept[0]);
    assert_eq!(std::fs::read(aside).expect("kept"), &bytes[..bytes.len() / 2]);
}

#[tokio::test]
async fn damage_in_a_segment_a_start_needs_stops_the_deployment_and_names_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    exps.apply("promo", &spec(), "ana", None).await.expect("apply");
    traffic(&exps, 0, 400).await;
    drop(exps);
    let segments_dir = deployment_dir(dir.path()).join("segments");
    let first = segments_dir.join(files(&segments_dir).first().expect("a segment"));
    let mut bytes = std::fs::read(&first).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&first, &bytes).expect("write");

    let found = keel_experiments::logdir::verify(&deployment_dir(dir.path())).expect("verify");
    let damage = found.damage.as_ref().expect("damage found");
    assert_eq!(damage.file, first);

    let exps = open(dir.path()).await;
    let err = exps.decide("promo", Some("u1"), None).await.expect_err("not serving");
    let message = err.to_string();
    assert!(message.contains(&first.display().to_string()), "{message}");
    assert!(message.contains("keel deployment repair"), "{message}");
    exps.close();
    assert_eq!(std::fs::read(&first).expect("read"), bytes, "every byte kept");
}

#[tokio::test]
async fn verify_reads_every_segment_and_snapshot() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    exps.apply("promo", &spec(), "ana", None).await.expect("apply");
    traffic(&exps, 0, 300).await;
    exps.close();
    let found = keel_experiments::logdir::verify(&deployment_dir(dir.path())).expect("verify");
    assert!(found.is_ok(), "{found:?}");
    assert!(found.files.len() >= 2, "{found:?}");
    // apply (its revision and spec) + 300 decisions + 100 rewards.
    assert_eq!(found.records, 402);
    assert_eq!(found.last_seq, Some(402));
    assert_eq!(found.snapshots.len(), 1);
    assert!(found.snapshots[0].problem.is_none());
}
