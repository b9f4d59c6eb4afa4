//! Every door announces the same events (`keel_plan::changes`), on a real registry (SQLite, an
//! artifacts folder, the fixture models) with a webhook subscribed to everything: a push with
//! aliases, an alias move held by the policy and approved by a second person, a removal, a
//! deployment revised (as `keel deployment apply` and `PUT /v1/deployments` do) and `keel apply`
//! (held changes and applied ones alike) all reach the outbox with who did them.

use std::path::Path;

use keel_plan::approvals::{POLICY, Requester, Revise, Via};
use keel_plan::changes::{self, Outcome};
use keel_registry::Registry;
use serde_json::{Value, json};

use crate::support::{apply_dir, promo, push, registry, write};

fn who(by: &str) -> Requester<'_> {
    Requester {
        by,
        source: "test",
        git_commit: None,
    }
}

/// The events queued so far, oldest first: (event, its data).
async fn events(reg: &Registry) -> Vec<(String, Value)> {
    let mut all = reg.store().list_deliveries(None, 1000).await.expect("deliveries");
    all.sort_by_key(|d| d.id);
    all.into_iter().map(|d| (d.event, d.payload["data"].clone())).collect()
}

async fn new_events(reg: &Registry, seen: &mut usize) -> Vec<(String, Value)> {
    let all = events(reg).await;
    let fresh = all[*seen..].to_vec();
    *seen = all.len();
    fresh
}

#[tokio::test]
async fn every_door_announces_the_same_events() {
    let home = tempfile::tempdir().expect("home");
    let reg = registry(home.path()).await;
    reg.store()
        .add_webhook("http://127.0.0.1:9/hook", &["*".to_string()], None, "admin")
        .await
        .expect("webhook");
    push(&reg, "bc-lr", "bc-lr.onnx").await;
    let mut seen = events(&reg).await.len();

    // A push with an alias: the push, then the alias it set.
    let v2 = {
        let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/bc-rf.onnx"))
            .expect("fixture");
        let request = keel_registry::PushRequest {
            name: "bc-lr".into(),
            author: "ana".into(),
            description: None,
            metrics: json!({}),
            training_data: None,
        };
        reg.push(request, bytes.into()).await.expect("push")
    };
    let set = changes::pushed(&reg, &v2, &["staging".to_string()], who("ana"))
        .await
        .expect("announced");
    assert!(
        matches!(&set[..], [(a, Outcome::Done(Some(_)))] if a == "staging"),
        "{set:?}"
    );
    let fresh = new_events(&reg, &mut seen).await;
    let names: Vec<&str> = fresh.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["model.pushed", "alias.moved"]);
    assert_eq!(fresh[0].1["version"], 2);
    assert_eq!(
        fresh[1].1,
        json!({"model": "bc-lr", "alias": "staging", "version": 2, "by": "ana", "reason": "set at push"})
    );

    // The policy holds production: the move waits (change.pending), a second person approves
    // it (change.approved, then the move it made).
    reg.store()
        .put_policy(POLICY, Some(&json!({"aliases": ["production"]})), "admin")
        .await
        .expect("policy");
    let held = changes::move_alias(&reg, "bc-lr", "@production", Some(2), Some("better AUC"), who("ana"))
        .await
        .expect("gated");
    let Outcome::Held(change) = held else {
        panic!("the production move is held: {held:?}")
    };
    let fresh = new_events(&reg, &mut seen).await;
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].0, "change.pending");
    assert_eq!(fresh[0].1["requested_by"], "ana");
    changes::approve(&reg, None, change.id, "bo", Via::Cli)
        .await
        .expect("approve");
    let fresh = new_events(&reg, &mut seen).await;
    let names: Vec<&str> = fresh.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["change.approved", "alias.moved"]);
    assert_eq!(fresh[1].1["by"], "bo");
    assert_eq!(fresh[1].1["approved_change"], change.id);
    assert_eq!(
        reg.store()
            .get_alias("bc-lr", "production")
            .await
            .expect("alias")
            .version,
        2
    );

    // A removal the policy does not name: done and announced with no version.
    let removed = changes::move_alias(&reg, "bc-lr", "staging", None, None, who("ana"))
        .await
        .expect("removed");
    assert!(matches!(removed, Outcome::Done(None)), "{removed:?}");
    let fresh = new_events(&reg, &mut seen).await;
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].0, "alias.moved");
    assert_eq!(fresh[0].1["version"], Value::Null);

    // A deployment revised directly (the CLI's `deployment apply` and REST's PUT): recorded
    // and announced with its revision; once the policy names deployment traffic, held.
    let spec = promo(json!({"type": "thompson_beta"}));
    let done = changes::revise_deployment(Revise::Record(&reg), "promo", &spec, Some("launch"), who("ana"))
        .await
        .expect("revised");
    let Outcome::Done(revision) = done else {
        panic!("no policy names deployments yet: {done:?}")
    };
    assert_eq!((revision.revision, revision.created_by.as_str()), (1, "ana"));
    let fresh = new_events(&reg, &mut seen).await;
    assert_eq!(
        fresh,
        [(
            "deployment.changed".to_string(),
            json!({"deployment": "promo", "revision": 1, "by": "ana", "reason": "launch"})
        )]
    );
    reg.store()
        .put_policy(
            POLICY,
            Some(&json!({"aliases": ["production"], "deployment_traffic": ["*"]})),
            "admin",
        )
        .await
        .expect("policy");
    let held = changes::revise_deployment(
        Revise::Record(&reg),
        "promo",
        &promo(json!({"type": "epsilon_greedy", "epsilon": 0.1})),
        None,
        who("ana"),
    )
    .await
    .expect("gated");
    assert!(matches!(held, Outcome::Held(_)), "{held:?}");
    let fresh = new_events(&reg, &mut seen).await;
    let names: Vec<&str> = fresh.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["change.pending"]);
    assert_eq!(reg.store().get_deployment("promo").await.expect("rev").revision, 1);
    reg.store()
        .put_policy(POLICY, Some(&json!({"aliases": ["production"]})), "admin")
        .await
        .expect("policy");

    // `keel apply`: a staging alias applied (announced as who applied it) and a production move
    // held (announced as pending), as from every other door.
    let folder = tempfile::tempdir().expect("folder");
    let dir = folder.path();
    write(dir, "aliases.json", json!({"bc-lr": {"production": 1, "staging": 1}}));
    write(dir, "policy.json", json!({"approvals": {"aliases": ["production"]}}));
    let applied = apply_dir(&reg, dir, "cy").await;
    assert!(applied.iter().any(|a| a.pending.is_some()), "{applied:?}");
    let fresh = new_events(&reg, &mut seen).await;
    let staging = fresh
        .iter()
        .find(|(e, d)| e == "alias.moved" && d["alias"] == "staging")
        .unwrap_or_else(|| panic!("apply announces the staging move: {fresh:?}"));
    assert_eq!(staging.1["by"], "cy");
    assert_eq!(staging.1["version"], 1);
    assert!(
        fresh
            .iter()
            .any(|(e, d)| e == "change.pending" && d["subject"].as_str().is_some_and(|s| s.contains("production"))),
        "{fresh:?}"
    );
    assert!(
        !fresh
            .iter()
            .any(|(e, d)| e == "alias.moved" && d["alias"] == "production"),
        "a held move is not announced as made: {fresh:?}"
    );
}
