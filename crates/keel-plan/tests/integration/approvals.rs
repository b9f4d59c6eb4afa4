//! Approvals on a real registry (SQLite, an artifacts folder, the fixture models): changes the
//! policy names wait for a second person from `keel apply` and from a direct request, apply as
//! the approver, are refused to their requester and when stale, and rejections close them.

use std::path::Path;

use keel_plan::PlanError;
use keel_plan::approvals::{self, Gate, Proposal, Requester, Via};
use keel_plan::{export, live, plan, read_dir};
use serde_json::json;

use crate::support::{apply_dir, git, promo, push, registry, write};

/// Sets the approvals policy as ana, the workspace's first principal.
async fn set_policy(reg: &keel_registry::Registry, policy: approvals::Policy) {
    approvals::execute(
        reg,
        None,
        &Proposal::Policy { policy: Some(policy) },
        "ana",
        None,
        Via::Cli,
    )
    .await
    .expect("policy");
}

fn policy_file(dir: &Path) {
    write(
        dir,
        "policy.json",
        json!({"approvals": {"aliases": ["production"], "deployment_traffic": ["*"]}}),
    );
}

#[tokio::test]
async fn a_named_change_waits_for_a_second_person_and_applies_as_the_approver() {
    let home = tempfile::tempdir().expect("home");
    let reg = registry(home.path()).await;
    push(&reg, "bc-lr", "bc-lr.onnx").await;
    push(&reg, "bc-lr", "bc-rf.onnx").await;
    let folder = tempfile::tempdir().expect("folder");
    let dir = folder.path();
    write(dir, "aliases.json", json!({"bc-lr": {"production": 1, "staging": 1}}));
    policy_file(dir);
    // No policy yet: the first apply sets it and the aliases directly.
    let first = apply_dir(&reg, dir, "ana").await;
    assert!(
        first.iter().all(|a| a.error.is_none() && a.pending.is_none()),
        "{first:?}"
    );
    assert_eq!(
        reg.store()
            .get_alias("bc-lr", "production")
            .await
            .expect("alias")
            .version,
        1
    );
    assert!(plan(&read_dir(dir).expect("read"), &live(&reg).await.expect("live"), false).is_empty());

    git(dir, &["init", "-q"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "policy"]);
    write(dir, "aliases.json", json!({"bc-lr": {"production": 2, "staging": 2}}));
    git(dir, &["commit", "-qam", "production to 2"]);
    let commit = git(dir, &["rev-parse", "HEAD"]);
    let second = apply_dir(&reg, dir, "ana").await;
    // staging moves; production waits.
    let held: Vec<_> = second.iter().filter_map(|a| a.pending).collect();
    assert_eq!(held.len(), 1, "{second:?}");
    assert_eq!(
        reg.store().get_alias("bc-lr", "staging").await.expect("alias").version,
        2
    );
    assert_eq!(
        reg.store()
            .get_alias("bc-lr", "production")
            .await
            .expect("alias")
            .version,
        1
    );
    let message = second.iter().find_map(|a| a.message.clone()).expect("message");
    assert!(
        message.contains("someone other than ana") && message.contains("keel approve"),
        "{message}"
    );
    let pending = reg.store().pending_change(held[0]).await.expect("pending");
    assert_eq!(pending.requested_by, "ana");
    assert_eq!(pending.source, "apply");
    assert_eq!(pending.git_commit.as_deref(), Some(commit.as_str()));
    assert_eq!(pending.diff, vec!["version 1 -> 2"]);
    assert_eq!(pending.rule, "aliases: production");

    let own = approvals::approve(&reg, None, held[0], "ana", Via::Cli)
        .await
        .expect_err("own change");
    assert!(matches!(own, PlanError::Forbidden(_)), "{own}");
    assert!(own.to_string().contains("another person"), "{own}");
    let anonymous = approvals::approve(&reg, None, held[0], "anonymous", Via::Cli)
        .await
        .expect_err("anonymous");
    assert!(matches!(anonymous, PlanError::Forbidden(_)), "{anonymous}");
    assert_eq!(
        reg.store()
            .get_alias("bc-lr", "production")
            .await
            .expect("alias")
            .version,
        1
    );

    let done = approvals::approve(&reg, None, held[0], "bob", Via::Cli)
        .await
        .expect("approve");
    assert_eq!(
        (done.status.as_str(), done.decided_by.as_deref()),
        ("approved", Some("bob"))
    );
    let moved = reg.store().get_alias("bc-lr", "production").await.expect("alias");
    assert_eq!((moved.version, moved.updated_by.as_str()), (2, "bob"));
    let history = reg
        .store()
        .alias_history("bc-lr", Some("production"))
        .await
        .expect("history");
    let last = history.last().expect("event");
    assert!(
        last.reason.as_deref().is_some_and(|r| r.contains("requested by ana")),
        "{last:?}"
    );
    // The request's reason is kept: the folder and the git commit it came from.
    assert!(
        last.reason
            .as_deref()
            .is_some_and(|r| r.contains(&format!("git {commit}"))),
        "{last:?}"
    );
    let log = reg
        .store()
        .list_changes(5, Some("model/bc-lr/alias/production"))
        .await
        .expect("log");
    let approved = log
        .iter()
        .find(|c| c.kind == "change.approved")
        .expect("approved entry");
    assert_eq!(approved.details["requested_by"], json!("ana"));
    assert_eq!(approved.details["approved_by"], json!("bob"));
    assert_eq!(approved.details["git_commit"], json!(commit));
    assert!(plan(&read_dir(dir).expect("read"), &live(&reg).await.expect("live"), false).is_empty());
    // Approved once: not again.
    assert!(
        approvals::approve(&reg, None, held[0], "carol", Via::Cli)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_stale_change_is_refused_and_a_rejected_one_never_applies() {
    let home = tempfile::tempdir().expect("home");
    let reg = registry(home.path()).await;
    push(&reg, "bc-lr", "bc-lr.onnx").await;
    push(&reg, "bc-lr", "bc-rf.onnx").await;
    reg.store()
        .set_alias("bc-lr", "production", 1, "ana", None)
        .await
        .expect("alias");
    let policy = approvals::Policy {
        aliases: vec!["bc-lr@production".into()],
        ..Default::default()
    };
    set_policy(&reg, policy).await;
    let who = Requester {
        by: "ana",
        source: "cli",
        git_commit: None,
    };
    let to = |version| Proposal::Alias {
        model: "bc-lr".into(),
        alias: "production".into(),
        version,
        reason: Some("better auc".into()),
    };
    let Gate::Held(stale) = approvals::gate(reg.store(), &to(Some(2)), who).await.expect("gate") else {
        panic!("a production move must be held");
    };
    let Gate::Held(removal) = approvals::gate(reg.store(), &to(None), who).await.expect("gate") else {
        panic!("removing production must be held");
    };
    // Another alias is not named by the policy.
    let staging = Proposal::Alias {
        model: "bc-lr".into(),
        alias: "staging".into(),
        version: Some(2),
        reason: None,
    };
    assert!(matches!(
        approvals::gate(reg.store(), &staging, who).await.expect("gate"),
        Gate::Proceed
    ));

    // The alias moves behind the request's back: approving it now is refused, nothing changes.
    reg.store()
        .set_alias("bc-lr", "production", 2, "carol", Some("hotfix"))
        .await
        .expect("move");
    reg.store()
        .set_alias("bc-lr", "production", 1, "carol", Some("rollback"))
        .await
        .expect("move");
    let err = approvals::approve(&reg, None, stale.id, "bob", Via::Cli).await;
    // Same version as requested: the base matches again, so it applies.
    assert!(err.is_ok(), "{err:?}");
    let Gate::Held(again) = approvals::gate(reg.store(), &to(Some(1)), who).await.expect("gate") else {
        panic!("held");
    };
    reg.store()
        .set_alias("bc-lr", "production", 1, "carol", Some("hotfix"))
        .await
        .expect("move");
    let stale_err = approvals::approve(&reg, None, again.id, "bob", Via::Cli)
        .await
        .expect_err("stale");
    assert!(matches!(stale_err, PlanError::Stale(_)), "{stale_err}");
    assert!(
        stale_err.to_string().contains("version 2 then, version 1 now"),
        "{stale_err}"
    );
    assert_eq!(
        reg.store().pending_change(again.id).await.expect("row").status,
        "pending"
    );

    let no_reason = approvals::reject(&reg, removal.id, "bob", "  ")
        .await
        .expect_err("reason");
    assert!(matches!(no_reason, PlanError::Invalid(_)));
    let closed = approvals::reject(&reg, removal.id, "bob", "production stays")
        .await
        .expect("reject");
    assert_eq!(closed.status, "rejected");
    assert!(
        approvals::approve(&reg, None, removal.id, "carol", Via::Cli)
            .await
            .is_err()
    );
    assert!(reg.store().get_alias("bc-lr", "production").await.is_ok());

    // While the policy holds anything, weakening it is held too.
    let Gate::Held(weaken) = approvals::gate(reg.store(), &Proposal::Policy { policy: None }, who)
        .await
        .expect("gate")
    else {
        panic!("a policy change must be held");
    };
    assert_eq!(weaken.kind, "policy");
}

#[tokio::test]
async fn deployment_traffic_changes_are_held_and_export_writes_the_policy() {
    let home = tempfile::tempdir().expect("home");
    let reg = registry(home.path()).await;
    let folder = tempfile::tempdir().expect("folder");
    let dir = folder.path();
    policy_file(dir);
    apply_dir(&reg, dir, "ana").await;
    write(dir, "deployments/promo.json", promo(json!({"type": "thompson_beta"})));
    let held = apply_dir(&reg, dir, "ana").await;
    let id = held
        .iter()
        .find_map(|a| a.pending)
        .expect("a new deployment takes traffic: held");
    assert!(reg.store().get_deployment("promo").await.is_err());
    approvals::approve(&reg, None, id, "bob", Via::Cli)
        .await
        .expect("approve");
    let revision = reg.store().get_deployment("promo").await.expect("deployed");
    assert_eq!((revision.revision, revision.created_by.as_str()), (1, "bob"));

    // A revision that leaves variants, policy and control alone is not a traffic change.
    let mut spec = promo(json!({"type": "thompson_beta"}));
    spec["reward"]["window_seconds"] = json!(7200);
    write(dir, "deployments/promo.json", spec);
    let direct = apply_dir(&reg, dir, "ana").await;
    assert!(
        direct.iter().all(|a| a.pending.is_none() && a.error.is_none()),
        "{direct:?}"
    );
    assert_eq!(reg.store().get_deployment("promo").await.expect("rev").revision, 2);

    let out = tempfile::tempdir().expect("export");
    export(&live(&reg).await.expect("live"), out.path(), false).expect("export");
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("policy.json")).expect("policy.json"))
            .expect("json");
    assert_eq!(
        exported,
        json!({"approvals": {"aliases": ["production"], "deployment_traffic": ["*"]}})
    );
}

#[tokio::test]
async fn grants_on_tables_with_personal_data_wait_and_others_do_not() {
    let home = tempfile::tempdir().expect("home");
    let reg = registry(home.path()).await;
    let store = reg.store();
    store.create_team("data", None, "ana").await.expect("team");
    store.create_team("marketing", None, "ana").await.expect("team");
    for (table, pii) in [("customers", Some("email")), ("clicks", None)] {
        store.register_table(table, "data", None, "ana").await.expect("table");
        let columns = vec![keel_store::ObservedColumn {
            name: "contact".into(),
            data_type: "string".into(),
            detected_pii: pii.map(str::to_string),
        }];
        store
            .record_table_write(table, 0, &columns, "ana")
            .await
            .expect("columns");
    }
    let policy = approvals::Policy {
        pii_grants: true,
        ..Default::default()
    };
    set_policy(&reg, policy).await;
    let who = Requester {
        by: "ana",
        source: "cli",
        git_commit: None,
    };
    let grant = |table: &str| Proposal::Grant {
        table: table.into(),
        team: "marketing".into(),
        permission: "read".into(),
    };
    assert!(matches!(
        approvals::gate(store, &grant("clicks"), who).await.expect("gate"),
        Gate::Proceed
    ));
    let Gate::Held(held) = approvals::gate(store, &grant("customers"), who).await.expect("gate") else {
        panic!("a grant on a table with an email column must wait");
    };
    assert!(
        held.rule.contains("customers has PII columns (contact)"),
        "{}",
        held.rule
    );
    assert_eq!(held.diff, vec!["marketing on customers: (none) -> read"]);
    assert!(store.list_grants().await.expect("grants").is_empty());
    // Approving makes the grant as the approver, through the catalog: carol administers no
    // table, so she is refused and the change still waits; bob administers the owning team.
    let refused = approvals::approve(&reg, None, held.id, "carol", Via::Cli)
        .await
        .expect_err("carol may not grant on customers");
    assert!(refused.to_string().contains("admin"), "{refused}");
    assert_eq!(store.pending_change(held.id).await.expect("change").status, "pending");
    store.add_member("data", "bob", "admin", "ana").await.expect("member");
    approvals::approve(&reg, None, held.id, "bob", Via::Cli)
        .await
        .expect("approve");
    let grants = store.list_grants().await.expect("grants");
    assert_eq!(
        grants
            .iter()
            .map(|g| (g.table.as_str(), g.team.as_str(), g.granted_by.as_str()))
            .collect::<Vec<_>>(),
        vec![("customers", "marketing", "bob")]
    );
}
