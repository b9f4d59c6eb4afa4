//! The files of a decision log: how a log is read back (its archived part from the lake, see
//! [`crate::archive`], then its segments and active file), checked ([`check`], `keel deployment
//! verify`) and cut ([`repair`], `keel deployment repair`). How one record is framed (one
//! checksummed line; lines written before framing existed are still read, see `wal`'s module
//! docs for why) is [`crate::framing`].
//!
//! Reading stops at the first record that is incomplete, fails its hash or does not parse. If
//! no valid record follows it, it is a torn tail (the unsynced end of the last write before a
//! crash, never acknowledged) and is dropped; otherwise it is damage, and nothing is dropped.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::event::Event;
use crate::framing::{Decoded, decode, framed_seq};
use crate::{DeploymentError, Result};

/// Where a log stops being readable.
#[derive(Debug, Clone, Serialize)]
pub struct Damage {
    /// Byte offset of the first bad record.
    pub offset: u64,
    /// What is wrong there.
    pub reason: String,
    /// Byte offset of the first valid record after it (none: a torn tail).
    pub next_valid: Option<u64>,
}

/// What reading a log found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogCheck {
    pub path: PathBuf,
    /// Bytes in the file when it was read.
    pub bytes: u64,
    /// Bytes of valid records from the start (where appending resumes).
    pub good_bytes: u64,
    /// Valid records before any damage.
    pub records: u64,
    /// Of which written before records carried a checksum.
    pub legacy_records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// A torn tail, dropped on start (never acknowledged).
    pub torn_tail: Option<Damage>,
    /// Damage with valid records after it: the deployment does not start.
    pub damage: Option<Damage>,
}

impl LogCheck {
    /// Whether the deployment can start on this log (a torn tail is fine).
    pub fn is_ok(&self) -> bool {
        self.damage.is_none()
    }
}

pub(crate) fn read_err(path: &Path, e: std::io::Error) -> DeploymentError {
    DeploymentError::Log(format!("cannot read {}: {e}", path.display()))
}

/// Reads the log at `path` up to its size when opened, calling `each` with every valid record
/// in order until the first bad one. A missing file is an empty log.
pub(crate) fn scan(path: &Path, each: impl FnMut(Event) -> Result<()>) -> Result<LogCheck> {
    scan_file(path, &mut Continuity::default(), 0, true, each)
}

/// What the records read so far promise the next one: its sequence number follows `last_seq`
/// (from 1 at the start of a log), and no unframed record comes after a framed one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Continuity {
    pub(crate) last_seq: Option<u64>,
    pub(crate) framed_seen: bool,
}

/// Reads one file of a log (a closed segment or the active file), checking its records
/// continue `cont`. Records up to `skip_through` are checked but not decoded nor passed to
/// `each` (they are in a snapshot). `active`: the file being appended to, the only one where a
/// bad last record is a torn tail; in a closed segment it is damage.
pub(crate) fn scan_file(
    path: &Path,
    cont: &mut Continuity,
    skip_through: u64,
    active: bool,
    each: impl FnMut(Event) -> Result<()>,
) -> Result<LogCheck> {
    scan_file_from(path, 0, cont, skip_through, active, each)
}

/// [`scan_file`] from byte `start`, where a record begins (a reader that stopped there before,
/// with `cont` as it left it, goes on; `offline::timeline` follows logs so). `good_bytes` counts
/// from the file's start; `bytes < start` says the file is no longer the one read before.
pub(crate) fn scan_file_from(
    path: &Path,
    start: u64,
    cont: &mut Continuity,
    skip_through: u64,
    active: bool,
    each: impl FnMut(Event) -> Result<()>,
) -> Result<LogCheck> {
    scan_opened(open_if_there(path)?, path, start, cont, skip_through, active, each)
}

/// `path` opened for reading; `None` when there is no such file.
fn open_if_there(path: &Path) -> Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_err(path, e)),
    }
}

/// [`scan_file_from`] on a file opened already (`None`: there was none, an empty log file).
fn scan_opened(
    file: Option<File>,
    path: &Path,
    start: u64,
    cont: &mut Continuity,
    skip_through: u64,
    active: bool,
    mut each: impl FnMut(Event) -> Result<()>,
) -> Result<LogCheck> {
    let mut check = LogCheck {
        path: path.to_path_buf(),
        ..LogCheck::default()
    };
    let Some(mut file) = file else {
        return Ok(check);
    };
    // Only what was there when opened: a writer may be appending (and a device such as
    // /dev/full reads forever).
    check.bytes = file.metadata().map_err(|e| read_err(path, e))?.len();
    if start > check.bytes {
        return Ok(check);
    }
    if start > 0 {
        file.seek(SeekFrom::Start(start)).map_err(|e| read_err(path, e))?;
        check.good_bytes = start;
    }
    let mut reader = BufReader::with_capacity(1 << 20, file.take(check.bytes - start));
    let mut line = Vec::new();
    let mut offset = start;
    let mut framed_seen = cont.framed_seen;
    let mut bad: Option<(u64, String)> = None;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| read_err(path, e))? as u64;
        if n == 0 {
            break;
        }
        let at = offset;
        offset += n;
        let decoded = match framed_seq(&line) {
            // Already in a snapshot: its checksum is checked, its JSON is not decoded.
            Some(seq) if seq <= skip_through && cont.last_seq.map_or(seq == 1, |l| seq == l + 1) && bad.is_none() => {
                cont.last_seq = Some(seq);
                framed_seen = true;
                check.records += 1;
                check.first_seq.get_or_insert(seq);
                check.last_seq = Some(seq);
                check.good_bytes = offset;
                continue;
            }
            _ => decode(&line),
        };
        if let Some((bad_at, reason)) = &bad {
            // Past a bad record: only looking for a valid one after it.
            if decoded.is_ok() {
                check.damage = Some(Damage {
                    offset: *bad_at,
                    reason: reason.clone(),
                    next_valid: Some(at),
                });
                return Ok(check);
            }
            continue;
        }
        let (event, legacy) = match decoded {
            Ok(Decoded::Framed(e)) => (e, false),
            Ok(Decoded::Legacy(e)) => (e, true),
            Err(reason) => {
                bad = Some((at, reason));
                continue;
            }
        };
        let seq = event.seq();
        let problem = match cont.last_seq {
            _ if legacy && framed_seen => Some("a record without checksum after records with one".to_string()),
            // Legacy logs only promised increasing numbers; framed records are consecutive.
            Some(last) if legacy && seq <= last => Some(format!("sequence {seq} does not follow {last}")),
            Some(last) if !legacy && seq <= last => Some(format!("sequence {seq} repeats or goes back (after {last})")),
            Some(last) if !legacy && seq != last + 1 => Some(format!(
                "sequence gap: record {seq} follows {last} (expected {})",
                last + 1
            )),
            None if !legacy && seq != 1 => Some(format!("the log starts at sequence {seq}, not 1")),
            _ => None,
        };
        if let Some(reason) = problem {
            // A valid record out of sequence is never a torn write.
            check.damage = Some(Damage {
                offset: at,
                reason,
                next_valid: Some(at),
            });
            return Ok(check);
        }
        framed_seen |= !legacy;
        cont.last_seq = Some(seq);
        cont.framed_seen = framed_seen;
        check.records += 1;
        check.legacy_records += u64::from(legacy);
        check.first_seq.get_or_insert(seq);
        check.last_seq = Some(seq);
        check.good_bytes = offset;
        each(event)?;
    }
    cont.framed_seen = framed_seen;
    if let Some((offset, reason)) = bad {
        let damage = Damage {
            offset,
            reason,
            next_valid: None,
        };
        if active {
            check.torn_tail = Some(damage);
        } else {
            // A closed segment was synced whole before the next one began.
            check.damage = Some(damage);
        }
    }
    Ok(check)
}

/// Takes the deployment folder's writer lock (`writer.lock`): one process appends to a log,
/// and `repair` refuses a log a server has open. Held while the returned file is open.
pub(crate) fn lock(deployment_dir: &Path) -> Result<Option<File>> {
    std::fs::create_dir_all(deployment_dir)
        .map_err(|e| DeploymentError::Log(format!("cannot create {}: {e}", deployment_dir.display())))?;
    let path = deployment_dir.join("writer.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| DeploymentError::Log(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(DeploymentError::LogHeld {
            path: active_path(deployment_dir),
        }),
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot lock the decision log; going on without the lock");
            Ok(None)
        }
    }
}

/// The active file of a deployment's log (under its folder): where records are appended.
pub fn active_path(deployment_dir: &Path) -> PathBuf {
    deployment_dir.join("events.jsonl")
}

/// Where closed segments go: `segments/<first sequence number, 20 digits>.jsonl`.
pub fn segments_dir(deployment_dir: &Path) -> PathBuf {
    deployment_dir.join("segments")
}

pub(crate) fn segment_path(deployment_dir: &Path, first_seq: u64) -> PathBuf {
    segments_dir(deployment_dir).join(format!("{first_seq:020}.jsonl"))
}

/// Closed segments by their first sequence number, oldest first.
pub(crate) fn segments(deployment_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let dir = segments_dir(deployment_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(&dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| read_err(&dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(first) = name.strip_suffix(".jsonl").and_then(|n| n.parse::<u64>().ok()) {
            found.push((first, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// What reading a whole log (segments and active file) found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogRead {
    /// One check per file read, oldest first (the active file last).
    pub files: Vec<LogCheck>,
    /// Records passed on (after the skip point).
    pub applied: u64,
    /// The last valid sequence number of the log.
    pub last_seq: Option<u64>,
    /// The last record archived to the lake (0: none), read from there when asked for.
    pub archived_through: u64,
}

impl LogRead {
    /// The first damage found, with its file.
    pub fn damage(&self) -> Option<(&Path, &Damage)> {
        self.files
            .iter()
            .find_map(|f| f.damage.as_ref().map(|d| (f.path.as_path(), d)))
    }

    /// The active file's check (the last one).
    pub fn active(&self) -> Option<&LogCheck> {
        self.files.last()
    }
}

/// A file's identity (device and inode): the same file under another name after a rename.
fn file_id(m: std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Reads a deployment's log from its folder: the archived records (read back from the lake:
/// [`crate::archive`]) and the closed segments holding records after `after_seq`, then the
/// active file, checking that sequence numbers run on across files; records after `after_seq`
/// go to `each`. Stops at the first damage (reported in the result, not as an error, so verify
/// can show it).
pub(crate) fn read_log(
    deployment_dir: &Path,
    after_seq: u64,
    mut each: impl FnMut(Event) -> Result<()>,
) -> Result<LogRead> {
    // The active file first: if the writer closes it into a segment while this reads, the
    // handle still reads it whole, and that segment (and any after it) is left out of the
    // listing below, so the read is a complete prefix of the log, never one with a hole.
    let active_file = open_if_there(&active_path(deployment_dir))?;
    let active_id = match &active_file {
        Some(f) => Some(file_id(
            f.metadata().map_err(|e| read_err(&active_path(deployment_dir), e))?,
        )),
        None => None,
    };
    let mut segments = segments(deployment_dir)?;
    if let Some(id) = active_id
        && let Some(rolled) = segments
            .iter()
            .position(|(_, p)| std::fs::metadata(p).is_ok_and(|m| file_id(m) == id))
    {
        segments.truncate(rolled);
    }
    // The manifest after the listing: a segment archived meanwhile is in it already (it is
    // written before the file is removed).
    let manifest = crate::archive::Manifest::read(deployment_dir)?;
    let archived = manifest.through();
    let segments: Vec<(u64, PathBuf)> = segments.into_iter().filter(|(first, _)| *first > archived).collect();
    let mut read = LogRead {
        archived_through: archived,
        ..LogRead::default()
    };
    if archived > after_seq {
        read.applied += crate::archive::read_archived(deployment_dir, &manifest, after_seq, &mut each)?;
    }
    let after_seq = after_seq.max(archived);
    // The first segment needed: the last one starting at or before `after_seq + 1`.
    let start = segments
        .iter()
        .rposition(|(first, _)| *first <= after_seq.saturating_add(1))
        .unwrap_or(0);
    let mut cont = Continuity::default();
    if let Some((first, _)) = segments.get(start)
        && start > 0
    {
        cont.last_seq = Some(first - 1);
        cont.framed_seen = true;
    } else if archived > 0 {
        cont.last_seq = Some(archived);
        cont.framed_seen = true;
    }
    let mut files: Vec<(PathBuf, bool, Option<u64>)> = segments[start.min(segments.len())..]
        .iter()
        .map(|(first, p)| (p.clone(), false, Some(*first)))
        .collect();
    files.push((active_path(deployment_dir), true, None));
    let mut active_file = active_file;
    for (path, active, named_first) in files {
        let mut applied = 0;
        let before = cont.last_seq;
        let count = |e| {
            applied += 1;
            each(e)
        };
        let check = if active {
            scan_opened(active_file.take(), &path, 0, &mut cont, after_seq, true, count)?
        } else {
            scan_file(&path, &mut cont, after_seq, false, count)?
        };
        read.applied += applied;
        if let (Some(named), Some(first)) = (named_first, check.first_seq)
            && named != first
            && check.damage.is_none()
        {
            let mut check = check;
            check.damage = Some(Damage {
                offset: 0,
                reason: format!("the segment is named for record {named} but starts at {first}"),
                next_valid: Some(0),
            });
            read.files.push(check);
            return Ok(read);
        }
        if before.is_none() && after_seq > 0 && check.first_seq.is_some_and(|f| f > after_seq + 1) {
            let mut check = check;
            check.damage = Some(Damage {
                offset: 0,
                reason: format!(
                    "records {} to {} are missing",
                    after_seq + 1,
                    check.first_seq.unwrap_or(0) - 1
                ),
                next_valid: Some(0),
            });
            read.files.push(check);
            return Ok(read);
        }
        let stop = check.damage.is_some();
        read.files.push(check);
        if stop {
            break;
        }
    }
    read.last_seq = cont.last_seq;
    Ok(read)
}

/// Checks the log at `path` without changing it (`keel deployment verify`).
pub fn check(path: &Path) -> Result<LogCheck> {
    scan(path, |_| Ok(()))
}

/// The error of a damaged log: where, what, and what to do.
pub(crate) fn damaged(path: &Path, damage: &Damage) -> DeploymentError {
    let name = path
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "NAME".to_string(), |n| n.to_string_lossy().to_string());
    DeploymentError::LogDamaged {
        path: path.display().to_string(),
        offset: damage.offset,
        reason: damage.reason.clone(),
        name,
    }
}

/// What [`repair`] moved.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    pub path: PathBuf,
    pub from_offset: u64,
    pub moved_bytes: u64,
    pub moved_to: PathBuf,
    /// The log as it reads after the repair.
    pub after: LogCheck,
}

/// Moves the bytes of the log at `path` from `from` onward into a sibling file named with the
/// time and the offset (`events.jsonl.moved-20260101T120000Z-at-1234`), then cuts the log at
/// `from`. The copy is synced before the cut, so no byte is ever only in memory. Refused while
/// a server holds the log open, and at an offset that is not the start of a line.
pub fn repair(path: &Path, from: u64) -> Result<Repair> {
    let io =
        |what: &str, p: &Path, e: std::io::Error| DeploymentError::Log(format!("cannot {what} {}: {e}", p.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    // A segment lives one folder further down than the writer's lock.
    let lock_dir = if dir.file_name().is_some_and(|n| n == "segments") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let _lock = lock(lock_dir).map_err(|_| {
        DeploymentError::InvalidRequest(format!(
            "{} is open in a running keel server; stop it before repairing the log",
            path.display()
        ))
    })?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io("open", path, e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| io("read", path, e))?;
    let len = bytes.len() as u64;
    if from >= len {
        return Err(DeploymentError::InvalidRequest(format!(
            "offset {from} is not inside {} ({len} bytes); use an offset `keel deployment verify` reports",
            path.display()
        )));
    }
    if from > 0 && bytes[from as usize - 1] != b'\n' {
        return Err(DeploymentError::InvalidRequest(format!(
            "offset {from} is not the start of a record in {}; use the offset `keel deployment verify` reports",
            path.display()
        )));
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let file_name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().to_string());
    let moved_to = path.with_file_name(format!("{file_name}.moved-{stamp}-at-{from}"));
    let mut aside = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&moved_to)
        .map_err(|e| io("create", &moved_to, e))?;
    aside
        .write_all(&bytes[from as usize..])
        .and_then(|_| aside.sync_all())
        .map_err(|e| io("write", &moved_to, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync", dir, e))?;
    }
    file.set_len(from)
        .and_then(|_| file.sync_all())
        .map_err(|e| io("cut", path, e))?;
    drop(file);
    Ok(Repair {
        path: path.to_path_buf(),
        from_offset: from,
        moved_bytes: len - from,
        moved_to,
        after: check(path)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::frame;

    fn record(seq: u64) -> Vec<u8> {
        let event = Event::Reward {
            seq,
            ts: 1_796_525_879_245,
            id: uuid::Uuid::from_u128(0x01a2_4949_6fce_7471_aaf5_74dc_1d04_ceb3),
            r: 1.0,
            default: false,
        };
        let mut out = Vec::new();
        frame(&mut out, seq, &serde_json::to_vec(&event).expect("json"));
        out
    }

    #[test]
    fn a_framed_record_reads_back() {
        let bytes = record(42);
        assert!(bytes.starts_with(b"42 "));
        match decode(&bytes) {
            Ok(Decoded::Framed(e)) => assert_eq!(e.seq(), 42),
            Ok(Decoded::Legacy(_)) => panic!("read as legacy"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn every_single_bit_flip_in_a_record_is_detected() {
        let bytes = record(1234);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                // A flip that makes a `\n` splits the line: its first part is what is read.
                let line = match damaged.iter().position(|b| *b == b'\n') {
                    Some(end) => &damaged[..=end],
                    None => &damaged[..],
                };
                assert!(decode(line).is_err(), "flip of bit {bit} of byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn a_record_moved_to_another_sequence_number_fails() {
        let bytes = record(7);
        let moved = [b"8".as_slice(), &bytes[1..]].concat();
        assert!(decode(&moved).expect_err("detected").contains("checksum"));
    }
}
