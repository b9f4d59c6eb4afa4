//! The decision log on PostgreSQL: one replica's writer for one deployment.
//!
//! Every `keel serve` on a PostgreSQL store serves every deployment. Each replica stages its
//! own events (decisions, rewards, model outputs, revisions) and one writer task per
//! deployment commits them in batches: one transaction, and so one commit, per batch however
//! many events it holds (group commit), never one per event. The transaction
//! 1. inserts the batch's rewards into `deployment_rewards` (primary key: deployment and
//!    decision), in decision order so two replicas never deadlock; a reward whose decision
//!    has one already is not logged: the same value is a duplicate (`counted: false`),
//!    another is a conflict, whichever replica received the first;
//! 2. takes the next sequence numbers from the deployment's row of `deployment_log_heads`
//!    (an `UPDATE ... RETURNING`, which locks the row) and inserts the events into `deployment_log` (one statement, `UNNEST` of arrays), each
//!    with its XXH3 checksum seeded with its sequence number, as in the file log.
//!
//! The head row stays locked until the commit, so sequence numbers are given out in commit
//! order: a reader always sees a gap-free prefix of the log. After the commit the writer
//! applies, under the deployment's lock and in sequence order, the other replicas' events
//! before its batch (read back from PostgreSQL), then its own batch; only then are the
//! callers answered. So every replica's state is the same function of the same prefix of
//! one log (the policies converge), and an acknowledged event is committed.
//!
//! When the replica has nothing to write, the writer polls for the others' events every
//! [`POLL`]: that, plus one commit, bounds how far a replica's state is behind the log. A
//! caller that needs the latest state (a reward for a decision this replica has not seen yet)
//! asks for a poll now ([`PgLog::catch_up`]).
//!
//! A row whose checksum, sequence number or JSON is wrong is never applied: the writer stops
//! and the deployment refuses decisions and feedback with an error naming the row, as the file
//! log refuses damage.

use std::collections::HashMap;
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

/// What became of a staged reward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Outcome {
    /// The decision had this reward already: counted once, not logged again.
    Duplicate,
    /// The decision had another reward already (the one given).
    Conflict(f64),
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
    inner: Arc<Mutex<Inner>>,
    staged: Mutex<Staged>,
    wake: Notify,
    /// Tickets committed and applied, through this one.
    tickets: watch::Sender<u64>,
    /// Sequence number applied, through this one.
    applied: AtomicU64,
    /// Polls asked for ([`PgLog::catch_up`]) and polls done.
    poll_asked: AtomicU64,
    polls: watch::Sender<u64>,
    /// Rewards not logged, by ticket (taken by the caller that waits on it).
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
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A row of `deployment_log` read back and checked.
pub(crate) struct Row {
    pub(crate) seq: u64,
    pub(crate) replica: String,
    pub(crate) event: Event,
}

/// Checks a row (its checksum, its place after `after`, its JSON) and decodes its event.
pub(crate) fn check_row(
    deployment: &str,
    after: u64,
    (seq, replica, hash, body): (i64, String, i64, String),
) -> Result<Row> {
    let damaged = |what: String| {
        DeploymentError::Log(format!(
            "the decision log of deployment '{deployment}' in PostgreSQL is damaged at seq {seq} (table deployment_log, written by replica '{replica}'): {what}; \
             nothing at or after it is applied. Restore the table from a backup, or delete the rows of this deployment from seq {seq} on \
             (DELETE FROM deployment_log WHERE deployment = '{deployment}' AND seq >= {seq}, and set deployment_log_heads.last_seq to {}) after copying them aside",
            seq - 1
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
    let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(
        "SELECT seq, replica, hash, body FROM deployment_log WHERE deployment = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(deployment)
    .bind(after as i64)
    .bind(BATCH as i64)
    .fetch_all(pool)
    .await
    .map_err(pg_err)?;
    let mut out = Vec::with_capacity(rows.len());
    let mut at = after;
    for row in rows {
        let row = check_row(deployment, at, row)?;
        at = row.seq;
        out.push(row);
    }
    Ok(out)
}

/// Every event of deployment `deployment`'s log in PostgreSQL, checked, in order (offline
/// readers: OPE); an error at the first damaged row.
pub(crate) async fn read_all(pool: &PgPool, deployment: &str) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let rows = read_rows(pool, deployment, after).await?;
        let n = rows.len();
        for row in rows {
            after = row.seq;
            events.push(row.event);
        }
        if n < BATCH {
            return Ok(events);
        }
    }
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
    /// Starts the writer of `deployment`, whose state `inner` has applied the log through
    /// `applied` (the revision of the last `Revision` applied: `last_rev`).
    pub(crate) fn start(
        pool: PgPool,
        deployment: &str,
        inner: Arc<Mutex<Inner>>,
        applied: u64,
        last_rev: Option<i64>,
    ) -> PgLog {
        let shared = Arc::new(Shared {
            deployment: deployment.to_string(),
            replica: replica_name(),
            pool,
            inner,
            staged: Mutex::new(Staged {
                events: Vec::new(),
                next_ticket: 1,
            }),
            wake: Notify::new(),
            tickets: watch::channel(0).0,
            applied: AtomicU64::new(applied),
            poll_asked: AtomicU64::new(0),
            polls: watch::channel(0).0,
            outcomes: Mutex::new(HashMap::new()),
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            newer_revision: Mutex::new(None),
            last_rev: Mutex::new(last_rev),
        });
        let task = tokio::spawn(writer(shared.clone()));
        PgLog {
            shared,
            task: Mutex::new(Some(task)),
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

    /// What became of the staged reward of `ticket`, once applied: `None` when it was logged.
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
        if let Ok(mut t) = self.task.lock() {
            t.take();
        }
    }
}

impl Drop for PgLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn fail(shared: &Shared, e: &DeploymentError) {
    let done = shared.applied.load(Ordering::Acquire);
    tracing::error!(deployment = %shared.deployment, error = %e, applied_seq = done, "decision log on PostgreSQL failed; this replica refuses decisions and feedback for the deployment until it is opened again");
    if let Ok(mut f) = shared.failed.lock() {
        *f = Some(format!(
            "{e}; nothing this replica staged after it was acknowledged; \
             check PostgreSQL, then restart keel or apply the deployment again"
        ));
    }
    shared.has_failed.store(true, Ordering::Release);
    // Wake every waiter, so it sees the failure.
    shared.tickets.send_modify(|_| {});
    shared.polls.send_modify(|_| {});
}

async fn writer(shared: Arc<Shared>) {
    loop {
        let batch = {
            let Ok(mut staged) = shared.staged.lock() else { return };
            let n = staged.events.len().min(BATCH);
            staged.events.drain(..n).collect::<Vec<_>>()
        };
        if batch.is_empty() {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            if shared.poll_asked.load(Ordering::SeqCst) <= *shared.polls.borrow() {
                let _ = tokio::time::timeout(POLL, shared.wake.notified()).await;
            }
            let asked = shared.poll_asked.load(Ordering::SeqCst);
            if let Err(e) = poll(&shared).await {
                fail(&shared, &e);
                return;
            }
            shared.polls.send_replace(asked);
            continue;
        }
        let last_ticket = batch.last().map_or(0, |(t, _)| *t);
        if let Err(e) = commit(&shared, batch).await {
            fail(&shared, &e);
            return;
        }
        shared.tickets.send_replace(last_ticket);
    }
}

/// Applies the other replicas' events committed since the last one applied.
async fn poll(shared: &Shared) -> Result<()> {
    loop {
        let after = shared.applied.load(Ordering::Acquire);
        let rows = read_rows(&shared.pool, &shared.deployment, after).await?;
        let n = rows.len();
        apply_rows(
            shared,
            rows.into_iter().map(|r| (r.seq, r.event, r.replica == shared.replica)),
            u64::MAX,
        )?;
        if n < BATCH {
            return Ok(());
        }
    }
}

/// Applies events in order, under the deployment's lock, up to (and including) `through`.
fn apply_rows(shared: &Shared, rows: impl Iterator<Item = (u64, Event, bool)>, through: u64) -> Result<()> {
    let mut inner = shared.inner.lock().map_err(|_| lock_err())?;
    let mut last_rev = shared.last_rev.lock().map_err(|_| lock_err())?;
    for (seq, event, mine) in rows {
        if seq > through {
            break;
        }
        if let crate::state::Applied::NewerRevision(rev) =
            crate::state::apply_replicated(&mut inner, &event, mine, &mut last_rev)?
        {
            if let Ok(mut r) = shared.newer_revision.lock() {
                *r = Some(rev);
            }
            return Err(DeploymentError::Log(format!(
                "another replica started revision {rev} of deployment '{}'; this replica reloads it",
                shared.deployment
            )));
        }
        shared.applied.store(seq, Ordering::Release);
    }
    Ok(())
}

/// Commits one batch (see the module docs), then applies it in order.
async fn commit(shared: &Shared, batch: Vec<(u64, Event)>) -> Result<()> {
    // Rewards: the first per decision in this batch is a candidate, later ones are answered
    // against it.
    let mut first: HashMap<Uuid, (u64, f64)> = HashMap::new();
    let mut outcomes: Vec<(u64, Outcome)> = Vec::new();
    let mut kept = Vec::with_capacity(batch.len());
    for (ticket, event) in batch {
        if let Event::Reward { id, r, .. } = &event {
            if let Some((_, earlier)) = first.get(id) {
                outcomes.push((
                    ticket,
                    if earlier == r {
                        Outcome::Duplicate
                    } else {
                        Outcome::Conflict(*earlier)
                    },
                ));
                continue;
            }
            first.insert(*id, (ticket, *r));
        }
        kept.push((ticket, event));
    }
    let mut tx = shared.pool.begin().await.map_err(pg_err)?;
    if !first.is_empty() {
        let mut rewards: Vec<(Uuid, f64)> = first.iter().map(|(id, (_, r))| (*id, *r)).collect();
        rewards.sort_unstable_by_key(|(id, _)| *id);
        let ids: Vec<String> = rewards.iter().map(|(id, _)| id.to_string()).collect();
        let values: Vec<f64> = rewards.iter().map(|(_, r)| *r).collect();
        let inserted: Vec<(String,)> = sqlx::query_as(
            "INSERT INTO deployment_rewards (deployment, decision_id, reward) \
             SELECT $1, d::uuid, r FROM UNNEST($2::text[], $3::float8[]) AS t(d, r) \
             ON CONFLICT DO NOTHING RETURNING decision_id::text",
        )
        .bind(&shared.deployment)
        .bind(&ids)
        .bind(&values)
        .fetch_all(&mut *tx)
        .await
        .map_err(pg_err)?;
        if inserted.len() < ids.len() {
            let inserted: std::collections::HashSet<String> = inserted.into_iter().map(|(d,)| d).collect();
            let others: Vec<String> = ids.into_iter().filter(|d| !inserted.contains(d)).collect();
            let existing: Vec<(String, f64)> = sqlx::query_as(
                "SELECT decision_id::text, reward FROM deployment_rewards \
                 WHERE deployment = $1 AND decision_id = ANY($2::text[]::uuid[])",
            )
            .bind(&shared.deployment)
            .bind(&others)
            .fetch_all(&mut *tx)
            .await
            .map_err(pg_err)?;
            let mut refused = HashMap::new();
            for (id, existing) in existing {
                let id = Uuid::parse_str(&id).map_err(|e| DeploymentError::Log(format!("bad decision id: {e}")))?;
                let (ticket, r) = first[&id];
                refused.insert(
                    ticket,
                    if r == existing {
                        Outcome::Duplicate
                    } else {
                        Outcome::Conflict(existing)
                    },
                );
            }
            kept.retain(|(ticket, _)| !refused.contains_key(ticket));
            outcomes.extend(refused);
        }
    }
    // Taking the numbers locks the head row until the commit (one round trip).
    let n = kept.len() as i64;
    let (last,): (i64,) = sqlx::query_as(
        "UPDATE deployment_log_heads SET last_seq = last_seq + $2 WHERE deployment = $1 RETURNING last_seq",
    )
    .bind(&shared.deployment)
    .bind(n)
    .fetch_one(&mut *tx)
    .await
    .map_err(pg_err)?;
    let base = (last - n) as u64;
    let (mut seqs, mut hashes, mut bodies) = (
        Vec::with_capacity(kept.len()),
        Vec::with_capacity(kept.len()),
        Vec::with_capacity(kept.len()),
    );
    for (i, (_, event)) in kept.iter_mut().enumerate() {
        let seq = base + 1 + i as u64;
        event.set_seq(seq);
        let body = serde_json::to_string(event).map_err(|e| DeploymentError::Log(format!("encoding event: {e}")))?;
        seqs.push(seq as i64);
        hashes.push(xxh3_64_with_seed(body.as_bytes(), seq) as i64);
        bodies.push(body);
    }
    if !kept.is_empty() {
        sqlx::query(
            "INSERT INTO deployment_log (deployment, seq, replica, hash, body) \
             SELECT $1, s, $2, h, b FROM UNNEST($3::int8[], $4::int8[], $5::text[]) AS t(s, h, b)",
        )
        .bind(&shared.deployment)
        .bind(&shared.replica)
        .bind(&seqs)
        .bind(&hashes)
        .bind(&bodies)
        .execute(&mut *tx)
        .await
        .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    metrics::counter!("keel_deployment_log_commits_total", "backend" => "postgres").increment(1);
    // The others' events before this batch (committed before its head lock was granted)...
    while shared.applied.load(Ordering::Acquire) < base {
        let rows = read_rows(&shared.pool, &shared.deployment, shared.applied.load(Ordering::Acquire)).await?;
        if rows.is_empty() {
            return Err(DeploymentError::Log(format!(
                "the decision log of deployment '{}' in PostgreSQL has no record {} although its head says {base}",
                shared.deployment,
                shared.applied.load(Ordering::Acquire) + 1
            )));
        }
        apply_rows(
            shared,
            rows.into_iter().map(|r| (r.seq, r.event, r.replica == shared.replica)),
            base,
        )?;
    }
    // ...then this batch.
    if let Ok(mut o) = shared.outcomes.lock() {
        o.extend(outcomes);
    }
    let n = kept.len() as u64;
    apply_rows(
        shared,
        kept.into_iter()
            .enumerate()
            .map(|(i, (_, event))| (base + 1 + i as u64, event, true)),
        base + n,
    )
}
