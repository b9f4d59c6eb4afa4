//! The model registry over REST, as a CI job meets it: a token with the `registry` scope (not
//! admin) pushes a model with its SHA-256 and moves an alias, and the history and the change log
//! name that token's principal; a push whose bytes do not match its hash, or that is over
//! `--max-model-bytes` (declared or streamed without a length), is refused with nothing left in
//! the artifact store, the registry or the staging folder; no credential is 401, a credential
//! without the scope is 403.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{Keel, Ports, Server, items, repo_file};

fn token(keel: &Keel, name: &str, scopes: &str) -> String {
    let out = keel.json(&["access", "token", "create", name, "--scope", scopes]);
    out["token"].as_str().expect("secret").to_owned()
}

fn model_bytes(name: &str) -> Vec<u8> {
    std::fs::read(repo_file(&format!("fixtures/models/{name}.onnx"))).expect("fixture")
}

/// `POST /v1/models/{model}/versions{query}` with `bytes`, the hash header `sha256` and the
/// bearer `token`: the status and the JSON body.
async fn push(
    server: &Server,
    model: &str,
    query: &str,
    bytes: Vec<u8>,
    sha256: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = server
        .client
        .post(server.url(&format!("/v1/models/{model}/versions{query}")))
        .body(bytes);
    if let Some(hash) = sha256 {
        req = req.header("x-keel-sha256", hash);
    }
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

async fn call(server: &Server, method: reqwest::Method, path: &str, body: Option<Value>, token: &str) -> (u16, Value) {
    let mut req = server.client.request(method, server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_token_pushes_a_model_and_moves_an_alias_and_the_history_says_who() {
    let keel = Keel::quiet();
    let ci = token(&keel, "ci-bot", "registry view");
    let viewer = token(&keel, "dashboard", "view");
    let server = keel.serve(&["--auth", "required"]).ready().await;
    let bytes = model_bytes("bc-lr");
    let hash = keel_registry::content_hash(&bytes);

    let (status, body) = push(&server, "bc", "", bytes.clone(), Some(&hash), None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = push(&server, "bc", "", bytes.clone(), Some(&hash), Some(&viewer)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().expect("error").contains("registry"), "{body}");

    let query = "?description=first&metric=auc=0.97&alias=staging";
    let (status, pushed) = push(&server, "bc", query, bytes.clone(), Some(&hash), Some(&ci)).await;
    assert_eq!(status, 201, "{pushed}");
    assert_eq!(pushed["version"], 1);
    assert_eq!(pushed["content_hash"], hash.as_str());
    assert_eq!(pushed["author"], "ci-bot");
    assert_eq!(pushed["metrics"]["auc"], 0.97);
    assert_eq!(pushed["size_bytes"], bytes.len());
    // The signature is the one `keel model push` records for the same file.
    let local = Keel::quiet();
    local.ok(&["model", "push", "bc", &repo_file("fixtures/models/bc-lr.onnx")]);
    let cli = local.json(&["model", "show", "bc:1"]);
    assert_eq!(pushed["signature"], cli["signature"], "REST {pushed} CLI {cli}");
    assert_eq!(pushed["signature"]["inputs"][0]["name"], "input", "{pushed}");

    // A second version by the CLI of the same workspace, then the alias moves over the API.
    keel.ok(&["model", "push", "bc", &repo_file("fixtures/models/bc-rf.onnx")]);
    let (status, versions) = call(&server, reqwest::Method::GET, "/v1/models/bc/versions", None, &viewer).await;
    assert_eq!(status, 200, "{versions}");
    assert_eq!(items(&versions).len(), 2, "{versions}");
    let (status, v2) = call(
        &server,
        reqwest::Method::GET,
        "/v1/models/bc/versions/latest",
        None,
        &viewer,
    )
    .await;
    assert_eq!((status, v2["version"].clone()), (200, json!(2)), "{v2}");
    let (status, staged) = call(
        &server,
        reqwest::Method::GET,
        "/v1/models/bc/versions/@staging",
        None,
        &viewer,
    )
    .await;
    assert_eq!((status, staged["version"].clone()), (200, json!(1)), "{staged}");

    let moved = json!({"version": 2, "reason": "rf wins offline"});
    let (status, body) = call(
        &server,
        reqwest::Method::PUT,
        "/v1/models/bc/aliases/production",
        Some(moved.clone()),
        &viewer,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, alias) = call(
        &server,
        reqwest::Method::PUT,
        "/v1/models/bc/aliases/production",
        Some(moved),
        &ci,
    )
    .await;
    assert_eq!(status, 200, "{alias}");
    assert_eq!(
        (alias["version"].clone(), alias["updated_by"].clone()),
        (json!(2), json!("ci-bot"))
    );
    let (status, body) = call(
        &server,
        reqwest::Method::PUT,
        "/v1/models/bc/aliases/production",
        Some(json!({"version": 9})),
        &ci,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = call(
        &server,
        reqwest::Method::PUT,
        "/v1/models/bc/aliases/production",
        Some(json!({"version": [1]})),
        &ci,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(
        &server,
        reqwest::Method::DELETE,
        "/v1/models/bc/aliases/staging",
        None,
        &ci,
    )
    .await;
    assert_eq!(status, 204);

    let (status, aliases) = call(&server, reqwest::Method::GET, "/v1/models/bc/aliases", None, &viewer).await;
    assert_eq!(status, 200, "{aliases}");
    let current = items(&aliases["aliases"]);
    assert_eq!(current.len(), 1, "{aliases}");
    assert_eq!(current[0]["alias"], "production");
    let history = items(&aliases["history"]);
    let production = history.iter().find(|e| e["alias"] == "production").expect("moved");
    assert_eq!(production["by"], "ci-bot", "{aliases}");
    assert_eq!(production["reason"], "rf wins offline", "{aliases}");
    let deleted = history
        .iter()
        .find(|e| e["alias"] == "staging" && e["to_version"].is_null())
        .expect("deleted");
    assert_eq!(deleted["by"], "ci-bot", "{aliases}");
    let (status, models) = call(&server, reqwest::Method::GET, "/v1/models", None, &viewer).await;
    assert_eq!(status, 200, "{models}");
    assert_eq!(items(&models)[0]["name"], "bc", "{models}");

    // The change log (read with the CLI, straight from the store) names the principal.
    let changes = keel.json(&["changes", "--subject", "model/bc"]);
    let set = items(&changes)
        .iter()
        .find(|c| c["kind"] == "alias.set" && c["details"]["alias"] == "production")
        .unwrap_or_else(|| panic!("no alias.set in {changes}"));
    assert_eq!(set["actor"], "ci-bot", "{changes}");
}

/// Training data named at push, over REST as with `keel model push`: a catalogued table the
/// pusher may read is linked to the pushed version in the lineage (at the table's current
/// version); one they may not read refuses the push before anything is stored; a reference that
/// names no catalogued table (a path) is kept as text only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_over_rest_links_a_catalogued_training_table_only_when_the_pusher_may_read_it() {
    let keel = Keel::quiet();
    keel.json(&["access", "team", "create", "growth"]);
    let csv = keel.file("customers.csv", "id,spend\n1,10.5\n2,3.25\n");
    keel.json(&["data", "ingest", &csv, "--table", "customers", "--owner", "growth"]);
    keel.json(&["data", "ingest", &csv, "--table", "customers"]);
    keel.json(&["access", "team", "add", "growth", "ci-bot"]);
    let ci = token(&keel, "ci-bot", "registry view");
    let outsider = token(&keel, "other-bot", "registry view");
    let server = keel.serve(&["--auth", "required"]).ready().await;
    let bytes = model_bytes("bc-lr");
    let hash = keel_registry::content_hash(&bytes);
    let trained = "?training_data=customers";

    let (status, body) = push(&server, "churn", trained, bytes.clone(), Some(&hash), Some(&outsider)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().expect("error").contains("no read grant"),
        "{body}"
    );
    assert!(items(&keel.json(&["model", "ls"])).is_empty(), "nothing was pushed");

    let (status, pushed) = push(&server, "churn", trained, bytes.clone(), Some(&hash), Some(&ci)).await;
    assert_eq!((status, pushed["version"].clone()), (201, json!(1)), "{pushed}");
    assert_eq!(pushed["training_data"], "customers", "{pushed}");
    let lineage = keel.json(&["data", "lineage", "table/customers"]);
    let edges: Vec<(&str, &str, &str)> = items(&lineage["downstream"])
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap_or(""),
                e["target"].as_str().unwrap_or(""),
                e["created_by"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        edges,
        vec![("table/customers@v1", "model/churn/1", "ci-bot")],
        "{lineage}"
    );
    let audit = keel.json(&["access", "audit", "--table", "customers"]);
    let train = |actor: &str, allowed: bool| {
        items(&audit)
            .iter()
            .any(|e| e["actor"] == actor && e["action"] == "train" && e["allowed"] == allowed)
    };
    assert!(train("ci-bot", true) && train("other-bot", false), "{audit:#}");

    // A path is no table of the catalog: kept as text, no lineage.
    let forest = model_bytes("bc-rf");
    let forest_hash = keel_registry::content_hash(&forest);
    let (status, pushed) = push(
        &server,
        "churn",
        "?training_data=exports/customers.parquet",
        forest,
        Some(&forest_hash),
        Some(&ci),
    )
    .await;
    assert_eq!((status, pushed["version"].clone()), (201, json!(2)), "{pushed}");
    assert_eq!(pushed["training_data"], "exports/customers.parquet", "{pushed}");
    let again = keel.json(&["data", "lineage", "table/customers"]);
    assert_eq!(again["downstream"], lineage["downstream"], "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_with_the_wrong_hash_or_too_many_bytes_leaves_nothing_behind() {
    let keel = Keel::quiet();
    let staging = keel.path("staging");
    std::fs::create_dir_all(&staging).expect("staging folder");
    let ports = Ports::free();
    let server = keel
        .serve_on(ports, &["--max-model-bytes", "20000"], &[("TMPDIR", &staging)])
        .ready()
        .await;
    let bytes = model_bytes("bc-lr");
    let hash = keel_registry::content_hash(&bytes);
    let other = keel_registry::content_hash(b"something else");

    let (status, body) = push(&server, "bc", "", bytes.clone(), Some(&other), None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "hash_mismatch", "{body}");
    assert!(body["error"].as_str().expect("error").contains(&hash[7..]), "{body}");
    let (status, body) = push(&server, "bc", "", bytes.clone(), None, None).await;
    assert_eq!((status, body["code"].clone()), (400, json!("invalid")), "{body}");
    assert!(
        body["error"].as_str().expect("error").contains("x-keel-sha256"),
        "{body}"
    );
    let (status, body) = push(&server, "bc", "", bytes.clone(), Some("abc"), None).await;
    assert_eq!((status, body["code"].clone()), (400, json!("invalid")), "{body}");
    let junk = b"not an onnx model".to_vec();
    let junk_hash = keel_registry::content_hash(&junk);
    let (status, body) = push(&server, "bc", "", junk, Some(&junk_hash), None).await;
    assert_eq!(
        (status, body["code"].clone()),
        (400, json!("invalid_artifact")),
        "{body}"
    );
    let (status, body) = push(&server, "bc", "?colour=red", bytes.clone(), Some(&hash), None).await;
    assert_eq!(status, 400, "{body}");

    // Over the limit, with its length declared: refused before a byte is read.
    let big = model_bytes("bc-rf");
    assert!(big.len() > 20000);
    let big_hash = keel_registry::content_hash(&big);
    let (status, body) = push(&server, "rf", "", big.clone(), Some(&big_hash), None).await;
    assert_eq!(
        (status, body["code"].clone()),
        (413, json!("payload_too_large")),
        "{body}"
    );
    assert!(
        body["error"].as_str().expect("error").contains("--max-model-bytes"),
        "{body}"
    );
    // Over the limit without a length (chunked): stopped as the bytes arrive.
    let status = chunked_push(ports.http, "rf", &big, &big_hash).await;
    assert_eq!(status, 413);

    for model in ["bc", "rf"] {
        let (status, body) = server.get(&format!("/v1/models/{model}/versions")).await;
        assert_eq!((status, body["code"].clone()), (404, json!("not_found")), "{body}");
    }
    let artifacts = walk(&keel.home().join("artifacts"));
    assert!(
        artifacts.is_empty(),
        "artifacts written by refused pushes: {artifacts:?}"
    );
    // Staged uploads are temporary files named .tmpXXXXXX (other parts of the server may keep
    // their own files there).
    let staged: Vec<_> = walk(std::path::Path::new(&staging))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".tmp")))
        .collect();
    assert!(staged.is_empty(), "staged uploads left behind: {staged:?}");

    // The same server then takes the right bytes, chunked or not.
    let (status, body) = push(&server, "bc", "", bytes.clone(), Some(&hash), None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["author"], "anonymous", "{body}");
    let small = model_bytes("bc-xgb");
    assert_eq!(
        chunked_push(ports.http, "xgb", &small, &keel_registry::content_hash(&small)).await,
        201
    );
    assert_eq!(walk(&keel.home().join("artifacts")).len(), 2);
}

/// Every file under `dir` (none when it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() { walk(&path) } else { vec![path] }
        })
        .collect()
}

/// Pushes `bytes` with `Transfer-Encoding: chunked` (no declared length) over a raw
/// connection, in 4 KiB chunks; the response's status.
async fn chunked_push(port: u16, model: &str, bytes: &[u8], sha256: &str) -> u16 {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/models/{model}/versions HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\
         x-keel-sha256: {sha256}\r\nconnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.expect("head");
    for chunk in bytes.chunks(4096) {
        // The server may answer and close before the last chunk: stop writing then.
        if conn
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || conn.write_all(chunk).await.is_err()
            || conn.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}
