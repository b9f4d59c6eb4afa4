//! A deployment's live monitor: the reference it is compared with (a lake table the server
//! loads through a [`ReferenceSource`]), data-quality counts and a sliding drift window over
//! the rows it serves, the drift of each serving model's scores against that model's scores on
//! the reference sample, and the AUC of its scores as labels arrive.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use keel_monitor::live::{Baseline, LiveMonitor, LiveOptions, LiveReport, Observed, QualityCounts};
use keel_monitor::{DriftOptions, Method};
use keel_predlog::LabelRecord;
use keel_serving::InferRequest;
use serde::{Deserialize, Serialize};

mod reference;

use reference::Source;
pub(crate) use reference::{PreparedReference, prepare_reference};

/// Record batches of a reference table, as the lake returns them.
pub type Batches = Vec<keel_monitor::arrow::array::RecordBatch>;

/// Loads a reference table (every column) for a deployment's monitor; the server implements
/// it over its lake.
pub trait ReferenceSource: Send + Sync {
    fn load(&self, table: &str) -> Pin<Box<dyn Future<Output = std::result::Result<Batches, String>> + Send>>;
}

/// `monitor` of a deployment spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSpec {
    /// The lake table the deployment is compared with (its training table, usually).
    pub reference: String,
    /// Reference columns to watch (default: every reference column the model takes as input).
    #[serde(default)]
    pub columns: Vec<String>,
    /// Reference columns to leave out.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Length of the sliding window.
    #[serde(default = "default_window")]
    pub window_seconds: u64,
    /// How often the window is evaluated (it slides by this much).
    #[serde(default = "default_step")]
    pub step_seconds: u64,
    /// Fewer rows in the window: no drift figure.
    #[serde(default = "default_min_rows")]
    pub min_rows: usize,
    /// Rows the window keeps at most (a uniform sample of what it saw).
    #[serde(default = "default_max_rows")]
    pub max_window_rows: usize,
    /// Rows of the reference kept in memory (a uniform sample).
    #[serde(default = "default_reference_rows")]
    pub reference_rows: usize,
    /// auto (Evidently's default per column), psi, ks, wasserstein or jensenshannon.
    #[serde(default = "default_method")]
    pub method: String,
    /// Overrides the test's threshold.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Labelled predictions needed (with both outcomes present) before an AUC is reported.
    #[serde(default = "default_min_labels")]
    pub min_labels: usize,
}

fn default_window() -> u64 {
    3600
}
fn default_step() -> u64 {
    60
}
fn default_min_rows() -> usize {
    200
}
fn default_max_rows() -> usize {
    20_000
}
fn default_reference_rows() -> usize {
    100_000
}
fn default_method() -> String {
    "auto".into()
}
fn default_min_labels() -> usize {
    50
}

impl MonitorSpec {
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.reference.trim().is_empty() {
            p.push("monitor.reference must name a lake table".into());
        }
        if self.step_seconds == 0 || self.window_seconds < self.step_seconds {
            p.push("monitor: step_seconds must be at least 1 and at most window_seconds".into());
        }
        if self.window_seconds > 30 * 86_400 {
            p.push("monitor.window_seconds must be at most 30 days".into());
        }
        if self.min_rows == 0 || self.max_window_rows < self.min_rows {
            p.push("monitor: min_rows must be at least 1 and at most max_window_rows".into());
        }
        if self.max_window_rows > 1_000_000 || self.reference_rows == 0 || self.reference_rows > 5_000_000 {
            p.push("monitor: max_window_rows must be at most 1,000,000 and reference_rows 1..=5,000,000".into());
        }
        if let Err(e) = self.method.parse::<Method>() {
            p.push(format!("monitor.method: {e}"));
        }
        if self.threshold.is_some_and(|t| !t.is_finite() || t <= 0.0) {
            p.push("monitor.threshold must be a positive number".into());
        }
        if self.min_labels < 2 {
            p.push("monitor.min_labels must be at least 2".into());
        }
        p
    }

    fn options(&self, seed: u64) -> LiveOptions {
        LiveOptions {
            window_ms: self.window_seconds as i64 * 1000,
            step_ms: self.step_seconds as i64 * 1000,
            max_rows: self.max_window_rows,
            min_rows: self.min_rows,
            drift: DriftOptions {
                method: self.method.parse().unwrap_or_default(),
                threshold: self.threshold,
                ..Default::default()
            },
            seed,
        }
    }
}

/// Where the monitor of a running revision stands.
#[derive(Debug, Clone, Serialize)]
pub struct MonitorStatus {
    pub reference: String,
    /// loading, ready or failed
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The input columns watched, each with the model input it is read from.
    pub columns: Vec<String>,
    pub reference_rows: u64,
    pub rows_seen: u64,
    /// Requests refused because their inputs did not fit the model (names, types, shapes).
    pub schema_violations: u64,
    pub quality: BTreeMap<String, QualityCounts>,
    /// The score tracks: which variants' scores each watches and what it compares them with.
    pub predictions: Vec<PredictionStatus>,
    pub last_window: Option<LiveReport>,
    pub auc: Option<f64>,
    /// Labelled predictions in the window.
    pub labelled: usize,
}

/// One score track of a monitor.
#[derive(Debug, Clone, Serialize)]
pub struct PredictionStatus {
    /// `prediction`, or `prediction[VARIANT]` when the variants run several models.
    pub column: String,
    pub variants: Vec<String>,
    /// `reference`: the model's scores on the reference sample; `first_window`: the first
    /// window that held `min_rows` scores (see `note` for why the reference was not scored).
    pub baseline: Baseline,
    /// Scores in the baseline (none yet while a first window is awaited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_scores: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

struct Ready {
    live: LiveMonitor,
    sources: Vec<Source>,
    /// Per variant with a model: its score track.
    tracks: HashMap<String, usize>,
    /// Per track, why its reference was not scored.
    notes: Vec<Option<String>>,
    /// Per source, for the request being observed: its input's index and row width (kept
    /// between requests so observing allocates nothing).
    located: Vec<Option<(usize, usize)>>,
}

enum State {
    /// Waiting for the server's reference source (or for a retry after a failure).
    Pending {
        retry_at_ms: i64,
        last_error: Option<String>,
    },
    Loading,
    Ready(Box<Ready>),
}

/// Recent scores by prediction id, and labelled pairs in the window.
#[derive(Default)]
struct Labels {
    scores: HashMap<String, Vec<f64>>,
    order: VecDeque<String>,
    pairs: VecDeque<(i64, f64, f64)>,
}

/// Predictions remembered for labels (the oldest are forgotten first).
const REMEMBERED: usize = 200_000;
/// A failed reference load is retried after this long.
const RETRY_MS: i64 = 60_000;

pub(crate) struct DriftMonitor {
    spec: MonitorSpec,
    seed: u64,
    state: Mutex<State>,
    last: Mutex<Option<LiveReport>>,
    evaluating: AtomicBool,
    schema_violations: AtomicU64,
    labels: Mutex<Labels>,
}

impl DriftMonitor {
    pub(crate) fn new(spec: MonitorSpec, seed: u64) -> DriftMonitor {
        DriftMonitor {
            spec,
            seed,
            state: Mutex::new(State::Pending {
                retry_at_ms: 0,
                last_error: None,
            }),
            last: Mutex::new(None),
            evaluating: AtomicBool::new(false),
            schema_violations: AtomicU64::new(0),
            labels: Mutex::new(Labels::default()),
        }
    }

    pub(crate) fn spec(&self) -> &MonitorSpec {
        &self.spec
    }

    /// Whether the reference should be (re)loaded now; marks it loading if so.
    pub(crate) fn begin_load(&self, now_ms: i64) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if matches!(&*state, State::Pending { retry_at_ms, .. } if now_ms >= *retry_at_ms) {
            *state = State::Loading;
            return true;
        }
        false
    }

    /// Installs the loaded reference, or records why it could not be used (retried later).
    pub(crate) fn finish_load(
        &self,
        deployment: &str,
        loaded: std::result::Result<PreparedReference, String>,
        now_ms: i64,
    ) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match loaded {
            Ok(r) => {
                let mut live = LiveMonitor::new(r.reference, self.spec.options(self.seed));
                let (mut tracks, mut notes) = (HashMap::new(), Vec::new());
                for t in r.tracks {
                    let (scores, note) = match t.scores {
                        Ok(s) => (Some(s), None),
                        Err(e) => {
                            tracing::warn!(
                                deployment, column = %t.column, error = %e,
                                "the reference could not be scored; this score track compares with its first window"
                            );
                            (None, Some(e))
                        }
                    };
                    let i = live.score_track(&t.column, scores);
                    notes.push(note);
                    tracks.insert(t.variant, i);
                }
                tracing::info!(
                    deployment, reference = %self.spec.reference, columns = r.sources.len(),
                    rows = live.reference().rows(), score_tracks = notes.len(), "live monitor ready"
                );
                *state = State::Ready(Box::new(Ready {
                    live,
                    located: Vec::with_capacity(r.sources.len()),
                    sources: r.sources,
                    tracks,
                    notes,
                }));
            }
            Err(e) => {
                tracing::error!(deployment, reference = %self.spec.reference, error = %e, "live monitor cannot start");
                *state = State::Pending {
                    retry_at_ms: now_ms + RETRY_MS,
                    last_error: Some(e),
                };
            }
        }
    }

    pub(crate) fn schema_violation(&self) {
        self.schema_violations.fetch_add(1, Ordering::Relaxed);
    }

    /// Observes the rows of one request `variant` answered and the score of each row;
    /// remembers the scores under the prediction id for labels.
    pub(crate) fn observe(
        &self,
        now_ms: i64,
        request: &InferRequest,
        variant: &str,
        scores: &[f64],
        prediction_id: Option<&str>,
    ) {
        if let Ok(mut state) = self.state.lock()
            && let State::Ready(ready) = &mut *state
        {
            let Ready {
                live,
                sources,
                located,
                tracks,
                ..
            } = &mut **ready;
            let track = tracks.get(variant).copied();
            let rows = request
                .inputs
                .first()
                .and_then(|t| t.tensor.shape.first())
                .map_or(1, |r| (*r).max(0) as usize);
            located.clear();
            located.extend(sources.iter().map(|s| {
                let at = request.inputs.iter().position(|t| t.name == s.tensor)?;
                let width = request.inputs[at].tensor.data.len().checked_div(rows)?;
                (s.at < width).then_some((at, width))
            }));
            for row in 0..rows {
                let values = located.iter().zip(sources.iter()).map(|(l, s)| match l {
                    None => Observed::Missing,
                    Some((at, width)) => observed(&request.inputs[*at].tensor.data, row * width + s.at),
                });
                let score = track.zip(scores.get(row).copied());
                live.observe_row(now_ms, values, score);
            }
        }
        if let Some(id) = prediction_id
            && !scores.is_empty()
            && let Ok(mut labels) = self.labels.lock()
        {
            if labels.order.len() >= REMEMBERED
                && let Some(old) = labels.order.pop_front()
            {
                labels.scores.remove(&old);
            }
            labels.order.push_back(id.to_owned());
            labels.scores.insert(id.to_owned(), scores.to_vec());
        }
    }

    /// Pairs labels with the scores of predictions this monitor remembers; returns how many
    /// matched.
    pub(crate) fn observe_labels(&self, labels: &[LabelRecord], now_ms: i64) -> usize {
        let Ok(mut l) = self.labels.lock() else {
            return 0;
        };
        let mut matched = 0;
        for label in labels {
            let score = l
                .scores
                .get(&label.prediction_id)
                .and_then(|s| usize::try_from(label.row).ok().and_then(|r| s.get(r)))
                .copied();
            if let Some(s) = score {
                l.pairs.push_back((now_ms, s, label.label));
                matched += 1;
            }
        }
        matched
    }

    /// Whether `prediction_id` is one of this monitor's remembered predictions.
    pub(crate) fn knows(&self, prediction_id: &str) -> bool {
        self.labels.lock().is_ok_and(|l| l.scores.contains_key(prediction_id))
    }

    /// The AUC of labelled predictions in the window and how many there are.
    pub(crate) fn auc(&self, now_ms: i64) -> (Option<f64>, usize) {
        let Ok(mut l) = self.labels.lock() else {
            return (None, 0);
        };
        let oldest = now_ms - self.spec.window_seconds as i64 * 1000;
        while l.pairs.front().is_some_and(|p| p.0 < oldest) {
            l.pairs.pop_front();
        }
        let n = l.pairs.len();
        if n < self.spec.min_labels {
            return (None, n);
        }
        (keel_stats::auc(l.pairs.iter().map(|p| (p.1, p.2 >= 0.5))), n)
    }

    /// Takes the window's samples when an evaluation is due and none is running.
    pub(crate) fn prepare(&self, now_ms: i64) -> Option<keel_monitor::live::Evaluation> {
        let mut state = self.state.lock().ok()?;
        let State::Ready(ready) = &mut *state else {
            return None;
        };
        if !ready.live.due(now_ms) || self.evaluating.swap(true, Ordering::AcqRel) {
            return None;
        }
        let evaluation = ready.live.prepare(now_ms);
        if evaluation.is_none() {
            self.evaluating.store(false, Ordering::Release);
        }
        evaluation
    }

    pub(crate) fn finish_evaluation(&self, deployment: &str, report: std::result::Result<LiveReport, String>) {
        self.evaluating.store(false, Ordering::Release);
        match report {
            Ok(report) => {
                for c in report
                    .features
                    .columns
                    .iter()
                    .chain(report.predictions.iter().map(|p| &p.drift))
                {
                    let labels = [("deployment", deployment.to_owned()), ("column", c.name.clone())];
                    metrics::gauge!("keel_drift_score", &labels).set(c.score);
                    metrics::gauge!("keel_drift_detected", &labels).set(if c.drifted { 1.0 } else { 0.0 });
                }
                metrics::gauge!("keel_drift_share", "deployment" => deployment.to_owned())
                    .set(report.features.share_drifted);
                metrics::gauge!("keel_drift_window_rows", "deployment" => deployment.to_owned())
                    .set(report.window_rows_seen as f64);
                if !report.features.drifted_columns.is_empty() {
                    tracing::warn!(deployment, drifted = ?report.features.drifted_columns, "inputs drifted from the reference");
                }
                if let Ok(mut last) = self.last.lock() {
                    *last = Some(report);
                }
            }
            Err(e) => tracing::error!(deployment, error = %e, "drift evaluation failed"),
        }
    }

    /// Drift signals of the last evaluation, for alert rules.
    pub(crate) fn signals(&self) -> BTreeMap<String, f64> {
        self.last
            .lock()
            .ok()
            .and_then(|l| l.as_ref().map(|r| r.signals().into_iter().collect()))
            .unwrap_or_default()
    }

    /// Publishes the data-quality counters.
    pub(crate) fn publish(&self, deployment: &str) {
        metrics::counter!("keel_schema_violations_total", "deployment" => deployment.to_owned())
            .absolute(self.schema_violations.load(Ordering::Relaxed));
        let Ok(state) = self.state.lock() else {
            return;
        };
        if let State::Ready(ready) = &*state {
            for (column, q) in ready.live.quality() {
                for (kind, n) in q.kinds() {
                    metrics::counter!(
                        "keel_data_quality_total",
                        "deployment" => deployment.to_owned(), "column" => column.clone(), "kind" => kind
                    )
                    .absolute(n);
                }
            }
        }
    }

    pub(crate) fn status(&self, now_ms: i64) -> MonitorStatus {
        let (auc, labelled) = self.auc(now_ms);
        let mut status = MonitorStatus {
            reference: self.spec.reference.clone(),
            state: "loading",
            error: None,
            columns: Vec::new(),
            reference_rows: 0,
            rows_seen: 0,
            schema_violations: self.schema_violations.load(Ordering::Relaxed),
            quality: BTreeMap::new(),
            predictions: Vec::new(),
            last_window: self.last.lock().ok().and_then(|l| l.clone()),
            auc,
            labelled,
        };
        if let Ok(state) = self.state.lock() {
            match &*state {
                State::Pending { last_error, .. } => {
                    if let Some(e) = last_error {
                        status.state = "failed";
                        status.error = Some(e.clone());
                    }
                }
                State::Loading => {}
                State::Ready(ready) => {
                    status.state = "ready";
                    status.columns = ready
                        .live
                        .reference()
                        .columns()
                        .iter()
                        .zip(&ready.sources)
                        .map(|(c, s)| format!("{c} <- {}[{}]", s.tensor, s.at))
                        .collect();
                    status.reference_rows = ready.live.reference().rows();
                    status.rows_seen = ready.live.rows_seen();
                    status.quality = ready.live.quality().into_iter().collect();
                    status.predictions = ready
                        .live
                        .score_tracks()
                        .into_iter()
                        .enumerate()
                        .map(|(i, (column, baseline, baseline_scores))| {
                            let mut variants: Vec<String> = ready
                                .tracks
                                .iter()
                                .filter(|(_, t)| **t == i)
                                .map(|(v, _)| v.clone())
                                .collect();
                            variants.sort();
                            PredictionStatus {
                                column,
                                variants,
                                baseline,
                                baseline_scores,
                                note: ready.notes.get(i).cloned().flatten(),
                            }
                        })
                        .collect();
                }
            }
        }
        status
    }
}

fn observed(data: &keel_runtime::TensorData, i: usize) -> Observed<'_> {
    use keel_runtime::TensorData;
    match data {
        TensorData::Bytes(v) => match v.get(i).map(|b| std::str::from_utf8(b)) {
            Some(Ok(s)) => Observed::Text(s),
            _ => Observed::Missing,
        },
        TensorData::Bool(v) => match v.get(i) {
            Some(true) => Observed::Text("true"),
            Some(false) => Observed::Text("false"),
            None => Observed::Missing,
        },
        other => other.value_f64(i).map_or(Observed::Missing, Observed::Number),
    }
}
