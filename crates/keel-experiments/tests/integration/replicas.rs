//! Replicas on the PostgreSQL at 127.0.0.1:5432 (or `KEEL_TEST_POSTGRES_URL`): two sets of
//! deployments (two replicas, each with its own pool) on one store, each test in a database of
//! its own. Decide on one, reward on the other: both apply every event in the log's order and
//! their reports agree; idempotency and conflicts hold across them; a restart restores from a
//! snapshot in PostgreSQL plus the tail; a damaged row stops the deployment loudly.

use std::time::Duration;

use keel_experiments::{DeploymentError, Deployments, RewardIn};
use keel_store::Store;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::pg_support::{Database, replica};

fn spec() -> Value {
    json!({
        "variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "policy": {"type": "thompson_beta"},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
        "seed": 3
    })
}

/// What two replicas must agree on: exposures, rewards and their sums per variant.
fn counts(exps: &Deployments) -> Vec<(String, u64, u64, String)> {
    let report = serde_json::to_value(exps.report("promo").expect("report")).expect("json");
    report["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().expect("name").to_string(),
                v["exposures"].as_u64().expect("exposures"),
                v["rewards"].as_u64().expect("rewards"),
                v["mean_reward"].to_string(),
            )
        })
        .collect()
}

async fn converged(a: &Deployments, b: &Deployments) -> Vec<(String, u64, u64, String)> {
    for _ in 0..200 {
        if counts(a) == counts(b) {
            return counts(a);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the replicas did not converge: {:?} vs {:?}", counts(a), counts(b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decide_on_one_replica_reward_on_the_other_and_both_converge() {
    let db = Database::new("replicas").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let a = replica(&db, &tmp.path().join("a")).await;
    a.apply("promo", &spec(), "tester", None).await.expect("apply");
    let b = replica(&db, &tmp.path().join("b")).await;

    let mut ids = Vec::new();
    for i in 0..300 {
        let (decider, rewarder) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let d = decider
            .decide("promo", Some(&format!("u{i}")), None)
            .await
            .expect("decide");
        // The other replica has not applied this decision yet: it catches up, not refuses.
        let r = rewarder
            .feedback(
                "promo",
                &[RewardIn {
                    decision_id: d.decision_id.clone(),
                    reward: (i % 3 == 0) as u8 as f64,
                }],
            )
            .await
            .expect("feedback");
        assert!(r[0].as_ref().expect("counted").counted, "{:?}", r[0]);
        ids.push((d.decision_id, (i % 3 == 0) as u8 as f64));
    }
    let agreed = converged(&a, &b).await;
    assert_eq!(agreed.iter().map(|c| c.1).sum::<u64>(), 300, "{agreed:?}");
    assert_eq!(agreed.iter().map(|c| c.2).sum::<u64>(), 300, "{agreed:?}");

    // Idempotency and conflicts across replicas: a's rewards again on b, and the other value.
    let again: Vec<RewardIn> = ids
        .iter()
        .map(|(id, r)| RewardIn {
            decision_id: id.clone(),
            reward: *r,
        })
        .collect();
    for r in a.feedback("promo", &again).await.expect("again") {
        assert!(!r.expect("duplicate").counted);
    }
    let flipped = RewardIn {
        decision_id: ids[0].0.clone(),
        reward: 1.0 - ids[0].1,
    };
    let r = b.feedback("promo", &[flipped]).await.expect("feedback");
    assert!(
        matches!(r[0], Err(DeploymentError::ConflictingReward { .. })),
        "{:?}",
        r[0]
    );
    // Both replicas reward the same fresh decision at once, with different values: exactly one
    // counts, the other is a conflict, on either replica.
    let d = a.decide("promo", Some("race"), None).await.expect("decide");
    let one = [RewardIn {
        decision_id: d.decision_id.clone(),
        reward: 1.0,
    }];
    let zero = [RewardIn {
        decision_id: d.decision_id.clone(),
        reward: 0.0,
    }];
    let (ra, rb) = tokio::join!(a.feedback("promo", &one), b.feedback("promo", &zero));
    let (ra, rb) = (ra.expect("a").remove(0), rb.expect("b").remove(0));
    assert_eq!(
        [&ra, &rb].iter().filter(|r| matches!(r, Ok(o) if o.counted)).count(),
        1,
        "{ra:?} {rb:?}"
    );
    assert_eq!(
        [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Err(DeploymentError::ConflictingReward { .. })))
            .count(),
        1,
        "{ra:?} {rb:?}"
    );
    let agreed = converged(&a, &b).await;

    // A restart restores a snapshot from PostgreSQL and applies only the tail.
    let snap = a.get("promo").expect("engine").snapshot().await.expect("snapshot");
    assert!(snap.is_some());
    b.decide("promo", Some("after-snapshot"), None).await.expect("decide");
    a.close();
    let a2 = replica(&db, &tmp.path().join("a2")).await;
    let opened = a2.get("promo").expect("engine").opened();
    assert_eq!(opened.snapshot, snap, "{opened:?}");
    assert!(opened.replayed <= 2, "{opened:?}");
    let after = converged(&a2, &b).await;
    assert_eq!(
        after.iter().map(|c| c.1).sum::<u64>(),
        agreed.iter().map(|c| c.1).sum::<u64>() + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_row_stops_the_deployment_loudly_and_is_kept() {
    let db = Database::new("replicas").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let a = replica(&db, &tmp.path().join("a")).await;
    a.apply("promo", &spec(), "tester", None).await.expect("apply");
    for i in 0..20 {
        a.decide("promo", Some(&format!("u{i}")), None).await.expect("decide");
    }
    let mut c = PgConnection::connect(&db.url).await.expect("connect");
    let changed = sqlx::query(
        "UPDATE deployment_log SET body = replace(body, '\"p\":', '\"p\": ') WHERE deployment = 'promo' AND seq = 7",
    )
    .execute(&mut c)
    .await
    .expect("damage a row");
    assert_eq!(changed.rows_affected(), 1);

    // A new replica refuses to start the deployment, naming the row; the row is still there.
    let b = replica(&db, &tmp.path().join("b")).await;
    let failed = b.failed();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].reason.contains("damaged at seq 7") && failed[0].reason.contains("checksum"),
        "{}",
        failed[0].reason
    );
    let err = b.decide("promo", Some("x"), None).await.expect_err("not serving");
    assert!(err.to_string().contains("seq 7"), "{err}");
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deployment_log WHERE deployment = 'promo'")
        .fetch_one(&mut c)
        .await
        .expect("count");
    assert_eq!(rows, 22, "one revision, its spec and 20 decisions, all kept");

    // A missing row (a gap) is refused too.
    sqlx::query(
        "UPDATE deployment_log SET body = replace(body, '\"p\": ', '\"p\":') WHERE deployment = 'promo' AND seq = 7",
    )
    .execute(&mut c)
    .await
    .expect("undo");
    sqlx::query("UPDATE deployment_log SET seq = 100 WHERE deployment = 'promo' AND seq = 9")
        .execute(&mut c)
        .await
        .expect("gap");
    let d = replica(&db, &tmp.path().join("d")).await;
    let failed = d.failed();
    assert!(
        failed.len() == 1 && failed[0].reason.contains("expected seq 9"),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_damaged_row_and_repair_moves_it_aside_and_records_it() {
    let db = Database::new("replicas").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let a = replica(&db, &tmp.path().join("a")).await;
    a.apply("promo", &spec(), "tester", None).await.expect("apply");
    for i in 0..12 {
        let d = a.decide("promo", Some(&format!("u{i}")), None).await.expect("decide");
        let reward = RewardIn {
            decision_id: d.decision_id,
            reward: 1.0,
        };
        a.feedback("promo", &[reward]).await.expect("feedback");
    }
    a.close();
    let store = Store::open(&db.url).await.expect("store");
    let pool = store.postgres_pool().expect("a PostgreSQL store");
    let clean = keel_experiments::pgcheck::verify(&pool, "promo", std::path::Path::new("promo"))
        .await
        .expect("verify");
    assert!(clean.is_ok(), "{clean:?}");
    assert_eq!((clean.rows, clean.valid, clean.head), (26, 26, 26), "{clean:?}");

    // One byte of row 11 (a decision: the revision and its spec, then decision, reward, ...)
    // changed behind the log's back.
    let mut c = PgConnection::connect(&db.url).await.expect("connect");
    let (before,): (String,) =
        sqlx::query_as("SELECT body FROM deployment_log WHERE deployment = 'promo' AND seq = 11")
            .fetch_one(&mut c)
            .await
            .expect("row 11");
    sqlx::query(
        "UPDATE deployment_log SET body = replace(body, '\"p\":', '\"p\": ') WHERE deployment = 'promo' AND seq = 11",
    )
    .execute(&mut c)
    .await
    .expect("damage row 11");
    let found = keel_experiments::pgcheck::verify(&pool, "promo", std::path::Path::new("promo"))
        .await
        .expect("verify");
    assert!(!found.is_ok());
    assert_eq!(found.first_damage(), Some(11), "{found:?}");
    assert_eq!((found.problems, found.valid), (1, 25), "{found:?}");
    assert!(found.damage[0].reason.contains("checksum"), "{found:?}");

    // The deployment refuses to start, naming the row.
    let b = replica(&db, &tmp.path().join("b")).await;
    let failed = b.failed();
    assert!(
        failed.len() == 1 && failed[0].reason.contains("damaged at seq 11"),
        "{failed:?}"
    );
    b.close();

    // Repair from seq 11: rows 11..26 move aside, exactly as they were, under one repair id;
    // the rewards they logged too; the head goes back to 10; the change log says who did it.
    let done = keel_experiments::pgcheck::repair(&store, "promo", 11, "ana")
        .await
        .expect("repair");
    assert_eq!(
        (done.moved_rows, done.head_before, done.head_after),
        (16, 26, 10),
        "{done:?}"
    );
    assert!(done.after.is_ok(), "{:?}", done.after);
    assert_eq!(done.after.repaired_rows, 16);
    let aside: Vec<(i64, String)> = sqlx::query_as(
        "SELECT seq, body FROM deployment_log_repaired WHERE deployment = 'promo' AND repair_id = $1 ORDER BY seq",
    )
    .bind(&done.repair_id)
    .fetch_all(&mut c)
    .await
    .expect("moved rows");
    assert_eq!(
        aside.iter().map(|r| r.0).collect::<Vec<_>>(),
        (11..=26).collect::<Vec<i64>>()
    );
    assert_eq!(aside[0].1, before.replace("\"p\":", "\"p\": "), "kept as damaged");
    // Rows 3..=10 are 4 decisions and their 4 rewards; rows 11..=26 hold 8 rewards.
    assert_eq!(done.moved_rewards, 8, "{done:?}");
    let (rewards,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deployment_rewards WHERE deployment = 'promo'")
        .fetch_one(&mut c)
        .await
        .expect("rewards");
    assert_eq!(rewards, 4);
    let changes = store.list_changes(10, Some("deployment/promo")).await.expect("changes");
    let change = changes
        .iter()
        .find(|c| c.kind == "deployment.log_repaired")
        .expect("repair recorded");
    assert_eq!(change.actor, "ana");
    assert_eq!(change.details["from_seq"], json!(11));
    assert_eq!(change.details["moved_rows"], json!(16));
    assert_eq!(change.details["repair_id"], json!(done.repair_id));

    // A cut beyond the end, or at 0, is refused and changes nothing.
    for bad in [0, 12] {
        let err = keel_experiments::pgcheck::repair(&store, "promo", bad, "ana")
            .await
            .expect_err("refused");
        assert!(matches!(err, DeploymentError::InvalidRequest(_)), "{err}");
    }

    // The deployment starts again from the rows kept and goes on after them.
    let d = replica(&db, &tmp.path().join("d")).await;
    assert!(d.failed().is_empty(), "{:?}", d.failed());
    assert_eq!(counts(&d).iter().map(|c| c.1).sum::<u64>(), 4);
    d.decide("promo", Some("after-repair"), None).await.expect("decide");
    let again = keel_experiments::pgcheck::verify(&pool, "promo", std::path::Path::new("promo"))
        .await
        .expect("verify");
    assert!(again.is_ok() && again.last_seq == Some(11), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_traffic_on_both_replicas_is_logged_once_in_order_and_converges() {
    let db = Database::new("replicas").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let a = replica(&db, &tmp.path().join("a")).await;
    a.apply("promo", &spec(), "tester", None).await.expect("apply");
    let b = replica(&db, &tmp.path().join("b")).await;
    // 16 workers, half deciding on each replica, each rewarding on the other: many batches in
    // flight on both writers at once.
    let mut workers = Vec::new();
    for w in 0..16 {
        let (decider, rewarder) = if w % 2 == 0 {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        workers.push(tokio::spawn(async move {
            for i in 0..40 {
                let d = decider
                    .decide("promo", Some(&format!("w{w}-{i}")), None)
                    .await
                    .expect("decide");
                let r = rewarder
                    .feedback(
                        "promo",
                        &[RewardIn {
                            decision_id: d.decision_id,
                            reward: f64::from((i % 2) as u8),
                        }],
                    )
                    .await
                    .expect("feedback");
                assert!(r[0].as_ref().expect("counted").counted);
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let agreed = converged(&a, &b).await;
    assert_eq!(agreed.iter().map(|c| c.1).sum::<u64>(), 640, "{agreed:?}");
    assert_eq!(agreed.iter().map(|c| c.2).sum::<u64>(), 640, "{agreed:?}");
    let pool = Store::open(&db.url)
        .await
        .expect("store")
        .postgres_pool()
        .expect("PostgreSQL");
    let found = keel_experiments::pgcheck::verify(&pool, "promo", std::path::Path::new("promo"))
        .await
        .expect("verify");
    // The revision and its spec, then every acknowledged decision and reward once, gap-free.
    assert!(found.is_ok(), "{found:?}");
    assert_eq!((found.rows, found.head), (2 + 640 * 2, 2 + 640 * 2), "{found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_shut_down_leaves_a_snapshot_so_the_next_start_replays_nothing() {
    let db = Database::new("replicas").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let a = replica(&db, &tmp.path().join("a")).await;
    a.apply("promo", &spec(), "tester", None).await.expect("apply");
    for i in 0..30 {
        a.decide("promo", Some(&format!("u{i}")), None).await.expect("decide");
    }
    // No periodic snapshot (options()): only the one taken at shutdown (after the revision
    // and spec records and the 30 decisions).
    assert!(a.shutdown(Duration::from_secs(30)).await);
    let b = replica(&db, &tmp.path().join("b")).await;
    let opened = b.get("promo").expect("engine").opened();
    assert_eq!(opened.snapshot, Some(32), "{opened:?}");
    assert_eq!(opened.replayed, 0, "{opened:?}");
    assert_eq!(counts(&b).iter().map(|c| c.1).sum::<u64>(), 30);
}

/// The policy's distribution over the variants, by name (epsilon-greedy: no random draw).
fn distribution(exps: &Deployments) -> Vec<(String, f64)> {
    exps.get("promo")
        .expect("engine")
        .distribution(None, None)
        .expect("distribution")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_that_removes_a_variant_keeps_what_the_others_learned_on_every_replica() {
    let db = Database::new("replicas").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let spec = |variants: &[&str]| {
        json!({
            "variants": variants.iter().map(|v| json!({"name": v})).collect::<Vec<_>>(),
            "policy": {"type": "epsilon_greedy", "epsilon": 0.1},
            "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
            "seed": 5
        })
    };
    let a = replica(&db, &tmp.path().join("a")).await;
    a.spawn_upkeep();
    a.apply("promo", &spec(&["a", "b", "c"]), "tester", None)
        .await
        .expect("apply");
    let b = replica(&db, &tmp.path().join("b")).await;
    b.spawn_upkeep();
    // Only c converts: c becomes the greedy choice.
    for i in 0..200 {
        let d = a.decide("promo", Some(&format!("u{i}")), None).await.expect("decide");
        let reward = f64::from(u8::from(d.variant == "c"));
        let r = b
            .feedback(
                "promo",
                &[RewardIn {
                    decision_id: d.decision_id,
                    reward,
                }],
            )
            .await
            .expect("feedback");
        assert!(r[0].as_ref().expect("counted").counted);
    }
    converged(&a, &b).await;
    let greedy = |d: &[(String, f64)]| {
        d.iter()
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .map(|(n, _)| n.clone())
            .expect("a variant")
    };
    assert_eq!(greedy(&distribution(&a)), "c", "{:?}", distribution(&a));

    // b is removed: c keeps what it learned (its index moves from 2 to 1).
    a.apply("promo", &spec(&["a", "c"]), "tester", None)
        .await
        .expect("revision");
    let live = distribution(&a);
    assert_eq!(live.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(greedy(&live), "c", "{live:?}");
    // The other replica reloads the revision from the shared log and agrees.
    let mut reloaded = Vec::new();
    for _ in 0..300 {
        reloaded = distribution(&b);
        if reloaded == live {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reloaded, live, "replica b after reloading the revision");
    // A replica started afresh replays the whole log (no snapshot: options()) and agrees: the
    // spec records tell it which variants the older decisions named.
    let c = replica(&db, &tmp.path().join("c")).await;
    assert_eq!(c.get("promo").expect("engine").opened().snapshot, None);
    assert_eq!(distribution(&c), live, "a replica that replayed the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_decisions_are_read_back_from_postgresql_on_any_replica() {
    let db = Database::new("replicas").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let a = replica(&db, &tmp.path().join("a")).await;
    a.apply("promo", &spec(), "tester", None).await.expect("apply");
    let b = replica(&db, &tmp.path().join("b")).await;
    let units: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    let rows: Vec<keel_experiments::UnitContext<'_>> = units
        .iter()
        .map(|unit| keel_experiments::UnitContext { unit, context: None })
        .collect();
    let decided = a
        .decide_many_now("promo", &rows, Some("week-1"))
        .expect("decide")
        .durable(&a)
        .await
        .expect("durable");
    // Another run's and an online decision are not part of it.
    a.decide_many_now("promo", &rows[..3], Some("week-2"))
        .expect("decide")
        .durable(&a)
        .await
        .expect("durable");
    a.decide("promo", Some("c0"), None).await.expect("decide");
    for replica in [&a, &b] {
        let found = replica
            .get("promo")
            .expect("engine")
            .run_decisions("week-1")
            .await
            .expect("read back");
        assert_eq!(found.len(), 50);
        for ((f, unit), d) in found.iter().zip(&units).zip(&decided) {
            let d = d.as_ref().expect("decided");
            assert_eq!((&f.unit, &f.decision.decision_id), (unit, &d.decision_id));
            assert_eq!((&f.decision.variant, f.decision.propensity), (&d.variant, d.propensity));
        }
    }
}
