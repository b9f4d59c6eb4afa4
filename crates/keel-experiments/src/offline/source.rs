//! Where an offline analysis reads a deployment's whole decision log: its local folder (the
//! file log, archived segments included) or PostgreSQL (the log replicas share, archived
//! ranges included). Segments and CUPED read through it, so they work on either store.

use std::path::{Path, PathBuf};

use sqlx::PgPool;

use crate::event::Event;
use crate::{DeploymentError, Result};

/// A deployment's decision log, wherever it lives.
#[derive(Debug, Clone)]
pub enum LogSource {
    /// The file log in this deployment folder.
    Files(PathBuf),
    /// The log in PostgreSQL; `dir` is the deployment's local folder (where the lake its
    /// archived ranges went to is registered).
    Postgres { pool: PgPool, dir: PathBuf, name: String },
}

impl From<&Path> for LogSource {
    fn from(dir: &Path) -> LogSource {
        LogSource::Files(dir.to_path_buf())
    }
}

impl From<&PathBuf> for LogSource {
    fn from(dir: &PathBuf) -> LogSource {
        LogSource::Files(dir.clone())
    }
}

impl LogSource {
    /// Deployment `name`'s log on `store`, its local folder under `deployments_dir`.
    pub fn of(store: &keel_store::Store, deployments_dir: &Path, name: &str) -> LogSource {
        let dir = deployments_dir.join(name);
        match store.postgres_pool() {
            Some(pool) => LogSource::Postgres {
                pool,
                dir,
                name: name.to_string(),
            },
            None => LogSource::Files(dir),
        }
    }

    /// The log of a running deployment.
    pub(crate) fn of_running(engine: &crate::Deployment) -> LogSource {
        match engine.wal.pg() {
            Some(pg) => LogSource::Postgres {
                pool: pg.pool().clone(),
                dir: engine.dir.clone(),
                name: engine.name.clone(),
            },
            None => LogSource::Files(engine.dir.clone()),
        }
    }

    /// Where the log is, as errors name it: the folder, or `postgres:deployment_log/NAME`.
    pub fn location(&self) -> PathBuf {
        match self {
            LogSource::Files(dir) => dir.clone(),
            LogSource::Postgres { name, .. } => PathBuf::from(format!("postgres:deployment_log/{name}")),
        }
    }

    /// Passes every event of the log to `each`, in order; a damaged log is an error. Blocking
    /// (file reads, or PostgreSQL through the runtime this thread belongs to): call it on a
    /// blocking thread.
    pub fn read(&self, mut each: impl FnMut(Event) -> Result<()>) -> Result<()> {
        match self {
            LogSource::Files(dir) => {
                let read = crate::logfile::read_log(dir, 0, each)?;
                match read.damage() {
                    Some((file, damage)) => Err(crate::logfile::damaged(file, damage)),
                    None => Ok(()),
                }
            }
            LogSource::Postgres { pool, dir, name } => {
                let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                    DeploymentError::Log("reading a decision log in PostgreSQL needs a tokio runtime".into())
                })?;
                handle
                    .block_on(crate::pglog::archive::read_history(pool, dir, name, 0, |event| {
                        each(event)?;
                        Ok::<_, DeploymentError>(true)
                    }))
                    .map(|_| ())
            }
        }
    }
}
