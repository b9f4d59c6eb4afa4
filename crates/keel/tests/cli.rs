//! The `keel` binary as a user runs it: exit codes, messages, `--json`, and that refused
//! commands change nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

fn keel(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("KEEL_AUTHOR", "tester")
        .env_remove("KEEL_STORE_URL")
        .env_remove("KEEL_ARTIFACTS")
        .env_remove("KEEL_LAKE")
        .output()
        .expect("run keel")
}

fn ok_json(home: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = keel(home, &all);
    assert!(
        out.status.success(),
        "keel {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn push_list_show_alias_history_and_changes() {
    let home = tempfile::tempdir().expect("tmp");
    let lr = fixtures().join("bc-lr.onnx");
    let rf = fixtures().join("bc-rf.onnx");
    let v1 = ok_json(
        home.path(),
        &[
            "model",
            "push",
            "bc",
            lr.to_str().expect("p"),
            "-m",
            "auc=0.99",
            "--alias",
            "staging",
        ],
    );
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["author"], "tester");
    assert_eq!(v1["metrics"], serde_json::json!({"auc": 0.99}));
    let v2 = ok_json(
        home.path(),
        &["model", "push", "bc", rf.to_str().expect("p"), "-d", "forest"],
    );
    assert_eq!(v2["version"], 2);

    let list = ok_json(home.path(), &["model", "ls"]);
    assert_eq!(list[0]["name"], "bc");
    assert_eq!(list[0]["latest_version"], 2);
    assert_eq!(list[0]["aliases"], serde_json::json!([["staging", 1]]));

    let alias = ok_json(
        home.path(),
        &["model", "alias", "bc", "@production", "2", "--reason", "better auc"],
    );
    assert_eq!(alias["version"], 2);
    let shown = ok_json(home.path(), &["model", "show", "bc@production"]);
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["description"], "forest");
    let history = ok_json(home.path(), &["model", "history", "bc", "--alias", "production"]);
    assert_eq!(history[0]["reason"], "better auc");
    assert_eq!(history[0]["by"], "tester");

    let changes = ok_json(home.path(), &["changes", "--subject", "model/bc/"]);
    let kinds: Vec<&str> = changes
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["kind"].as_str().expect("k"))
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "model.push").count(), 2, "{kinds:?}");
    assert!(kinds.contains(&"alias.set"));

    // Table output for people.
    let out = keel(home.path(), &["model", "show", "bc"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("VERSION") && text.contains("@production") && text.contains("@staging"),
        "{text}"
    );
}

#[test]
fn refused_commands_say_why_and_change_nothing() {
    let home = tempfile::tempdir().expect("tmp");
    let lr = fixtures().join("bc-lr.onnx");
    ok_json(home.path(), &["model", "push", "bc", lr.to_str().expect("p")]);
    let before = ok_json(home.path(), &["model", "ls"]);

    let junk = home.path().join("junk.onnx");
    std::fs::write(&junk, b"definitely not a model").expect("write");
    let out = keel(home.path(), &["model", "push", "bc", junk.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a usable ONNX model"), "{}", stderr(&out));

    let out = keel(home.path(), &["model", "push", "bc", "/no/such/file.onnx"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read /no/such/file.onnx"),
        "{}",
        stderr(&out)
    );

    let out = keel(home.path(), &["model", "push", "bad/name", lr.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid model name"), "{}", stderr(&out));

    let out = keel(home.path(), &["model", "push", "bc", lr.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already has this content as version 1"),
        "{}",
        stderr(&out)
    );

    let out = keel(
        home.path(),
        &["model", "push", "bc", lr.to_str().expect("p"), "-m", "auc=high"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("'high' is not a number"), "{}", stderr(&out));

    let out = keel(home.path(), &["model", "alias", "bc", "production", "5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("5"), "{}", stderr(&out));

    let out = keel(home.path(), &["model", "show", "nothing-here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nothing-here"), "{}", stderr(&out));

    // A usage error is clap's exit code 2 with a hint.
    let out = keel(home.path(), &["model", "alias", "bc"]);
    assert_eq!(out.status.code(), Some(2));

    assert_eq!(ok_json(home.path(), &["model", "ls"]), before);
}

#[test]
fn an_unreachable_postgres_store_is_a_clear_error() {
    let home = tempfile::tempdir().expect("tmp");
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["--store", "postgres://nobody@127.0.0.1:1/none", "model", "ls"])
        .arg("--home")
        .arg(home.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn off_policy_evaluation_on_an_open_bandit_dataset_file() {
    let home = tempfile::tempdir().expect("tmp");
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keel-ope/tests/fixtures/obd_random_all_head.csv");
    let out = keel(
        home.path(),
        &[
            "--json",
            "ope",
            "obd",
            csv.to_str().expect("p"),
            "--candidate",
            r#"{"type": "thompson_beta"}"#,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = result["estimates"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["estimator"].as_str().expect("n"))
        .collect();
    assert_eq!(names, vec!["dm", "ipw", "snipw", "dr", "sndr"]);
    for e in result["estimates"].as_array().expect("list") {
        let (v, lo, hi) = (
            e["value"].as_f64().expect("v"),
            e["ci_low"].as_f64().expect("lo"),
            e["ci_high"].as_f64().expect("hi"),
        );
        assert!(v.is_finite() && lo <= v && v <= hi, "{e}");
    }
    // A candidate that is not a policy: a clear error.
    let out = keel(
        home.path(),
        &[
            "ope",
            "obd",
            csv.to_str().expect("p"),
            "--candidate",
            r#"{"type": "magic"}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("policy definition"), "{}", stderr(&out));
    let out = keel(
        home.path(),
        &["ope", "obd", "/no/such.csv", "--candidate", r#"{"type": "ucb1"}"#],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/no/such.csv"), "{}", stderr(&out));
}

#[test]
fn data_drift_between_two_parquet_files() {
    let home = tempfile::tempdir().expect("tmp");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keel-monitor/tests/fixtures");
    let (reference, current) = (fixtures.join("ref_2000.parquet"), fixtures.join("cur_2000.parquet"));
    let report = ok_json(
        home.path(),
        &[
            "data",
            "drift",
            reference.to_str().expect("p"),
            current.to_str().expect("p"),
        ],
    );
    let drifted: Vec<&str> = report["drifted_columns"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c.as_str().expect("s"))
        .collect();
    assert!(drifted.contains(&"cat_2"), "{drifted:?}");
    assert_eq!(report["reference_rows"], 2000);
    let out = keel(
        home.path(),
        &["data", "drift", reference.to_str().expect("p"), "/no/such.parquet"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/no/such.parquet"), "{}", stderr(&out));
    let out = keel(
        home.path(),
        &[
            "data",
            "drift",
            reference.to_str().expect("p"),
            current.to_str().expect("p"),
            "--method",
            "magic",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--method magic"), "{}", stderr(&out));
}

fn keel_as(home: &Path, user: &str, args: &[&str]) -> Output {
    let mut all = vec!["--user", user];
    all.extend_from_slice(args);
    keel(home, &all)
}

#[test]
fn catalog_grants_pii_lineage_and_audit() {
    let home = tempfile::tempdir().expect("tmp");
    let h = home.path();
    let csv = h.join("customers.csv");
    std::fs::write(
        &csv,
        "id,email,phone,spend\n1,ann@example.com,+33 6 12 34 56 78,10.5\n2,bob@mail.org,(555) 123-4567,3.25\n",
    )
    .expect("csv");
    let csv = csv.to_str().expect("p");
    // The first principal (tester, via KEEL_AUTHOR) is the workspace admin.
    let who = ok_json(h, &["access", "whoami"]);
    assert_eq!(
        (who["name"].as_str(), who["is_admin"].as_bool()),
        (Some("tester"), Some(true))
    );
    ok_json(h, &["access", "team", "create", "growth"]);
    let r = ok_json(
        h,
        &[
            "data",
            "ingest",
            csv,
            "--table",
            "customers",
            "--owner",
            "growth",
            "-d",
            "registered customers",
        ],
    );
    assert_eq!((r["rows"].as_u64(), r["version"].as_u64()), (Some(2), Some(0)));
    let pii: Vec<&str> = r["pii_detected"]
        .as_array()
        .expect("pii")
        .iter()
        .map(|d| d["column"].as_str().expect("c"))
        .collect();
    assert_eq!(pii, vec!["email", "phone"]);

    // ana is in no team: she cannot see the table, and a missing table reads the same.
    let listed = ok_json(h, &["--user", "ana", "data", "ls"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0));
    let denied = keel_as(h, "ana", &["data", "head", "customers"]);
    let missing = keel_as(h, "ana", &["data", "head", "no_such_table"]);
    assert_eq!((denied.status.code(), missing.status.code()), (Some(1), Some(1)));
    assert_eq!(
        stderr(&denied).replace("customers", "T"),
        stderr(&missing).replace("no_such_table", "T"),
        "a denial must not tell whether the table exists"
    );
    assert!(stderr(&denied).contains("no read grant"), "{}", stderr(&denied));
    let sql = keel_as(h, "ana", &["data", "sql", "SELECT count(*) FROM customers"]);
    assert_eq!(sql.status.code(), Some(1));
    assert!(
        stderr(&sql).contains("may not query table \"customers\""),
        "{}",
        stderr(&sql)
    );
    let write = keel_as(h, "ana", &["data", "ingest", csv, "--table", "customers"]);
    assert_eq!(write.status.code(), Some(1));

    // Sharing is a grant to a team.
    ok_json(h, &["access", "team", "create", "analytics"]);
    ok_json(h, &["access", "team", "add", "analytics", "ana"]);
    ok_json(h, &["access", "grant", "customers", "analytics", "read"]);
    let rows = ok_json(
        h,
        &["--user", "ana", "data", "sql", "SELECT count(*) AS n FROM customers"],
    );
    assert_eq!(rows[0]["n"], 2);
    // Read is not write: the table stays at version 0.
    let write = keel_as(h, "ana", &["data", "ingest", csv, "--table", "customers"]);
    assert!(stderr(&write).contains("no write grant"), "{}", stderr(&write));
    let versions = ok_json(h, &["data", "versions", "customers"]);
    assert_eq!(versions.as_array().map(Vec::len), Some(1));

    // Catalog edits, and a manual PII decision.
    ok_json(
        h,
        &[
            "data",
            "describe",
            "customers",
            "--tag",
            "Marketing",
            "--column",
            "phone",
            "--not-pii",
        ],
    );
    let found = ok_json(h, &["--user", "ana", "data", "search", "marketing"]);
    assert_eq!(found[0]["table"], "customers");
    let card = ok_json(h, &["data", "show", "customers"]);
    let cols = card["catalog"]["columns"].as_array().expect("columns");
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
    ok_json(
        h,
        &[
            "data",
            "ingest",
            csv,
            "--table",
            "customers_copy",
            "--owner",
            "growth",
            "--derived-from",
            "table/customers@v0",
        ],
    );
    let lr = fixtures().join("bc-lr.onnx");
    ok_json(
        h,
        &[
            "model",
            "push",
            "churn",
            lr.to_str().expect("p"),
            "--training-data",
            "customers",
        ],
    );
    let lineage = ok_json(h, &["data", "lineage", "table/customers"]);
    let targets: Vec<&str> = lineage["downstream"]
        .as_array()
        .expect("down")
        .iter()
        .map(|e| e["target"].as_str().expect("t"))
        .collect();
    assert_eq!(targets, vec!["table/customers_copy@v0", "model/churn/1"]);

    // The audit log has the denials and the reads; ana sees only her own records.
    let audit = ok_json(h, &["access", "audit", "--table", "customers"]);
    let denied_reads = audit
        .as_array()
        .expect("audit")
        .iter()
        .filter(|e| e["actor"] == "ana" && e["allowed"] == false)
        .count();
    assert!(denied_reads >= 3, "{audit:#}");
    let own = ok_json(h, &["--user", "ana", "access", "audit"]);
    assert!(own.as_array().expect("own").iter().all(|e| e["actor"] == "ana"));
    // Non-admins cannot create teams or grant on tables they do not administer.
    let out = keel_as(h, "ana", &["access", "team", "create", "rogue"]);
    assert!(
        stderr(&out).contains("only workspace admins create teams"),
        "{}",
        stderr(&out)
    );
    let out = keel_as(h, "ana", &["access", "grant", "customers", "analytics", "admin"]);
    assert!(stderr(&out).contains("no admin grant"), "{}", stderr(&out));
}

#[test]
fn bad_ingests_leave_the_table_at_its_last_good_version() {
    let home = tempfile::tempdir().expect("tmp");
    let h = home.path();
    let good = h.join("good.csv");
    std::fs::write(&good, "id,score\n1,0.5\n2,0.25\n").expect("csv");
    ok_json(h, &["data", "ingest", good.to_str().expect("p"), "--table", "scores"]);
    let bad_row = h.join("bad.csv");
    std::fs::write(&bad_row, "id,score\n3,0.5\n4,not-a-number\n").expect("csv");
    let out = keel(
        h,
        &["data", "ingest", bad_row.to_str().expect("p"), "--table", "scores"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line"),
        "the error names the line: {}",
        stderr(&out)
    );
    let conflict = h.join("conflict.csv");
    std::fs::write(&conflict, "id,label\n3,x\n").expect("csv");
    let out = keel(
        h,
        &["data", "ingest", conflict.to_str().expect("p"), "--table", "scores"],
    );
    assert!(stderr(&out).contains("label"), "{}", stderr(&out));
    let out = keel(h, &["data", "ingest", good.to_str().expect("p"), "--table", "../etc"]);
    assert!(stderr(&out).contains("invalid table name"), "{}", stderr(&out));
    let out = keel(h, &["data", "ingest", "/no/such.csv", "--table", "scores"]);
    assert!(stderr(&out).contains("/no/such.csv"), "{}", stderr(&out));
    let versions = ok_json(h, &["data", "versions", "scores"]);
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions:#}");
    let rows = ok_json(h, &["data", "sql", "SELECT count(*) AS n FROM scores"]);
    assert_eq!(rows[0]["n"], 2);
    // SQL over the lake is read-only.
    let out = keel(h, &["data", "sql", "DROP TABLE scores"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        ok_json(h, &["data", "sql", "SELECT count(*) AS n FROM scores"])[0]["n"],
        2
    );
}

#[test]
fn data_assess_an_ingested_table() {
    let home = tempfile::tempdir().expect("tmp");
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
    let file = home.path().join("events.csv");
    std::fs::write(&file, csv).expect("write");
    ok_json(
        home.path(),
        &["data", "ingest", file.to_str().expect("p"), "--table", "events"],
    );

    let html = home.path().join("report.html");
    let md = home.path().join("report.md");
    let report = ok_json(
        home.path(),
        &[
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
            html.to_str().expect("p"),
            "--markdown",
            md.to_str().expect("p"),
        ],
    );
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
    let out = keel(
        home.path(),
        &["data", "assess", "events", "--target", "y", "--no-baseline"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("VERDICT: NOT READY"));
    let out = keel(home.path(), &["data", "assess", "events", "--target", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("target column \"nope\" is not in the table"),
        "{}",
        stderr(&out)
    );
    let out = keel(
        home.path(),
        &["data", "assess", "events", "--target", "y", "--time", "x"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not a time"), "{}", stderr(&out));
    let out = keel(
        home.path(),
        &["data", "assess", file.to_str().expect("p"), "--target", "y"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("keel data ingest"), "{}", stderr(&out));
    let out = keel(home.path(), &["data", "assess", "nosuch", "--target", "y"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn the_lake_can_be_another_folder() {
    let home = tempfile::tempdir().expect("tmp");
    let elsewhere = tempfile::tempdir().expect("tmp");
    let lake = elsewhere.path().join("shared-lake");
    let csv = home.path().join("t.csv");
    std::fs::write(&csv, "id,v\n1,2.5\n2,3.5\n").expect("csv");
    let lake_arg = lake.to_str().expect("p");
    let r = ok_json(
        home.path(),
        &[
            "--lake",
            lake_arg,
            "data",
            "ingest",
            csv.to_str().expect("p"),
            "--table",
            "t",
        ],
    );
    assert_eq!(r["version"], 0);
    assert!(lake.join("t").join("_delta_log").is_dir());
    assert!(!home.path().join("lake").join("t").exists());
    // A file:// URL names the same folder; without --lake the workspace's lake has no table t.
    let url = format!("file://{lake_arg}");
    let rows = ok_json(
        home.path(),
        &["--lake", &url, "data", "sql", "SELECT count(*) AS n FROM t"],
    );
    assert_eq!(rows[0]["n"], 2);
    let out = keel(home.path(), &["data", "head", "t"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}
