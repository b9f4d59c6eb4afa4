//! The registry on an S3-compatible bucket: moto's S3 server (a server keel's authors did not
//! write) on loopback, from the repository's `.venv` (scripts/python-env dev installs it;
//! skipped, saying why, only when moto is not installed and `$CI` is not set).

use keel_registry::{PushRequest, Registry, VersionSelector};
use keel_store::Store;

use crate::moto::Moto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_fetch_through_an_s3_bucket() {
    let Some(moto) = Moto::start(&["keel-artifacts"], false).await else {
        return;
    };
    let endpoint = moto.endpoint.clone();
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(&format!("sqlite://{}", dir.path().join("keel.db").display()))
        .await
        .expect("store");
    let config = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
    ];
    let registry = Registry::open_with(store, "s3://keel-artifacts/team-a", &config).expect("registry");
    let bytes =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/bc-lr.onnx"))
            .expect("fixture");
    let v = registry
        .push(
            PushRequest {
                name: "bc-lr".into(),
                author: "ana".into(),
                ..Default::default()
            },
            bytes.clone().into(),
        )
        .await
        .expect("push to S3");
    assert_eq!(v.version, 1);
    let got = registry
        .fetch(
            &registry
                .resolve("bc-lr", &VersionSelector::Latest)
                .await
                .expect("resolve"),
        )
        .await
        .expect("fetch");
    assert_eq!(got.as_ref(), bytes.as_slice());
    // The object is really in the bucket, under the prefix.
    let listing = moto.listing("keel-artifacts");
    assert!(listing.contains(&format!("team-a/{}", v.artifact_key)), "{listing}");
    // A streamed push (the REST push) goes to the bucket in parts, and reads back the same.
    let forest =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/bc-rf.onnx"))
            .expect("fixture");
    let chunks: Vec<Result<bytes::Bytes, String>> = forest
        .chunks(10_000)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let check = keel_registry::UploadCheck {
        sha256: Some(keel_registry::content_hash(&forest)),
        max_bytes: 1 << 20,
    };
    let request = PushRequest {
        name: "bc-rf".into(),
        author: "ci".into(),
        ..Default::default()
    };
    let streamed = registry
        .push_stream(request, futures::stream::iter(chunks), check)
        .await
        .expect("streamed push to S3");
    assert_eq!(streamed.size_bytes, forest.len() as i64);
    let got = registry.fetch(&streamed).await.expect("fetch");
    assert_eq!(got.as_ref(), forest.as_slice());
    // A bucket that does not exist: a clear error, nothing recorded.
    let store2 = Store::open("sqlite::memory:").await.expect("store");
    let missing = Registry::open_with(store2.clone(), "s3://no-such-bucket", &config).expect("registry");
    let err = missing
        .push(
            PushRequest {
                name: "m".into(),
                author: "ana".into(),
                ..Default::default()
            },
            bytes.into(),
        )
        .await
        .expect_err("missing bucket");
    assert_eq!(err.code(), "artifact_store", "{err}");
    assert!(store2.list_models().await.expect("list").is_empty());
}
