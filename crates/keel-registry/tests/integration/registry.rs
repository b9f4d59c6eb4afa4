//! The registry over a real SQLite store and a real local artifact folder.

use keel_registry::{PushRequest, Registry, RegistryError, VersionSelector};
use keel_store::Store;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../fixtures/models/{name}.onnx"));
    std::fs::read(path).expect("fixture")
}

async fn registry(dir: &tempfile::TempDir) -> Registry {
    let store = Store::open(&format!("sqlite://{}", dir.path().join("keel.db").display()))
        .await
        .expect("store");
    Registry::open(store, &dir.path().join("artifacts").display().to_string()).expect("registry")
}

fn request(name: &str) -> PushRequest {
    PushRequest {
        name: name.into(),
        author: "ana".into(),
        description: Some("first".into()),
        metrics: serde_json::json!({"auc": 0.99}),
        training_data: Some("lake://bc/v3".into()),
    }
}

fn artifact_files(dir: &tempfile::TempDir) -> Vec<String> {
    fn walk(p: &std::path::Path, out: &mut Vec<String>) {
        if let Ok(entries) = std::fs::read_dir(p) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.push(e.path().display().to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.path().join("artifacts"), &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn push_reads_the_signature_and_keeps_metadata() {
    let dir = tempfile::tempdir().expect("tmp");
    let reg = registry(&dir).await;
    let v = reg
        .push(request("bc-xgb"), fixture("bc-xgb").into())
        .await
        .expect("push");
    assert_eq!(v.version, 1);
    assert!(v.content_hash.starts_with("sha256:") && v.content_hash.len() == 71);
    assert_eq!(v.author, "ana");
    assert_eq!(v.metrics, serde_json::json!({"auc": 0.99}));
    assert_eq!(v.training_data.as_deref(), Some("lake://bc/v3"));
    let sig = Registry::signature(&v).expect("signature");
    assert_eq!(sig.inputs.len(), 1);
    assert_eq!(
        (sig.inputs[0].name.as_str(), sig.inputs[0].datatype.as_str()),
        ("input", "FP32")
    );
    assert_eq!(sig.inputs[0].shape, vec![-1, 30]);
    assert_eq!(
        sig.outputs.iter().map(|o| o.datatype.as_str()).collect::<Vec<_>>(),
        vec!["INT64", "FP32"]
    );
    assert!(
        sig.operators.contains(&"ai.onnx.ml:TreeEnsembleClassifier".to_string()),
        "{:?}",
        sig.operators
    );
    // ZipMap output is read as a sequence of maps served as a tensor.
    let z = reg
        .push(request("bc-lr-zipmap"), fixture("bc-lr-zipmap").into())
        .await
        .expect("push");
    let sig = Registry::signature(&z).expect("signature");
    let prob = sig
        .outputs
        .iter()
        .find(|o| o.name == "output_probability")
        .expect("zipmap output");
    assert_eq!(prob.onnx_type.as_deref(), Some("seq(map(int64,float))"));
    // The bytes come back, verified.
    assert_eq!(
        reg.fetch(&v).await.expect("fetch").as_ref(),
        fixture("bc-xgb").as_slice()
    );
}

#[tokio::test]
async fn corrupt_or_foreign_files_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let reg = registry(&dir).await;
    reg.push(request("m"), fixture("bc-lr").into()).await.expect("push");
    let before_files = artifact_files(&dir);
    let before_versions = reg.list_versions("m").await.expect("versions");
    let mut truncated = fixture("bc-rf");
    truncated.truncate(truncated.len() / 3);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "empty"),
        (b"PK\x03\x04 this is a zip file".to_vec(), "not an ONNX model"),
        (b"{\"not\": \"onnx\"}".to_vec(), "not an ONNX model"),
        (truncated, "not an ONNX model"),
    ];
    for (bytes, needle) in cases {
        let err = reg.push(request("m"), bytes.into()).await.expect_err("refused");
        assert!(matches!(err, RegistryError::InvalidArtifact { .. }), "{err:?}");
        assert_eq!(err.code(), "invalid_artifact");
        assert!(err.to_string().contains(needle), "{err}");
    }
    // Same content twice: a conflict naming the existing version, nothing written.
    let err = reg
        .push(request("m"), fixture("bc-lr").into())
        .await
        .expect_err("duplicate");
    assert_eq!(err.code(), "conflict");
    assert!(err.to_string().contains("version 1"), "{err}");
    // Bad names and metrics.
    let err = reg
        .push(request("../etc"), fixture("bc-rf").into())
        .await
        .expect_err("bad name");
    assert_eq!(err.code(), "invalid");
    let mut bad_metrics = request("m");
    bad_metrics.metrics = serde_json::json!([1, 2]);
    assert_eq!(
        reg.push(bad_metrics, fixture("bc-rf").into())
            .await
            .expect_err("metrics")
            .code(),
        "invalid"
    );
    assert_eq!(artifact_files(&dir), before_files);
    assert_eq!(reg.list_versions("m").await.expect("versions"), before_versions);
}

#[tokio::test]
async fn aliases_move_with_history_and_resolve() {
    let dir = tempfile::tempdir().expect("tmp");
    let reg = registry(&dir).await;
    reg.push(request("m"), fixture("bc-lr").into()).await.expect("v1");
    reg.push(request("m"), fixture("bc-rf").into()).await.expect("v2");
    // Without @production the newest is served.
    assert_eq!(reg.serving_version("m").await.expect("serving").version, 2);
    reg.set_alias("m", "production", &VersionSelector::Number(1), "ana", Some("rollback"))
        .await
        .expect("alias");
    assert_eq!(reg.serving_version("m").await.expect("serving").version, 1);
    reg.set_alias("m", "staging", &VersionSelector::Alias("production".into()), "bo", None)
        .await
        .expect("alias");
    assert_eq!(
        reg.resolve("m", &VersionSelector::parse("@staging").expect("sel"))
            .await
            .expect("r")
            .version,
        1
    );
    reg.set_alias("m", "production", &VersionSelector::Latest, "bo", Some("promote"))
        .await
        .expect("alias");
    let history = reg.alias_history("m", Some("production")).await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|e| (e.from_version, e.to_version, e.by.as_str()))
            .collect::<Vec<_>>(),
        vec![(None, Some(1), "ana"), (Some(1), Some(2), "bo")]
    );
    let err = reg
        .set_alias("m", "production", &VersionSelector::Number(9), "bo", None)
        .await
        .expect_err("missing version");
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(
        reg.serving_version("m").await.expect("serving").version,
        2,
        "failed move changed nothing"
    );
    assert_eq!(
        reg.set_alias("m", "42", &VersionSelector::Latest, "bo", None)
            .await
            .expect_err("bad")
            .code(),
        "invalid"
    );
    reg.delete_alias("m", "staging", "bo", None).await.expect("delete");
    assert!(
        reg.resolve("m", &VersionSelector::Alias("staging".into()))
            .await
            .expect_err("gone")
            .is_not_found()
    );
}

#[tokio::test]
async fn a_tampered_artifact_is_detected_on_fetch() {
    let dir = tempfile::tempdir().expect("tmp");
    let reg = registry(&dir).await;
    let v = reg.push(request("m"), fixture("bc-lr").into()).await.expect("push");
    let path = dir.path().join("artifacts").join(&v.artifact_key);
    std::fs::write(&path, fixture("bc-rf")).expect("tamper");
    let err = reg.fetch(&v).await.expect_err("hash mismatch");
    assert_eq!(err.code(), "artifact_store");
    assert!(err.to_string().contains("does not match its recorded hash"), "{err}");
}

#[tokio::test]
async fn push_or_find_returns_the_existing_version_for_the_same_bytes() {
    let dir = tempfile::tempdir().expect("tmp");
    let reg = registry(&dir).await;
    let (v1, new) = reg
        .push_or_find(request("bc"), fixture("bc-lr").into())
        .await
        .expect("push");
    assert!(new);
    let (again, new) = reg
        .push_or_find(request("bc"), fixture("bc-lr").into())
        .await
        .expect("find");
    assert!(!new);
    assert_eq!((again.version, again.content_hash), (v1.version, v1.content_hash));
    let (v2, new) = reg
        .push_or_find(request("bc"), fixture("bc-xgb").into())
        .await
        .expect("push");
    assert!(new);
    assert_eq!(v2.version, 2);
    let refused = reg.push_or_find(request("bc"), b"junk".to_vec().into()).await;
    assert!(matches!(refused, Err(RegistryError::InvalidArtifact { .. })));
}

#[tokio::test]
async fn push_with_aliases_points_them_or_writes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let reg = registry(&dir).await;
    let aliases = ["@staging".to_string(), "candidate".to_string()];
    let v = reg
        .push_with_aliases(request("bc"), fixture("bc-lr").into(), &aliases)
        .await
        .expect("push");
    for a in ["staging", "candidate"] {
        let at = reg
            .resolve("bc", &VersionSelector::Alias(a.into()))
            .await
            .expect("alias");
        assert_eq!(at.version, v.version);
    }
    let history = reg.alias_history("bc", Some("staging")).await.expect("history");
    assert_eq!(history[0].reason.as_deref(), Some("set at push"));
    assert_eq!(history[0].by, "ana");
    let bad = reg
        .push_with_aliases(request("bc"), fixture("bc-xgb").into(), &["latest".to_string()])
        .await;
    assert!(matches!(bad, Err(RegistryError::Invalid(_))));
    assert_eq!(reg.list_versions("bc").await.expect("versions").len(), 1);
}
