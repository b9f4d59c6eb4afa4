//! The scheduler loop a server runs (see the crate docs for the rules it follows).

use std::sync::Arc;
use std::time::Duration;

use keel_guard::{Notifier, WebhookFormat};
use keel_store::{Firing, RunOutcome, ScheduleRecord, Store};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::exec::{ProcessExecutor, expand};
use crate::{CronSpec, Result, now_ms};

/// When a failed run is tried again: after each of these, in order; then it has failed.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub backoff: Vec<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: vec![
                Duration::from_secs(30),
                Duration::from_secs(120),
                Duration::from_secs(600),
            ],
        }
    }
}

/// How a scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This runner's name in the runs it takes (host and process by default).
    pub runner: String,
    /// How often due firings and waiting runs are looked for.
    pub tick: Duration,
    /// How long a run is this runner's without renewal (renewed every third of it).
    pub lease: Duration,
    pub retry: RetryPolicy,
    /// Runs at once on this runner; more wait for the next tick (another runner may take them).
    pub max_running: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "keel".into());
        SchedulerConfig {
            runner: format!("{}:{}", host.trim(), std::process::id()),
            tick: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_running: 2,
        }
    }
}

/// Claims and runs the firings of every schedule in a store.
pub struct Scheduler {
    store: Store,
    executor: ProcessExecutor,
    config: SchedulerConfig,
    client: reqwest::Client,
    tasks: TaskTracker,
    cancel: CancellationToken,
    slots: Arc<Semaphore>,
}

impl Scheduler {
    pub fn new(store: Store, executor: ProcessExecutor, config: SchedulerConfig) -> Arc<Scheduler> {
        let slots = Arc::new(Semaphore::new(config.max_running.max(1)));
        Arc::new(Scheduler {
            store,
            executor,
            config,
            client: reqwest::Client::new(),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            slots,
        })
    }

    /// Starts the loop on the scheduler's own task tracker; [`shutdown`](Scheduler::shutdown)
    /// stops it.
    pub fn spawn(self: &Arc<Self>) {
        let me = self.clone();
        self.tasks.spawn(async move {
            let mut tick = tokio::time::interval(me.config.tick);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = me.cancel.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = me.tick().await {
                            tracing::warn!(error = %e, "scheduler: looking for due runs failed; trying again next tick");
                        }
                    }
                }
            }
        });
    }

    /// Stops claiming, stops the commands still running (their runs are handed back as
    /// retries, so another runner or the next start finishes them) and waits for the loop.
    pub async fn shutdown(&self, timeout: Duration) {
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(timeout, self.tasks.wait()).await.is_err() {
            tracing::warn!("scheduler: runs still finishing at shutdown");
        }
    }

    /// One pass: claims the due firings of every schedule and the runs waiting for a runner,
    /// and starts them (in the background). Returns how many it started.
    pub async fn tick(self: &Arc<Self>) -> Result<usize> {
        let now = now_ms();
        let mut started = 0;
        for schedule in self.store.list_schedules().await? {
            if schedule.paused || schedule.next_at.timestamp_millis() > now {
                continue;
            }
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                return Ok(started);
            };
            let spec = match CronSpec::parse(&schedule.cron) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(schedule = %schedule.name, error = %e, "scheduler: a stored cron expression does not parse; skipped");
                    continue;
                }
            };
            let due = spec.due(schedule.next_at.timestamp_millis(), now, 10_000)?;
            let Some((&latest, missed)) = due.split_last() else {
                continue;
            };
            let first = schedule.next_at.timestamp_millis();
            // Every firing from the stored one to the latest is accounted for.
            let skipped: Vec<i64> = if due.first() == Some(&first) {
                missed.to_vec()
            } else {
                std::iter::once(first).chain(missed.iter().copied()).collect()
            };
            let firing = Firing {
                schedule: &schedule.name,
                scheduled_for: latest,
                next_at_ms: spec.next_after(now)?,
                missed: &skipped,
                trigger: if skipped.is_empty() { "cron" } else { "catch_up" },
            };
            if self
                .store
                .claim_firing(&firing, &self.config.runner, self.lease_until())
                .await?
            {
                if !skipped.is_empty() {
                    tracing::warn!(schedule = %schedule.name, missed = skipped.len(), "scheduler: firings missed while no server ran; only the latest runs");
                }
                self.start(schedule, latest, 1, permit);
                started += 1;
            }
        }
        for (name, scheduled_for) in self.store.claimable_runs(now).await? {
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                break;
            };
            if !self
                .store
                .claim_run(&name, scheduled_for, &self.config.runner, self.lease_until())
                .await?
            {
                continue;
            }
            let attempts = self
                .store
                .list_schedule_runs(&name, 1000)
                .await?
                .into_iter()
                .find(|r| r.scheduled_for.timestamp_millis() == scheduled_for)
                .map_or(1, |r| r.attempts);
            match self.store.get_schedule(&name).await {
                Ok(schedule) => {
                    self.start(schedule, scheduled_for, attempts, permit);
                    started += 1;
                }
                Err(e) => {
                    let outcome = RunOutcome::Failed {
                        error: format!("the schedule is gone: {e}"),
                        retry_at: None,
                    };
                    self.store
                        .finish_run(&name, scheduled_for, &self.config.runner, &outcome, "keel")
                        .await?;
                }
            }
        }
        Ok(started)
    }

    fn lease_until(&self) -> i64 {
        now_ms() + self.config.lease.as_millis() as i64
    }

    fn start(
        self: &Arc<Self>,
        schedule: ScheduleRecord,
        scheduled_for: i64,
        attempt: i64,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let me = self.clone();
        self.tasks.spawn(async move {
            let _permit = permit;
            me.execute(schedule, scheduled_for, attempt).await;
        });
    }

    async fn execute(&self, schedule: ScheduleRecord, scheduled_for: i64, attempt: i64) {
        let name = schedule.name.clone();
        let args = expand(&schedule.args, scheduled_for);
        tracing::info!(schedule = %name, scheduled_for, attempt, args = ?args, "scheduled run starting");
        let stop = self.cancel.child_token();
        // Renew the lease while the command runs; losing it (another runner took the run over
        // after a pause longer than the lease) stops the command.
        let renew = {
            let (store, runner, stop, name) = (
                self.store.clone(),
                self.config.runner.clone(),
                stop.clone(),
                name.clone(),
            );
            let (every, lease) = (self.config.lease / 3, self.config.lease);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                    let until = now_ms() + lease.as_millis() as i64;
                    match store.renew_run_lease(&name, scheduled_for, &runner, until).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!(schedule = %name, scheduled_for, "scheduler: lost the lease on a run; stopping it");
                            stop.cancel();
                            return;
                        }
                        Err(e) => tracing::warn!(schedule = %name, error = %e, "scheduler: renewing a lease failed"),
                    }
                }
            })
        };
        let result = self.executor.run(&args, &schedule.created_by, &stop).await;
        let shutting_down = self.cancel.is_cancelled();
        stop.cancel();
        let _ = renew.await;
        let outcome = match result {
            Ok(done) if done.succeeded() => RunOutcome::Succeeded { rows: done.rows },
            Ok(done) => {
                let error = match (done.status, done.stderr_tail.is_empty()) {
                    (Some(code), false) => format!("exit status {code}: {}", done.stderr_tail),
                    (Some(code), true) => format!("exit status {code}"),
                    (None, _) => format!("stopped before it finished ({})", done.stderr_tail),
                };
                RunOutcome::Failed {
                    retry_at: self.retry_at(attempt, shutting_down),
                    error,
                }
            }
            Err(e) => RunOutcome::Failed {
                error: format!("could not start `keel {}`: {e}", args.join(" ")),
                retry_at: self.retry_at(attempt, shutting_down),
            },
        };
        let status = match &outcome {
            RunOutcome::Succeeded { .. } => "succeeded",
            RunOutcome::Failed { retry_at: Some(_), .. } => "retrying",
            RunOutcome::Failed { retry_at: None, .. } => "failed",
        };
        tracing::info!(schedule = %name, scheduled_for, attempt, status, "scheduled run finished");
        match self
            .store
            .finish_run(
                &name,
                scheduled_for,
                &self.config.runner,
                &outcome,
                &schedule.created_by,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(schedule = %name, "scheduler: the run was taken over; its outcome here is not recorded")
            }
            Err(e) => tracing::error!(schedule = %name, error = %e, "scheduler: recording a run's outcome failed"),
        }
        let (rows, error) = match &outcome {
            RunOutcome::Succeeded { rows } => (*rows, None),
            RunOutcome::Failed { error, .. } => (None, Some(error.as_str())),
        };
        keel_guard::webhook::Events::new(self.store.clone())
            .emit(
                "schedule.run",
                serde_json::json!({
                    "schedule": name, "status": status, "attempt": attempt, "rows": rows, "error": error,
                    "scheduled_for": chrono::DateTime::<chrono::Utc>::from_timestamp_millis(scheduled_for),
                }),
            )
            .await;
        if let (RunOutcome::Failed { retry_at: None, error }, Some(url)) = (&outcome, &schedule.notify) {
            self.notify(&schedule, url, scheduled_for, attempt, error).await;
        }
    }

    /// When to try a failed run again; `None` once the retries are spent. A run stopped by a
    /// shutdown is handed back at once, whatever its attempt.
    fn retry_at(&self, attempt: i64, shutting_down: bool) -> Option<i64> {
        if shutting_down {
            return Some(now_ms());
        }
        let idx = usize::try_from(attempt - 1).ok()?;
        self.config
            .retry
            .backoff
            .get(idx)
            .map(|d| now_ms() + d.as_millis() as i64)
    }

    async fn notify(&self, schedule: &ScheduleRecord, url: &str, scheduled_for: i64, attempts: i64, error: &str) {
        let body = serde_json::json!({
            "kind": "schedule_run_failed",
            "schedule": schedule.name,
            "scheduled_for": chrono::DateTime::<chrono::Utc>::from_timestamp_millis(scheduled_for),
            "attempts": attempts,
            "error": error,
            "text": format!("keel schedule '{}' failed after {attempts} attempts: {error}", schedule.name),
        });
        let notifier = Notifier {
            url: url.to_string(),
            format: WebhookFormat::default(),
            timeout_seconds: 5,
        };
        if let Err(e) = keel_guard::alert::send(&self.client, &notifier, &body).await {
            tracing::warn!(schedule = %schedule.name, url, error = ?e, "scheduler: the failure webhook was not delivered");
        }
    }
}
