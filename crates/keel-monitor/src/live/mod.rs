//! Live monitoring of a serving deployment: a reference profile held in memory, data-quality
//! counters updated on every row, and drift over a sliding window of recent rows.
//!
//! The window is `window_ms` long and slides by `step_ms`: rows land in one bucket per step,
//! the window keeps a uniform sample of at most `max_rows` of its rows however they are spread
//! over the buckets ([`window`]), and an evaluation compares that sample with the reference,
//! using the same per-column tests as [`crate::drift_files`]. Memory is bounded by `max_rows`
//! whatever the traffic. The model's scores are watched too, one track per model (variant): each
//! track compares its window with the model's scores on the reference sample when the caller
//! could score it ([`LiveMonitor::score_track`]), else with the first window that held
//! `min_rows` scores.
//!
//! Updating (`observe_row`) is cheap and allocation-free for numeric columns; evaluating
//! ([`Evaluation::run`]) is CPU work for a blocking thread, done outside any lock.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::Result;
use crate::read::{self, CategoryCounts, NumericValues};
use crate::report::{ColumnDrift, DriftReport};
use crate::{DriftOptions, column};

mod reference;
#[cfg(test)]
mod tests;
mod window;

use reference::RefColumn;
pub use reference::{Reference, sample_batches};
use window::{Buf, Window};

/// Relative slack of the reference range (float32 keeps about 7 significant digits).
const F32_SLACK: f64 = 1e-6;

/// The column name under which a model's score is reported (a deployment whose variants run
/// several models names each track `prediction[VARIANT]`).
pub const PREDICTION: &str = "prediction";

/// One value of a served row, in reference column order.
#[derive(Debug, Clone, Copy)]
pub enum Observed<'a> {
    /// The request did not carry the column, or carried null/NaN.
    Missing,
    Number(f64),
    Text(&'a str),
}

/// Window, step and sample sizes of a live monitor.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub window_ms: i64,
    pub step_ms: i64,
    /// Rows a window keeps at most (a uniform sample of the rows seen).
    pub max_rows: usize,
    /// Fewer rows than this in the window: no drift figure (too little to say anything).
    pub min_rows: usize,
    pub drift: DriftOptions,
    pub seed: u64,
}

/// Data-quality counts of one column since the monitor started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QualityCounts {
    /// Null or NaN, or the request did not carry the column.
    pub missing: u64,
    /// A number outside the reference's [min, max] (infinities included).
    pub out_of_range: u64,
    /// A category the reference never saw.
    pub new_category: u64,
    /// A value of the wrong kind (text where the reference has numbers).
    pub wrong_type: u64,
}

impl QualityCounts {
    /// `(kind, count)` pairs, for metrics.
    pub fn kinds(&self) -> [(&'static str, u64); 4] {
        [
            ("missing", self.missing),
            ("out_of_range", self.out_of_range),
            ("new_category", self.new_category),
            ("wrong_type", self.wrong_type),
        ]
    }
}

/// What a score track's windows are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// The model's scores on the reference sample.
    Reference,
    /// The first window that held `min_rows` scores (the reference could not be scored).
    FirstWindow,
}

/// The scores of one model (a variant's), watched against their baseline.
#[derive(Debug)]
struct ScoreTrack {
    name: String,
    kind: Baseline,
    baseline: Option<Arc<Vec<f64>>>,
}

/// The live monitor of one deployment revision.
#[derive(Debug)]
pub struct LiveMonitor {
    reference: Arc<Reference>,
    options: LiveOptions,
    window: Window,
    quality: Vec<QualityCounts>,
    rows_seen: u64,
    rng: ChaCha8Rng,
    tracks: Vec<ScoreTrack>,
    next_eval_ms: Option<i64>,
}

/// What one evaluation found.
#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    /// When the evaluation ran (ms since the epoch).
    pub at_ms: i64,
    pub window_seconds: f64,
    /// Rows seen in the window, and rows of the sample compared.
    pub window_rows_seen: u64,
    pub window_rows_compared: u64,
    pub features: DriftReport,
    /// Each score track's drift against its baseline (a track whose baseline is its first
    /// window has none until a later window).
    pub predictions: Vec<PredictionDrift>,
}

/// The drift of one score track.
#[derive(Debug, Clone, Serialize)]
pub struct PredictionDrift {
    #[serde(flatten)]
    pub drift: ColumnDrift,
    pub baseline: Baseline,
}

impl LiveReport {
    /// Per column (and score track, [`PREDICTION`]), a drift figure that grows with drift: the distance for
    /// distance tests, `1 - p` for p-value tests (so "above 0.95" reads "p below 0.05").
    pub fn signals(&self) -> Vec<(String, f64)> {
        self.features
            .columns
            .iter()
            .chain(self.predictions.iter().map(|p| &p.drift))
            .map(|c| {
                let v = if c.method.is_p_value() { 1.0 - c.score } else { c.score };
                (c.name.clone(), v)
            })
            .collect()
    }
}

/// A score track's window and the baseline it is compared with.
#[derive(Debug)]
struct DueTrack {
    name: String,
    kind: Baseline,
    baseline: Arc<Vec<f64>>,
    window: Vec<f64>,
}

/// Samples taken out of the window, to compare outside the monitor's lock.
#[derive(Debug)]
pub struct Evaluation {
    at_ms: i64,
    window_ms: i64,
    reference: Arc<Reference>,
    current: Vec<Buf>,
    rows_seen: u64,
    rows_kept: u64,
    /// Per track due: its window against its baseline.
    scores: Vec<DueTrack>,
    options: DriftOptions,
}

impl LiveMonitor {
    pub fn new(reference: Arc<Reference>, options: LiveOptions) -> LiveMonitor {
        let n = reference.names.len();
        let template = reference
            .columns
            .iter()
            .map(|c| match c {
                RefColumn::Numeric { .. } => Buf::Num(Vec::new()),
                RefColumn::Categorical { .. } => Buf::Cat(Vec::new()),
            })
            .collect();
        LiveMonitor {
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            window: Window::new(options.window_ms, options.step_ms, options.max_rows, template),
            reference,
            options,
            quality: vec![QualityCounts::default(); n],
            rows_seen: 0,
            tracks: Vec::new(),
            next_eval_ms: None,
        }
    }

    /// The track of scores called `name` (created on first use): its index, for
    /// [`LiveMonitor::observe_row`]. `reference_scores`, the model's scores on the reference
    /// sample, are its baseline when given (non-finite values are left out); without them,
    /// or when none is finite, the first window holding `min_rows` scores is.
    pub fn score_track(&mut self, name: &str, reference_scores: Option<Vec<f64>>) -> usize {
        if let Some(i) = self.tracks.iter().position(|t| t.name == name) {
            return i;
        }
        let baseline = reference_scores
            .map(|v| v.into_iter().filter(|s| s.is_finite()).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .map(Arc::new);
        self.tracks.push(ScoreTrack {
            name: name.to_owned(),
            kind: if baseline.is_some() {
                Baseline::Reference
            } else {
                Baseline::FirstWindow
            },
            baseline,
        });
        self.tracks.len() - 1
    }

    /// Each score track's name, the kind of its baseline and how many scores it holds
    /// (`None` while a first-window baseline is still to come).
    pub fn score_tracks(&self) -> Vec<(String, Baseline, Option<usize>)> {
        self.tracks
            .iter()
            .map(|t| (t.name.clone(), t.kind, t.baseline.as_ref().map(|b| b.len())))
            .collect()
    }

    pub fn reference(&self) -> &Arc<Reference> {
        &self.reference
    }

    /// Counts one served row's data quality and offers it to the window's sample. `values`
    /// come in the reference's column order; `score` is the model's score for the row with its
    /// track ([`LiveMonitor::score_track`]).
    pub fn observe_row<'a>(
        &mut self,
        now_ms: i64,
        values: impl IntoIterator<Item = Observed<'a>>,
        score: Option<(usize, f64)>,
    ) {
        self.rows_seen += 1;
        let key = self.rng.random::<u64>() >> 1;
        let keep = self.window.admit(now_ms, key);
        if self.next_eval_ms.is_none() {
            self.next_eval_ms = Some(self.window.bucket_start(now_ms) + self.options.step_ms.max(1));
        }
        let mut bufs = if keep { Some(self.window.newest_rows()) } else { None };
        for (c, value) in values.into_iter().enumerate().take(self.quality.len()) {
            let q = &mut self.quality[c];
            let (num, text): (f64, Option<&str>) = match (&self.reference.columns[c], value) {
                (_, Observed::Missing) => {
                    q.missing += 1;
                    (f64::NAN, None)
                }
                (RefColumn::Numeric { min, max, .. }, Observed::Number(v)) => {
                    // The bounds are widened by float32 rounding: a model fed FP32 sees the
                    // reference's own extremes a hair off.
                    let slack = |b: f64| b.abs() * F32_SLACK;
                    if v.is_nan() {
                        q.missing += 1;
                    } else if v < *min - slack(*min) || v > *max + slack(*max) {
                        q.out_of_range += 1;
                    }
                    (v, None)
                }
                (RefColumn::Numeric { .. }, Observed::Text(_)) => {
                    q.wrong_type += 1;
                    (f64::NAN, None)
                }
                (RefColumn::Categorical { counts }, Observed::Text(t)) => {
                    if !counts.counts.contains_key(t) {
                        q.new_category += 1;
                    }
                    (f64::NAN, Some(t))
                }
                (RefColumn::Categorical { .. }, Observed::Number(_)) => {
                    q.wrong_type += 1;
                    (f64::NAN, None)
                }
            };
            if let Some(bufs) = bufs.as_deref_mut() {
                match &mut bufs[c] {
                    Buf::Num(v) => v.push(num),
                    Buf::Cat(v) => v.push(text.map(str::to_owned)),
                }
            }
        }
        if keep {
            let score = score.filter(|(t, s)| s.is_finite() && *t < self.tracks.len());
            self.window.finish_row(key, score);
        }
    }

    /// Data-quality counts per reference column since the monitor started.
    pub fn quality(&self) -> Vec<(String, QualityCounts)> {
        self.reference
            .names
            .iter()
            .cloned()
            .zip(self.quality.iter().copied())
            .collect()
    }

    pub fn rows_seen(&self) -> u64 {
        self.rows_seen
    }

    /// Whether an evaluation is due at `now_ms` (one per step, once rows have arrived).
    pub fn due(&self, now_ms: i64) -> bool {
        self.next_eval_ms.is_some_and(|t| now_ms >= t)
    }

    /// Drops buckets that left the window and takes the samples to compare. `None` when the
    /// window holds fewer than `min_rows` rows (nothing is evaluated then).
    pub fn prepare(&mut self, now_ms: i64) -> Option<Evaluation> {
        let step = self.options.step_ms.max(1);
        self.next_eval_ms = Some(now_ms - now_ms.rem_euclid(step) + step);
        let taken = self.window.take(now_ms, self.tracks.len(), self.options.min_rows)?;
        let mut scores = Vec::new();
        for (track, window) in self.tracks.iter_mut().zip(taken.scores) {
            if window.len() < self.options.min_rows.max(1) {
                continue;
            }
            match &track.baseline {
                Some(base) => scores.push(DueTrack {
                    name: track.name.clone(),
                    kind: track.kind,
                    baseline: base.clone(),
                    window,
                }),
                // The first full window of scores is the baseline later windows compare with.
                None => track.baseline = Some(Arc::new(window)),
            }
        }
        Some(Evaluation {
            at_ms: now_ms,
            window_ms: self.options.window_ms,
            reference: self.reference.clone(),
            current: taken.columns,
            rows_seen: taken.rows_seen,
            rows_kept: taken.rows_kept,
            scores,
            options: self.options.drift.clone(),
        })
    }
}

impl Evaluation {
    /// Runs the drift tests (CPU work: call it on a blocking thread).
    pub fn run(self) -> Result<LiveReport> {
        let started = std::time::Instant::now();
        let mut columns = Vec::with_capacity(self.current.len());
        for ((name, reference), current) in self
            .reference
            .names
            .iter()
            .zip(&self.reference.columns)
            .zip(self.current)
        {
            let drift = match (reference, current) {
                (RefColumn::Numeric { values, .. }, Buf::Num(cur)) => {
                    let current = numeric_sample(cur);
                    if current.values.is_empty() {
                        continue;
                    }
                    column::drift_numeric(name, (**values).clone(), current, &self.options)?
                }
                (RefColumn::Categorical { counts }, Buf::Cat(cur)) => {
                    let mut current = CategoryCounts::default();
                    for v in cur {
                        match v {
                            Some(v) => *current.counts.entry(v).or_default() += 1,
                            None => current.missing += 1,
                        }
                    }
                    if current.total() == 0 {
                        continue;
                    }
                    column::drift_categorical(name, (**counts).clone(), current, &self.options)?
                }
                _ => continue,
            };
            columns.push(drift);
        }
        let mut predictions = Vec::with_capacity(self.scores.len());
        for t in self.scores {
            let drift = column::drift_numeric(
                &t.name,
                numeric_sample((*t.baseline).clone()),
                numeric_sample(t.window),
                &self.options,
            )?;
            predictions.push(PredictionDrift {
                drift,
                baseline: t.kind,
            });
        }
        let mut features = crate::summarize(columns, &self.options, self.reference.rows, self.rows_kept);
        features.seconds = started.elapsed().as_secs_f64();
        Ok(LiveReport {
            at_ms: self.at_ms,
            window_seconds: self.window_ms as f64 / 1000.0,
            window_rows_seen: self.rows_seen,
            window_rows_compared: self.rows_kept,
            features,
            predictions,
        })
    }
}

fn numeric_sample(values: Vec<f64>) -> NumericValues {
    let mut out = NumericValues::default();
    read::push_finite(&mut out, values.into_iter());
    out
}
