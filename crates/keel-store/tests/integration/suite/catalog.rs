//! Catalog and access: principals (first one is admin), teams, grants, tokens, tables with
//! columns, PII flags (manual beats detected), schema history, lineage and the audit log.

use keel_store::{ColumnEdit, NewAuditEvent, NewToken, ObservedColumn, StoreError};
use serde_json::json;

use crate::support::Fixture;

fn col(name: &str, ty: &str, pii: Option<&str>) -> ObservedColumn {
    ObservedColumn {
        name: name.into(),
        data_type: ty.into(),
        detected_pii: pii.map(str::to_owned),
    }
}

pub async fn first_principal_is_admin_and_teams_have_members(fx: Fixture) {
    let s = &fx.store;
    let ana = s.ensure_principal("ana").await.expect("ana");
    let bo = s.ensure_principal("bo").await.expect("bo");
    assert!(ana.is_admin && !bo.is_admin);
    // Seeing someone again changes nothing.
    assert_eq!(s.ensure_principal("ana").await.expect("again"), ana);

    s.create_team("growth", Some("e-mail marketing"), "ana")
        .await
        .expect("team");
    assert!(matches!(
        s.create_team("growth", None, "ana").await,
        Err(StoreError::Conflict { .. })
    ));
    s.add_member("growth", "bo", "member", "ana").await.expect("add");
    assert!(matches!(
        s.add_member("growth", "bo", "owner", "ana").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.add_member("nope", "bo", "member", "ana").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        s.teams_of("bo").await.expect("teams"),
        vec![("growth".into(), "member".into())]
    );
    let team = s.team("growth").await.expect("get").expect("exists");
    assert_eq!(
        team.members
            .iter()
            .map(|m| (m.principal.as_str(), m.role.as_str()))
            .collect::<Vec<_>>(),
        vec![("ana", "admin"), ("bo", "member")]
    );
    s.remove_member("growth", "bo", "ana").await.expect("remove");
    assert!(s.teams_of("bo").await.expect("teams").is_empty());
    assert!(matches!(
        s.remove_member("growth", "bo", "ana").await,
        Err(StoreError::NotFound { .. })
    ));

    // The last admin cannot step down.
    assert!(matches!(
        s.set_admin("ana", false, "ana").await,
        Err(StoreError::Conflict { .. })
    ));
    s.set_admin("bo", true, "ana").await.expect("bo admin");
    s.set_admin("ana", false, "bo").await.expect("ana steps down");
    assert!(!s.principal("ana").await.expect("p").expect("ana").is_admin);

    let kinds: Vec<String> = s
        .list_changes(20, None)
        .await
        .expect("changes")
        .into_iter()
        .map(|c| c.kind)
        .collect();
    for k in [
        "principal.create",
        "team.create",
        "team.member.add",
        "team.member.remove",
        "principal.admin",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
}

pub async fn tables_columns_pii_schema_history_and_grants(fx: Fixture) {
    let s = &fx.store;
    s.ensure_principal("ana").await.expect("ana");
    s.create_team("growth", None, "ana").await.expect("team");
    s.create_team("analytics", None, "ana").await.expect("team");
    assert!(matches!(
        s.register_table("customers", "nope", None, "ana").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.table_entry("customers").await.expect("get").is_none());
    assert!(
        s.register_table("customers", "growth", Some("registered customers"), "ana")
            .await
            .expect("reg")
    );
    assert!(
        !s.register_table("customers", "analytics", None, "bo")
            .await
            .expect("again")
    );

    s.record_table_write(
        "customers",
        0,
        &[col("id", "Int64", None), col("email", "Utf8", Some("email"))],
        "ana",
    )
    .await
    .expect("write 0");
    // A hand decision: `id` is not PII, `email` gets a description.
    s.edit_column(
        "customers",
        "email",
        &ColumnEdit {
            description: Some("contact address".into()),
            pii: None,
        },
        "ana",
    )
    .await
    .expect("describe column");
    s.edit_column(
        "customers",
        "id",
        &ColumnEdit {
            description: None,
            pii: Some((false, None)),
        },
        "ana",
    )
    .await
    .expect("manual");
    assert!(matches!(
        s.edit_column("customers", "nope", &ColumnEdit::default(), "ana").await,
        Err(StoreError::NotFound { .. })
    ));
    // Version 1 adds a column; detection wrongly flags `id`: the manual decision stands.
    s.record_table_write(
        "customers",
        1,
        &[
            col("id", "Int64", Some("phone")),
            col("email", "Utf8", None),
            col("city", "Utf8", None),
        ],
        "ana",
    )
    .await
    .expect("write 1");
    // Version 2, same schema: no new schema version.
    s.record_table_write(
        "customers",
        2,
        &[
            col("id", "Int64", None),
            col("email", "Utf8", None),
            col("city", "Utf8", None),
        ],
        "ana",
    )
    .await
    .expect("write 2");

    let e = s.table_entry("customers").await.expect("get").expect("entry");
    assert_eq!(
        (e.owner_team.as_str(), e.description.as_deref()),
        ("growth", Some("registered customers"))
    );
    let cols: Vec<(&str, bool, Option<&str>, Option<&str>)> = e
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.pii, c.pii_kind.as_deref(), c.pii_source.as_deref()))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("id", false, None, Some("manual")),
            ("email", true, Some("email"), Some("detected")),
            ("city", false, None, None),
        ]
    );
    assert_eq!(e.columns[1].description.as_deref(), Some("contact address"));
    let history = s.schema_history("customers").await.expect("history");
    assert_eq!(history.iter().map(|h| h.version).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(history[1].schema[2], json!({"name": "city", "type": "Utf8"}));

    s.tag_table("customers", &["pii".into(), "marketing".into()], &[], "ana")
        .await
        .expect("tag");
    s.tag_table("customers", &[], &["pii".into()], "ana")
        .await
        .expect("untag");
    s.set_table_description("customers", Some("all customers"), "ana")
        .await
        .expect("describe");
    let e = s.table_entry("customers").await.expect("get").expect("entry");
    assert_eq!(
        (e.tags.clone(), e.description.as_deref()),
        (vec!["marketing".to_string()], Some("all customers"))
    );
    assert_eq!(s.list_table_entries().await.expect("list").len(), 1);

    s.grant("customers", "analytics", "read", "ana").await.expect("grant");
    s.grant("customers", "analytics", "write", "ana")
        .await
        .expect("upgrade");
    assert!(matches!(
        s.grant("customers", "analytics", "own", "ana").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.grant("customers", "nope", "read", "ana").await,
        Err(StoreError::NotFound { .. })
    ));
    let grants = s.grants_on("customers").await.expect("grants");
    assert_eq!(
        grants
            .iter()
            .map(|g| (g.team.as_str(), g.permission.as_str()))
            .collect::<Vec<_>>(),
        vec![("analytics", "write")]
    );
    s.revoke("customers", "analytics", "ana").await.expect("revoke");
    assert!(s.grants_on("customers").await.expect("grants").is_empty());
    assert!(matches!(
        s.revoke("customers", "analytics", "ana").await,
        Err(StoreError::NotFound { .. })
    ));
    let kinds: Vec<String> = s
        .list_changes(50, Some("table/customers"))
        .await
        .expect("changes")
        .into_iter()
        .map(|c| c.kind)
        .collect();
    for k in [
        "table.create",
        "table.write",
        "table.column",
        "table.tag",
        "table.describe",
        "table.grant",
        "table.revoke",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
}

pub async fn tokens_lineage_and_audit(fx: Fixture) {
    let s = &fx.store;
    let token = |id: &'static str, hash: &'static str| NewToken {
        id,
        principal: "svc",
        token_hash: hash,
        label: Some("ci"),
        scopes: "infer decide",
        expires_at_ms: Some(4_102_444_800_000),
        by: "ana",
    };
    s.create_token(token("tok_1", "hash-1")).await.expect("token");
    s.create_token(token("tok_2", "hash-2")).await.expect("second token");
    let dup = s
        .create_token(token("tok_1", "hash-3"))
        .await
        .expect_err("an id is unique");
    assert!(matches!(dup, StoreError::Conflict { .. }), "{dup:?}");
    let found = s.token_by_hash("hash-1").await.expect("lookup").expect("stored");
    assert_eq!((found.id.as_str(), found.principal.as_str()), ("tok_1", "svc"));
    assert_eq!(found.scopes, "infer decide");
    assert_eq!(found.expires_at.map(|t| t.timestamp_millis()), Some(4_102_444_800_000));
    assert!(found.revoked_at.is_none());
    assert_eq!(s.token_by_hash("hash-9").await.expect("lookup"), None);
    assert_eq!(s.list_tokens(Some("svc")).await.expect("list").len(), 2);
    assert!(s.list_tokens(Some("nobody")).await.expect("list").is_empty());

    let revoked = s.revoke_token("tok_1", "ana").await.expect("revoke").expect("known");
    assert!(revoked.revoked_at.is_none(), "the token as it was before");
    let after = s.token_by_hash("hash-1").await.expect("lookup").expect("kept");
    assert!(after.revoked_at.is_some(), "a revoked token is kept, marked revoked");
    assert_eq!(s.revoke_token("tok_404", "ana").await.expect("revoke"), None);
    assert_eq!(
        s.revoke_tokens("svc", "ana").await.expect("revoke all"),
        1,
        "only tok_2 was live"
    );
    let mut kinds: Vec<String> = s
        .list_changes(100, Some("principal/svc/token"))
        .await
        .expect("changes")
        .into_iter()
        .map(|c| format!("{} {} {}", c.kind, c.actor, c.subject))
        .collect();
    kinds.reverse();
    assert_eq!(
        kinds,
        vec![
            "token.create ana principal/svc/token/tok_1",
            "token.create ana principal/svc/token/tok_2",
            "token.revoke ana principal/svc/token/tok_1",
            "token.revoke ana principal/svc/token",
        ]
    );

    s.add_lineage("table/orders@v3", "model/churn/2", "trained_on", "ana")
        .await
        .expect("edge");
    s.add_lineage("table/orders@v3", "model/churn/2", "trained_on", "ana")
        .await
        .expect("idempotent");
    s.add_lineage("model/churn/2", "deployment/promo", "serves", "ana")
        .await
        .expect("edge");
    s.add_lineage("decisions/promo", "table/promo_decisions@v0", "derived_from", "ana")
        .await
        .expect("edge");
    let (up, down) = s.lineage("table/orders").await.expect("lineage");
    assert!(up.is_empty());
    assert_eq!(
        down.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
        vec!["model/churn/2"]
    );
    let (up, down) = s.lineage("model/churn/2").await.expect("lineage");
    assert_eq!((up.len(), down.len()), (1, 1));
    // `table/order` is not a prefix match of `table/orders`.
    assert_eq!(s.lineage("table/order").await.expect("lineage"), (vec![], vec![]));

    for (actor, resource, allowed) in [
        ("bo", "table/a", false),
        ("ana", "table/a", true),
        ("bo", "table/b", true),
    ] {
        s.audit(NewAuditEvent {
            actor,
            action: "read",
            resource,
            allowed,
            via: "cli",
            details: json!({"n": 1}),
        })
        .await
        .expect("audit");
    }
    let all = s.audit_events(10, None, None).await.expect("all");
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].resource, "table/b", "newest first");
    let a = s.audit_events(10, Some("table/a"), None).await.expect("a");
    assert_eq!(a.iter().map(|e| e.allowed).collect::<Vec<_>>(), vec![true, false]);
    let bo = s.audit_events(10, None, Some("bo")).await.expect("bo");
    assert_eq!(bo.len(), 2);
    assert_eq!(
        s.audit_events(10, Some("table/a"), Some("bo"))
            .await
            .expect("both")
            .len(),
        1
    );
    assert!(matches!(
        s.audit_events(-1, None, None).await,
        Err(StoreError::Invalid(_))
    ));
}
