//! A deployment served by replicas on a PostgreSQL store (the log itself: [`crate::pglog`]):
//! opening from PostgreSQL (the newest snapshot there, then the events after it), applying
//! events in the global order, feedback (whose idempotency a unique constraint decides),
//! closing windows, and snapshots written to PostgreSQL.
//!
//! Why propensities stay exact although a replica may be a few events behind the log: a
//! decision is drawn from the distribution of the state the deciding replica has applied (a
//! prefix of the log), and the propensity and distribution logged with it are that
//! distribution's, the one the choice was actually sampled from. The learning that lags is the
//! policy's, never what its decisions record, so off-policy estimates over the log stay
//! unbiased.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sqlx::PgPool;
use uuid::Uuid;

use crate::engine::{Deployment, Opened, SnapshotMark, now_ms, uuid_ms};
use crate::error::lock_err;
use crate::event::Event;
use crate::log::Log;
use crate::notice::Notice;
use crate::outcome::{ClosedWindows, FeedbackIn, FeedbackOut};
use crate::pglog::archive::read_history;
use crate::pglog::{Outcome, PgLog, pg_err};
use crate::snapshot::FromBytes;
use crate::spec::DeploymentSpec;
use crate::state::{Applied, Inner, apply_replicated, compatible};
use crate::transition::carryable;
use crate::wal::LogOptions;
use crate::{DeploymentError, Result};

/// Snapshots kept per deployment in PostgreSQL (the newest ones).
const KEEP_SNAPSHOTS: i64 = 2;

impl Deployment {
    /// Opens a deployment whose log is in PostgreSQL: restores the newest usable snapshot
    /// there, applies every event after it in order, starts this replica's writer, and logs
    /// the start of `revision` unless the log's last revision is it already.
    pub async fn open_pg(
        name: &str,
        spec: DeploymentSpec,
        revision: i64,
        pool: PgPool,
        dir: &Path,
        options: impl Into<LogOptions>,
    ) -> Result<Deployment> {
        let options = options.into();
        sqlx::query("INSERT INTO deployment_log_heads (deployment, last_seq) VALUES ($1, 0) ON CONFLICT DO NOTHING")
            .bind(name)
            .execute(&pool)
            .await
            .map_err(pg_err)?;
        let mut inner = Inner::new(spec.clone(), revision)?;
        let (snapshot, mut last_rev) = match restore_snapshot(&pool, name, &spec, &mut inner).await? {
            Some((seq, last_rev)) => (Some(seq), last_rev),
            None => (None, None),
        };
        let mut replayed = 0;
        let from = inner.seq;
        read_history(&pool, &dir.join(name), name, from, |event| {
            if let Applied::NewerRevision(rev) = apply_replicated(&mut inner, &event, false, &mut last_rev)? {
                return Err(DeploymentError::Log(format!(
                    "the log of deployment '{name}' has revision {rev}, newer than revision {revision} being opened; open the newest revision"
                )));
            }
            replayed += 1;
            Ok(true)
        })
        .await?;
        if replayed > 0 {
            // What was read may be committed by another replica and not yet flushed.
            crate::pglog::flush(&pool).await?;
        }
        let applied = inner.seq;
        // After the replay the state is under the spec its log last recorded (its `Spec`
        // records), so a revision that changes the variants keeps or carries the learning as
        // it does on a file log. (Logs written before spec records replay under `spec`.)
        let reset = last_rev.is_some()
            && last_rev != Some(revision)
            && !compatible(&inner.spec, &spec)
            && !carryable(&inner.spec, &spec);
        let inner = Arc::new(Mutex::new(inner));
        let pg = PgLog::start(pool, name, dir.join(name), inner.clone(), applied, last_rev);
        let deployment = Deployment {
            name: name.to_string(),
            inner,
            wal: Log::Pg(pg),
            dir: dir.join(name),
            path: format!("postgres:deployment_log/{name}").into(),
            options,
            snapshot: Mutex::new(SnapshotMark {
                seq: snapshot.unwrap_or(0),
                at: std::time::Instant::now(),
                running: false,
            }),
            opened: Opened { snapshot, replayed },
        };
        if last_rev != Some(revision) {
            let ticket = deployment.with_inner(|inner| {
                let event = Event::Revision {
                    seq: inner.next_seq(),
                    ts: now_ms(),
                    rev: revision,
                    reset,
                };
                inner.commit(&deployment.wal, &event)?;
                // The spec in force from here, applied (kept, carried or afresh) when the
                // applier reaches it, and by every replica and restart at the same place.
                let event = Event::Spec {
                    seq: inner.next_seq(),
                    ts: now_ms(),
                    spec: Box::new(spec.clone()),
                };
                inner.commit(&deployment.wal, &event)
            })??;
            deployment.wal.notify();
            deployment.wal.wait_durable(ticket).await?;
        }
        deployment.with_inner(|inner| {
            // Re-seed so decisions after a restart do not repeat those before it (and two
            // replicas do not draw the same sequence).
            let salt = crate::pglog::replica_name()
                .bytes()
                .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
            inner.rng = ChaCha8Rng::seed_from_u64(inner.spec.seed ^ inner.seq.rotate_left(17) ^ salt);
        })?;
        tracing::info!(deployment = name, revision, replayed, from_snapshot = ?snapshot, replica = %crate::pglog::replica_name(), "deployment ready (log in PostgreSQL)");
        Ok(deployment)
    }

    /// A revision newer than this one that another replica started (this one then reloads).
    pub fn newer_revision(&self) -> Option<i64> {
        self.wal.pg().and_then(PgLog::newer_revision)
    }

    /// Feedback on a replicated log: an item for a decision this replica has not applied yet
    /// (another replica made it a moment ago) catches up from PostgreSQL first; the item is
    /// checked against this replica's state as on a file log, then whether its reward and each
    /// metric value is new, a duplicate or a conflict is decided by PostgreSQL's unique
    /// constraints (`deployment_rewards`, `deployment_metrics`), so the rules hold across
    /// replicas.
    pub(crate) async fn feedback_pg(
        &self,
        pg: &PgLog,
        items: Vec<Result<FeedbackIn>>,
    ) -> Result<(Vec<Result<FeedbackOut>>, Vec<Notice>)> {
        let unseen = self.with_inner(|inner| {
            let (now, window) = (now_ms(), inner.window_ms());
            items.iter().flatten().any(|item| {
                Uuid::parse_str(&item.decision_id)
                    .is_ok_and(|id| !inner.waiting.contains(&id) && uuid_ms(&id).is_some_and(|ts| ts + window >= now))
            })
        })?;
        if unseen {
            pg.catch_up().await?;
        }
        let mut results: Vec<Result<FeedbackOut>> = Vec::with_capacity(items.len());
        // Per item staged: its place, decision id, reward, and the tickets of its reward and
        // of its metrics event.
        type Staged = (usize, String, Option<f64>, Option<u64>, Option<u64>);
        let mut staged: Vec<Staged> = Vec::new();
        let mut last = None;
        {
            let mut inner = self.inner.lock().map_err(|_| lock_err())?;
            let now = now_ms();
            for (i, item) in items.into_iter().enumerate() {
                let checked = item.and_then(|item| self.check_item(&inner, &item, now).map(|c| (item, c)));
                let (item, mut checked) = match checked {
                    Ok(c) => c,
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                };
                results.push(Ok(FeedbackOut {
                    decision_id: item.decision_id.clone(),
                    counted: checked.counts(),
                }));
                if !checked.counts() {
                    continue;
                }
                let reward = match checked.reward_event(&mut inner, now) {
                    Some(event) => Some(inner.commit(&self.wal, &event)?),
                    None => None,
                };
                let metrics = match checked.metrics_event(&mut inner, now) {
                    Some(event) => Some(inner.commit(&self.wal, &event)?),
                    None => None,
                };
                last = metrics.or(reward);
                staged.push((i, item.decision_id, item.reward, reward, metrics));
            }
        }
        if let Some(last) = last {
            self.wal.notify();
            self.wal.wait_durable(last).await?;
        }
        for (i, id, given, reward, metrics) in staged {
            let mut logged = false;
            let mut refusal = None;
            for ticket in [reward, metrics].into_iter().flatten() {
                match pg.outcome(ticket) {
                    None => logged = true,
                    Some(Outcome::Duplicate) => {}
                    Some(Outcome::Conflict(existing)) => {
                        refusal.get_or_insert(DeploymentError::ConflictingReward {
                            id: id.clone(),
                            existing,
                            new: given.unwrap_or_default(),
                        });
                    }
                    Some(Outcome::MetricConflict { metric, existing, new }) => {
                        refusal.get_or_insert(DeploymentError::ConflictingMetric {
                            id: id.clone(),
                            metric,
                            existing,
                            new,
                        });
                    }
                }
            }
            // A value another replica recorded first refuses the item, even when another part
            // of it was logged (each value is decided on its own).
            results[i] = match refusal {
                Some(e) => Err(e),
                None => Ok(FeedbackOut {
                    decision_id: id,
                    counted: logged,
                }),
            };
        }
        let notices = self.with_inner(|inner| std::mem::take(&mut inner.notices))?;
        Ok((results, notices))
    }

    /// Closes expired windows on a replicated log: every replica proposes the default reward of
    /// a decision that got none; one of them is logged (the unique constraint), the others
    /// learn it from the log.
    pub(crate) async fn close_windows_pg(&self, pg: &PgLog, now: i64) -> Result<ClosedWindows> {
        let mut staged = Vec::new();
        let mut closed = 0;
        {
            let mut inner = self.inner.lock().map_err(|_| lock_err())?;
            let window = inner.window_ms();
            while let Some(id) = inner.waiting.next_expired(now, window) {
                let Some(w) = inner.waiting.get(&id) else { continue };
                match (w.reward(), inner.spec.reward.default) {
                    (None, Some(default)) => {
                        let seq = inner.next_seq();
                        let event = Event::Reward {
                            seq,
                            ts: now,
                            id,
                            r: default,
                            default: true,
                        };
                        staged.push((id, default, inner.commit(&self.wal, &event)?));
                    }
                    _ => {
                        closed += 1;
                        inner.waiting.remove(&id);
                    }
                }
            }
        }
        if let Some((_, _, last)) = staged.last() {
            self.wal.notify();
            self.wal.wait_durable(*last).await?;
        }
        let mut defaults = Vec::new();
        let mut inner = self.inner.lock().map_err(|_| lock_err())?;
        for (id, default, ticket) in staged {
            closed += 1;
            match pg.outcome(ticket) {
                None => defaults.push((id.to_string(), default)),
                // Another replica's default, or a reward that came first: applied already.
                Some(_) => {
                    inner.waiting.remove(&id);
                }
            }
        }
        let notices = std::mem::take(&mut inner.notices);
        Ok(ClosedWindows {
            closed,
            defaults,
            notices,
        })
    }

    /// Writes a snapshot of the state now to PostgreSQL (every event it covers is committed:
    /// only committed events are applied) and keeps the newest [`KEEP_SNAPSHOTS`].
    pub(crate) async fn snapshot_pg(&self, pg: &PgLog) -> Result<Option<u64>> {
        let last = self.snapshot.lock().map_err(|_| lock_err())?.seq;
        let (seq, bytes) = {
            let inner = self.inner.lock().map_err(|_| lock_err())?;
            if inner.seq == last {
                return Ok(None);
            }
            crate::snapshot::encode(&inner, pg.last_rev(), now_ms())?
        };
        let started = std::time::Instant::now();
        let name = &self.name;
        sqlx::query(
            "INSERT INTO deployment_snapshots (deployment, seq, replica, taken_at, body) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(seq as i64)
        .bind(pg.replica())
        .bind(now_ms())
        .bind(&bytes)
        .execute(pg.pool())
        .await
        .map_err(pg_err)?;
        sqlx::query(
            "DELETE FROM deployment_snapshots WHERE deployment = $1 AND seq < \
             (SELECT MIN(seq) FROM (SELECT seq FROM deployment_snapshots WHERE deployment = $1 ORDER BY seq DESC LIMIT $2) newest)",
        )
        .bind(name)
        .bind(KEEP_SNAPSHOTS)
        .execute(pg.pool())
        .await
        .map_err(pg_err)?;
        tracing::info!(deployment = %name, seq, bytes = bytes.len(), ms = started.elapsed().as_millis() as u64, "snapshot written to PostgreSQL");
        metrics::counter!("keel_deployment_snapshots_total").increment(1);
        Ok(Some(seq))
    }
}

impl Deployment {
    /// The report of a deployment rebuilt from its log without writing anything, wherever the
    /// log lives: in PostgreSQL on a PostgreSQL store (the newest snapshot there and the events
    /// after it), else in the deployment's folder under `dir` (see [`Deployment::offline_report`]).
    pub async fn offline_report_in(
        store: &keel_store::Store,
        name: &str,
        spec: &DeploymentSpec,
        revision: i64,
        dir: &Path,
    ) -> Result<crate::Report> {
        let Some(pool) = store.postgres_pool() else {
            let (name, spec, dir) = (name.to_string(), spec.clone(), dir.to_path_buf());
            return tokio::task::spawn_blocking(move || Deployment::offline_report(&name, &spec, revision, &dir))
                .await
                .map_err(|e| DeploymentError::Log(format!("reading the decision log stopped: {e}")))?;
        };
        let mut inner = Inner::new(spec.clone(), revision)?;
        let mut last_rev = restore_snapshot(&pool, name, spec, &mut inner)
            .await?
            .and_then(|(_, r)| r);
        let from = inner.seq;
        read_history(&pool, &dir.join(name), name, from, |event| {
            Ok::<_, DeploymentError>(!matches!(
                apply_replicated(&mut inner, &event, false, &mut last_rev)?,
                Applied::NewerRevision(_)
            ))
        })
        .await?;
        let waiting = inner.waiting.unrewarded();
        Ok(crate::report::build(name, &inner, waiting))
    }
}

/// Restores the newest usable snapshot of `name` from PostgreSQL into `inner`: its sequence
/// number and last revision. A damaged one is skipped with a warning (and kept: nothing is
/// deleted), as is one beyond the end of the log.
async fn restore_snapshot(
    pool: &PgPool,
    name: &str,
    spec: &DeploymentSpec,
    inner: &mut Inner,
) -> Result<Option<(u64, Option<i64>)>> {
    let head: Option<(i64,)> = sqlx::query_as("SELECT last_seq FROM deployment_log_heads WHERE deployment = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(pg_err)?;
    let head = head.map_or(0, |(h,)| h);
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, body FROM deployment_snapshots WHERE deployment = $1 AND seq <= $2 ORDER BY seq DESC LIMIT 4",
    )
    .bind(name)
    .bind(head)
    .fetch_all(pool)
    .await
    .map_err(pg_err)?;
    for (seq, bytes) in rows {
        match crate::snapshot::restore_bytes(&bytes, seq as u64, spec, inner) {
            Ok(FromBytes::Restored { seq, last_rev }) => {
                tracing::info!(deployment = name, seq, "state restored from a snapshot in PostgreSQL");
                return Ok(Some((seq, last_rev)));
            }
            Ok(FromBytes::OtherSpec) => return Ok(None),
            Err(why) => {
                tracing::warn!(deployment = name, seq, reason = %why, "a snapshot in PostgreSQL cannot be used (kept in deployment_snapshots); an earlier one or the log is used")
            }
        }
    }
    Ok(None)
}
