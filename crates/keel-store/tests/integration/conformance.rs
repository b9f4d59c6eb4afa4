//! One conformance suite for every store backend, plus url and open tests.
//!
//! Each suite test runs twice: on a fresh SQLite file in a temporary
//! directory, and on a fresh PostgreSQL database created for the test and
//! dropped after it. The PostgreSQL server comes from `KEEL_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`); if it is unreachable
//! the PostgreSQL tests fail, they never skip.

use keel_store::{Backend, Store};
use sqlx::{Connection, SqliteConnection};

use crate::support::{new_version, push_all};

/// Instantiates every listed `group::test` once per backend, as
/// `sqlite::test` and `postgres::test`.
macro_rules! store_conformance_suite {
    ($($group:ident :: $test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    crate::support::run_sqlite(crate::suite::$group::$test).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    crate::support::run_postgres(crate::suite::$group::$test).await;
                }
            )*
        }
    };
}

store_conformance_suite!(
    models::open_reports_backend_and_starts_empty,
    models::versions_are_assigned_one_to_n,
    models::duplicate_content_is_a_conflict,
    models::concurrent_pushes_get_distinct_contiguous_versions,
    models::concurrent_duplicate_pushes_leave_one_version,
    models::reads_and_not_found,
    models::list_models_summarises_with_aliases,
    models::empty_names_are_invalid,
    models::json_fields_round_trip,
    models::reopen_is_idempotent_and_keeps_data,
    aliases::alias_set_move_delete_with_history,
    aliases::alias_to_missing_version_is_not_found_and_changes_nothing,
    aliases::delete_missing_alias_is_not_found,
    aliases::aliases_are_listed_sorted_and_per_model,
    aliases::concurrent_alias_moves_keep_history_consistent,
    changes::change_log_records_every_change,
    changes::prefix_is_matched_literally,
    schedules::schedules_are_created_listed_paused_and_deleted,
    schedules::one_runner_claims_each_firing_and_missed_ones_are_recorded,
    schedules::queued_retried_and_abandoned_runs_are_taken_once,
    deployments::deployment_revisions_and_history,
    deployments::missing_deployments_are_not_found,
    catalog::first_principal_is_admin_and_teams_have_members,
    catalog::tables_columns_pii_schema_history_and_grants,
    catalog::tokens_lineage_and_audit,
    approvals::policies_are_set_read_and_removed_with_the_change_log,
    approvals::a_change_is_requested_claimed_by_another_and_approved,
    approvals::a_failed_approval_returns_the_change_to_pending_and_rejection_closes_it,
    webhooks::subscriptions_are_added_listed_and_removed_without_their_secrets,
    webhooks::events_are_queued_per_subscriber_claimed_once_and_retried,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_url_keeps_data_for_the_life_of_the_store() {
    let store = Store::open("sqlite::memory:").await.expect("open memory store");
    assert_eq!(store.backend(), Backend::Sqlite);
    push_all(&store, "bc-lr", &["a", "b"]).await;
    store.set_alias("bc-lr", "prod", 2, "bob", None).await.expect("alias");

    // Concurrent callers share the single connection and see the same data.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.create_model_version(new_version("bc-lr", &format!("m{i}"))).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("push on memory store");
    }
    let versions = store.list_model_versions("bc-lr").await.expect("list");
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert_eq!(store.get_alias("bc-lr", "prod").await.expect("alias").version, 2);

    // Each memory store is private.
    let other = Store::open("sqlite::memory:").await.expect("open second memory store");
    assert!(other.list_models().await.expect("models").is_empty());
    store.close().await;
    other.close().await;
}

#[tokio::test]
async fn invalid_urls_are_rejected_with_a_hint() {
    for url in [
        "",
        "mysql://root@localhost/keel",
        "keel.sqlite3.txt",
        "sqlite://",
        "sqlite://keel.db?mode=ro",
        "postgres://keel@localhost:notaport/keel",
    ] {
        let err = Store::open(url).await.expect_err(url);
        assert_eq!(err.code(), "invalid_url", "{url}: {err}");
        let message = err.to_string();
        // What was wrong, then what to do.
        assert!(message.contains("; "), "message for {url:?} gives no hint: {message}");
        assert_eq!(message, message.trim_end_matches('.'), "{message}");
    }
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_without_leaking_the_password() {
    // Port 1 on loopback refuses connections immediately.
    let err = Store::open("postgres://keel:s3cret@127.0.0.1:1/keel")
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(err.code(), "unavailable");
    let message = err.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("s3cret"), "password leaked: {message}");
}

#[tokio::test]
async fn sqlite_file_is_created_with_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a/b/keel.db");
    let store = Store::open(path.to_str().expect("utf-8 path"))
        .await
        .expect("open plain .db path");
    assert_eq!(store.backend(), Backend::Sqlite);
    assert!(path.exists(), "database file and parent directories are created");
    push_all(&store, "bc-lr", &["a"]).await;
    store.close().await;

    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw connection");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("migrations table");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .expect("migrations folder")
        .count() as i64;
    assert_eq!(applied, files, "every migration applied once");
    conn.close().await.expect("close");

    // The sqlite:/// form opens the same file and sees the same data.
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("reopen");
    assert_eq!(store.latest_model_version("bc-lr").await.expect("latest").version, 1);
    // Foreign keys are enforced: an alias cannot point at a missing version,
    // and the store reports that before the database has to.
    let err = store.set_alias("bc-lr", "prod", 2, "bob", None).await.expect_err("fk");
    assert_eq!(err.code(), "not_found");
    store.close().await;
}
