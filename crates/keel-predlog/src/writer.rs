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

struct Writer {
    rx: mpsc::Receiver<Entry>,
    /// A sender of the same channel, for its depth only (the writer closes `rx` at shutdown).
    tx: mpsc::Sender<Entry>,
    lanes: Arc<Lanes>,
    sink: Arc<dyn Sink>,
    config: LogConfig,
    metrics: Metrics,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

/// What the writer holds until it writes: queued entries and the predictions taken from the
/// lanes, copied into one buffer that keeps its memory from batch to batch.
#[derive(Default)]
struct Pending {
    entries: Vec<Entry>,
    encoded: EncodedChunk,
    rows: usize,
    /// When the oldest of them was taken.
    oldest: Option<Instant>,
}

impl Writer {
    /// The writer polls the channel and the lanes every few milliseconds instead of waiting on
    /// them: a sender then never has a waiting receiver to wake, so logging stays free of
    /// system calls, and the writer wakes tens of times a second, not once per entry.
    async fn run(mut self) {
        let batch_rows = self.config.batch_rows.max(1);
        let poll = self.config.flush.min(POLL);
        let mut pending = Pending::default();
        let mut spare: Vec<EncodedChunk> = Vec::new();
        let mut taken: Vec<EncodedChunk> = Vec::new();
        let counting = tokio::spawn(
            Counting {
                lanes: self.lanes.clone(),
                channel: self.tx.clone(),
                metrics: self.metrics.clone(),
                shared: self.shared.clone(),
            }
            .run(poll),
        );
        let mut next_maintenance = Instant::now();
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            loop {
                self.take(&mut pending, &mut spare, &mut taken, batch_rows, false);
                let due = pending.oldest.is_some_and(|t| t.elapsed() >= self.config.flush);
                if pending.rows >= batch_rows || (due && pending.rows > 0) {
                    self.flush(&mut pending).await;
                    // a full batch: more may be waiting
                    continue;
                }
                break;
            }
            if Instant::now() >= next_maintenance {
                if let Err(e) = self.sink.maintain().await {
                    tracing::error!(error = %e, "log maintenance (retention) failed; retried next time");
                }
                next_maintenance = Instant::now() + self.config.maintain_every;
            }
        }
        // Shutdown: close the channel and the lanes, take what they hold, count it and write it.
        counting.abort();
        self.rx.close();
        self.take(&mut pending, &mut spare, &mut taken, usize::MAX, true);
        let counts = self.lanes.take_counts();
        publish(&self.metrics, &self.shared, counts);
        if pending.rows > 0 {
            self.flush(&mut pending).await;
        }
        self.metrics.queue_depth.set(0.0);
    }

    /// Takes queued entries and the lanes' chunks (until `batch_rows` rows are pending).
    fn take(
        &mut self,
        pending: &mut Pending,
        spare: &mut Vec<EncodedChunk>,
        taken: &mut Vec<EncodedChunk>,
        batch_rows: usize,
        close: bool,
    ) {
        let before = pending.rows;
        while pending.rows < batch_rows {
            match self.rx.try_recv() {
                Ok(entry) => {
                    pending.rows += entry.rows();
                    pending.entries.push(entry);
                }
                Err(_) => break,
            }
        }
        if pending.rows < batch_rows || close {
            self.lanes.take(spare, close, taken);
            // Copied out and handed back at once: the lanes then reuse a few buffers, grown once
            // and warm in cache, instead of growing a new one every poll until the batch is
            // written.
            for mut chunk in taken.drain(..) {
                pending.rows += chunk.rows();
                pending.encoded.append(&chunk);
                chunk.clear();
                if spare.len() < self.lanes.lanes.len() && chunk.capacity() <= MAX_SPARE_BYTES {
                    spare.push(chunk);
                }
            }
        }
        if pending.rows > before {
            pending.oldest.get_or_insert_with(Instant::now);
        }
    }

    /// Writes each table's share of what is pending, retrying failures with a bounded backoff,
    /// and keeps the predictions' buffer (unless a burst made it large).
    async fn flush(&self, pending: &mut Pending) {
        let entries = std::mem::take(&mut pending.entries);
        (pending.rows, pending.oldest) = (0, None);
        // A few tables per batch: a linear search that builds each table name once per flush,
        // not once per entry, and consecutive predictions of one model skip even that.
        let mut tables: Vec<Share<'_>> = Vec::new();
        let mut by_table: Vec<Vec<Entry>> = Vec::new();
        for e in entries {
            let i = Share::find(&mut tables, |t| e.is_for(t), || e.table());
            by_table.resize_with(tables.len(), Vec::new);
            tables[i].rows += e.rows();
            by_table[i].push(e);
        }
        let mut last: Option<(&str, usize)> = None;
        for (rows, record) in pending.encoded.records_iter() {
            let model = model_of(record);
            let i = match last {
                Some((m, i)) if m == model => i,
                _ => Share::find(
                    &mut tables,
                    |t| is_predictions_table(t, model),
                    || predictions_table(model),
                ),
            };
            last = Some((model, i));
            tables[i].rows += rows;
            tables[i].encoded.push(record);
        }
        by_table.resize_with(tables.len(), Vec::new);
        for (share, entries) in tables.iter().zip(&by_table) {
            self.write(TableBatch {
                table: &share.table,
                entries,
                encoded: &share.encoded,
                rows: share.rows,
            })
            .await;
        }
        drop(tables);
        if pending.encoded.capacity() <= MAX_KEPT_BATCH_BYTES {
            pending.encoded.clear();
        } else {
            pending.encoded = EncodedChunk::default();
        }
    }

    async fn write(&self, batch: TableBatch<'_>) {
        let (table, rows) = (batch.table, batch.rows as u64);
        let mut delay = self.config.backoff;
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            match self.sink.write(&batch).await {
                Ok(()) => {
                    self.metrics.batch_duration.record(started.elapsed().as_secs_f64());
                    self.metrics.rows_written.increment(rows);
                    bump(&self.shared.rows_written, rows);
                    bump(&self.shared.batches_written, 1);
                    return;
                }
                Err(e) => {
                    self.metrics.write_failures.increment(1);
                    bump(&self.shared.write_failures, 1);
                    if attempt >= self.config.retries {
                        self.metrics.dropped_failed.increment(rows);
                        bump(&self.shared.dropped_write_failed, rows);
                        tracing::error!(table, rows, attempts = attempt + 1, error = %e,
                            "prediction log batch dropped after its retries; serving is unaffected");
                        return;
                    }
                    tracing::warn!(table, rows, attempt = attempt + 1, error = %e, "prediction log write failed; retrying");
                    attempt += 1;
                    // During shutdown, still retry (bounded), but do not sleep long.
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Publishes the lanes' counts every poll, on the writer's runtime but beside the writer, so
/// they stay current while the writer waits on the sink (a retry's backoff, a slow commit).
struct Counting {
    lanes: Arc<Lanes>,
    /// For the channel's depth only.
    channel: mpsc::Sender<Entry>,
    metrics: Metrics,
    shared: Arc<Shared>,
}

impl Counting {
    async fn run(self, poll: Duration) {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let counts = self.lanes.take_counts();
            publish(&self.metrics, &self.shared, counts);
            let channel = self.channel.max_capacity() - self.channel.capacity();
            self.metrics.queue_depth.set((channel + counts.waiting) as f64);
        }
    }
}

/// Adds the lanes' counts to the metrics and the shared counts.
fn publish(metrics: &Metrics, shared: &Shared, counts: LaneCounts) {
    if counts.accepted > 0 {
        metrics.logged_prediction.increment(counts.accepted);
        bump(&shared.logged, counts.accepted);
    }
    if counts.dropped > 0 {
        metrics.dropped_full.increment(counts.dropped);
        bump(&shared.dropped_queue_full, counts.dropped);
    }
}

/// A spare chunk larger than this (after a burst) is freed rather than kept.
const MAX_SPARE_BYTES: usize = 8 << 20;
/// The batch's predictions buffer is kept for the next batch up to this size (a full batch of
/// 65,536 rows of 30 features is about 26 MiB).
const MAX_KEPT_BATCH_BYTES: usize = 64 << 20;

/// One table's share of a flush, as the writer gathers it.
struct Share<'a> {
    table: String,
    encoded: Vec<&'a [u8]>,
    rows: usize,
}

impl<'a> Share<'a> {
    /// The share of the table `is_for` accepts, added (named `name()`) if new.
    fn find(tables: &mut Vec<Share<'a>>, is_for: impl Fn(&str) -> bool, name: impl FnOnce() -> String) -> usize {
        match tables.iter().position(|t| is_for(&t.table)) {
            Some(i) => i,
            None => {
                tables.push(Share {
                    table: name(),
                    encoded: Vec::new(),
                    rows: 0,
                });
                tables.len() - 1
            }
        }
    }
}
