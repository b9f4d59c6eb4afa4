//! The weekly campaign from the command line, on real SQLite and a real lake folder: a customer
//! table decided by a contextual deployment with a control group (`keel batch decide`), every
//! output row a durably logged decision, a re-run that decides nothing, a lost output rebuilt
//! from the log without deciding again; the list exported (`keel data export`); conversions
//! ingested (`keel feedback ingest`) with exact counted/duplicate/late/refused tallies; bad input
//! refused before anything is written; and the same jobs run inside a server over REST
//! (`/v1/jobs`) with scopes, `--server`, and cancel.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Keel, assert_refused, eventually, items};

/// A contextual deployment (LinUCB on age and segment) with a 10 % control group.
fn contextual(keel: &Keel, name: &str, window_seconds: u64) {
    let spec = json!({
        "variants": [{"name": "none"}, {"name": "discount"}, {"name": "free_dessert"}],
        "policy": {"type": "lin_ucb", "alpha": 1.0, "floor": 0.05},
        "context": [
            {"name": "age", "type": "numeric"},
            {"name": "segment", "type": "categorical", "levels": ["new", "loyal", "lapsed"]}
        ],
        "control": {"variant": "none", "share": 0.1},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": window_seconds},
        "seed": 11
    });
    let path = keel.file(&format!("{name}.json"), spec.to_string());
    keel.ok(&["deployment", "apply", name, "-f", &path]);
}

/// `customers` with `n` rows (customer_id, age, segment, spend) plus `extra` CSV lines.
pub(crate) fn customers(keel: &Keel, table: &str, n: usize, extra: &[&str]) {
    let segments = ["new", "loyal", "lapsed"];
    let mut csv = String::from("customer_id,age,segment,spend\n");
    for i in 0..n {
        csv.push_str(&format!("c{i},{},{},{}.5\n", 18 + i % 60, segments[i % 3], i % 100));
    }
    for line in extra {
        csv.push_str(line);
        csv.push('\n');
    }
    let file = keel.file(&format!("{table}.csv"), csv);
    keel.json(&["data", "ingest", &file, "--table", table]);
}

/// Every decision id the deployment's log holds for `run`, read from the file itself.
fn logged_decisions(keel: &Keel, deployment: &str, run: &str) -> BTreeSet<String> {
    let dir = keel.home().join(format!("experiments/{deployment}"));
    let mut files = vec![dir.join("events.jsonl")];
    if let Ok(segments) = std::fs::read_dir(dir.join("segments")) {
        files.extend(segments.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    let text: String = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect::<Vec<_>>()
        .join("\n");
    text.lines()
        .filter_map(|line| {
            // `<seq> <xxh3> <len> <json>`
            let json = line.splitn(4, ' ').nth(3)?;
            let event: Value = serde_json::from_str(json).ok()?;
            (event["run"] == run).then(|| event["id"].as_str().map(str::to_owned))?
        })
        .collect()
}

/// Decisions the deployment's report counts: the treated traffic and the control group.
fn exposures(keel: &Keel, deployment: &str) -> u64 {
    let report = keel.json(&["experiment", "report", deployment]);
    report["treated_group"]["exposures"]
        .as_u64()
        .expect("treated exposures")
        + report["control_group"]["exposures"].as_u64().unwrap_or(0)
}

fn count(keel: &Keel, sql: &str) -> i64 {
    let rows = keel.json(&["data", "sql", sql]);
    items(&rows)[0]["n"]
        .as_i64()
        .unwrap_or_else(|| panic!("no count in {rows}"))
}

/// Chunks are decided in input order, though two are in flight at once (one chunk's log write
/// overlaps the next one's decisions): the policy's random draws follow the rows, so the same
/// table decided by the same deployment (name, spec and seed) in two fresh workspaces gets the
/// same variant per unit.
#[test]
fn the_same_table_and_seed_decide_the_same_way_chunk_after_chunk() {
    let mut picks = Vec::new();
    for _ in 0..2 {
        let keel = Keel::quiet();
        contextual(&keel, "promo", 3600);
        customers(&keel, "customers", 4000, &[]);
        let out = keel.json(&[
            "batch",
            "decide",
            "promo",
            "--from",
            "customers",
            "--unit-column",
            "customer_id",
            "--into",
            "sends",
            "--batch-rows",
            "250",
        ]);
        assert_eq!(out["decided"], 4000, "{out}");
        let rows = keel.json(&[
            "data",
            "sql",
            "SELECT unit, variant, propensity FROM sends ORDER BY unit",
        ]);
        let rows: Vec<(String, String, f64)> = items(&rows)
            .iter()
            .map(|r| {
                (
                    r["unit"].as_str().expect("unit").to_owned(),
                    r["variant"].as_str().unwrap_or("").to_owned(),
                    r["propensity"].as_f64().expect("propensity"),
                )
            })
            .collect();
        assert_eq!(rows.len(), 4000);
        picks.push(rows);
    }
    let variants: BTreeSet<&str> = picks[0].iter().map(|(_, v, _)| v.as_str()).collect();
    assert!(variants.len() >= 2, "the policy explores: {variants:?}");
    let differing: Vec<_> = picks[0].iter().zip(&picks[1]).filter(|(a, b)| a != b).collect();
    assert!(
        differing.is_empty(),
        "{} of 4000 units were decided differently, e.g. {:?}",
        differing.len(),
        &differing[..differing.len().min(5)]
    );
}

#[test]
fn a_campaign_is_decided_once_logged_rerun_and_rebuilt_from_the_log() {
    let keel = Keel::quiet();
    contextual(&keel, "promo", 3600);
    // 3000 customers, one of them twice, and one whose age is missing.
    customers(&keel, "customers", 3000, &["c7,25,new,1.5", "c_noage,,loyal,3.5"]);
    let args = [
        "batch",
        "decide",
        "promo",
        "--from",
        "customers",
        "--unit-column",
        "customer_id",
        "--into",
        "sends",
        "--batch-rows",
        "500",
    ];
    let first = keel.json(&args);
    assert_eq!(first["rows"], 3002, "{first}");
    assert_eq!(first["decided"], 3000, "{first}");
    assert_eq!(first["duplicates"], 1, "{first}");
    assert_eq!(first["refused"], 1, "{first}");
    assert_eq!(first["refusals"]["invalid_request"]["rows"], 1, "{first}");
    assert_eq!(first["refusals"]["invalid_request"]["examples"][0]["row"], "c_noage");
    assert_eq!(first["written"], 3000, "{first}");
    let run = first["run_id"].as_str().expect("run id").to_owned();
    assert_eq!(run, "promo-customers-v0");
    assert_eq!(
        exposures(&keel, "promo"),
        3000,
        "the report counts exactly the rows decided"
    );

    // Every output row is a decision of the run in the log, and the other way round.
    let rows = keel.json(&[
        "data",
        "sql",
        "SELECT unit, decision_id, variant, propensity, control, run_id FROM sends",
    ]);
    let rows = items(&rows);
    assert_eq!(rows.len(), 3000);
    let written: BTreeSet<String> = rows
        .iter()
        .map(|r| r["decision_id"].as_str().expect("id").to_owned())
        .collect();
    let units: BTreeSet<&str> = rows.iter().map(|r| r["unit"].as_str().expect("unit")).collect();
    assert_eq!(units.len(), 3000, "one row per unit");
    assert_eq!(written, logged_decisions(&keel, "promo", &run));
    // The control group: about 10 %, always the control variant, propensity at least its share.
    let control: Vec<&Value> = rows.iter().filter(|r| r["control"] == true).collect();
    assert!((150..=450).contains(&control.len()), "{} control rows", control.len());
    assert!(
        control
            .iter()
            .all(|r| r["variant"] == "none" && r["propensity"].as_f64() >= Some(0.1))
    );
    assert!(
        rows.iter()
            .all(|r| (0.0..=1.0).contains(&r["propensity"].as_f64().expect("p")))
    );

    // Re-running decides nothing and writes nothing.
    let again = keel.json(&args);
    assert_eq!(again["decided"], 0, "{again}");
    assert_eq!(again["already_written"], 3000, "{again}");
    assert_eq!(again["written"], 0, "{again}");
    assert_eq!(
        again["skipped"], 3001,
        "3000 written units and the repeated one: {again}"
    );
    assert_eq!(again["output_version"], first["output_version"]);
    assert_eq!(exposures(&keel, "promo"), 3000);
    assert_eq!(count(&keel, "SELECT count(*) AS n FROM sends"), 3000);

    // The output lost (a crash between the durable log and the output commit): the same run
    // into a fresh table writes the logged decisions without deciding again.
    let mut rebuilt_args = args.to_vec();
    rebuilt_args[8] = "sends_rebuilt";
    rebuilt_args.extend(["--run-id", &run]);
    let rebuilt = keel.json(&rebuilt_args);
    assert_eq!(rebuilt["decided"], 0, "{rebuilt}");
    assert_eq!(rebuilt["recovered"], 3000, "{rebuilt}");
    assert_eq!(exposures(&keel, "promo"), 3000, "no new decision");
    assert_eq!(
        count(
            &keel,
            "SELECT count(*) AS n FROM sends s JOIN sends_rebuilt r ON s.unit = r.unit AND s.decision_id = r.decision_id AND s.variant = r.variant"
        ),
        3000,
        "the same decisions, unit for unit"
    );

    // Lineage: customers -> deployment -> sends.
    let lineage = keel.json(&["data", "lineage", "deployment/promo"]);
    let text = lineage.to_string();
    assert!(
        text.contains("table/customers@v0") && text.contains("table/sends@v"),
        "{lineage}"
    );

    // Export: CSV and Parquet, read back; no overwrite without --force.
    let csv = keel.path("sends.csv");
    let exported = keel.json(&["data", "export", "sends", "--format", "csv", &csv]);
    assert_eq!(exported["rows"], 3000, "{exported}");
    let text = std::fs::read_to_string(&csv).expect("csv");
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .expect("header")
            .starts_with("unit,decision_id,variant,propensity")
    );
    let from_csv: BTreeSet<String> = lines.map(|l| l.split(',').nth(1).expect("id").to_owned()).collect();
    assert_eq!(from_csv, written);
    let out = keel.run(&["data", "export", "sends", "--format", "csv", &csv]);
    assert_refused(&out, "--force");
    assert_eq!(
        std::fs::read_to_string(&csv).expect("csv"),
        text,
        "the file is untouched"
    );
    keel.ok(&["data", "export", "sends@v0", "--format", "csv", &csv, "--force"]);
    let parquet = keel.path("sends.parquet");
    keel.json(&["data", "export", "sends", "--format", "parquet", &parquet]);
    keel.json(&["data", "ingest", &parquet, "--table", "sends_back"]);
    assert_eq!(
        count(
            &keel,
            "SELECT count(*) AS n FROM sends s JOIN sends_back b ON s.decision_id = b.decision_id AND s.propensity = b.propensity AND s.unit = b.unit"
        ),
        3000
    );
    let leftovers: Vec<_> = std::fs::read_dir(keel.home())
        .expect("home")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".keel-export-"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file left behind");
}

#[test]
fn conversions_are_ingested_once_with_exact_tallies() {
    let keel = Keel::quiet();
    contextual(&keel, "promo", 3600);
    contextual(&keel, "flash", 1);
    customers(&keel, "customers", 200, &[]);
    let decide = |deployment: &str, into: &str| {
        keel.json(&[
            "batch",
            "decide",
            deployment,
            "--from",
            "customers",
            "--unit-column",
            "customer_id",
            "--into",
            into,
        ])
    };
    decide("promo", "sends");
    let flash = decide("flash", "flash_sends");
    let decisions = keel.json(&["data", "sql", "SELECT unit, decision_id FROM sends ORDER BY unit"]);
    let ids: Vec<&str> = items(&decisions)
        .iter()
        .map(|r| r["decision_id"].as_str().expect("id"))
        .collect();
    // 50 conversions, one sent twice (duplicate), one with another reward (conflict), one
    // unknown decision, one reward out of range, one without a reward.
    let mut csv = String::from("decision_id,converted\n");
    for id in &ids[..50] {
        csv.push_str(&format!("{id},1\n"));
    }
    csv.push_str(&format!("{},1\n", ids[0]));
    csv.push_str(&format!("{},0\n", ids[1]));
    // An id shaped like a decision of now, which this deployment never made.
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    csv.push_str(&format!(
        "{:08x}-{:04x}-7000-8000-000000000000,1\n",
        ms >> 16,
        ms & 0xffff
    ));
    csv.push_str(&format!("{},5\n", ids[60]));
    csv.push_str(&format!("{},\n", ids[61]));
    let file = keel.file("conversions.csv", csv);
    let args = [
        "feedback",
        "ingest",
        "promo",
        "--from",
        &file,
        "--decision-column",
        "decision_id",
        "--reward-column",
        "converted",
    ];
    let first = keel.json(&args);
    let tally = |r: &Value| {
        ["rows", "counted", "duplicate", "late", "refused"]
            .map(|k| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}")))
    };
    assert_eq!(tally(&first), [55, 50, 1, 0, 4], "{first}");
    for code in [
        "conflicting_reward",
        "unknown_decision",
        "invalid_request",
        "null_reward",
    ] {
        assert_eq!(first["refusals"][code]["rows"], 1, "{code}: {first}");
    }
    let report = keel.json(&["experiment", "report", "promo"]);
    let rewards = report["treated_group"]["rewards"].as_u64().expect("rewards")
        + report["control_group"]["rewards"].as_u64().unwrap_or(0);
    assert_eq!(rewards, 50, "{report}");
    // Idempotent: the same file again counts nothing.
    let again = keel.json(&args);
    assert_eq!(tally(&again), [55, 0, 51, 0, 4], "{again}");

    // By unit and run, from a Parquet file, after the window closed: late, not counted.
    std::thread::sleep(Duration::from_millis(2100));
    keel.ok(&[
        "data", "sql", "SELECT 1", // the lake is open; now write the rewards as a table and export it
    ]);
    let mut units = String::from("customer,reward\n");
    for i in 0..10 {
        units.push_str(&format!("c{i},1\n"));
    }
    units.push_str("nobody,1\n");
    let units_csv = keel.file("flash_rewards.csv", units);
    keel.json(&["data", "ingest", &units_csv, "--table", "flash_rewards"]);
    let parquet = keel.path("flash_rewards.parquet");
    keel.json(&["data", "export", "flash_rewards", "--format", "parquet", &parquet]);
    let late = keel.json(&[
        "feedback",
        "ingest",
        "flash",
        "--from",
        &parquet,
        "--unit-column",
        "customer",
        "--run-id",
        flash["run_id"].as_str().expect("run"),
        "--reward-column",
        "reward",
    ]);
    assert_eq!(tally(&late), [11, 0, 0, 10, 1], "{late}");
    assert_eq!(late["refusals"]["window_closed"]["rows"], 10, "{late}");
    assert_eq!(
        late["refusals"]["unknown_unit"]["examples"][0]["row"], "nobody",
        "{late}"
    );

    // A missing column is refused before any reward.
    let out = keel.run(&[
        "feedback",
        "ingest",
        "promo",
        "--from",
        &file,
        "--reward-column",
        "revenue",
    ]);
    assert_refused(&out, "revenue");
}

#[test]
fn bad_input_is_refused_before_anything_is_decided() {
    let keel = Keel::quiet();
    contextual(&keel, "promo", 3600);
    customers(&keel, "customers", 20, &[]);
    let decide = |args: &[&str]| {
        let mut all = vec!["batch", "decide"];
        all.extend_from_slice(args);
        keel.run(&all)
    };
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "promo",
                "--from",
                "customers",
                "--unit-column",
                "customer",
                "--into",
                "out",
            ],
            "no unit column \"customer\"",
        ),
        (
            &[
                "promo",
                "--from",
                "customers",
                "--unit-column",
                "customer_id",
                "--into",
                "out",
                "--run-id",
                "a b",
            ],
            "run id",
        ),
        (
            &[
                "nothere",
                "--from",
                "customers",
                "--unit-column",
                "customer_id",
                "--into",
                "out",
            ],
            "nothere",
        ),
        (
            &[
                "promo",
                "--from",
                "nosuchtable",
                "--unit-column",
                "customer_id",
                "--into",
                "out",
            ],
            "nosuchtable",
        ),
        (
            &[
                "promo",
                "--from",
                "customers@v9",
                "--unit-column",
                "customer_id",
                "--into",
                "out",
            ],
            "version",
        ),
    ];
    for (args, needle) in cases {
        let out = decide(args);
        assert_refused(&out, needle);
    }
    // A context column of the wrong type: segment holds numbers.
    let mut csv = String::from("customer_id,age,segment\n");
    for i in 0..5 {
        csv.push_str(&format!("c{i},30,{i}\n"));
    }
    let file = keel.file("typed.csv", csv);
    keel.json(&["data", "ingest", &file, "--table", "typed"]);
    let out = decide(&[
        "promo",
        "--from",
        "typed",
        "--unit-column",
        "customer_id",
        "--into",
        "out",
    ]);
    assert_refused(&out, "categorical");
    // Nothing was decided, nothing was written.
    assert_eq!(exposures(&keel, "promo"), 0);
    let tables = keel.json(&["data", "ls"]);
    assert!(!tables.to_string().contains("\"out\""), "{tables}");
}

pub(crate) fn token(keel: &Keel, name: &str, scope: &str) -> String {
    let out = keel.json(&["access", "token", "create", name, "--scope", scope]);
    out["token"].as_str().expect("secret").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_in_the_server_with_scopes_and_cancel() {
    let keel = Keel::quiet();
    let sticky = json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "fixed_weights", "weights": [0.7, 0.3]},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600}
    });
    keel.ok(&[
        "deployment",
        "apply",
        "sticky",
        "-f",
        &keel.file("sticky.json", sticky.to_string()),
    ]);
    customers(&keel, "customers", 300, &[]);
    customers(&keel, "many", 20_000, &[]);
    let decider = token(&keel, "campaigns", "decide,view");
    let viewer = token(&keel, "dashboard", "view");
    // The job acts as its token's principal, whose team may read the inputs and owns the
    // tables it creates.
    let mut conversions = String::from("customer_id,converted\n");
    for i in 0..10 {
        conversions.push_str(&format!("c{i},1\n"));
    }
    let conversions = keel.file("conversions.csv", conversions);
    keel.json(&["data", "ingest", &conversions, "--table", "conversions"]);
    keel.ok(&["access", "team", "create", "marketing"]);
    keel.ok(&["access", "team", "add", "marketing", "campaigns"]);
    keel.ok(&["access", "grant", "customers", "marketing", "read"]);
    keel.ok(&["access", "grant", "many", "marketing", "read"]);
    keel.ok(&["access", "grant", "conversions", "marketing", "read"]);
    let server = keel.serve(&["--auth", "required"]).ready().await;

    // In process, the server's lock on the log is named, with what to do.
    let out = keel.run(&[
        "batch",
        "decide",
        "sticky",
        "--from",
        "customers",
        "--unit-column",
        "customer_id",
        "--into",
        "sends",
    ]);
    assert_refused(&out, "--server");

    let job = json!({
        "kind": "batch_decide", "deployment": "sticky", "from": "customers",
        "unit_column": "customer_id", "into": "sends"
    });
    let post = |token: &str, path: &str, body: &Value| {
        let request = server.client.post(server.url(path)).bearer_auth(token).json(body);
        async move {
            let r = request.send().await.expect("request");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let get = |token: &str, path: &str| {
        let request = server.client.get(server.url(path)).bearer_auth(token);
        async move {
            let r = request.send().await.expect("request");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let (status, _) = server.post("/v1/jobs", &job).await;
    assert_eq!(status, 401, "no credential");
    let (status, body) = post(&viewer, "/v1/jobs", &job).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("`decide`"), "{body}");
    let (status, started) = post(&decider, "/v1/jobs", &job).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().expect("id").to_owned();
    let done = eventually(Duration::from_secs(60), Duration::from_millis(100), async || {
        let (_, job) = get(&viewer, &format!("/v1/jobs/{id}")).await;
        match job["state"].as_str() {
            Some("succeeded" | "failed" | "cancelled") => Ok(job),
            _ => Err(format!("job not finished: {job}")),
        }
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["principal"], "campaigns");
    assert_eq!(done["summary"]["decided"], 300, "{done}");
    let (_, listed) = get(&viewer, "/v1/jobs").await;
    assert_eq!(items(&listed["jobs"]).len(), 1, "{listed}");

    // Sticky fixed weights: online decide gives each unit the variant and propensity the batch
    // logged.
    let rows = keel.json(&[
        "data",
        "sql",
        "SELECT unit, variant, propensity FROM sends ORDER BY unit LIMIT 25",
    ]);
    for row in items(&rows) {
        let (status, online) = post(
            &decider,
            "/v1/deployments/sticky/decide",
            &json!({"unit_id": row["unit"]}),
        )
        .await;
        assert_eq!(status, 200, "{online}");
        assert_eq!(online["variant"], row["variant"], "{row} vs {online}");
        assert_eq!(online["propensity"], row["propensity"], "{row} vs {online}");
    }

    // --server: the CLI posts the job and follows it.
    let via = keel
        .command(&[
            "--json",
            "--token",
            &decider,
            "batch",
            "decide",
            "sticky",
            "--from",
            "customers",
            "--unit-column",
            "customer_id",
            "--into",
            "sends",
            "--server",
            &server.base,
        ])
        .output()
        .expect("run keel");
    assert!(via.status.success(), "{}", crate::support::stderr(&via));
    let via: Value = serde_json::from_slice(&via.stdout).expect("json");
    assert_eq!(via["decided"], 0, "a re-run through the server decides nothing: {via}");
    assert_eq!(via["already_written"], 300, "{via}");

    // Conversions by unit and run, as a job.
    let ingest = json!({
        "kind": "feedback_ingest", "deployment": "sticky", "from": "conversions",
        "unit_column": "customer_id", "run_id": "sticky-customers-v0", "reward_column": "converted"
    });
    let (status, started) = post(&decider, "/v1/jobs", &ingest).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().expect("id").to_owned();
    let done = eventually(Duration::from_secs(60), Duration::from_millis(100), async || {
        let (_, job) = get(&viewer, &format!("/v1/jobs/{id}")).await;
        match job["state"].as_str() {
            Some("succeeded" | "failed" | "cancelled") => Ok(job),
            _ => Err(format!("job not finished: {job}")),
        }
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["summary"]["counted"], 10, "{done}");
    // A file path is the server's own disk: refused.
    let mut from_file = ingest.clone();
    from_file["from"] = json!(conversions);
    let (status, body) = post(&decider, "/v1/jobs", &from_file).await;
    assert_eq!(status, 400, "{body}");

    // Cancel: a long job (small chunks) stops between chunks; what it decided is written.
    let long = json!({
        "kind": "batch_decide", "deployment": "sticky", "from": "many",
        "unit_column": "customer_id", "into": "many_sends", "batch_rows": 8
    });
    let (status, started) = post(&decider, "/v1/jobs", &long).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().expect("id").to_owned();
    // A second batch decide on the deployment while the first runs (it is still running: it
    // ends cancelled below) could decide a unit twice: refused.
    let (status, body) = post(&decider, "/v1/jobs", &long).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("job_running")), "{body}");
    let (status, body) = post(&viewer, &format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, 403, "a viewer cannot cancel: {body}");
    let (status, _) = post(&decider, &format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, 202);
    let ended = eventually(Duration::from_secs(60), Duration::from_millis(100), async || {
        let (_, job) = get(&viewer, &format!("/v1/jobs/{id}")).await;
        match job["state"].as_str() {
            Some("succeeded" | "failed" | "cancelled") => Ok(job),
            _ => Err(format!("job not finished: {job}")),
        }
    })
    .await;
    assert_eq!(ended["state"], "cancelled", "{ended}");
    let (_, unknown) = get(&viewer, "/v1/jobs/nope").await;
    assert_eq!(unknown["code"], "unknown_job", "{unknown}");
    server.stop();
    // Every decision the cancelled run logged is in its output: none lost, none twice.
    let run = "sticky-many-v0";
    let logged = logged_decisions(&keel, "sticky", run);
    assert!(logged.len() < 20_000, "cancelled before the end: {}", logged.len());
    let out = keel.json(&["data", "sql", "SELECT decision_id FROM many_sends"]);
    let written: BTreeSet<String> = items(&out)
        .iter()
        .map(|r| r["decision_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(written, logged);
    // Started and ended in the change log, by who started it.
    let changes = keel.json(&["changes"]);
    let kinds: BTreeMap<String, usize> =
        items(&changes)
            .iter()
            .filter(|c| c["actor"] == "campaigns")
            .fold(BTreeMap::new(), |mut m, c| {
                *m.entry(c["kind"].as_str().unwrap_or("").to_owned()).or_default() += 1;
                m
            });
    assert_eq!(kinds.get("job_started"), Some(&4), "{changes}");
    assert_eq!(kinds.get("job_succeeded"), Some(&3), "{changes}");
    assert_eq!(kinds.get("job_cancelled"), Some(&1), "{changes}");
}

/// A schedule's batch decide on a deployment the server holds goes to that server as a job;
/// when the server requires authentication, the run carries a token of its own for the
/// schedule's creator (revoked once it ends), so it succeeds and is attributed to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_batch_decide_authenticates_as_its_creator() {
    let keel = Keel::quiet();
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "fixed_weights", "weights": [0.5, 0.5]},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600}
    });
    keel.ok(&[
        "deployment",
        "apply",
        "weekly",
        "-f",
        &keel.file("weekly.json", spec.to_string()),
    ]);
    customers(&keel, "customers", 40, &[]);
    keel.ok(&["access", "team", "create", "marketing"]);
    keel.ok(&["access", "team", "add", "marketing", "campaigns"]);
    keel.ok(&["access", "grant", "customers", "marketing", "read"]);
    keel.ok(&[
        "--user",
        "campaigns",
        "schedule",
        "create",
        "monday-sends",
        "--cron",
        "0 6 * * MON",
        "--",
        "batch",
        "decide",
        "weekly",
        "--from",
        "customers",
        "--unit-column",
        "customer_id",
        "--into",
        "sends_{date}",
    ]);
    keel.ok(&["schedule", "run-now", "monday-sends"]);
    let server = keel.serve(&["--auth", "required"]).ready().await;
    let run: Value = eventually(Duration::from_secs(60), Duration::from_millis(200), async || {
        let runs = keel.json(&["schedule", "runs", "monday-sends"]);
        match items(&runs).first() {
            Some(r) if r["status"] == "succeeded" || r["status"] == "failed" || r["status"] == "retrying" => {
                Ok(r.clone())
            }
            other => Err(format!("not run yet: {other:?}")),
        }
    })
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows"], 40, "{run}");

    // The job ran in the server as the schedule's creator.
    let viewer = token(&keel, "auditor", "view");
    let jobs: Value = server
        .client
        .get(server.url("/v1/jobs"))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("jobs")
        .json()
        .await
        .expect("json");
    let job = items(&jobs["jobs"])
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("{jobs}"));
    assert_eq!(job["principal"], "campaigns", "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");
    server.stop();

    // Its token is revoked: nothing the run held still authenticates.
    let tokens = keel.json(&["access", "token", "ls"]);
    let run_tokens: Vec<&Value> = items(&tokens)
        .iter()
        .filter(|t| t["label"] == "scheduled run")
        .collect();
    assert_eq!(run_tokens.len(), 1, "{tokens}");
    assert_eq!(run_tokens[0]["principal"], "campaigns", "{tokens}");
    assert!(!run_tokens[0]["revoked_at"].is_null(), "revoked: {tokens}");
}

#[test]
fn a_no_action_control_group_is_written_as_held_back_with_no_variant() {
    let keel = Keel::quiet();
    let spec = json!({
        "variants": [{"name": "discount"}, {"name": "free_dessert"}],
        "policy": {"type": "lin_ucb", "alpha": 1.0, "floor": 0.05},
        "context": [{"name": "age", "type": "numeric"}],
        "control": {"policy": "none", "share": 0.2},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
        "seed": 11
    });
    let path = keel.file("promo.json", spec.to_string());
    keel.ok(&["deployment", "apply", "promo", "-f", &path]);
    customers(&keel, "customers", 1000, &[]);
    let done = keel.json(&[
        "batch",
        "decide",
        "promo",
        "--from",
        "customers",
        "--unit-column",
        "customer_id",
        "--into",
        "sends",
    ]);
    assert_eq!(done["decided"], 1000, "{done}");
    let rows = keel.json(&[
        "data",
        "sql",
        "SELECT unit, variant, control, no_action, propensity FROM sends",
    ]);
    let rows = items(&rows);
    assert_eq!(rows.len(), 1000);
    let held: Vec<&Value> = rows.iter().filter(|r| r["no_action"] == true).collect();
    // 20 % held back: 200 expected, sd 12.6; a band of about 4 sd.
    assert!((150..=250).contains(&held.len()), "{} held back", held.len());
    for r in &held {
        assert!(r["variant"].is_null(), "a held-back unit names no variant: {r}");
        assert_eq!(r["control"], true, "{r}");
        assert_eq!(r["propensity"].as_f64(), Some(0.2), "the share is the propensity: {r}");
    }
    for r in rows.iter().filter(|r| r["no_action"] == false) {
        assert!(
            matches!(r["variant"].as_str(), Some("discount" | "free_dessert")),
            "{r}"
        );
        assert_eq!(r["control"], false, "{r}");
    }
}
