//! The timeline over real log files written line by line: figures per bucket counted by hand,
//! rewards in the bucket of their decision, the holdout group apart, `auto` coarsening exactly,
//! bad bucket sizes refused with what to write, a followed log read on from where it was.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::*;

fn spec() -> DeploymentSpec {
    DeploymentSpec::from_json(&serde_json::json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "thompson_beta"}
    }))
    .expect("valid spec")
}

/// Writes `events` framed, as the log writer does (checksummed records).
fn write_log(dir: &Path, events: &[Event]) -> PathBuf {
    let path = dir.join("d");
    std::fs::create_dir_all(&path).expect("dir");
    let mut bytes = Vec::new();
    for e in events {
        crate::framing::frame(&mut bytes, e.seq(), &serde_json::to_vec(e).expect("json"));
    }
    let mut f = std::fs::File::create(crate::logfile::active_path(&path)).expect("create");
    f.write_all(&bytes).expect("write");
    path
}

fn decision(seq: u64, ts: i64, id: uuid::Uuid, v: Option<usize>, hold: bool) -> Event {
    Event::Decision {
        seq,
        ts,
        id,
        unit: None,
        run: None,
        el: Vec::new(),
        v,
        p: 0.5,
        pv: 0,
        hold,
        x: Vec::new(),
        probs: Vec::new(),
        ctx: None,
        pred: None,
        shadow: None,
    }
}

fn reward(seq: u64, ts: i64, id: uuid::Uuid, r: f64) -> Event {
    Event::Reward {
        seq,
        ts,
        id,
        r,
        default: false,
    }
}

const T0: i64 = 1_765_000_000_000;

#[test]
fn rewards_count_in_the_bucket_of_their_decision() {
    let dir = tempfile::tempdir().expect("tmp");
    let ids: Vec<uuid::Uuid> = (0..6).map(|_| uuid::Uuid::new_v4()).collect();
    let events = vec![
        Event::Revision {
            seq: 1,
            ts: T0,
            rev: 1,
            reset: true,
        },
        // minute 0: a, a, b, one held back
        decision(2, T0 + 1_000, ids[0], Some(0), false),
        decision(3, T0 + 2_000, ids[1], Some(0), false),
        decision(4, T0 + 3_000, ids[2], Some(1), false),
        decision(5, T0 + 4_000, ids[3], None, true),
        // minute 1: b
        decision(6, T0 + 61_000, ids[4], Some(1), false),
        // rewards arrive later, for decisions of both minutes
        reward(7, T0 + 90_000, ids[0], 1.0),
        reward(8, T0 + 91_000, ids[1], 0.0),
        reward(9, T0 + 92_000, ids[4], 1.0),
        reward(10, T0 + 93_000, ids[3], 1.0),
        // a reward for no decision of this log is not counted
        reward(11, T0 + 94_000, uuid::Uuid::new_v4(), 1.0),
        decision(12, T0 + 125_000, ids[5], Some(0), false),
    ];
    let path = write_log(dir.path(), &events);
    let t = timeline(&path, "d", &spec(), BucketSize::Fixed(60_000)).expect("timeline");
    assert_eq!(t.bucket_ms, 60_000);
    assert_eq!(t.variants, ["a", "b"]);
    assert_eq!((t.decisions, t.rewards), (6, 4));
    assert_eq!(
        t.revisions,
        [RevisionMark {
            at_ms: T0,
            revision: 1,
            reset: true
        }]
    );
    // T0 is not a multiple of a minute: buckets are aligned to the epoch
    let start = T0.div_euclid(60_000) * 60_000;
    let starts: Vec<i64> = t.buckets.iter().map(|b| b.start_ms).collect();
    let firsts = [T0 + 1_000, T0 + 61_000, T0 + 125_000].map(|ts| ts.div_euclid(60_000) * 60_000);
    assert_eq!(starts, firsts);
    assert_eq!(starts[0], start);
    let b0 = &t.buckets[0];
    assert_eq!(b0.decisions, 3);
    assert_eq!((b0.variants[0].decisions, b0.variants[0].rewards), (2, 2));
    assert_eq!(b0.variants[0].rate, Some(0.5));
    assert!((b0.variants[0].share - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(
        (b0.variants[1].decisions, b0.variants[1].rewards, b0.variants[1].rate),
        (1, 0, None)
    );
    assert_eq!(
        (b0.holdout.decisions, b0.holdout.rewards, b0.holdout.rate),
        (1, 1, Some(1.0))
    );
    assert_eq!(b0.holdout.share, 0.25);
    let b1 = &t.buckets[1];
    assert_eq!((b1.variants[0].decisions, b1.variants[0].share), (0, 0.0));
    assert_eq!(
        (b1.variants[1].decisions, b1.variants[1].share, b1.variants[1].rate),
        (1, 1.0, Some(1.0))
    );
    assert_eq!(
        t.buckets[2].variants[0].rate, None,
        "a decision still waiting has no rate"
    );
}

#[test]
fn auto_buckets_coarsen_exactly_and_stay_few() {
    let dir = tempfile::tempdir().expect("tmp");
    // one decision every 7 s for 3 hours, every third rewarded 1
    let mut events = Vec::new();
    let mut seq = 0;
    let mut want = (0u64, 0u64, 0.0f64);
    for i in 0..(3 * 3600 / 7) {
        let id = uuid::Uuid::new_v4();
        seq += 1;
        let v = (i % 2) as usize;
        events.push(decision(seq, T0 + i * 7_000, id, Some(v), false));
        seq += 1;
        let r = f64::from(i % 3 == 0);
        events.push(reward(seq, T0 + i * 7_000 + 500, id, r));
        want.0 += 1;
        want.1 += 1;
        want.2 += r;
    }
    let path = write_log(dir.path(), &events);
    let t = timeline(&path, "d", &spec(), BucketSize::Auto).expect("timeline");
    assert!(t.buckets.len() <= MAX_AUTO_BUCKETS, "{} buckets", t.buckets.len());
    // three hours in at most 120 buckets: two minutes is not on the ladder, five is
    assert_eq!(t.bucket_ms, 5 * MINUTE);
    assert!(t.buckets.iter().all(|b| b.start_ms % t.bucket_ms == 0));
    let decisions: u64 = t.buckets.iter().map(|b| b.decisions).sum();
    let rewards: u64 = t.buckets.iter().flat_map(|b| &b.variants).map(|c| c.rewards).sum();
    let sum: f64 = t.buckets.iter().flat_map(|b| &b.variants).map(|c| c.reward_sum).sum();
    assert_eq!((decisions, rewards, sum), want);
    // the same log with the size auto chose, given: the same buckets
    let fixed = timeline(&path, "d", &spec(), BucketSize::Fixed(t.bucket_ms)).expect("fixed");
    assert_eq!(fixed.buckets, t.buckets);
    // too small a fixed bucket is refused, saying what to do
    let many = timeline(&path, "d", &spec(), BucketSize::Fixed(SECOND)).expect_err("too many");
    assert_eq!(many.code(), "offline.invalid_argument");
    assert!(many.to_string().contains("choose a larger bucket"), "{many}");
}

#[test]
fn bucket_sizes_parse_or_say_how_to_write_them() {
    assert_eq!(BucketSize::parse("auto").expect("auto"), BucketSize::Auto);
    assert_eq!(BucketSize::parse("").expect("empty"), BucketSize::Auto);
    assert_eq!(BucketSize::parse("30s").expect("30s"), BucketSize::Fixed(30_000));
    assert_eq!(BucketSize::parse("5m").expect("5m"), BucketSize::Fixed(300_000));
    assert_eq!(BucketSize::parse("1h").expect("1h"), BucketSize::Fixed(3_600_000));
    assert_eq!(BucketSize::parse("1d").expect("1d"), BucketSize::Fixed(86_400_000));
    for bad in ["5", "m", "-1m", "0s", "1.5h", "1w", "400d", "é"] {
        let e = BucketSize::parse(bad).expect_err(bad);
        assert_eq!(e.code(), "offline.invalid_argument", "{bad}");
        assert!(e.to_string().starts_with("bucket "), "{e}");
    }
}

#[test]
fn an_empty_or_missing_log_has_no_buckets() {
    let dir = tempfile::tempdir().expect("tmp");
    let t = timeline(&dir.path().join("none"), "d", &spec(), BucketSize::Auto).expect("timeline");
    assert!(t.buckets.is_empty());
    assert_eq!((t.decisions, t.rewards), (0, 0));
}

#[test]
fn following_a_growing_log_gives_a_fresh_reads_figures() {
    let dir = tempfile::tempdir().expect("tmp");
    let ids: Vec<uuid::Uuid> = (0..400).map(|_| uuid::Uuid::new_v4()).collect();
    let mut events = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let i = i as i64;
        events.push(decision(
            2 * i as u64 + 1,
            T0 + i * 3_000,
            *id,
            Some((i % 2) as usize),
            i % 5 == 0,
        ));
        events.push(reward(
            2 * i as u64 + 2,
            T0 + i * 3_000 + 1,
            ids[(i / 2) as usize],
            (i % 3) as f64,
        ));
    }
    let path = write_log(dir.path(), &events[..300]);
    let mut followed = Builder::new(BucketSize::Auto);
    let last = read_file_log(&path, 0, &mut followed)
        .expect("first read")
        .last_seq
        .unwrap_or(0);
    assert_eq!(last, 300);
    // the log grows; only what was appended is read
    let path = write_log(dir.path(), &events);
    let last = read_file_log(&path, last, &mut followed).expect("second read").last_seq;
    assert_eq!(last, Some(800));
    let fresh = timeline(&path, "d", &spec(), BucketSize::Auto).expect("fresh");
    assert_eq!(followed.finish("d", &spec()), fresh);
    assert_eq!(fresh.decisions, 400);
}

/// A log of `n` decisions, one every 3 s, and rewards (halves and quarters, so sums are exact
/// in any order) for earlier decisions, after a revision and its spec; sequence numbers from 1.
fn history(n: usize) -> Vec<Event> {
    let mut events = vec![
        Event::Revision {
            seq: 1,
            ts: T0,
            rev: 1,
            reset: true,
        },
        Event::Spec {
            seq: 2,
            ts: T0,
            spec: Box::new(spec()),
        },
    ];
    let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::new_v4()).collect();
    for (i, id) in ids.iter().enumerate() {
        let t = T0 + i as i64 * 3_000;
        let seq = events.len() as u64 + 1;
        events.push(decision(seq, t, *id, Some(i % 2), i % 7 == 0));
        if i % 3 != 1 {
            let seq = events.len() as u64 + 1;
            events.push(reward(seq, t + 1, ids[i / 2], (i % 4) as f64 / 4.0));
        }
    }
    events
}

fn framed(events: &[Event]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for e in events {
        crate::framing::frame(&mut bytes, e.seq(), &serde_json::to_vec(e).expect("json"));
    }
    bytes
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open");
    f.write_all(bytes).expect("append");
}

/// Closes the active file into a segment named for its first record, as the log writer does.
fn roll(dir: &Path, first_seq: u64) {
    std::fs::create_dir_all(crate::logfile::segments_dir(dir)).expect("segments");
    std::fs::rename(
        crate::logfile::active_path(dir),
        crate::logfile::segment_path(dir, first_seq),
    )
    .expect("roll");
    std::fs::File::create(crate::logfile::active_path(dir)).expect("new active file");
}

fn followed(dir: &Path, size: BucketSize, known: Option<follow::Follower>) -> follow::Follower {
    follow::follow_dir(dir, size, known).expect("follow")
}

#[test]
fn a_followed_log_reads_only_the_bytes_appended_since() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = history(600);
    let path = write_log(dir.path(), &events[..400]);
    let active = crate::logfile::active_path(&path);
    let first = followed(&path, BucketSize::Auto, None);
    let mark = first.mark.expect("a mark");
    assert_eq!(first.last_seq, 400);
    // appended: read on from the byte after record 400
    append(&active, &framed(&events[400..]));
    let mut b = first.builder.clone();
    let after = follow::read_after(&path, mark, &mut b)
        .expect("read on")
        .expect("the same log");
    assert_eq!(
        (after.offset, after.last_seq),
        (std::fs::metadata(&active).expect("len").len(), events.len() as u64)
    );
    let fresh = timeline(&path, "d", &spec(), BucketSize::Auto).expect("fresh");
    assert_eq!(b.finish("d", &spec()), fresh);
    // nothing appended: nothing read, the same figures
    let again = followed(
        &path,
        BucketSize::Auto,
        Some(followed(&path, BucketSize::Auto, Some(first))),
    );
    assert_eq!(again.builder.finish("d", &spec()), fresh);
    // a mark past the end of a shorter file is not followed
    let shorter = follow::Mark {
        offset: 1 << 30,
        ..mark
    };
    let mut spoilt = Builder::new(BucketSize::Auto);
    assert_eq!(follow::read_after(&path, shorter, &mut spoilt).expect("read"), None);
}

#[test]
fn a_log_rolled_into_segments_between_reads_reads_as_a_fresh_log() {
    for size in [BucketSize::Auto, BucketSize::Fixed(MINUTE)] {
        let dir = tempfile::tempdir().expect("tmp");
        let events = history(900);
        let path = write_log(dir.path(), &events[..300]);
        let active = crate::logfile::active_path(&path);
        let fresh = |path: &Path| timeline(path, "d", &spec(), size).expect("fresh");
        let first = followed(&path, size, None);
        assert_eq!(first.builder.finish("d", &spec()), fresh(&path));
        // more records in the file the mark is in, then it is closed and two more begin
        let (b, c) = (500, 700);
        append(&active, &framed(&events[300..b]));
        roll(&path, 1);
        append(&active, &framed(&events[b..c]));
        roll(&path, b as u64 + 1);
        append(&active, &framed(&events[c..]));
        let second = followed(&path, size, Some(first));
        assert_eq!(second.last_seq, events.len() as u64);
        assert_eq!(second.builder.finish("d", &spec()), fresh(&path));
        // the mark is in the active file now; it is closed with nothing after it
        roll(&path, c as u64 + 1);
        let third = followed(&path, size, Some(second.clone()));
        assert_eq!(third.mark, second.mark, "nothing new: the same place, now in a segment");
        assert_eq!(third.builder.finish("d", &spec()), fresh(&path));
        // and records arrive in the next active file
        let more = history(1_000);
        append(&active, &framed(&more[events.len()..]));
        let fourth = followed(&path, size, Some(third));
        assert_eq!(fourth.last_seq, more.len() as u64);
        assert_eq!(fourth.builder.finish("d", &spec()), fresh(&path));
    }
}

#[test]
fn a_new_log_under_the_same_name_or_a_repaired_one_is_read_again_whole() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = history(500);
    let path = write_log(dir.path(), &events);
    let old = followed(&path, BucketSize::Auto, None);
    // another log of the same shape and length: same sequence numbers at the same bytes
    let other = history(500);
    let path = write_log(dir.path(), &other);
    let mut b = old.builder.clone();
    assert_eq!(
        follow::read_after(&path, old.mark.expect("mark"), &mut b).expect("read"),
        None
    );
    let next = followed(&path, BucketSize::Auto, Some(old.clone()));
    assert_eq!(
        next.builder.finish("d", &spec()),
        timeline(&path, "d", &spec(), BucketSize::Auto).expect("fresh")
    );
    // cut back (as `keel deployment repair` does) and grown again past the old end
    let path = write_log(dir.path(), &other[..200]);
    append(&crate::logfile::active_path(&path), &framed(&events[200..]));
    let cut = followed(&path, BucketSize::Auto, Some(next));
    assert_eq!(
        cut.builder.finish("d", &spec()),
        timeline(&path, "d", &spec(), BucketSize::Auto).expect("fresh")
    );
}

#[test]
fn a_torn_tail_is_left_for_the_next_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = history(300);
    let path = write_log(dir.path(), &events[..200]);
    let active = crate::logfile::active_path(&path);
    let rest = framed(&events[200..]);
    // half a record being written
    append(&active, &rest[..40]);
    let first = followed(&path, BucketSize::Auto, None);
    assert_eq!(first.last_seq, 200);
    append(&active, &rest[40..]);
    let second = followed(&path, BucketSize::Auto, Some(first));
    assert_eq!(second.last_seq, events.len() as u64);
    assert_eq!(
        second.builder.finish("d", &spec()),
        timeline(&path, "d", &spec(), BucketSize::Auto).expect("fresh")
    );
}

#[test]
fn other_bucket_sizes_derive_exactly_from_a_followed_one() {
    let dir = tempfile::tempdir().expect("tmp");
    // 3 s apart for 5,000 decisions: about 4 h
    let path = write_log(dir.path(), &history(5_000));
    let fresh = |size| timeline(&path, "d", &spec(), size).expect("fresh");
    let auto = followed(&path, BucketSize::Auto, None).builder;
    assert_eq!(auto.bucket_ms, 5 * MINUTE);
    for ms in [5 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, DAY] {
        let size = BucketSize::Fixed(ms);
        let derived = auto.derive(size).expect("derivable").expect("few enough buckets");
        assert_eq!(derived.finish("d", &spec()), fresh(size), "{ms}");
    }
    // not a multiple, or finer: read again
    assert!(auto.derive(BucketSize::Fixed(7 * MINUTE)).is_none());
    assert!(auto.derive(BucketSize::Fixed(MINUTE)).is_none());
    // `auto` from a fine fixed size it outgrows, not from one it may not reach
    let fine = followed(&path, BucketSize::Fixed(10 * SECOND), None).builder;
    let derived = fine.derive(BucketSize::Auto).expect("derivable").expect("auto");
    assert_eq!(derived.finish("d", &spec()), fresh(BucketSize::Auto));
    let coarse = followed(&path, BucketSize::Fixed(HOUR), None).builder;
    assert!(
        coarse.derive(BucketSize::Auto).is_none(),
        "auto is finer than an hour here"
    );
}

/// A deployment without a default reward: most decisions never get one. The decisions whose
/// window (and its grace) closed are dropped, so what the timeline keeps stays bounded by the
/// open windows, and a reward inside its window still counts in its decision's bucket. With a
/// default reward nothing is dropped: the default comes when the window closes, however late.
#[test]
fn decisions_whose_window_closed_are_not_kept_waiting() {
    let mut spec = spec();
    spec.reward.default = None;
    spec.reward.window_seconds = 60;
    let started = |spec: &DeploymentSpec| {
        let mut b = Builder::new(BucketSize::Auto);
        b.event(Event::Spec {
            seq: 1,
            ts: T0,
            spec: Box::new(spec.clone()),
        })
        .expect("spec");
        b
    };
    // 400,000 decisions 10 ms apart (4,000 s: the window and its ten minutes of grace, about
    // six times over), one in a thousand rewarded 1 s later.
    let mut b = started(&spec);
    // What may still be rewarded (window, grace and a bucket of up to 5 minutes, at 100
    // decisions a second), at most twice over between prunings.
    let open = ((60_000 + PRUNE_GRACE_MS + 5 * MINUTE) / 10) as usize;
    let bound = 2 * open.max(PRUNE_FROM);
    let (mut seq, mut rewarded) = (1, 0);
    for i in 0..400_000i64 {
        let (id, ts) = (uuid::Uuid::new_v4(), T0 + i * 10);
        seq += 1;
        b.event(decision(seq, ts, id, Some((i % 2) as usize), false))
            .expect("decision");
        if i % 1000 == 0 {
            seq += 1;
            b.event(reward(seq, ts + 1_000, id, 1.0)).expect("reward");
            rewarded += 1;
        }
        assert!(b.pending.len() <= bound, "{} waiting at decision {i}", b.pending.len());
    }
    let t = b.finish("d", &spec);
    assert_eq!((t.decisions, t.rewards), (400_000, rewarded));

    // The first decision is dropped once its window and grace are long past.
    let first = uuid::Uuid::new_v4();
    let later = T0 + 60_000 + PRUNE_GRACE_MS + 2 * MINUTE;
    let mut early = started(&spec);
    early.event(decision(2, T0, first, Some(0), false)).expect("first");
    for i in 1..=(PRUNE_FROM as i64) {
        let id = uuid::Uuid::new_v4();
        early
            .event(decision(2 + i as u64, later + i, id, Some(1), false))
            .expect("decision");
    }
    assert!(!early.pending.contains_key(&first), "its window closed 60 s after T0");

    // With a default reward it waits for it, however late.
    let mut defaulted = spec.clone();
    defaulted.reward.default = Some(0.0);
    let mut kept = started(&defaulted);
    kept.event(decision(2, T0, first, Some(0), false)).expect("first");
    for i in 1..=(PRUNE_FROM as i64) {
        let id = uuid::Uuid::new_v4();
        kept.event(decision(2 + i as u64, later + i, id, Some(1), false))
            .expect("decision");
    }
    kept.event(reward(PRUNE_FROM as u64 + 3, later + DAY, first, 0.0))
        .expect("default");
    assert_eq!(
        kept.finish("d", &defaulted).rewards,
        1,
        "the late default reward counts"
    );
}
