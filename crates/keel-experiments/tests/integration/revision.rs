//! Recording a revision without a server (`keel deployment apply`): checked before anything is
//! written, then recorded with its lineage.

use keel_experiments::{DeploymentError, prepare_revision};
use keel_registry::Registry;
use keel_store::Store;
use keel_types::ErrorKind;
use serde_json::json;

async fn registry(dir: &std::path::Path) -> Registry {
    let store = Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store");
    Registry::open(store, &dir.join("artifacts").display().to_string()).expect("registry")
}

fn spec(variants: serde_json::Value) -> serde_json::Value {
    json!({
        "variants": variants,
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 3600}
    })
}

#[tokio::test]
async fn an_unknown_model_is_refused_before_anything_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry(dir.path()).await;
    let err = prepare_revision(
        &registry,
        "promo",
        spec(json!([{"name": "a", "model": "no-such-model@production"}, {"name": "b"}])),
    )
    .await
    .expect_err("an unknown model must be refused");
    assert!(
        matches!(&err, DeploymentError::ModelReference { variant, .. } if variant == "a"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().starts_with("variant a: model no-such-model@production"),
        "{err}"
    );
    assert!(registry.store().list_deployments().await.expect("list").is_empty());
}

#[tokio::test]
async fn a_valid_spec_is_recorded_as_a_revision_by_its_author() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry(dir.path()).await;
    let bad = prepare_revision(&registry, "bad name!", spec(json!([{"name": "a"}, {"name": "b"}]))).await;
    assert_eq!(bad.expect_err("bad name").kind(), ErrorKind::InvalidArgument);
    let prepared = prepare_revision(&registry, "promo", spec(json!([{"name": "a"}, {"name": "b"}])))
        .await
        .expect("valid");
    assert_eq!(prepared.spec.variants.len(), 2);
    let revision = prepared
        .record(registry.store(), "ana", Some("spring"))
        .await
        .expect("recorded");
    assert_eq!((revision.name.as_str(), revision.revision), ("promo", 1));
    let stored = registry.store().get_deployment("promo").await.expect("stored");
    assert_eq!(stored.created_by, "ana");
}
