//! Model versions: numbering, duplicates, concurrency, reads, summaries.

use std::collections::BTreeSet;

use keel_store::{Backend, Store};
use serde_json::json;

use crate::support::{Fixture, new_version, push_all};

pub async fn open_reports_backend_and_starts_empty(fx: Fixture) {
    assert_eq!(fx.store.backend(), fx.backend);
    let expected = match fx.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(fx.store.backend().to_string(), expected);
    assert!(fx.store.list_models().await.expect("list models").is_empty());
    let changes = fx.store.list_changes(10, None).await.expect("list changes");
    assert!(changes.is_empty());
}

pub async fn versions_are_assigned_one_to_n(fx: Fixture) {
    let pushed = push_all(&fx.store, "bc-lr", &["a", "b", "c"]).await;
    let numbers: Vec<i64> = pushed.iter().map(|v| v.version).collect();
    assert_eq!(numbers, vec![1, 2, 3]);

    // Another model starts its own numbering.
    let other = push_all(&fx.store, "fraud", &["a"]).await;
    assert_eq!(other[0].version, 1);

    // What the push returned is exactly what is stored, field for field.
    for version in &pushed {
        let stored = fx
            .store
            .get_model_version("bc-lr", version.version)
            .await
            .expect("get pushed version");
        assert_eq!(&stored, version);
    }
    let first = &pushed[0];
    assert_eq!(first.content_hash, format!("sha256:{:0>64}", "a"));
    assert_eq!(first.format, "onnx");
    assert_eq!(first.author, "alice");
    assert_eq!(first.metrics, json!({ "auc": 0.91 }));
    assert!(pushed.windows(2).all(|w| w[0].created_at <= w[1].created_at));
}

pub async fn duplicate_content_is_a_conflict(fx: Fixture) {
    push_all(&fx.store, "bc-lr", &["a", "b"]).await;
    let err = fx
        .store
        .create_model_version(new_version("bc-lr", "a"))
        .await
        .expect_err("same content pushed twice");
    assert_eq!(err.code(), "conflict");
    let message = err.to_string();
    assert!(message.contains("'bc-lr'"), "{message}");
    assert!(message.contains("version 1"), "{message}");

    // Nothing was written: no third version, no third change, and the next
    // push still gets version 3.
    assert_eq!(fx.store.list_model_versions("bc-lr").await.expect("list").len(), 2);
    assert_eq!(fx.store.list_changes(10, None).await.expect("changes").len(), 2);
    let next = push_all(&fx.store, "bc-lr", &["c"]).await;
    assert_eq!(next[0].version, 3);

    // The same content under another model is fine.
    let other = push_all(&fx.store, "fraud", &["a"]).await;
    assert_eq!(other[0].version, 1);
}

pub async fn concurrent_pushes_get_distinct_contiguous_versions(fx: Fixture) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store: Store = fx.store.clone();
            tokio::spawn(async move { store.create_model_version(new_version("bc-lr", &format!("c{i}"))).await })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for task in tasks {
        let pushed = task.await.expect("push task").expect("concurrent push");
        assert!(versions.insert(pushed.version), "duplicate version {}", pushed.version);
    }
    assert_eq!(versions, (1..=8).collect::<BTreeSet<i64>>());
    let listed = fx.store.list_model_versions("bc-lr").await.expect("list");
    assert_eq!(
        listed.iter().map(|v| v.version).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    let hashes: BTreeSet<_> = listed.iter().map(|v| v.content_hash.clone()).collect();
    assert_eq!(hashes.len(), 8);
}

pub async fn concurrent_duplicate_pushes_leave_one_version(fx: Fixture) {
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = fx.store.clone();
            tokio::spawn(async move { store.create_model_version(new_version("bc-lr", "same")).await })
        })
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await.expect("push task") {
            Ok(version) => {
                assert_eq!(version.version, 1);
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), "conflict", "{e}");
                assert!(e.to_string().contains("version 1"), "{e}");
                conflicts += 1;
            }
        }
    }
    assert_eq!((ok, conflicts), (1, 3));
    assert_eq!(fx.store.list_model_versions("bc-lr").await.expect("list").len(), 1);
}

pub async fn reads_and_not_found(fx: Fixture) {
    push_all(&fx.store, "bc-lr", &["a", "b"]).await;

    let latest = fx.store.latest_model_version("bc-lr").await.expect("latest");
    assert_eq!(latest.version, 2);
    let listed = fx.store.list_model_versions("bc-lr").await.expect("list");
    assert_eq!(listed.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2]);

    let err = fx.store.get_model_version("bc-lr", 7).await.expect_err("version 7");
    assert_eq!(err.code(), "not_found");
    assert!(
        err.to_string().contains("'bc-lr'") && err.to_string().contains("7"),
        "{err}"
    );

    for err in [
        fx.store.get_model_version("nope", 1).await.expect_err("get"),
        fx.store.latest_model_version("nope").await.expect_err("latest"),
        fx.store.list_model_versions("nope").await.expect_err("list"),
        fx.store.list_aliases("nope").await.expect_err("aliases"),
        fx.store.alias_history("nope", None).await.expect_err("history"),
    ] {
        assert_eq!(err.code(), "not_found", "{err}");
        assert!(err.to_string().contains("'nope'"), "{err}");
    }
}

pub async fn list_models_summarises_with_aliases(fx: Fixture) {
    let zeta = push_all(&fx.store, "zeta", &["a"]).await;
    let bc = push_all(&fx.store, "bc-lr", &["a", "b", "c"]).await;
    fx.store
        .set_alias("bc-lr", "staging", 3, "bob", None)
        .await
        .expect("alias");
    fx.store
        .set_alias("bc-lr", "prod", 2, "bob", None)
        .await
        .expect("alias");

    let models = fx.store.list_models().await.expect("list models");
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["bc-lr", "zeta"]);

    let summary = &models[0];
    assert_eq!(summary.latest_version, 3);
    assert_eq!(summary.version_count, 3);
    assert_eq!(summary.created_at, bc[0].created_at);
    assert_eq!(summary.updated_at, bc[2].created_at);
    assert_eq!(summary.aliases, vec![("prod".to_owned(), 2), ("staging".to_owned(), 3)]);

    let zeta_summary = &models[1];
    assert_eq!((zeta_summary.latest_version, zeta_summary.version_count), (1, 1));
    assert_eq!(zeta_summary.created_at, zeta[0].created_at);
    assert!(zeta_summary.aliases.is_empty());
}

pub async fn empty_names_are_invalid(fx: Fixture) {
    let err = fx
        .store
        .create_model_version(new_version("", "a"))
        .await
        .expect_err("empty model");
    assert_eq!(err.code(), "invalid");
    assert!(err.to_string().contains("model name"), "{err}");

    push_all(&fx.store, "bc-lr", &["a"]).await;
    let err = fx
        .store
        .set_alias("bc-lr", "", 1, "bob", None)
        .await
        .expect_err("empty alias");
    assert_eq!(err.code(), "invalid");
    let err = fx
        .store
        .set_alias(" ", "prod", 1, "bob", None)
        .await
        .expect_err("blank model");
    assert_eq!(err.code(), "invalid");
    let err = fx
        .store
        .delete_alias("bc-lr", "", "bob", None)
        .await
        .expect_err("empty alias");
    assert_eq!(err.code(), "invalid");
    let err = fx
        .store
        .set_alias("bc-lr", "prod", 1, "", None)
        .await
        .expect_err("no actor");
    assert_eq!(err.code(), "invalid");

    // Rejected calls wrote nothing.
    assert!(fx.store.list_aliases("bc-lr").await.expect("aliases").is_empty());
    assert_eq!(fx.store.list_changes(10, None).await.expect("changes").len(), 1);
}

pub async fn json_fields_round_trip(fx: Fixture) {
    let mut new = new_version("bc-lr", "a");
    new.metrics = json!({ "auc": 0.5, "per_class": { "fraud": [0.1, 0.2] }, "note": "ünïcode ✓" });
    new.signature = json!(["opaque", 1, null, { "k": true }]);
    new.description = None;
    new.training_data = None;
    let pushed = fx.store.create_model_version(new.clone()).await.expect("push");
    let stored = fx.store.get_model_version("bc-lr", 1).await.expect("get");
    assert_eq!(stored.metrics, new.metrics);
    assert_eq!(stored.signature, new.signature);
    assert_eq!(stored.description, None);
    assert_eq!(stored.training_data, None);
    assert_eq!(stored, pushed);

    // Missing metrics are stored as an empty object.
    let mut bare = new_version("bc-lr", "b");
    bare.metrics = serde_json::Value::Null;
    let pushed = fx.store.create_model_version(bare).await.expect("push");
    assert_eq!(pushed.metrics, json!({}));
    let stored = fx.store.get_model_version("bc-lr", 2).await.expect("get");
    assert_eq!(stored.metrics, json!({}));
}

pub async fn reopen_is_idempotent_and_keeps_data(fx: Fixture) {
    let pushed = push_all(&fx.store, "bc-lr", &["a"]).await;
    fx.store
        .set_alias("bc-lr", "prod", 1, "bob", Some("launch"))
        .await
        .expect("alias");
    fx.store.close().await;

    // Opening twice more re-runs the migrator, which must find nothing to do.
    for _ in 0..2 {
        let store = Store::open(&fx.url).await.expect("reopen");
        assert_eq!(store.backend(), fx.backend);
        let stored = store.get_model_version("bc-lr", 1).await.expect("get after reopen");
        assert_eq!(stored, pushed[0]);
        assert_eq!(store.get_alias("bc-lr", "prod").await.expect("alias").version, 1);
        store.close().await;
    }

    let store = Store::open(&fx.url).await.expect("reopen");
    let next = store
        .create_model_version(new_version("bc-lr", "b"))
        .await
        .expect("push after reopen");
    assert_eq!(next.version, 2);
    assert_eq!(store.list_changes(10, None).await.expect("changes").len(), 3);
    store.close().await;
}
