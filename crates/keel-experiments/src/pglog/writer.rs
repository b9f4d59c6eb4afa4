//! The two tasks of a replica's writer for one deployment (see the module docs of
//! [`crate::pglog`]): the committer, which commits each batch without waiting for the WAL
//! flush, and the applier, which flushes, applies in sequence order and answers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::{BATCH, Outcome, POLL, Row, Shared, archive, flush, pg_err, read_range};
use crate::error::lock_err;
use crate::event::Event;
use crate::{DeploymentError, Result};

/// What the committer hands the applier, in order.
pub(super) enum Work {
    /// A committed batch: its events took sequence numbers `base + 1 ..`.
    Batch(Committed),
    /// Apply what the other replicas committed (the number of the poll asked for).
    Poll(u64),
}

pub(super) struct Committed {
    base: u64,
    events: Vec<Event>,
    /// Rewards not logged, by ticket.
    outcomes: Vec<(u64, Outcome)>,
    /// The batch's last ticket (logged or not).
    last_ticket: u64,
}

pub(super) fn fail(shared: &Shared, e: &DeploymentError) {
    let done = shared.applied.load(Ordering::Acquire);
    tracing::error!(deployment = %shared.deployment, error = %e, applied_seq = done, "decision log on PostgreSQL failed; this replica refuses decisions and feedback for the deployment until it is opened again");
    if let Ok(mut f) = shared.failed.lock()
        && f.is_none()
    {
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

/// The committer: takes what is staged once the applier has room for it, commits it, hands it
/// on; when idle, asks the applier for a poll every [`POLL`] (or when a caller asks).
pub(super) async fn committer(shared: Arc<Shared>, tx: mpsc::Sender<Work>) {
    let mut poll_sent = 0;
    loop {
        if shared.has_failed.load(Ordering::Acquire) {
            return;
        }
        // Room first: while the applier flushes, events accumulate into the next batch.
        let Ok(permit) = tx.reserve().await else { return };
        let asked = shared.poll_asked.load(Ordering::SeqCst);
        if asked > poll_sent {
            poll_sent = asked;
            permit.send(Work::Poll(asked));
            continue;
        }
        let batch = {
            let Ok(mut staged) = shared.staged.lock() else { return };
            let n = staged.events.len().min(BATCH);
            staged.events.drain(..n).collect::<Vec<_>>()
        };
        if batch.is_empty() {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let woken = tokio::time::timeout(POLL, shared.wake.notified()).await.is_ok();
            let staged = shared.staged.lock().is_ok_and(|s| !s.events.is_empty());
            let asked = shared.poll_asked.load(Ordering::SeqCst);
            if (woken && staged && asked <= poll_sent) || shared.stop.load(Ordering::SeqCst) {
                continue;
            }
            poll_sent = poll_sent.max(asked);
            permit.send(Work::Poll(asked));
            continue;
        }
        match commit(&shared, batch).await {
            Ok(committed) => permit.send(Work::Batch(committed)),
            Err(e) => {
                fail(&shared, &e);
                return;
            }
        }
    }
}

/// The applier: one flush for every batch waiting, then each in order: the others' events
/// before it, then its own; then its callers are answered.
pub(super) async fn applier(shared: Arc<Shared>, mut rx: mpsc::Receiver<Work>) {
    while let Some(first) = rx.recv().await {
        let mut work = vec![first];
        while let Ok(more) = rx.try_recv() {
            work.push(more);
        }
        if let Err(e) = finish(&shared, work).await {
            fail(&shared, &e);
            return;
        }
    }
}

async fn finish(shared: &Shared, work: Vec<Work>) -> Result<()> {
    if work.iter().any(|w| matches!(w, Work::Batch(_))) {
        flush(&shared.pool).await?;
    }
    for w in work {
        match w {
            Work::Batch(c) => {
                catch_up_to(shared, c.base).await?;
                if let Ok(mut o) = shared.outcomes.lock() {
                    o.extend(c.outcomes);
                }
                let base = c.base;
                apply_rows(
                    shared,
                    c.events
                        .into_iter()
                        .enumerate()
                        .map(|(i, event)| (base + 1 + i as u64, event, true)),
                    u64::MAX,
                )?;
                shared.tickets.send_replace(c.last_ticket);
            }
            Work::Poll(asked) => {
                poll(shared).await?;
                shared.polls.send_modify(|p| *p = (*p).max(asked));
            }
        }
    }
    Ok(())
}

/// Up to [`BATCH`] rows after `after`, through `through` at most (`u64::MAX`: to the end of
/// the log, where finding none is no gap), and whether they came from the lake: records the
/// archive moved there while this replica was behind (stalled for longer than the attribution
/// window while another replica archived past its position) are read back from it, not taken
/// for missing rows.
async fn read_behind(shared: &Shared, after: u64, through: u64) -> Result<(Vec<Row>, bool)> {
    let live = read_range(&shared.pool, &shared.deployment, after, through).await;
    match &live {
        Ok(rows) if !rows.is_empty() || through == u64::MAX => return Ok((live?, false)),
        _ => {}
    }
    if archive::archived_through(&shared.pool, &shared.deployment).await? <= after {
        return Ok((live?, false));
    }
    let rows = archive::read_archived(&shared.pool, &shared.dir, &shared.deployment, after, through).await?;
    if rows.is_empty() {
        return Ok((live?, false));
    }
    tracing::warn!(
        deployment = %shared.deployment,
        from_seq = after + 1,
        records = rows.len(),
        "this replica fell behind the log's archive; reading the archived records back from the lake"
    );
    Ok((rows, true))
}

/// Applies every replica's events committed since the last one applied, once durable.
async fn poll(shared: &Shared) -> Result<()> {
    loop {
        let after = shared.applied.load(Ordering::Acquire);
        let (rows, archived) = read_behind(shared, after, u64::MAX).await?;
        let n = rows.len();
        if n == 0 {
            return Ok(());
        }
        // Committed is not yet durable (the writers commit without waiting for the flush):
        // flush before applying, so no state ever holds an event a crash could take back.
        flush(&shared.pool).await?;
        apply_rows(
            shared,
            rows.into_iter().map(|r| (r.seq, r.event, r.replica == shared.replica)),
            u64::MAX,
        )?;
        if n < BATCH && !archived {
            return Ok(());
        }
    }
}

/// Applies the events committed before a batch whose numbers start after `base` (durable: the
/// batch's flush came after them).
async fn catch_up_to(shared: &Shared, base: u64) -> Result<()> {
    while shared.applied.load(Ordering::Acquire) < base {
        let after = shared.applied.load(Ordering::Acquire);
        let (rows, _) = read_behind(shared, after, base).await?;
        if rows.is_empty() {
            return Err(DeploymentError::Log(format!(
                "the decision log of deployment '{}' in PostgreSQL has no record {} although a batch after it was committed",
                shared.deployment,
                after + 1
            )));
        }
        apply_rows(
            shared,
            rows.into_iter().map(|r| (r.seq, r.event, r.replica == shared.replica)),
            base,
        )?;
    }
    Ok(())
}

/// Applies events in order, under the deployment's lock, up to (and including) `through`;
/// events applied already (a poll read this replica's batch before the batch came here) are
/// skipped.
fn apply_rows(shared: &Shared, rows: impl Iterator<Item = (u64, Event, bool)>, through: u64) -> Result<()> {
    let mut inner = shared.inner.lock().map_err(|_| lock_err())?;
    let mut last_rev = shared.last_rev.lock().map_err(|_| lock_err())?;
    for (seq, event, mine) in rows {
        if seq > through {
            break;
        }
        if seq <= shared.applied.load(Ordering::Acquire) {
            continue;
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
        shared.high.fetch_max(seq, Ordering::AcqRel);
    }
    Ok(())
}

/// Rewards: the first per decision in this batch is a candidate, later ones are answered
/// against it. Returns the candidates, the answers, and the events to log.
type Split = (HashMap<Uuid, (u64, f64)>, Vec<(u64, Outcome)>, Vec<(u64, Event)>);

fn split_rewards(batch: Vec<(u64, Event)>) -> Split {
    let mut first: HashMap<Uuid, (u64, f64)> = HashMap::new();
    let mut outcomes = Vec::new();
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
    (first, outcomes, kept)
}

/// A metric value a batch proposes: the ticket of its `Metrics` event, the decision, the
/// metric and the value.
type MetricValue = (u64, Uuid, String, f64);

/// The candidates, the answers, and the events to log of [`split_metrics`].
type SplitMetrics = (Vec<MetricValue>, Vec<(u64, Outcome)>, Vec<(u64, Event)>);

/// Metrics events: each (decision, metric) value first seen in this batch is a candidate (an
/// event whose value differs from one earlier in the batch is refused whole, and a value equal
/// to an earlier one is dropped from its event, which is a duplicate once it has none left).
/// Returns the candidates, the answers, and the events to log. (An earlier event refused later
/// by PostgreSQL's table leaves a later one in the batch judged against its value: a refusal
/// the client may retry, never a value counted twice.)
fn split_metrics(batch: Vec<(u64, Event)>) -> SplitMetrics {
    let mut seen: HashMap<(Uuid, String), f64> = HashMap::new();
    let mut candidates = Vec::new();
    let mut outcomes = Vec::new();
    let mut kept = Vec::with_capacity(batch.len());
    for (ticket, mut event) in batch {
        if let Event::Metrics { id, m, .. } = &mut event {
            let conflict = m.iter().find_map(|(name, value)| {
                seen.get(&(*id, name.clone()))
                    .filter(|earlier| *earlier != value)
                    .map(|earlier| Outcome::MetricConflict {
                        metric: name.clone(),
                        existing: *earlier,
                        new: *value,
                    })
            });
            if let Some(conflict) = conflict {
                outcomes.push((ticket, conflict));
                continue;
            }
            m.retain(|name, _| !seen.contains_key(&(*id, name.clone())));
            if m.is_empty() {
                outcomes.push((ticket, Outcome::Duplicate));
                continue;
            }
            for (name, value) in m.iter() {
                seen.insert((*id, name.clone()), *value);
                candidates.push((ticket, *id, name.clone(), *value));
            }
        }
        kept.push((ticket, event));
    }
    (candidates, outcomes, kept)
}

/// Records a batch's metric values in `deployment_metrics` inside its transaction: a value
/// the decision has already is dropped from its event (a duplicate once nothing is left); an
/// event with a value the decision has otherwise is refused whole, and the values it inserted
/// are taken back, so the table holds exactly the values of the logged events.
async fn record_metrics(
    tx: &mut sqlx::PgConnection,
    deployment: &str,
    mut candidates: Vec<MetricValue>,
    kept: &mut Vec<(u64, Event)>,
    outcomes: &mut Vec<(u64, Outcome)>,
) -> Result<()> {
    if candidates.is_empty() {
        return Ok(());
    }
    // In key order, as rewards are, so two replicas never deadlock.
    candidates.sort_unstable_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
    let ids: Vec<String> = candidates.iter().map(|c| c.1.to_string()).collect();
    let names: Vec<&str> = candidates.iter().map(|c| c.2.as_str()).collect();
    let values: Vec<f64> = candidates.iter().map(|c| c.3).collect();
    let inserted: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO deployment_metrics (deployment, decision_id, metric, value) \
         SELECT $1, d::uuid, m, v FROM UNNEST($2::text[], $3::text[], $4::float8[]) AS t(d, m, v) \
         ON CONFLICT DO NOTHING RETURNING decision_id::text, metric",
    )
    .bind(deployment)
    .bind(&ids)
    .bind(&names)
    .bind(&values)
    .fetch_all(&mut *tx)
    .await
    .map_err(pg_err)?;
    if inserted.len() == candidates.len() {
        return Ok(());
    }
    let inserted: HashSet<(String, String)> = inserted.into_iter().collect();
    let others: Vec<usize> = (0..candidates.len())
        .filter(|&i| !inserted.contains(&(ids[i].clone(), names[i].to_string())))
        .collect();
    let existing: Vec<(String, String, f64)> = sqlx::query_as(
        "SELECT m.decision_id::text, m.metric, m.value FROM deployment_metrics m \
         JOIN UNNEST($2::text[], $3::text[]) AS t(d, n) ON m.decision_id = t.d::uuid AND m.metric = t.n \
         WHERE m.deployment = $1",
    )
    .bind(deployment)
    .bind(others.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>())
    .bind(others.iter().map(|&i| names[i]).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await
    .map_err(pg_err)?;
    let existing: HashMap<(String, String), f64> = existing.into_iter().map(|(d, m, v)| ((d, m), v)).collect();
    let mut refused: HashMap<u64, Outcome> = HashMap::new();
    let mut dropped: HashSet<(u64, String)> = HashSet::new();
    for &i in &others {
        let (ticket, _, name, value) = &candidates[i];
        let Some(&earlier) = existing.get(&(ids[i].clone(), name.clone())) else {
            return Err(DeploymentError::Log(format!(
                "deployment_metrics refused the value of metric '{name}' for decision {} but holds none",
                ids[i]
            )));
        };
        if earlier == *value {
            dropped.insert((*ticket, name.clone()));
        } else {
            refused.entry(*ticket).or_insert(Outcome::MetricConflict {
                metric: name.clone(),
                existing: earlier,
                new: *value,
            });
        }
    }
    if !refused.is_empty() {
        // Take back what the refused events inserted.
        let back: Vec<usize> = (0..candidates.len())
            .filter(|&i| {
                refused.contains_key(&candidates[i].0) && inserted.contains(&(ids[i].clone(), names[i].to_string()))
            })
            .collect();
        if !back.is_empty() {
            sqlx::query(
                "DELETE FROM deployment_metrics m USING UNNEST($2::text[], $3::text[]) AS t(d, n) \
                 WHERE m.deployment = $1 AND m.decision_id = t.d::uuid AND m.metric = t.n",
            )
            .bind(deployment)
            .bind(back.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>())
            .bind(back.iter().map(|&i| names[i]).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
        }
    }
    kept.retain_mut(|(ticket, event)| {
        if refused.contains_key(ticket) {
            return false;
        }
        if let Event::Metrics { m, .. } = event {
            m.retain(|name, _| !dropped.contains(&(*ticket, name.clone())));
            if m.is_empty() {
                outcomes.push((*ticket, Outcome::Duplicate));
                return false;
            }
        }
        true
    });
    outcomes.extend(refused);
    Ok(())
}

/// Commits one batch (see the module docs) without waiting for the WAL flush.
async fn commit(shared: &Shared, batch: Vec<(u64, Event)>) -> Result<Committed> {
    let last_ticket = batch.last().map_or(0, |(t, _)| *t);
    let (first, mut outcomes, kept) = split_rewards(batch);
    let (metric_values, metric_outcomes, mut kept) = split_metrics(kept);
    outcomes.extend(metric_outcomes);
    // Durability comes from the applier's flush, before anyone is answered.
    let mut tx = shared
        .pool
        .begin_with("BEGIN; SET LOCAL synchronous_commit TO off")
        .await
        .map_err(pg_err)?;
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
            let inserted: HashSet<String> = inserted.into_iter().map(|(d,)| d).collect();
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
    record_metrics(&mut tx, &shared.deployment, metric_values, &mut kept, &mut outcomes).await?;
    let mut committed = Committed {
        base: 0,
        events: Vec::new(),
        outcomes,
        last_ticket,
    };
    if kept.is_empty() {
        tx.commit().await.map_err(pg_err)?;
        return Ok(committed);
    }
    // Taking the numbers locks the head row until the commit, a few round trips from now.
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
    let high = shared.high.load(Ordering::Acquire);
    if base < high {
        return Err(DeploymentError::Log(format!(
            "the decision log of deployment '{}' in PostgreSQL ends at seq {base}, before seq {high} this replica has seen: \
             it was cut under this replica (`keel deployment repair`); restart this keel serve so it reloads the log",
            shared.deployment
        )));
    }
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
    tx.commit().await.map_err(pg_err)?;
    metrics::counter!("keel_deployment_log_commits_total", "backend" => "postgres").increment(1);
    shared.high.fetch_max(last as u64, Ordering::AcqRel);
    committed.base = base;
    committed.events = kept.into_iter().map(|(_, e)| e).collect();
    Ok(committed)
}
