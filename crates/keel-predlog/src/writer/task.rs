//! The writer task: polls the channel and the lanes, batches, hands each table's share to the
//! sink with retries, and publishes the lanes' counts beside it.

use super::*;

pub(super) struct Writer {
    pub(super) rx: mpsc::Receiver<Entry>,
    /// A sender of the same channel, for its depth only (the writer closes `rx` at shutdown).
    pub(super) tx: mpsc::Sender<Entry>,
    pub(super) lanes: Arc<Lanes>,
    pub(super) sink: Arc<dyn Sink>,
    pub(super) config: LogConfig,
    pub(super) metrics: Metrics,
    pub(super) shared: Arc<Shared>,
    pub(super) stop: CancellationToken,
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
    pub(super) async fn run(mut self) {
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
