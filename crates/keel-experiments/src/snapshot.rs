//! Snapshots of a deployment's state, so a restart reads the newest snapshot and replays only
//! the log records after it, whatever the length of the history.
//!
//! A snapshot holds what the log's events built: the policy state, the counters behind the
//! report, pauses and the canary step, and the decisions whose attribution window is still
//! open (the only part that grows with traffic, bounded by the window). It is taken under the
//! deployment's lock at a sequence number `S`, written only once every record up to `S` is
//! durable (so a snapshot is never ahead of the log), and written atomically: a temporary
//! file, synced, renamed into `snapshots/<S>.snap`, and the folder synced.
//!
//! # Format
//!
//! `KEELSNP1` (8 bytes), the payload's length (u64 LE) and its XXH3-64 (u64 LE), then the
//! payload: the length of a JSON header (u32 LE), the header (sequence, revision, the spec it
//! was taken under, policy state, counters, pauses, canary step, how many decisions follow),
//! then one binary record per waiting decision: id (16 bytes), variant (u32, `u32::MAX` for no
//! action), arm (u32, `u32::MAX` for none), time (i64 ms), flags (u8: 1 hold, 2 rewarded, 4 has
//! metrics), reward (f64, present when rewarded), the context's length (u32) and numbers (f64
//! each), then, with flag 4, the number of metric values (u16) and each value's metric (u16, its
//! position in the header's `metric_names`) and value (f64); all little-endian.
//! JSON for the header because it is small and readable; binary for the decisions because
//! there may be millions and JSON would triple the size and the time (no binary serde format
//! is a dependency of the workspace, and this layout is twenty lines each way).
//!
//! # What is trusted
//!
//! A snapshot whose magic, length or checksum is wrong (a truncated or damaged file) is never
//! used: it is renamed aside (`.damaged`, nothing is deleted), a warning says so, and the
//! previous snapshot or the whole log is used instead. A snapshot taken under another spec
//! is not used either (the replay of a new spec from the log is what defines its state).

use std::path::{Path, PathBuf};

use keel_bandit::PolicyState;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

use crate::files::{atomic_write, io_err};
use crate::spec::DeploymentSpec;
use crate::state::Inner;
use crate::stats::Counters;
use crate::waiting::{NewWaiting, WaitingSet};
use crate::{DeploymentError, Result};

const MAGIC: &[u8; 8] = b"KEELSNP1";
/// Snapshots kept (the newest ones); older ones are removed once a newer one is durable.
const KEEP: usize = 2;

#[derive(Serialize, Deserialize)]
struct Header {
    seq: u64,
    revision: i64,
    last_rev: Option<i64>,
    taken_at: i64,
    spec: DeploymentSpec,
    policy: PolicyState,
    counters: Counters,
    paused: Vec<bool>,
    canary_step: usize,
    waiting: u64,
    /// Names of the metrics the decisions' records refer to by position (absent before
    /// metrics existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    metric_names: Vec<String>,
}

/// A snapshot read back.
pub(crate) struct Loaded {
    pub(crate) seq: u64,
    pub(crate) last_rev: Option<i64>,
    pub(crate) path: PathBuf,
}

/// What `keel deployment verify` says of one snapshot file.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotCheck {
    pub path: PathBuf,
    pub seq: Option<u64>,
    pub bytes: u64,
    pub waiting: Option<u64>,
    /// Why it cannot be used, if it cannot.
    pub problem: Option<String>,
}

pub(crate) fn dir_of(deployment_dir: &Path) -> PathBuf {
    deployment_dir.join("snapshots")
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}.snap")
}

/// Encodes the state at its current sequence number (under the deployment's lock: this is
/// the only part of a snapshot that holds it).
pub(crate) fn encode(inner: &Inner, last_rev: Option<i64>, taken_at: i64) -> Result<(u64, Vec<u8>)> {
    let header = Header {
        seq: inner.seq,
        revision: inner.revision,
        last_rev,
        taken_at,
        spec: inner.spec.clone(),
        policy: inner.policy.clone(),
        counters: inner.counters.clone(),
        paused: inner.paused.clone(),
        canary_step: inner.canary_step,
        waiting: inner.waiting.len() as u64,
        metric_names: inner.waiting.metric_table().0.to_vec(),
    };
    let values = inner.waiting.metric_table().1;
    let json = serde_json::to_vec(&header).map_err(|e| DeploymentError::Log(format!("encoding a snapshot: {e}")))?;
    let mut payload = Vec::with_capacity(4 + json.len() + inner.waiting.len() * 48);
    payload.extend_from_slice(&(json.len() as u32).to_le_bytes());
    payload.extend_from_slice(&json);
    for (w, x, _) in inner.waiting.iter() {
        payload.extend_from_slice(&WaitingSet::id_of(w).as_u128().to_le_bytes());
        payload.extend_from_slice(&w.variant().map_or(u32::MAX, |v| v as u32).to_le_bytes());
        payload.extend_from_slice(&w.arm().map_or(u32::MAX, |a| a as u32).to_le_bytes());
        payload.extend_from_slice(&w.ts.to_le_bytes());
        let reward = w.reward();
        let metrics = values.get(&WaitingSet::id_of(w)).filter(|m| !m.is_empty());
        let flags = u8::from(w.hold) | (u8::from(reward.is_some()) << 1) | (u8::from(metrics.is_some()) << 2);
        payload.push(flags);
        if let Some(r) = reward {
            payload.extend_from_slice(&r.to_le_bytes());
        }
        payload.extend_from_slice(&(x.len() as u32).to_le_bytes());
        for v in x {
            payload.extend_from_slice(&v.to_le_bytes());
        }
        if let Some(metrics) = metrics {
            payload.extend_from_slice(&(metrics.len() as u16).to_le_bytes());
            for (at, value) in metrics {
                payload.extend_from_slice(&at.to_le_bytes());
                payload.extend_from_slice(&value.to_le_bytes());
            }
        }
    }
    let mut out = Vec::with_capacity(24 + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok((inner.seq, out))
}

/// Writes a snapshot atomically and removes the older ones beyond the newest [`KEEP`].
pub(crate) fn write(deployment_dir: &Path, seq: u64, bytes: &[u8]) -> Result<PathBuf> {
    let dir = dir_of(deployment_dir);
    std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
    let path = dir.join(file_name(seq));
    atomic_write(&path, bytes)?;
    prune(&dir);
    Ok(path)
}

/// Snapshot files by sequence number, oldest first (temporary and damaged files left out).
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("read", dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(seq) = name.strip_suffix(".snap").and_then(|s| s.parse::<u64>().ok()) {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The sequence number of the oldest snapshot kept (none: no snapshot): what a start may fall
/// back to, so the log before it is never needed again.
pub(crate) fn oldest_kept(deployment_dir: &Path) -> Result<Option<u64>> {
    Ok(list(&dir_of(deployment_dir))?.first().map(|(seq, _)| *seq))
}

fn prune(dir: &Path) {
    let Ok(all) = list(dir) else { return };
    if all.len() <= KEEP {
        return;
    }
    for (_, path) in &all[..all.len() - KEEP] {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove an old snapshot");
        }
    }
    // Leftovers of a write a crash cut short.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".snap.tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Reads and checks one snapshot file: its header and its waiting decisions.
fn decode(bytes: &[u8]) -> std::result::Result<(Header, WaitingSet), String> {
    if bytes.len() < 24 || &bytes[..8] != MAGIC {
        return Err(format!(
            "not a keel snapshot ({} bytes, no KEELSNP1 header)",
            bytes.len()
        ));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().map_err(|_| "short header")?);
    let hash = u64::from_le_bytes(bytes[16..24].try_into().map_err(|_| "short header")?);
    let payload = &bytes[24..];
    if payload.len() as u64 != len {
        return Err(format!(
            "truncated or extended: {} payload bytes, the header says {len}",
            payload.len()
        ));
    }
    if xxh3_64(payload) != hash {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader { bytes: payload, at: 0 };
    let json_len = r.u32()? as usize;
    let header: Header =
        serde_json::from_slice(r.take(json_len)?).map_err(|e| format!("unreadable snapshot header: {e}"))?;
    let mut decoded = Vec::with_capacity(header.waiting.min(1 << 24) as usize);
    let mut metrics = Vec::new();
    for _ in 0..header.waiting {
        let id = Uuid::from_u128(u128::from_le_bytes(r.take(16)?.try_into().map_err(|_| "short id")?));
        let variant = r.u32()?;
        let arm = r.u32()?;
        let ts = r.i64()?;
        let flags = r.take(1)?[0];
        let reward = if flags & 2 != 0 { Some(r.f64()?) } else { None };
        let n = r.u32()? as usize;
        let x = (0..n).map(|_| r.f64()).collect::<std::result::Result<Vec<_>, _>>()?;
        if flags & 4 != 0 {
            for _ in 0..r.u16()? {
                metrics.push((id, r.u16()?, r.f64()?));
            }
        }
        let new = NewWaiting {
            ts,
            variant: (variant != u32::MAX).then_some(variant as usize),
            arm: (arm != u32::MAX).then_some(arm as usize),
            hold: flags & 1 != 0,
            reward,
        };
        decoded.push((id, new, x));
    }
    // Windows close in time order (snapshots before the waiting set was a queue listed the
    // decisions in a hash map's order).
    decoded.sort_by_key(|(id, new, _)| (new.ts, *id));
    let mut waiting = WaitingSet::default();
    for (id, new, x) in decoded {
        waiting.insert(id, new, &x);
    }
    waiting.restore_metric_names(header.metric_names.clone());
    for (id, at, value) in metrics {
        if !waiting.restore_metric(id, at, value) {
            return Err(format!(
                "decision {id} has a value of metric #{at}, which the header does not name"
            ));
        }
    }
    if r.at != payload.len() {
        return Err(format!("{} bytes after the last decision", payload.len() - r.at));
    }
    Ok((header, waiting))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!("ends early (at byte {} of {})", self.at, self.bytes.len()));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u16(&mut self) -> std::result::Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().map_err(|_| "short")?))
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "short")?))
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "short")?))
    }
    fn f64(&mut self) -> std::result::Result<f64, String> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "short")?))
    }
}

/// Moves a snapshot that cannot be used aside, keeping its bytes.
fn set_aside(path: &Path, why: &str) {
    let aside = path.with_extension(format!(
        "snap.damaged-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    tracing::warn!(path = %path.display(), moved_to = %aside.display(), reason = why, "a snapshot cannot be used; it is set aside and the log is replayed from an earlier point");
    if let Err(e) = std::fs::rename(path, &aside) {
        tracing::warn!(path = %path.display(), error = %e, "cannot set the snapshot aside");
    }
}

/// Whether the state a snapshot holds is the state replaying its log under `spec` would
/// build: the same variants, context and policy (type and parameters), and the same report
/// buckets. Other parts of a spec (alerts, SLO, guardrails, control share, window, monitor,
/// description) do not enter the state: a revision that changes only them restarts from the
/// snapshot.
fn reusable(taken_under: &DeploymentSpec, spec: &DeploymentSpec) -> bool {
    crate::state::compatible(taken_under, spec)
        && taken_under.policy == spec.policy
        && taken_under.report_bucket_seconds == spec.report_bucket_seconds
}

/// Restores the newest usable snapshot into `inner` (built for `spec`); `None` when there is
/// none (then the whole log is replayed). Snapshots numbered above `below` are not
/// considered (the caller found them ahead of the log). `read_only` callers (a report while a
/// server runs) never move files.
pub(crate) fn restore(
    deployment_dir: &Path,
    spec: &DeploymentSpec,
    inner: &mut Inner,
    below: u64,
    read_only: bool,
) -> Result<Option<Loaded>> {
    let dir = dir_of(deployment_dir);
    for (seq, path) in list(&dir)?.into_iter().rev() {
        if seq > below {
            continue;
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("read", &path, e)),
        };
        let (header, waiting) = match decode(&bytes) {
            Ok(d) => d,
            Err(why) => {
                if !read_only {
                    set_aside(&path, &why);
                }
                continue;
            }
        };
        if header.seq != seq {
            if !read_only {
                set_aside(&path, "its name and its contents disagree");
            }
            continue;
        }
        let Some(last_rev) = install(header, waiting, spec, inner) else {
            // A spec whose state would differ: replaying the log under it defines the state.
            tracing::info!(path = %path.display(), "the newest snapshot was taken under a spec that learns differently; replaying the log");
            return Ok(None);
        };
        return Ok(Some(Loaded {
            seq: inner.seq,
            last_rev,
            path,
        }));
    }
    Ok(None)
}

/// What a snapshot read from bytes (PostgreSQL's `deployment_snapshots`) gave.
pub(crate) enum FromBytes {
    /// Restored: its sequence number and the revision of the last `Revision` before it.
    Restored { seq: u64, last_rev: Option<i64> },
    /// Taken under a spec that learns differently: the log is replayed instead.
    OtherSpec,
}

/// Restores the snapshot `bytes` (numbered `seq`) into `inner`; an error saying why it cannot
/// be used (damaged, or not the snapshot `seq`).
pub(crate) fn restore_bytes(
    bytes: &[u8],
    seq: u64,
    spec: &DeploymentSpec,
    inner: &mut Inner,
) -> std::result::Result<FromBytes, String> {
    let (header, waiting) = decode(bytes)?;
    if header.seq != seq {
        return Err(format!("it is numbered {seq} but holds the state at {}", header.seq));
    }
    Ok(match install(header, waiting, spec, inner) {
        Some(last_rev) => FromBytes::Restored { seq, last_rev },
        None => FromBytes::OtherSpec,
    })
}

/// Puts a decoded snapshot's state into `inner`; `None` (and `inner` unchanged) when it was
/// taken under a spec that learns differently; else the revision of its last `Revision`.
fn install(header: Header, waiting: WaitingSet, spec: &DeploymentSpec, inner: &mut Inner) -> Option<Option<i64>> {
    if !reusable(&header.spec, spec) || header.paused.len() != spec.variants.len() {
        return None;
    }
    inner.waiting = waiting;
    inner.policy = header.policy;
    inner.counters = header.counters;
    inner.paused = header.paused;
    inner.canary_step = header.canary_step;
    inner.revision = header.revision;
    inner.seq = header.seq;
    Some(header.last_rev)
}

/// Checks one snapshot's bytes (one kept in PostgreSQL): the sequence number it covers and
/// its decisions in open windows, or why it cannot be used.
pub(crate) fn check_bytes(bytes: &[u8]) -> std::result::Result<(u64, u64), String> {
    decode(bytes).map(|(h, _)| (h.seq, h.waiting))
}

/// Checks every snapshot of a deployment without changing anything.
pub fn check_all(deployment_dir: &Path) -> Result<Vec<SnapshotCheck>> {
    let mut out = Vec::new();
    for (seq, path) in list(&dir_of(deployment_dir))? {
        let bytes = std::fs::read(&path).map_err(|e| io_err("read", &path, e))?;
        let (problem, waiting) = match decode(&bytes) {
            Ok((h, _)) if h.seq != seq => (Some("its name and its contents disagree".to_string()), None),
            Ok((h, _)) => (None, Some(h.waiting)),
            Err(why) => (Some(why), None),
        };
        out.push(SnapshotCheck {
            path,
            seq: Some(seq),
            bytes: bytes.len() as u64,
            waiting,
            problem,
        });
    }
    Ok(out)
}

/// Moves aside (never deletes) the snapshots beyond sequence `last_kept` (a repair cut the
/// log there, so they describe records no longer in it). Returns where they went.
pub(crate) fn set_aside_after(deployment_dir: &Path, last_kept: u64) -> Result<Vec<PathBuf>> {
    let mut moved = Vec::new();
    for (seq, path) in list(&dir_of(deployment_dir))? {
        if seq > last_kept {
            let aside = path.with_extension(format!(
                "snap.moved-{}",
                chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
            ));
            std::fs::rename(&path, &aside).map_err(|e| io_err("move", &path, e))?;
            moved.push(aside);
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeploymentSpec {
        DeploymentSpec::from_json(&serde_json::json!({
            "variants": [{"name": "a"}, {"name": "b"}],
            "policy": {"type": "thompson_beta"},
            "reward": {"kind": "binary", "min": 0.0, "max": 1.0, "window_seconds": 60}
        }))
        .expect("spec")
    }

    fn state() -> Inner {
        let mut inner = Inner::new(spec(), 3).expect("inner");
        for i in 0..50u128 {
            // Every fifth a unit of a no-action control group: no variant, no arm.
            let no_action = i % 5 == 0;
            let new = NewWaiting {
                ts: 1_000 + i as i64,
                variant: (!no_action).then_some((i % 2) as usize),
                arm: (!no_action).then_some((i % 2) as usize),
                hold: no_action || i % 7 == 0,
                reward: (i % 3 == 0).then_some(1.0),
            };
            // A rewarded decision's context was spent by its reward.
            let x: &[f64] = if i % 3 == 0 { &[] } else { &[0.5, -1.25] };
            inner.waiting.insert(Uuid::from_u128(i + 1), new, x);
        }
        inner.counters.exposure(Some(1), false, 1_000);
        inner.counters.reward(Some(1), false, 1.0, false);
        inner.counters.exposure(None, true, 1_000);
        inner.counters.reward(None, true, 1.0, false);
        inner.waiting.set_metric(&Uuid::from_u128(2), "revenue", 12.5);
        inner.waiting.set_metric(&Uuid::from_u128(2), "unsubscribe", 0.0);
        inner.waiting.set_metric(&Uuid::from_u128(4), "unsubscribe", 1.0);
        inner.counters.metric("revenue", Some(1), false, 12.5);
        inner.paused[1] = true;
        inner.seq = 77;
        inner
    }

    #[test]
    fn a_snapshot_restores_the_state_it_was_taken_from() {
        let dir = tempfile::tempdir().expect("dir");
        let original = state();
        let (seq, bytes) = encode(&original, Some(3), 5).expect("encode");
        write(dir.path(), seq, &bytes).expect("write");
        let mut restored = Inner::new(spec(), 3).expect("inner");
        let loaded = restore(dir.path(), &spec(), &mut restored, u64::MAX, false)
            .expect("restore")
            .expect("a snapshot");
        assert_eq!(loaded.seq, 77);
        assert_eq!(loaded.last_rev, Some(3));
        assert_eq!(restored.waiting, original.waiting);
        assert_eq!(restored.counters, original.counters);
        assert_eq!(restored.paused, original.paused);
        assert_eq!(restored.seq, 77);
        assert_eq!(restored.waiting.len(), 50);
        assert_eq!(restored.waiting.metric(&Uuid::from_u128(2), "revenue"), Some(12.5));
        assert_eq!(restored.waiting.metric(&Uuid::from_u128(4), "unsubscribe"), Some(1.0));
        assert_eq!(restored.counters.metrics["revenue"].policy[1].reward_sum, 12.5);
        let ts: Vec<i64> = restored.waiting.iter().map(|(w, _, _)| w.ts).collect();
        assert!(ts.windows(2).all(|p| p[0] <= p[1]), "in the order windows close");
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let (_, bytes) = encode(&state(), Some(3), 5).expect("encode");
        for cut in [0, 7, 8, 23, 24, 25, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} went unnoticed");
        }
        for i in (0..bytes.len()).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            assert!(decode(&damaged).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn a_damaged_newest_snapshot_is_set_aside_and_the_previous_one_used() {
        let dir = tempfile::tempdir().expect("dir");
        let mut inner = state();
        let (seq, bytes) = encode(&inner, Some(3), 5).expect("encode");
        write(dir.path(), seq, &bytes).expect("write");
        inner.seq = 90;
        let (seq2, bytes2) = encode(&inner, Some(3), 6).expect("encode");
        let newest = write(dir.path(), seq2, &bytes2[..bytes2.len() - 10]).expect("write");
        let mut restored = Inner::new(spec(), 3).expect("inner");
        let loaded = restore(dir.path(), &spec(), &mut restored, u64::MAX, false)
            .expect("restore")
            .expect("the older snapshot");
        assert_eq!(loaded.seq, 77);
        assert!(!newest.exists(), "the damaged snapshot is moved aside");
        let kept: Vec<_> = std::fs::read_dir(dir_of(dir.path()))
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".damaged-"))
            .collect();
        assert_eq!(kept.len(), 1, "its bytes are kept");
    }

    #[test]
    fn a_snapshot_of_another_policy_or_beyond_the_bound_is_not_used() {
        let dir = tempfile::tempdir().expect("dir");
        let (seq, bytes) = encode(&state(), Some(3), 5).expect("encode");
        write(dir.path(), seq, &bytes).expect("write");
        let mut other = spec();
        other.policy = keel_bandit::PolicyConfig::EpsilonGreedy { epsilon: 0.1 };
        let mut restored = Inner::new(other.clone(), 4).expect("inner");
        assert!(
            restore(dir.path(), &other, &mut restored, u64::MAX, false)
                .expect("restore")
                .is_none()
        );
        let mut restored = Inner::new(spec(), 3).expect("inner");
        assert!(
            restore(dir.path(), &spec(), &mut restored, 60, false)
                .expect("restore")
                .is_none()
        );
    }
}
