//! Archiving the decision log in PostgreSQL to the lake, and reading it back: what
//! [`crate::archive`] does for the file log, for the log the replicas share.
//!
//! A range of `deployment_log` is archived once (1) the oldest snapshot in
//! `deployment_snapshots` covers it, so no start needs it, (2) every record in it is older than
//! the attribution window (and [`CLOCK_GRACE_MS`] more, for replicas' clocks), so none of its
//! decisions can still be rewarded, and (3) it holds at least
//! [`LogOptions::segment_bytes`](crate::LogOptions) of records, as a closed segment does (the
//! lake gets a few large files, not one per pass). Its records go to the lake table [`TABLE`]
//! exactly as logged, in one commit made durable first; then one transaction records the range
//! in `deployment_log_archived` (count, sequence numbers, checksum) and deletes its rows from
//! `deployment_log`, with the `deployment_rewards` and `deployment_metrics` rows of its
//! decisions (they answer feedback sent again, which these decisions no longer take). A pass
//! cut short between the two finds the rows in the lake (it counts the range there first) and
//! does not append them twice; rows that disagree stop archiving loudly and delete nothing.
//!
//! Every replica runs passes; a session-level advisory lock per deployment lets one pass run
//! at a time (a replica that finds it taken skips its turn). Readers of the whole history
//! ([`read_history`]) read the archived ranges back from the lake, checked against
//! `deployment_log_archived`, then the rows; a range archived while they read is found and
//! read from the lake instead of being taken for missing rows. So is a range archived past a
//! replica that fell behind (stalled for longer than the attribution window while another
//! replica archived): its writer reads the range back ([`read_archived`]) and catches up.

use std::path::Path;
use std::sync::Arc;

use sqlx::PgPool;
use xxhash_rust::xxh3::xxh3_64;

use super::{BATCH, Row, check_row, page, pg_err, read_rows, replica_name};
use crate::archive::{ArchiveDone, ArchiveRow, ArchiveStore, Archived, TABLE, checksum, event_of, read_segment};
use crate::event::Event;
use crate::{DeploymentError, Result};

/// Where the archived ranges are recorded, as errors name it.
const MANIFEST: &str = "the PostgreSQL table deployment_log_archived";

/// How much older than the attribution window a range's newest record must be: replicas whose
/// clocks disagree by less than this all refuse feedback for its decisions (`window_closed`),
/// so the rows that answer duplicate rewards and metric values may go with the range.
const CLOCK_GRACE_MS: i64 = 10 * 60 * 1000;

type ArchivedRow = (i64, i64, i64, String, Option<i64>, i64, i64);

/// The ranges of `deployment`'s log archived to the lake that end at or after `from`, oldest
/// first.
pub(crate) async fn archived(pool: &PgPool, deployment: &str, from: u64) -> Result<Vec<Archived>> {
    let rows: Vec<ArchivedRow> = sqlx::query_as(
        "SELECT first_seq, last_seq, records, xxh3, lake_version, newest_ts_ms, archived_at_ms \
         FROM deployment_log_archived WHERE deployment = $1 AND last_seq >= $2 ORDER BY first_seq",
    )
    .bind(deployment)
    .bind(from.min(i64::MAX as u64) as i64)
    .fetch_all(pool)
    .await
    .map_err(pg_err)?;
    Ok(rows
        .into_iter()
        .map(|(first, last, records, xxh3, version, newest, at)| Archived {
            first_seq: first as u64,
            last_seq: last as u64,
            records: records as u64,
            xxh3,
            lake_version: version.map(|v| v as u64),
            newest_ts_ms: newest,
            archived_at_ms: at,
        })
        .collect())
}

/// The last archived sequence number of `deployment`'s log (0: nothing archived).
pub(crate) async fn archived_through(pool: &PgPool, deployment: &str) -> Result<u64> {
    let (through,): (Option<i64>,) =
        sqlx::query_as("SELECT MAX(last_seq) FROM deployment_log_archived WHERE deployment = $1")
            .bind(deployment)
            .fetch_one(pool)
            .await
            .map_err(pg_err)?;
    Ok(through.unwrap_or(0) as u64)
}

/// The records of the archived range that holds `after + 1`, through `through` at most, read
/// back from the lake registered for the deployment folder `dir` (none when no archived range
/// holds it): how a replica that fell behind the archive (stalled for longer than the
/// attribution window while another replica archived past its position) catches up.
pub(crate) async fn read_archived(
    pool: &PgPool,
    dir: &Path,
    deployment: &str,
    after: u64,
    through: u64,
) -> Result<Vec<Row>> {
    let Some(range) = archived(pool, deployment, after + 1)
        .await?
        .into_iter()
        .next()
        .filter(|r| r.first_seq <= after + 1)
    else {
        return Ok(Vec::new());
    };
    let last = range.last_seq.min(through);
    let mut rows = Vec::with_capacity(last.saturating_sub(after).min(range.records) as usize);
    read_history(pool, dir, deployment, after, |event| {
        let seq = event.seq();
        if seq > last {
            return Ok::<_, DeploymentError>(false);
        }
        rows.push(Row {
            seq,
            replica: String::new(),
            event,
        });
        Ok(seq < last)
    })
    .await?;
    Ok(rows)
}

/// Passes every event of `deployment`'s log after `after` to `each`, in order, wherever it
/// is: the archived ranges read back from the lake registered for the deployment folder
/// `dir` (checked against `deployment_log_archived`), then the rows of `deployment_log`, in
/// pages, each checked. `each` returns false to stop; its errors (of the caller's own type)
/// end the read. The last sequence number passed (`after` when none was).
pub(crate) async fn read_history<E: From<DeploymentError>>(
    pool: &PgPool,
    dir: &Path,
    deployment: &str,
    after: u64,
    mut each: impl FnMut(Event) -> std::result::Result<bool, E>,
) -> std::result::Result<u64, E> {
    let mut at = after;
    'ranges: loop {
        for range in archived(pool, deployment, at + 1).await? {
            let store = crate::archive::store_or_err(dir, deployment, at + 1, range.last_seq, MANIFEST)?;
            if range.first_seq > at + 1 {
                return Err(DeploymentError::Log(format!(
                    "records {}..={} of the decision log of deployment '{deployment}' are neither in {MANIFEST} nor in deployment_log",
                    at + 1,
                    range.first_seq - 1
                ))
                .into());
            }
            for (seq, record) in read_segment(store.as_ref(), deployment, &range, MANIFEST).await? {
                if seq <= at {
                    continue;
                }
                at = seq;
                if !each(event_of(deployment, seq, &record)?)? {
                    return Ok(at);
                }
            }
        }
        loop {
            let rows = match read_rows(pool, deployment, at).await {
                Ok(rows) => rows,
                // Rows archived (and deleted) since the ranges were listed leave a gap that is
                // not damage: read them from the lake.
                Err(e) => {
                    if archived_through(pool, deployment).await? > at {
                        continue 'ranges;
                    }
                    return Err(e.into());
                }
            };
            let n = rows.len();
            for row in rows {
                at = row.seq;
                if !each(row.event)? {
                    return Ok(at);
                }
            }
            if n < BATCH {
                return Ok(at);
            }
        }
    }
}

/// One archiving pass over `deployment`'s log (see the module docs).
pub(crate) struct Pass<'a> {
    pub(crate) pool: &'a PgPool,
    pub(crate) deployment: &'a str,
    pub(crate) store: &'a Arc<dyn ArchiveStore>,
    pub(crate) window_ms: i64,
    /// The least a range holds (JSON bytes of its records).
    pub(crate) range_bytes: u64,
    pub(crate) now_ms: i64,
}

impl Pass<'_> {
    /// Archives the ranges that are due to the store, oldest first; another replica's pass
    /// running meanwhile makes this one do nothing.
    pub(crate) async fn run(&self) -> Result<ArchiveDone> {
        let mut conn = self.pool.acquire().await.map_err(pg_err)?;
        let key = xxh3_64(format!("keel.archive.{}", self.deployment).as_bytes()) as i64;
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await
            .map_err(pg_err)?;
        let done = if locked {
            self.locked().await
        } else {
            Ok(ArchiveDone::default())
        };
        if locked {
            // Released with the session too, should this fail.
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut *conn)
                .await;
        }
        let mut done = done?;
        done.through_seq = done
            .through_seq
            .max(archived_through(self.pool, self.deployment).await?);
        Ok(done)
    }

    async fn locked(&self) -> Result<ArchiveDone> {
        let (pool, deployment, store) = (self.pool, self.deployment, self.store);
        let mut done = ArchiveDone {
            through_seq: archived_through(pool, deployment).await?,
            ..ArchiveDone::default()
        };
        let (covered,): (Option<i64>,) =
            sqlx::query_as("SELECT MIN(seq) FROM deployment_snapshots WHERE deployment = $1")
                .bind(deployment)
                .fetch_one(pool)
                .await
                .map_err(pg_err)?;
        let Some(covered) = covered.map(|c| c as u64) else {
            return Ok(done);
        };
        let before = self
            .now_ms
            .saturating_sub(self.window_ms)
            .saturating_sub(CLOCK_GRACE_MS);
        while let Some(rows) = due_range(pool, deployment, done.through_seq, covered, before, self.range_bytes).await? {
            let (Some(first), Some(last)) = (rows.first().map(|r| r.seq), rows.last().map(|r| r.seq)) else {
                break;
            };
            let n = rows.len() as u64;
            let xxh3 = checksum(rows.iter().map(|r| (r.seq, r.record.as_bytes())));
            let newest = rows.iter().map(|r| r.ts_ms).max().unwrap_or(before);
            let decisions: Vec<String> = rows
                .iter()
                .filter(|r| r.kind == "decision")
                .filter_map(|r| r.decision_id.clone())
                .collect();
            let found = store
                .count(deployment, first, last)
                .await
                .map_err(|e| DeploymentError::Log(format!("counting archived records of '{deployment}': {e}")))?;
            let lake_version = match found {
                0 => Some(store.append(deployment, rows).await.map_err(|e| {
                    DeploymentError::Log(format!(
                        "archiving records {first}..={last} of '{deployment}' to the lake: {e}"
                    ))
                })?),
                f if f == n => None,
                other => {
                    return Err(DeploymentError::Log(format!(
                        "the lake table {TABLE} holds {other} of the {n} records {first}..={last} of deployment '{deployment}' \
                         without a row in {MANIFEST}; archiving stops and nothing is deleted: compare them by hand"
                    )));
                }
            };
            record_range(
                pool,
                deployment,
                &Archived {
                    first_seq: first,
                    last_seq: last,
                    records: n,
                    xxh3,
                    lake_version,
                    newest_ts_ms: newest,
                    archived_at_ms: self.now_ms,
                },
                &decisions,
            )
            .await?;
            tracing::info!(
                deployment,
                first_seq = first,
                last_seq = last,
                records = n,
                ?lake_version,
                "decision log range in PostgreSQL archived to the lake"
            );
            metrics::counter!("keel_deployment_log_archived_records_total").increment(n);
            done.segments += 1;
            done.records += n;
            done.through_seq = last;
        }
        Ok(done)
    }
}

/// The next range after `through` that is due: records through `covered`, each older than
/// `before`, adding up to `range_bytes` of JSON at least; none while no full range is due.
async fn due_range(
    pool: &PgPool,
    deployment: &str,
    through: u64,
    covered: u64,
    before: i64,
    range_bytes: u64,
) -> Result<Option<Vec<ArchiveRow>>> {
    let (mut out, mut bytes, mut at) = (Vec::<ArchiveRow>::new(), 0u64, through);
    loop {
        let rows = page(pool, deployment, at, covered).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        for raw in rows {
            let record = raw.3.clone();
            let row = check_row(deployment, at, raw)?;
            if row.event.ts() >= before {
                return Ok(None);
            }
            at = row.seq;
            bytes += record.len() as u64;
            out.push(ArchiveRow {
                seq: row.seq,
                ts_ms: row.event.ts(),
                kind: row.event.kind(),
                decision_id: row.event.decision_id().map(|id| id.to_string()),
                record,
            });
            if bytes >= range_bytes {
                return Ok(Some(out));
            }
        }
    }
}

/// Records an archived range and deletes its rows from `deployment_log`, with the rows of
/// `deployment_rewards` and `deployment_metrics` of the range's `decisions`, in one transaction
/// that commits only if every row of the range was there to delete. (Those rows answer a
/// reward or metric sent again, as a duplicate or a conflict, and only while the decision's
/// window is open: every replica refuses feedback for these decisions as `window_closed`
/// before it reaches them.)
async fn record_range(pool: &PgPool, deployment: &str, range: &Archived, decisions: &[String]) -> Result<()> {
    let mut tx = pool.begin().await.map_err(pg_err)?;
    sqlx::query(
        "INSERT INTO deployment_log_archived \
         (deployment, first_seq, last_seq, records, xxh3, lake_version, newest_ts_ms, archived_at_ms, replica) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(deployment)
    .bind(range.first_seq as i64)
    .bind(range.last_seq as i64)
    .bind(range.records as i64)
    .bind(&range.xxh3)
    .bind(range.lake_version.map(|v| v as i64))
    .bind(range.newest_ts_ms)
    .bind(range.archived_at_ms)
    .bind(replica_name())
    .execute(&mut *tx)
    .await
    .map_err(pg_err)?;
    let deleted = sqlx::query("DELETE FROM deployment_log WHERE deployment = $1 AND seq BETWEEN $2 AND $3")
        .bind(deployment)
        .bind(range.first_seq as i64)
        .bind(range.last_seq as i64)
        .execute(&mut *tx)
        .await
        .map_err(pg_err)?
        .rows_affected();
    if deleted != range.records {
        tx.rollback().await.map_err(pg_err)?;
        return Err(DeploymentError::Log(format!(
            "deleting the archived records {}..={} of '{deployment}' found {deleted} rows, not {} (a repair meanwhile?); \
             nothing was deleted and the range is archived again by the next pass",
            range.first_seq, range.last_seq, range.records
        )));
    }
    for sql in [
        "DELETE FROM deployment_rewards WHERE deployment = $1 AND decision_id = ANY($2::text[]::uuid[])",
        "DELETE FROM deployment_metrics WHERE deployment = $1 AND decision_id = ANY($2::text[]::uuid[])",
    ] {
        sqlx::query(sql)
            .bind(deployment)
            .bind(decisions)
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)
}
