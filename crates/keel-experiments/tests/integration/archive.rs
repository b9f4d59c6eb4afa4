//! Closed log segments archived to a real lake folder (Delta table `decision_log`): only those
//! a snapshot covers and whose windows closed; removed locally only after the commit and the
//! manifest; the whole history still read (offline OPE, timeline) from the lake and checked
//! against the manifest; a pass cut short after the commit finds its rows instead of writing
//! them twice; and a process without the lake says so instead of reading a shorter history.
#![cfg(feature = "lake")]

use std::path::Path;
use std::sync::Arc;

use keel_experiments::archive::{self, Manifest, TABLE};
use keel_experiments::archive_lake::LakeArchive;
use keel_experiments::offline::ope::deployment_log;
use keel_experiments::offline::timeline::{BucketSize, timeline};
use keel_experiments::{DeploymentSpec, Deployments, LogOptions};
use keel_lake::Lake;
use keel_store::Store;

use crate::archive_support::{HOUR_MS, lake_rows, now_ms, spec, traffic};

async fn open(root: &Path) -> Arc<Deployments> {
    let store = Store::open(&format!("sqlite://{}", root.join("keel.db").display()))
        .await
        .expect("store");
    let options = LogOptions {
        segment_bytes: 32 * 1024,
        snapshot_every_records: u64::MAX,
        snapshot_every: std::time::Duration::from_secs(3600),
        ..LogOptions::default()
    };
    Deployments::open(store, root.join("experiments"), options)
        .await
        .expect("open")
}

fn local_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .map(|e| e.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

/// A lake folder registered as the archive of `root`'s deployments, and deployment `promo`.
struct Setup {
    lake: Lake,
    store: Arc<dyn archive::ArchiveStore>,
    exps: Arc<Deployments>,
    spec: DeploymentSpec,
    dir: std::path::PathBuf,
}

async fn setup(root: &Path) -> Setup {
    let lake = Lake::open(&root.join("lake")).expect("lake");
    let store: Arc<dyn archive::ArchiveStore> = Arc::new(LakeArchive::new(lake.clone()));
    archive::register(&root.join("experiments"), store.clone());
    let exps = open(root).await;
    exps.apply("promo", &spec(), "ana", None).await.expect("apply");
    Setup {
        lake,
        store,
        exps,
        spec: DeploymentSpec::from_json(&spec()).expect("spec"),
        dir: root.join("experiments/promo"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_segments_go_to_the_lake_and_the_whole_history_is_still_read() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let Setup {
        lake,
        store,
        exps,
        spec,
        dir,
    } = setup(root).await;
    traffic(&exps, 0, 1500, false).await;
    let engine = exps.get("promo").expect("running");

    // Nothing is due: no snapshot covers the segments, and their windows are open.
    assert_eq!(engine.archive(&store, now_ms()).await.expect("pass").segments, 0);
    engine.snapshot().await.expect("snapshot").expect("taken");
    assert_eq!(
        engine.archive(&store, now_ms()).await.expect("pass").segments,
        0,
        "windows still open"
    );
    let before_ope = deployment_log(&dir, &spec).expect("ope log");
    let before_timeline = timeline(&dir, "promo", &spec, BucketSize::Auto).expect("timeline");
    let report_before = serde_json::to_value(exps.report("promo").expect("report")).expect("json");
    let segments_before = local_segments(&dir);
    assert!(segments_before.len() >= 3, "{segments_before:?}");

    // Two hours on, every closed segment the snapshot covers is archived and removed.
    let later = now_ms() + 2 * HOUR_MS;
    let done = engine.archive(&store, later).await.expect("archive");
    assert!(done.segments >= 3, "{done:?}");
    let manifest = Manifest::read(&dir).expect("manifest");
    assert_eq!(manifest.segments.len() as u64, done.segments);
    assert_eq!(manifest.through(), done.through_seq);
    assert_eq!(manifest.segments[0].first_seq, 1);
    assert!(manifest.segments[0].lake_version.is_some());
    assert_eq!(
        local_segments(&dir).len(),
        segments_before.len() - done.segments as usize
    );
    assert_eq!(lake_rows(&lake).await, done.records);
    let again = engine.archive(&store, later).await.expect("again");
    assert_eq!(again.segments, 0, "nothing more is due");

    // Readers of the whole history read the archived part back from the lake.
    let after_ope = deployment_log(&dir, &spec).expect("ope log after");
    assert_eq!(after_ope.actions, before_ope.actions);
    assert_eq!(after_ope.rewards, before_ope.rewards);
    assert_eq!(after_ope.propensities, before_ope.propensities);
    let after_timeline = timeline(&dir, "promo", &spec, BucketSize::Auto).expect("timeline after");
    assert_eq!(
        (after_timeline.decisions, after_timeline.rewards),
        (before_timeline.decisions, before_timeline.rewards)
    );
    let verify = keel_experiments::logdir::verify(&dir).expect("verify");
    assert!(verify.is_ok() && verify.archived_checked, "{verify:?}");
    assert_eq!(verify.archived.len() as u64, done.segments);

    // A restart starts from the snapshot: nothing archived is needed, the figures agree.
    exps.close();
    let exps = open(root).await;
    let report_after = serde_json::to_value(exps.report("promo").expect("report")).expect("json");
    assert_eq!(report_after["variants"], report_before["variants"]);
    traffic(&exps, 1500, 100, false).await;
    exps.close();

    // The manifest is the archive's checksum: a changed one makes reading refuse.
    let path = dir.join("archive.json");
    let good = std::fs::read(&path).expect("manifest bytes");
    let mut changed = Manifest::read(&dir).expect("manifest");
    changed.segments[0].xxh3 = "0000000000000000".into();
    std::fs::write(&path, serde_json::to_vec(&changed).expect("json")).expect("write");
    let err = deployment_log(&dir, &spec).expect_err("mismatch").to_string();
    assert!(err.contains("do not match") && err.contains("checksum"), "{err}");
    std::fs::write(&path, good).expect("restore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_cut_short_after_the_commit_finds_its_rows_and_a_process_without_the_lake_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let Setup {
        lake,
        store,
        exps,
        spec,
        dir,
    } = setup(root).await;
    traffic(&exps, 0, 1200, false).await;
    let engine = exps.get("promo").expect("running");
    engine.snapshot().await.expect("snapshot");
    let segments = local_segments(&dir);
    let copies: Vec<(std::path::PathBuf, Vec<u8>)> = segments
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).expect("read")))
        .collect();
    let later = now_ms() + 2 * HOUR_MS;
    let done = engine.archive(&store, later).await.expect("archive");
    assert!(done.segments >= 2, "{done:?}");
    let rows = lake_rows(&lake).await;
    let version = lake.latest_version(TABLE).await.expect("version");

    // As if the process died after the lake commit, before the manifest and the removal.
    std::fs::remove_file(dir.join("archive.json")).expect("drop manifest");
    for (path, bytes) in &copies {
        std::fs::write(path, bytes).expect("put back");
    }
    let redo = engine.archive(&store, later).await.expect("redo");
    assert_eq!(redo.segments, done.segments);
    assert_eq!(lake_rows(&lake).await, rows, "no row written twice");
    assert_eq!(
        lake.latest_version(TABLE).await.expect("version"),
        version,
        "no new commit"
    );
    let manifest = Manifest::read(&dir).expect("manifest");
    assert!(
        manifest.segments.iter().all(|s| s.lake_version.is_none()),
        "{manifest:?}"
    );
    exps.close();

    // The same folder seen by a process with no lake registered for it: a clear refusal,
    // never a history that silently starts in the middle.
    let elsewhere = root.join("copy/experiments/promo");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), elsewhere.join(entry.file_name())).expect("copy");
        }
    }
    let err = deployment_log(&elsewhere, &spec).expect_err("no lake").to_string();
    assert!(
        err.contains("archived to the lake table decision_log") && err.contains("no lake"),
        "{err}"
    );
}
