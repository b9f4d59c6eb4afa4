//! Batch decisions (`keel batch decide`): many units under one lock and one durable wait, each
//! decision logged exactly like an online one and tagged with its run, and the decisions of a
//! run read back from the log so a run started again never decides a unit twice.

use crate::Result;
use crate::engine::{Deployment, now_ms};
use crate::error::lock_err;
use crate::event::Event;
use crate::logfile::{damaged, read_log};
use crate::notice::Notice;
use crate::outcome::DecisionOut;

/// One row of a batch decide: the unit decided for and its context.
#[derive(Debug, Clone, Copy)]
pub struct UnitContext<'a> {
    pub unit: &'a str,
    pub context: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// A decision a batch run made, read back from the log (so a run that is started again
/// does not decide a unit twice).
#[derive(Debug, Clone, PartialEq)]
pub struct RunDecision {
    pub unit: String,
    pub decision: DecisionOut,
}

impl Deployment {
    /// Decides for many units at once (batch jobs): one lock and one durability wait for the
    /// whole slice, each decision logged exactly as an online one (same ids, windows, control
    /// group and sticky assignment), tagged with `run`. A row whose context is wrong is
    /// refused on its own (its result is the error) and logs nothing; a log failure fails the
    /// whole call, and nothing of it is acknowledged.
    pub async fn decide_many(
        &self,
        rows: &[UnitContext<'_>],
        run: Option<&str>,
    ) -> Result<(Vec<Result<DecisionOut>>, Vec<Notice>)> {
        let (results, notices, last) = self.decide_many_now(rows, run)?;
        self.wait_logged(last).await?;
        Ok((results, notices))
    }

    /// The first half of [`Deployment::decide_many`]: decides the rows in the order given under
    /// one lock and hands the events to the log's writer, which starts making them durable at
    /// once. Nothing is acknowledged until [`Deployment::wait_logged`] of the returned sequence
    /// number has returned. Two calls decide in the order they take the lock, so a caller that
    /// wants its chunks decided in order calls this in order (the policy's random draws then
    /// follow the input's order, and a re-run of the same input decides the same way).
    pub(crate) fn decide_many_now(
        &self,
        rows: &[UnitContext<'_>],
        run: Option<&str>,
    ) -> Result<(Vec<Result<DecisionOut>>, Vec<Notice>, u64)> {
        self.serving()?;
        let (results, last, notices) = {
            let mut inner = self.inner.lock().map_err(|_| lock_err())?;
            let now = now_ms();
            let mut last = 0;
            let mut results = Vec::with_capacity(rows.len());
            for row in rows {
                match self.decide_locked(&mut inner, Some(row.unit), row.context, run, None, now) {
                    Ok((out, seq)) => {
                        last = seq;
                        results.push(Ok(out));
                    }
                    Err(e) if e.kind().is_server_fault() => return Err(e),
                    Err(e) => results.push(Err(e)),
                }
            }
            (results, last, std::mem::take(&mut inner.notices))
        };
        if last > 0 {
            self.wal.notify();
        }
        Ok((results, notices, last))
    }

    /// Waits until every event up to `last` (from [`Deployment::decide_many_now`]) is durable.
    pub(crate) async fn wait_logged(&self, last: u64) -> Result<()> {
        if last > 0 {
            self.wal.wait_durable(last).await?;
        }
        Ok(())
    }

    /// Every decision the batch run `run` logged, in log order, read from the log: the file on
    /// disk, or the rows in PostgreSQL on a PostgreSQL store (what a writer is appending
    /// meanwhile may be left out; a damaged log is an error).
    pub async fn run_decisions(self: &std::sync::Arc<Self>, run: &str) -> Result<Vec<RunDecision>> {
        let variants: Vec<String> = self.with_inner(|i| i.spec.variants.iter().map(|v| v.name.clone()).collect())?;
        let mut scan = RunScan {
            deployment: &self.name,
            run,
            variants,
            revision: 0,
            found: Vec::new(),
        };
        if let Some(pg) = self.wal.pg() {
            crate::pglog::archive::read_history(pg.pool(), &self.dir, &self.name, 0, |event| {
                scan.event(event);
                Ok::<_, crate::DeploymentError>(true)
            })
            .await?;
            return Ok(scan.found);
        }
        let (me, run) = (self.clone(), run.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut scan = RunScan {
                deployment: &me.name,
                run: &run,
                variants: scan.variants,
                revision: 0,
                found: Vec::new(),
            };
            let read = read_log(&me.dir, 0, |event| {
                scan.event(event);
                Ok(())
            })?;
            if let Some((path, damage)) = read.damage() {
                return Err(damaged(path, damage));
            }
            Ok(scan.found)
        })
        .await
        .map_err(|e| crate::DeploymentError::Log(format!("reading the decision log stopped: {e}")))?
    }
}

/// The decisions of one batch run, gathered from a log read in order.
struct RunScan<'a> {
    deployment: &'a str,
    run: &'a str,
    /// The variants of the spec in force (a decision's variant index is one of them).
    variants: Vec<String>,
    revision: i64,
    found: Vec<RunDecision>,
}

impl RunScan<'_> {
    fn event(&mut self, event: Event) {
        match event {
            Event::Revision { rev, .. } => self.revision = rev,
            // Variant indices are those of the spec in force when the decision was made.
            Event::Spec { spec, .. } => self.variants = spec.variants.iter().map(|v| v.name.clone()).collect(),
            Event::Decision {
                id,
                unit: Some(unit),
                run: Some(r),
                v,
                p,
                pv,
                hold,
                ..
            } if r == self.run => self.found.push(RunDecision {
                unit,
                decision: DecisionOut {
                    decision_id: id.to_string(),
                    deployment: self.deployment.to_owned(),
                    variant: v.map_or_else(String::new, |v| {
                        self.variants.get(v).cloned().unwrap_or_else(|| format!("#{v}"))
                    }),
                    no_action: v.is_none(),
                    propensity: p,
                    policy_version: pv,
                    revision: self.revision,
                    control: hold,
                    prediction: None,
                    prediction_id: None,
                    fallback: None,
                    response: None,
                },
            }),
            _ => {}
        }
    }
}
