//! Schedules: a keel command (`batch decide promo --from customers --into sends_{date}`, a
//! `data`, `monitor` or retention command) run on a cron expression by `keel serve`.
//!
//! - [`Schedules`]: the operations both transports call (create with validation, list, show,
//!   pause, resume, delete, run now, runs), over the metadata store, each recorded in the
//!   change log with who did it.
//! - [`Scheduler`]: the loop a server runs. Every second it claims the firings that are due
//!   and the runs waiting for a runner (queued by `run-now`, retries whose backoff passed, runs
//!   whose runner died), runs each as a child process of the keel binary with the server's
//!   home, store and lake, renews its lease while it runs, and records the outcome.
//!
//! # The rules, stated
//!
//! - **Exactly one runner per firing.** Several servers on one store race for a firing; the
//!   store's compare-and-set on the schedule's next firing lets one win (see
//!   `keel_store::Store::claim_firing`). A runner that dies mid-run stops renewing its lease
//!   (30 s); another runner takes the run over, so a firing runs at least once.
//! - **Catch-up after downtime**: when several firings were missed (no server was running),
//!   only the latest one runs (trigger `catch_up`); the earlier ones are recorded as `missed`,
//!   never run late: a Monday send that runs on Wednesday beside Wednesday's is worse than
//!   none. Resuming a paused schedule skips what passed while it was paused.
//! - **Retries with backoff**: a failed run (non-zero exit, or killed) is tried again after
//!   30 s, 2 min and 10 min ([`RetryPolicy`]); after the last failure it is `failed`, the
//!   schedule's webhook (if any) is told, and the change log says why.
//! - **Who acts**: the command runs as the schedule's creator (`KEEL_USER`), so what it changes
//!   is attributed to them.
//! - `{date}` in an argument becomes the firing's UTC date (`20261207`), `{datetime}` its time
//!   (`20261207T060000Z`): `--into sends_{date}` writes one table per week.

mod cron;
mod error;
mod exec;
mod runner;

pub use cron::CronSpec;
pub use error::ScheduleError;
pub use exec::{Executed, ProcessExecutor, RunTokens, expand};
pub use runner::{RetryPolicy, Scheduler, SchedulerConfig};

use keel_store::{NewSchedule, ScheduleRecord, ScheduleRun, Store};

pub type Result<T, E = ScheduleError> = std::result::Result<T, E>;

/// The first words a scheduled command may start with: jobs, not servers or interactive
/// commands.
pub const RUNNABLE: &[&str] = &["batch", "data", "monitor", "feedback", "ope", "deployment", "model"];

/// Schedule operations over a store.
#[derive(Clone)]
pub struct Schedules {
    store: Store,
}

impl Schedules {
    pub fn new(store: Store) -> Schedules {
        Schedules { store }
    }

    /// Creates a schedule after checking its name, cron expression and command; its first
    /// firing is the next one after now.
    pub async fn create(
        &self,
        name: &str,
        cron: &str,
        args: &[String],
        notify: Option<&str>,
        by: &str,
    ) -> Result<ScheduleRecord> {
        validate_name(name)?;
        let spec = CronSpec::parse(cron)?;
        validate_args(args)?;
        if let Some(url) = notify
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ScheduleError::Invalid(format!(
                "--notify {url} is not an http(s) URL; give the webhook's address"
            )));
        }
        let next = spec.next_after(now_ms())?;
        Ok(self
            .store
            .create_schedule(NewSchedule {
                name,
                cron: spec.expression(),
                args,
                notify,
                next_at_ms: next,
                by,
            })
            .await?)
    }

    pub async fn list(&self) -> Result<Vec<ScheduleRecord>> {
        Ok(self.store.list_schedules().await?)
    }

    pub async fn show(&self, name: &str) -> Result<ScheduleRecord> {
        Ok(self.store.get_schedule(name).await?)
    }

    pub async fn pause(&self, name: &str, by: &str) -> Result<()> {
        let s = self.store.get_schedule(name).await?;
        Ok(self
            .store
            .set_schedule_paused(name, true, s.next_at.timestamp_millis(), by)
            .await?)
    }

    /// Resumes a paused schedule from the next firing after now (what passed meanwhile is
    /// skipped).
    pub async fn resume(&self, name: &str, by: &str) -> Result<()> {
        let s = self.store.get_schedule(name).await?;
        let next = CronSpec::parse(&s.cron)?.next_after(now_ms())?;
        Ok(self.store.set_schedule_paused(name, false, next, by).await?)
    }

    pub async fn delete(&self, name: &str, by: &str) -> Result<()> {
        Ok(self.store.delete_schedule(name, by).await?)
    }

    /// Queues a run now; a serving runner takes it within a second. Returns its firing time.
    pub async fn run_now(&self, name: &str, by: &str) -> Result<i64> {
        Ok(self.store.queue_run(name, by).await?)
    }

    pub async fn runs(&self, name: &str, limit: i64) -> Result<Vec<ScheduleRun>> {
        self.store.get_schedule(name).await?;
        Ok(self.store.list_schedule_runs(name, limit).await?)
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ScheduleError::Invalid(format!(
            "schedule name '{}' must be 1 to 64 letters, digits, '-', '_' or '.'",
            name.escape_default()
        )))
    }
}

fn validate_args(args: &[String]) -> Result<()> {
    let Some(first) = args.first() else {
        return Err(ScheduleError::Invalid(
            "give the command to run after `--`, e.g. `-- batch decide promo --from customers --into sends_{date}`"
                .into(),
        ));
    };
    if !RUNNABLE.contains(&first.as_str()) {
        return Err(ScheduleError::Invalid(format!(
            "`keel {first}` cannot be scheduled; a schedule runs one of: {}",
            RUNNABLE.join(", ")
        )));
    }
    if args.iter().any(|a| a == "--token" || a.starts_with("--token=")) {
        return Err(ScheduleError::Invalid(
            "a schedule must not carry a token in its arguments (they are stored and shown); the command runs as the schedule's creator"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_that_are_not_jobs_or_carry_secrets_are_refused() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(validate_args(&args(&["batch", "score", "m", "--from", "t", "--into", "o"])).is_ok());
        assert!(validate_args(&args(&["serve"])).is_err());
        assert!(validate_args(&args(&[])).is_err());
        let e = validate_args(&args(&["data", "ls", "--token", "keel_x"])).expect_err("refused");
        assert!(e.to_string().contains("token"), "{e}");
        assert!(validate_name("weekly-send_1").is_ok());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("").is_err());
    }
}
