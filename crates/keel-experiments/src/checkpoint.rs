//! Taking snapshots of a running deployment (the format and the restore are in
//! [`crate::snapshot`]): when one is due, and taking one without holding the lock while it is
//! written.

use crate::engine::{Deployment, now_ms};
use crate::error::lock_err;
use crate::{DeploymentError, Result};

impl Deployment {
    /// Whether a snapshot is due: enough records since the last one, or enough time with at
    /// least one record.
    pub fn snapshot_due(&self) -> bool {
        // A snapshot writes every decision in an open window: taking one no more often than
        // every that many records keeps its cost at one waiting decision per record logged.
        let waiting = self.inner.lock().map_or(0, |i| i.waiting.len() as u64);
        let Ok(mark) = self.snapshot.lock() else { return false };
        if mark.running || self.wal.failure().is_some() {
            return false;
        }
        let seq = self.wal.durable_seq();
        let since = seq.saturating_sub(mark.seq);
        since >= self.options.snapshot_every_records.max(waiting)
            || (since > 0 && mark.at.elapsed() >= self.options.snapshot_every)
    }

    /// Takes a snapshot of the state now: encoded under the lock, written once every record
    /// it covers is durable (never ahead of the log), atomically. Returns its sequence number,
    /// or `None` when nothing changed since the last one (or one is being taken).
    pub async fn snapshot(&self) -> Result<Option<u64>> {
        {
            let mut mark = self.snapshot.lock().map_err(|_| lock_err())?;
            if mark.running {
                return Ok(None);
            }
            mark.running = true;
        }
        let result = self.snapshot_now().await;
        let mut mark = self.snapshot.lock().map_err(|_| lock_err())?;
        mark.running = false;
        if let Ok(Some(seq)) = &result {
            mark.seq = *seq;
            mark.at = std::time::Instant::now();
        }
        result
    }

    async fn snapshot_now(&self) -> Result<Option<u64>> {
        self.serving()?;
        if let Some(pg) = self.wal.pg() {
            return self.snapshot_pg(pg).await;
        }
        let last = self.snapshot.lock().map_err(|_| lock_err())?.seq;
        let (seq, bytes) = {
            let inner = self.inner.lock().map_err(|_| lock_err())?;
            if inner.seq == last {
                return Ok(None);
            }
            crate::snapshot::encode(&inner, Some(inner.revision), now_ms())?
        };
        self.wal.notify();
        self.wal.wait_durable(seq).await?;
        let dir = self.dir.clone();
        let started = std::time::Instant::now();
        let path = tokio::task::spawn_blocking(move || crate::snapshot::write(&dir, seq, &bytes))
            .await
            .map_err(|e| DeploymentError::Log(format!("writing a snapshot stopped: {e}")))??;
        tracing::info!(deployment = %self.name, seq, path = %path.display(), ms = started.elapsed().as_millis() as u64, "snapshot written");
        metrics::counter!("keel_deployment_snapshots_total").increment(1);
        Ok(Some(seq))
    }
}
