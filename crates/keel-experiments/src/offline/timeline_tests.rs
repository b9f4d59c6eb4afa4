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
        crate::logfile::frame(&mut bytes, e.seq(), &serde_json::to_vec(e).expect("json"));
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
    let last = read_file_log(&path, 0, &mut followed).expect("first read");
    assert_eq!(last, 300);
    // the log grows; only what was appended is read
    let path = write_log(dir.path(), &events);
    let last = read_file_log(&path, last, &mut followed).expect("second read");
    assert_eq!(last, 800);
    let fresh = timeline(&path, "d", &spec(), BucketSize::Auto).expect("fresh");
    assert_eq!(followed.finish("d", &spec()), fresh);
    assert_eq!(fresh.decisions, 400);
}
