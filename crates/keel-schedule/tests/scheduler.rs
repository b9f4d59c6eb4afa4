//! The scheduler on a real store with real child processes (`/bin/sh` stands in for the keel
//! binary, so each run appends a line to a file we count): due firings run once, two runners
//! on one PostgreSQL store never run a firing twice, missed firings follow the catch-up rule,
//! failures are retried with backoff and then announced to a webhook on loopback.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_schedule::{ProcessExecutor, RetryPolicy, Scheduler, SchedulerConfig};
use keel_store::{NewSchedule, Store};

async fn sqlite(dir: &Path) -> Store {
    Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store")
}

/// A fresh PostgreSQL database for this test on the server the suite uses.
async fn postgres() -> (Store, String) {
    let base =
        std::env::var("KEEL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let db = format!("keel_sched_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
        .await
        .expect("postgres at KEEL_TEST_POSTGRES_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .expect("create db");
    let url = match base.rsplit_once('/') {
        Some((root, _)) => format!("{root}/{db}"),
        None => panic!("url {base} has no database"),
    };
    (Store::open(&url).await.expect("store"), db)
}

fn sh() -> ProcessExecutor {
    ProcessExecutor {
        exe: "/bin/sh".into(),
        env: Vec::new(),
        prefix: vec!["-c".into()],
        json: false,
        tokens: None,
    }
}

/// A run reaching an authenticating server carries its own token for the schedule's creator:
/// it authenticates as them while the run lasts, without `admin`, and is revoked at its end.
#[tokio::test]
async fn each_run_carries_a_token_for_its_creator_revoked_when_it_ends() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite(dir.path()).await;
    let seen = dir.path().join("token");
    let mut exec = sh();
    exec.tokens = Some(keel_schedule::RunTokens::new(keel_catalog::Catalog::new(store.clone())));
    let script = format!("printf %s \"$KEEL_TOKEN\" > '{}'", seen.display());
    let cancel = tokio_util::sync::CancellationToken::new();
    let done = exec.run(&[script], "ana", &cancel).await.expect("run");
    assert!(done.succeeded(), "{done:?}");
    let secret = std::fs::read_to_string(&seen).expect("the child saw a token");
    assert!(!secret.is_empty(), "KEEL_TOKEN was set");
    let record = store
        .token_by_hash(&keel_auth::tokens::secret_hash(&secret))
        .await
        .expect("store")
        .expect("the token was issued in the store");
    assert_eq!(record.principal, "ana");
    assert_eq!(record.created_by, "keel-scheduler");
    assert!(!record.scopes.split(' ').any(|s| s == "admin"), "{}", record.scopes);
    assert!(record.scopes.split(' ').any(|s| s == "decide"), "{}", record.scopes);
    assert!(record.expires_at.is_some(), "it expires on its own if never revoked");
    assert!(record.revoked_at.is_some(), "revoked once the run ended");

    // Without run tokens, no token reaches a run, not even one put in its environment.
    let mut plain = sh();
    plain.env = vec![("KEEL_TOKEN".into(), "keel_leaked".into())];
    plain.tokens = None;
    let done = plain
        .run(
            &[format!("printf %s \"$KEEL_TOKEN\" > '{}'", seen.display())],
            "ana",
            &cancel,
        )
        .await
        .expect("run");
    assert!(done.succeeded(), "{done:?}");
    assert_eq!(std::fs::read_to_string(&seen).expect("file"), "");
}

fn config(runner: &str) -> SchedulerConfig {
    SchedulerConfig {
        runner: runner.into(),
        tick: Duration::from_millis(50),
        lease: Duration::from_secs(30),
        retry: RetryPolicy {
            backoff: vec![Duration::from_millis(50), Duration::from_millis(50)],
        },
        max_running: 4,
    }
}

async fn create(store: &Store, name: &str, script: &str, next_at_ms: i64, notify: Option<&str>) {
    store
        .create_schedule(NewSchedule {
            name,
            cron: "* * * * *",
            args: &[script.to_string()],
            notify,
            next_at_ms,
            by: "ana",
        })
        .await
        .expect("create");
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Waits (bounded) until the newest run of `name` has `status`.
async fn wait_for(store: &Store, name: &str, status: &str) -> keel_store::ScheduleRun {
    for _ in 0..400 {
        let runs = store.list_schedule_runs(name, 1).await.expect("runs");
        if let Some(r) = runs.first()
            && r.status == status
        {
            return r.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "schedule {name} never reached {status}: {:?}",
        store.list_schedule_runs(name, 5).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_firing_runs_once_and_records_its_rows() {
    let dir = tempfile::tempdir().expect("dir");
    let store = sqlite(dir.path()).await;
    let out = dir.path().join("runs.txt");
    let script = format!("echo ran >> {}; echo '{{\"rows_written\": 3}}'", out.display());
    create(&store, "weekly", &script, now_ms() - 1, None).await;
    let scheduler = Scheduler::new(store.clone(), sh(), config("a"));
    assert_eq!(scheduler.tick().await.expect("tick"), 1);
    assert_eq!(scheduler.tick().await.expect("tick"), 0, "the firing is taken");
    let run = wait_for(&store, "weekly", "succeeded").await;
    assert_eq!((run.rows, run.attempts, run.trigger.as_str()), (Some(3), 1, "cron"));
    assert_eq!(lines(&out), 1);
    let next = store
        .get_schedule("weekly")
        .await
        .expect("get")
        .next_at
        .timestamp_millis();
    assert!(next > now_ms(), "moved to the next firing");
    let kinds: Vec<String> = store
        .list_changes(5, Some("schedule/weekly"))
        .await
        .expect("changes")
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(kinds[0], "schedule.run_succeeded");
    scheduler.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runners_on_one_postgres_store_run_each_firing_exactly_once() {
    let dir = tempfile::tempdir().expect("dir");
    let (store, db) = postgres().await;
    let mut created = Vec::new();
    for i in 0..8 {
        let out = dir.path().join(format!("runs-{i}.txt"));
        let script = format!("echo ran >> {}", out.display());
        create(&store, &format!("s{i}"), &script, now_ms() - 1, None).await;
        created.push(out);
    }
    let a = Scheduler::new(store.clone(), sh(), config("runner-a"));
    let b = Scheduler::new(store.clone(), sh(), config("runner-b"));
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    let (ra, rb) = (ra.expect("a"), rb.expect("b"));
    assert_eq!(ra + rb, 8, "every firing is taken once: {ra} + {rb}");
    for i in 0..8 {
        wait_for(&store, &format!("s{i}"), "succeeded").await;
    }
    for out in &created {
        assert_eq!(lines(out), 1, "{} ran once", out.display());
    }
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
    drop((a, b, store));
    drop_database(&db).await;
}

async fn drop_database(db: &str) {
    let base =
        std::env::var("KEEL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
        .await
        .expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .expect("drop db");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_only_the_latest_missed_firing_runs() {
    let dir = tempfile::tempdir().expect("dir");
    let store = sqlite(dir.path()).await;
    let out = dir.path().join("runs.txt");
    let minute = 60_000;
    if minute - now_ms() % minute < 3_000 {
        // Not across a minute boundary while the test runs.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let last = now_ms() / minute * minute;
    // Every minute, and the last four firings passed while no server ran.
    create(
        &store,
        "minutely",
        &format!("echo ran >> {}", out.display()),
        last - 3 * minute,
        None,
    )
    .await;
    let scheduler = Scheduler::new(store.clone(), sh(), config("a"));
    assert_eq!(scheduler.tick().await.expect("tick"), 1);
    let run = wait_for(&store, "minutely", "succeeded").await;
    assert_eq!(run.trigger, "catch_up");
    assert_eq!(run.scheduled_for.timestamp_millis(), last, "the latest firing ran");
    let runs = store.list_schedule_runs("minutely", 10).await.expect("runs");
    let missed: Vec<i64> = runs
        .iter()
        .filter(|r| r.status == "missed")
        .map(|r| r.scheduled_for.timestamp_millis())
        .collect();
    assert_eq!(missed, vec![last - minute, last - 2 * minute, last - 3 * minute]);
    assert_eq!(lines(&out), 1, "run once, not four times");
    scheduler.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_is_retried_then_announced_to_the_webhook() {
    let dir = tempfile::tempdir().expect("dir");
    let store = sqlite(dir.path()).await;
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let received = received.clone();
                async move {
                    received.lock().expect("lock").push(body);
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let out = dir.path().join("runs.txt");
    let script = format!(
        "echo ran >> {}; echo 'table customers does not exist' >&2; exit 3",
        out.display()
    );
    create(&store, "broken", &script, now_ms() - 1, Some(&hook)).await;
    let scheduler = Scheduler::new(store.clone(), sh(), config("a"));
    scheduler.spawn();
    let run = wait_for(&store, "broken", "failed").await;
    assert_eq!(run.attempts, 3, "the first try and two retries");
    let error = run.error.expect("error");
    assert!(error.contains("exit status 3"), "{error}");
    assert!(error.contains("table customers does not exist"), "{error}");
    assert_eq!(lines(&out), 3);
    for _ in 0..100 {
        if !received.lock().expect("lock").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = received.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["schedule"], "broken");
    assert_eq!(got[0]["attempts"], 3);
    let kinds: Vec<String> = store
        .list_changes(10, Some("schedule/broken"))
        .await
        .expect("changes")
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(
        &kinds[..3],
        &["schedule.run_failed", "schedule.run_retrying", "schedule.run_retrying"]
    );
    scheduler.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_is_picked_up_by_a_serving_runner() {
    let dir = tempfile::tempdir().expect("dir");
    let store = sqlite(dir.path()).await;
    let out = dir.path().join("runs.txt");
    create(
        &store,
        "weekly",
        &format!("echo ran >> {}", out.display()),
        4_102_444_800_000,
        None,
    )
    .await;
    let schedules = keel_schedule::Schedules::new(store.clone());
    schedules.run_now("weekly", "bo").await.expect("queue");
    let scheduler = Scheduler::new(store.clone(), sh(), config("a"));
    scheduler.spawn();
    let run = wait_for(&store, "weekly", "succeeded").await;
    assert_eq!(run.trigger, "manual");
    assert_eq!(lines(&out), 1);
    scheduler.shutdown(Duration::from_secs(5)).await;
}
