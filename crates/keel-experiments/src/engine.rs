//! One running deployment: its policy state, the decisions waiting for a reward, the
//! counters behind its report, and its durable log.
//!
//! Every state change is an event appended to the log under the same lock that applies it,
//! so replaying the log rebuilds exactly the state the process had: after a restart or a
//! `kill -9`, no acknowledged decision or reward is lost.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use crate::error::lock_err;
use crate::event::Event;
use crate::log::Log;
use crate::logfile::{damaged, read_log};
use crate::notice::Notice;
use crate::outcome::DecisionOut;
use crate::spec::DeploymentSpec;
use crate::state::{Inner, compatible};
use crate::transition::carryable;
use crate::wal::{LogOptions, Wal};
use crate::{DeploymentError, Result};

pub(crate) struct Replayed {
    inner: Inner,
    /// Valid bytes of the active file (where appending resumes).
    good_len: u64,
    /// Sequence number of the active file's first record, if it has one.
    active_first: Option<u64>,
    last_rev: Option<i64>,
    /// Records replayed (after the snapshot, if one was used).
    events: u64,
    /// The snapshot the replay started from.
    snapshot: Option<u64>,
    /// The deployment's folder.
    dir: PathBuf,
}

/// A running deployment.
pub struct Deployment {
    pub name: String,
    pub(crate) inner: Arc<Mutex<Inner>>,
    /// The durable log: local files, or PostgreSQL (replicas).
    pub(crate) wal: Log,
    /// The deployment's folder: active log file, segments, snapshots.
    pub(crate) dir: PathBuf,
    pub(crate) path: PathBuf,
    pub(crate) options: LogOptions,
    /// The last snapshot taken (or restored): sequence number and when.
    pub(crate) snapshot: Mutex<SnapshotMark>,
    pub(crate) opened: Opened,
}

/// How a deployment was opened: from which snapshot, and how many log records were replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Opened {
    /// The sequence number of the snapshot the state was restored from.
    pub snapshot: Option<u64>,
    /// Log records replayed after it.
    pub replayed: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct SnapshotMark {
    pub(crate) seq: u64,
    pub(crate) at: std::time::Instant,
    pub(crate) running: bool,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("name", &self.name)
            .field("log", &self.path)
            .finish()
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Deployment {
    /// Rebuilds a deployment's state from its log without writing anything (the CLI report
    /// uses this while a server may be appending to the same log).
    pub(crate) fn replay(
        name: &str,
        spec: &DeploymentSpec,
        revision: i64,
        dir: &Path,
        read_only: bool,
    ) -> Result<Replayed> {
        let dir = dir.join(name);
        let mut below = u64::MAX;
        loop {
            let mut inner = Inner::new(spec.clone(), revision)?;
            let restored = crate::snapshot::restore(&dir, spec, &mut inner, below, read_only)?;
            let (mut last_rev, after) = match &restored {
                Some(s) => (s.last_rev, s.seq),
                None => (None, 0),
            };
            let read = read_log(&dir, after, |event| {
                if let Event::Revision { rev, reset, .. } = &event {
                    last_rev = Some(*rev);
                    if *reset {
                        let seq = inner.seq;
                        inner = Inner::new(spec.clone(), *rev)?;
                        inner.seq = seq;
                    }
                }
                if matches!(event, Event::CanaryStep { .. }) {
                    inner.counters.reset_all_steps();
                }
                inner.apply(&event)
            })?;
            if after > 0 && read.damage().is_none() && read.last_seq.unwrap_or(0) < after {
                // The log ends before the snapshot (a repair cut it since): an earlier one.
                tracing::warn!(
                    deployment = name,
                    snapshot = after,
                    log_end = read.last_seq,
                    "a snapshot is ahead of the log; using an earlier one"
                );
                below = after - 1;
                continue;
            }
            return Deployment::replayed(name, dir, inner, last_rev, read, restored);
        }
    }

    fn replayed(
        name: &str,
        dir: PathBuf,
        inner: Inner,
        last_rev: Option<i64>,
        read: crate::logfile::LogRead,
        restored: Option<crate::snapshot::Loaded>,
    ) -> Result<Replayed> {
        if let Some((path, damage)) = read.damage() {
            return Err(damaged(path, damage));
        }
        let active = read.active().cloned().unwrap_or_default();
        if let Some(tail) = &active.torn_tail {
            tracing::warn!(deployment = name, path = %active.path.display(), offset = tail.offset, reason = %tail.reason, "the decision log ends in a torn record (never acknowledged); it is left out");
        }
        if let Some(s) = &restored {
            tracing::info!(deployment = name, snapshot = %s.path.display(), seq = s.seq, replayed = read.applied, "state restored from a snapshot");
        }
        Ok(Replayed {
            inner,
            good_len: active.good_bytes,
            active_first: active.first_seq,
            last_rev,
            events: read.applied,
            snapshot: restored.map(|s| s.seq),
            dir,
        })
    }

    /// The report of a deployment rebuilt from its log, read-only.
    pub fn offline_report(name: &str, spec: &DeploymentSpec, revision: i64, dir: &Path) -> Result<crate::Report> {
        let r = Deployment::replay(name, spec, revision, dir, true)?;
        let waiting = r.inner.waiting.unrewarded();
        Ok(crate::report::build(name, &r.inner, waiting))
    }

    /// Opens (or recovers) a deployment from its log, starting `revision` of `spec`:
    /// restores the newest usable snapshot and replays the records after it.
    pub fn open(
        name: &str,
        spec: DeploymentSpec,
        revision: i64,
        dir: &Path,
        options: impl Into<LogOptions>,
    ) -> Result<Deployment> {
        let options = options.into();
        // The writer lock first, so no other process appends while this one reads.
        let lock = crate::logfile::lock(&dir.join(name))?;
        let Replayed {
            inner,
            good_len,
            active_first,
            last_rev,
            events,
            snapshot,
            dir,
        } = Deployment::replay(name, &spec, revision, dir, false)?;
        drop(lock);
        let replayed = events;
        let wal = Log::File(Wal::open(&dir, good_len, inner.seq, active_first, &options)?);
        let path = crate::logfile::active_path(&dir);
        let experiment = Deployment {
            name: name.to_string(),
            inner: Arc::new(Mutex::new(inner)),
            wal,
            dir,
            path,
            options,
            snapshot: Mutex::new(SnapshotMark {
                seq: snapshot.unwrap_or(0),
                at: std::time::Instant::now(),
                running: false,
            }),
            opened: Opened { snapshot, replayed },
        };
        if last_rev != Some(revision) {
            let mut inner = experiment.inner.lock().map_err(|_| lock_err())?;
            let same = compatible(&inner.spec, &spec);
            let reset = last_rev.is_some() && !same && !carryable(&inner.spec, &spec);
            inner.revision = revision;
            let seq = inner.next_seq();
            let event = Event::Revision {
                seq,
                ts: now_ms(),
                rev: revision,
                reset,
            };
            inner.commit(&experiment.wal, &event)?;
            // The spec in force from here: applying it keeps, carries or restarts the state,
            // live now and at the same place when the log is replayed.
            let seq = inner.next_seq();
            let event = Event::Spec {
                seq,
                ts: now_ms(),
                spec: Box::new(spec),
            };
            inner.commit(&experiment.wal, &event)?;
        }
        {
            // Re-seed so decisions after a restart do not repeat those before it.
            let mut inner = experiment.inner.lock().map_err(|_| lock_err())?;
            let seed = inner.spec.seed ^ inner.seq.rotate_left(17);
            inner.rng = ChaCha8Rng::seed_from_u64(seed);
        }
        experiment.wal.notify();
        tracing::info!(deployment = name, revision, replayed, from_snapshot = ?snapshot, "deployment ready");
        Ok(experiment)
    }

    /// How this deployment was opened (snapshot used, records replayed).
    pub fn opened(&self) -> Opened {
        self.opened
    }

    pub fn log_path(&self) -> &Path {
        &self.path
    }

    /// An error once the log writer has failed: the state in memory may then hold events that
    /// never reached the disk, so it answers nothing until the deployment is opened again.
    pub fn serving(&self) -> Result<()> {
        match self.wal.failure() {
            None => Ok(()),
            Some(failure) => Err(DeploymentError::Log(format!(
                "deployment '{}' stopped serving: {failure}",
                self.name
            ))),
        }
    }

    /// Why the deployment stopped serving, if its log writer failed.
    pub fn failure(&self) -> Option<String> {
        self.serving().err().map(|e| e.to_string())
    }

    /// Runs `f` on the locked state (reports, tests).
    pub(crate) fn with_inner<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> Result<T> {
        let mut inner = self.inner.lock().map_err(|_| lock_err())?;
        Ok(f(&mut inner))
    }

    /// Chooses a variant for a unit, logs the decision durably, and returns it.
    pub async fn decide(
        &self,
        unit: Option<&str>,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<(DecisionOut, Vec<Notice>)> {
        self.decide_among(unit, context, None).await
    }

    /// Decides among the `eligible` variants only (by name; `None`: all). The policy's
    /// distribution is restricted to them and renormalised, so the logged propensity and
    /// distribution are over that set (one eligible variant: propensity 1); when the policy
    /// gives none of them any probability, the choice is uniform over them. A named-variant
    /// control group holds a unit back only when the control variant is eligible for it; a
    /// no-action control group holds it back whatever its eligible variants.
    pub async fn decide_among(
        &self,
        unit: Option<&str>,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
        eligible: Option<&[String]>,
    ) -> Result<(DecisionOut, Vec<Notice>)> {
        self.serving()?;
        let (out, seq, notices) = {
            let mut inner = self.inner.lock().map_err(|_| lock_err())?;
            let mask = match eligible {
                Some(names) => Some(inner.spec.eligible_mask(&self.name, names)?),
                None => None,
            };
            let (out, seq) = self.decide_locked(&mut inner, unit, context, None, mask.as_deref(), now_ms())?;
            (out, seq, std::mem::take(&mut inner.notices))
        };
        self.wal.notify();
        self.wal.wait_durable(seq).await?;
        Ok((out, notices))
    }

    /// The choice and its log record, under the deployment's lock: the distribution after
    /// pauses and the canary ramp, the control group, the sticky or random draw, the event.
    /// Returns the decision and its sequence number (durable once the writer says so).
    pub(crate) fn decide_locked(
        &self,
        inner: &mut Inner,
        unit: Option<&str>,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
        run: Option<&str>,
        eligible: Option<&[bool]>,
        now: i64,
    ) -> Result<(DecisionOut, u64)> {
        let x = inner.spec.encode_context(context)?;
        let arms = inner.spec.arms();
        // The eligible variants as a mask over the arms: the policy decides among them.
        let arm_mask: Option<Vec<bool>> =
            eligible.map(|m| arms.iter().map(|v| m.get(*v).copied().unwrap_or(false)).collect());
        let mut probs = inner.arm_distribution((!x.is_empty()).then_some(x.as_slice()), arm_mask.as_deref())?;
        if let Some(mask) = eligible {
            crate::state::restrict(&mut probs, &arms, mask);
        }
        let crate::control::Assigned {
            variant,
            propensity,
            hold,
        } = {
            let spec = &inner.spec;
            let draw = crate::control::Draw {
                name: &self.name,
                unit,
                probs: &probs,
                arms: &arms,
                eligible,
                control: spec.control.as_ref(),
                control_variant: spec
                    .control
                    .as_ref()
                    .and_then(|c| c.variant_name())
                    .and_then(|v| spec.variant_index(v)),
                sticky_pick: matches!(spec.policy, keel_bandit::PolicyConfig::FixedWeights { .. }),
            };
            crate::control::assign(&mut inner.rng, &draw)
        };
        let id = Uuid::now_v7();
        let seq = inner.next_seq();
        let pv = inner.policy.updates();
        let event = Event::Decision {
            seq,
            ts: now,
            id,
            unit: unit.map(str::to_string),
            run: run.map(str::to_string),
            el: eligible.map_or_else(Vec::new, |m| (0..m.len()).filter(|v| m[*v]).collect()),
            v: variant,
            p: propensity,
            pv,
            hold,
            ctx: if inner.spec.context.is_empty() {
                context.map(|c| serde_json::Value::Object(c.clone()))
            } else {
                None
            },
            x,
            probs,
            pred: None,
            shadow: None,
        };
        // File log: the sequence number; PostgreSQL: the ticket to wait on.
        let seq = inner.commit(&self.wal, &event)?;
        let out = DecisionOut {
            decision_id: id.to_string(),
            deployment: self.name.clone(),
            variant: variant.map_or_else(String::new, |v| inner.spec.variants[v].name.clone()),
            no_action: variant.is_none(),
            propensity,
            policy_version: pv,
            revision: inner.revision,
            control: hold,
            prediction: None,
            prediction_id: None,
            fallback: None,
            response: None,
        };
        Ok((out, seq))
    }

    /// Logs a model variant's answer to a decision (no durability wait: it changes no state).
    pub fn log_output(&self, id: &str, variant: usize, shadow: bool, pred: serde_json::Value) -> Result<()> {
        let id = Uuid::parse_str(id).map_err(|_| DeploymentError::InvalidRequest(format!("bad decision id {id}")))?;
        {
            let mut inner = self.inner.lock().map_err(|_| lock_err())?;
            let seq = inner.next_seq();
            let event = Event::Output {
                seq,
                ts: now_ms(),
                id,
                v: variant,
                shadow,
                pred,
            };
            inner.commit(&self.wal, &event)?;
        }
        self.wal.notify();
        Ok(())
    }

    /// What the policy would do now for this context, among the `eligible` variants (`None`:
    /// all): each serving variant with its probability (pauses and the canary ramp applied,
    /// not the control group), and the policy version. Nothing is logged or drawn.
    pub fn distribution(
        &self,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
        eligible: Option<&[String]>,
    ) -> Result<(Vec<(String, f64)>, u64)> {
        let mut inner = self.inner.lock().map_err(|_| lock_err())?;
        let x = inner.spec.encode_context(context)?;
        let arms = inner.spec.arms();
        let mask = match eligible {
            Some(names) => Some(inner.spec.eligible_mask(&self.name, names)?),
            None => None,
        };
        let arm_mask: Option<Vec<bool>> = mask.as_ref().map(|m| arms.iter().map(|v| m[*v]).collect());
        let mut probs = inner.arm_distribution((!x.is_empty()).then_some(x.as_slice()), arm_mask.as_deref())?;
        if let Some(mask) = &mask {
            crate::state::restrict(&mut probs, &arms, mask);
        }
        let named = arms
            .iter()
            .zip(probs)
            .map(|(v, p)| (inner.spec.variants[*v].name.clone(), p))
            .collect();
        Ok((named, inner.policy.updates()))
    }

    /// The variant index of a name.
    pub fn variant_index(&self, name: &str) -> Result<Option<usize>> {
        self.with_inner(|i| i.spec.variant_index(name))
    }

    /// The names of the metrics the deployment declares besides its decision metric.
    pub fn metric_names(&self) -> Result<Vec<String>> {
        self.with_inner(|i| i.spec.metrics.iter().map(|m| m.name.clone()).collect())
    }

    /// Decisions inside their attribution window that have no reward yet.
    pub fn waiting(&self) -> Result<usize> {
        self.serving()?;
        self.with_inner(|i| i.waiting.unrewarded())
    }

    /// Stops the log writer after flushing it, then snapshots the state (so the next start,
    /// or the next revision, replays nothing), unless the writer failed.
    pub fn close(&self) {
        self.wal.close();
        if self.wal.failure().is_some() || self.wal.pg().is_some() {
            // PostgreSQL: the periodic snapshots are there; nothing more to write at close.
            return;
        }
        let Ok(mark) = self.snapshot.lock().map(|m| *m) else {
            return;
        };
        let encoded = match self.inner.lock() {
            Ok(inner) if inner.seq != mark.seq && !mark.running && inner.seq <= self.wal.durable_seq() => {
                crate::snapshot::encode(&inner, Some(inner.revision), now_ms())
            }
            _ => return,
        };
        match encoded.and_then(|(seq, bytes)| crate::snapshot::write(&self.dir, seq, &bytes).map(|p| (seq, p))) {
            Ok((seq, path)) => {
                tracing::info!(deployment = %self.name, seq, path = %path.display(), "snapshot written at close");
                if let Ok(mut m) = self.snapshot.lock() {
                    m.seq = seq;
                }
            }
            Err(e) => {
                tracing::warn!(deployment = %self.name, error = %e, "no snapshot at close; the next start replays the log")
            }
        }
    }
}

pub(crate) fn uuid_ms(id: &Uuid) -> Option<i64> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    Some(secs as i64 * 1000 + i64::from(nanos / 1_000_000))
}

pub(crate) fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
}
