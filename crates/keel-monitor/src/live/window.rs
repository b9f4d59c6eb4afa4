//! The live window's sample: a uniform sample of the rows inside a sliding window, in bounded
//! memory, however bursty the traffic.
//!
//! Every served row draws a random key. The window keeps the rows whose key is below a
//! *threshold*, shared by every bucket; when more than `max_rows` rows are kept, the threshold
//! drops to the median kept key and every row at or above it leaves (so the sample halves).
//! Each bucket remembers the lowest threshold it lived under, and an evaluation takes, from every
//! bucket still inside the window, the rows below the lowest of those: each row of the window is
//! then in the sample with the same probability, independently of when it came and how busy its
//! bucket was (a Bernoulli sample with a common rate). When the sample has shrunk below a quarter
//! of `max_rows` (old busy buckets left the window), a new bucket starts under a doubled
//! threshold (every row again once the window is empty), so a quiet window fills up again as
//! the old buckets leave.
//!
//! A fixed share per bucket (what this replaced) keeps `max_rows / buckets` rows of each bucket:
//! a burst inside one bucket of a long window with short steps was cut to a handful of rows
//! (120 rows in one second of a one-hour window sliding by a second kept 5), and a busy bucket
//! weighed as much as a quiet one in the comparison.

use std::collections::VecDeque;

/// Values of one column of a bucket's sample, one per kept row.
#[derive(Debug, Clone)]
pub(super) enum Buf {
    Num(Vec<f64>),
    Cat(Vec<Option<String>>),
}

impl Buf {
    fn len(&self) -> usize {
        match self {
            Buf::Num(v) => v.len(),
            Buf::Cat(v) => v.len(),
        }
    }

    fn empty_like(&self, capacity: usize) -> Buf {
        match self {
            Buf::Num(_) => Buf::Num(Vec::with_capacity(capacity)),
            Buf::Cat(_) => Buf::Cat(Vec::with_capacity(capacity)),
        }
    }

    /// Keeps the values whose row's key is below `threshold`.
    fn retain_below(&mut self, keys: &[u64], threshold: u64) {
        let mut i = 0;
        match self {
            Buf::Num(v) => v.retain(|_| {
                i += 1;
                keys[i - 1] < threshold
            }),
            Buf::Cat(v) => v.retain(|_| {
                i += 1;
                keys[i - 1] < threshold
            }),
        }
    }

    /// Appends the values of `from` whose row's key is below `threshold`.
    fn extend_below(&mut self, from: &Buf, keys: &[u64], threshold: u64) {
        match (self, from) {
            (Buf::Num(a), Buf::Num(b)) => {
                a.extend(keys.iter().zip(b).filter(|(k, _)| **k < threshold).map(|(_, v)| *v))
            }
            (Buf::Cat(a), Buf::Cat(b)) => a.extend(
                keys.iter()
                    .zip(b)
                    .filter(|(k, _)| **k < threshold)
                    .map(|(_, v)| v.clone()),
            ),
            _ => {}
        }
    }
}

/// The kept scores of one track in one bucket, each with its row's key.
#[derive(Debug, Default)]
struct Scores {
    keys: Vec<u64>,
    values: Vec<f64>,
}

#[derive(Debug)]
struct Bucket {
    start_ms: i64,
    /// Rows served in this bucket (kept or not).
    seen: u64,
    /// The lowest threshold this bucket lived under: every row of it with a key below is kept.
    threshold: u64,
    keys: Vec<u64>,
    /// Per reference column, the kept rows' values.
    rows: Vec<Buf>,
    /// Per score track.
    scores: Vec<Scores>,
}

impl Bucket {
    fn retain_below(&mut self, threshold: u64) {
        self.threshold = self.threshold.min(threshold);
        for buf in &mut self.rows {
            buf.retain_below(&self.keys, threshold);
        }
        self.keys.retain(|k| *k < threshold);
        for s in &mut self.scores {
            let mut i = 0;
            let keys = &s.keys;
            s.values.retain(|_| {
                i += 1;
                keys[i - 1] < threshold
            });
            s.keys.retain(|k| *k < threshold);
        }
    }
}

/// The rows of the window taken for one evaluation.
#[derive(Debug)]
pub(super) struct Taken {
    /// Per reference column.
    pub columns: Vec<Buf>,
    /// Per score track, its scores in the sample.
    pub scores: Vec<Vec<f64>>,
    pub rows_seen: u64,
    pub rows_kept: u64,
}

#[derive(Debug)]
pub(super) struct Window {
    window_ms: i64,
    step_ms: i64,
    max_rows: usize,
    /// An empty buffer per reference column (the shape of a bucket's rows).
    template: Vec<Buf>,
    buckets: VecDeque<Bucket>,
    /// Rows of the current (newest) bucket and later ones are kept when their key is below.
    threshold: u64,
    /// Rows kept over all buckets.
    kept: usize,
}

impl Window {
    pub fn new(window_ms: i64, step_ms: i64, max_rows: usize, template: Vec<Buf>) -> Window {
        Window {
            window_ms,
            step_ms: step_ms.max(1),
            max_rows: max_rows.max(1),
            template,
            buckets: VecDeque::new(),
            threshold: u64::MAX,
            kept: 0,
        }
    }

    /// The start of the bucket holding `now_ms`.
    pub fn bucket_start(&self, now_ms: i64) -> i64 {
        now_ms - now_ms.rem_euclid(self.step_ms)
    }

    /// Rows kept over all buckets (at most `max_rows`).
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.kept
    }

    /// The bucket of a row served at `now_ms` (a row arriving late for its step joins the newest
    /// bucket).
    fn bucket(&mut self, now_ms: i64) -> &mut Bucket {
        let start = self.bucket_start(now_ms);
        if self.buckets.back().is_none_or(|b| b.start_ms < start) {
            self.expire(now_ms);
            if self.buckets.is_empty() {
                self.threshold = u64::MAX;
            } else if self.kept <= self.max_rows / 4 {
                self.threshold = self.threshold.saturating_mul(2);
            }
            self.buckets.push_back(Bucket {
                start_ms: start,
                seen: 0,
                threshold: self.threshold,
                keys: Vec::new(),
                rows: self.template.iter().map(|b| b.empty_like(0)).collect(),
                scores: Vec::new(),
            });
        }
        self.buckets.back_mut().expect("a bucket was just ensured")
    }

    /// Counts a row served at `now_ms` with random `key` and says whether the sample keeps it.
    /// A kept row is then filled through [`Window::newest_rows`] (one value pushed per column,
    /// in column order; columns left short are padded) and closed with [`Window::finish_row`].
    pub fn admit(&mut self, now_ms: i64, key: u64) -> bool {
        let threshold = self.threshold;
        let bucket = self.bucket(now_ms);
        bucket.seen += 1;
        if key >= threshold {
            return false;
        }
        bucket.keys.push(key);
        true
    }

    /// The column buffers of the newest bucket, where an admitted row's values go.
    pub fn newest_rows(&mut self) -> &mut [Buf] {
        match self.buckets.back_mut() {
            Some(b) => &mut b.rows,
            None => &mut [],
        }
    }

    /// Closes the row admitted with `key`: pads the columns it did not carry, keeps its `score`
    /// in its track, and halves the sample when it outgrew `max_rows`.
    pub fn finish_row(&mut self, key: u64, score: Option<(usize, f64)>) {
        let Some(bucket) = self.buckets.back_mut() else {
            return;
        };
        let n = bucket.keys.len();
        for buf in &mut bucket.rows {
            match buf {
                Buf::Num(v) if v.len() < n => v.push(f64::NAN),
                Buf::Cat(v) if v.len() < n => v.push(None),
                _ => {}
            }
        }
        if let Some((track, s)) = score {
            if bucket.scores.len() <= track {
                bucket.scores.resize_with(track + 1, Scores::default);
            }
            bucket.scores[track].keys.push(key);
            bucket.scores[track].values.push(s);
        }
        self.kept += 1;
        if self.kept > self.max_rows {
            self.halve();
        }
    }

    /// Lowers the threshold to the median kept key and drops every row at or above it.
    fn halve(&mut self) {
        let mut keys: Vec<u64> = self.buckets.iter().flat_map(|b| b.keys.iter().copied()).collect();
        let target = (self.max_rows / 2).max(1).min(keys.len() - 1);
        let (_, t, _) = keys.select_nth_unstable(target);
        let t = *t;
        self.threshold = self.threshold.min(t);
        for b in &mut self.buckets {
            b.retain_below(t);
        }
        self.kept = self.buckets.iter().map(|b| b.keys.len()).sum();
    }

    /// Drops the buckets that left the window ending at `now_ms`.
    fn expire(&mut self, now_ms: i64) {
        let oldest = now_ms - self.window_ms;
        while self
            .buckets
            .front()
            .is_some_and(|b| b.start_ms + self.step_ms <= oldest)
        {
            let gone = self.buckets.pop_front().expect("a front bucket");
            self.kept -= gone.keys.len();
        }
    }

    /// Drops the buckets that left the window ending at `now_ms` and takes the sample of what
    /// remains (`tracks` score tracks). `None` when the window saw fewer than `min_rows` rows or
    /// kept none.
    pub fn take(&mut self, now_ms: i64, tracks: usize, min_rows: usize) -> Option<Taken> {
        self.expire(now_ms);
        let rows_seen: u64 = self.buckets.iter().map(|b| b.seen).sum();
        if rows_seen < min_rows.max(1) as u64 {
            return None;
        }
        // Each bucket kept its rows below its own threshold: below the lowest, every bucket
        // kept every row, so the rows below it are a sample of the window at one common rate.
        let common = self.buckets.iter().map(|b| b.threshold).min()?;
        let rows_kept = self
            .buckets
            .iter()
            .map(|b| b.keys.iter().filter(|k| **k < common).count())
            .sum::<usize>();
        if rows_kept == 0 {
            return None;
        }
        let mut columns: Vec<Buf> = self.template.iter().map(|b| b.empty_like(rows_kept)).collect();
        let mut scores = vec![Vec::new(); tracks];
        for b in &self.buckets {
            for (into, from) in columns.iter_mut().zip(&b.rows) {
                into.extend_below(from, &b.keys, common);
            }
            for (into, from) in scores.iter_mut().zip(&b.scores) {
                into.extend(
                    from.keys
                        .iter()
                        .zip(&from.values)
                        .filter(|(k, _)| **k < common)
                        .map(|(_, v)| *v),
                );
            }
        }
        debug_assert!(columns.iter().all(|c| c.len() == rows_kept));
        Some(Taken {
            columns,
            scores,
            rows_seen,
            rows_kept: rows_kept as u64,
        })
    }
}
