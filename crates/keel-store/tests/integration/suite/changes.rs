//! The change log: one attributed entry per change, newest first, filterable.

use serde_json::json;

use crate::support::{Fixture, push_all};

pub async fn change_log_records_every_change(fx: Fixture) {
    push_all(&fx.store, "bc-lr", &["a", "b"]).await;
    push_all(&fx.store, "bc-lr2", &["a"]).await;
    fx.store
        .set_alias("bc-lr", "prod", 2, "bob", Some("better auc"))
        .await
        .expect("set");
    fx.store
        .delete_alias("bc-lr", "prod", "carol", None)
        .await
        .expect("delete");

    let changes = fx.store.list_changes(100, None).await.expect("changes");
    let summary: Vec<_> = changes
        .iter()
        .map(|c| (c.kind.as_str(), c.subject.as_str(), c.actor.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("alias.delete", "model/bc-lr/alias/prod", "carol"),
            ("alias.set", "model/bc-lr/alias/prod", "bob"),
            ("model.push", "model/bc-lr2/1", "alice"),
            ("model.push", "model/bc-lr/2", "alice"),
            ("model.push", "model/bc-lr/1", "alice"),
        ]
    );
    assert!(changes.windows(2).all(|w| w[0].at >= w[1].at && w[0].id > w[1].id));

    let push = &changes[4];
    assert_eq!(push.details["version"], json!(1));
    assert_eq!(push.details["model"], json!("bc-lr"));
    assert_eq!(push.details["content_hash"], json!(format!("sha256:{:0>64}", "a")));
    assert_eq!(push.details["format"], json!("onnx"));
    let set = &changes[1];
    assert_eq!(set.details["from_version"], json!(null));
    assert_eq!(set.details["to_version"], json!(2));
    assert_eq!(set.details["reason"], json!("better auc"));
    assert_eq!(changes[0].details["from_version"], json!(2));

    // The limit keeps the newest entries.
    let newest = fx.store.list_changes(2, None).await.expect("limited");
    assert_eq!(newest, changes[..2].to_vec());
    assert!(fx.store.list_changes(0, None).await.expect("zero").is_empty());
    let err = fx.store.list_changes(-1, None).await.expect_err("negative");
    assert_eq!(err.code(), "invalid");

    // A prefix with a trailing slash selects one model, not its namesakes.
    let scoped = fx.store.list_changes(100, Some("model/bc-lr/")).await.expect("scoped");
    assert_eq!(scoped.len(), 4);
    assert!(scoped.iter().all(|c| c.subject.starts_with("model/bc-lr/")));
    let aliases = fx
        .store
        .list_changes(100, Some("model/bc-lr/alias/"))
        .await
        .expect("alias changes");
    assert_eq!(aliases.len(), 2);
    let none = fx.store.list_changes(100, Some("model/ghost/")).await.expect("none");
    assert!(none.is_empty());
}

pub async fn prefix_is_matched_literally(fx: Fixture) {
    push_all(&fx.store, "a_b", &["x"]).await;
    push_all(&fx.store, "aXb", &["x"]).await;
    push_all(&fx.store, "a%b", &["x"]).await;
    // `_` and `%` are not wildcards in the prefix.
    let scoped = fx.store.list_changes(10, Some("model/a_b/")).await.expect("changes");
    assert_eq!(scoped.len(), 1);
    assert_eq!(scoped[0].subject, "model/a_b/1");
    let scoped = fx.store.list_changes(10, Some("model/a%")).await.expect("changes");
    assert_eq!(scoped.len(), 1);
    assert_eq!(scoped[0].subject, "model/a%b/1");
}
