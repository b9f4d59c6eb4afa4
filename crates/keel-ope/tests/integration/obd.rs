//! The Open Bandit Dataset reader on the dataset's first rows and on malformed files.

use std::io::Write;
use std::path::{Path, PathBuf};

use keel_ope::{OpeError, read_item_context_csv, read_obd_csv};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn write_csv(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".csv").tempfile().expect("temp file");
    f.write_all(text.as_bytes()).expect("write temp file");
    f
}

#[test]
fn reads_obd_rows_like_obp() {
    let obd = read_obd_csv(&fixture("obd_random_all_head.csv")).unwrap();
    let log = &obd.log;
    assert_eq!(log.n_rounds(), 6);
    assert_eq!(log.actions, [14, 14, 27, 48, 36, 4]);
    // positions 3, 3, 3, 2, 2, 1 -> dense rank - 1
    assert_eq!(log.positions.as_deref(), Some(&[2, 2, 2, 1, 1, 0][..]));
    assert_eq!(log.len_list(), 3);
    assert_eq!(log.n_actions, 49);
    assert_eq!(log.rewards, [0.0; 6]);
    assert_eq!(log.propensities, [0.0125; 6]);
    assert_eq!(log.timestamps.as_ref().unwrap()[0], 1_574_553_634_762_830);
    assert_eq!(obd.lines, [2, 3, 4, 5, 6, 7]);
    // user_feature_0 has 2 categories -> 1 column, _1: 2 -> 1, _2: 4 -> 3, _3: 3 -> 2.
    assert_eq!(obd.context_columns.len(), 7);
    assert_eq!(
        obd.context_columns[0],
        "user_feature_0_81ce123cbb5bd8ce818f60fb3586bba5"
    );
    let ctx = log.contexts.as_ref().unwrap();
    assert_eq!(ctx[0][..2], [1.0, 0.0]);
    assert_eq!(ctx[5][..2], [0.0, 1.0]);
    assert!(ctx.iter().all(|c| c.len() == 7));
    assert_eq!(obd.affinities[0].len(), 80);
}

#[test]
fn reads_item_context_like_obp() {
    let items = read_item_context_csv(&fixture("obd_item_context_head.csv")).unwrap();
    assert_eq!(items.item_ids, [0, 1, 2]);
    assert_eq!(
        items.columns,
        ["item_feature_1", "item_feature_2", "item_feature_3", "item_feature_0"]
    );
    // item_feature_1: 31af.. < aed7.. ; the numeric feature comes last.
    assert_eq!(items.features[0], [1.0, 0.0, 1.0, -0.49917162609493676]);
    assert_eq!(items.features[2], [0.0, 1.0, 0.0, 0.9727518552974822]);
}

const HEADER: &str = ",propensity_score,click,item_id,position,timestamp,user_feature_0\n";

#[test]
fn columns_found_by_name_and_rows_sorted_by_time() {
    let f = write_csv(&format!(
        "{HEADER}0,0.5,1,1,2,2020-01-01 00:00:02+00:00,x\n1,0.25,0,0,1,2020-01-01 00:00:01+00:00,y\n2,1,1,2,2,2020-01-01 00:00:01+00:00,x\n"
    ));
    let obd = read_obd_csv(f.path()).unwrap();
    assert_eq!(obd.log.actions, [0, 2, 1]);
    assert_eq!(obd.lines, [3, 4, 2]);
    assert_eq!(obd.log.positions.as_deref(), Some(&[0, 1, 1][..]));
    assert_eq!(obd.log.rewards, [0.0, 1.0, 1.0]);
    assert_eq!(obd.context_columns, ["user_feature_0_y"]);
    assert_eq!(obd.log.contexts.unwrap(), [vec![1.0], vec![0.0], vec![0.0]]);
}

fn err_of(body: &str) -> OpeError {
    let f = write_csv(&format!("{HEADER}{body}"));
    read_obd_csv(f.path()).expect_err("malformed file must be refused")
}

#[test]
fn malformed_rows_name_line_and_column() {
    let ok = "0,0.5,1,1,1,2020-01-01 00:00:02+00:00,x\n";
    let cases = [
        ("1,0,1,1,1,2020-01-01 00:00:02+00:00,x\n", "line 3", "propensity_score"),
        (
            "1,1.5,1,1,1,2020-01-01 00:00:02+00:00,x\n",
            "line 3",
            "propensity_score",
        ),
        ("1,0.5,nan,1,1,2020-01-01 00:00:02+00:00,x\n", "line 3", "click"),
        ("1,0.5,1,-3,1,2020-01-01 00:00:02+00:00,x\n", "line 3", "item_id"),
        ("1,0.5,1,1,one,2020-01-01 00:00:02+00:00,x\n", "line 3", "position"),
        ("1,0.5,1,1,1,tomorrow,x\n", "line 3", "timestamp"),
        ("1,0.5,1,1,1\n", "line 3", "fields"),
    ];
    for (bad, line, field) in cases {
        let err = err_of(&format!("{ok}{bad}"));
        let msg = err.to_string();
        assert_eq!(err.code(), "ope.invalid_file", "{msg}");
        assert!(msg.contains(line) && msg.contains(field), "{msg}");
    }
}

#[test]
fn missing_column_empty_file_and_missing_file() {
    let f = write_csv("timestamp,item_id,position,click\n");
    let err = read_obd_csv(f.path()).unwrap_err();
    assert!(
        matches!(&err, OpeError::MissingColumn { column, .. } if column == "propensity_score"),
        "{err}"
    );
    assert!(matches!(err_of(""), OpeError::EmptyLog));
    let err = read_obd_csv(Path::new("/nonexistent/obd.csv")).unwrap_err();
    assert_eq!(err.code(), "ope.io");
}

/// The Bernoulli TS log of the women campaign evaluated with uniform random: a few rows with
/// propensities down to 1e-6 carry the whole IPW estimate. keel must say do_not_trust.
#[test]
fn uniform_random_on_the_women_thompson_log_is_not_to_be_trusted() {
    use keel_ope::{ActionDist, Verdict, evaluate};
    let obd = read_obd_csv(&fixture("obd_bts_women.csv")).unwrap();
    let log = &obd.log;
    assert_eq!((log.n_rounds(), log.n_actions, log.len_list()), (10_000, 46, 3));
    let n = log.n_rounds();
    let uniform = ActionDist::tiled(n, &vec![vec![1.0 / 46.0; 3]; 46]).unwrap();
    let q_hat = ActionDist::tiled(n, &vec![vec![log.mean_reward(); 3]; 46]).unwrap();
    let estimates = evaluate(log, &uniform, Some(&q_hat)).unwrap();
    assert_eq!(estimates.len(), 7);
    let raw = estimates[0].diagnostics.raw_weights;
    assert!(raw.max > 20_000.0, "{raw:?}");
    assert!((raw.max - (1.0 / 46.0) / 1e-6).abs() < 1e-6, "{raw:?}");
    assert!(raw.ess > 1.5 && raw.ess < 2.5, "{raw:?}");
    // uniform puts most of its mass on items the Thompson logger almost never showed
    let rare = estimates[0].diagnostics.rare_mass;
    assert!(rare > 0.05, "{rare}");
    for e in &estimates {
        match e.name {
            // Switch-DR (tau 100) and DR-OS (lambda 1e4) tame the weights but fall back on the
            // model for the rare items; the rare-action mass alone keeps them from `trust`.
            "dm" | "switch-dr" | "dr-os" => assert_ne!(e.diagnostics.verdict, Verdict::Trust, "{e:?}"),
            _ => {
                assert_eq!(e.diagnostics.verdict, Verdict::DoNotTrust, "{e:?}");
                assert!(
                    e.diagnostics.reasons[0].starts_with("effective sample size 2."),
                    "{:?}",
                    e.diagnostics.reasons
                );
            }
        }
    }
}

/// The uniform random log evaluated with a Thompson-like candidate that spreads over every
/// item: the weights are bounded by n_actions and the estimate is trusted.
#[test]
fn a_spread_candidate_on_a_uniform_log_is_trusted() {
    use keel_ope::{ActionDist, Verdict, evaluate};
    let (n, k) = (4_000, 10);
    let actions: Vec<usize> = (0..n).map(|i| (i * 7 + i / 13) % k).collect();
    let rewards: Vec<f64> = (0..n).map(|i| f64::from(u8::from(i % 5 == 0))).collect();
    let log = keel_ope::LoggedBandit::new(k, actions, rewards, vec![0.1; n]).unwrap();
    let row: Vec<f64> = (0..k).map(|a| (a + 1) as f64 / 55.0).collect();
    let pi = ActionDist::from_rows(&vec![row; n]).unwrap();
    let q = ActionDist::from_rows(&vec![vec![0.2; k]; n]).unwrap();
    for e in evaluate(&log, &pi, Some(&q)).unwrap() {
        let want = if e.name == "dm" {
            Verdict::Caution
        } else {
            Verdict::Trust
        };
        assert_eq!(e.diagnostics.verdict, want, "{}: {:?}", e.name, e.diagnostics.reasons);
        if let Some(w) = e.diagnostics.weights {
            assert!(w.max <= 10.0 / 55.0 * 10.0 + 1e-12 && w.ess > 2_500.0, "{w:?}");
        }
    }
}
