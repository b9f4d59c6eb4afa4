//! The decision log on PostgreSQL: one replica's writer for one deployment.
//!
//! Every `keel serve` on a PostgreSQL store serves every deployment. Each replica stages its
//! own events (decisions, rewards, model outputs, revisions); its writer for the deployment is
//! a pipeline of two tasks ([`writer`]):
//!
//! 1. the **committer** takes everything staged (up to [`BATCH`] events) and commits it in one
//!    transaction, however many events it holds (one commit per batch, never per event). The
//!    transaction inserts the batch's rewards into `deployment_rewards` (primary key:
//!    deployment and decision; in decision order so two replicas never deadlock: a reward
//!    whose decision has one already is not logged, the same value is a duplicate, another a
//!    conflict, whichever replica received the first) and the values of its `Metrics` events
//!    into `deployment_metrics` (primary key: deployment, decision and metric; the same rules
//!    per value, an event with a conflicting value refused whole and none of its values kept),
//!    then takes the next sequence numbers
//!    from the deployment's row of `deployment_log_heads` (`UPDATE ... RETURNING`, which locks
//!    the row) and inserts the events into `deployment_log` (one statement, `UNNEST` of
//!    arrays), each with its XXH3 checksum seeded with its sequence number, as in the file log.
//!    The transaction commits **without waiting for the WAL flush** (`synchronous_commit` off
//!    for it alone), so the head row is locked for a few round trips, never across an fsync;
//!    sequence numbers still follow commit order, so a reader always sees a gap-free prefix.
//! 2. the **applier** takes every committed batch waiting for it and makes them durable with
//!    one flush ([`flush`]: a transaction that writes a WAL record and commits synchronously;
//!    the WAL is one sequence, so flushing past its own record flushes every commit before it,
//!    this replica's and the other replicas'). Then, under the deployment's lock and in
//!    sequence order, it applies the other replicas' events before each batch (read back from
//!    PostgreSQL), then the batch; only then are the callers answered.
//!
//! While the applier flushes one batch, the committer commits the next, and the events staged
//! meanwhile wait for the one after (at most one batch waits between the two). So an
//! acknowledged event is committed and flushed; every replica's state is the same function of
//! the same prefix of one log (the policies converge); and no replica applies an event before
//! it is durable (a replica reading the others' rows flushes before applying them).
//!
//! When the replica has nothing to write, it polls for the others' events every [`POLL`]:
//! that, plus one commit, bounds how far a replica's state is behind the log. A caller that
//! needs the latest state (a reward for a decision this replica has not seen yet) asks for a
//! poll now ([`PgLog::catch_up`]).
//!
//! A row whose checksum, sequence number or JSON is wrong is never applied: the writer stops
//! and the deployment refuses decisions and feedback with an error naming the row, as the file
//! log refuses damage (`keel deployment verify` / `repair`: [`crate::pgcheck`]).

pub(crate) mod archive;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Notify, watch};
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::lock_err;
use crate::event::Event;
use crate::state::Inner;
use crate::{DeploymentError, Result};

/// How often an idle replica reads the other replicas' new events.
pub const POLL: Duration = Duration::from_millis(20);
/// Most events committed in one transaction, and read in one query.
pub(crate) const BATCH: usize = 8192;

/// What became of a staged reward or metrics event that was not logged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// The decision had this reward (or every one of these metric values) already: counted
    /// once, not logged again.
    Duplicate,
    /// The decision had another reward already (the one given).
    Conflict(f64),
    /// The decision had another value of this metric already: the whole event is refused.
    MetricConflict { metric: String, existing: f64, new: f64 },
}

#[derive(Default)]
struct Staged {
    events: Vec<(u64, Event)>,
    next_ticket: u64,
}

/// What the writer and the callers share.
struct Shared {
    deployment: String,
    replica: String,
    pool: PgPool,
    /// The deployment's folder: where its log's lake archive is registered.
    dir: PathBuf,
    inner: Arc<Mutex<Inner>>,
    staged: Mutex<Staged>,
    wake: Notify,
    /// Tickets committed and applied, through this one.
    tickets: watch::Sender<u64>,
    /// Sequence number applied, through this one.
    applied: AtomicU64,
    /// The highest sequence number this replica knows the log has reached (applied, or
    /// committed by its own writer): a head below it means the log was cut under the replica
    /// (`keel deployment repair`), and the writer stops rather than write over it.
    high: AtomicU64,
    /// Polls asked for ([`PgLog::catch_up`]) and polls done.
    poll_asked: AtomicU64,
    polls: watch::Sender<u64>,
    /// Rewards and metrics events not logged, by ticket (taken by the caller that waits on it).
    outcomes: Mutex<HashMap<u64, Outcome>>,
    failed: Mutex<Option<String>>,
    has_failed: AtomicBool,
    stop: AtomicBool,
    /// A newer revision another replica started, once seen in the log.
    newer_revision: Mutex<Option<i64>>,
    /// The revision of the last `Revision` event applied.
    last_rev: Mutex<Option<i64>>,
}

/// The writer side of one deployment's log on PostgreSQL.
pub(crate) struct PgLog {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A row of `deployment_log` read back and checked.
pub(crate) struct Row {
    pub(crate) seq: u64,
    /// The replica that wrote it (empty for a record read back from the lake archive, which
    /// does not keep it).
    pub(crate) replica: String,
    pub(crate) event: Event,
}

/// Checks a row (its checksum, its place after `after`, its JSON) and decodes its event.
pub(crate) fn check_row(deployment: &str, after: u64, (seq, replica, hash, body): RawRow) -> Result<Row> {
    let damaged = |what: String| {
        DeploymentError::Log(format!(
            "the decision log of deployment '{deployment}' in PostgreSQL is damaged at seq {seq} (table deployment_log, written by replica '{replica}'): {what}; \
             nothing at or after it is applied. See every damaged row with `keel deployment verify {deployment}`; restore the table from a backup, \
             or move the rows from seq {seq} on aside (into deployment_log_repaired, nothing is deleted) with `keel deployment repair {deployment} --from-seq {seq}`, \
             then restart the replicas"
        ))
    };
    if seq as u64 != after + 1 {
        return Err(damaged(format!(
            "expected seq {} next (a record is missing)",
            after + 1
        )));
    }
    if xxh3_64_with_seed(body.as_bytes(), seq as u64) as i64 != hash {
        return Err(damaged("checksum mismatch".into()));
    }
    let event: Event = serde_json::from_str(&body).map_err(|e| damaged(format!("unreadable event: {e}")))?;
    if event.seq() != seq as u64 {
        return Err(damaged(format!("the event says seq {}", event.seq())));
    }
    Ok(Row {
        seq: seq as u64,
        replica,
        event,
    })
}

/// Reads up to [`BATCH`] checked rows after `after`.
pub(crate) async fn read_rows(pool: &PgPool, deployment: &str, after: u64) -> Result<Vec<Row>> {
    read_range(pool, deployment, after, i64::MAX as u64).await
}

/// A row of `deployment_log` as stored: sequence number, replica, checksum, JSON.
pub(crate) type RawRow = (i64, String, i64, String);

/// Up to [`BATCH`] rows after `after`, through `through` at most, unchecked.
pub(crate) async fn page(pool: &PgPool, deployment: &str, after: u64, through: u64) -> Result<Vec<RawRow>> {
    sqlx::query_as(
        "SELECT seq, replica, hash, body FROM deployment_log WHERE deployment = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
    )
    .bind(deployment)
    .bind(after.min(i64::MAX as u64) as i64)
    .bind(through.min(i64::MAX as u64) as i64)
    .bind(BATCH as i64)
    .fetch_all(pool)
    .await
    .map_err(pg_err)
}

/// Reads up to [`BATCH`] checked rows after `after`, through `through` at most.
pub(crate) async fn read_range(pool: &PgPool, deployment: &str, after: u64, through: u64) -> Result<Vec<Row>> {
    let rows = page(pool, deployment, after, through).await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut at = after;
    for row in rows {
        let row = check_row(deployment, at, row)?;
        at = row.seq;
        out.push(row);
    }
    Ok(out)
}

/// Makes everything committed so far durable: a transaction that writes one WAL record (a
/// transactional logical message, which no table keeps) and commits synchronously, so its
/// commit waits until the WAL is flushed past its record, and so past every commit before it,
/// whichever session or replica made them (the WAL is one sequence). Concurrent flushes share
/// one fsync (PostgreSQL's group commit).
pub(crate) async fn flush(pool: &PgPool) -> Result<()> {
    sqlx::query("SELECT pg_logical_emit_message(true, 'keel.flush', '')")
        .execute(pool)
        .await
        .map_err(pg_err)?;
    metrics::counter!("keel_deployment_log_flushes_total", "backend" => "postgres").increment(1);
    Ok(())
}

pub(crate) fn pg_err(e: sqlx::Error) -> DeploymentError {
    DeploymentError::Log(format!("PostgreSQL: {e}"))
}

/// The name this process writes under: host and process id, and a random part so a restarted
/// process is a new replica.
pub(crate) fn replica_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let host = host.trim();
        let id = Uuid::new_v4().simple().to_string();
        format!(
            "{}:{}:{}",
            if host.is_empty() { "keel" } else { host },
            std::process::id(),
            &id[..8]
        )
    })
    .clone()
}

impl PgLog {
    /// Starts the writer of `deployment` (its folder: `dir`, where the lake archive of its log
    /// is registered), whose state `inner` has applied the log through `applied` (the revision
    /// of the last `Revision` applied: `last_rev`).
    pub(crate) fn start(
        pool: PgPool,
        deployment: &str,
        dir: PathBuf,
        inner: Arc<Mutex<Inner>>,
        applied: u64,
        last_rev: Option<i64>,
    ) -> PgLog {
        let shared = Arc::new(Shared {
            deployment: deployment.to_string(),
            replica: replica_name(),
            pool,
            dir,
            inner,
            staged: Mutex::new(Staged {
                events: Vec::new(),
                next_ticket: 1,
            }),
            wake: Notify::new(),
            tickets: watch::channel(0).0,
            applied: AtomicU64::new(applied),
            high: AtomicU64::new(applied),
            poll_asked: AtomicU64::new(0),
            polls: watch::channel(0).0,
            outcomes: Mutex::new(HashMap::new()),
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            newer_revision: Mutex::new(None),
            last_rev: Mutex::new(last_rev),
        });
        // The committer hands committed batches (and polls) to the applier, in order; one
        // waits between them at most (the next batch accumulates meanwhile).
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let tasks = vec![
            tokio::spawn(writer::committer(shared.clone(), tx)),
            tokio::spawn(writer::applier(shared.clone(), rx)),
        ];
        PgLog {
            shared,
            tasks: Mutex::new(tasks),
        }
    }

    /// Stages an event for the next batch; returns its ticket.
    pub(crate) fn stage(&self, event: Event) -> Result<u64> {
        let mut staged = self.shared.staged.lock().map_err(|_| lock_err())?;
        let ticket = staged.next_ticket;
        staged.next_ticket += 1;
        staged.events.push((ticket, event));
        Ok(ticket)
    }

    pub(crate) fn notify(&self) {
        self.shared.wake.notify_one();
    }

    /// Waits until the event of `ticket` is committed and applied.
    pub(crate) async fn wait_applied(&self, ticket: u64) -> Result<()> {
        let mut rx = self.shared.tickets.subscribe();
        loop {
            if *rx.borrow_and_update() >= ticket {
                return Ok(());
            }
            if let Some(e) = self.failure() {
                return Err(DeploymentError::Log(e));
            }
            if rx.changed().await.is_err() {
                return Err(DeploymentError::Log("the log writer stopped".into()));
            }
        }
    }

    /// What became of the staged reward or metrics event of `ticket`, once applied: `None` when
    /// it was logged.
    pub(crate) fn outcome(&self, ticket: u64) -> Option<Outcome> {
        self.shared.outcomes.lock().ok()?.remove(&ticket)
    }

    /// Applies every event committed so far by any replica (a poll now), then returns.
    pub(crate) async fn catch_up(&self) -> Result<()> {
        let asked = self.shared.poll_asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.shared.polls.subscribe();
        self.notify();
        loop {
            if *rx.borrow_and_update() >= asked {
                return Ok(());
            }
            if let Some(e) = self.failure() {
                return Err(DeploymentError::Log(e));
            }
            if rx.changed().await.is_err() {
                return Err(DeploymentError::Log("the log writer stopped".into()));
            }
        }
    }

    pub(crate) fn applied_seq(&self) -> u64 {
        self.shared.applied.load(Ordering::Acquire)
    }

    pub(crate) fn failure(&self) -> Option<String> {
        if !self.shared.has_failed.load(Ordering::Acquire) {
            return None;
        }
        self.shared.failed.lock().ok().and_then(|f| f.clone())
    }

    /// A revision newer than the one this replica runs, started by another replica.
    pub(crate) fn newer_revision(&self) -> Option<i64> {
        self.shared.newer_revision.lock().ok().and_then(|r| *r)
    }

    pub(crate) fn replica(&self) -> &str {
        &self.shared.replica
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// The revision of the last `Revision` event applied.
    pub(crate) fn last_rev(&self) -> Option<i64> {
        self.shared.last_rev.lock().ok().and_then(|r| *r)
    }

    /// Stops the writer once what is staged is committed (it runs on; nothing waits for it).
    pub(crate) fn close(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.notify();
        if let Ok(mut t) = self.tasks.lock() {
            t.clear();
        }
    }
}

impl Drop for PgLog {
    fn drop(&mut self) {
        self.close();
    }
}
