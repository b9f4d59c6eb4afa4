//! Compile-time check that every public future is `Send` where callers need
//! it most: inside generic code such as axum handlers and `tokio::spawn`.

use std::future::Future;

use keel_store::{NewModelVersion, Store};

fn require_send<F, Fut>(_: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
}

async fn every_operation(store: Store) {
    let reopened = Store::open("sqlite::memory:").await;
    drop(reopened);
    let new = NewModelVersion {
        model: "m".into(),
        content_hash: "sha256:00".into(),
        artifact_key: "k".into(),
        size_bytes: 1,
        format: "onnx".into(),
        author: "a".into(),
        description: None,
        metrics: serde_json::Value::Null,
        training_data: None,
        signature: serde_json::Value::Null,
    };
    let model = String::from("m");
    let _ = store.create_model_version(new).await;
    let _ = store.get_model_version(&model, 1).await;
    let _ = store.latest_model_version(&model).await;
    let _ = store.list_model_versions(&model).await;
    let _ = store.list_models().await;
    let _ = store.set_alias(&model, "prod", 1, "a", Some("r")).await;
    let _ = store.delete_alias(&model, "prod", "a", None).await;
    let _ = store.get_alias(&model, "prod").await;
    let _ = store.list_aliases(&model).await;
    let _ = store.alias_history(&model, Some("prod")).await;
    let _ = store.list_changes(10, Some("model/")).await;
    store.close().await;
}

#[test]
fn public_futures_are_send_in_generic_contexts() {
    require_send(every_operation);
}
