//! `keel export`, `keel plan`, `keel apply` from the command line: a team starts from what
//! runs, edits the folder, sees the diff, and applies it (never without being asked).

use serde_json::json;

use crate::support::{Keel, assert_refused, items, repo_file};

#[track_caller]
fn prints(out: &std::process::Output, needle: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(needle), "{stdout}");
}

#[test]
fn export_edit_plan_and_apply_a_folder() {
    let keel = Keel::new().env("KEEL_LOG", "warn");
    keel.json(&["model", "push", "bc", &repo_file("fixtures/models/bc-lr.onnx")]);
    keel.ok(&["model", "alias", "bc", "production", "1"]);
    let dir = keel.path("config");
    let written = keel.json(&["export", &dir]);
    assert!(items(&written).iter().any(|f| f == "aliases.json"), "{written}");
    let aliases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/aliases.json")).expect("read")).expect("json");
    assert_eq!(aliases, json!({"bc": {"production": 1}}));
    assert_refused(&keel.run(&["export", &dir]), "already holds declared files");

    keel.file(
        "config/deployments/promo.json",
        json!({
            "variants": [{"name": "half_price"}, {"name": "free_dessert"}],
            "policy": {"type": "thompson_beta"},
            "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600}
        })
        .to_string(),
    );
    let out = keel.ok(&["plan", &dir]);
    prints(&out, "+ create deployment promo");
    // Never applied without being asked: stdin is not a terminal here.
    assert_refused(&keel.run(&["apply", &dir]), "--yes");
    assert!(items(&keel.json(&["deployment", "ls"])).is_empty(), "nothing applied");

    let done = keel.json(&["apply", &dir, "--yes"]);
    assert_eq!(items(&done["applied"]).len(), 1, "{done}");
    prints(&keel.ok(&["plan", &dir]), "no changes");
    let changes = keel.json(&["changes"]);
    assert!(
        items(&changes)
            .iter()
            .any(|c| c["kind"] == "plan.applied" && c["actor"] == "tester"),
        "{changes}"
    );
    keel.file("config/deployments/broken.json", "{ not json");
    assert_refused(&keel.run(&["plan", &dir]), "broken.json");
}
