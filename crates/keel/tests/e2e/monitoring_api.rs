//! `GET /v1/deployments/{name}/histograms` against the console's monitoring page on a live
//! server: the same reference and window counts per bin and column, the same row counts and the
//! same drift scores; a credential with `data:read` is needed, and bad requests say what to do.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Keel, assert_refused, eventually, items, repo_file};

/// The first row of bc-lr's expected outputs (`fixtures/models/expected.json`): 30 features.
fn bc_lr_features() -> Vec<f64> {
    let expected = std::fs::read_to_string(repo_file("fixtures/models/expected.json")).expect("expected");
    let expected: Value = serde_json::from_str(&expected).expect("json");
    items(&expected["models"]["bc-lr"]["rows"][0])
        .iter()
        .map(|v| v.as_f64().expect("f"))
        .collect()
}

/// The value of attribute `name` in the HTML tag that starts at `tag`.
/// bc-lr's fixture row with every feature scaled by 1 + (i mod 17) / 100.
fn jittered(i: usize) -> Vec<f64> {
    bc_lr_features()
        .iter()
        .map(|x| x * (1.0 + (i % 17) as f64 / 100.0))
        .collect()
}

/// A reference table for bc-lr: `rows` jittered rows of its 30 inputs, and a label.
fn reference_csv(rows: usize) -> String {
    let mut csv = (0..30).map(|j| format!("input_{j}")).collect::<Vec<_>>().join(",") + ",label\n";
    for i in 0..rows {
        let values: Vec<String> = jittered(i).iter().map(f64::to_string).collect();
        csv += &format!("{},{}\n", values.join(","), i % 2);
    }
    csv
}

/// `(actor, allowed)` of every audit record of `action` on `table`.
fn audited(keel: &Keel, table: &str, action: &str) -> Vec<(String, bool)> {
    items(&keel.json(&["access", "audit", "--table", table]))
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| {
            let actor = e["actor"].as_str().unwrap_or("").to_owned();
            (actor, e["allowed"].as_bool().unwrap_or(true))
        })
        .collect()
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = tag[at..].find('"')?;
    Some(&tag[at..at + end])
}

/// The counts of the bars of `series` in the histogram chart of `column` on the page.
fn bars(html: &str, column: &str, series: &str) -> Vec<u64> {
    let start = html
        .find(&format!("id=\"hist-{column}\""))
        .unwrap_or_else(|| panic!("no chart of {column}"));
    let chart = &html[start..start + html[start..].find("</svg>").expect("end of chart")];
    chart
        .split("<rect ")
        .skip(1)
        .filter(|tag| attr(tag, "data-series") == Some(series))
        .map(|tag| attr(tag, "data-count").expect("count").parse().expect("a number"))
        .collect()
}

/// What the tag with `data-key="key"` holds (in the row `row`, when given): its `data-sort`
/// (a number in full) if it has one, else its text.
fn keyed<'a>(html: &'a str, row: Option<&str>, key: &str) -> &'a str {
    let from = row.map_or(0, |r| {
        html.find(&format!("data-row=\"{r}\""))
            .unwrap_or_else(|| panic!("no row {r}"))
    });
    let at = from + html[from..].find(&format!(" data-key=\"{key}\"")).expect("key");
    let open = html[..at].rfind('<').expect("<");
    let close = at + html[at..].find('>').expect(">");
    attr(&html[open..close], "data-sort").unwrap_or_else(|| {
        let text = &html[close + 1..];
        &text[..text.find('<').expect("<")]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_histograms_route_gives_the_monitoring_pages_figures() {
    // ana runs the CLI (the local workspace's admin, as in the browser test): she may read the
    // reference and the prediction log; bob, with the same scopes and no grant, may not.
    let keel = Keel::quiet().env("KEEL_USER", "ana");
    keel.ok(&["model", "push", "bc-lr", &repo_file("fixtures/models/bc-lr.onnx")]);
    let row = bc_lr_features();
    let reference = keel.file("train.csv", reference_csv(200));
    keel.ok(&["data", "ingest", &reference, "--table", "bc_train"]);
    let spec = json!({
        "variants": [{"name": "lr", "model": "bc-lr"}],
        "policy": {"type": "fixed_weights", "weights": [1]},
        "monitor": {"reference": "bc_train", "ignore": ["label"], "window_seconds": 3600}
    });
    let spec = keel.file("spec.json", spec.to_string());
    keel.ok(&["deployment", "apply", "scoring", "-f", &spec]);
    let token = |who: &str, scopes: &[&str]| {
        let mut args = vec!["access", "token", "create", who];
        for s in scopes {
            args.extend(["--scope", *s]);
        }
        keel.json(&args)["token"].as_str().expect("token").to_owned()
    };
    let (reader, viewer) = (token("ana", &["view", "data:read"]), token("ana", &["view"]));
    let stranger = token("bob", &["view", "data:read"]);

    let server = keel.serve(&[]).ready().await;
    for i in 0..60 {
        // Every feature jitters as in the reference; feature 0 also moves far away.
        let mut x = jittered(i);
        x[0] = row[0] * 3.0 + i as f64 / 10.0;
        let body = json!({"unit_id": format!("u{i}"), "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": x}]});
        let (status, body) = server.post("/v1/deployments/scoring/decide", &body).await;
        assert_eq!(status, 200, "{body}");
    }
    let get = async |path: &str, token: Option<&str>| {
        let mut req = server.client.get(server.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("send");
        (r.status().as_u16(), r.text().await.expect("body"))
    };
    let path = "/v1/deployments/scoring/histograms";
    // The prediction log reaches the lake in the background.
    let api: Value = eventually(Duration::from_secs(60), Duration::from_millis(250), async || {
        let (status, body) = get(path, Some(&reader)).await;
        let h: Value = serde_json::from_str(&body).map_err(|e| format!("{status} {body}: {e}"))?;
        if status == 200 && h["current_rows"] == 60 {
            Ok(h)
        } else {
            Err(format!("not yet 60 logged rows: {status} {h}"))
        }
    })
    .await;
    assert_eq!(
        (api["reference"].as_str(), api["reference_rows"].as_u64()),
        (Some("bc_train"), Some(200))
    );
    let (status, page) = server
        .client
        .get(server.url("/ui/deployments/scoring/monitoring"))
        .header("cookie", format!("keel_console={reader}"))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .expect("page");
    assert_eq!(status, 200);
    let page = page.text().await.expect("html");
    assert_eq!(keyed(&page, None, "reference_rows"), "200");
    assert_eq!(keyed(&page, None, "current_rows"), "60");
    let columns = items(&api["columns"]);
    assert_eq!(columns.len(), 30, "every input but the ignored label");
    for c in columns {
        let name = c["column"].as_str().expect("column");
        let counts = |side: &str| -> Vec<u64> { items(&c[side]).iter().map(|n| n.as_u64().expect("n")).collect() };
        assert_eq!(bars(&page, name, "reference bc_train"), counts("reference"), "{name}");
        assert_eq!(bars(&page, name, "window"), counts("current"), "{name}");
        assert_eq!(
            counts("reference").iter().sum::<u64>() + c["reference_missing"].as_u64().expect("m"),
            200
        );
    }
    for d in items(&api["drift"]["columns"]) {
        let name = d["name"].as_str().expect("name");
        let score: f64 = keyed(&page, Some(name), "score").parse().expect("score");
        assert_eq!(score, d["score"].as_f64().expect("score"), "{name}");
    }
    let drifted: Vec<&str> = items(&api["drift"]["columns"])
        .iter()
        .filter(|d| d["drifted"] == true)
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(drifted.contains(&"input_0"), "feature 0 moved far away: {drifted:?}");

    // Who may read them: a person (even with authentication off) whose token reads data.
    let (status, body) = get(path, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (status, body) = get(path, Some(&viewer)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("data:read"), "{body}");
    let (status, body) = get(path, Some(&stranger)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("bc_train") && body.contains("keel access grant"),
        "{body}"
    );

    // Sharing both with bob's team: the reference was catalogued when it was ingested; the
    // prediction log, written by serving, is catalogued by an admin first (`keel data adopt`).
    keel.ok(&["access", "team", "create", "ml"]);
    keel.ok(&["access", "team", "create", "analysts"]);
    keel.ok(&["access", "team", "add", "analysts", "bob"]);
    keel.ok(&["access", "grant", "bc_train", "analysts", "read"]);
    let (status, body) = get(path, Some(&stranger)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("predictions_bc-lr") && body.contains("keel data adopt"),
        "{body}"
    );
    let log = "predictions_bc-lr";
    assert_refused(
        &keel.run(&["access", "grant", log, "analysts", "read"]),
        "keel data adopt predictions_bc-lr --owner TEAM",
    );
    let by_bob = keel
        .command(&["data", "adopt", log, "--owner", "analysts"])
        .env("KEEL_USER", "bob")
        .output()
        .expect("keel");
    assert_refused(&by_bob, "bob may not adopt table \"predictions_bc-lr\"");
    assert_refused(
        &keel.run(&["data", "adopt", "no_such_table", "--owner", "ml"]),
        "no_such_table",
    );
    assert_refused(
        &keel.run(&["data", "adopt", log, "--owner", "nobody"]),
        "team \"nobody\" does not exist",
    );
    let adopted = keel.json(&["data", "adopt", log, "--owner", "ml"]);
    assert_eq!(adopted["owner_team"], "ml", "{adopted}");
    let columns: Vec<&str> = items(&adopted["columns"])
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(columns.contains(&"input_0"), "{columns:?}");
    assert_refused(
        &keel.run(&["data", "adopt", log, "--owner", "ml"]),
        "already in the catalog, owned by team \"ml\"",
    );
    keel.ok(&["access", "grant", log, "analysts", "read"]);
    let (status, body) = get(path, Some(&stranger)).await;
    assert_eq!(status, 200, "{body}");
    let shared: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(shared["current_rows"], 60, "{shared}");
    let adopt = audited(&keel, log, "adopt");
    assert!(
        adopt.contains(&("bob".into(), false)) && adopt.contains(&("ana".into(), true)),
        "{adopt:?}"
    );

    let (status, body) = get("/v1/deployments/nope/histograms", Some(&reader)).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(&format!("{path}?bins=5"), Some(&reader)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("take no parameters"), "{body}");
}

/// Applying a monitored deployment over REST checks its reference table as `keel deployment
/// apply` does (one check, in the data library): whoever applies it must be able to read the
/// table, and it must be a table of the lake. A denial does not tell whether the table exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_a_monitored_deployment_over_rest_checks_its_reference_table() {
    let keel = Keel::quiet().env("KEEL_USER", "ana");
    keel.ok(&["model", "push", "bc-lr", &repo_file("fixtures/models/bc-lr.onnx")]);
    keel.ok(&[
        "data",
        "ingest",
        &keel.file("train.csv", reference_csv(20)),
        "--table",
        "bc_train",
    ]);
    let token = |who: &str| {
        let created = keel.json(&["access", "token", "create", who, "--scope", "deploy", "--scope", "view"]);
        created["token"].as_str().expect("token").to_owned()
    };
    let (ana, bob) = (token("ana"), token("bob"));
    let server = keel.serve(&["--auth", "required"]).ready().await;
    let put = async |name: &str, reference: &str, token: &str| {
        let spec = json!({
            "variants": [{"name": "lr", "model": "bc-lr"}],
            "policy": {"type": "fixed_weights", "weights": [1]},
            "monitor": {"reference": reference, "ignore": ["label"], "window_seconds": 3600}
        });
        let r = server
            .client
            .put(server.url(&format!("/v1/deployments/{name}")))
            .bearer_auth(token)
            .json(&json!({ "spec": spec }))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    };

    let (status, body) = put("scoring", "bc_train", &bob).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("bc_train"), "{body}");
    let (status, denied) = put("scoring", "no_such_table", &bob).await;
    assert_eq!(status, 403, "{denied}");
    assert_eq!(
        denied.replace("no_such_table", "T"),
        body.replace("bc_train", "T"),
        "a denial must not tell whether the table exists"
    );
    let (status, body) = put("scoring", "no_such_table", &ana).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a table of the lake"), "{body}");
    assert!(
        keel.json(&["deployment", "ls"]).as_array().is_some_and(Vec::is_empty),
        "nothing was applied"
    );
    let (status, body) = put("scoring", "bc_train", &ana).await;
    assert_eq!(status, 200, "{body}");
    let checks = audited(&keel, "bc_train", "monitor_reference");
    assert!(
        checks.contains(&("bob".into(), false)) && checks.contains(&("ana".into(), true)),
        "{checks:?}"
    );
}
