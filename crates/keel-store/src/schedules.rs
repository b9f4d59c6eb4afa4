//! Schedules: a keel command run on a cron expression by whichever `keel serve` claims each
//! firing, and the record of every run.
//!
//! The store knows nothing of cron: callers compute firings and pass times in milliseconds.
//! Exactly one runner takes a firing: claiming it moves the schedule's `next_at` from the
//! firing to the one after it with a compare-and-set and inserts the run row whose primary key
//! is `(schedule, scheduled_for)`, in one transaction. A runner renews its lease while it
//! works; a run whose lease lapsed (its runner died) is taken over by another, so a firing
//! runs at least once and, while runners live, exactly once. Every change and every run's
//! outcome is in the change log.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::changes::{NewChange, append_change};
use crate::error::{Result, StoreError, is_unique_violation_on, require_non_empty};
use crate::rows::{now_ms, time_from_ms};
use crate::store::{Store, in_write_tx, on_pool};

/// A schedule to create.
#[derive(Debug, Clone)]
pub struct NewSchedule<'a> {
    pub name: &'a str,
    pub cron: &'a str,
    /// The command's arguments after `keel`.
    pub args: &'a [String],
    /// A webhook URL told about failed runs.
    pub notify: Option<&'a str>,
    /// The first firing, in ms since the epoch.
    pub next_at_ms: i64,
    pub by: &'a str,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleRecord {
    pub name: String,
    pub cron: String,
    pub args: Vec<String>,
    pub notify: Option<String>,
    pub paused: bool,
    pub next_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
}

/// One run of a schedule (one firing, with its retries).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleRun {
    pub schedule: String,
    pub scheduled_for: DateTime<Utc>,
    /// `queued`, `running`, `retrying`, `succeeded`, `failed` or `missed`.
    pub status: String,
    pub attempts: i64,
    pub runner: String,
    /// `cron`, `catch_up` or `manual`.
    pub trigger: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub rows: Option<i64>,
    pub error: Option<String>,
}

/// A firing a runner claims (see [`Store::claim_firing`]).
#[derive(Debug, Clone)]
pub struct Firing<'a> {
    pub schedule: &'a str,
    /// The firing taken, ms since the epoch.
    pub scheduled_for: i64,
    /// The firing after it: where the schedule moves.
    pub next_at_ms: i64,
    /// Earlier firings skipped by the catch-up rule, oldest first (recorded as `missed`).
    pub missed: &'a [i64],
    /// `cron` or `catch_up`.
    pub trigger: &'a str,
}

/// How a run ended, as its runner reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Succeeded {
        rows: Option<i64>,
    },
    /// Failed; tried again at `retry_at` (ms) if set, else failed for good.
    Failed {
        error: String,
        retry_at: Option<i64>,
    },
}

#[derive(sqlx::FromRow)]
struct ScheduleRow {
    name: String,
    cron: String,
    args: String,
    notify: Option<String>,
    paused: bool,
    next_at: i64,
    created_at: i64,
    created_by: String,
    updated_at: i64,
}

impl TryFrom<ScheduleRow> for ScheduleRecord {
    type Error = StoreError;
    fn try_from(r: ScheduleRow) -> Result<ScheduleRecord> {
        let args: Vec<String> = serde_json::from_str(&r.args).map_err(|e| {
            StoreError::Database(sqlx::Error::Decode(
                format!(
                    "schedule '{}' has unreadable arguments ({e}); the row is corrupt",
                    r.name
                )
                .into(),
            ))
        })?;
        Ok(ScheduleRecord {
            name: r.name,
            cron: r.cron,
            args,
            notify: r.notify,
            paused: r.paused,
            next_at: time_from_ms(r.next_at)?,
            created_at: time_from_ms(r.created_at)?,
            created_by: r.created_by,
            updated_at: time_from_ms(r.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RunRow {
    schedule: String,
    scheduled_for: i64,
    status: String,
    attempts: i32,
    runner: String,
    trigger_kind: String,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    next_attempt_at: Option<i64>,
    rows_written: Option<i64>,
    error: Option<String>,
}

impl TryFrom<RunRow> for ScheduleRun {
    type Error = StoreError;
    fn try_from(r: RunRow) -> Result<ScheduleRun> {
        Ok(ScheduleRun {
            schedule: r.schedule,
            scheduled_for: time_from_ms(r.scheduled_for)?,
            status: r.status,
            attempts: i64::from(r.attempts),
            runner: r.runner,
            trigger: r.trigger_kind,
            started_at: r.started_at.map(time_from_ms).transpose()?,
            finished_at: r.finished_at.map(time_from_ms).transpose()?,
            next_attempt_at: r.next_attempt_at.map(time_from_ms).transpose()?,
            rows: r.rows_written,
            error: r.error,
        })
    }
}

macro_rules! select_schedules {
    () => {
        "SELECT name, cron, args, notify, paused, next_at, created_at, created_by, updated_at FROM schedules"
    };
}

macro_rules! select_runs {
    () => {
        "SELECT schedule, scheduled_for, status, attempts, runner, trigger_kind, started_at, \
         finished_at, next_attempt_at, rows_written, error FROM schedule_runs"
    };
}

fn not_found(name: &str) -> StoreError {
    StoreError::not_found(format!(
        "schedule '{}' does not exist; `keel schedule ls` lists them",
        name.escape_default()
    ))
}

impl Store {
    /// Creates a schedule (a conflict if the name is taken) and records it in the change log.
    pub async fn create_schedule(&self, new: NewSchedule<'_>) -> Result<ScheduleRecord> {
        require_non_empty("schedule name", new.name)?;
        require_non_empty("cron expression", new.cron)?;
        require_non_empty("actor", new.by)?;
        if new.args.is_empty() {
            return Err(StoreError::Invalid(
                "a schedule needs a command to run (after `--`)".into(),
            ));
        }
        let args = serde_json::to_string(new.args).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let at = now_ms();
        in_write_tx!(self, |tx| {
            let inserted = sqlx::query(
                "INSERT INTO schedules (name, cron, args, notify, paused, next_at, created_at, created_by, updated_at) \
                 VALUES ($1, $2, $3, $4, FALSE, $5, $6, $7, $6)",
            )
            .bind(new.name)
            .bind(new.cron)
            .bind(&args)
            .bind(new.notify)
            .bind(new.next_at_ms)
            .bind(at)
            .bind(new.by)
            .execute(&mut *tx)
            .await;
            if let Err(e) = inserted {
                if is_unique_violation_on(&e, "schedules") {
                    return Err(StoreError::Conflict {
                        what: format!(
                            "schedule '{}' exists already; delete it first or pick another name",
                            new.name
                        ),
                    });
                }
                return Err(e.into());
            }
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms: at,
                    actor: new.by,
                    kind: "schedule.created",
                    subject: format!("schedule/{}", new.name),
                    details: json!({"cron": new.cron, "args": new.args, "notify": new.notify.is_some()}),
                }
            );
            tx.commit().await?;
        });
        self.get_schedule(new.name).await
    }

    pub async fn get_schedule(&self, name: &str) -> Result<ScheduleRecord> {
        let row: Option<ScheduleRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(select_schedules!(), " WHERE name = $1"))
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        row.ok_or_else(|| not_found(name))?.try_into()
    }

    /// Every schedule, by name.
    pub async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>> {
        let rows: Vec<ScheduleRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(select_schedules!(), " ORDER BY name"))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Pauses or resumes a schedule; resuming sets its next firing (`next_at_ms`), so firings
    /// missed while paused are skipped, not caught up.
    pub async fn set_schedule_paused(&self, name: &str, paused: bool, next_at_ms: i64, by: &str) -> Result<()> {
        let at = now_ms();
        in_write_tx!(self, |tx| {
            let done = sqlx::query("UPDATE schedules SET paused = $2, next_at = $3, updated_at = $4 WHERE name = $1")
                .bind(name)
                .bind(paused)
                .bind(next_at_ms)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(not_found(name));
            }
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms: at,
                    actor: by,
                    kind: if paused { "schedule.paused" } else { "schedule.resumed" },
                    subject: format!("schedule/{name}"),
                    details: json!({}),
                }
            );
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deletes a schedule (its runs stay in the record).
    pub async fn delete_schedule(&self, name: &str, by: &str) -> Result<()> {
        let at = now_ms();
        in_write_tx!(self, |tx| {
            let done = sqlx::query("DELETE FROM schedules WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(not_found(name));
            }
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms: at,
                    actor: by,
                    kind: "schedule.deleted",
                    subject: format!("schedule/{name}"),
                    details: json!({}),
                }
            );
            tx.commit().await?;
        });
        Ok(())
    }

    /// Claims a firing for `runner` if nobody has: moves the schedule to its next firing (only
    /// if it still waits for this one, or the first missed one, and is not paused) and starts
    /// the run, in one transaction; firings skipped by the catch-up rule are recorded as
    /// `missed`. `false`: another runner has it (or it was paused).
    pub async fn claim_firing(&self, firing: &Firing<'_>, runner: &str, lease_until: i64) -> Result<bool> {
        let Firing {
            schedule: name,
            scheduled_for,
            next_at_ms,
            missed,
            trigger,
        } = *firing;
        let at = now_ms();
        in_write_tx!(self, |tx| {
            let expected = missed.first().copied().unwrap_or(scheduled_for);
            let moved = sqlx::query(
                "UPDATE schedules SET next_at = $3, updated_at = $4 WHERE name = $1 AND next_at = $2 AND paused = FALSE",
            )
            .bind(name)
            .bind(expected)
            .bind(next_at_ms)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                return Ok(false);
            }
            for m in missed {
                sqlx::query(
                    "INSERT INTO schedule_runs (schedule, scheduled_for, status, attempts, runner, trigger_kind, lease_until, error) \
                     VALUES ($1, $2, 'missed', 0, $3, 'cron', 0, 'not run: keel was not serving at that time; only the latest missed firing runs')",
                )
                .bind(name)
                .bind(m)
                .bind(runner)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO schedule_runs (schedule, scheduled_for, status, attempts, runner, trigger_kind, started_at, lease_until) \
                 VALUES ($1, $2, 'running', 1, $3, $4, $5, $6)",
            )
            .bind(name)
            .bind(scheduled_for)
            .bind(runner)
            .bind(trigger)
            .bind(at)
            .bind(lease_until)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(true)
    }

    /// Queues a run of `name` now, outside its cron (`keel schedule run-now`); a serving
    /// runner picks it up. Returns its firing time.
    pub async fn queue_run(&self, name: &str, by: &str) -> Result<i64> {
        self.get_schedule(name).await?;
        let at = now_ms();
        in_write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO schedule_runs (schedule, scheduled_for, status, attempts, runner, trigger_kind, lease_until, next_attempt_at) \
                 VALUES ($1, $2, 'queued', 0, '', 'manual', 0, $2)",
            )
            .bind(name)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms: at,
                    actor: by,
                    kind: "schedule.run_queued",
                    subject: format!("schedule/{name}"),
                    details: json!({"scheduled_for": at}),
                }
            );
            tx.commit().await?;
        });
        Ok(at)
    }

    /// Runs another runner may take now: queued ones, retries whose time came, and running
    /// ones whose lease lapsed; as `(schedule, scheduled_for)`.
    pub async fn claimable_runs(&self, now: i64) -> Result<Vec<(String, i64)>> {
        let rows: Vec<(String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT schedule, scheduled_for FROM schedule_runs \
                 WHERE (status IN ('queued', 'retrying') AND next_attempt_at <= $1) \
                    OR (status = 'running' AND lease_until < $1) \
                 ORDER BY scheduled_for",
            )
            .bind(now)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Takes a claimable run for `runner` (see [`claimable_runs`](Store::claimable_runs));
    /// `false` if another runner took it first.
    pub async fn claim_run(&self, schedule: &str, scheduled_for: i64, runner: &str, lease_until: i64) -> Result<bool> {
        let at = now_ms();
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE schedule_runs SET status = 'running', runner = $3, lease_until = $4, attempts = attempts + 1, \
                 started_at = COALESCE(started_at, $5), next_attempt_at = NULL \
                 WHERE schedule = $1 AND scheduled_for = $2 \
                   AND ((status IN ('queued', 'retrying') AND next_attempt_at <= $5) OR (status = 'running' AND lease_until < $5))",
            )
            .bind(schedule)
            .bind(scheduled_for)
            .bind(runner)
            .bind(lease_until)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Extends `runner`'s lease on a run it is working on; `false` if it lost the run.
    pub async fn renew_run_lease(&self, schedule: &str, scheduled_for: i64, runner: &str, until: i64) -> Result<bool> {
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE schedule_runs SET lease_until = $4 \
                 WHERE schedule = $1 AND scheduled_for = $2 AND runner = $3 AND status = 'running'",
            )
            .bind(schedule)
            .bind(scheduled_for)
            .bind(runner)
            .bind(until)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Records how a run ended (only by the runner holding it) and puts the outcome in the
    /// change log, attributed to `by` (the schedule's creator).
    pub async fn finish_run(
        &self,
        schedule: &str,
        scheduled_for: i64,
        runner: &str,
        outcome: &RunOutcome,
        by: &str,
    ) -> Result<bool> {
        let at = now_ms();
        let (status, rows, error, retry_at) = match outcome {
            RunOutcome::Succeeded { rows } => ("succeeded", *rows, None, None),
            RunOutcome::Failed { error, retry_at } => (
                if retry_at.is_some() { "retrying" } else { "failed" },
                None,
                Some(error.as_str()),
                *retry_at,
            ),
        };
        in_write_tx!(self, |tx| {
            let done = sqlx::query(
                "UPDATE schedule_runs SET status = $4, finished_at = $5, rows_written = $6, error = $7, next_attempt_at = $8 \
                 WHERE schedule = $1 AND scheduled_for = $2 AND runner = $3 AND status = 'running'",
            )
            .bind(schedule)
            .bind(scheduled_for)
            .bind(runner)
            .bind(status)
            .bind(at)
            .bind(rows)
            .bind(error)
            .bind(retry_at)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms: at,
                    actor: by,
                    kind: match status {
                        "succeeded" => "schedule.run_succeeded",
                        "retrying" => "schedule.run_retrying",
                        _ => "schedule.run_failed",
                    },
                    subject: format!("schedule/{schedule}"),
                    details: json!({
                        "scheduled_for": scheduled_for,
                        "runner": runner,
                        "rows": rows,
                        "error": error,
                        "retry_at": retry_at,
                    }),
                }
            );
            tx.commit().await?;
        });
        Ok(true)
    }

    /// The newest `limit` runs of a schedule, newest first.
    pub async fn list_schedule_runs(&self, name: &str, limit: i64) -> Result<Vec<ScheduleRun>> {
        let rows: Vec<RunRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(
                select_runs!(),
                " WHERE schedule = $1 ORDER BY scheduled_for DESC LIMIT $2"
            ))
            .bind(name)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }
}
