//! The bounded batching writer.
//!
//! Serving calls [`PredictionLog::log_prediction`], which never waits and never allocates once
//! warm: the prediction is encoded straight into the calling thread's *lane* (a chunk of
//! encoded predictions, [`EncodedChunk`], behind a lock only the writer ever contends for, a
//! few dozen times a second), or, when that lane is full, dropped and counted. Decisions and
//! feedback ([`PredictionLog::log`]) go through a bounded channel the same way. A writer thread
//! with its own single-threaded runtime polls both every few milliseconds, swapping each
//! non-empty lane's chunk for an empty one (copying what it held into the batch and keeping the
//! chunk as the next spare, so the lanes reuse a few buffers that stay grown and warm),
//! batches until `batch_rows` rows or `flush` time, and hands each table's share to the
//! [`Sink`]. A failed write is counted, logged and retried with a doubling backoff (bounded),
//! then the batch is dropped and counted. Memory is bounded by the channel and the lanes
//! (`queue` entries each) plus one batch being written.
//!
//! Each lane counts what it accepted and refused under the lock it already holds; a second task
//! on the writer's runtime publishes those counts (and the queue depth) every poll whenever the
//! writer waits (on the lake's I/O, a retry's backoff, the next poll), so `/metrics` shows drops
//! while a slow or failing sink holds the writer up; only while the writer builds a batch (CPU,
//! a fraction of a second) do they wait for it.
//!
//! Lanes instead of one queue: a shared queue costs every request an allocation (freed on
//! the writer's thread: the allocator's slow path), a push contending with other threads'
//! and a cache line the writer's thread last wrote. A lane is written by one thread; the writer
//! takes it whole. Threads find their lane by a per-thread index (more threads than lanes
//! share one, which stays correct).
//!
//! The writer runs on its own thread so that encoding Parquet and committing to the lake never
//! occupy a serving worker. Shutdown closes the lanes and the channel, takes what they hold and
//! flushes it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keel_types::Tensor;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::encoded::{EncodedChunk, PredictionParts, model_of};
use crate::record::{Entry, LabelRecord, is_predictions_table, predictions_table};
use crate::{PredlogError, Result};

mod task;

use task::Writer;

/// Rows accepted for logging, by kind (the rows that are written or dropped and counted).
pub const LOGGED_TOTAL: &str = "keel_predlog_logged_total";
/// Rows dropped, by reason (`queue_full`, `write_failed`, `closed`).
pub const DROPPED_TOTAL: &str = "keel_predlog_dropped_total";
/// Failed write attempts (each retry counts).
pub const WRITE_FAILURES_TOTAL: &str = "keel_predlog_write_failures_total";
/// Rows written to the lake.
pub const ROWS_WRITTEN_TOTAL: &str = "keel_predlog_rows_written_total";
/// Time to write one table's batch, in seconds.
pub const BATCH_DURATION: &str = "keel_predlog_batch_duration_seconds";
/// Entries waiting in the queue.
pub const QUEUE_DEPTH: &str = "keel_predlog_queue_depth";
/// Labels stored.
pub const LABELS_TOTAL: &str = "keel_predlog_labels_total";

/// Entries the channel, and each serving thread's lane, hold by default.
pub const DEFAULT_QUEUE: usize = 16_384;
/// Rows per batch by default. Large on purpose: each batch is one Delta commit, whose fixed cost
/// on the writer's thread (the commit, the snapshot update, the periodic checkpoint) is paid per
/// batch, so below ~65k req/s [`DEFAULT_FLUSH_MS`] ends a batch first: one commit a second
/// (bench/README.md, predlog/, measures the difference). Memory stays bounded: the queue plus
/// one batch (about 400 bytes a row for 30 features).
pub const DEFAULT_BATCH_ROWS: usize = 65_536;
/// How long a batch's oldest entry waits at most before the batch is written, by default.
pub const DEFAULT_FLUSH_MS: u64 = 1000;

/// How often the writer looks at the queue (at most; `flush` when shorter).
const POLL: Duration = Duration::from_millis(20);

/// Writer settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Entries the channel (decisions, feedback), and each serving thread's lane
    /// (predictions), hold before new ones are dropped.
    pub queue: usize,
    /// Write a batch once it holds this many rows...
    pub batch_rows: usize,
    /// ...or once its oldest entry has waited this long.
    pub flush: Duration,
    /// Retries of a failed write before its batch is dropped.
    pub retries: u32,
    /// First retry delay; doubles each retry, at most 5 s.
    pub backoff: Duration,
    /// How often [`Sink::maintain`] runs (retention).
    pub maintain_every: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            queue: DEFAULT_QUEUE,
            batch_rows: DEFAULT_BATCH_ROWS,
            flush: Duration::from_millis(DEFAULT_FLUSH_MS),
            retries: 3,
            backoff: Duration::from_millis(200),
            maintain_every: Duration::from_secs(3600),
        }
    }
}

/// One table's share of a batch.
#[derive(Debug, Clone, Copy)]
pub struct TableBatch<'a> {
    pub table: &'a str,
    /// Queued records for the table: decisions, feedback, or predictions given as records.
    pub entries: &'a [Entry],
    /// Encoded predictions for the table: records of [`EncodedChunk`]s
    /// (read with [`crate::encoded::view_encoded`]).
    pub encoded: &'a [&'a [u8]],
    /// Rows the entries and the encoded predictions become.
    pub rows: usize,
}

/// Where batches go (the lake, in production).
#[async_trait::async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Writes one table's share of a batch as one commit.
    async fn write(&self, batch: &TableBatch<'_>) -> Result<()>;
    /// Writes labels as one commit.
    async fn write_labels(&self, labels: &[LabelRecord]) -> Result<()>;
    /// Periodic upkeep (retention); errors are logged by the writer.
    async fn maintain(&self) -> Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
struct Metrics {
    logged_prediction: Counter,
    logged_decision: Counter,
    logged_feedback: Counter,
    dropped_full: Counter,
    dropped_failed: Counter,
    dropped_closed: Counter,
    write_failures: Counter,
    rows_written: Counter,
    batch_duration: Histogram,
    queue_depth: Gauge,
    labels: Counter,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            logged_prediction: counter!(LOGGED_TOTAL, "kind" => "prediction"),
            logged_decision: counter!(LOGGED_TOTAL, "kind" => "decision"),
            logged_feedback: counter!(LOGGED_TOTAL, "kind" => "feedback"),
            dropped_full: counter!(DROPPED_TOTAL, "reason" => "queue_full"),
            dropped_failed: counter!(DROPPED_TOTAL, "reason" => "write_failed"),
            dropped_closed: counter!(DROPPED_TOTAL, "reason" => "closed"),
            write_failures: counter!(WRITE_FAILURES_TOTAL),
            rows_written: counter!(ROWS_WRITTEN_TOTAL),
            batch_duration: histogram!(BATCH_DURATION),
            queue_depth: gauge!(QUEUE_DEPTH),
            labels: counter!(LABELS_TOTAL),
        }
    }
}

/// Counts since the writer started, for tests and status output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub logged: u64,
    pub dropped_queue_full: u64,
    pub dropped_write_failed: u64,
    pub write_failures: u64,
    pub rows_written: u64,
    pub batches_written: u64,
}

/// The same counts as the metrics, kept here too so tests and callers can read them without
/// a metrics recorder.
#[derive(Default)]
struct Shared {
    logged: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_write_failed: AtomicU64,
    write_failures: AtomicU64,
    rows_written: AtomicU64,
    batches_written: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Lanes for this many threads at most (more share them).
const MAX_LANES: usize = 64;

/// Where serving threads append their predictions (see the module documentation).
struct Lanes {
    lanes: Box<[Lane]>,
    /// Predictions a lane holds before new ones are dropped.
    cap: usize,
}

/// One lane, alone on its cache lines so that two threads' lanes never share one.
#[repr(align(128))]
#[derive(Default)]
struct Lane {
    inner: Mutex<LaneInner>,
}

#[derive(Default)]
struct LaneInner {
    chunk: EncodedChunk,
    /// Rows accepted since the counts were last published.
    accepted: u64,
    /// Rows refused because the lane was full, since the counts were last published.
    dropped: u64,
    /// Set at shutdown: nothing more is accepted.
    closed: bool,
}

/// What the lanes counted since the counts were last published.
#[derive(Debug, Default, Clone, Copy)]
struct LaneCounts {
    accepted: u64,
    dropped: u64,
    /// Predictions waiting in the lanes now.
    waiting: usize,
}

impl Lanes {
    fn new(cap: usize) -> Lanes {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let n = (threads * 2).clamp(4, MAX_LANES);
        Lanes {
            lanes: (0..n).map(|_| Lane::default()).collect(),
            cap: cap.max(1),
        }
    }

    /// The calling thread's lane.
    fn mine(&self) -> MutexGuard<'_, LaneInner> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        let i = INDEX.with(|i| *i) % self.lanes.len();
        lock(&self.lanes[i].inner)
    }

    /// Swaps each lane that holds predictions for an empty chunk from `spare`; `close` also
    /// closes every lane.
    fn take(&self, spare: &mut Vec<EncodedChunk>, close: bool, out: &mut Vec<EncodedChunk>) {
        for lane in &self.lanes {
            let mut inner = lock(&lane.inner);
            inner.closed |= close;
            if inner.chunk.is_empty() {
                continue;
            }
            let empty = spare.pop().unwrap_or_default();
            out.push(std::mem::replace(&mut inner.chunk, empty));
        }
    }

    /// Takes every lane's counts (each is counted once, whoever calls).
    fn take_counts(&self) -> LaneCounts {
        let mut sum = LaneCounts::default();
        for lane in &self.lanes {
            let mut inner = lock(&lane.inner);
            sum.accepted += std::mem::take(&mut inner.accepted);
            sum.dropped += std::mem::take(&mut inner.dropped);
            sum.waiting += inner.chunk.records();
        }
        sum
    }
}

/// A lane's lock. Nothing panics while holding one, but if something did, the chunk is still
/// whole (a record is appended in one step): keep using it.
fn lock(m: &Mutex<LaneInner>) -> MutexGuard<'_, LaneInner> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The handle serving holds: non-blocking `log_prediction` and `log`, synchronous label
/// writes, shutdown.
pub struct PredictionLog {
    tx: mpsc::Sender<Entry>,
    lanes: Arc<Lanes>,
    sink: Arc<dyn Sink>,
    metrics: Metrics,
    shared: Arc<Shared>,
    stop: CancellationToken,
    done: Mutex<Option<oneshot::Receiver<()>>>,
}

impl std::fmt::Debug for PredictionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionLog").finish_non_exhaustive()
    }
}

impl PredictionLog {
    /// Starts the writer thread over `sink`.
    pub fn start(sink: Arc<dyn Sink>, config: LogConfig) -> Result<Arc<PredictionLog>> {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let lanes = Arc::new(Lanes::new(config.queue));
        let metrics = Metrics::new();
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let (done_tx, done_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PredlogError::Sink(format!("cannot start the log writer's runtime: {e}")))?;
        let writer = Writer {
            rx,
            tx: tx.clone(),
            lanes: lanes.clone(),
            sink: sink.clone(),
            config,
            metrics: metrics.clone(),
            shared: shared.clone(),
            stop: stop.clone(),
        };
        std::thread::Builder::new()
            .name("keel-predlog".into())
            .spawn(move || {
                runtime.block_on(writer.run());
                let _ = done_tx.send(());
            })
            .map_err(|e| PredlogError::Sink(format!("cannot start the log writer thread: {e}")))?;
        Ok(Arc::new(PredictionLog {
            tx,
            lanes,
            sink,
            metrics,
            shared,
            stop,
            done: Mutex::new(Some(done_rx)),
        }))
    }

    /// Logs an answered request from its borrowed parts and tensors, encoded into the calling
    /// thread's lane; never waits (but for the writer's swap of that lane) and, once the lane
    /// has grown, never allocates. Returns `false` when it was dropped (lane full, or the log
    /// shut down), which is counted.
    pub fn log_prediction<'t, I, O>(&self, parts: &PredictionParts<'_>, inputs: I, outputs: O) -> bool
    where
        I: Iterator<Item = (&'t str, &'t Tensor)> + Clone,
        O: Iterator<Item = (&'t str, &'t Tensor)> + Clone,
    {
        self.append(
            |chunk| chunk.push(parts, inputs.clone(), outputs.clone()),
            || crate::encoded::rows_of_first(inputs.clone()),
        )
    }

    /// Appends to the calling thread's lane with `push`; `rows` says how many rows a refused
    /// prediction held.
    fn append(&self, push: impl FnOnce(&mut EncodedChunk) -> bool, rows: impl FnOnce() -> usize) -> bool {
        let mut lane = self.lanes.mine();
        if lane.closed {
            drop(lane);
            self.metrics.dropped_closed.increment(rows() as u64);
            return false;
        }
        let before = lane.chunk.rows();
        if lane.chunk.records() >= self.lanes.cap || !push(&mut lane.chunk) {
            // published with the lane's other counts by the counting task
            lane.dropped += rows() as u64;
            return false;
        }
        lane.accepted += (lane.chunk.rows() - before) as u64;
        true
    }

    /// Queues an entry; never waits. Returns `false` when it was dropped (queue full or closed),
    /// which is counted. A prediction record goes to the calling thread's lane, as
    /// [`PredictionLog::log_prediction`]'s do.
    pub fn log(&self, entry: Entry) -> bool {
        if let Entry::Prediction(p) = &entry {
            return self.append(|chunk| chunk.push_record(p), || p.rows());
        }
        let (kind, rows) = (
            match &entry {
                Entry::Prediction(_) => &self.metrics.logged_prediction,
                Entry::Decision(_) => &self.metrics.logged_decision,
                Entry::Feedback(_) => &self.metrics.logged_feedback,
            },
            entry.rows() as u64,
        );
        match self.tx.try_send(entry) {
            Ok(()) => {
                kind.increment(rows);
                bump(&self.shared.logged, rows);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.dropped_full.increment(rows);
                bump(&self.shared.dropped_queue_full, rows);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.dropped_closed.increment(rows);
                false
            }
        }
    }

    /// Writes labels now (one commit), so a label acknowledged is stored.
    pub async fn write_labels(&self, labels: &[LabelRecord]) -> Result<usize> {
        self.sink.write_labels(labels).await?;
        self.metrics.labels.increment(labels.len() as u64);
        Ok(labels.len())
    }

    /// Counts so far. Predictions are counted (accepted or refused) within a poll (20 ms) of
    /// their `log_prediction`, also while the writer waits on the sink (not while it is busy
    /// building a batch: see the module documentation).
    pub fn stats(&self) -> LogStats {
        let s = &self.shared;
        LogStats {
            logged: s.logged.load(Ordering::Relaxed),
            dropped_queue_full: s.dropped_queue_full.load(Ordering::Relaxed),
            dropped_write_failed: s.dropped_write_failed.load(Ordering::Relaxed),
            write_failures: s.write_failures.load(Ordering::Relaxed),
            rows_written: s.rows_written.load(Ordering::Relaxed),
            batches_written: s.batches_written.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting entries, writes what is queued, and waits for the writer to finish.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        if let Some(done) = done {
            let _ = done.await;
        }
    }
}
