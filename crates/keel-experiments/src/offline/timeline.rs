//! A deployment over time, from its durable decision log (`GET /v1/deployments/{name}/timeline
//! ?bucket=...`, the charts of the console's deployment page): per bucket of time, each
//! variant's decisions, its share of the policy-driven decisions, the rewards those decisions
//! received and their reward rate (mean reward, as the report's `rate`), and the holdout group
//! beside them.
//!
//! A reward counts in the bucket of the decision it rewards (the rate of a bucket is that of the
//! decisions made in it, whenever their rewards came). The log is streamed: one event at a time,
//! holding only the buckets and the decisions still waiting for a reward (their id, bucket and
//! variant), never the log itself. With `bucket=auto` the buckets start at one second and
//! coarsen along a ladder of sizes (each a multiple of the one before, all aligned to the epoch)
//! whenever there are more than [`MAX_AUTO_BUCKETS`] of them, so merging is exact.
//!
//! The whole log is read (every revision); the revisions that started are listed with their
//! time, so a reader sees where a new revision (and a counter reset) began. A server follows
//! each log ([`Timelines`], in `timeline_follow.rs`): after the first read, only the bytes
//! appended since are read, and other bucket sizes are derived from a followed one.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{OfflineError, Result};
use crate::{DeploymentSpec, Event};

/// `bucket=auto` keeps at most this many buckets.
pub const MAX_AUTO_BUCKETS: usize = 120;
/// A fixed bucket size may make at most this many buckets.
pub const MAX_BUCKETS: usize = 10_000;

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// The sizes `auto` moves through; each divides the next.
const LADDER: [i64; 15] = [
    SECOND,
    5 * SECOND,
    10 * SECOND,
    30 * SECOND,
    MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    30 * MINUTE,
    HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    7 * DAY,
    28 * DAY,
];

/// How wide the buckets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketSize {
    /// Chosen from the data: at most [`MAX_AUTO_BUCKETS`].
    Auto,
    /// This many milliseconds (at least one second).
    Fixed(i64),
}

impl BucketSize {
    /// `auto`, or a whole number with a unit: `30s`, `5m`, `1h`, `1d` (at least one second).
    pub fn parse(text: &str) -> Result<BucketSize> {
        let t = text.trim();
        if t.is_empty() || t == "auto" {
            return Ok(BucketSize::Auto);
        }
        let bad = || OfflineError::InvalidArgument {
            name: "bucket",
            reason: format!(
                "{text:?} is not a bucket size: write auto, or a whole number with a unit s, m, h or d (e.g. 30s, 5m, 1h, 1d)"
            ),
        };
        let unit = t.chars().last().ok_or_else(bad)?;
        let ms = match unit {
            's' => SECOND,
            'm' => MINUTE,
            'h' => HOUR,
            'd' => DAY,
            _ => return Err(bad()),
        };
        let n: i64 = t[..t.len() - 1].parse().map_err(|_| bad())?;
        if n < 1 || n > 366 * DAY / ms {
            return Err(OfflineError::InvalidArgument {
                name: "bucket",
                reason: format!("{text:?} is out of range: a bucket is from 1s to 366d"),
            });
        }
        Ok(BucketSize::Fixed(n * ms))
    }
}

/// One group's figures in one bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    /// Decisions made in the bucket.
    pub decisions: u64,
    /// Of the bucket's policy-driven decisions (for a variant), or of all its decisions (for
    /// the holdout group); 0 in a bucket without any.
    pub share: f64,
    /// Rewards received (so far) by the bucket's decisions, defaults included.
    pub rewards: u64,
    pub reward_sum: f64,
    /// `reward_sum / rewards` (the conversion rate for binary rewards); `None` without rewards.
    pub rate: Option<f64>,
}

impl Counts {
    fn finish(&mut self, of: u64) {
        self.share = if of == 0 {
            0.0
        } else {
            self.decisions as f64 / of as f64
        };
        self.rate = (self.rewards > 0).then(|| self.reward_sum / self.rewards as f64);
    }

    fn merge(&mut self, o: &Counts) {
        self.decisions += o.decisions;
        self.rewards += o.rewards;
        self.reward_sum += o.reward_sum;
    }
}

/// One bucket of time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TimeBucket {
    /// Its start, ms since the epoch (a multiple of the bucket size).
    pub start_ms: i64,
    /// Policy-driven decisions (every variant).
    pub decisions: u64,
    /// One per variant, in the order of `Timeline::variants`.
    pub variants: Vec<Counts>,
    /// Decisions held back in the holdout (control) group.
    pub holdout: Counts,
}

/// A revision that started serving.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RevisionMark {
    pub at_ms: i64,
    pub revision: i64,
    /// Whether it reset the report's counters.
    pub reset: bool,
}

/// A deployment's decisions and rewards over time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Timeline {
    pub deployment: String,
    /// The width of every bucket, ms.
    pub bucket_ms: i64,
    /// The variants' names (the current spec's, by index in the log).
    pub variants: Vec<String>,
    /// Buckets with at least one decision, oldest first.
    pub buckets: Vec<TimeBucket>,
    /// Decisions and rewards read from the log, all groups.
    pub decisions: u64,
    pub rewards: u64,
    pub revisions: Vec<RevisionMark>,
}

/// One bucket while the log is read.
#[derive(Debug, Clone, Default)]
struct Row {
    variants: Vec<Counts>,
    holdout: Counts,
}

impl Row {
    fn group(&mut self, group: Option<usize>) -> &mut Counts {
        match group {
            None => &mut self.holdout,
            Some(v) => {
                if self.variants.len() <= v {
                    self.variants.resize(v + 1, Counts::default());
                }
                &mut self.variants[v]
            }
        }
    }

    fn merge(&mut self, o: &Row) {
        for (v, c) in o.variants.iter().enumerate() {
            self.group(Some(v)).merge(c);
        }
        self.holdout.merge(&o.holdout);
    }
}

/// The number of decisions waiting for a reward below which a timeline never prunes them.
const PRUNE_FROM: usize = 1 << 16;
/// How long past its window a decision stays waiting (a replica whose clock lags may still
/// accept its reward).
const PRUNE_GRACE_MS: i64 = 10 * 60 * 1000;

/// The fold over the log.
#[derive(Clone)]
struct Builder {
    size: BucketSize,
    bucket_ms: i64,
    /// Bucket index (start / bucket_ms) -> its figures.
    buckets: BTreeMap<i64, Row>,
    /// Decisions waiting for their reward: bucket index and group (`None`: the holdout).
    /// Under a spec without a default reward, those whose window has closed are dropped now
    /// and then ([`Builder::prune`]): no reward is ever logged for them.
    pending: HashMap<uuid::Uuid, (i64, Option<u32>)>,
    /// While the log's latest spec record names no default reward: the longest attribution
    /// window its spec records have named. `None` otherwise (a default reward is logged for
    /// every decision when its window closes, however late, so every one is kept until then).
    window_ms: Option<i64>,
    /// `pending`'s size at which it is pruned next.
    prune_at: usize,
    decisions: u64,
    rewards: u64,
    revisions: Vec<RevisionMark>,
    /// Every variant name the log's spec records named, in order of first appearance: a
    /// variant keeps its place in the chart when a revision adds or removes others.
    names: Vec<String>,
    /// The running revision's variant index -> its place in `names` (`None` until the log
    /// records a spec: logs written before spec records use the current spec's order).
    current: Option<Vec<usize>>,
}

impl Builder {
    fn new(size: BucketSize) -> Builder {
        Builder {
            size,
            bucket_ms: match size {
                BucketSize::Auto => LADDER[0],
                BucketSize::Fixed(ms) => ms,
            },
            buckets: BTreeMap::new(),
            pending: HashMap::new(),
            window_ms: None,
            prune_at: PRUNE_FROM,
            decisions: 0,
            rewards: 0,
            revisions: Vec::new(),
            names: Vec::new(),
            current: None,
        }
    }

    /// Where the running revision's variant `v` is charted.
    fn place(&self, v: usize) -> usize {
        self.current.as_ref().and_then(|m| m.get(v).copied()).unwrap_or(v)
    }

    fn event(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Revision { ts, rev, reset, .. } => self.revisions.push(RevisionMark {
                at_ms: ts,
                revision: rev,
                reset,
            }),
            Event::Spec { spec, .. } => {
                let window = i64::try_from(spec.reward.window_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
                self.window_ms = match spec.reward.default {
                    None => Some(self.window_ms.map_or(window, |w| w.max(window))),
                    Some(_) => None,
                };
                let mut map = Vec::with_capacity(spec.variants.len());
                for variant in &spec.variants {
                    let at = match self.names.iter().position(|n| *n == variant.name) {
                        Some(at) => at,
                        None => {
                            self.names.push(variant.name.clone());
                            self.names.len() - 1
                        }
                    };
                    map.push(at);
                }
                self.current = Some(map);
            }
            Event::Decision { ts, id, v, hold, .. } => {
                self.decisions += 1;
                let group = if hold { None } else { v.map(|v| self.place(v)) };
                let key = ts.div_euclid(self.bucket_ms);
                self.buckets.entry(key).or_default().group(group).decisions += 1;
                let group = group.and_then(|g| u32::try_from(g).ok());
                self.pending.insert(id, (key, group));
                if self.pending.len() >= self.prune_at {
                    self.prune(ts);
                }
                self.coarsen()?;
            }
            Event::Reward { id, r, .. } => {
                if let Some((key, group)) = self.pending.remove(&id) {
                    self.rewards += 1;
                    let c = self.buckets.entry(key).or_default().group(group.map(|g| g as usize));
                    c.rewards += 1;
                    c.reward_sum += r;
                }
            }
            Event::Pause { .. } | Event::CanaryStep { .. } | Event::Output { .. } | Event::Metrics { .. } => {}
        }
        Ok(())
    }

    /// Drops the decisions whose window closed before `now_ms` (their whole bucket ended more
    /// than the longest window, and [`PRUNE_GRACE_MS`] for replicas' clocks, ago: feedback for
    /// them is refused, and the spec logs no default reward), and sets the next pruning at
    /// twice what is left, so the work stays proportional to the decisions read.
    fn prune(&mut self, now_ms: i64) {
        if let Some(window) = self.window_ms {
            let (bucket, keep) = (self.bucket_ms, window.saturating_add(PRUNE_GRACE_MS));
            self.pending
                .retain(|_, (key, _)| key.saturating_add(1).saturating_mul(bucket).saturating_add(keep) >= now_ms);
        }
        self.prune_at = self.pending.len().saturating_mul(2).max(PRUNE_FROM);
    }

    /// Keeps the number of buckets within bounds: `auto` moves up the ladder, a fixed size
    /// that makes too many is refused.
    fn coarsen(&mut self) -> Result<()> {
        let limit = match self.size {
            BucketSize::Auto => MAX_AUTO_BUCKETS,
            BucketSize::Fixed(_) => MAX_BUCKETS,
        };
        while self.span_buckets() > limit {
            let next = match self.size {
                BucketSize::Auto => LADDER.iter().copied().find(|s| *s > self.bucket_ms),
                BucketSize::Fixed(_) => None,
            };
            let Some(next) = next else {
                return Err(OfflineError::InvalidArgument {
                    name: "bucket",
                    reason: format!(
                        "of {} s makes more than {limit} buckets over this log: choose a larger bucket",
                        self.bucket_ms / SECOND
                    ),
                });
            };
            self.rebucket(next);
        }
        Ok(())
    }

    /// Merges the buckets into buckets of `to_ms` (a multiple of the present size), and
    /// re-keys the decisions waiting for a reward: exact, as the keys are aligned to the epoch.
    fn rebucket(&mut self, to_ms: i64) {
        let factor = to_ms / self.bucket_ms;
        if factor > 1 {
            for (key, row) in std::mem::take(&mut self.buckets) {
                self.buckets.entry(key.div_euclid(factor)).or_default().merge(&row);
            }
            for (key, _) in self.pending.values_mut() {
                *key = key.div_euclid(factor);
            }
        }
        self.bucket_ms = to_ms;
    }

    /// This fold at another bucket size, when it can be had from this one exactly (what a
    /// fresh read at `size` would hold): a fixed size that is a multiple of this one's, or
    /// `auto` from a ladder size it starts from or has outgrown. `None` otherwise; an error
    /// when `size` makes too many buckets (as a fresh read would say).
    fn derive(&self, size: BucketSize) -> Option<Result<Builder>> {
        let to = match size {
            BucketSize::Fixed(ms) if ms >= self.bucket_ms && ms % self.bucket_ms == 0 => ms,
            BucketSize::Auto
                if LADDER.contains(&self.bucket_ms)
                    && (self.bucket_ms == LADDER[0] || self.span_buckets() > MAX_AUTO_BUCKETS) =>
            {
                self.bucket_ms
            }
            BucketSize::Fixed(_) | BucketSize::Auto => return None,
        };
        let mut b = self.clone();
        b.size = size;
        b.rebucket(to);
        Some(b.coarsen().map(|()| b))
    }

    /// How many buckets lie between the first and the last (a chart spans them all).
    fn span_buckets(&self) -> usize {
        match (self.buckets.first_key_value(), self.buckets.last_key_value()) {
            (Some((a, _)), Some((b, _))) => usize::try_from(b - a).unwrap_or(usize::MAX).saturating_add(1),
            _ => 0,
        }
    }

    fn finish(&self, deployment: &str, spec: &DeploymentSpec) -> Timeline {
        let seen = self.buckets.values().map(|r| r.variants.len()).max().unwrap_or(0);
        let mut names: Vec<String> = if self.names.is_empty() {
            spec.variants.iter().map(|v| v.name.clone()).collect()
        } else {
            self.names.clone()
        };
        let n = seen.max(names.len());
        while names.len() < n {
            names.push(format!("variant #{}", names.len()));
        }
        let buckets = self
            .buckets
            .iter()
            .map(|(key, row)| {
                let mut row = row.clone();
                row.variants.resize(n, Counts::default());
                let treated: u64 = row.variants.iter().map(|c| c.decisions).sum();
                for c in &mut row.variants {
                    c.finish(treated);
                }
                row.holdout.finish(treated + row.holdout.decisions);
                TimeBucket {
                    start_ms: key * self.bucket_ms,
                    decisions: treated,
                    variants: row.variants,
                    holdout: row.holdout,
                }
            })
            .collect();
        Timeline {
            deployment: deployment.to_owned(),
            bucket_ms: self.bucket_ms,
            variants: names,
            buckets,
            decisions: self.decisions,
            rewards: self.rewards,
            revisions: self.revisions.clone(),
        }
    }
}

/// Reads the folder log `dir` from after record `after` into `b`; what was read (an error if
/// the log is damaged).
fn read_file_log(dir: &Path, after: u64, b: &mut Builder) -> Result<crate::logfile::LogRead> {
    let mut failed = None;
    let read = crate::logfile::read_log(dir, after, |e| {
        b.event(e).map_err(|err| {
            let stop = crate::DeploymentError::Log(err.to_string());
            failed = Some(err);
            stop
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let read = read?;
    if let Some((path, d)) = read.damage() {
        return Err(crate::logfile::damaged(path, d).into());
    }
    Ok(read)
}

/// The timeline of the deployment whose decision log is the folder `dir` (every segment and
/// the active file; a record being appended while this reads is left out as a torn tail). File
/// work: call it on a blocking thread.
pub fn timeline(dir: &Path, deployment: &str, spec: &DeploymentSpec, size: BucketSize) -> Result<Timeline> {
    let mut b = Builder::new(size);
    read_file_log(dir, 0, &mut b)?;
    Ok(b.finish(deployment, spec))
}

#[path = "timeline_follow.rs"]
mod follow;

pub use follow::{FOLLOWED, Timelines, of_running};

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
