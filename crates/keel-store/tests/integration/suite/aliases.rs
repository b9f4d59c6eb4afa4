//! Aliases: set, move, no-op, delete, history, and failures that change nothing.

use crate::support::{Fixture, push_all};

pub async fn alias_set_move_delete_with_history(fx: Fixture) {
    push_all(&fx.store, "bc-lr", &["a", "b", "c"]).await;

    let set = fx
        .store
        .set_alias("bc-lr", "prod", 1, "bob", Some("first launch"))
        .await
        .expect("set");
    assert_eq!(
        (set.model.as_str(), set.alias.as_str(), set.version),
        ("bc-lr", "prod", 1)
    );
    assert_eq!(set.updated_by, "bob");
    assert_eq!(fx.store.get_alias("bc-lr", "prod").await.expect("get"), set);

    let moved = fx
        .store
        .set_alias("bc-lr", "prod", 2, "carol", None)
        .await
        .expect("move");
    assert_eq!(moved.version, 2);
    assert_eq!(moved.updated_by, "carol");
    assert!(moved.updated_at >= set.updated_at);

    // Setting the version it already has is a no-op: same alias back, no event.
    let same = fx
        .store
        .set_alias("bc-lr", "prod", 2, "dave", Some("again"))
        .await
        .expect("no-op");
    assert_eq!(same, moved);
    assert_eq!(fx.store.get_alias("bc-lr", "prod").await.expect("get"), moved);

    fx.store
        .set_alias("bc-lr", "canary", 3, "bob", None)
        .await
        .expect("canary");
    fx.store
        .delete_alias("bc-lr", "prod", "erin", Some("retired"))
        .await
        .expect("delete");
    let err = fx.store.get_alias("bc-lr", "prod").await.expect_err("deleted");
    assert_eq!(err.code(), "not_found");
    assert!(err.to_string().contains("'prod'"), "{err}");

    let history = fx.store.alias_history("bc-lr", Some("prod")).await.expect("history");
    let moves: Vec<_> = history
        .iter()
        .map(|e| (e.from_version, e.to_version, e.by.as_str(), e.reason.as_deref()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (None, Some(1), "bob", Some("first launch")),
            (Some(1), Some(2), "carol", None),
            (Some(2), None, "erin", Some("retired")),
        ]
    );
    assert!(history.iter().all(|e| e.model == "bc-lr" && e.alias == "prod"));
    assert!(history.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(history[0].at, set.updated_at);

    let all = fx.store.alias_history("bc-lr", None).await.expect("all history");
    assert_eq!(all.len(), 4);
    assert_eq!(all.iter().filter(|e| e.alias == "canary").count(), 1);
    assert_eq!(all.last().map(|e| e.to_version), Some(None));

    let aliases = fx.store.list_aliases("bc-lr").await.expect("aliases");
    assert_eq!(aliases.len(), 1);
    assert_eq!((aliases[0].alias.as_str(), aliases[0].version), ("canary", 3));
}

pub async fn alias_to_missing_version_is_not_found_and_changes_nothing(fx: Fixture) {
    push_all(&fx.store, "bc-lr", &["a"]).await;
    let set = fx.store.set_alias("bc-lr", "prod", 1, "bob", None).await.expect("set");
    let changes_before = fx.store.list_changes(100, None).await.expect("changes");

    let err = fx
        .store
        .set_alias("bc-lr", "prod", 99, "bob", None)
        .await
        .expect_err("missing version");
    assert_eq!(err.code(), "not_found");
    assert!(
        err.to_string().contains("99") && err.to_string().contains("'bc-lr'"),
        "{err}"
    );

    let err = fx
        .store
        .set_alias("ghost", "prod", 1, "bob", None)
        .await
        .expect_err("missing model");
    assert_eq!(err.code(), "not_found");

    assert_eq!(fx.store.get_alias("bc-lr", "prod").await.expect("get"), set);
    assert_eq!(fx.store.alias_history("bc-lr", None).await.expect("history").len(), 1);
    assert_eq!(fx.store.list_changes(100, None).await.expect("changes"), changes_before);
    assert!(
        fx.store
            .list_models()
            .await
            .expect("models")
            .iter()
            .all(|m| m.name != "ghost")
    );
}

pub async fn delete_missing_alias_is_not_found(fx: Fixture) {
    push_all(&fx.store, "bc-lr", &["a"]).await;
    let err = fx
        .store
        .delete_alias("bc-lr", "prod", "bob", None)
        .await
        .expect_err("absent");
    assert_eq!(err.code(), "not_found");
    assert!(err.to_string().contains("'prod'"), "{err}");
    let err = fx
        .store
        .delete_alias("ghost", "prod", "bob", None)
        .await
        .expect_err("no model");
    assert_eq!(err.code(), "not_found");
    assert!(fx.store.alias_history("bc-lr", None).await.expect("history").is_empty());
    assert_eq!(fx.store.list_changes(10, None).await.expect("changes").len(), 1);
}

pub async fn aliases_are_listed_sorted_and_per_model(fx: Fixture) {
    push_all(&fx.store, "bc-lr", &["a", "b"]).await;
    push_all(&fx.store, "fraud", &["a"]).await;
    for (alias, version) in [("staging", 2), ("Prod", 1), ("canary", 2)] {
        fx.store
            .set_alias("bc-lr", alias, version, "bob", None)
            .await
            .expect("set");
    }
    fx.store.set_alias("fraud", "prod", 1, "bob", None).await.expect("set");

    let names: Vec<String> = fx
        .store
        .list_aliases("bc-lr")
        .await
        .expect("aliases")
        .into_iter()
        .map(|a| a.alias)
        .collect();
    // Bytewise order on both backends, whatever the database collation.
    assert_eq!(names, vec!["Prod", "canary", "staging"]);

    let fraud = fx.store.list_aliases("fraud").await.expect("aliases");
    assert_eq!(fraud.len(), 1);
    assert_eq!(fraud[0].model, "fraud");
    let other = fx.store.get_alias("fraud", "staging").await.expect_err("per model");
    assert_eq!(other.code(), "not_found");
}

pub async fn concurrent_alias_moves_keep_history_consistent(fx: Fixture) {
    push_all(&fx.store, "bc-lr", &["a", "b", "c", "d"]).await;
    let tasks: Vec<_> = (1..=4)
        .map(|version| {
            let store = fx.store.clone();
            tokio::spawn(async move {
                store
                    .set_alias("bc-lr", "prod", version, &format!("user{version}"), None)
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("alias task").expect("concurrent set");
    }
    let history = fx.store.alias_history("bc-lr", Some("prod")).await.expect("history");
    assert_eq!(history.len(), 4);
    assert_eq!(history[0].from_version, None);
    // Each move starts where the previous one ended: no lost updates.
    for pair in history.windows(2) {
        assert_eq!(pair[1].from_version, pair[0].to_version);
    }
    let current = fx.store.get_alias("bc-lr", "prod").await.expect("get");
    assert_eq!(Some(current.version), history[3].to_version);
}
