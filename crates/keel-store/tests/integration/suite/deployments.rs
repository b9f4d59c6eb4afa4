//! Deployments: revisions numbered per deployment, history, latest per name, change log.

use serde_json::json;

use crate::support::Fixture;

pub async fn deployment_revisions_and_history(fx: Fixture) {
    let spec1 = json!({"variants": ["a", "b"], "policy": {"type": "fixed_weights", "weights": [1, 1]}});
    let spec2 = json!({"variants": ["a", "b"], "policy": {"type": "thompson_beta"}});
    let r1 = fx
        .store
        .put_deployment("promo", &spec1, "ana", Some("launch"))
        .await
        .expect("create");
    assert_eq!((r1.revision, r1.created_by.as_str()), (1, "ana"));
    let r2 = fx
        .store
        .put_deployment("promo", &spec2, "bo", None)
        .await
        .expect("update");
    assert_eq!(r2.revision, 2);
    fx.store
        .put_deployment("other", &spec1, "ana", None)
        .await
        .expect("create other");

    let current = fx.store.get_deployment("promo").await.expect("get");
    assert_eq!((current.revision, current.spec.clone()), (2, spec2.clone()));
    assert_eq!(
        fx.store.get_deployment_revision("promo", 1).await.expect("r1").spec,
        spec1
    );
    let history = fx.store.deployment_history("promo").await.expect("history");
    assert_eq!(history.iter().map(|r| r.revision).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(history[0].reason.as_deref(), Some("launch"));
    let all = fx.store.list_deployments().await.expect("list");
    assert_eq!(
        all.iter().map(|d| (d.name.as_str(), d.revision)).collect::<Vec<_>>(),
        vec![("other", 1), ("promo", 2)]
    );

    let changes = fx
        .store
        .list_changes(10, Some("deployment/promo/"))
        .await
        .expect("changes");
    assert_eq!(
        changes.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(),
        vec!["deployment.update", "deployment.create"]
    );
    fx.store
        .record_change(
            "guardrail",
            "experiment.pause",
            "deployment/promo/variant/b",
            &json!({"why": "worse"}),
        )
        .await
        .expect("record");
    let latest = fx.store.list_changes(1, None).await.expect("changes");
    assert_eq!(
        (latest[0].kind.as_str(), latest[0].actor.as_str()),
        ("experiment.pause", "guardrail")
    );
}

pub async fn missing_deployments_are_not_found(fx: Fixture) {
    let err = fx.store.get_deployment("nope").await.expect_err("missing");
    assert_eq!(err.code(), "not_found");
    assert!(err.to_string().contains("deployment 'nope' does not exist"), "{err}");
    fx.store
        .put_deployment("d", &json!({}), "ana", None)
        .await
        .expect("create");
    assert_eq!(
        fx.store.get_deployment_revision("d", 5).await.expect_err("rev").code(),
        "not_found"
    );
    assert_eq!(
        fx.store.deployment_history("nope").await.expect_err("hist").code(),
        "not_found"
    );
    assert_eq!(
        fx.store
            .put_deployment("", &json!({}), "ana", None)
            .await
            .expect_err("empty")
            .code(),
        "invalid"
    );
    assert_eq!(
        fx.store
            .put_deployment("d", &json!({}), " ", None)
            .await
            .expect_err("actor")
            .code(),
        "invalid"
    );
    assert_eq!(fx.store.get_deployment("d").await.expect("still").revision, 1);
}
