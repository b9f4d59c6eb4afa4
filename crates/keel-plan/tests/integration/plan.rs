//! Changes as code on a real registry (SQLite, an artifacts folder, the fixture model): a
//! folder is planned, applied, planned again to nothing; changes show as readable diffs and are
//! recorded with the git commit they came from; an invalid object stops the whole apply before
//! anything is written; export writes what runs; prune deletes only when asked.

use keel_plan::{Action, Source, apply, export, live, plan, read_dir};
use serde_json::json;

use crate::support::{git, promo, push, registry, write};

#[tokio::test]
async fn a_folder_is_planned_applied_and_then_matches_the_live_state() {
    let home = tempfile::tempdir().expect("home");
    let reg = registry(home.path()).await;
    push(&reg, "bc-lr", "bc-lr.onnx").await;
    push(&reg, "bc-lr", "bc-rf.onnx").await;
    reg.store().create_team("marketing", None, "ana").await.expect("team");
    reg.store().create_team("data", None, "ana").await.expect("team");
    reg.store()
        .register_table("customers", "data", None, "ana")
        .await
        .expect("catalogued table");
    let folder = tempfile::tempdir().expect("folder");
    let dir = folder.path();
    write(dir, "deployments/promo.json", promo(json!({"type": "thompson_beta"})));
    write(dir, "aliases.json", json!({"bc-lr": {"production": 1}}));
    write(
        dir,
        "schedules/weekly.json",
        json!({"cron": "0 6 * * MON", "command": ["model", "ls"]}),
    );
    write(
        dir,
        "grants.json",
        json!([{"table": "customers", "team": "marketing", "permission": "read"}]),
    );
    git(dir, &["init", "-q"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "campaign config"]);
    let commit = git(dir, &["rev-parse", "HEAD"]);

    let declared = read_dir(dir).expect("read");
    let first = plan(&declared, &live(&reg).await.expect("live"), false);
    let actions: Vec<(&str, Action)> = first.changes.iter().map(|c| (c.kind, c.action.clone())).collect();
    assert_eq!(
        actions,
        vec![
            ("deployment", Action::Create),
            ("alias", Action::Create),
            ("schedule", Action::Create),
            ("grant", Action::Create),
        ]
    );
    let source = Source::of(dir, "ana");
    assert_eq!(source.git_commit.as_deref(), Some(commit.as_str()));
    let done = apply(&first, &declared, &reg, &source).await.expect("apply");
    assert!(done.iter().all(|a| a.error.is_none()), "{done:?}");
    assert!(
        plan(&declared, &live(&reg).await.expect("live"), false).is_empty(),
        "nothing left to do"
    );

    let deployment = reg.store().get_deployment("promo").await.expect("recorded");
    assert_eq!(deployment.created_by, "ana");
    assert!(
        deployment.reason.as_deref().is_some_and(|r| r.contains(&commit)),
        "{:?}",
        deployment.reason
    );
    let changes = reg.store().list_changes(20, None).await.expect("changes");
    let applied = changes.iter().find(|c| c.kind == "plan.applied").expect("plan.applied");
    assert_eq!(applied.details["git_commit"], json!(commit));

    // A change shows as a diff of what moves.
    write(
        dir,
        "deployments/promo.json",
        promo(json!({"type": "epsilon_greedy", "epsilon": 0.1})),
    );
    write(dir, "aliases.json", json!({"bc-lr": {"production": 2}}));
    let declared = read_dir(dir).expect("read");
    let second = plan(&declared, &live(&reg).await.expect("live"), false);
    let update = &second.changes[0];
    assert_eq!((update.kind, &update.action), ("deployment", &Action::Update));
    assert!(
        update
            .details
            .contains(&"policy.type: \"thompson_beta\" -> \"epsilon_greedy\"".to_string()),
        "{:?}",
        update.details
    );
    assert_eq!(second.changes[1].details, vec!["version 1 -> 2"]);
    apply(&second, &declared, &reg, &Source::of(dir, "bo"))
        .await
        .expect("apply");
    assert_eq!(reg.store().get_deployment("promo").await.expect("get").revision, 2);
    assert_eq!(
        reg.store()
            .get_alias("bc-lr", "production")
            .await
            .expect("alias")
            .version,
        2
    );

    // Export writes what runs; read back, it is the live state.
    let out = tempfile::tempdir().expect("out");
    let state = live(&reg).await.expect("live");
    export(&state, out.path(), false).expect("export");
    assert_eq!(read_dir(out.path()).expect("read"), state);
    assert!(
        export(&state, out.path(), false).is_err(),
        "refuses to overwrite declared files"
    );
}

#[tokio::test]
async fn an_invalid_object_stops_the_whole_apply_before_anything_is_written() {
    let home = tempfile::tempdir().expect("home");
    let reg = registry(home.path()).await;
    push(&reg, "bc-lr", "bc-lr.onnx").await;
    let folder = tempfile::tempdir().expect("folder");
    let dir = folder.path();
    write(dir, "deployments/promo.json", promo(json!({"type": "thompson_beta"})));
    write(dir, "aliases.json", json!({"bc-lr": {"production": 9}}));
    write(
        dir,
        "schedules/weekly.json",
        json!({"cron": "every monday", "command": ["model", "ls"]}),
    );
    write(
        dir,
        "grants.json",
        json!([{"table": "nowhere", "team": "ghosts", "permission": "read"}]),
    );
    let declared = read_dir(dir).expect("read");
    let p = plan(&declared, &live(&reg).await.expect("live"), false);
    let e = apply(&p, &declared, &reg, &Source::of(dir, "ana"))
        .await
        .expect_err("refused");
    let message = e.to_string();
    assert!(
        message.contains("bc-lr@production -> version 9 does not exist"),
        "{message}"
    );
    assert!(message.contains("schedules/weekly.json"), "{message}");
    assert!(message.contains("team \"ghosts\" does not exist"), "{message}");
    assert!(message.contains("table \"nowhere\" is not in the catalog"), "{message}");
    assert!(
        reg.store().list_deployments().await.expect("list").is_empty(),
        "nothing written"
    );
    assert!(reg.store().list_schedules().await.expect("list").is_empty());

    // A file that does not parse is named.
    std::fs::write(dir.join("deployments/broken.json"), "{not json").expect("write");
    let e = read_dir(dir).expect_err("refused");
    assert!(e.to_string().contains("broken.json"), "{e}");
}

#[tokio::test]
async fn objects_missing_from_the_folder_are_deleted_only_with_prune() {
    let home = tempfile::tempdir().expect("home");
    let reg = registry(home.path()).await;
    let folder = tempfile::tempdir().expect("folder");
    let dir = folder.path();
    write(
        dir,
        "schedules/weekly.json",
        json!({"cron": "0 6 * * MON", "command": ["model", "ls"]}),
    );
    write(dir, "deployments/promo.json", promo(json!({"type": "thompson_beta"})));
    let declared = read_dir(dir).expect("read");
    let p = plan(&declared, &live(&reg).await.expect("live"), false);
    apply(&p, &declared, &reg, &Source::of(dir, "ana"))
        .await
        .expect("apply");

    std::fs::remove_file(dir.join("schedules/weekly.json")).expect("rm");
    std::fs::remove_file(dir.join("deployments/promo.json")).expect("rm");
    let declared = read_dir(dir).expect("read");
    let kept = plan(&declared, &live(&reg).await.expect("live"), false);
    assert!(kept.is_empty(), "{kept:?}");
    assert!(kept.changes.iter().all(|c| c.action == Action::Unmanaged));
    let pruned = plan(&declared, &live(&reg).await.expect("live"), true);
    let actions: Vec<(&str, Action)> = pruned.changes.iter().map(|c| (c.kind, c.action.clone())).collect();
    assert_eq!(
        actions,
        vec![("deployment", Action::Unmanaged), ("schedule", Action::Delete)],
        "deployments are never deleted"
    );
    apply(&pruned, &declared, &reg, &Source::of(dir, "ana"))
        .await
        .expect("apply");
    assert!(reg.store().list_schedules().await.expect("list").is_empty());
    assert_eq!(reg.store().list_deployments().await.expect("list").len(), 1);
}
