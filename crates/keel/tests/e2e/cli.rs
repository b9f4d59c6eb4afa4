//! The `keel` binary as a user runs it: exit codes, messages, `--json`, and that refused
//! commands change nothing.

use serde_json::json;

use crate::support::{Keel, assert_refused, assert_says, items, repo_file, stderr, strings};

#[test]
fn push_list_show_alias_history_and_changes() {
    let keel = Keel::new();
    let lr = repo_file("fixtures/models/bc-lr.onnx");
    let rf = repo_file("fixtures/models/bc-rf.onnx");
    let v1 = keel.json(&["model", "push", "bc", &lr, "-m", "auc=0.99", "--alias", "staging"]);
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["author"], "tester");
    assert_eq!(v1["metrics"], json!({"auc": 0.99}));
    let v2 = keel.json(&["model", "push", "bc", &rf, "-d", "forest"]);
    assert_eq!(v2["version"], 2);

    let list = keel.json(&["model", "ls"]);
    assert_eq!(list[0]["name"], "bc");
    assert_eq!(list[0]["latest_version"], 2);
    assert_eq!(list[0]["aliases"], json!([["staging", 1]]));

    let alias = keel.json(&["model", "alias", "bc", "@production", "2", "--reason", "better auc"]);
    assert_eq!(alias["version"], 2);
    let shown = keel.json(&["model", "show", "bc@production"]);
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["description"], "forest");
    let history = keel.json(&["model", "history", "bc", "--alias", "production"]);
    assert_eq!(history[0]["reason"], "better auc");
    assert_eq!(history[0]["by"], "tester");

    let changes = keel.json(&["changes", "--subject", "model/bc/"]);
    let kinds = strings(&changes, "/kind");
    assert_eq!(kinds.iter().filter(|k| **k == "model.push").count(), 2, "{kinds:?}");
    assert!(kinds.contains(&"alias.set"));

    // Table output for people.
    let out = keel.run(&["model", "show", "bc"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("VERSION") && text.contains("@production") && text.contains("@staging"),
        "{text}"
    );
}

#[test]
fn refused_commands_say_why_and_change_nothing() {
    let keel = Keel::new();
    let lr = repo_file("fixtures/models/bc-lr.onnx");
    keel.json(&["model", "push", "bc", &lr]);
    let before = keel.json(&["model", "ls"]);

    let junk = keel.file("junk.onnx", "definitely not a model");
    assert_refused(&keel.run(&["model", "push", "bc", &junk]), "not a usable ONNX model");
    assert_refused(
        &keel.run(&["model", "push", "bc", "/no/such/file.onnx"]),
        "cannot read /no/such/file.onnx",
    );
    assert_refused(&keel.run(&["model", "push", "bad/name", &lr]), "invalid model name");
    assert_refused(
        &keel.run(&["model", "push", "bc", &lr]),
        "already has this content as version 1",
    );
    assert_refused(
        &keel.run(&["model", "push", "bc", &lr, "-m", "auc=high"]),
        "'high' is not a number",
    );
    assert_refused(&keel.run(&["model", "alias", "bc", "production", "5"]), "5");
    assert_refused(&keel.run(&["model", "show", "nothing-here"]), "nothing-here");

    // A usage error is clap's exit code 2 with a hint.
    let out = keel.run(&["model", "alias", "bc"]);
    assert_eq!(out.status.code(), Some(2));

    assert_eq!(keel.json(&["model", "ls"]), before);
}

#[test]
fn an_unreachable_postgres_store_is_a_clear_error() {
    let keel = Keel::new();
    let out = keel.run(&["--store", "postgres://nobody@127.0.0.1:1/none", "model", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn off_policy_evaluation_on_an_open_bandit_dataset_file() {
    let keel = Keel::new();
    let csv = repo_file("crates/keel-ope/tests/fixtures/obd_random_all_head.csv");
    let result = keel.json(&["ope", "obd", &csv, "--candidate", r#"{"type": "thompson_beta"}"#]);
    assert_eq!(
        strings(&result["estimates"], "/estimator"),
        vec!["dm", "ipw", "snipw", "dr", "sndr", "switch-dr", "dr-os"]
    );
    for e in items(&result["estimates"]) {
        let (v, lo, hi) = (
            e["value"].as_f64().expect("v"),
            e["ci_low"].as_f64().expect("lo"),
            e["ci_high"].as_f64().expect("hi"),
        );
        assert!(v.is_finite() && lo <= v && v <= hi, "{e}");
        // 3 evaluated rounds: nothing here can be trusted, and the output says why.
        assert_eq!(e["diagnostics"]["verdict"], "do_not_trust", "{e}");
        assert!(!strings(&e["diagnostics"]["reasons"], "").is_empty(), "{e}");
    }

    // The Open Bandit Dataset's women campaign, logged by Thompson sampling, evaluated with
    // uniform random: a few rows with propensities down to 1e-6 carry the whole estimate.
    let women = repo_file("crates/keel-ope/tests/fixtures/obd_bts_women.csv");
    let uniform = format!(r#"{{"type": "fixed_weights", "weights": [{}]}}"#, ["1"; 46].join(", "));
    let result = keel.json(&["ope", "obd", &women, "--candidate", &uniform, "--train-fraction", "0"]);
    assert_eq!(result["rounds_evaluated"], 10_000);
    let max_weight = result["importance_weights"]["max_weight"].as_f64().expect("max weight");
    let ess = result["importance_weights"]["effective_sample_size"]
        .as_f64()
        .expect("ess");
    assert!(max_weight > 20_000.0 && ess < 3.0, "{result}");
    for e in items(&result["estimates"]) {
        let verdict = e["diagnostics"]["verdict"].as_str().expect("verdict");
        match e["estimator"].as_str() {
            Some("ipw" | "snipw" | "dr" | "sndr") => assert_eq!(verdict, "do_not_trust", "{e}"),
            _ => assert_ne!(verdict, "trust", "{e}"),
        }
    }
    let out = keel.ok(&["ope", "obd", &women, "--candidate", &uniform, "--train-fraction", "0"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("VERDICT") && table.contains("do_not_trust"), "{table}");
    assert!(table.contains("ipw: effective sample size 2."), "{table}");
    assert_refused(
        &keel.run(&["ope", "obd", &women, "--candidate", &uniform, "--switch-tau=-1"]),
        "--switch-tau",
    );
    // A candidate that is not a policy: a clear error.
    assert_refused(
        &keel.run(&["ope", "obd", &csv, "--candidate", r#"{"type": "magic"}"#]),
        "policy definition",
    );
    assert_refused(
        &keel.run(&["ope", "obd", "/no/such.csv", "--candidate", r#"{"type": "ucb1"}"#]),
        "/no/such.csv",
    );
}

#[test]
fn data_drift_between_two_parquet_files() {
    let keel = Keel::new();
    let reference = repo_file("crates/keel-monitor/tests/fixtures/ref_2000.parquet");
    let current = repo_file("crates/keel-monitor/tests/fixtures/cur_2000.parquet");
    let report = keel.json(&["data", "drift", &reference, &current]);
    let drifted = strings(&report["drifted_columns"], "");
    assert!(drifted.contains(&"cat_2"), "{drifted:?}");
    assert_eq!(report["reference_rows"], 2000);
    assert_refused(
        &keel.run(&["data", "drift", &reference, "/no/such.parquet"]),
        "/no/such.parquet",
    );
    assert_refused(
        &keel.run(&["data", "drift", &reference, &current, "--method", "magic"]),
        "--method magic",
    );
}

#[test]
fn catalog_grants_pii_lineage_and_audit() {
    let keel = Keel::new();
    let csv = keel.file(
        "customers.csv",
        "id,email,phone,spend\n1,ann@example.com,+33 6 12 34 56 78,10.5\n2,bob@mail.org,(555) 123-4567,3.25\n",
    );
    let csv = csv.as_str();
    // The first principal (tester, via KEEL_AUTHOR) is the workspace admin.
    let who = keel.json(&["access", "whoami"]);
    assert_eq!(
        (who["name"].as_str(), who["is_admin"].as_bool()),
        (Some("tester"), Some(true))
    );
    keel.json(&["access", "team", "create", "growth"]);
    let r = keel.json(&[
        "data",
        "ingest",
        csv,
        "--table",
        "customers",
        "--owner",
        "growth",
        "-d",
        "registered customers",
    ]);
    assert_eq!((r["rows"].as_u64(), r["version"].as_u64()), (Some(2), Some(0)));
    assert_eq!(strings(&r["pii_detected"], "/column"), vec!["email", "phone"]);

    // ana is in no team: she cannot see the table, and a missing table reads the same.
    let listed = keel.json(&["--user", "ana", "data", "ls"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0));
    let denied = keel.run(&["--user", "ana", "data", "head", "customers"]);
    let missing = keel.run(&["--user", "ana", "data", "head", "no_such_table"]);
    assert_eq!((denied.status.code(), missing.status.code()), (Some(1), Some(1)));
    assert_eq!(
        stderr(&denied).replace("customers", "T"),
        stderr(&missing).replace("no_such_table", "T"),
        "a denial must not tell whether the table exists"
    );
    assert_says(&denied, "no read grant");
    assert_refused(
        &keel.run(&["--user", "ana", "data", "sql", "SELECT count(*) FROM customers"]),
        "may not query table \"customers\"",
    );
    let write = keel.run(&["--user", "ana", "data", "ingest", csv, "--table", "customers"]);
    assert_eq!(write.status.code(), Some(1));

    // Sharing is a grant to a team.
    keel.json(&["access", "team", "create", "analytics"]);
    keel.json(&["access", "team", "add", "analytics", "ana"]);
    keel.json(&["access", "grant", "customers", "analytics", "read"]);
    let rows = keel.json(&["--user", "ana", "data", "sql", "SELECT count(*) AS n FROM customers"]);
    assert_eq!(rows[0]["n"], 2);
    // Read is not write: the table stays at version 0.
    let write = keel.run(&["--user", "ana", "data", "ingest", csv, "--table", "customers"]);
    assert_says(&write, "no write grant");
    let versions = keel.json(&["data", "versions", "customers"]);
    assert_eq!(versions.as_array().map(Vec::len), Some(1));

    // Catalog edits, and a manual PII decision.
    keel.json(&[
        "data",
        "describe",
        "customers",
        "--tag",
        "Marketing",
        "--column",
        "phone",
        "--not-pii",
    ]);
    let found = keel.json(&["--user", "ana", "data", "search", "marketing"]);
    assert_eq!(found[0]["table"], "customers");
    let card = keel.json(&["data", "show", "customers"]);
    let cols = items(&card["catalog"]["columns"]);
    let flag = |name: &str| {
        cols.iter()
            .find(|c| c["name"] == name)
            .map(|c| (c["pii"].clone(), c["pii_source"].clone()))
    };
    assert_eq!(flag("email"), Some((json!(true), json!("detected"))));
    assert_eq!(flag("phone"), Some((json!(false), json!("manual"))));
    assert_eq!(card["catalog"]["tags"], json!(["marketing"]));
    assert_eq!(card["grants"][0]["team"], "analytics");

    // Lineage: a derived table, and a model trained on the table.
    keel.json(&[
        "data",
        "ingest",
        csv,
        "--table",
        "customers_copy",
        "--owner",
        "growth",
        "--derived-from",
        "table/customers@v0",
    ]);
    let lr = repo_file("fixtures/models/bc-lr.onnx");
    keel.json(&["model", "push", "churn", &lr, "--training-data", "customers"]);
    let lineage = keel.json(&["data", "lineage", "table/customers"]);
    assert_eq!(
        strings(&lineage["downstream"], "/target"),
        vec!["table/customers_copy@v0", "model/churn/1"]
    );

    // The audit log has the denials and the reads; ana sees only her own records.
    let audit = keel.json(&["access", "audit", "--table", "customers"]);
    let denied_reads = items(&audit)
        .iter()
        .filter(|e| e["actor"] == "ana" && e["allowed"] == false)
        .count();
    assert!(denied_reads >= 3, "{audit:#}");
    let own = keel.json(&["--user", "ana", "access", "audit"]);
    assert!(items(&own).iter().all(|e| e["actor"] == "ana"));
    // Non-admins cannot create teams or grant on tables they do not administer.
    assert_says(
        &keel.run(&["--user", "ana", "access", "team", "create", "rogue"]),
        "only workspace admins create teams",
    );
    assert_says(
        &keel.run(&["--user", "ana", "access", "grant", "customers", "analytics", "admin"]),
        "no admin grant",
    );
}

#[test]
fn bad_ingests_leave_the_table_at_its_last_good_version() {
    let keel = Keel::new();
    let good = keel.file("good.csv", "id,score\n1,0.5\n2,0.25\n");
    keel.json(&["data", "ingest", &good, "--table", "scores"]);
    let bad_row = keel.file("bad.csv", "id,score\n3,0.5\n4,not-a-number\n");
    // The error names the line.
    assert_refused(&keel.run(&["data", "ingest", &bad_row, "--table", "scores"]), "line");
    let conflict = keel.file("conflict.csv", "id,label\n3,x\n");
    assert_says(&keel.run(&["data", "ingest", &conflict, "--table", "scores"]), "label");
    assert_says(
        &keel.run(&["data", "ingest", &good, "--table", "../etc"]),
        "invalid table name",
    );
    assert_says(
        &keel.run(&["data", "ingest", "/no/such.csv", "--table", "scores"]),
        "/no/such.csv",
    );
    let versions = keel.json(&["data", "versions", "scores"]);
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions:#}");
    let rows = keel.json(&["data", "sql", "SELECT count(*) AS n FROM scores"]);
    assert_eq!(rows[0]["n"], 2);
    // SQL over the lake is read-only.
    let out = keel.run(&["data", "sql", "DROP TABLE scores"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        keel.json(&["data", "sql", "SELECT count(*) AS n FROM scores"])[0]["n"],
        2
    );
}

#[test]
fn data_assess_an_ingested_table() {
    let keel = Keel::new();
    // 2,000 rows, one a minute from 2024-01-01: y depends on x; `leak` copies y; `color` is noise.
    let mut csv = String::from("ts,x,color,leak,y\n");
    let mut state = 42u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..2000 {
        let x = next() * 4.0 - 2.0;
        let y = u8::from(next() < 1.0 / (1.0 + (-(2.0 * x - 1.0f64)).exp()));
        let color = ["red", "green", "blue"][(next() * 3.0) as usize % 3];
        let ts = chrono::DateTime::from_timestamp(1_704_067_200 + i * 60, 250_000_000).expect("time");
        csv.push_str(&format!(
            "{},{x:.6},{color},{y},{y}\n",
            ts.format("%Y-%m-%d %H:%M:%S%.6f+00:00")
        ));
    }
    let file = keel.file("events.csv", csv);
    keel.json(&["data", "ingest", &file, "--table", "events"]);

    let html = keel.path("report.html");
    let md = keel.path("report.md");
    let report = keel.json(&[
        "data",
        "assess",
        "events",
        "--target",
        "y",
        "--time",
        "ts",
        "--now",
        "2024-01-03T00:00:00Z",
        "--html",
        &html,
        "--markdown",
        &md,
    ]);
    assert_eq!(report["rows"], 2000);
    assert_eq!(report["target"]["column"], "y");
    assert_eq!(report["verdict"], "NotReady");
    assert_eq!(report["features"][0]["name"], "leak");
    assert_eq!(report["features"][0]["leakage"], true);
    let reasons = report["reasons"].to_string();
    assert!(reasons.contains("leakage") && reasons.contains("leak"), "{reasons}");
    assert_eq!(report["arrival"]["first"], "2024-01-01T00:00:00.250Z");
    assert!(report["arrival"]["freshness_seconds"].as_f64().expect("f") > 0.0);
    assert!(report["baseline"]["auc_mean"].as_f64().expect("auc") > 0.7);
    assert!(std::fs::read_to_string(&html).expect("html").contains("<svg"));
    assert!(
        std::fs::read_to_string(&md)
            .expect("md")
            .contains("## Verdict: NOT READY")
    );

    // The terminal report, and clear errors.
    let out = keel.run(&["data", "assess", "events", "--target", "y", "--no-baseline"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("VERDICT: NOT READY"));
    assert_refused(
        &keel.run(&["data", "assess", "events", "--target", "nope"]),
        "target column \"nope\" is not in the table",
    );
    assert_refused(
        &keel.run(&["data", "assess", "events", "--target", "y", "--time", "x"]),
        "is not a time",
    );
    assert_refused(
        &keel.run(&["data", "assess", &file, "--target", "y"]),
        "keel data ingest",
    );
    assert_refused(&keel.run(&["data", "assess", "nosuch", "--target", "y"]), "not found");
}

#[test]
fn the_lake_can_be_another_folder() {
    let keel = Keel::new();
    let elsewhere = tempfile::tempdir().expect("tmp");
    let lake = elsewhere.path().join("shared-lake");
    let csv = keel.file("t.csv", "id,v\n1,2.5\n2,3.5\n");
    let lake_arg = lake.to_str().expect("p");
    let r = keel.json(&["--lake", lake_arg, "data", "ingest", &csv, "--table", "t"]);
    assert_eq!(r["version"], 0);
    assert!(lake.join("t").join("_delta_log").is_dir());
    assert!(!keel.home().join("lake").join("t").exists());
    // A file:// URL names the same folder; without --lake the workspace's lake has no table t.
    let url = format!("file://{lake_arg}");
    let rows = keel.json(&["--lake", &url, "data", "sql", "SELECT count(*) AS n FROM t"]);
    assert_eq!(rows[0]["n"], 2);
    assert_refused(&keel.run(&["data", "head", "t"]), "not found");
}
