//! Token revocation and grant visibility as the catalog decides them.

use keel_catalog::{Catalog, CatalogError, Via};
use keel_store::Store;

async fn catalog() -> Catalog {
    Catalog::new(Store::open("sqlite::memory:").await.expect("store"))
}

#[tokio::test]
async fn only_admins_revoke_others_tokens() {
    let c = catalog().await;
    let admin = c.actor("ana").await.expect("admin");
    assert!(admin.is_admin, "the first principal is the admin");
    let bob = c.actor("bob").await.expect("bob");
    c.issue_token(&admin, "svc", None).await.expect("token");
    let err = c.revoke_tokens(&bob, "svc").await.expect_err("bob may not");
    assert!(matches!(err, CatalogError::Forbidden { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "bob may not revoke svc's tokens: only admins revoke others' tokens"
    );
    c.issue_token(&bob, "bob", None).await.expect("own token");
    assert_eq!(c.revoke_tokens(&bob, "bob").await.expect("own"), 1);
    assert_eq!(c.revoke_tokens(&admin, "svc").await.expect("admin"), 1);
}

#[tokio::test]
async fn grants_on_a_table_need_read_and_others_see_none_without_a_grant() {
    let c = catalog().await;
    let admin = c.actor("ana").await.expect("admin");
    let bob = c.actor("bob").await.expect("bob");
    assert!(c.visible_grants(&admin, None, Via::Cli).await.expect("all").is_empty());
    assert!(c.visible_grants(&bob, None, Via::Cli).await.expect("none").is_empty());
    let err = c
        .visible_grants(&bob, Some("customers"), Via::Cli)
        .await
        .expect_err("no read");
    assert!(matches!(err, CatalogError::Denied { .. }), "{err}");
}
