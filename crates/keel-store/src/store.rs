//! The [`Store`] handle: opening either backend, migrations, and the macros
//! that run one query body against whichever pool is open.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::error::{Result, StoreError};
use crate::location::{Location, redact};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long an SQLite writer waits for the database lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Handle to the metadata store. Cloning is cheap: clones share the pool.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    /// The database file of an SQLite store on disk.
    pub(crate) file: Option<std::sync::Arc<std::path::PathBuf>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// Evaluates `$body` with `$pool` bound to the open pool, once per backend, so
/// the same SQL (written with `$N` placeholders, which both drivers accept)
/// runs on either.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Evaluates `$body` with `$tx` bound to a fresh write transaction. On SQLite
/// the transaction starts with `BEGIN IMMEDIATE` so concurrent writers queue
/// on the busy timeout instead of failing when a read lock is upgraded. The
/// body commits; dropping `$tx` (an early return) rolls back.
macro_rules! in_write_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                $body
            }
            $crate::store::Pool::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                $body
            }
        }
    };
}
pub(crate) use in_write_tx;

impl Store {
    /// Opens (creating if needed) the store at `url` and applies pending
    /// migrations; opening an up-to-date store changes nothing.
    ///
    /// Accepted: `sqlite:///abs/path/keel.db`, `sqlite://relative.db`, a path
    /// ending in `.db`, `sqlite::memory:` (one private connection, for tests),
    /// and `postgres://` or `postgresql://` urls.
    pub async fn open(url: &str) -> Result<Store> {
        let store = match Location::parse(url)? {
            Location::SqliteFile(path) => open_sqlite_file(url, &path).await?,
            Location::SqliteMemory => open_sqlite_memory(url).await?,
            Location::Postgres(options) => open_postgres(url, *options).await?,
        };
        tracing::debug!(backend = %store.backend(), url = %redact(url), "metadata store open");
        Ok(store)
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The connection pool of a PostgreSQL store (`None` on SQLite): the replicated decision
    /// log of deployments (keel-experiments) runs its own batched statements on it.
    pub fn postgres_pool(&self) -> Option<PgPool> {
        match &self.pool {
            Pool::Postgres(pool) => Some(pool.clone()),
            Pool::Sqlite(_) => None,
        }
    }

    /// Closes every connection; later calls on this store or its clones fail.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

fn unavailable(url: &str, source: sqlx::Error) -> StoreError {
    StoreError::Unavailable {
        url: redact(url),
        source,
    }
}

async fn open_sqlite_file(url: &str, path: &Path) -> Result<Store> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // A one-off, microsecond-scale call at startup; not worth a blocking pool.
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Unavailable {
            url: url.to_owned(),
            source: sqlx::Error::Io(e),
        })?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .map_err(|e| unavailable(url, e))?;
    SQLITE_MIGRATOR.run(&pool).await?;
    Ok(Store {
        pool: Pool::Sqlite(pool),
        file: Some(std::sync::Arc::new(path.to_owned())),
    })
}

async fn open_sqlite_memory(url: &str) -> Result<Store> {
    let options = SqliteConnectOptions::from_str("sqlite::memory:")
        .map_err(|e| StoreError::InvalidUrl(format!("cannot build in-memory sqlite options: {e}")))?
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true);
    // An in-memory database lives exactly as long as its last connection, so
    // keep a single connection open for the life of the pool.
    let pool = SqlitePoolOptions::new()
        .min_connections(1)
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await
        .map_err(|e| unavailable(url, e))?;
    SQLITE_MIGRATOR.run(&pool).await?;
    Ok(Store {
        pool: Pool::Sqlite(pool),
        file: None,
    })
}

async fn open_postgres(url: &str, options: PgConnectOptions) -> Result<Store> {
    // Connect once directly first: a pool retries refused connections until
    // its acquire timeout and then reports only "timed out", hiding the cause.
    let probe = options.connect().await.map_err(|e| unavailable(url, e))?;
    probe.close().await?;
    let pool = PgPoolOptions::new()
        .connect_with(options)
        .await
        .map_err(|e| unavailable(url, e))?;
    // Migrate through the pool, not `&mut PgConnection`: the latter makes the
    // `open` future fail `Send` checks in generic contexts (an `Acquire`
    // higher-ranked lifetime limitation).
    POSTGRES_MIGRATOR.run(&pool).await?;
    Ok(Store {
        pool: Pool::Postgres(pool),
        file: None,
    })
}
