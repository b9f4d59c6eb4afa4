//! Fixtures for the conformance suite: a fresh store per test on each backend.

use std::future::Future;

use keel_store::{Backend, ModelVersion, NewModelVersion, Store};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tempfile::TempDir;

/// Environment variable naming the PostgreSQL server used by the tests.
pub const POSTGRES_URL_ENV: &str = "KEEL_TEST_POSTGRES_URL";
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A freshly migrated, empty store and how to reopen it.
pub struct Fixture {
    pub store: Store,
    /// The url the store was opened with; open it again to test reopening.
    pub url: String,
    pub backend: Backend,
    /// Keeps the SQLite file's directory alive for the test's duration.
    _dir: Option<TempDir>,
}

/// Runs `test` against a fresh SQLite file store in a temporary directory.
pub async fn run_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let url = format!("sqlite://{}/nested/keel.db", dir.path().display());
    let store = Store::open(&url).await.expect("open sqlite store");
    test(Fixture {
        store,
        url,
        backend: Backend::Sqlite,
        _dir: Some(dir),
    })
    .await;
}

/// Runs `test` against a store in a fresh PostgreSQL database, which is
/// dropped afterwards whether the test passed or panicked.
pub async fn run_postgres<F, Fut>(test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin_url = postgres_admin_url();
    let database = format!("keel_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = connect_admin(&admin_url).await;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("create test database {database} via {admin_url}: {e}"));
    let url = with_database(&admin_url, &database);
    let store = Store::open(&url).await.expect("open postgres store");
    let fixture = Fixture {
        store: store.clone(),
        url,
        backend: Backend::Postgres,
        _dir: None,
    };
    // Run on its own task so a panicking test still reaches the cleanup.
    let outcome = tokio::spawn(test(fixture)).await;
    store.close().await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("drop test database {database}: {e}"));
    admin.close().await.expect("close admin connection");
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

pub fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

async fn connect_admin(admin_url: &str) -> PgConnection {
    PgConnection::connect(admin_url).await.unwrap_or_else(|e| {
        panic!(
            "the PostgreSQL conformance tests need a server, and {admin_url} is unreachable ({e}); \
             start PostgreSQL there or set {POSTGRES_URL_ENV} to a url whose user may CREATE DATABASE, \
             e.g. {POSTGRES_URL_ENV}=postgres://postgres@127.0.0.1:5432/test"
        )
    })
}

/// `admin_url` with its database name replaced by `database`.
fn with_database(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// A push of `model` whose content is identified by `tag`.
pub fn new_version(model: &str, tag: &str) -> NewModelVersion {
    NewModelVersion {
        model: model.to_owned(),
        content_hash: format!("sha256:{tag:0>64}"),
        artifact_key: format!("models/{model}/{tag}.onnx"),
        size_bytes: 1024,
        format: "onnx".to_owned(),
        author: "alice".to_owned(),
        description: Some(format!("build {tag}")),
        metrics: serde_json::json!({ "auc": 0.91 }),
        training_data: Some("s3://data/train.parquet".to_owned()),
        signature: serde_json::json!({ "inputs": [{ "name": "x", "shape": [-1, 4] }] }),
    }
}

/// Pushes one version per tag, asserting each succeeds.
pub async fn push_all(store: &Store, model: &str, tags: &[&'static str]) -> Vec<ModelVersion> {
    let mut pushed = Vec::new();
    for &tag in tags {
        let version = store
            .create_model_version(new_version(model, tag))
            .await
            .unwrap_or_else(|e| panic!("push {model} {tag}: {e}"));
        pushed.push(version);
    }
    pushed
}
