//! `keel deployment verify` and `keel deployment repair` on a decision log kept in PostgreSQL
//! (a PostgreSQL store: [`crate::pglog`]).
//!
//! - [`verify`] reads every row of the deployment in `deployment_log`, in sequence order, and
//!   checks each as a replica does before applying it: no missing sequence number, the XXH3
//!   checksum seeded with the sequence number, a readable event that carries that number; and
//!   that the head (`deployment_log_heads`) agrees with the last row. It reports every problem
//!   (the first [`MAX_LISTED`]) and every snapshot in `deployment_snapshots`. Nothing changes.
//! - [`repair`] cuts the log at a sequence number: in one transaction (the head row locked, so
//!   no replica appends meanwhile) the rows from there on are moved into
//!   `deployment_log_repaired`, the rewards they logged out of `deployment_rewards` into
//!   `deployment_rewards_repaired` (so the same reward sent again counts, as the log no longer
//!   holds it), the metric values they logged out of `deployment_metrics` into
//!   `deployment_metrics_repaired` likewise, the snapshots covering them into `deployment_snapshots_repaired`, all under one
//!   repair id, never deleted; the head goes back to the last row kept. The change log records
//!   who repaired what. A replica still running with the cut records in memory stops at its
//!   next commit (its head went back) and must be restarted.

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::event::Event;
use crate::pglog::{BATCH, pg_err};
use crate::{DeploymentError, Result};

/// Problems listed by [`verify`] (all are counted).
pub const MAX_LISTED: usize = 100;

/// What `keel deployment verify` reports on a log in PostgreSQL.
#[derive(Debug, Clone, Serialize)]
pub struct PgVerify {
    pub deployment: String,
    /// Where the log is.
    pub table: String,
    /// The deployment's rows in the table.
    pub rows: u64,
    /// Rows that pass every check.
    pub valid: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The last sequence number given out (`deployment_log_heads`).
    pub head: u64,
    /// Problems in sequence order (the first [`MAX_LISTED`]).
    pub damage: Vec<PgDamage>,
    /// Every problem found.
    pub problems: u64,
    pub snapshots: Vec<PgSnapshotCheck>,
    /// Rows moved aside by earlier repairs (`deployment_log_repaired`).
    pub repaired_rows: u64,
    /// The ranges archived to the lake (`deployment_log_archived`), oldest first; the rows
    /// checked start after them.
    pub archived: Vec<crate::archive::Archived>,
    /// Whether they were read back from the lake and checked (counts, sequence numbers,
    /// checksums): only where this process has the lake.
    pub archived_checked: bool,
}

/// One problem: a damaged row, or missing ones.
#[derive(Debug, Clone, Serialize)]
pub struct PgDamage {
    /// The row's sequence number (the first missing one).
    pub seq: u64,
    /// The replica that wrote the row (none when rows are missing).
    pub replica: Option<String>,
    pub reason: String,
}

/// A snapshot in `deployment_snapshots`.
#[derive(Debug, Clone, Serialize)]
pub struct PgSnapshotCheck {
    pub seq: u64,
    pub replica: String,
    pub taken_at: i64,
    pub bytes: u64,
    /// Decisions in open windows it holds.
    pub waiting: Option<u64>,
    /// Why it cannot be used (a start then uses an earlier one, or the log).
    pub problem: Option<String>,
}

impl PgVerify {
    pub fn is_ok(&self) -> bool {
        self.problems == 0
    }

    /// Where to cut: the first problem's sequence number.
    pub fn first_damage(&self) -> Option<u64> {
        self.damage.first().map(|d| d.seq)
    }
}

/// What is wrong with a row, if anything (see the module docs).
fn row_problem(seq: i64, hash: i64, body: &str) -> Option<String> {
    if xxh3_64_with_seed(body.as_bytes(), seq as u64) as i64 != hash {
        return Some("checksum mismatch (the row was changed after it was written)".into());
    }
    match serde_json::from_str::<Event>(body) {
        Err(e) => Some(format!("unreadable event: {e}")),
        Ok(event) if event.seq() != seq as u64 => Some(format!("the event says seq {}", event.seq())),
        Ok(_) => None,
    }
}

/// Counts a problem, and lists it while fewer than [`MAX_LISTED`] are.
fn note(found: &mut PgVerify, seq: u64, replica: Option<String>, reason: String) {
    found.problems += 1;
    if found.damage.len() < MAX_LISTED {
        found.damage.push(PgDamage { seq, replica, reason });
    }
}

/// Checks the log of `deployment` in PostgreSQL (see the module docs), and its ranges archived
/// to the lake when one is registered for its local folder `dir`; changes nothing.
pub async fn verify(pool: &PgPool, deployment: &str, dir: &std::path::Path) -> Result<PgVerify> {
    crate::validate_name(deployment)?;
    let head: Option<(i64,)> = sqlx::query_as("SELECT last_seq FROM deployment_log_heads WHERE deployment = $1")
        .bind(deployment)
        .fetch_optional(pool)
        .await
        .map_err(pg_err)?;
    let Some((head,)) = head else {
        return Err(DeploymentError::InvalidRequest(format!(
            "deployment '{deployment}' has no decision log in PostgreSQL (no replica has served it yet)"
        )));
    };
    let mut found = PgVerify {
        deployment: deployment.to_string(),
        table: "deployment_log".into(),
        rows: 0,
        valid: 0,
        first_seq: None,
        last_seq: None,
        head: head as u64,
        damage: Vec::new(),
        problems: 0,
        snapshots: Vec::new(),
        repaired_rows: 0,
        archived: crate::pglog::archive::archived(pool, deployment, 0).await?,
        archived_checked: false,
    };
    if let Some(store) = crate::archive::store_for(dir)
        && !found.archived.is_empty()
    {
        for range in &found.archived {
            crate::archive::read_segment(store.as_ref(), deployment, range, "deployment_log_archived").await?;
        }
        found.archived_checked = true;
    }
    let mut prev = found.archived.last().map_or(0, |r| r.last_seq as i64);
    loop {
        let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(
            "SELECT seq, replica, hash, body FROM deployment_log WHERE deployment = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(deployment)
        .bind(prev)
        .bind(BATCH as i64)
        .fetch_all(pool)
        .await
        .map_err(pg_err)?;
        let n = rows.len();
        for (seq, replica, hash, body) in rows {
            found.rows += 1;
            found.first_seq.get_or_insert(seq as u64);
            found.last_seq = Some(seq as u64);
            if seq != prev + 1 {
                let missing = if seq == prev + 2 {
                    format!("record {} is missing", prev + 1)
                } else {
                    format!("records {} to {} are missing", prev + 1, seq - 1)
                };
                note(&mut found, (prev + 1) as u64, None, missing);
            }
            match row_problem(seq, hash, &body) {
                Some(why) => note(&mut found, seq as u64, Some(replica), why),
                None => found.valid += 1,
            }
            prev = seq;
        }
        if n < BATCH {
            break;
        }
    }
    if head > prev {
        let reason = format!(
            "the head says the log reaches seq {head}, the last row is seq {prev}: {} records are missing",
            head - prev
        );
        note(&mut found, (prev + 1) as u64, None, reason);
    } else if head < prev {
        let reason = format!("rows after seq {head}, where the head says the log ends");
        note(&mut found, (head + 1) as u64, None, reason);
    }
    let snapshots: Vec<(i64, String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, replica, taken_at, body FROM deployment_snapshots WHERE deployment = $1 ORDER BY seq",
    )
    .bind(deployment)
    .fetch_all(pool)
    .await
    .map_err(pg_err)?;
    for (seq, replica, taken_at, body) in snapshots {
        let (waiting, problem) = match crate::snapshot::check_bytes(&body) {
            Ok((covers, _)) if covers != seq as u64 => {
                (None, Some(format!("its key says seq {seq}, its contents {covers}")))
            }
            Ok((_, _)) if seq > head => (None, Some(format!("beyond the end of the log (seq {head})"))),
            Ok((_, waiting)) => (Some(waiting), None),
            Err(why) => (None, Some(why)),
        };
        found.snapshots.push(PgSnapshotCheck {
            seq: seq as u64,
            replica,
            taken_at,
            bytes: body.len() as u64,
            waiting,
            problem,
        });
    }
    let (repaired,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deployment_log_repaired WHERE deployment = $1")
        .bind(deployment)
        .fetch_one(pool)
        .await
        .map_err(pg_err)?;
    found.repaired_rows = repaired as u64;
    Ok(found)
}

/// What `keel deployment repair` did to a log in PostgreSQL.
#[derive(Debug, Clone, Serialize)]
pub struct PgRepair {
    pub deployment: String,
    /// The key of the rows moved aside in the `*_repaired` tables.
    pub repair_id: String,
    pub from_seq: u64,
    pub head_before: u64,
    pub head_after: u64,
    /// Rows moved into `deployment_log_repaired`.
    pub moved_rows: u64,
    /// Rewards moved into `deployment_rewards_repaired`.
    pub moved_rewards: u64,
    /// Metric values moved into `deployment_metrics_repaired`.
    pub moved_metrics: u64,
    /// Snapshots moved into `deployment_snapshots_repaired`.
    pub moved_snapshots: u64,
    /// The log after the repair.
    pub after: PgVerify,
}

/// Cuts the log of `deployment` at `from_seq` (see the module docs) and records the repair in
/// the change log as done by `by`.
pub async fn repair(store: &keel_store::Store, deployment: &str, from_seq: u64, by: &str) -> Result<PgRepair> {
    crate::validate_name(deployment)?;
    let Some(pool) = store.postgres_pool() else {
        return Err(DeploymentError::InvalidRequest(
            "this store is not PostgreSQL: the decision log is in files; repair it with --from-offset".into(),
        ));
    };
    if from_seq == 0 {
        return Err(DeploymentError::InvalidRequest(
            "--from-seq starts at 1 (the first record of a log)".into(),
        ));
    }
    let mut tx = pool.begin().await.map_err(pg_err)?;
    let head: Option<(i64,)> =
        sqlx::query_as("SELECT last_seq FROM deployment_log_heads WHERE deployment = $1 FOR UPDATE")
            .bind(deployment)
            .fetch_optional(&mut *tx)
            .await
            .map_err(pg_err)?;
    let Some((head,)) = head else {
        return Err(DeploymentError::InvalidRequest(format!(
            "deployment '{deployment}' has no decision log in PostgreSQL (no replica has served it yet)"
        )));
    };
    let archived = crate::pglog::archive::archived_through(&pool, deployment).await?;
    if from_seq <= archived {
        return Err(DeploymentError::InvalidRequest(format!(
            "records 1..={archived} of '{deployment}' are archived to the lake table {} and no longer in deployment_log: \
             --from-seq must be above {archived}",
            crate::archive::TABLE
        )));
    }
    let from = from_seq as i64;
    let (last_row,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM deployment_log WHERE deployment = $1")
        .bind(deployment)
        .fetch_one(&mut *tx)
        .await
        .map_err(pg_err)?;
    let end = head.max(last_row.unwrap_or(0));
    if from > end {
        return Err(DeploymentError::InvalidRequest(format!(
            "the decision log of '{deployment}' ends at seq {end}: nothing to move from seq {from_seq} on; \
             `keel deployment verify {deployment}` says where the damage is"
        )));
    }
    let repair_id = Uuid::now_v7().to_string();
    let now = crate::engine::now_ms();
    let moved = sqlx::query(
        "INSERT INTO deployment_log_repaired (repair_id, repaired_at, deployment, seq, replica, hash, body) \
         SELECT $1, $2, deployment, seq, replica, hash, body FROM deployment_log WHERE deployment = $3 AND seq >= $4",
    )
    .bind(&repair_id)
    .bind(now)
    .bind(deployment)
    .bind(from)
    .execute(&mut *tx)
    .await
    .map_err(pg_err)?
    .rows_affected();
    // The rewards the moved rows logged (those still readable; a damaged reward's key is kept).
    let bodies: Vec<(String,)> = sqlx::query_as("SELECT body FROM deployment_log WHERE deployment = $1 AND seq >= $2")
        .bind(deployment)
        .bind(from)
        .fetch_all(&mut *tx)
        .await
        .map_err(pg_err)?;
    let mut rewarded: Vec<String> = Vec::new();
    let (mut measured, mut measured_names): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for (body,) in &bodies {
        match serde_json::from_str::<Event>(body) {
            Ok(Event::Reward { id, .. }) => rewarded.push(id.to_string()),
            Ok(Event::Metrics { id, m, .. }) => {
                for name in m.into_keys() {
                    measured.push(id.to_string());
                    measured_names.push(name);
                }
            }
            _ => {}
        }
    }
    let moved_rewards = sqlx::query(
        "INSERT INTO deployment_rewards_repaired (repair_id, deployment, decision_id, reward) \
         SELECT $1, deployment, decision_id, reward FROM deployment_rewards \
         WHERE deployment = $2 AND decision_id = ANY($3::text[]::uuid[])",
    )
    .bind(&repair_id)
    .bind(deployment)
    .bind(&rewarded)
    .execute(&mut *tx)
    .await
    .map_err(pg_err)?
    .rows_affected();
    sqlx::query("DELETE FROM deployment_rewards WHERE deployment = $1 AND decision_id = ANY($2::text[]::uuid[])")
        .bind(deployment)
        .bind(&rewarded)
        .execute(&mut *tx)
        .await
        .map_err(pg_err)?;
    // The metric values the moved rows logged, likewise.
    let moved_metrics = sqlx::query(
        "INSERT INTO deployment_metrics_repaired (repair_id, deployment, decision_id, metric, value) \
         SELECT $1, m.deployment, m.decision_id, m.metric, m.value FROM deployment_metrics m \
         JOIN UNNEST($3::text[], $4::text[]) AS t(d, n) ON m.decision_id = t.d::uuid AND m.metric = t.n \
         WHERE m.deployment = $2",
    )
    .bind(&repair_id)
    .bind(deployment)
    .bind(&measured)
    .bind(&measured_names)
    .execute(&mut *tx)
    .await
    .map_err(pg_err)?
    .rows_affected();
    sqlx::query(
        "DELETE FROM deployment_metrics m USING UNNEST($2::text[], $3::text[]) AS t(d, n) \
         WHERE m.deployment = $1 AND m.decision_id = t.d::uuid AND m.metric = t.n",
    )
    .bind(deployment)
    .bind(&measured)
    .bind(&measured_names)
    .execute(&mut *tx)
    .await
    .map_err(pg_err)?;
    let moved_snapshots = sqlx::query(
        "INSERT INTO deployment_snapshots_repaired (repair_id, deployment, seq, replica, taken_at, body) \
         SELECT $1, deployment, seq, replica, taken_at, body FROM deployment_snapshots WHERE deployment = $2 AND seq >= $3",
    )
    .bind(&repair_id)
    .bind(deployment)
    .bind(from)
    .execute(&mut *tx)
    .await
    .map_err(pg_err)?
    .rows_affected();
    for table in ["deployment_snapshots", "deployment_log"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE deployment = $1 AND seq >= $2"
        )))
        .bind(deployment)
        .bind(from)
        .execute(&mut *tx)
        .await
        .map_err(pg_err)?;
    }
    sqlx::query("UPDATE deployment_log_heads SET last_seq = $2 WHERE deployment = $1")
        .bind(deployment)
        .bind(from - 1)
        .execute(&mut *tx)
        .await
        .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)?;
    let details = serde_json::json!({
        "log": "postgres:deployment_log",
        "repair_id": repair_id,
        "from_seq": from_seq,
        "head_before": head,
        "head_after": from - 1,
        "moved_rows": moved,
        "moved_rows_to": "deployment_log_repaired",
        "moved_rewards": moved_rewards,
        "moved_metrics": moved_metrics,
        "moved_snapshots": moved_snapshots,
    });
    store
        .record_change(
            by,
            "deployment.log_repaired",
            &format!("deployment/{deployment}"),
            &details,
        )
        .await?;
    tracing::warn!(deployment, by, %details, "decision log in PostgreSQL repaired");
    // The rows left (the archived ranges are not read again: no lake is needed here).
    let after = verify(&pool, deployment, std::path::Path::new("")).await?;
    Ok(PgRepair {
        deployment: deployment.to_string(),
        repair_id,
        from_seq,
        head_before: head as u64,
        head_after: (from - 1) as u64,
        moved_rows: moved,
        moved_rewards,
        moved_metrics,
        moved_snapshots,
        after,
    })
}
