//! Timelines kept up to date as their logs grow ([`Timelines`]): a warm read costs what was
//! appended since the last one, not the log's length.
//!
//! A folder log is followed by its byte position ([`Mark`]): the file holding the last record
//! read (named by its first record's sequence number) and the byte after that record, with
//! that record's line (length and hash). A warm read checks that the same line still ends at
//! that byte (not so: the log was cut back, removed or started again under the same name), opens
//! the file there, and goes on into any segment and active file that came after it (the active
//! file is rolled into `segments/<first seq>.jsonl` when it is full). The records read must
//! continue the sequence from the last one read, as in any read of the log. Anything else is
//! read again from the start, so the figures are always those of a fresh read.
//!
//! A new bucket size is derived from a size already followed when that can be done exactly (a
//! coarser size that is a multiple of the followed one, or `auto` from a ladder size it has
//! outgrown): the buckets are merged and the decisions waiting for a reward re-keyed, exactly as
//! `auto` coarsens while reading, instead of reading the log again.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use super::{BucketSize, Builder, Timeline, read_file_log};
use crate::logfile::{self, Continuity, LogCheck, LogRead};
use crate::offline::{OfflineError, Result};

/// Where a followed folder log was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    /// The continuity of the records read (the last one's sequence number; whether framed
    /// records were seen).
    pub(super) last_seq: u64,
    pub(super) framed_seen: bool,
    /// The file holding the last record read, by its first record's sequence number (a
    /// closed segment's name).
    pub(super) file_first: u64,
    /// The byte just after the last record read.
    pub(super) offset: u64,
    /// That record's line: its length and hash (the log is the one read before only if the
    /// same line is still there).
    pub(super) tail_len: u64,
    pub(super) tail_hash: u64,
}

/// A record's line longer than this ends no mark (its log is read whole each time).
const MAX_TAIL: u64 = 1 << 20;

fn read_err(path: &Path, e: std::io::Error) -> OfflineError {
    crate::DeploymentError::Log(format!("cannot read {}: {e}", path.display())).into()
}

/// `len` bytes of `path` from byte `from` (fewer if the file is shorter; none if it is gone).
fn bytes_at(path: &Path, from: u64, len: u64) -> Result<Vec<u8>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(path, e)),
    };
    let mut buf = Vec::new();
    file.seek(SeekFrom::Start(from)).map_err(|e| read_err(path, e))?;
    file.take(len).read_to_end(&mut buf).map_err(|e| read_err(path, e))?;
    Ok(buf)
}

/// The line of `path` that ends at byte `end`: its length and hash (`None` if there is none
/// within [`MAX_TAIL`] bytes, or the file is shorter or gone).
fn tail(path: &Path, end: u64) -> Result<Option<(u64, u64)>> {
    let from = end.saturating_sub(MAX_TAIL);
    let buf = bytes_at(path, from, end - from)?;
    if buf.len() as u64 != end - from || buf.last() != Some(&b'\n') {
        return Ok(None);
    }
    let start = match buf[..buf.len() - 1].iter().rposition(|b| *b == b'\n') {
        Some(at) => at + 1,
        None if from == 0 => 0,
        None => return Ok(None),
    };
    let line = &buf[start..];
    Ok(Some((line.len() as u64, xxh3_64(line))))
}

/// Whether the line that ended at the mark is still there, the same, in `path`.
fn still_there(path: &Path, mark: &Mark) -> Result<bool> {
    let Some(from) = mark.offset.checked_sub(mark.tail_len) else {
        return Ok(false);
    };
    let line = bytes_at(path, from, mark.tail_len)?;
    Ok(line.len() as u64 == mark.tail_len && xxh3_64(&line) == mark.tail_hash)
}

/// The mark after record `last_seq` of the file `path` (whose first record is `first`), which
/// ends at byte `offset`.
fn mark_at(path: &Path, first: u64, last_seq: u64, framed_seen: bool, offset: u64) -> Result<Option<Mark>> {
    Ok(tail(path, offset)?.map(|(tail_len, tail_hash)| Mark {
        last_seq,
        framed_seen,
        file_first: first,
        offset,
        tail_len,
        tail_hash,
    }))
}

/// The mark after a read of a whole log: the last file that holds a record.
pub(super) fn mark_of(read: &LogRead) -> Result<Option<Mark>> {
    let framed_seen = read.files.iter().any(|f| f.records > f.legacy_records);
    let Some(file) = read.files.iter().rev().find(|f| f.last_seq.is_some()) else {
        return Ok(None);
    };
    let (Some(first), Some(last)) = (file.first_seq, file.last_seq) else {
        return Ok(None);
    };
    mark_at(&file.path, first, last, framed_seen, file.good_bytes)
}

/// Reads what the folder log `dir` holds after `mark` into `b`; the new mark, or `None` when
/// the log is no longer the one followed, or the new place cannot be marked (then read the
/// log whole next time; after `None`, `b` is spoilt).
pub(super) fn read_after(dir: &Path, mark: Mark, b: &mut Builder) -> Result<Option<Mark>> {
    let segments = logfile::segments(dir)?;
    // The file holding the mark: a segment when the active file was rolled since.
    let mut files: Vec<(PathBuf, u64, bool, Option<u64>)> =
        match segments.iter().position(|(first, _)| *first == mark.file_first) {
            Some(at) => {
                let mut f: Vec<_> = segments[at..]
                    .iter()
                    .map(|(first, p)| (p.clone(), 0, false, Some(*first)))
                    .collect();
                f[0].1 = mark.offset;
                f
            }
            None => Vec::new(),
        };
    files.push((logfile::active_path(dir), 0, true, None));
    if files.len() == 1 {
        files[0].1 = mark.offset;
    }
    if !still_there(&files[0].0, &mark)? {
        return Ok(None);
    }
    let mut cont = Continuity {
        last_seq: Some(mark.last_seq),
        framed_seen: mark.framed_seen,
    };
    let mut now = Some(mark);
    for (i, (path, start, active, named)) in files.into_iter().enumerate() {
        let mut failed = None;
        let check: LogCheck = logfile::scan_file_from(&path, start, &mut cont, 0, active, |e| {
            b.event(e).map_err(|err| {
                let stop = crate::DeploymentError::Log(err.to_string());
                failed = Some(err);
                stop
            })
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        if check.bytes < start || check.damage.is_some() {
            return Ok(None);
        }
        let Some(last) = check.last_seq else {
            continue;
        };
        let first = if i == 0 {
            mark.file_first
        } else {
            match (named, check.first_seq) {
                (Some(n), Some(f)) if n != f => return Ok(None),
                (_, Some(f)) => f,
                (_, None) => return Ok(None),
            }
        };
        now = mark_at(&path, first, last, cont.framed_seen, check.good_bytes)?;
    }
    Ok(now)
}

/// Reads the whole folder log `dir` into a new fold at `size`; the fold and its mark.
pub(super) fn read_whole(dir: &Path, size: BucketSize) -> Result<(Builder, Option<Mark>)> {
    let mut b = Builder::new(size);
    let read = read_file_log(dir, 0, &mut b)?;
    let mark = mark_of(&read)?;
    Ok((b, mark))
}

/// Where one followed log is kept (empty until first read, or after a failed read).
type Slot = Arc<tokio::sync::Mutex<Option<Follower>>>;

/// One followed log: the fold so far and where it stopped.
#[derive(Clone)]
pub(super) struct Follower {
    pub(super) builder: Builder,
    /// The last record taken (PostgreSQL logs are read on from it).
    pub(super) last_seq: u64,
    /// Where a folder log stopped (`None`: read it whole next time).
    pub(super) mark: Option<Mark>,
}

/// Timelines kept up to date as the logs grow: the first call for a deployment and bucket size
/// reads its whole log (or derives it from a size already followed, see the module docs), later
/// ones only the records appended since (the figures are the same as a fresh read's: the fold
/// takes one record at a time either way). The console and the API each hold one. At most
/// [`FOLLOWED`] are kept; past that the oldest entry is dropped.
#[derive(Default)]
pub struct Timelines {
    followed: std::sync::Mutex<Vec<((String, BucketSize), Slot)>>,
}

/// Logs followed by one [`Timelines`] at most.
pub const FOLLOWED: usize = 32;

impl Timelines {
    pub fn new() -> Timelines {
        Timelines::default()
    }

    fn entry(&self, name: &str, size: BucketSize) -> Slot {
        let key = (name.to_owned(), size);
        let Ok(mut all) = self.followed.lock() else {
            return Arc::default();
        };
        if let Some((_, f)) = all.iter().find(|(k, _)| *k == key) {
            return f.clone();
        }
        if all.len() >= FOLLOWED {
            all.remove(0);
        }
        let f: Slot = Arc::default();
        all.push((key, f.clone()));
        f
    }

    /// The fold of `name` at `size`, derived from another size followed for it, if one can be
    /// derived exactly and is not being read right now.
    fn derived(&self, name: &str, size: BucketSize) -> Option<Result<Follower>> {
        let others: Vec<Slot> = {
            let all = self.followed.lock().ok()?;
            all.iter()
                .filter(|((n, s), _)| n == name && *s != size)
                .map(|(_, f)| f.clone())
                .collect()
        };
        others.into_iter().find_map(|slot| {
            let guard = slot.try_lock().ok()?;
            let f = guard.as_ref()?;
            let builder = f.builder.derive(size)?;
            Some(builder.map(|builder| Follower {
                builder,
                last_seq: f.last_seq,
                mark: f.mark,
            }))
        })
    }

    /// Reads on every followed timeline, and starts following the `auto` timeline of every
    /// running deployment not followed yet (while fewer than [`FOLLOWED`] are), so that a
    /// page view finds only the last moments' records to read. A timeline that cannot be read
    /// is left to the next view, which says why.
    pub async fn refresh(&self, deployments: &crate::Deployments) {
        let mut keys: Vec<(String, BucketSize)> = match self.followed.lock() {
            Ok(all) => all.iter().map(|(k, _)| k.clone()).collect(),
            Err(_) => return,
        };
        for name in deployments.names() {
            if keys.len() < FOLLOWED && !keys.iter().any(|(n, _)| *n == name) {
                keys.push((name, BucketSize::Auto));
            }
        }
        for (name, size) in keys {
            if let Err(e) = self.of_running(deployments, &name, size).await {
                tracing::debug!(deployment = %name, error = %e, "timeline not refreshed");
            }
        }
    }

    /// Calls [`Timelines::refresh`] now and then every `every` on a task of the current
    /// runtime, until these timelines are dropped (or the runtime stops).
    pub fn keep_current(self: &Arc<Self>, deployments: Arc<crate::Deployments>, every: std::time::Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let timelines = Arc::downgrade(self);
        runtime.spawn(async move {
            while let Some(t) = timelines.upgrade() {
                t.refresh(&deployments).await;
                drop(t);
                tokio::time::sleep(every).await;
            }
        });
    }

    /// The timeline of running deployment `name` (its current spec), from its log wherever it
    /// lives: PostgreSQL when the store is PostgreSQL (read in pages), else its folder (on a
    /// blocking thread).
    pub async fn of_running(&self, deployments: &crate::Deployments, name: &str, size: BucketSize) -> Result<Timeline> {
        let engine = deployments.get(name)?;
        let spec = engine.with_inner(|inner| inner.spec.clone())?;
        let entry = self.entry(name, size);
        let mut slot = entry.lock().await;
        let known = match slot.take() {
            Some(f) => Some(f),
            None => self.derived(name, size).transpose()?,
        };
        let follower = match deployments.store().postgres_pool() {
            Some(pool) => {
                let (mut builder, after) = match known {
                    Some(f) => (f.builder, f.last_seq),
                    None => (Builder::new(size), 0),
                };
                let after = crate::pglog::archive::read_history(&pool, &engine.dir, name, after, |event| {
                    builder.event(event)?;
                    Ok::<_, OfflineError>(true)
                })
                .await?;
                Follower {
                    builder,
                    last_seq: after,
                    mark: None,
                }
            }
            None => {
                let dir = engine.log_path().parent().map(Path::to_path_buf).unwrap_or_default();
                tokio::task::spawn_blocking(move || follow_dir(&dir, size, known))
                    .await
                    .map_err(|_| OfflineError::Task("timeline"))??
            }
        };
        let timeline = follower.builder.finish(name, &spec);
        *slot = Some(follower);
        Ok(timeline)
    }
}

/// Reads the folder log `dir` on from `known` (where a fold stopped), or whole.
pub(super) fn follow_dir(dir: &Path, size: BucketSize, known: Option<Follower>) -> Result<Follower> {
    if let Some(Follower {
        mut builder,
        mark: Some(mark),
        ..
    }) = known
        && let Some(mark) = read_after(dir, mark, &mut builder)?
    {
        return Ok(Follower {
            builder,
            last_seq: mark.last_seq,
            mark: Some(mark),
        });
    }
    let (builder, mark) = read_whole(dir, size)?;
    Ok(Follower {
        builder,
        last_seq: mark.map_or(0, |m| m.last_seq),
        mark,
    })
}

/// The timeline of running deployment `name`, read whole (see [`Timelines`] to follow it).
pub async fn of_running(deployments: &crate::Deployments, name: &str, size: BucketSize) -> Result<Timeline> {
    Timelines::new().of_running(deployments, name, size).await
}
