//! A fresh PostgreSQL database per test (127.0.0.1:5432, or `KEEL_TEST_POSTGRES_URL`) and
//! replicas of the deployments on it: shared by the tests that need PostgreSQL.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keel_experiments::{Deployments, LogOptions};
use keel_store::Store;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub fn admin_url() -> String {
    std::env::var("KEEL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh database (dropped when the value is dropped) and its url.
pub struct Database {
    name: String,
    pub url: String,
}

impl Database {
    /// A database named `keel_<what>_<uuid>`.
    pub async fn new(what: &str) -> Database {
        let name = format!("keel_{what}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("PostgreSQL for the replica tests");
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create database");
        let base = admin_url();
        let server = &base[..base.rfind('/').expect("a database in the url")];
        Database {
            url: format!("{server}/{name}"),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, name) = (admin_url(), self.name.clone());
        // Dropped on a thread of its own: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&admin).await {
                    let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

pub fn options() -> LogOptions {
    LogOptions {
        snapshot_every_records: u64::MAX,
        snapshot_every: Duration::from_secs(3600),
        ..LogOptions::default()
    }
}

/// One replica: its own store handle (pool) and its own local folder.
pub async fn replica(db: &Database, dir: &Path) -> Arc<Deployments> {
    let store = Store::open(&db.url).await.expect("store");
    Deployments::open(store, dir.to_path_buf(), options())
        .await
        .expect("open")
}
