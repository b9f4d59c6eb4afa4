//! Schedules: create/list/pause/delete with the change log, exactly one claim per firing,
//! missed firings recorded, queued and retried runs, lapsed leases taken over.

use keel_store::{Firing, NewSchedule, RunOutcome, StoreError};

use crate::support::Fixture;

fn new<'a>(name: &'a str, args: &'a [String], next_at_ms: i64) -> NewSchedule<'a> {
    NewSchedule {
        name,
        cron: "0 6 * * MON",
        args,
        notify: None,
        next_at_ms,
        by: "ana",
    }
}

pub async fn schedules_are_created_listed_paused_and_deleted(fx: Fixture) {
    let args = vec!["data".to_string(), "ls".to_string()];
    let created = fx
        .store
        .create_schedule(new("weekly", &args, 1_000))
        .await
        .expect("create");
    assert_eq!((created.args.clone(), created.paused), (args.clone(), false));
    let again = fx.store.create_schedule(new("weekly", &args, 1_000)).await;
    assert!(matches!(again, Err(StoreError::Conflict { .. })), "{again:?}");
    assert!(fx.store.create_schedule(new("empty", &[], 1_000)).await.is_err());
    fx.store
        .set_schedule_paused("weekly", true, 5_000, "bo")
        .await
        .expect("pause");
    let paused = fx.store.get_schedule("weekly").await.expect("get");
    assert!(paused.paused);
    assert_eq!(paused.next_at.timestamp_millis(), 5_000);
    assert_eq!(fx.store.list_schedules().await.expect("list").len(), 1);
    fx.store.delete_schedule("weekly", "bo").await.expect("delete");
    assert!(matches!(
        fx.store.get_schedule("weekly").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        fx.store.delete_schedule("weekly", "bo").await,
        Err(StoreError::NotFound { .. })
    ));
    let kinds: Vec<String> = fx
        .store
        .list_changes(10, Some("schedule/weekly"))
        .await
        .expect("changes")
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(kinds, vec!["schedule.deleted", "schedule.paused", "schedule.created"]);
}

pub async fn one_runner_claims_each_firing_and_missed_ones_are_recorded(fx: Fixture) {
    let args = vec!["data".to_string(), "ls".to_string()];
    fx.store
        .create_schedule(new("weekly", &args, 1_000))
        .await
        .expect("create");
    // Two runners race for the firing at 3_000; 1_000 and 2_000 were missed.
    let firing = Firing {
        schedule: "weekly",
        scheduled_for: 3_000,
        next_at_ms: 4_000,
        missed: &[1_000, 2_000],
        trigger: "catch_up",
    };
    let (a, b) = tokio::join!(
        fx.store.claim_firing(&firing, "runner-a", 60_000),
        fx.store.claim_firing(&firing, "runner-b", 60_000),
    );
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert!(a ^ b, "exactly one claims it: {a} {b}");
    let runner = if a { "runner-a" } else { "runner-b" };
    assert_eq!(
        fx.store
            .get_schedule("weekly")
            .await
            .expect("get")
            .next_at
            .timestamp_millis(),
        4_000
    );
    let runs = fx.store.list_schedule_runs("weekly", 10).await.expect("runs");
    let statuses: Vec<(i64, &str)> = runs
        .iter()
        .map(|r| (r.scheduled_for.timestamp_millis(), r.status.as_str()))
        .collect();
    assert_eq!(statuses, vec![(3_000, "running"), (2_000, "missed"), (1_000, "missed")]);
    // Only the holder finishes it.
    let done = RunOutcome::Succeeded { rows: Some(42) };
    assert!(
        !fx.store
            .finish_run("weekly", 3_000, "someone-else", &done, "ana")
            .await
            .expect("finish")
    );
    assert!(
        fx.store
            .finish_run("weekly", 3_000, runner, &done, "ana")
            .await
            .expect("finish")
    );
    let run = &fx.store.list_schedule_runs("weekly", 1).await.expect("runs")[0];
    assert_eq!((run.status.as_str(), run.rows), ("succeeded", Some(42)));
    let changes = fx
        .store
        .list_changes(1, Some("schedule/weekly"))
        .await
        .expect("changes");
    assert_eq!(changes[0].kind, "schedule.run_succeeded");
    // A paused schedule is not claimed.
    fx.store
        .set_schedule_paused("weekly", true, 4_000, "ana")
        .await
        .expect("pause");
    let next = Firing {
        schedule: "weekly",
        scheduled_for: 4_000,
        next_at_ms: 5_000,
        missed: &[],
        trigger: "cron",
    };
    assert!(!fx.store.claim_firing(&next, "runner-a", 60_000).await.expect("claim"));
}

pub async fn queued_retried_and_abandoned_runs_are_taken_once(fx: Fixture) {
    let args = vec!["data".to_string(), "ls".to_string()];
    fx.store
        .create_schedule(new("weekly", &args, 4_102_444_800_000))
        .await
        .expect("create");
    let at = fx.store.queue_run("weekly", "ana").await.expect("queue");
    let now = chrono::Utc::now().timestamp_millis() + 1;
    assert_eq!(
        fx.store.claimable_runs(now).await.expect("claimable"),
        vec![("weekly".to_string(), at)]
    );
    assert!(
        fx.store
            .claim_run("weekly", at, "runner-a", now + 60_000)
            .await
            .expect("claim")
    );
    assert!(
        !fx.store
            .claim_run("weekly", at, "runner-b", now + 60_000)
            .await
            .expect("claim"),
        "taken"
    );
    // It fails and is retried later.
    let failed = RunOutcome::Failed {
        error: "exit status 1".into(),
        retry_at: Some(now + 10),
    };
    assert!(
        fx.store
            .finish_run("weekly", at, "runner-a", &failed, "ana")
            .await
            .expect("finish")
    );
    assert!(
        fx.store.claimable_runs(now).await.expect("claimable").is_empty(),
        "not before its time"
    );
    assert_eq!(fx.store.claimable_runs(now + 10).await.expect("claimable").len(), 1);
    // runner-b takes the retry, then dies: its lease lapses and runner-a takes over.
    let later = chrono::Utc::now().timestamp_millis() + 20;
    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    assert!(
        fx.store
            .claim_run("weekly", at, "runner-b", later)
            .await
            .expect("claim")
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(
        !fx.store
            .renew_run_lease("weekly", at, "runner-a", later + 1)
            .await
            .expect("renew")
    );
    let lapsed = chrono::Utc::now().timestamp_millis() + 1;
    assert_eq!(fx.store.claimable_runs(lapsed).await.expect("claimable").len(), 1);
    assert!(
        fx.store
            .claim_run("weekly", at, "runner-a", lapsed + 60_000)
            .await
            .expect("take over")
    );
    let run = &fx.store.list_schedule_runs("weekly", 1).await.expect("runs")[0];
    assert_eq!(
        (run.attempts, run.runner.as_str(), run.trigger.as_str()),
        (3, "runner-a", "manual")
    );
    let gave_up = RunOutcome::Failed {
        error: "exit status 1".into(),
        retry_at: None,
    };
    assert!(
        fx.store
            .finish_run("weekly", at, "runner-a", &gave_up, "ana")
            .await
            .expect("finish")
    );
    assert_eq!(
        fx.store.list_schedule_runs("weekly", 1).await.expect("runs")[0].status,
        "failed"
    );
}
