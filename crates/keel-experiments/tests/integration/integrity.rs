//! Integrity of the decision log, on real files: damage before the end stops only that
//! deployment (every byte kept), a torn tail is dropped, `verify` finds the offset, `repair`
//! moves the damaged part aside and records who did it, a write that fails is never
//! acknowledged, and a log written before records carried checksums still opens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_experiments::logdir::repair_deployment_log;
use keel_experiments::logfile::{check, repair};
use keel_experiments::{Deployment, DeploymentSpec, Deployments, Durability, RewardIn};
use keel_store::Store;
use keel_types::ErrorKind;
use serde_json::json;

use crate::support::exposures;

async fn store(dir: &Path) -> Store {
    Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store")
}

async fn open(dir: &Path) -> Arc<Deployments> {
    Deployments::open(store(dir).await, dir.join("experiments"), Durability::Fsync)
        .await
        .expect("deployments open even when one log is damaged")
}

fn spec() -> serde_json::Value {
    json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "thompson_beta"},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
        "seed": 5
    })
}

fn log(dir: &Path, name: &str) -> PathBuf {
    dir.join("experiments").join(name).join("events.jsonl")
}

/// Byte offsets at which each line of a file starts.
fn line_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' && i + 1 < bytes.len() {
            starts.push(i + 1);
        }
    }
    starts
}

/// Two deployments, `n` decisions each (every other one rewarded), closed cleanly.
async fn two_deployments(dir: &Path, n: usize) {
    let exps = open(dir).await;
    for name in ["promo", "other"] {
        exps.apply(name, &spec(), "ana", None).await.expect("apply");
        for i in 0..n {
            let d = exps.decide(name, None, None).await.expect("decide");
            if i % 2 == 0 {
                let r = RewardIn {
                    decision_id: d.decision_id,
                    reward: 1.0,
                };
                exps.feedback(name, &[r]).await.expect("feedback")[0]
                    .as_ref()
                    .expect("counted");
            }
        }
    }
    exps.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_mid_log_stops_only_that_deployment_and_keeps_every_byte() {
    let dir = tempfile::tempdir().expect("tmp");
    two_deployments(dir.path(), 30).await;
    let path = log(dir.path(), "promo");
    let mut bytes = std::fs::read(&path).expect("read");
    let starts = line_starts(&bytes);
    let at = starts[10];
    // A byte inside the JSON of record 11 (past its header).
    bytes[at + 40] ^= 0x20;
    std::fs::write(&path, &bytes).expect("write");

    let exps = open(dir.path()).await;
    let e = exps.decide("promo", None, None).await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let text = e.to_string();
    for needed in [
        path.display().to_string(),
        format!("byte {at}"),
        "keel deployment verify promo".to_string(),
        format!("keel deployment repair promo --from-offset {at}"),
    ] {
        assert!(text.contains(&needed), "'{needed}' missing from: {text}");
    }
    let fb = RewardIn {
        decision_id: uuid::Uuid::now_v7().to_string(),
        reward: 1.0,
    };
    let e = exps.feedback("promo", &[fb]).await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(
        exps.health("promo").expect_err("no health").kind(),
        ErrorKind::Unavailable
    );
    let failed = exps.failed();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].name, "promo");
    assert!(failed[0].reason.contains(&format!("byte {at}")), "{}", failed[0].reason);
    // The other deployment serves.
    exps.decide("other", None, None).await.expect("other decides");
    assert_eq!(exposures(&exps, "other"), 31);
    exps.close();
    assert_eq!(std::fs::read(&path).expect("read"), bytes, "every byte kept");

    let found = check(&path).expect("check");
    let damage = found.damage.expect("damage found");
    assert_eq!(damage.offset, at as u64);
    assert_eq!(damage.next_valid, Some(starts[11] as u64));
    assert!(damage.reason.contains("checksum"), "{}", damage.reason);
    assert_eq!(found.records, 10);
    assert_eq!(found.first_seq, Some(1));
    assert_eq!(found.last_seq, Some(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_dropped_and_the_deployment_starts() {
    let dir = tempfile::tempdir().expect("tmp");
    two_deployments(dir.path(), 10).await;
    let path = log(dir.path(), "promo");
    let bytes = std::fs::read(&path).expect("read");
    let last = *line_starts(&bytes).last().expect("lines");
    // The last record is a decision (10 decisions, rewards after the even ones): cut it half-way.
    std::fs::write(&path, &bytes[..last + (bytes.len() - last) / 2]).expect("cut");
    let found = check(&path).expect("check");
    assert!(found.is_ok());
    assert_eq!(found.torn_tail.as_ref().expect("torn").offset, last as u64);

    let exps = open(dir.path()).await;
    assert_eq!(
        exposures(&exps, "promo"),
        9,
        "the torn decision is gone, the rest is there"
    );
    exps.decide("promo", None, None).await.expect("decides");
    exps.close();
    let exps = open(dir.path()).await;
    assert_eq!(exposures(&exps, "promo"), 10);
    exps.close();

    // Garbage after the last record, with and without an end of line.
    for garbage in [&b"\x00\x00\x17junk"[..], &b"7 00ff 3 {}\n"[..]] {
        let mut bytes = std::fs::read(&path).expect("read");
        let good = bytes.len();
        bytes.extend_from_slice(garbage);
        std::fs::write(&path, &bytes).expect("write");
        let exps = open(dir.path()).await;
        assert!(exps.failed().is_empty(), "{:?}", exps.failed());
        assert_eq!(exposures(&exps, "promo"), 10);
        exps.close();
        assert_eq!(std::fs::read(&path).expect("read").len(), good, "the tail was cut");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_gap_or_a_repeated_record_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    two_deployments(dir.path(), 12).await;
    let path = log(dir.path(), "promo");
    let original = std::fs::read(&path).expect("read");
    let starts = line_starts(&original);
    // Record 6 removed: every record is intact, one is missing.
    let mut gap = original[..starts[5]].to_vec();
    gap.extend_from_slice(&original[starts[6]..]);
    // Record 6 twice.
    let mut repeated = original[..starts[6]].to_vec();
    repeated.extend_from_slice(&original[starts[5]..]);
    for (bytes, at, what) in [(gap, starts[5], "sequence gap"), (repeated, starts[6], "sequence")] {
        std::fs::write(&path, &bytes).expect("write");
        let exps = open(dir.path()).await;
        let e = exps.decide("promo", None, None).await.expect_err("refused");
        assert!(e.to_string().contains(what), "{e}");
        assert!(e.to_string().contains(&format!("byte {at}")), "{e}");
        exps.decide("other", None, None).await.expect("other decides");
        exps.close();
        assert_eq!(std::fs::read(&path).expect("read"), bytes, "every byte kept");
        assert_eq!(check(&path).expect("check").damage.expect("damage").offset, at as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_moves_the_damaged_part_aside_and_records_who_did_it() {
    let dir = tempfile::tempdir().expect("tmp");
    two_deployments(dir.path(), 20).await;
    let path = log(dir.path(), "promo");
    let mut bytes = std::fs::read(&path).expect("read");
    let starts = line_starts(&bytes);
    let at = starts[7];
    bytes[at + 30] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    let store = store(dir.path()).await;
    let experiments = dir.path().join("experiments");

    // Not the start of a record, past the end: refused, nothing moved.
    for wrong in [at as u64 + 3, bytes.len() as u64 + 10] {
        let e = repair_deployment_log(&store, &experiments, "promo", wrong, "ana")
            .await
            .expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
    assert_eq!(std::fs::read(&path).expect("read"), bytes);

    let done = repair_deployment_log(&store, &experiments, "promo", at as u64, "ana")
        .await
        .expect("repair");
    assert_eq!(
        std::fs::read(&done.moved_to).expect("moved"),
        &bytes[at..],
        "moved, exactly"
    );
    assert_eq!(done.moved_to.parent(), path.parent(), "a sibling file");
    assert_eq!(std::fs::read(&path).expect("read"), &bytes[..at]);
    assert_eq!(done.after.records, 7);
    assert!(done.after.is_ok());
    let changes = store.list_changes(10, Some("deployment/promo")).await.expect("changes");
    let change = changes
        .iter()
        .find(|c| c.kind == "deployment.log_repaired")
        .expect("repair recorded");
    assert_eq!(change.actor, "ana");
    assert_eq!(change.details["from_offset"], json!(at));
    assert_eq!(change.details["moved_to"], json!(done.moved_to.display().to_string()));
    assert_eq!(change.details["moved_bytes"], json!(bytes.len() - at));

    // Starts with the records before the offset (records 1 and 2 are the revision and its
    // spec, then decisions and rewards: 2 + d + r = 7 with r = ceil(d / 2) gives 3 decisions).
    let exps = open(dir.path()).await;
    assert!(exps.failed().is_empty());
    assert_eq!(exposures(&exps, "promo"), 3);
    exps.decide("promo", None, None).await.expect("decides");
    // A log a server holds open is not repaired.
    let e = repair(&path, 0).expect_err("locked");
    assert!(e.to_string().contains("running keel server"), "{e}");
    exps.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_not_acknowledged_and_the_deployment_stops() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = store(dir.path()).await;
    store.put_deployment("full", &spec(), "ana", None).await.expect("put");
    store.put_deployment("fine", &spec(), "ana", None).await.expect("put");
    // The log of `full` is a device where every write fails with ENOSPC.
    let full = log(dir.path(), "full");
    std::fs::create_dir_all(full.parent().expect("dir")).expect("mkdir");
    std::os::unix::fs::symlink("/dev/full", &full).expect("symlink");
    let exps = Deployments::open(store, dir.path().join("experiments"), Durability::Fsync)
        .await
        .expect("open");
    let e = exps
        .decide("full", Some("u1"), None)
        .await
        .expect_err("not acknowledged");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("No space left on device"), "{e}");
    // From then on it refuses everything, before changing any state.
    for _ in 0..3 {
        let e = exps.decide("full", None, None).await.expect_err("refused");
        assert!(e.to_string().contains("stopped serving"), "{e}");
    }
    let fb = RewardIn {
        decision_id: uuid::Uuid::now_v7().to_string(),
        reward: 1.0,
    };
    assert!(exps.feedback("full", &[fb]).await.is_err());
    assert!(exps.report("full").is_err(), "no report of a state ahead of the disk");
    let failed = exps.failed();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].reason.contains("No space left on device"),
        "{}",
        failed[0].reason
    );
    exps.decide("fine", None, None).await.expect("the other one serves");
    exps.close();
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_before_checksums_opens_with_the_same_report() {
    let dir = tempfile::tempdir().expect("tmp");
    let raw_spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden("v1-spec.json")).expect("spec")).expect("json");
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden("v1-report.json")).expect("report")).expect("json");
    let old = std::fs::read(golden("v1.log")).expect("log");
    let path = log(dir.path(), "golden");
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    std::fs::write(&path, &old).expect("copy");
    let store = store(dir.path()).await;
    store
        .put_deployment("golden", &raw_spec, "ana", None)
        .await
        .expect("put");
    let spec = DeploymentSpec::from_json(&raw_spec).expect("spec");

    let report = Deployment::offline_report("golden", &spec, 1, &dir.path().join("experiments")).expect("report");
    assert_eq!(serde_json::to_value(&report).expect("json"), expected);
    let found = check(&path).expect("check");
    let lines = old.iter().filter(|b| **b == b'\n').count() as u64;
    assert_eq!((found.records, found.legacy_records), (lines, lines));
    assert!(found.is_ok() && found.torn_tail.is_none());

    // Served: the same report, and new records appended (framed) after the old ones.
    let exps = open(dir.path()).await;
    assert_eq!(
        serde_json::to_value(exps.report("golden").expect("r")).expect("json"),
        expected
    );
    // 24 decisions, 16 rewarded.
    assert_eq!(exps.get("golden").expect("engine").waiting().expect("waiting"), 8);
    let ctx = json!({"avg_spend": 20.0, "device": "web"});
    exps.decide("golden", Some("new-customer"), ctx.as_object())
        .await
        .expect("decides");
    exps.close();
    let now = std::fs::read(&path).expect("read");
    assert_eq!(&now[..old.len()], &old[..], "the old records are kept as they were");
    let found = check(&path).expect("check");
    assert_eq!((found.records, found.legacy_records), (lines + 1, lines));
    let exps = open(dir.path()).await;
    assert_eq!(exps.get("golden").expect("engine").waiting().expect("waiting"), 9);
    exps.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsync_that_fails_is_never_acknowledged_and_a_restart_keeps_everything_acknowledged() {
    let dir = tempfile::tempdir().expect("tmp");
    let exps = open(dir.path()).await;
    exps.apply("promo", &spec(), "ana", None).await.expect("apply");
    let mut acknowledged = 0;
    for _ in 0..25 {
        exps.decide("promo", None, None).await.expect("decide");
        acknowledged += 1;
    }
    keel_experiments::wal::faults::fail_next_sync(&dir.path().join("experiments").join("promo"));
    let e = exps.decide("promo", None, None).await.expect_err("not acknowledged");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("Input/output error"), "{e}");
    let e = exps
        .decide("promo", None, None)
        .await
        .expect_err("refused from then on");
    assert!(e.to_string().contains("stopped serving"), "{e}");
    assert!(exps.report("promo").is_err(), "no report of a state ahead of the disk");
    exps.close();
    drop(exps);

    let exps = open(dir.path()).await;
    let seen = exposures(&exps, "promo");
    // The decision whose sync failed reached the file (the OS took the write) but was never
    // acknowledged: it may or may not be there; every acknowledged one is.
    assert!(
        (acknowledged..=acknowledged + 1).contains(&seen),
        "{seen} decisions after restart, {acknowledged} acknowledged"
    );
    exps.decide("promo", None, None)
        .await
        .expect("serves again after a restart");
    exps.close();
}
