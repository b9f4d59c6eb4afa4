//! The decision log in PostgreSQL (127.0.0.1:5432 or `KEEL_TEST_POSTGRES_URL`) archived to a
//! real lake folder: only ranges a snapshot covers, whose windows closed, and that hold a full
//! range of records; their rows deleted from `deployment_log` only with the range recorded in
//! `deployment_log_archived` (with their decisions' rows of `deployment_rewards`); two
//! replicas' passes archive each range once; the whole history still read (offline OPE, the
//! report rebuilt from the log, a replica starting without a snapshot) from the lake and
//! checked; verify and repair know what was archived.
#![cfg(feature = "lake")]

use std::path::Path;
use std::sync::Arc;

use keel_experiments::archive::{self, ArchiveStore};
use keel_experiments::archive_lake::LakeArchive;
use keel_experiments::offline::ope::{OpeOutcome, deployment_log_in};
use keel_experiments::{Deployment, DeploymentSpec, Deployments, LogOptions};
use keel_lake::Lake;
use keel_store::Store;

use crate::archive_support::{HOUR_MS, lake_rows, now_ms, spec, traffic};
use crate::pg_support::Database;
use crate::support::exposures;

/// A replica whose local folder is `home/experiments`, with the lake registered for it.
async fn replica(db: &Database, home: &Path, store: &Arc<dyn ArchiveStore>) -> Arc<Deployments> {
    let dir = home.join("experiments");
    archive::register(&dir, store.clone());
    let options = LogOptions {
        // Ranges of about 16 KiB of records (a few hundred): several in a short test.
        segment_bytes: 16 * 1024,
        snapshot_every_records: u64::MAX,
        snapshot_every: std::time::Duration::from_secs(3600),
        ..LogOptions::default()
    };
    let store = Store::open(&db.url).await.expect("store");
    Deployments::open(store, dir, options).await.expect("open")
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await.expect("count");
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_of_the_shared_log_go_to_the_lake_once_and_the_whole_history_is_still_read() {
    let db = Database::new("archive").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let lake = Lake::open(&tmp.path().join("lake")).expect("lake");
    let store: Arc<dyn ArchiveStore> = Arc::new(LakeArchive::new(lake.clone()));
    let (home_a, home_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = replica(&db, &home_a, &store).await;
    a.apply("promo", &spec(), "ana", None).await.expect("apply");
    traffic(&a, 0, 1500, true).await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    let keel_store = Store::open(&db.url).await.expect("store");
    let parsed = DeploymentSpec::from_json(&spec()).expect("spec");
    let logged_rows = count(&pool, "SELECT COUNT(*) FROM deployment_log").await;
    assert!(logged_rows >= 3000, "{logged_rows}");

    // Nothing is due without a snapshot covering the rows, nor while their windows are open.
    let engine = a.get("promo").expect("running");
    let later = now_ms() + 2 * HOUR_MS;
    assert_eq!(
        engine.archive(&store, later).await.expect("pass").segments,
        0,
        "no snapshot yet"
    );
    engine.snapshot().await.expect("snapshot").expect("taken");
    assert_eq!(
        engine.archive(&store, now_ms()).await.expect("pass").segments,
        0,
        "windows open"
    );
    let before = deployment_log_in(&keel_store, &home_a, "promo", &parsed, &OpeOutcome::Reward)
        .await
        .expect("ope log");
    let report_before = serde_json::to_value(a.report("promo").expect("report")).expect("json");

    // Two hours on, replica B joins; both replicas' passes run at once: each range once.
    let b = replica(&db, &home_b, &store).await;
    let engine_b = b.get("promo").expect("running on b");
    let (done_a, done_b) = tokio::join!(engine.archive(&store, later), engine_b.archive(&store, later));
    let (done_a, done_b) = (done_a.expect("pass a"), done_b.expect("pass b"));
    let ranges = done_a.segments + done_b.segments;
    let records = done_a.records + done_b.records;
    assert!(ranges >= 2, "{done_a:?} {done_b:?}");
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM deployment_log_archived").await,
        ranges as i64
    );
    assert_eq!(
        lake_rows(&lake).await,
        records,
        "every archived record in the lake, once"
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM deployment_log").await,
        logged_rows - records as i64,
        "the archived rows left deployment_log"
    );
    let (first,): (i64,) = sqlx::query_as("SELECT MIN(first_seq) FROM deployment_log_archived")
        .fetch_one(&pool)
        .await
        .expect("first");
    assert_eq!(first, 1);
    // The rows that answer a reward sent again went with their decisions' range: every
    // decision still in deployment_log keeps its one, no archived decision does.
    let archived_decisions = {
        let batches = lake
            .sql(&format!(
                "SELECT COUNT(*) AS n FROM {} WHERE deployment = 'promo' AND kind = 'decision'",
                archive::TABLE
            ))
            .await
            .expect("sql");
        batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<keel_lake::arrow::array::Int64Array>()
            .expect("a count")
            .value(0)
    };
    assert!(archived_decisions > 0);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM deployment_rewards").await,
        1500 - archived_decisions,
        "the reward rows of archived decisions left deployment_rewards"
    );
    let again = engine.archive(&store, later).await.expect("again");
    assert_eq!(again.segments, 0, "nothing more is due: {again:?}");

    // Readers of the whole history read the archived part back from the lake.
    let after = deployment_log_in(&keel_store, &home_a, "promo", &parsed, &OpeOutcome::Reward)
        .await
        .expect("ope log after");
    assert_eq!(after.actions, before.actions);
    assert_eq!(after.rewards, before.rewards);
    assert_eq!(after.propensities, before.propensities);
    let found = keel_experiments::pgcheck::verify(&pool, "promo", &home_a.join("experiments/promo"))
        .await
        .expect("verify");
    assert!(found.is_ok() && found.archived_checked, "{found:?}");
    assert_eq!(found.archived.len() as u64, ranges);
    let err = keel_experiments::pgcheck::repair(&keel_store, "promo", 5, "ana")
        .await
        .expect_err("archived records cannot be cut")
        .to_string();
    assert!(err.contains("archived to the lake table"), "{err}");

    // Both replicas serve on; a third starting with no snapshot replays from the lake and
    // agrees with the report rebuilt from the log.
    traffic(&b, 1500, 100, true).await;
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM deployment_rewards").await,
        1600 - archived_decisions,
        "new rewards are kept as before"
    );
    a.close();
    b.close();
    sqlx::query("DELETE FROM deployment_snapshots")
        .execute(&pool)
        .await
        .expect("drop snapshots");
    let home_c = tmp.path().join("c");
    let c = replica(&db, &home_c, &store).await;
    let report_c = serde_json::to_value(c.report("promo").expect("report")).expect("json");
    let rebuilt = Deployment::offline_report_in(&keel_store, "promo", &parsed, 1, &home_c.join("experiments"))
        .await
        .expect("offline report");
    let rebuilt = serde_json::to_value(rebuilt).expect("json");
    assert_eq!(report_c["variants"], rebuilt["variants"]);
    let decisions = |r: &serde_json::Value| -> u64 {
        r["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .map(|v| v["exposures"].as_u64().expect("exposures"))
            .sum()
    };
    assert_eq!(decisions(&report_c), decisions(&report_before) + 100);
    // The segment breakdown reads the same whole history, archived part included.
    let exps = c.clone();
    let segments = tokio::task::spawn_blocking(move || {
        keel_experiments::offline::segments::of_running(&exps, "promo", "region", None)
    })
    .await
    .expect("join")
    .expect("segments on PostgreSQL");
    assert_eq!(segments.rewards, 1600);
    assert_eq!(segments.segments.len(), 2);
    assert_eq!(segments.segments.iter().map(|s| s.rewards).sum::<u64>(), 1600);
    c.close();

    // The archived range's record is its checksum: a changed one makes reading refuse.
    sqlx::query("UPDATE deployment_log_archived SET xxh3 = '0000000000000000' WHERE first_seq = 1")
        .execute(&pool)
        .await
        .expect("tamper");
    let err = deployment_log_in(&keel_store, &home_a, "promo", &parsed, &OpeOutcome::Reward)
        .await
        .expect_err("mismatch")
        .to_string();
    assert!(err.contains("do not match") && err.contains("checksum"), "{err}");
}

/// Runs `f` on `rt`, a replica's own runtime, from inside the test's runtime.
fn on<T>(rt: &tokio::runtime::Runtime, f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| rt.block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_fell_behind_the_archive_reads_it_back_from_the_lake() {
    let db = Database::new("archive_behind").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let lake = Lake::open(&tmp.path().join("lake")).expect("lake");
    let store: Arc<dyn ArchiveStore> = Arc::new(LakeArchive::new(lake.clone()));
    let a = replica(&db, &tmp.path().join("a"), &store).await;
    a.apply("promo", &spec(), "ana", None).await.expect("apply");

    // Replica B runs on a runtime of its own, driven only when the test says: in between, none
    // of its tasks run (its writer does not poll), as on a machine that froze.
    let rt_b = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let home_b = tmp.path().join("b");
    let b = on(&rt_b, replica(&db, &home_b, &store));
    assert_eq!(exposures(&b, "promo"), 0);

    // While B is frozen, A serves, snapshots and archives past B's position (two hours on).
    traffic(&a, 0, 1500, false).await;
    let engine = a.get("promo").expect("running");
    engine.snapshot().await.expect("snapshot").expect("taken");
    let done = engine.archive(&store, now_ms() + 2 * HOUR_MS).await.expect("pass");
    assert!(done.segments >= 2, "{done:?}");
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    let (first_live,): (i64,) = sqlx::query_as("SELECT MIN(seq) FROM deployment_log")
        .fetch_one(&pool)
        .await
        .expect("first live row");
    assert!(first_live > 2, "B's next records left deployment_log: {first_live}");
    let served = exposures(&a, "promo");
    assert_eq!(served, 1500);
    let variants = |exps: &Deployments| {
        serde_json::to_value(exps.report("promo").expect("report")).expect("json")["variants"].clone()
    };
    let on_a = variants(&a);

    // B thaws: its writer finds the gap archived, reads it back from the lake, then the live
    // rows, and serves on with the same state as A (every decision and reward applied).
    let caught_up = on(&rt_b, async {
        for _ in 0..600 {
            if variants(&b) == on_a {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    });
    let engine_b = b.get("promo").expect("running on b");
    assert_eq!(engine_b.failure(), None, "B keeps serving");
    assert!(caught_up, "B: {} against A: {on_a}", variants(&b));
    on(&rt_b, traffic(&b, 1500, 100, false));
    assert_eq!(exposures(&b, "promo"), served + 100);
    a.close();
    b.close();
    tokio::task::block_in_place(move || drop(rt_b));
}
