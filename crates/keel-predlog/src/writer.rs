//! The bounded batching writer.
//!
//! Serving calls [`PredictionLog::log`], which never waits: the entry goes into a bounded
//! channel, or, when the channel is full, is dropped and counted. A writer thread with its
//! own single-threaded runtime drains the channel, batches entries until `batch_rows` rows or
//! `flush` time, and hands each table's share to the [`Sink`]. A failed write is counted,
//! logged and retried with a doubling backoff (bounded), then the batch is dropped and counted.
//! Memory is bounded by the channel (`queue` entries) plus one batch being written.
//!
//! The writer runs on its own thread so that encoding Parquet and committing to the lake never
//! occupy a serving worker. Shutdown drains the channel and flushes what it holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::record::{Entry, LabelRecord};
use crate::{PredlogError, Result};

/// Entries accepted into the queue, by kind.
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

/// Entries the queue holds by default.
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
    /// Entries the queue holds before new ones are dropped.
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

/// Where batches go (the lake, in production).
#[async_trait::async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Writes entries (all for `table`) as one commit.
    async fn write(&self, table: &str, entries: &[Entry]) -> Result<()>;
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

/// The handle serving holds: non-blocking `log`, synchronous label writes, shutdown.
pub struct PredictionLog {
    tx: mpsc::Sender<Entry>,
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
            sink,
            metrics,
            shared,
            stop,
            done: Mutex::new(Some(done_rx)),
        }))
    }

    /// Queues an entry; never waits. Returns `false` when it was dropped (queue full or closed),
    /// which is counted.
    pub fn log(&self, entry: Entry) -> bool {
        let (kind, rows) = (
            match &entry {
                Entry::Prediction(_) | Entry::Encoded(_) => &self.metrics.logged_prediction,
                Entry::Decision(_) => &self.metrics.logged_decision,
                Entry::Feedback(_) => &self.metrics.logged_feedback,
            },
            entry.rows() as u64,
        );
        match self.tx.try_send(entry) {
            Ok(()) => {
                kind.increment(1);
                bump(&self.shared.logged, 1);
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

    /// Counts so far.
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
    sink: Arc<dyn Sink>,
    config: LogConfig,
    metrics: Metrics,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Writer {
    /// The writer polls the queue every few milliseconds and drains it, instead of waiting on
    /// it: a sender then never has a waiting receiver to wake, so `log` stays a lock-free push
    /// with no system call, and the writer wakes tens of times a second, not once per entry.
    async fn run(mut self) {
        let batch_rows = self.config.batch_rows.max(1);
        let poll = self.config.flush.min(POLL);
        let mut pending: Vec<Entry> = Vec::new();
        let mut rows = 0usize;
        let mut oldest: Option<Instant> = None;
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
                while rows < batch_rows {
                    match self.rx.try_recv() {
                        Ok(entry) => {
                            rows += entry.rows();
                            pending.push(entry);
                            oldest.get_or_insert_with(Instant::now);
                        }
                        Err(_) => break,
                    }
                }
                let due = oldest.is_some_and(|t| t.elapsed() >= self.config.flush);
                if rows >= batch_rows || (due && !pending.is_empty()) {
                    self.flush(std::mem::take(&mut pending)).await;
                    (rows, oldest) = (0, None);
                    // a full batch: more may be waiting
                    continue;
                }
                break;
            }
            self.metrics.queue_depth.set(self.rx.len() as f64);
            if Instant::now() >= next_maintenance {
                if let Err(e) = self.sink.maintain().await {
                    tracing::error!(error = %e, "log maintenance (retention) failed; retried next time");
                }
                next_maintenance = Instant::now() + self.config.maintain_every;
            }
        }
        // Shutdown: take what is queued and write it.
        self.rx.close();
        while let Ok(entry) = self.rx.try_recv() {
            pending.push(entry);
        }
        if !pending.is_empty() {
            self.flush(pending).await;
        }
        self.metrics.queue_depth.set(0.0);
    }

    /// Writes each table's share of a batch, retrying failures with a bounded backoff.
    async fn flush(&self, entries: Vec<Entry>) {
        // A few tables per batch: a linear search that builds each table name once per flush,
        // not once per entry.
        let mut by_table: Vec<(String, Vec<Entry>)> = Vec::new();
        for e in entries {
            match by_table.iter_mut().find(|(table, _)| e.is_for(table)) {
                Some((_, list)) => list.push(e),
                None => by_table.push((e.table(), vec![e])),
            }
        }
        for (table, entries) in by_table {
            let rows: u64 = entries.iter().map(|e| e.rows() as u64).sum();
            let mut delay = self.config.backoff;
            let mut attempt = 0;
            loop {
                let started = Instant::now();
                match self.sink.write(&table, &entries).await {
                    Ok(()) => {
                        self.metrics.batch_duration.record(started.elapsed().as_secs_f64());
                        self.metrics.rows_written.increment(rows);
                        bump(&self.shared.rows_written, rows);
                        bump(&self.shared.batches_written, 1);
                        break;
                    }
                    Err(e) => {
                        self.metrics.write_failures.increment(1);
                        bump(&self.shared.write_failures, 1);
                        if attempt >= self.config.retries {
                            self.metrics.dropped_failed.increment(rows);
                            bump(&self.shared.dropped_write_failed, rows);
                            tracing::error!(table, rows, attempts = attempt + 1, error = %e,
                                "prediction log batch dropped after its retries; serving is unaffected");
                            break;
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
}
